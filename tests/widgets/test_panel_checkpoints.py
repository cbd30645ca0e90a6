"""TrainingPanel checkpoints: Save during a real background run, the listing, Load; parts that are off."""

from __future__ import annotations

import shutil

import pytest
import torch

from nbengine.engine import Engine
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
    # A state saved mid-epoch is restored at that iteration; the engine is idle, ready to continue.
    assert (trainer.status, trainer.state.iteration) == ("idle", saved_iteration)
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
    assert panel.load_button.tooltip == "Load is possible only while paused or idle; the engine is running"
    before = mlp.trainer.state.iteration
    panel.load_button.click()
    assert "Load is possible only while paused or idle; the engine is running" in panel.message.value
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
