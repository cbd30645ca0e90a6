"""TrainingPanel replay (EpochReplay), the loss plot fed by History or its own recorder, the
timeline view, the throttle, and the log-scale toggle."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from nbengine.engine import Engine, Events
from nbengine.handlers import EpochReplay, History
from nbengine.widgets.loss_source import current_timeline

from ._training import DeterministicMlp, Mlp, wait_until


def png_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def loss_plot_current(panel) -> bool:
    """Whether the loss plot on screen shows what the panel would draw now."""
    return panel.loss_view.schedule.due_in(panel._display.loss_signature(panel.trainer.status), False, 0.0) is None


def test_replay_of_an_epoch_shows_that_it_reproduced(make_panel):
    mlp = DeterministicMlp()
    replay = EpochReplay(mlp.trainer, {"model": mlp.model, "optimizer": mlp.optimizer}, keep_last=3)
    panel = make_panel(mlp.trainer, data=mlp.loader, max_epochs=100_000, replay=replay).start()
    assert panel.history is replay.history
    wait_until(lambda: mlp.trainer.state.epoch >= 4, what="four epochs")
    assert panel.replay_button.disabled  # running
    panel.buttons["pause"].click()
    position = (mlp.trainer.state.epoch, mlp.trainer.state.iteration)
    weights = mlp.weights()
    epochs = list(panel.checkpoints_view.replay_epoch.options)
    assert epochs == replay.epochs and len(epochs) == 3
    completed = [epoch for epoch in epochs if epoch < position[0]]
    panel.checkpoints_view.replay_epoch.value = completed[0]
    assert not panel.replay_button.disabled
    panel.replay_button.click()
    panel.wait(timeout=60)  # the replay runs in the background
    report_html = panel.checkpoints_view.replay_report.value
    assert "reproduced: every batch and every output identical" in report_html
    assert f"<td class='nbengine-replay-epoch'>{completed[0]}</td>" in report_html
    assert "<td class='nbengine-replay-iterations-compared'>10</td>" in report_html
    assert "<td class='nbengine-replay-max-difference'>0.0</td>" in report_html
    # The trainer is where it was: a replay runs on a replica.
    assert (mlp.trainer.state.epoch, mlp.trainer.state.iteration) == position
    assert all((a == b).all() for a, b in zip(mlp.weights(), weights))
    assert not panel.errors


def test_while_an_epoch_is_replayed_the_kernel_is_free_and_the_controls_are_off(make_panel):
    import threading

    armed, inside, release = threading.Event(), threading.Event(), threading.Event()

    def gate(engine):
        # Takes part in replays (replay_handlers); once armed, holds the replay until released.
        if armed.is_set():
            inside.set()
            release.wait(60)

    mlp = DeterministicMlp()
    mlp.trainer.add_event_handler(Events.ITERATION_COMPLETED, gate)
    replay = EpochReplay(mlp.trainer, {"model": mlp.model, "optimizer": mlp.optimizer}, replay_handlers=[gate])
    panel = make_panel(mlp.trainer, data=mlp.loader, max_epochs=3, replay=replay)
    panel.buttons["step_epoch"].click()
    panel.wait(timeout=60)
    panel.buttons["step"].click()
    position, weights = (mlp.trainer.state.epoch, mlp.trainer.state.iteration), mlp.weights()
    panel.checkpoints_view.replay_epoch.value = 1
    armed.set()
    panel.replay_button.click()  # returns at once: the click does not wait for the replay
    assert inside.wait(30), "the replay did not start"
    busy = "epoch 1 is being replayed: its report comes when the replay ends"
    assert all(button.disabled and button.tooltip == busy for button in panel.buttons.values())
    view = panel.checkpoints_view
    assert view.save_button.disabled and view.load_button.disabled and view.replay_button.disabled
    panel.buttons["step"].click()  # a click that gets through anyway is refused, not queued
    assert f"Step is not possible now: {busy}" in panel.message.value
    assert (mlp.trainer.state.epoch, mlp.trainer.state.iteration) == position
    with pytest.raises(TimeoutError, match=r"the replay of epoch 1 is still running after 0.1 s"):
        panel.wait(timeout=0.1)
    release.set()
    panel.wait(timeout=60)
    assert "reproduced: every batch and every output identical" in view.replay_report.value
    wait_until(lambda: not panel.buttons["step"].disabled, what="the controls back on")
    assert not view.replay_button.disabled
    # The replay left the trainer and its objects where they were.
    assert (mlp.trainer.state.epoch, mlp.trainer.state.iteration) == position
    assert all((a == b).all() for a, b in zip(mlp.weights(), weights))
    assert not panel.errors


def test_without_replay_the_replay_part_is_off_with_the_reason(make_panel):
    panel = make_panel(Engine(lambda engine, batch: batch), data=[1], max_epochs=1)
    assert panel.replay_button.disabled
    assert "Replay is off: no epoch replay was given" in panel.checkpoints_view.replay_note.value


def test_the_loss_plot_reads_a_given_history(make_panel):
    mlp = Mlp(batches=5)
    history = History().attach(mlp.trainer)
    panel = make_panel(mlp.trainer, data=mlp.data, max_epochs=3, history=history)
    panel.start().wait(timeout=60)
    data = panel.loss_source.loss_data()
    snapshot = history.snapshot()
    assert data.iterations.tolist() == list(range(1, 16))
    assert data.outputs.tolist() == snapshot.values[:, 0].tolist()
    wait_until(lambda: panel.loss_plot_count >= 1 and loss_plot_current(panel), what="a loss plot of the finished run")
    # Drawn at the size it is shown at most (never stretched): (480, 340) by default.
    assert png_size(panel.loss_image.value) == panel.loss_plot_size[:2] == (480, 340)
    assert panel.loss_image.layout.width == "480px" and panel.loss_image.layout.max_width == "100%"
    # The position the picture shows, as its caption (put on screen with it).
    assert "epoch 3, iteration 15 (COMPLETED)" in panel.loss_view.caption.value


def test_the_own_recorder_and_the_evaluator_metrics_feed_the_loss_plot(make_panel):
    mlp = Mlp(batches=4)
    evaluator = Engine(lambda engine, batch: batch)

    @evaluator.on(Events.COMPLETED)
    def score(engine):
        engine.state.metrics = {"accuracy": 0.5 + 0.1 * mlp.trainer.state.epoch, "label": "not a number"}

    mlp.trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: evaluator.run([0], max_epochs=1))
    panel = make_panel(mlp.trainer, data=mlp.data, max_epochs=3, evaluator=evaluator)
    assert panel.validation_note.value.count("off") == 0
    panel.start().wait(timeout=60)
    data = panel.loss_source.loss_data()
    assert data.iterations.tolist() == list(range(1, 13))
    assert len(data.outputs) == 12 and np.isfinite(data.outputs).all()
    assert list(data.metrics) == ["accuracy"]
    xs, ys = data.metrics["accuracy"]
    assert xs.tolist() == [4.0, 8.0, 12.0] and ys.tolist() == pytest.approx([0.6, 0.7, 0.8])


def test_after_a_load_the_plot_shows_the_run_as_it_stands():
    assert current_timeline(np.array([1, 2, 3, 4, 5, 3, 4, 5, 6.0])).tolist() == [True, True] + [False] * 3 + [True] * 4
    assert current_timeline(np.array([1, 2, 3, 1, 2.0])).tolist() == [False, False, False, True, True]
    assert current_timeline(np.array([])).tolist() == []


def test_log_scale_toggle_redraws_the_loss_plot_on_a_log_axis(make_panel):
    mlp = Mlp(batches=5)
    panel = make_panel(mlp.trainer, data=mlp.data, max_epochs=2)
    panel.start().wait(timeout=60)
    wait_until(lambda: loss_plot_current(panel), what="the final loss plot")
    linear = panel.loss_image.value
    panel.log_scale.value = True
    wait_until(lambda: panel.loss_image.value != linear, what="the loss plot on a log axis")
    logarithmic = panel.loss_image.value
    panel.log_scale.value = False
    wait_until(lambda: panel.loss_image.value not in (logarithmic,), what="the loss plot on a linear axis again")
    assert panel.loss_image.value == linear


def test_plots_are_throttled_by_time_while_running_and_follow_steps_when_paused(make_panel):
    mlp = Mlp()
    # An hour between plot redraws while running: none until the run stops moving.
    panel = make_panel(mlp.trainer, data=mlp.data, max_epochs=100_000, plot_interval=3600.0).start()
    wait_until(lambda: mlp.trainer.state.iteration >= 20, what="20 iterations")
    wait_until(lambda: panel.loss_plot_count >= 1, what="the first drawing")
    drawn = panel.loss_plot_count
    image = panel.loss_image.value
    count = panel.refresh_count
    wait_until(lambda: panel.refresh_count >= count + 4, what="four more refreshes")
    assert not loss_plot_current(panel)  # there is news, but it is not drawn yet
    assert (panel.loss_plot_count, panel.loss_image.value) == (drawn, image)
    panel.buttons["pause"].click()
    wait_until(lambda: panel.loss_image.value != image and loss_plot_current(panel), what="the plot of the paused run")
    after_pause = panel.loss_image.value
    timeline = panel.timeline_view.image.value
    panel.buttons["step"].click()
    # One step: the loss plot and the timeline plot are both redrawn.
    wait_until(lambda: panel.loss_image.value != after_pause, what="the loss plot after the step")
    wait_until(lambda: panel.timeline_view.image.value != timeline, what="the timeline plot after the step")
    assert not panel.errors


def test_while_running_the_loss_plot_is_redrawn_every_interval_and_the_timeline_waits(make_panel):
    mlp = Mlp()
    panel = make_panel(mlp.trainer, data=mlp.data, max_epochs=100_000, plot_interval=0.05).start()
    # Two drawings: the first call of the plot thread (timeline included) is over.
    wait_until(lambda: mlp.trainer.state.iteration >= 20 and panel.loss_plot_count >= 2, what="20 iterations")
    timeline_image = panel.timeline_view.image.value
    seen = set()
    wait_until(lambda: seen.add(panel.loss_image.value) or len(seen) >= 4, what="four drawings while running")
    assert mlp.trainer.status == "running"
    # The timeline plot waits for the run to stop moving.
    assert panel.timeline_view.image.value == timeline_image
    assert not panel.errors


def test_the_timeline_view_lists_recent_events_and_filters_them(make_panel):
    mlp = Mlp(batches=3)

    def log_loss(engine):
        pass

    mlp.trainer.add_event_handler(Events.ITERATION_COMPLETED, log_loss)
    panel = make_panel(mlp.trainer, data=mlp.data, max_epochs=2)
    panel.buttons["step"].click()
    table = panel.timeline_view.table.value
    rows = re.findall(r"<tr class='nbengine-timeline-row'><td>(\d+)</td><td><code>([\w<>]+)</code></td><td>(\d+)</td><td>(\d+)</td><td[^>]*>(.*?)</td>", table)
    # Newest first, at the top where the eye is; event names may break after an underscore.
    assert "<code>iteration_<wbr>completed</code>" in table
    assert [(int(seq), name.replace("<wbr>", ""), int(epoch), int(it)) for seq, name, epoch, it, _ in rows] == [
        (6, "iteration_completed", 1, 1),
        (5, "iteration_started", 1, 1),
        (4, "get_batch_completed", 1, 0),
        (3, "get_batch_started", 1, 0),
        (2, "epoch_started", 1, 0),
        (1, "started", 0, 0),
    ]
    # Each handler on its own line, its full name as the tooltip.
    assert re.fullmatch(r"<span title='test_the_timeline_view_lists_recent_events_and_filters_them\.&lt;locals&gt;\.log_loss'>\d+\.\d{3} log_loss</span>", rows[0][4])
    assert rows[-1][4] == "—"
    assert "6 events recorded; the last 6 are kept" in table
    labels = [label for label, _ in panel.timeline_view.filter.options]
    assert labels == ["all events", "started", "epoch_started", "get_batch_started", "get_batch_completed", "iteration_started", "iteration_completed"]
    panel.buttons["step_epoch"].click()
    panel.wait(30)
    panel.refresh()
    panel.timeline_view.filter.value = "ITERATION_COMPLETED"
    table = panel.timeline_view.table.value
    names = re.findall(r"<td><code>([\w<>]+)</code></td>", table)
    assert [name.replace("<wbr>", "") for name in names] == ["iteration_completed"] * 3
    wait_until(lambda: panel.timeline_view.image.value, what="the timeline plot")
    assert png_size(panel.timeline_view.image.value) == (480, 300)
    assert not panel.errors


def test_history_and_replay_of_another_engine_are_refused(make_panel):
    trainer = Engine(lambda engine, batch: batch)
    other = Engine(lambda engine, batch: batch)
    with pytest.raises(ValueError, match=r"history should be a History attached to the trainer .* attached to <nbengine"):
        make_panel(trainer, history=History().attach(other))
    with pytest.raises(ValueError, match=r"replay should be an EpochReplay of the trainer"):
        make_panel(trainer, replay="replay")
