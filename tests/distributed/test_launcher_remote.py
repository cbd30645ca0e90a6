"""``RemoteRun`` and ``RankReport`` on one process: the ranks' side (a ``DistributedControl`` driven in a
thread, as a rank drives it) and the controller's side share an in-memory store, so the requests and
reports are checked exactly, without starting processes. The multi-process path is covered by
``tests/widgets/test_ranks_panel_kernel.py`` and ``tests/test_notebooks.py::test_04_two_processes``."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from nbengine.distributed import DistributedControl
from nbengine.distributed.remote import RankReport, RemoteRun
from nbengine.engine import Engine, Events
from nbengine.metrics import RunningAverage
from nbengine.widgets.ranks_panel import ranks_table_html

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def rank():
    """A one-rank job: an engine whose output is the iteration as a tensor, its control and report,
    driven by ``control.run`` in a thread until the test stops it."""
    engine = Engine(lambda engine, batch: torch.tensor(float(engine.state.iteration)))
    saves: list[int] = []
    control = DistributedControl(engine, checkpoint=lambda engine: saves.append(engine.state.iteration))
    RunningAverage(output_transform=lambda output: output, alpha=0.5).attach(engine, "smoothed")
    report = RankReport(control, interval=0.01)
    remote = RemoteRun(control.log.store, 1, timeout=10)
    remote.pause()
    failures: list[BaseException] = []

    def drive() -> None:
        try:
            control.run(range(10), max_epochs=1000)
        except BaseException as error:  # noqa: BLE001 - handed to the test below
            failures.append(error)

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    yield remote, report, saves
    remote.stop()
    thread.join(60)
    assert not thread.is_alive() and failures == []


def test_requests_from_the_controller_pause_step_save_and_resume_the_rank(rank):
    remote, _, saves = rank
    (paused,) = remote.all_paused()
    at = paused["iteration"]
    remote.step()
    (stepped,) = remote.wait_until(lambda ranks: ranks[0]["iteration"] == at + 1 and ranks[0]["status"] == "paused")
    assert stepped == {"status": "paused", "epoch": (at + 1 - 1) // 10 + 1, "iteration": at + 1}
    remote.step(until=Events.EPOCH_COMPLETED)
    (epoch_end,) = remote.wait_until(lambda ranks: ranks[0]["iteration"] % 10 == 0 and ranks[0]["status"] == "paused")
    assert epoch_end["iteration"] == (at + 1 + 9) // 10 * 10
    remote.save()
    remote.wait_until(lambda ranks: saves != [])
    assert saves == [epoch_end["iteration"]]
    remote.resume()
    remote.wait_until(lambda ranks: ranks[0]["status"] == "running" and ranks[0]["iteration"] > epoch_end["iteration"])


def test_rank_zero_reports_every_output_and_its_recent_events(rank):
    remote, report, _ = rank
    (paused,) = remote.all_paused()
    remote.step(3)
    remote.wait_until(lambda ranks: ranks[0]["iteration"] == paused["iteration"] + 3)
    iterations, outputs = remote.outputs()
    assert iterations == list(range(1, paused["iteration"] + 4))
    assert outputs == [float(i) for i in iterations]
    # The smoothed output (alpha 0.5 over 1, 2, 3, ...) changes at every iteration.
    smoothed, expected = [], 0.0
    for iteration in iterations:
        expected = float(iteration) if iteration == 1 else 0.5 * expected + 0.5 * iteration
        smoothed.append(expected)
    # (The engine's output is a float32 tensor, so the average is computed in float32.)
    ((name, (at, values)),) = remote.metrics().items()
    assert (name, at) == ("smoothed", iterations)
    assert values == pytest.approx(smoothed, rel=1e-6)
    events = remote.events()
    assert [(name, iteration) for _, name, _, iteration, _ in events[-2:]] == [
        ("ITERATION_STARTED", paused["iteration"] + 3), ("ITERATION_COMPLETED", paused["iteration"] + 3)]
    # The handlers of the last event, with their times, in the order they ran.
    handlers = [name for name, _ in events[-1][4]]
    assert handlers == ["DistributedControl._at_iteration_completed", "RunningAverage.iteration_completed",
                        "Metric.completed", "RankReport._at_iteration"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"n": 1, "events": 2}, "step\\(\\) takes one of n=, until= or events=, got n, events"),
        ({"n": 0}, "Argument n should be a positive integer, but given 0"),
        ({"events": True}, "Argument events should be a positive integer, but given True"),
        ({"until": "EPOCH_DONE"}, "Argument until should be an Events member or its name, but given 'EPOCH_DONE'"),
    ],
)
def test_bad_step_requests_are_refused_before_they_reach_the_log(arguments, message):
    import torch.distributed as dist

    store = dist.HashStore()
    store.set("nbengine/current", "run")
    remote = RemoteRun(store, 2)
    with pytest.raises(ValueError, match=message):
        remote.step(**arguments)
    assert remote.log.count() == 0


def test_save_and_replay_are_refused_when_the_job_cannot_serve_them(rank):
    remote, _, _ = rank
    assert remote.abilities() == {"save": True, "load": False, "replay": False, "checkpoints": None}
    with pytest.raises(RuntimeError, match=r"this job cannot replay: its DistributedControl was made without replay="):
        remote.replay(1)
    # A checkpoint that is a plain function cannot be loaded back: Load is refused too.
    with pytest.raises(RuntimeError, match=r"this job cannot load: its DistributedControl was made without a "
                                           r"Checkpoint as checkpoint= or load="):
        remote.load("checkpoint_3.pt")
    assert remote.checkpoints() == []


def test_the_state_table_shows_each_rank_and_the_ones_not_reported_yet():
    table = ranks_table_html([{"status": "paused", "epoch": 2, "iteration": 37}, None])
    assert "<th>rank 0</th>" in table and "<th>rank 1</th>" in table
    assert "nbengine-status-paused" in table and "nbengine-status-starting" in table
    assert "class='nbengine-epoch'>2<" in table and "class='nbengine-iteration'>37<" in table


@pytest.mark.timeout(400)
def test_two_ranks_load_a_checkpoint_from_the_controller_and_rank_one_reports_its_events_on_demand(tmp_path):
    from nbengine.distributed.notebook_launcher import launch
    from tests.distributed._digits_job import train

    job = launch(train, (str(tmp_path), 1000), nproc_per_node=2)
    try:
        remote = RemoteRun.of(job, timeout=240)
        assert remote.abilities() == {"save": True, "load": True, "replay": True,
                                      "checkpoints": str(tmp_path / "checkpoints")}
        remote.pause()
        paused = remote.all_paused()
        assert paused[0] == paused[1]
        # Rank 1 traces nothing until asked; asked, it reports its events with their handler times.
        assert remote.events(1) == []
        remote.trace([1])
        remote.resume()
        deadline = time.monotonic() + 240
        while not any(name == "ITERATION_COMPLETED" for _, name, _, _, _ in remote.events(1)):
            assert time.monotonic() < deadline, "rank 1 did not report its events"
            time.sleep(0.05)
        completed = [event for event in remote.events(1) if event[1] == "ITERATION_COMPLETED"][-1]
        # (History records each batch for the EpochReplay.)
        assert [name for name, _ in completed[4]] == ["History._on_iteration_completed",
                                                      "DistributedControl._at_iteration_completed",
                                                      "RankReport._at_iteration"]
        remote.trace([])
        remote.pause()
        at = remote.all_paused()[0]["iteration"]
        remote.save()
        deadline = time.monotonic() + 240
        while not remote.checkpoints():
            assert time.monotonic() < deadline, "no checkpoint was written"
            time.sleep(0.05)
        (saved,) = remote.checkpoints()
        assert (saved.path.name, saved.iteration) == (f"checkpoint_{at}.pt", at)
        remote.step(3)
        remote.wait_until(lambda ranks: all(r["status"] == "paused" and r["iteration"] == at + 3 for r in ranks))
        outcomes = remote.result(remote.load(str(saved.path)), timeout=240)
        assert [(o["rank"], o["loaded"], o["error"], o["iteration"]) for o in outcomes] == [
            (0, True, None, at), (1, True, None, at)]
        back = remote.wait_until(lambda ranks: all(r["status"] == "paused" and r["iteration"] == at for r in ranks))
        assert back[0] == back[1]
        remote.step(1)
        remote.wait_until(lambda ranks: all(r["status"] == "paused" and r["iteration"] == at + 1 for r in ranks))
        remote.stop()
        first, second = job.wait(240)
        assert all(torch.equal(first[name], second[name]) for name in first)
    finally:
        job.stop(grace=1.0)
