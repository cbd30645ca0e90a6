"""TrainingPanel checkpoints: Save during a real background run, the listing, Load; parts that are off."""

from __future__ import annotations

import shutil

import pytest
import torch

from nbengine.engine import Engine, Events
from nbengine.handlers import Checkpoint, DiskSaver, load_checkpoint

from ._training import Mlp, wait_until


def make_checkpoint(mlp: Mlp, folder) -> Checkpoint:
    to_save = {"trainer": mlp.trainer, "model": mlp.model, "optimizer": mlp.optimizer}
    return Checkpoint(to_save, DiskSaver(folder, create_dir=True), n_saved=None)


def test_save_during_a_background_run_creates_a_listed_checkpoint(make_panel, tmp_path):
    mlp = Mlp()
    checkpoint = make_checkpoint(mlp, tmp_path / "ckpt")
    panel = make_panel(mlp.trainer, data=mlp.data, max_epochs=100_000, checkpoint=checkpoint).start()
    wait_until(lambda: mlp.trainer.state.iteration >= 20, what="20 iterations")
    assert panel.checkpoints_view.checkpoints.options == ()
    assert panel.load_button.disabled  # running: Load waits for a pause
    panel.save_button.click()
    dropdown = panel.checkpoints_view.checkpoints
    wait_until(lambda: len(dropdown.options) == 1, what="the checkpoint in the dropdown")
    (path,) = [value for _, value in dropdown.options]
    assert dropdown.value == path
    (info,) = checkpoint.list_checkpoints()
    assert str(info.path) == path and info.path.exists()
    label = dropdown.options[0][0]
    assert label.startswith(f"epoch {info.epoch} · iter {info.iteration} · ") and label.endswith(info.path.name)
    assert "Saved " in panel.message.value
    assert mlp.trainer.status == "running"
    assert not panel.errors


def test_load_restores_the_saved_state(make_panel, tmp_path):
    mlp = Mlp()
    checkpoint = make_checkpoint(mlp, tmp_path / "ckpt")
    panel = make_panel(mlp.trainer, data=mlp.data, max_epochs=100_000, checkpoint=checkpoint).start()
    wait_until(lambda: mlp.trainer.state.iteration >= 20, what="20 iterations")
    panel.buttons["pause"].click()
    saved_iteration = mlp.trainer.state.iteration
    saved_weights = mlp.weights()
    panel.save_button.click()  # paused: saved at once, in this thread
    assert [info.iteration for info in checkpoint.list_checkpoints()] == [saved_iteration]
    assert not panel.load_button.disabled

    for _ in range(5):
        panel.buttons["step"].click()
    assert mlp.trainer.state.iteration == saved_iteration + 5
    assert not all(torch.equal(a, b) for a, b in zip(mlp.weights(), saved_weights))

    panel.load_button.click()
    trainer = mlp.trainer
    # A state saved mid-epoch is restored at that iteration; the panel shows it paused, Resume on.
    assert (trainer.status, trainer.state.iteration) == ("idle", saved_iteration)
    assert "nbengine-status-paused" in panel.status_badge.value
    assert not panel.buttons["resume"].disabled and panel.buttons["pause"].disabled
    assert all(torch.equal(a, b) for a, b in zip(mlp.weights(), saved_weights))
    stored = load_checkpoint(panel.checkpoints_view.checkpoints.value)
    assert all(torch.equal(mlp.model.state_dict()[k], v) for k, v in stored["model"].items())
    assert "Loaded " in panel.message.value
    assert not panel.load_button.disabled
    # Step continues from the loaded state.
    panel.buttons["step"].click()
    assert trainer.state.iteration == saved_iteration + 1
    assert not panel.errors


def test_load_is_refused_while_running(make_panel, tmp_path):
    mlp = Mlp()
    checkpoint = make_checkpoint(mlp, tmp_path / "ckpt")
    panel = make_panel(mlp.trainer, data=mlp.data, max_epochs=100_000, checkpoint=checkpoint)
    panel.save_button.click()  # idle: saves at once
    panel.start()
    wait_until(lambda: mlp.trainer.state.iteration >= 10, what="10 iterations")
    assert panel.load_button.disabled
    assert panel.load_button.tooltip == "Load is possible while the run stands still: Pause it first"
    before = mlp.trainer.state.iteration
    panel.load_button.click()
    assert "Load is possible only while the run stands still: Pause it first" in panel.message.value
    assert mlp.trainer.status == "running" and mlp.trainer.state.iteration >= before
    assert not panel.errors


def test_a_failing_save_is_shown_in_the_panel(make_panel, tmp_path):
    mlp = Mlp()
    folder = tmp_path / "gone"
    checkpoint = make_checkpoint(mlp, folder)
    panel = make_panel(mlp.trainer, data=mlp.data, max_epochs=1, checkpoint=checkpoint)
    shutil.rmtree(folder)
    panel.save_button.click()
    assert [type(error) for error in panel.errors] == [FileNotFoundError]
    assert "Save failed: FileNotFoundError" in panel.message.value
    assert panel.checkpoints_view.checkpoints.options == ()


def test_without_checkpoint_or_evaluator_those_parts_are_off_with_the_reason(make_panel):
    panel = make_panel(Engine(lambda engine, batch: batch), data=[1, 2], max_epochs=1)
    assert panel.save_button.disabled and panel.load_button.disabled and panel.replay_button.disabled
    assert panel.checkpoints_view.checkpoints.disabled
    assert "Checkpoints are off: no checkpoint handler was given" in panel.checkpoints_view.checkpoint_note.value
    assert "Validation metrics are off: no evaluator was given" in panel.validation_note.value
    panel.buttons["run"].click()
    panel.wait(timeout=30)
    assert panel.trainer.status == "done"
    panel.refresh()
    assert not panel.errors


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"trainer": object()}, TypeError, r"trainer should be an nbengine Engine, got <object object .*> of type object"),
        ({"evaluator": "eval"}, TypeError, r"evaluator should be an nbengine Engine or None, got 'eval' of type str"),
        ({"checkpoint": "ckpt"}, TypeError, r"checkpoint should be an nbengine Checkpoint or None, got 'ckpt' of type str"),
        ({"data": 3}, TypeError, r"data should be an iterable .* got 3 of type int"),
        ({"max_epochs": 0}, ValueError, r"max_epochs should be a positive integer or None, got 0"),
        ({"max_epochs": 2, "max_iters": 5}, ValueError, r"max_epochs and max_iters are mutually exclusive"),
        ({"refresh_interval": 0}, ValueError, r"refresh_interval should be a number greater than 0, got 0"),
        ({"plot_budget": 2}, ValueError, r"plot_budget should be a number greater than 0 and at most 1.0, got 2"),
        ({"key": 5}, TypeError, r"key should be a str or None, got 5 of type int"),
        ({"timeline_capacity": -1}, ValueError, r"capacity should be a positive integer number of events, got -1"),
        ({"plot_size": (480, 340)}, ValueError, r"plot_size should be \(width, height, dpi\) in positive integers, got \(480, 340\)"),
        ({"guard_cells": "yes"}, TypeError, r"guard_cells should be True or False, got 'yes' of type str"),
    ],
)
def test_bad_arguments_are_refused_with_a_message(make_panel, kwargs, error, match):
    trainer = kwargs.pop("trainer", Engine(lambda engine, batch: batch))
    with pytest.raises(error, match=match):
        make_panel(trainer, **kwargs)


def test_a_checkpoint_without_a_disk_saver_is_refused(make_panel):
    trainer = Engine(lambda engine, batch: batch)
    checkpoint = Checkpoint({"trainer": trainer}, lambda checkpoint, filename: None)
    with pytest.raises(TypeError, match=r"checkpoint should save through a DiskSaver .* save_handler is <function"):
        make_panel(trainer, checkpoint=checkpoint)


def test_the_evaluator_must_be_another_engine(make_panel):
    trainer = Engine(lambda engine, batch: batch)
    with pytest.raises(ValueError, match=r"evaluator should be another engine than trainer"):
        make_panel(trainer, evaluator=trainer)


def make_rotating_checkpoint(mlp: Mlp, folder, n_saved: int = 2) -> Checkpoint:
    to_save = {"trainer": mlp.trainer, "model": mlp.model, "optimizer": mlp.optimizer}
    return Checkpoint(to_save, DiskSaver(folder, create_dir=True), n_saved=n_saved)


def test_a_checkpoint_saved_with_the_button_survives_the_rotation_of_the_periodic_ones(make_panel, tmp_path):
    mlp = Mlp(batches=4)
    checkpoint = make_rotating_checkpoint(mlp, tmp_path / "ckpt", n_saved=2)
    mlp.trainer.add_event_handler(Events.EPOCH_COMPLETED, checkpoint)
    panel = make_panel(mlp.trainer, data=mlp.data, max_epochs=6, checkpoint=checkpoint)
    panel.buttons["step"].click()
    panel.save_button.click()
    manual = panel.checkpoints_view.checkpoints.value
    assert manual.endswith("manual_checkpoint_1.pt")
    panel.buttons["resume"].click()
    panel.wait(60)
    panel.refresh()
    listed = [value.rsplit("/", 1)[-1] for _, value in panel.checkpoints_view.checkpoints.options]
    # The rotation kept the last two epoch checkpoints and never touched the button's.
    assert listed == ["checkpoint_24.pt", "checkpoint_20.pt", "manual_checkpoint_1.pt"]
    # The newest is selected once the one saved with the button is no longer the latest event.
    assert panel.checkpoints_view.checkpoints.value.endswith("checkpoint_24.pt")
    assert not panel.errors


def test_the_dropdown_selects_the_checkpoint_just_saved_or_loaded_and_lists_only_this_handlers(make_panel, tmp_path):
    folder = tmp_path / "ckpt"
    mlp = Mlp()
    stranger = Mlp()
    # Another run's file in the same folder: not listed.
    Checkpoint({"model": stranger.model}, DiskSaver(folder, create_dir=True), filename_prefix="other")(stranger.trainer)
    to_save = {"trainer": mlp.trainer, "model": mlp.model, "optimizer": mlp.optimizer}
    checkpoint = Checkpoint(to_save, DiskSaver(folder, require_empty=False), n_saved=None)
    panel = make_panel(mlp.trainer, data=mlp.data, max_epochs=100, checkpoint=checkpoint)
    dropdown = panel.checkpoints_view.checkpoints
    assert dropdown.options == ()
    for _ in range(3):
        panel.buttons["step"].click()
    panel.save_button.click()
    first = dropdown.value
    for _ in range(2):
        panel.buttons["step"].click()
    panel.save_button.click()
    second = dropdown.value
    assert (first.rsplit("/", 1)[-1], second.rsplit("/", 1)[-1]) == ("manual_checkpoint_3.pt", "manual_checkpoint_5.pt")
    assert [value for _, value in dropdown.options] == [second, first]
    # Load the older one: it stays selected, the run stands paused there with Resume on.
    dropdown.value = first
    panel.load_button.click()
    assert mlp.trainer.state.iteration == 3 and dropdown.value == first
    assert "nbengine-status-paused" in panel.status_badge.value and not panel.buttons["resume"].disabled
    # Saving again at a saved position writes nothing and says so.
    panel.save_button.click()
    assert "Already saved at this position" in panel.message.value and "nothing overwritten" in panel.message.value
    assert len(dropdown.options) == 2
    panel.buttons["resume"].click()
    panel.wait(60)
    assert mlp.trainer.state.iteration == 100 * 10
    assert not panel.errors


def test_load_works_once_the_run_is_done(make_panel, tmp_path):
    mlp = Mlp(batches=3)
    checkpoint = make_checkpoint(mlp, tmp_path / "ckpt")
    panel = make_panel(mlp.trainer, data=mlp.data, max_epochs=2, checkpoint=checkpoint)
    panel.buttons["step"].click()
    panel.save_button.click()
    panel.buttons["resume"].click()
    panel.wait(60)
    assert mlp.trainer.status == "done"
    assert not panel.load_button.disabled
    panel.load_button.click()
    assert mlp.trainer.state.iteration == 1
    assert "nbengine-status-paused" in panel.status_badge.value
    assert not panel.errors
