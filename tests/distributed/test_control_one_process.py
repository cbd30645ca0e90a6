"""DistributedControl on one process (an in-memory store, no collectives): the request log, the rounds,
SIGINT, a controller thread, saves at agreed boundaries, and refused arguments."""

from __future__ import annotations

import doctest
import os
import re
import signal
import threading
import time

import pytest
import torch
import torch.distributed as dist

from nbengine.distributed import CommandLog, DistributedControl, RankStates
from nbengine.distributed import checkpoint as checkpoint_module
from nbengine.distributed import commands as commands_module
from nbengine.engine import DeterministicEngine, Engine, Events
from nbengine.handlers import Checkpoint, DiskSaver

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("module", [commands_module, checkpoint_module])
def test_doctests_pass(module):
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0


class Training:
    """A deterministic linear-regression run: 3 epochs of 6 batches, with its record."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9)
        generator = torch.Generator().manual_seed(1)
        x = torch.randn(24, 4, generator=generator)
        self.data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)),
                                                batch_size=4, shuffle=True)
        self.trainer = DeterministicEngine(self.update, seed=5)
        self.stretches: list[tuple[str, int]] = []
        self.trainer.add_status_hook(lambda engine, status: self.stretches.append((status, engine.state.iteration)))

    def update(self, engine, batch):
        x, y = batch
        self.optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def weights(self) -> dict:
        return {k: v.clone() for k, v in self.model.state_dict().items()}


@pytest.fixture(scope="module")
def reference():
    training = Training()
    training.trainer.run(training.data, max_epochs=3)
    return training.weights()


def same(first: dict, second: dict) -> bool:
    return all(torch.equal(first[k], second[k]) for k in first)


def test_requests_made_in_a_handler_are_applied_two_rounds_later_in_log_order(reference):
    training = Training()
    control = DistributedControl(training.trainer, every=1)

    @training.trainer.on(Events.ITERATION_COMPLETED(once=5))
    def request(_):
        assert [control.pause(), control.step(2), control.step(until=Events.EPOCH_COMPLETED), control.resume()] == [
            1, 2, 3, 4
        ]

    state = control.run(training.data, max_epochs=3)
    assert state.iteration == 18
    assert training.stretches == [("paused", 7), ("paused", 9), ("paused", 12), ("done", 18)]
    assert control.log.status(0) == {"status": "done", "epoch": 3, "iteration": 18}
    assert same(training.weights(), reference)


def test_sigint_pauses_at_an_agreed_boundary_and_run_raises_once_then_continues(reference):
    training = Training()
    control = DistributedControl(training.trainer, every=1)
    training.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=5), lambda _: os.kill(os.getpid(), signal.SIGINT))
    # The signal handler runs on the main thread whenever the interpreter gets to it, so the round
    # that carries the request is the next one after that: the pause iteration depends on scheduling,
    # but every rank agrees on it, it is where the message says, and the run stays exact.
    with pytest.raises(KeyboardInterrupt, match=r"job paused by interrupt on every rank at epoch \d+, iteration \d+") as raised:
        control.run(training.data, max_epochs=3)
    paused_at = int(re.search(r"iteration (\d+)", str(raised.value)).group(1))
    assert 5 < paused_at < 18
    assert control.interrupt_pending is False
    assert control.run().iteration == 18
    assert training.stretches == [("paused", paused_at), ("done", 18)]
    assert same(training.weights(), reference)


def test_a_controller_thread_steps_then_stops_a_paused_job_through_the_log():
    training = Training()
    control = DistributedControl(training.trainer, every=2)
    controller = CommandLog(control.log.store, control.log.run_id)
    training.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=3), lambda _: control.pause())

    def wait_until_paused_at(iteration):
        deadline = time.monotonic() + 120
        while controller.status(0) != {"status": "paused", "epoch": 2, "iteration": iteration}:
            assert time.monotonic() < deadline, controller.status(0)
            time.sleep(0.01)

    def drive():
        try:
            # Rounds at iterations 1, 3, 5, 7: the request made at 3 (after that round) is agreed at 7.
            wait_until_paused_at(7)
            controller.post("step", n=3)
            wait_until_paused_at(10)
            controller.post("stop")
        except BaseException:
            controller.post("interrupt")  # so that run() returns and the test fails instead of waiting
            raise

    thread = threading.Thread(target=drive)
    thread.start()
    state = control.run(training.data, max_epochs=3)
    thread.join(60)
    assert state.iteration == 10
    assert training.stretches == [("paused", 7), ("paused", 10), ("done", 10)]


def test_a_save_request_checkpoints_at_the_agreed_boundary_and_the_checkpoint_resumes_exactly(reference, tmp_path):
    training = Training()
    to_save = {"model": training.model, "optimizer": training.optimizer, "trainer": RankStates(training.trainer)}
    checkpoint = Checkpoint(to_save, DiskSaver(tmp_path), n_saved=None)
    control = DistributedControl(training.trainer, every=1, checkpoint=checkpoint)
    training.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=8), lambda _: control.save())
    control.run(training.data, max_epochs=3)
    assert [path.name for path in tmp_path.glob("*.pt")] == ["checkpoint_10.pt"]

    resumed = Training()
    to_load = {"model": resumed.model, "optimizer": resumed.optimizer, "trainer": RankStates(resumed.trainer)}
    Checkpoint.load_objects(to_load=to_load, checkpoint=str(tmp_path / "checkpoint_10.pt"))
    assert resumed.trainer.state.iteration == 10
    DistributedControl(resumed.trainer).run(resumed.data)
    assert same(resumed.weights(), reference)



def test_a_load_request_takes_a_paused_job_back_to_the_checkpoint_and_the_run_ends_exactly(reference, tmp_path):
    training = Training()
    to_save = {"model": training.model, "optimizer": training.optimizer, "trainer": RankStates(training.trainer)}
    checkpoint = Checkpoint(to_save, DiskSaver(tmp_path), n_saved=None)
    control = DistributedControl(training.trainer, every=1, checkpoint=checkpoint)
    training.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=3), lambda _: control.save())

    gone_back = []

    @training.trainer.on(Events.ITERATION_COMPLETED(once=12))
    def go_back(_):
        # Requested while running: the job pauses at the agreed boundary, then loads there. (Once:
        # after the load, iteration 12 comes again.)
        if gone_back:
            return
        gone_back.append(True)
        assert [control.load(str(tmp_path / "checkpoint_5.pt")), control.load(str(tmp_path / "missing.pt")),
                control.resume()] == [2, 3, 4]

    control.run(training.data, max_epochs=3)
    assert [path.name for path in tmp_path.glob("*.pt")] == ["checkpoint_5.pt"]
    assert training.stretches == [("paused", 14), ("done", 18)]
    assert control.load_reports[2] == [{"rank": 0, "path": str(tmp_path / "checkpoint_5.pt"), "loaded": True,
                                        "error": None, "epoch": 1, "iteration": 5}]
    (missing,) = control.load_reports[3]
    assert (missing["loaded"], missing["iteration"]) == (False, 5)
    assert missing["error"].startswith("FileNotFoundError: ")
    assert control.log.result(2) == control.load_reports[2]
    # Iterations 6 to 14 ran twice; the weights are those of the uninterrupted run.
    assert same(training.weights(), reference)


def test_a_checkpoint_of_another_world_size_is_refused_before_anything_is_loaded(tmp_path):
    from nbengine.distributed.checkpoint import load_job_checkpoint
    from nbengine.handlers import load_checkpoint

    training = Training()
    to_save = {"model": training.model, "trainer": RankStates(training.trainer)}
    Checkpoint(to_save, DiskSaver(tmp_path), n_saved=None)(training.trainer)
    saved = load_checkpoint(tmp_path / "checkpoint_0.pt")
    saved["trainer"] = {"world_size": 2, "ranks": [saved["trainer"]["ranks"][0]] * 2}
    DiskSaver(tmp_path, require_empty=False)(saved, "two_ranks.pt")
    before = training.weights()
    with torch.no_grad():
        training.model[0].weight.add_(1.0)
    changed = training.weights()
    with pytest.raises(ValueError, match=r"^this checkpoint was taken by a job of 2 rank\(s\) and this job has 1: "):
        load_job_checkpoint(to_save, str(tmp_path / "two_ranks.pt"))
    assert same(training.weights(), changed) and not same(changed, before)

def test_adaptive_rounds_agree_about_every_interval():
    training = Training()
    control = DistributedControl(training.trainer, interval=1e9)
    rounds = []
    training.trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: rounds.append(control._agreement.next_round))
    control.run(training.data, max_epochs=3)
    # The first round proposes 1, the second measures the step and proposes the most allowed.
    assert rounds[:3] == [2, 3, 3 + 10_000]


def test_the_next_stretch_sizes_its_first_round_from_the_speed_measured_before():
    training = Training()
    control = DistributedControl(training.trainer, interval=1e9)
    control.run(training.data, max_epochs=1)
    control.run(training.data, max_epochs=2)
    # The second run() launched one round, at its first iteration, flushed when it ended: it proposed
    # from the step measured in the first run, not 1 (which would start with rounds one iteration apart).
    assert control._agreement.round_every == 10_000


def test_rank_states_refuse_another_world_size():
    trainer = Engine(lambda engine, batch: None)
    states = RankStates(trainer)
    with pytest.raises(ValueError, match=r"taken by a job of 2 rank\(s\) and this job has 1: .* resuming on another "
                                         r"world size is refused; resume with 2 processes"):
        states.load_state_dict({"world_size": 2, "ranks": [{}, {}]})
    with pytest.raises(ValueError, match="keys 'world_size' and 'ranks', got dict with keys \\['iteration'\\]"):
        states.load_state_dict({"iteration": 3})


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda e: DistributedControl("engine"), TypeError, "engine should be an nbengine Engine, got str"),
        (lambda e: DistributedControl(e, every=0), ValueError, "every should be None or a positive number of iterations, got 0"),
        (lambda e: DistributedControl(e, interval=0), ValueError, "interval should be a positive number of seconds, got 0"),
        (lambda e: DistributedControl(e, checkpoint=3), TypeError, "checkpoint should be a callable fn\\(engine\\) or None, got 3"),
        (lambda e: DistributedControl(e, replay=3), TypeError, "replay should be an EpochReplay or None, got int: 3"),
        (lambda e: DistributedControl(e).replay(1), RuntimeError, "replay\\(\\) needs an EpochReplay"),
        (lambda e: DistributedControl(e).step(0), ValueError, "n should be a positive integer, got 0"),
        (lambda e: DistributedControl(e).step(1, events=2), ValueError, "step\\(\\) takes one of n=, until= or events=, got n, events"),
        (lambda e: DistributedControl(e).step(until="NOPE"), ValueError, "until should be an Events member or its name, got 'NOPE'"),
        (lambda e: DistributedControl(e).save(), RuntimeError, "save\\(\\) needs a checkpoint"),
        (lambda e: CommandLog(dist.HashStore(), "x").post("jump"), ValueError, "kind should be one of"),
        (lambda e: CommandLog(dist.HashStore(), ""), ValueError, "run_id should be a non-empty str, got ''"),
    ],
)
def test_bad_arguments_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make(Engine(lambda engine, batch: None))


def test_rank_states_refuse_to_gather_over_nccl_on_another_ranks_device():
    # No GPU here: torch.cuda is stood for by an object with the one function the check reads (this
    # process is local rank 0).
    from types import SimpleNamespace

    on_device_one = SimpleNamespace(current_device=lambda: 1)
    with pytest.raises(RuntimeError, match=r"^RankStates gathers every rank's state over NCCL on the current CUDA "
                                           r"device, which is cuda:1 on local rank 0: call torch\.cuda\.set_device\(0\)"):
        checkpoint_module._check_nccl_device(on_device_one, "nccl")
    checkpoint_module._check_nccl_device(SimpleNamespace(current_device=lambda: 0), "nccl")
    checkpoint_module._check_nccl_device(on_device_one, "gloo")
