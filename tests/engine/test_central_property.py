"""The central property: however a run is paused, stepped, interrupted or driven from another thread,
it ends with the same batches, outputs and bit-identical weights as one uninterrupted run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch

from nbengine.engine import Events

from ._training import Training, make_batches

MAX_EPOCHS = 3


@pytest.fixture(scope="module")
def batches():
    return make_batches()


@pytest.fixture(scope="module")
def reference(batches):
    training = Training()
    training.engine.run(batches, max_epochs=MAX_EPOCHS)
    assert len(training.batch_ids) == len(batches) * MAX_EPOCHS
    return training


def assert_same_run(training: Training, reference: Training) -> None:
    assert training.engine.status == "done"
    assert training.batch_ids == reference.batch_ids
    assert training.outputs == reference.outputs
    for ours, theirs in zip(training.weights(), reference.weights(), strict=True):
        assert torch.equal(ours, theirs)


BOUNDARIES = [
    Events.STARTED,
    Events.EPOCH_STARTED,
    Events.GET_BATCH_STARTED,
    Events.GET_BATCH_COMPLETED,
    Events.ITERATION_STARTED,
    Events.ITERATION_COMPLETED,
    Events.DATALOADER_STOP_ITERATION,
    Events.EPOCH_COMPLETED,
]


@pytest.mark.parametrize("boundary", BOUNDARIES, ids=lambda e: e.name)
def test_paused_at_every_occurrence_of_a_boundary(boundary, batches, reference):
    training = Training()
    training.engine.add_event_handler(boundary, lambda engine: engine.pause())
    pauses = 0
    training.engine.run(batches, max_epochs=MAX_EPOCHS)
    while training.engine.status == "paused":
        assert training.engine.last_event == boundary
        pauses += 1
        training.engine.run()
    assert pauses >= 1
    assert_same_run(training, reference)


@pytest.mark.parametrize("boundary", [Events.ITERATION_COMPLETED, Events.GET_BATCH_STARTED, Events.EPOCH_COMPLETED], ids=lambda e: e.name)
def test_paused_then_continued_by_step(boundary, batches, reference):
    training = Training()
    training.engine.add_event_handler(boundary(every=2), lambda engine: engine.pause())
    training.engine.run(batches, max_epochs=MAX_EPOCHS)
    while training.engine.status == "paused":
        training.engine.step()
    assert_same_run(training, reference)


STEP_MODES = {
    "step()": dict(),
    "step(3)": dict(n=3),
    "step(until=EPOCH_COMPLETED)": dict(until=Events.EPOCH_COMPLETED),
    "step(until=ITERATION_COMPLETED(every=5))": dict(until=Events.ITERATION_COMPLETED(every=5)),
    "step(until=GET_BATCH_STARTED)": dict(until=Events.GET_BATCH_STARTED),
    "step(events=1)": dict(events=1),
    "step(events=7)": dict(events=7),
}


@pytest.mark.parametrize("mode", sorted(STEP_MODES))
def test_stepped_in_every_mode(mode, batches, reference):
    training = Training()
    kwargs = STEP_MODES[mode]
    training.engine.step(data=batches, max_epochs=MAX_EPOCHS, **kwargs)
    steps = 1
    while training.engine.status == "paused":
        training.engine.step(**kwargs)
        steps += 1
    assert steps > 1
    assert_same_run(training, reference)


def test_step_stops_exactly_where_asked(batches):
    engine = Training().engine
    engine.step(data=batches, max_epochs=MAX_EPOCHS)
    assert (engine.state.iteration, engine.last_event) == (1, Events.ITERATION_COMPLETED)
    engine.step(4)
    assert (engine.state.iteration, engine.last_event) == (5, Events.ITERATION_COMPLETED)
    engine.step(events=1)
    assert (engine.state.iteration, engine.last_event) == (5, Events.GET_BATCH_STARTED)
    engine.step(until=Events.EPOCH_COMPLETED)
    assert (engine.state.epoch, engine.state.iteration, engine.last_event) == (1, 7, Events.EPOCH_COMPLETED)
    engine.step(until=Events.ITERATION_COMPLETED(every=5))
    assert (engine.state.iteration, engine.last_event) == (10, Events.ITERATION_COMPLETED)
    engine.step(until=Events.EPOCH_STARTED)
    assert (engine.state.epoch, engine.state.iteration, engine.last_event) == (3, 14, Events.EPOCH_STARTED)
    engine.step(until=Events.COMPLETED)
    assert (engine.status, engine.last_event) == ("paused", Events.COMPLETED)
    engine.step()
    assert engine.status == "done"


def test_background_run_paused_and_resumed_hundreds_of_times(batches):
    long_epochs = 60
    reference = Training()
    reference.engine.run(batches, max_epochs=long_epochs)
    training = Training()
    engine = training.engine
    engine.start(batches, max_epochs=long_epochs)
    pauses = 0
    seen_iterations = set()
    while True:
        engine.pause()
        engine.wait(30)
        if engine.status == "done":
            break
        assert engine.status == "paused"
        seen_iterations.add(engine.state.iteration)
        pauses += 1
        # Resumed from another thread, as a button click would.
        resumer = threading.Thread(target=engine.resume)
        resumer.start()
        resumer.join()
    assert pauses >= 200
    assert len(seen_iterations) > 100
    assert_same_run(training, reference)


def test_background_pause_from_a_handler_then_run_in_foreground(batches, reference):
    training = Training()
    training.engine.add_event_handler(Events.ITERATION_COMPLETED(once=9), lambda e: e.pause())
    training.engine.start(batches, max_epochs=MAX_EPOCHS)
    training.engine.wait(30)
    assert (training.engine.status, training.engine.state.iteration) == ("paused", 9)
    training.engine.run()
    assert_same_run(training, reference)


SIGINT_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys, threading, time
    sys.path.insert(0, {tests_dir!r})
    import torch
    torch.set_num_threads(1)
    from tests.engine._training import Training, make_batches

    batches = make_batches()
    reference = Training()
    reference.engine.run(batches, max_epochs=3)

    def slow(engine):
        time.sleep(0.02)

    training = Training(process_hook=slow)
    interrupts = []
    pid = os.getpid()

    def send(times):
        for index in range(times):
            if index:
                time.sleep(0.05)  # two signals sent at once reach Python's handler once
            os.kill(pid, signal.SIGINT)

    {scenario}
    print(json.dumps({{"reference": reference.summary(), "run": training.summary(),
                       "interrupts": interrupts, "process_calls": training.process_calls,
                       "reference_calls": reference.process_calls}}))
    """
)

FIRST_CTRL_C = """
# A timer thread sends SIGINT while the process function is inside iterations 4, 10 and 17.
inside = threading.Event()

def slow_at_some_iterations(engine):
    if engine.state.iteration in (4, 10, 17):
        inside.set()
        time.sleep(0.3)

def timer():
    for _ in range(3):
        inside.wait()
        inside.clear()
        time.sleep(0.02)
        send(1)

training = Training(process_hook=slow_at_some_iterations)
threading.Thread(target=timer, daemon=True).start()
try:
    training.engine.run(batches, max_epochs=3)
except KeyboardInterrupt as exc:
    interrupts.append([training.engine.status, training.engine.state.iteration, str(exc)])
while training.engine.status != "done":
    try:
        training.engine.run()
    except KeyboardInterrupt as exc:
        interrupts.append([training.engine.status, training.engine.state.iteration, str(exc)])
"""

SECOND_CTRL_C = """
def hard(engine):
    if engine.state.iteration == 5 and not interrupts:
        threading.Timer(0.005, send, args=(2,)).start()
    time.sleep(0.5 if engine.state.iteration == 5 and not interrupts else 0.0)

training = Training(process_hook=hard)
try:
    training.engine.run(batches, max_epochs=3)
except KeyboardInterrupt as exc:
    interrupts.append([training.engine.status, training.engine.state.iteration, repr(exc)])
training.engine.run()
"""


def run_sigint_script(scenario: str, tmp_path: Path) -> dict:
    tests_dir = str(Path(__file__).resolve().parent.parent.parent)
    script = tmp_path / "sigint_run.py"
    script.write_text(SIGINT_SCRIPT.format(tests_dir=tests_dir, scenario=textwrap.indent(scenario, "")))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_ctrl_c_is_a_lossless_pause(tmp_path):
    report = run_sigint_script(FIRST_CTRL_C, tmp_path)
    # Each interrupt lets its iteration finish and pauses at the next boundary, ITERATION_COMPLETED.
    assert [(status, iteration) for status, iteration, _ in report["interrupts"]] == [
        ("paused", 4), ("paused", 10), ("paused", 17)
    ]
    for _status, iteration, message in report["interrupts"]:
        assert message.startswith(f"run paused by interrupt at epoch {(iteration - 1) // 7 + 1}, iteration {iteration}")
    assert report["run"]["status"] == "done"
    for key in ("batch_ids", "outputs", "weights"):
        assert report["run"][key] == report["reference"][key]
    # Every batch went through the process function exactly once.
    assert report["process_calls"] == report["reference_calls"]


def test_second_ctrl_c_raises_at_once_and_the_run_stays_resumable(tmp_path):
    report = run_sigint_script(SECOND_CTRL_C, tmp_path)
    # It is raised inside the process function of iteration 5; the run stands at ITERATION_STARTED.
    assert report["interrupts"] == [[
        "paused", 5,
        "KeyboardInterrupt('run paused by interrupt at epoch 1, iteration 5 (Events.ITERATION_STARTED); "
        "call run() or step() to continue')",
    ]]
    assert report["run"]["status"] == "done"
    assert report["run"]["batch_ids"] == report["reference"]["batch_ids"]
    # The interrupted unit, the process call of iteration 5, is made again with the same batch (it
    # reaches the process function twice), and every other batch once.
    calls = report["process_calls"]
    reference_calls = report["reference_calls"]
    assert calls[:5] + calls[6:] == reference_calls
    assert calls[4] == calls[5]
