"""Interrupts, with a real SIGINT (``signal.raise_signal``) in the main thread of a child process
(``_interrupt_child.py``; a KeyboardInterrupt escaping in the pytest process would end the session).

The first SIGINT is a lossless pause: the current handler, process call or fetch finishes, the
outermost driven engine pauses at the next boundary, and its ``run()`` raises KeyboardInterrupt
once. A KeyboardInterrupt raised inside the run (by a handler, or by a second SIGINT) pauses it at
the boundary it was in, the interrupted handler being the unit: continuing calls it again and not the
handlers of its event that had finished. A nested evaluator paused mid-run continues from its next
batch when ``validate`` calls its ``run()`` again. Every run continued with ``run()`` until done has
the handler calls, random draws, batches, outputs, validation accuracies and final weights of the
uninterrupted run, bit for bit. Nothing retries in a loop: a handler that always raises makes each
``run()`` raise once and return."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.engine._interrupt_child import ALWAYS_RUN_CALLS, BATCH, SCENARIOS

CHILD = Path(__file__).with_name("_interrupt_child.py")
REPO = CHILD.parents[2]

pytestmark = [pytest.mark.timeout(600)]

PAUSING = [name for name, plan in SCENARIOS.items() if plan is not None and plan[3] != "always"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every scenario's result, from as few child processes as possible: when one dies or hangs in a
    scenario, that scenario's result says so and a new child runs the rest."""
    folder = tmp_path_factory.mktemp("interrupts")
    found: dict[str, dict] = {}
    remaining = list(SCENARIOS)
    for attempt in range(len(SCENARIOS)):
        if not remaining:
            break
        out = folder / f"results-{attempt}.jsonl"
        try:
            done = subprocess.run(
                [sys.executable, str(CHILD), str(out), *remaining],
                capture_output=True, text=True, timeout=420, cwd=REPO,
            )
            how = f"the child exited with {done.returncode}; stderr: {done.stderr[-3000:]}"
        except subprocess.TimeoutExpired as expired:
            how = f"the child was still running after {expired.timeout} s; stderr: {expired.stderr!r:.3000}"
        entries = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
        found.update((entry["name"], entry) for entry in entries if entry["kind"] == "result")
        remaining = [name for name in remaining if name not in found]
        if remaining:
            found[remaining[0]] = {"name": remaining[0], "error": f"no result: {how}"}
            remaining = remaining[1:]
    return found


def _result(results: dict, name: str) -> dict:
    result = results[name]
    assert "error" not in result, result["error"]
    return result


def _position_of(reference: dict, where: str, event: str, occurrence: int) -> list:
    """(epoch, iteration) of the engine at the occurrence-th completed call of the interrupter there."""
    calls = [call for call in reference["calls"] if call[:3] == [where, "int", event]]
    return calls[occurrence - 1][3:5]


def _expected_pause(reference: dict, plan: tuple) -> tuple[list, list | None]:
    """Where the trainer (and the evaluator, when it is the one interrupted) pause after the interrupt."""
    where, event, occurrence, _ = plan
    if where == "trainer":
        return ["paused", event, *_position_of(reference, "trainer", event, occurrence)], None
    if where == "evaluator":
        # The evaluator runs in the trainer's first EPOCH_COMPLETED: it pauses at its next boundary,
        # and the trainer pauses in EPOCH_COMPLETED with validate to call again.
        epoch, iteration = _position_of(reference, "trainer", "EPOCH_COMPLETED", 1)
        evaluator = ["paused", event, *_position_of(reference, "evaluator", event, occurrence)]
        return ["paused", "EPOCH_COMPLETED", epoch, iteration], evaluator
    if where == "process":  # the process call finishes; the next boundary is its ITERATION_COMPLETED
        iteration = occurrence
        return ["paused", "ITERATION_COMPLETED", *_epoch_and(reference, iteration)], None
    # A fetch for iteration i finishes; the next boundary is its GET_BATCH_COMPLETED (state.iteration i - 1).
    iteration = (occurrence - 1) // BATCH + 1
    return ["paused", "GET_BATCH_COMPLETED", *_epoch_and(reference, iteration - 1, event="GET_BATCH_COMPLETED")], None


def _epoch_and(reference: dict, iteration: int, event: str = "ITERATION_COMPLETED") -> list:
    calls = [call for call in reference["calls"] if call[:3] == ["trainer", "int", event] and call[4] == iteration]
    return calls[0][3:5]


def test_the_uninterrupted_run_validates_every_epoch_and_goes_through_every_boundary(results):
    reference = _result(results, "reference")
    assert reference["keyboard_interrupts"] == 0 and reference["status"] == "done"
    names = {call[2] for call in reference["calls"] if call[0] == "trainer"}
    assert names == {
        "STARTED", "EPOCH_STARTED", "GET_BATCH_STARTED", "GET_BATCH_COMPLETED", "DATALOADER_STOP_ITERATION",
        "ITERATION_STARTED", "ITERATION_COMPLETED", "EPOCH_COMPLETED", "COMPLETED",
    }
    validations = [call for call in reference["calls"] if call[1] == "validate"]
    assert [call[3] for call in validations] == [1, 2, 3]
    assert all(call[5][1] == 4 for call in validations)  # every validation went through its 4 batches
    evaluator_iterations = [call for call in reference["calls"] if call[:3] == ["evaluator", "head", "ITERATION_COMPLETED"]]
    assert len(evaluator_iterations) == 12
    batches = [call[5][3] for call in reference["calls"] if call[:3] == ["trainer", "head", "ITERATION_COMPLETED"]]
    assert len(batches) == 18 and len(set(batches)) == 18  # fetch-time noise: no batch twice alike


@pytest.mark.parametrize("scenario", PAUSING)
def test_interrupted_then_continued_ends_as_the_uninterrupted_run(results, scenario):
    plan = SCENARIOS[scenario]
    reference = _result(results, "reference")
    result = _result(results, scenario)
    trainer_pause, evaluator_pause = _expected_pause(reference, plan)

    assert result["keyboard_interrupts"] == 1, result["positions"]
    assert result["positions"][0] == trainer_pause
    if evaluator_pause is not None:
        assert result["evaluator_positions"][0] == evaluator_pause
    assert result["run_calls"] == 2 and result["status"] == "done"
    assert result["sigint_handler_is_default"]

    action = plan[3]
    if action == "sigint2":
        assert not result["reached_after_second_sigint"]  # the second SIGINT raised at once
    # The interrupter acted once; a call that was cut short was made again, and only that call.
    assert result["interrupter_acted"] == (2 if action in ("sigint2", "raise") else 1)

    assert result["calls"] == reference["calls"]
    for ours, theirs in zip(result["weights"], reference["weights"], strict=True):
        assert torch.equal(torch.tensor(ours), torch.tensor(theirs))


def test_a_handler_that_always_raises_makes_each_run_raise_once_and_return(results):
    result = _result(results, "always-raises-ITERATION_COMPLETED")
    assert result["run_calls"] == ALWAYS_RUN_CALLS
    assert result["keyboard_interrupts"] == ALWAYS_RUN_CALLS
    assert result["interrupter_acted"] == ALWAYS_RUN_CALLS
    assert result["positions"] == [["paused", "ITERATION_COMPLETED", 1, 3]] * ALWAYS_RUN_CALLS
    # The handler before it ran once; the one after it never.
    at_third = [call[:2] for call in result["calls"] if call[2] == "ITERATION_COMPLETED" and call[4] == 3]
    assert at_third == [["trainer", "head"]]
    assert result["sigint_handler_is_default"]
