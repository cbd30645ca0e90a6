"""The central property with parameter schedulers and early stopping attached: however the run is
stepped, paused, driven from a background thread, or checkpointed mid-epoch and resumed (in this process
or a fresh one), it uses the same learning rates and momenta, computes the same losses, stops at the same
epoch and ends with bit-identical weights as one uninterrupted run; and ``EpochReplay`` reproduces each of
its epochs, schedulers included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nbengine.engine import Events
from nbengine.handlers import Checkpoint, DiskSaver, EpochReplay, load_checkpoint

from ._scheduled_training import MAX_EPOCHS, ScheduledTraining, make_loader

REPOSITORY = Path(__file__).resolve().parents[2]
ITERATIONS_PER_EPOCH = 5


@pytest.fixture(scope="module")
def reference() -> dict:
    training = ScheduledTraining()
    training.trainer.run(make_loader(), max_epochs=MAX_EPOCHS)
    result = training.result()
    # The set-up is only a test of anything if early stopping ends the run part way and the schedules move.
    assert result["status"] == "done"
    assert 2 < result["epoch"] < MAX_EPOCHS
    assert result["early_stopping"]["counter"] == 2
    learning_rates = {lr for _, _, lr, _ in result["records"]}
    momenta = {momentum for _, _, _, momentum in result["records"]}
    assert len(learning_rates) > 5 and len(momenta) > 5
    return result


def assert_same_run(result: dict, reference: dict) -> None:
    assert result["records"] == reference["records"]
    assert result["epoch"] == reference["epoch"] and result["iteration"] == reference["iteration"]
    assert result["status"] == reference["status"]
    assert result["early_stopping"] == reference["early_stopping"]
    assert result["lr_scheduler"] == reference["lr_scheduler"]
    assert result["momentum_scheduler"] == reference["momentum_scheduler"]
    for ours, theirs in zip(result["weights"], reference["weights"], strict=True):
        assert torch.equal(ours, theirs)


def test_stepped_one_iteration_at_a_time(reference):
    training = ScheduledTraining()
    training.trainer.step(data=make_loader(), max_epochs=MAX_EPOCHS)
    steps = 1
    while training.trainer.status == "paused":
        training.trainer.step()
        steps += 1
    assert steps >= reference["iteration"]
    assert_same_run(training.result(), reference)


def test_stepped_to_each_epoch_end(reference):
    training = ScheduledTraining()
    training.trainer.step(data=make_loader(), max_epochs=MAX_EPOCHS, until=Events.EPOCH_COMPLETED)
    while training.trainer.status == "paused":
        training.trainer.step(until=Events.EPOCH_COMPLETED)
    assert_same_run(training.result(), reference)


@pytest.mark.parametrize(
    "boundary", [Events.ITERATION_STARTED(every=3), Events.GET_BATCH_COMPLETED(every=4), Events.EPOCH_STARTED],
    ids=["ITERATION_STARTED", "GET_BATCH_COMPLETED", "EPOCH_STARTED"],
)
def test_paused_by_a_handler_and_continued_by_run(boundary, reference):
    training = ScheduledTraining()
    training.trainer.add_event_handler(boundary, lambda engine: engine.pause())
    training.trainer.run(make_loader(), max_epochs=MAX_EPOCHS)
    pauses = 0
    while training.trainer.status == "paused":
        pauses += 1
        training.trainer.run()
    assert pauses > 2
    assert_same_run(training.result(), reference)


def test_background_run_paused_and_resumed(reference):
    training = ScheduledTraining()
    trainer = training.trainer
    trainer.start(make_loader(), max_epochs=MAX_EPOCHS)
    for _ in range(20):
        trainer.pause()
        trainer.wait(timeout=120)
        if trainer.status != "paused":
            break
        trainer.resume()
    trainer.wait(timeout=120)
    assert_same_run(training.result(), reference)


def checkpoint_at(iteration: int, folder: Path) -> tuple[Path, ScheduledTraining]:
    """Run a fresh training up to ``iteration`` (paused after ITERATION_COMPLETED) and save it there."""
    training = ScheduledTraining()
    training.trainer.step(iteration, data=make_loader(), max_epochs=MAX_EPOCHS)
    assert (training.trainer.status, training.trainer.state.iteration) == ("paused", iteration)
    handler = Checkpoint(training.to_save(), DiskSaver(folder, require_empty=False), filename_prefix=f"at{iteration}")
    path = handler.request_save(training.trainer).result()
    return path, training


@pytest.mark.parametrize("iteration", [3, ITERATIONS_PER_EPOCH * 2, ITERATIONS_PER_EPOCH * 4 + 2])
def test_checkpointed_mid_run_and_resumed_into_fresh_objects(iteration, tmp_path, reference):
    path, interrupted = checkpoint_at(iteration, tmp_path)
    saved = load_checkpoint(path)
    # The schedules' positions are in the file: the warm-up (6 events) then the StepLR, and the cosine cycle.
    ((_, warmup),) = saved["lr_scheduler"]["schedulers"][0]["schedulers"]
    step_lr = saved["lr_scheduler"]["schedulers"][1]
    assert (warmup["event_index"], step_lr["event_index"]) == (min(iteration, 6), max(iteration - 6, 0))
    assert saved["lr_scheduler"]["_scheduler_index"] == (0 if iteration <= 6 else 1)
    assert saved["momentum_scheduler"]["event_index"] == iteration % 9
    resumed = ScheduledTraining()
    Checkpoint.load_objects(resumed.to_save(), path)
    resumed.trainer.run(make_loader(), max_epochs=MAX_EPOCHS)
    result = resumed.result()
    # The resumed objects recorded only what came after the checkpoint.
    result["records"] = interrupted.records + resumed.records
    assert_same_run(result, reference)


def test_checkpointed_mid_epoch_and_resumed_in_a_fresh_process(tmp_path, reference):
    iteration = ITERATIONS_PER_EPOCH * 3 + 2
    path, interrupted = checkpoint_at(iteration, tmp_path)
    output = tmp_path / "result.pt"
    subprocess.run(
        [sys.executable, "-m", "tests.handlers.scheduled_training_child", str(path), str(output)],
        cwd=REPOSITORY,
        check=True,
        timeout=300,
    )
    result = torch.load(output, weights_only=True)
    result["records"] = interrupted.records + [tuple(record) for record in result["records"]]
    assert_same_run(result, reference)


def test_replay_epoch_reproduces_every_epoch_with_its_schedules(reference):
    training = ScheduledTraining()
    replay = EpochReplay(
        training.trainer,
        {
            "model": training.model,
            "optimizer": training.optimizer,
            "lr_scheduler": training.lr_scheduler,
            "momentum_scheduler": training.momentum_scheduler,
        },
        keep_last=MAX_EPOCHS,
        replay_handlers=[training.lr_scheduler, training.momentum_scheduler],
    )
    training.trainer.run(make_loader(), max_epochs=MAX_EPOCHS)
    assert replay.epochs == list(range(1, reference["epoch"] + 1))
    for epoch in replay.epochs:
        report = replay.replay_epoch(epoch)
        assert report.reproduced, str(report)
        # The schedulers ran in the replay; the other in-epoch handlers did not.
        assert [name.rsplit(" on ", 1)[1] for name in report.skipped_handlers] == ["ITERATION_COMPLETED"] * 2
        assert "TerminateOnNan" in report.skipped_handlers[0] and "_record" in report.skipped_handlers[1]
    # Replays leave the run as it was.
    assert_same_run(training.result(), reference)


def test_replay_without_the_schedulers_shows_the_divergence(reference):
    training = ScheduledTraining()
    replay = EpochReplay(training.trainer, {"model": training.model, "optimizer": training.optimizer}, keep_last=2)
    training.trainer.run(make_loader(), max_epochs=MAX_EPOCHS)
    report = replay.replay_epoch(replay.epochs[0])
    # The schedulers did not run in the replay: the learning rate stayed where the run left it.
    assert not report.reproduced
    assert report.first_divergent_iteration is not None
