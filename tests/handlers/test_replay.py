"""EpochReplay: each epoch replays bit-exactly, a deliberate change shows where it diverges, the live
run is left exactly as it was (or continues from the replay when asked), snapshots travel through a
weights_only checkpoint, and bad input gets a clear error."""

from __future__ import annotations

import doctest
import threading

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import nbengine.handlers.replay as replay_module
from nbengine.engine import Engine, Events
from nbengine.engine.deterministic import DeterministicEngine
from nbengine.handlers import EpochReplay, History
from nbengine.metrics import Average
from nbengine.utils import get_rng_states, manual_seed


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Indexed(Dataset):
    def __init__(self, size: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.features = torch.randn(size, 4, generator=generator)
        self.labels = torch.randint(0, 3, (size,), generator=generator)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int):
        return self.features[index], self.labels[index], index


class Setup:
    """Dropout, momentum SGD and an lr scheduler stepped by a handler every iteration; 18 samples in
    batches of 4 make 5 iterations per epoch. ``seen`` is logged by a handler, so a replay (which
    runs only the process function and the listed handlers) does not add to it."""

    def __init__(self, keep_last: int = 3, list_scheduler: bool = True, size: int = 18, **replay_options) -> None:
        torch.manual_seed(1)
        self.model = torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(8, 3)
        )
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=0.95)
        self.loader = DataLoader(Indexed(size), batch_size=4, shuffle=True)
        self.seen: list[tuple[int, list[int]]] = []
        self.trainer = DeterministicEngine(self._step, seed=7)
        self.trainer.add_event_handler(Events.ITERATION_COMPLETED, self.step_scheduler)
        self.trainer.add_event_handler(Events.ITERATION_COMPLETED, self._log)
        self.replay = EpochReplay(
            self.trainer,
            {"model": self.model, "optimizer": self.optimizer, "lr_scheduler": self.scheduler},
            keep_last=keep_last,
            replay_handlers=[self.step_scheduler] if list_scheduler else [],
            **replay_options,
        )

    def _step(self, engine, batch):
        x, y, _ = batch
        self.model.train()
        self.optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def step_scheduler(self):
        self.scheduler.step()

    def _log(self, engine):
        self.seen.append((engine.state.iteration, engine.state.batch[2].tolist()))

    def tensors(self) -> list[torch.Tensor]:
        state = [*self.model.state_dict().values()]
        for buffer in self.optimizer.state.values():
            state.extend(buffer.values())
        state.extend(p.grad for p in self.model.parameters() if p.grad is not None)
        return [t.detach().clone() for t in state]

    def plain_state(self) -> tuple:
        return (
            [group["lr"] for group in self.optimizer.param_groups],
            self.scheduler.state_dict(),
            [m.training for m in self.model.modules()],
        )


def reference_run() -> Setup:
    setup = Setup()
    setup.trainer.run(setup.loader, max_epochs=3)
    return setup


def same_tensors(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def same_rng(a: dict, b: dict) -> bool:
    return (
        a["python"] == b["python"]
        and a["numpy"] == b["numpy"]
        and torch.equal(a["torch"], b["torch"])
        and set(a) == set(b)
    )


def same_history(a: History, b: History) -> bool:
    x, y = a.snapshot(), b.snapshot()
    return (
        x.names == y.names
        and np.array_equal(x.iterations, y.iterations)
        and np.array_equal(x.fingerprints, y.fingerprints)
        and np.array_equal(x.values, y.values)
        and np.array_equal(x.runs, y.runs)
    )


def test_module_doctests_pass():
    result = doctest.testmod(replay_module)
    assert result.attempted >= 8 and result.failed == 0


def test_replaying_each_epoch_reports_equality_and_leaves_the_live_state_as_it_was():
    setup = reference_run()
    tensors, plain, rng = setup.tensors(), setup.plain_state(), get_rng_states()
    history_before = setup.replay.history.snapshot()
    assert setup.replay.epochs == [1, 2, 3]
    for epoch in (1, 2, 3):
        report = setup.replay.replay_epoch(epoch)
        assert report.reproduced, str(report)
        assert (report.epoch, report.iterations, report.iterations_compared) == (epoch, 5, 5)
        assert (report.fingerprints_equal, report.outputs_equal, report.max_abs_diff) == (True, True, 0.0)
        assert report.first_divergent_iteration is None and not report.continued
        assert report.replayed.iterations.tolist() == list(range(epoch * 5 - 4, epoch * 5 + 1))
        assert report.skipped_handlers == ("Setup._log on ITERATION_COMPLETED",)
        assert str(report) == (
            f"epoch {epoch} replayed: 5 iterations, 5 compared; batches identical; outputs identical "
            "(max |diff| 0.0); reproduced"
        )
    assert same_tensors(setup.tensors(), tensors)
    assert setup.plain_state() == plain
    assert same_rng(get_rng_states(), rng)
    assert setup.replay.history.version == history_before.version
    assert len(setup.seen) == 15  # the replays did not run the logging handler
    assert setup.trainer.status == "done" and setup.trainer.state.iteration == 15


def test_a_deliberate_change_reports_the_first_divergent_iteration():
    setup = reference_run()
    tensors = setup.tensors()

    def higher_lr():
        for group in setup.optimizer.param_groups:
            group["lr"] = 0.5

    report = setup.replay.replay_epoch(2, modify=higher_lr)
    # Iteration 6 computes its loss before the first step with the new lr: equal. Iteration 7 differs.
    assert (report.fingerprints_equal, report.outputs_equal, report.first_divergent_iteration) == (True, False, 7)
    assert report.max_abs_diff > 0 and not report.reproduced
    assert str(report).endswith("first divergence at iteration 7")
    assert same_tensors(setup.tensors(), tensors)
    assert setup.replay.replay_epoch(2).reproduced  # the change did not stay


def test_a_change_to_the_live_optimizer_does_not_leak_into_the_replay():
    setup = reference_run()
    setup.optimizer.param_groups[0]["lr"] = 3.0
    assert setup.replay.replay_epoch(3).reproduced
    assert setup.optimizer.param_groups[0]["lr"] == 3.0


def test_a_tolerance_accepts_small_differences():
    setup = reference_run()

    def nudge():
        with torch.no_grad():
            setup.model[3].bias[0] += 1e-4

    exact = setup.replay.replay_epoch(1, modify=nudge)
    assert not exact.outputs_equal and exact.first_divergent_iteration == 1 and 0 < exact.max_abs_diff < 1e-3
    tolerant = setup.replay.replay_epoch(1, modify=nudge, atol=1e-3)
    assert tolerant.reproduced and tolerant.atol == 1e-3


def test_a_training_handler_left_out_of_the_replay_shows_as_skipped_and_divergent():
    setup = Setup(list_scheduler=False)
    setup.trainer.run(setup.loader, max_epochs=2)
    report = setup.replay.replay_epoch(2)
    # Without the scheduler step after iteration 6, iteration 7 steps with a higher lr; iteration 8's loss shows it.
    assert report.first_divergent_iteration == 8
    assert report.skipped_handlers == (
        "Setup.step_scheduler on ITERATION_COMPLETED",
        "Setup._log on ITERATION_COMPLETED",
    )


def test_replay_while_paused_mid_epoch_then_the_run_finishes_like_an_uninterrupted_one():
    reference = Setup()
    Average().attach(reference.trainer, "average_loss")
    reference.trainer.run(reference.loader, max_epochs=3)
    setup = Setup()
    Average().attach(setup.trainer, "average_loss")

    setup.trainer.step(7, data=setup.loader, max_epochs=3)
    assert (setup.trainer.status, setup.trainer.state.epoch, setup.trainer.state.iteration) == ("paused", 2, 7)
    assert setup.replay.replay_epoch(1).reproduced
    partial = setup.replay.replay_epoch(2)  # the epoch under way: 2 of its iterations are recorded so far
    assert (partial.iterations, partial.iterations_compared) == (5, 2)
    assert partial.fingerprints_equal and partial.outputs_equal and partial.first_divergent_iteration is None
    assert not partial.reproduced and str(partial).endswith("not every iteration could be compared")
    setup.trainer.run()
    assert setup.seen == reference.seen
    assert same_tensors(setup.tensors(), reference.tensors())
    assert setup.trainer.state.metrics["average_loss"] == reference.trainer.state.metrics["average_loss"]


def test_replay_from_the_ui_thread_while_a_background_run_is_paused():
    reference = reference_run()
    setup = Setup()
    setup.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=8), lambda engine: engine.pause())
    setup.trainer.start(setup.loader, max_epochs=3)
    setup.trainer.wait()
    assert (setup.trainer.status, setup.trainer.state.iteration) == ("paused", 8)
    assert setup.replay.replay_epoch(1).reproduced
    setup.trainer.resume()
    setup.trainer.wait()
    assert setup.seen == reference.seen
    assert same_tensors(setup.tensors(), reference.tensors())
    assert same_history(setup.replay.history, reference.replay.history)


def test_replay_is_refused_while_the_trainer_runs():
    setup = Setup()
    caught = []

    @setup.trainer.on(Events.ITERATION_COMPLETED(once=7))
    def replay_from_a_handler(engine):
        try:
            setup.replay.replay_epoch(1)
        except RuntimeError as error:
            caught.append(str(error))

    setup.trainer.run(setup.loader, max_epochs=2)
    assert caught == [
        "replay_epoch(1) was called while the trainer is running; pause() it (and wait() for a background run) "
        "first, or replay after the run"
    ]

    release = threading.Event()
    inside = threading.Event()
    def wait_for_release(engine, batch):
        inside.set()
        release.wait(10)
        return 0.0

    blocking = DeterministicEngine(wait_for_release, seed=1)
    blocking_replay = EpochReplay(blocking, {})
    blocking.start([1, 2], max_epochs=1)
    inside.wait(10)
    try:
        with pytest.raises(RuntimeError, match=r"replay_epoch\(1\) was called while the trainer is running"):
            blocking_replay.replay_epoch(1)
    finally:
        release.set()
        blocking.wait()


def test_continue_from_replay_rewinds_the_run_to_the_end_of_the_replayed_epoch():
    reference = reference_run()
    setup = reference_run()
    report = setup.replay.replay_epoch(2, continue_from_replay=True)
    assert report.reproduced and report.continued
    trainer = setup.trainer
    assert (trainer.status, trainer.state.epoch, trainer.state.iteration) == ("idle", 2, 10)
    assert setup.replay.epochs == [1, 2]
    assert setup.replay.history.snapshot().iterations.tolist() == list(range(1, 11))
    trainer.run()
    assert setup.seen[15:] == reference.seen[10:]
    assert same_tensors(setup.tensors(), reference.tensors())
    assert same_history(setup.replay.history, reference.replay.history)
    assert setup.replay.epochs == [1, 2, 3]


def test_continue_from_a_changed_replay_follows_the_change():
    reference = reference_run()
    setup = reference_run()

    def higher_lr():
        setup.optimizer.param_groups[0]["lr"] = 0.5

    changed = setup.replay.replay_epoch(2, modify=higher_lr, continue_from_replay=True)
    assert changed.continued and changed.first_divergent_iteration == 7
    setup.trainer.run()
    assert setup.seen[15:] == reference.seen[10:]  # the same batches ...
    assert not same_tensors(setup.tensors(), reference.tensors())  # ... another training
    # Epoch 2's snapshot now starts from the changed state and holds the changed run's trace.
    assert setup.replay.replay_epoch(2).reproduced
    assert setup.replay.replay_epoch(3).reproduced


def test_a_new_run_forgets_the_snapshots_of_the_previous_one():
    setup = reference_run()
    setup.trainer.state.max_epochs = None  # ignite's way to start a finished engine over
    setup.trainer.run(setup.loader, max_epochs=1)
    assert setup.replay.epochs == [1]


def test_snapshots_travel_through_a_weights_only_checkpoint(tmp_path):
    allowed_before = list(torch.serialization.get_safe_globals())
    setup = reference_run()
    path = tmp_path / "checkpoint.pt"
    torch.save(
        {
            "trainer": setup.trainer.state_dict(),
            "model": setup.model.state_dict(),
            "optimizer": setup.optimizer.state_dict(),
            "lr_scheduler": setup.scheduler.state_dict(),
            "replay": setup.replay.state_dict(),
        },
        path,
    )
    checkpoint = torch.load(path, weights_only=True)
    assert list(torch.serialization.get_safe_globals()) == allowed_before

    manual_seed(99)
    restored = Setup()
    restored.model.load_state_dict(checkpoint["model"])
    restored.optimizer.load_state_dict(checkpoint["optimizer"])
    restored.scheduler.load_state_dict(checkpoint["lr_scheduler"])
    restored.trainer.load_state_dict(checkpoint["trainer"])
    restored.trainer.set_data(restored.loader)
    restored.replay.load_state_dict(checkpoint["replay"])
    assert restored.replay.epochs == [1, 2, 3] and len(restored.replay.history) == 0
    tensors = restored.tensors()
    for epoch in (1, 2, 3):
        report = restored.replay.replay_epoch(epoch)
        assert report.reproduced and report.iterations_compared == 5
    assert same_tensors(restored.tensors(), tensors)


def test_replaying_an_epoch_that_has_no_snapshot_is_refused():
    setup = Setup(keep_last=2)
    setup.trainer.run(setup.loader, max_epochs=3)
    with pytest.raises(
        ValueError,
        match=r"there is no snapshot of epoch 1; snapshots are held for epochs \[2, 3\] \(keep_last=2\); "
        r"load older ones with load_state_dict\(\) from a checkpoint",
    ):
        setup.replay.replay_epoch(1)


def test_a_snapshot_from_data_of_another_length_is_refused_and_the_live_state_kept():
    setup = reference_run()
    other = Setup(size=17)
    other.trainer.run(other.loader, max_epochs=1)
    other.replay.load_state_dict(setup.replay.state_dict())
    tensors = other.tensors()
    with pytest.raises(
        ValueError,
        match=r"the state_dict was saved for data of length 5 \(dataset length 18\), but the data given has "
        r"length 5 \(dataset length 17\)",
    ):
        other.replay.replay_epoch(2)
    assert same_tensors(other.tensors(), tensors)


def test_a_trainer_without_its_data_is_refused():
    setup = reference_run()
    restored = Setup()
    restored.replay.load_state_dict(setup.replay.state_dict())
    tensors = restored.tensors()
    with pytest.raises(ValueError, match=r"the trainer has no data to replay epoch 2 with; give it the data it was trained on first"):
        restored.replay.replay_epoch(2)
    assert same_tensors(restored.tensors(), tensors)


def test_an_unattached_replay_handler_is_refused_at_replay():
    setup = Setup()
    setup.trainer.run(setup.loader, max_epochs=1)
    setup.replay._replay_handlers = (len,)  # as if the handler had been detached since
    with pytest.raises(ValueError, match=r"replay_handlers\[0\] = <built-in function len> is not a handler attached"):
        setup.replay.replay_epoch(1)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: EpochReplay(Engine(lambda e, b: None), {}), TypeError, r"trainer should be a DeterministicEngine \(the data order of a plain Engine cannot be replayed\), got .* of type Engine"),
        (lambda: EpochReplay(DeterministicEngine(lambda e, b: None), [1]), TypeError, r"to_snapshot should be a dict of name -> object with state_dict/load_state_dict, got list"),
        (lambda: EpochReplay(DeterministicEngine(lambda e, b: None), {"model": 3}), TypeError, r"to_snapshot\['model'\] should have state_dict\(\) and load_state_dict\(\) methods, got 3 of type int"),
        (lambda: EpochReplay(DeterministicEngine(lambda e, b: None), {1: torch.nn.Linear(1, 1)}), TypeError, r"to_snapshot keys should be strings, got 1 of type int"),
        (lambda: EpochReplay(DeterministicEngine(lambda e, b: None), {}, keep_last=0), ValueError, r"keep_last should be a positive number of epochs, got 0"),
        (lambda: EpochReplay(DeterministicEngine(lambda e, b: None), {}, history=History().attach(Engine(lambda e, b: None))), ValueError, r"history should be a History attached to the trainer"),
        (lambda: EpochReplay(DeterministicEngine(lambda e, b: None), {}, replay_handlers="step"), TypeError, r"replay_handlers should be a list of handlers or handler owners, got 'step'"),
    ],
)
def test_constructor_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"epoch": 0}, ValueError, r"epoch should be a positive integer, got 0"),
        ({"epoch": 1, "continue_from_replay": 1}, TypeError, r"continue_from_replay should be True or False, got 1"),
        ({"epoch": 1, "modify": "lr"}, TypeError, r"modify should be callable with no arguments or None, got 'lr'"),
        ({"epoch": 1, "atol": -1.0}, ValueError, r"atol should be a non-negative number, got -1.0"),
        ({"epoch": 1, "atol": float("nan")}, ValueError, r"atol should be a non-negative number, got nan"),
    ],
)
def test_replay_epoch_argument_errors(kwargs, error, match):
    setup = Setup()
    with pytest.raises(error, match=match):
        setup.replay.replay_epoch(**kwargs)


@pytest.mark.parametrize(
    ("state_dict", "match"),
    [
        ({}, r"state_dict should be a dict with a 'snapshots' list"),
        ({"snapshots": 3}, r"state_dict\['snapshots'\] should be a list, got int"),
        ({"snapshots": [{"epoch": 1}]}, r"state_dict\['snapshots'\]\[0\] should be a dict with keys \['epoch', 'engine', 'objects', 'trace'\]"),
        ({"snapshots": [{"epoch": 0, "engine": {}, "objects": {}, "trace": None}]}, r"state_dict\['snapshots'\]\[0\]\['epoch'\] should be a positive integer, got 0"),
        ({"snapshots": [{"epoch": 1, "engine": {"epoch_length": 5}, "objects": {"model": {}}, "trace": None}]}, r"state_dict\['snapshots'\]\[0\]\['objects'\] holds \['model'\], but this EpochReplay snapshots \['lr_scheduler', 'model', 'optimizer'\]"),
    ],
)
def test_load_state_dict_errors(state_dict, match):
    setup = Setup()
    with pytest.raises(ValueError, match=match):
        setup.replay.load_state_dict(state_dict)


def test_a_shared_history_is_used_instead_of_an_own_one():
    trainer = DeterministicEngine(lambda engine, batch: float(batch.sum()), seed=2)
    history = History().attach(trainer)
    replay = EpochReplay(trainer, {}, history=history)
    trainer.run(DataLoader(torch.arange(8.0), batch_size=2, shuffle=True), max_epochs=2)
    assert replay.history is history and len(history) == 8
    report = replay.replay_epoch(2)
    assert report.reproduced and report.replayed.values[:, 0].tolist() == history.snapshot().values[4:, 0].tolist()
    assert report.skipped_handlers == ()


def _child(*args: str) -> str:
    import subprocess
    import sys
    from pathlib import Path

    child = Path(__file__).with_name("_replay_child.py")
    done = subprocess.run(
        [sys.executable, str(child), *args], capture_output=True, text=True, timeout=240, cwd=child.parents[2]
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.timeout(600)
def test_replay_after_a_mid_epoch_checkpoint_in_a_new_process_compares_every_iteration(tmp_path):
    import json

    path = str(tmp_path / "mid_epoch.pt")
    _child("save", path)
    report = json.loads(_child("resume", path).strip().splitlines()[-1])
    assert (report["iterations"], report["compared"], report["reproduced"]) == (5, 5, True), report["text"]


@pytest.mark.parametrize(
    "notes, ending",
    [
        # Noted before the divergence: the recorded run is blamed, not the iteration.
        ([(2, 7, "outside")], "; the recorded run disturbed from outside at iteration 7"),
        (
            [(2, 6, "cell"), (2, 9, "outside")],
            "; the recorded run shared the generators with a cell from iteration 6; disturbed from outside at iteration 9",
        ),
        # Noted after it: the divergence is reported, the notes after it.
        (
            [(2, 9, "cell")],
            "; first divergence at iteration 7; the recorded run shared the generators with a cell from iteration 9",
        ),
    ],
)
def test_a_replay_report_names_what_the_notes_say(notes, ending):
    setup = Setup()
    setup.trainer.run(setup.loader, max_epochs=2)
    # As a CellGuard leaves them; epoch 2's trace is taken from them at EPOCH_COMPLETED.
    setup.trainer.state.rng_notes = [(1, 2, "cell"), *notes]
    setup.replay._snapshots[2]["trace"] = None
    report = setup.replay.replay_epoch(2, modify=lambda: setup.optimizer.param_groups[0].update(lr=0.5))
    assert report.notes == tuple((iteration, kind) for _, iteration, kind in notes)
    assert report.first_divergent_iteration == 7
    assert str(report).endswith(ending)


def test_a_thread_that_draws_from_the_training_generator_is_named_by_the_replay():
    setup = Setup()
    go, drawn = threading.Event(), threading.Event()

    def other_thread():
        go.wait(60)
        torch.rand(1)  # from the training's generator, after iteration 9's batch was fetched
        drawn.set()

    # After the fetch: before it, the per-batch seeding of the data would wipe the draw out. (GET_BATCH
    # events count by state.iteration, as in ignite: once=8 is the fetch of iteration 9.)
    @setup.trainer.on(Events.GET_BATCH_COMPLETED(once=8))
    def let_it_draw(engine):
        go.set()
        assert drawn.wait(60)

    thread = threading.Thread(target=other_thread)
    thread.start()
    setup.trainer.run(setup.loader, max_epochs=2)
    thread.join()
    assert setup.replay.history.watch_generators
    report = setup.replay.replay_epoch(2)
    assert not report.reproduced
    assert report.notes == ((9, "outside"),)
    assert str(report).endswith("; the recorded run disturbed from outside at iteration 9")
    assert setup.replay.replay_epoch(1).reproduced
