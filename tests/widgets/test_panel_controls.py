"""TrainingPanel run controls, pressed with ``Button.click()`` against a real background run."""

from __future__ import annotations

import re
import threading
import time

import pytest

from nbengine.engine import Engine, Events
from nbengine.widgets import TrainingPanel
from nbengine.widgets.controls import RUN_CONTROLS, control_reasons

from ._training import Mlp, wait_until

# Built-in events in run order, with the event that follows each inside an epoch of list data.
NEXT_EVENT = {
    "GET_BATCH_STARTED": {"GET_BATCH_COMPLETED", "DATALOADER_STOP_ITERATION"},
    "DATALOADER_STOP_ITERATION": {"GET_BATCH_COMPLETED"},
    "GET_BATCH_COMPLETED": {"ITERATION_STARTED"},
    "ITERATION_STARTED": {"ITERATION_COMPLETED"},
    "ITERATION_COMPLETED": {"GET_BATCH_STARTED", "EPOCH_COMPLETED"},
    "EPOCH_COMPLETED": {"EPOCH_STARTED", "COMPLETED"},
    "EPOCH_STARTED": {"GET_BATCH_STARTED"},
    "STARTED": {"EPOCH_STARTED"},
}


def shown_iteration(panel: TrainingPanel) -> int:
    return int(re.search(r"class='nbengine-iteration'>(\d+)<", panel.state_view.value).group(1))


def shown_status(panel: TrainingPanel) -> str:
    return re.search(r"nbengine-status nbengine-status-(\w+)", panel.status_badge.value).group(1)


def enabled(panel: TrainingPanel) -> set[str]:
    return {name for name, button in panel.buttons.items() if not button.disabled}


def running_panel(make_panel, **kwargs):
    mlp = Mlp()
    panel = make_panel(mlp.trainer, data=mlp.data, max_epochs=100_000, **kwargs).start()
    wait_until(lambda: mlp.trainer.state.iteration >= 30, what="30 iterations")
    return mlp, panel


def paused_panel(make_panel, **kwargs):
    mlp, panel = running_panel(make_panel, **kwargs)
    panel.buttons["pause"].click()
    assert mlp.trainer.status == "paused"
    return mlp, panel


def test_pause_freezes_the_iteration(make_panel):
    mlp, panel = running_panel(make_panel)
    assert shown_status(panel) in ("running",) and enabled(panel) == {"pause", "stop"}
    panel.buttons["pause"].click()
    trainer = mlp.trainer
    assert trainer.status == "paused"
    frozen = trainer.state.iteration
    # Let the refresh thread look several more times: nothing moves any more.
    count = panel.refresh_count
    wait_until(lambda: panel.refresh_count >= count + 3, what="three more refreshes")
    assert trainer.state.iteration == frozen
    assert shown_iteration(panel) == frozen
    assert shown_status(panel) == "paused"
    assert enabled(panel) == {"step", "step_event", "step_epoch", "resume", "stop"}
    assert not panel.errors


def test_step_advances_by_exactly_one_iteration(make_panel):
    mlp, panel = paused_panel(make_panel)
    trainer = mlp.trainer
    for _ in range(3):
        before = trainer.state.iteration
        panel.buttons["step"].click()
        assert trainer.state.iteration == before + 1
        assert trainer.last_event == Events.ITERATION_COMPLETED
        assert trainer.status == "paused"
        assert shown_iteration(panel) == before + 1
    assert not panel.errors


def test_step_event_stops_at_the_next_event(make_panel):
    mlp, panel = paused_panel(make_panel)
    trainer = mlp.trainer
    for _ in range(6):
        before_event = trainer.last_event.name
        before_count = panel.timeline.count
        panel.buttons["step_event"].click()
        assert panel.timeline.count == before_count + 1
        after = panel.timeline.snapshot(last=1)[0]
        assert after.event == trainer.last_event.name
        assert after.event in NEXT_EVENT[before_event]
        assert f"<code class='nbengine-last-event'>{after.event}</code>" in panel.state_view.value
    assert not panel.errors


def test_step_epoch_stops_at_the_end_of_the_epoch(make_panel):
    mlp, panel = paused_panel(make_panel)
    trainer = mlp.trainer
    epoch = trainer.state.epoch
    # The step runs in the background: the click returns at once and the kernel stays free.
    panel.buttons["step_epoch"].click()
    panel.wait(30)
    assert trainer.status == "paused"
    assert trainer.last_event == Events.EPOCH_COMPLETED
    assert (trainer.state.epoch, trainer.state.iteration) == (epoch, epoch * len(mlp.data))
    panel.buttons["step_epoch"].click()
    panel.wait(30)
    assert (trainer.state.epoch, trainer.state.iteration) == (epoch + 1, (epoch + 1) * len(mlp.data))
    panel.refresh()
    assert f"class='nbengine-iteration-in-epoch'>{len(mlp.data)} / {len(mlp.data)}<" in panel.state_view.value
    assert not panel.errors


def test_pause_interrupts_a_step_to_the_end_of_the_epoch(make_panel):
    trainer = Engine(lambda engine, batch: time.sleep(0.005))
    panel = make_panel(trainer, data=list(range(400)), max_epochs=1)
    panel.buttons["step_epoch"].click()
    # The click returned while the epoch runs in the background, so Pause can be pressed.
    assert trainer.status == "running"
    panel.buttons["pause"].click()
    panel.wait(30)
    assert trainer.status == "paused"
    assert 0 < trainer.state.iteration < 400
    assert trainer.last_event != Events.EPOCH_COMPLETED
    assert not panel.errors


def test_resume_continues_in_the_background(make_panel):
    mlp, panel = paused_panel(make_panel)
    trainer = mlp.trainer
    frozen = trainer.state.iteration
    panel.buttons["resume"].click()
    wait_until(lambda: trainer.state.iteration >= frozen + 50, what="the run to go on")
    assert trainer.status == "running"
    wait_until(lambda: shown_iteration(panel) > frozen, what="the panel to show progress")
    assert not panel.errors


def test_stop_ends_a_running_run(make_panel):
    mlp, panel = running_panel(make_panel)
    trainer = mlp.trainer
    panel.buttons["stop"].click()
    assert trainer.status == "done"
    assert trainer.last_event == Events.COMPLETED
    events = [entry.event for entry in panel.timeline.snapshot(last=2)]
    assert events == ["TERMINATE", "COMPLETED"]
    assert shown_status(panel) == "done"
    assert enabled(panel) == {"run", "step", "step_event", "step_epoch"}
    assert not panel.errors


def test_stop_ends_a_paused_run_with_its_last_handlers_in_the_background(make_panel):
    mlp, panel = paused_panel(make_panel)
    ran_in = []
    mlp.trainer.add_event_handler(Events.COMPLETED, lambda: ran_in.append(threading.current_thread().name))
    panel.buttons["stop"].click()
    panel.wait(timeout=30)
    assert mlp.trainer.status == "done"
    assert [entry.event for entry in panel.timeline.snapshot(last=2)] == ["TERMINATE", "COMPLETED"]
    assert ran_in == ["nbengine-run"]  # not the kernel's thread, which the click runs in
    assert "Stopped at epoch" in panel.message.value
    assert not panel.errors


def test_run_starts_again_after_the_end_and_step_starts_from_idle(make_panel):
    mlp = Mlp(batches=4)
    trainer = mlp.trainer
    panel = make_panel(trainer, data=mlp.data, max_epochs=2)
    assert enabled(panel) == {"run", "step", "step_event", "step_epoch"}
    panel.buttons["step"].click()
    assert (trainer.status, trainer.state.iteration) == ("paused", 1)
    panel.buttons["resume"].click()
    panel.wait(timeout=30)
    assert (trainer.status, trainer.state.iteration) == ("done", 8)
    panel.buttons["run"].click()
    panel.wait(timeout=30)
    # A finished run starts again from the beginning with the same settings.
    assert (trainer.status, trainer.state.epoch, trainer.state.iteration) == ("done", 2, 8)
    assert not panel.errors


def test_a_failing_process_function_turns_the_status_red_and_wait_raises(make_panel):
    mlp = Mlp(fail_at=40)
    panel = make_panel(mlp.trainer, data=mlp.data, max_epochs=100).start()
    with pytest.raises(ValueError, match=r"^bad batch at iteration 40$"):
        panel.wait(timeout=60)
    # Whoever waited first, the failure stays with the trainer: its own wait() raises it too.
    with pytest.raises(ValueError, match=r"^bad batch at iteration 40$"):
        mlp.trainer.wait(timeout=60)
    assert mlp.trainer.status == "failed"
    wait_until(lambda: shown_status(panel) == "failed", what="the red status")
    assert "background:#c62828" in panel.status_badge.value
    view = panel.state_view.value
    assert "ValueError: bad batch at iteration 40" in view
    assert "Traceback (most recent call last)" in view and "raise ValueError" in view
    # After a failure the run can be continued from where it stood, or started again.
    assert enabled(panel) == {"run", "step", "step_event", "step_epoch"}


def test_a_failure_during_a_step_click_is_shown_not_raised(make_panel):
    mlp = Mlp(fail_at=3)
    panel = make_panel(mlp.trainer, data=mlp.data, max_epochs=1)
    panel.buttons["step"].click()
    panel.buttons["step"].click()
    panel.buttons["step"].click()
    assert mlp.trainer.status == "failed"
    assert [type(error) for error in panel.errors] == [ValueError]
    assert "Step failed: ValueError: bad batch at iteration 3" in panel.message.value
    assert "ValueError: bad batch at iteration 3" in panel.state_view.value


def test_pressing_a_control_that_is_not_enabled_says_why_and_does_nothing(make_panel):
    mlp, panel = paused_panel(make_panel)
    iteration = mlp.trainer.state.iteration
    panel.buttons["pause"].click()
    assert "Pause is not possible now: nothing to pause: the engine is paused" in panel.message.value
    panel.buttons["run"].click()
    assert "Run is not possible now: the run is paused: Resume, Step or Stop it" in panel.message.value
    assert (mlp.trainer.status, mlp.trainer.state.iteration) == ("paused", iteration)
    assert not panel.errors


def test_without_data_run_and_step_are_off_with_the_reason(make_panel):
    panel = make_panel(Engine(lambda engine, batch: batch))
    assert enabled(panel) == set()
    assert panel.buttons["run"].tooltip.startswith("the panel has no data to run")
    panel.start(data=[1, 2, 3], max_epochs=1)
    panel.wait(timeout=30)
    assert panel.trainer.state.iteration == 3
    assert enabled(panel) == {"run", "step", "step_event", "step_epoch"}


@pytest.mark.parametrize(
    ("status", "can_start", "expected_enabled"),
    [
        ("idle", True, {"run", "step", "step_event", "step_epoch"}),
        ("idle", False, set()),
        ("running", True, {"pause", "stop"}),
        ("paused", True, {"step", "step_event", "step_epoch", "resume", "stop"}),
        ("paused", False, {"step", "step_event", "step_epoch", "resume", "stop"}),
        ("done", True, {"run", "step", "step_event", "step_epoch"}),
        ("failed", True, {"run", "step", "step_event", "step_epoch"}),
        ("failed", False, set()),
    ],
)
def test_control_rule_table(status, can_start, expected_enabled):
    reasons = control_reasons(status, can_start=can_start, cannot_start_reason="no data")
    assert set(reasons) == set(RUN_CONTROLS)
    assert {name for name, reason in reasons.items() if reason is None} == expected_enabled
    if not can_start and status in ("idle", "failed"):
        assert reasons["run"] == "no data"


def test_control_rule_table_refuses_an_unknown_status():
    with pytest.raises(ValueError, match=r"status should be one of .* got 'sleeping'"):
        control_reasons("sleeping", can_start=True)


def test_iteration_in_the_epoch_is_right_after_terminate_epoch_and_after_stop_then_run(make_panel):
    mlp = Mlp(batches=10)

    @mlp.trainer.on(Events.ITERATION_COMPLETED)
    def cut_the_first_epoch_short(engine):
        if engine.state.epoch == 1 and engine.state.iteration == 4:
            engine.terminate_epoch()

    panel = make_panel(mlp.trainer, data=mlp.data, max_epochs=5)
    panel.buttons["step_epoch"].click()
    panel.wait(30)
    for _ in range(3):
        panel.buttons["step"].click()
    # Epoch 2 began at iteration 4, after the first epoch was cut short: 3 iterations into it.
    assert mlp.trainer.state.epoch == 2 and mlp.trainer.state.iteration == 7
    assert "<span class='nbengine-iteration-in-epoch'>3 / 10</span>" in panel.state_view.value
    panel.buttons["stop"].click()
    panel.wait(30)
    # A stopped run continues, as in ignite, with the next epoch: epoch 3 begins at iteration 7.
    panel.buttons["step"].click()
    panel.refresh()
    assert (mlp.trainer.state.epoch, mlp.trainer.state.iteration) == (3, 8)
    assert "<span class='nbengine-iteration-in-epoch'>1 / 10</span>" in panel.state_view.value
    assert not panel.errors
