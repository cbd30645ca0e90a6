"""The main job without Jupyter: what ``nbengine demo [FOLDER]`` does, end to end.

This module owns the demo run and the files it leaves in its output folder:

- it trains a small MLP on scikit-learn's bundled 8x8 digits (no download) in the engine's
  background thread, with a validation pass and a checkpoint after every epoch (and a progress bar
  when the output is a terminal);
- it pauses in the middle of one epoch (as the panel's Pause button would), inspects the model while
  nothing moves, saves a checkpoint there and resumes;
- it replays that epoch from the snapshot taken at its start and compares it, iteration by iteration,
  with what was recorded (same batches, same losses), and prints the report;
- it writes ``loss.png`` (the loss per iteration, validation accuracy per epoch, the pause and the
  replayed losses) and ``timeline.png`` (the events the trainer fired, and around the pause the
  handlers that ran), ``replay_report.txt``, and the checkpoints under ``checkpoints/``.

The plots are drawn by ``nbengine.plotting`` (the module that draws the panel's plots too, on
matplotlib's Agg canvas, never pyplot), and nothing here imports ipywidgets: the demo runs where
there is no display and no Jupyter.
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from nbengine import plotting
from nbengine.engine import (
    DeterministicEngine,
    Events,
    create_supervised_evaluator,
    keep_random_state,
    supervised_training_step,
)
from nbengine.handlers import Checkpoint, DiskSaver, EpochReplay, EventTimeline, History, ProgressBar, ReplayReport
from nbengine.metrics import Accuracy, Loss

__all__ = ["DemoResult", "run_demo"]

BATCH_SIZE = 32
VALIDATION_SIZE = 360
LEARNING_RATE = 0.05
CHECKPOINT_PREFIX = "demo"

LOSS_PLOT = "loss.png"
TIMELINE_PLOT = "timeline.png"
REPORT_FILE = "replay_report.txt"
CHECKPOINT_FOLDER = "checkpoints"


@dataclass(frozen=True)
class DemoResult:
    """What ``run_demo`` did: where its files are and whether the replay reproduced the epoch."""

    folder: Path
    loss_plot: Path
    timeline_plot: Path
    report_file: Path
    checkpoints: tuple[Path, ...]
    pause_iteration: int
    report: ReplayReport

    @property
    def replay_matched(self) -> bool:
        return self.report.reproduced


@dataclass
class _Digits:
    train: TensorDataset
    validation: list[tuple[torch.Tensor, torch.Tensor]]


def _load_digits(seed: int) -> _Digits:
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ModuleNotFoundError(
            "nbengine demo trains on scikit-learn's bundled digits: install scikit-learn "
            "(python -m pip install scikit-learn)"
        ) from error
    bunch = load_digits()
    images = torch.tensor(bunch.data, dtype=torch.float32) / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    train, validation = order[VALIDATION_SIZE:], order[:VALIDATION_SIZE]
    # One validation batch of tensors: evaluating it draws nothing from the global RNG.
    return _Digits(TensorDataset(images[train], labels[train]), [(images[validation], labels[validation])])


class _Training:
    """The model, the trainer and everything attached to it."""

    def __init__(
        self, digits: _Digits, folder: Path, epochs: int, pause_iteration: int, seed: int, live_bar: bool
    ) -> None:
        self.folder = folder
        torch.manual_seed(seed)
        self.model = torch.nn.Sequential(
            torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(128, 10)
        )
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LEARNING_RATE, momentum=0.9)
        loss_fn = torch.nn.CrossEntropyLoss()
        self.validation = digits.validation
        self.loader = DataLoader(digits.train, batch_size=BATCH_SIZE, shuffle=True)
        self.trainer = DeterministicEngine(supervised_training_step(self.model, self.optimizer, loss_fn), seed=seed)
        self.evaluator = create_supervised_evaluator(
            self.model, metrics={"accuracy": Accuracy(), "loss": Loss(loss_fn)}
        )
        self.timeline = EventTimeline(capacity=100_000).attach(self.trainer)
        self.history = History().attach(self.trainer)
        self.replay = EpochReplay(
            self.trainer, {"model": self.model, "optimizer": self.optimizer}, keep_last=epochs, history=self.history
        )
        self.validation_accuracy: list[tuple[int, float]] = []
        self.progress: ProgressBar | None = None
        if live_bar:
            self.progress = ProgressBar(persist=True)
            self.progress.attach(self.trainer, output_transform=lambda loss: {"loss": loss})
        self.trainer.add_event_handler(Events.EPOCH_COMPLETED, self.validate)
        self.checkpoint = Checkpoint(
            {"trainer": self.trainer, "model": self.model, "optimizer": self.optimizer, "replay": self.replay},
            DiskSaver(folder / CHECKPOINT_FOLDER, require_empty=False),
            filename_prefix=CHECKPOINT_PREFIX,
            n_saved=None,
        )
        self.trainer.add_event_handler(Events.EPOCH_COMPLETED, self.save_checkpoint)
        self.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=pause_iteration), self.pause_in_the_middle)

    def say(self, message: str) -> None:
        if self.progress is not None:
            # Through the bar, so the message lands above it instead of being torn by its redraws.
            self.progress.log_message(message)
        else:
            # Flushed line by line, so that a file or pipe holding both streams keeps the story in order.
            print(message, flush=True)

    def validate(self, trainer: DeterministicEngine) -> None:
        self.evaluator.run(self.validation)
        metrics = self.evaluator.state.metrics
        self.validation_accuracy.append((trainer.state.iteration, metrics["accuracy"]))
        self.say(
            f"epoch {trainer.state.epoch}: validation accuracy {metrics['accuracy']:.3f}, "
            f"loss {metrics['loss']:.3f}"
        )

    def save_checkpoint(self, trainer: DeterministicEngine) -> None:
        self.checkpoint(trainer)
        self.say(f"  saved {self.relative(self.checkpoint.last_checkpoint)}")

    def relative(self, path: Any) -> str:
        return str(Path(path).relative_to(self.folder))

    def set_learning_rate(self, learning_rate: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate

    @staticmethod
    def pause_in_the_middle(trainer: DeterministicEngine) -> None:
        # What the panel's Pause button does, called from a handler so that the spot is always the same.
        trainer.pause()

    @keep_random_state
    def inspect(self) -> tuple[float, float]:
        """Validation accuracy and first-layer weight norm, read while paused; the global RNG is left
        exactly as training left it (keep_random_state), so the rest of the epoch draws what it would have."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                images, labels = self.validation[0]
                accuracy = (self.model(images).argmax(dim=1) == labels).float().mean().item()
                norm = self.model[0].weight.norm().item()
        finally:
            self.model.train(was_training)
        return accuracy, norm


def run_demo(
    folder: str | os.PathLike,
    *,
    epochs: int = 4,
    replay_epoch: int = 2,
    seed: int = 0,
    replay_lr: float | None = None,
    live_bar: bool | None = None,
) -> DemoResult:
    """Run the demo in ``folder`` (made by ``prepare_output_folder``), printing what happens.

    Trains ``epochs`` epochs, pauses in the middle of epoch ``replay_epoch`` and resumes, then replays
    that epoch and compares it with the recorded run. ``replay_lr`` replays with another learning rate,
    to show what a divergence looks like. The story goes to stdout.

    ``live_bar`` shows a progress bar on stderr, redrawn in place, with the story printed above it.
    The default (None) shows it only when stdout and stderr are both a terminal: a bar's redraws
    written to a file or a pipe are noise, and a story piped on (``| tee``) would reach the terminal
    after the bar had been redrawn, onto the bar's line.
    """
    for name, value, low in (("epochs", epochs, 2), ("replay_epoch", replay_epoch, 1), ("seed", seed, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} should be an integer >= {low}, got {value!r}")
    if replay_epoch > epochs:
        raise ValueError(f"replay_epoch should be at most epochs={epochs}, got {replay_epoch}")
    if replay_lr is not None and (
        not isinstance(replay_lr, (int, float)) or isinstance(replay_lr, bool) or not replay_lr > 0
    ):
        raise ValueError(f"replay_lr should be a learning rate > 0 or None, got {replay_lr!r}")
    if live_bar is not None and not isinstance(live_bar, bool):
        raise TypeError(f"live_bar should be a bool or None, got {live_bar!r}")
    if live_bar is None:
        live_bar = sys.stdout.isatty() and sys.stderr.isatty()
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder should be an existing folder (see nbengine.__main__.prepare_output_folder), got {str(folder)!r}")

    # One thread: the fastest for this small model, and the replay is bit-exact only with the thread
    # count the epoch was recorded with (the DeterministicEngine keeps the one the run started with).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(folder, epochs, replay_epoch, seed, replay_lr, live_bar)
    finally:
        torch.set_num_threads(threads)


def _run(
    folder: Path, epochs: int, replay_epoch: int, seed: int, replay_lr: float | None, live_bar: bool
) -> DemoResult:
    digits = _load_digits(seed)
    epoch_length = -(-len(digits.train) // BATCH_SIZE)
    pause_iteration = (replay_epoch - 1) * epoch_length + epoch_length // 2
    _remove_earlier_demo_checkpoints(folder / CHECKPOINT_FOLDER)
    training = _Training(digits, folder, epochs, pause_iteration, seed, live_bar)
    trainer = training.trainer
    say = training.say

    say(f"nbengine demo: writing to {folder}")
    say(
        f"data: scikit-learn's digits, {len(digits.train)} training and {VALIDATION_SIZE} validation images of "
        f"8x8 pixels, batches of {BATCH_SIZE} ({epoch_length} iterations per epoch)"
    )
    say(f"model: MLP 64-128-10 with dropout, SGD lr {LEARNING_RATE} momentum 0.9, seed {seed}")
    say(f"training {epochs} epochs in the engine's background thread; validation and a checkpoint after every epoch")

    trainer.start(training.loader, max_epochs=epochs)
    trainer.wait()
    say(
        f"paused at epoch {trainer.state.epoch}, iteration {trainer.state.iteration} "
        f"(after {trainer.last_event.name}), status {trainer.status!r}"
    )
    accuracy, norm = training.inspect()
    say(f"  inspected while paused: validation accuracy {accuracy:.3f}, first-layer weight norm {norm:.3f}")
    paused_checkpoint = training.checkpoint.request_save(trainer).result()
    say(f"  saved {training.relative(paused_checkpoint)} while paused")
    say("resuming")
    trainer.resume()
    trainer.wait()
    final_accuracy = training.validation_accuracy[-1][1]
    say(f"training {trainer.status}: {trainer.state.iteration} iterations, validation accuracy {final_accuracy:.3f}")

    if replay_lr is None:
        say(f"replaying epoch {replay_epoch} from the snapshot taken at its start ...")
        report = training.replay.replay_epoch(replay_epoch)
    else:
        say(
            f"replaying epoch {replay_epoch} from the snapshot taken at its start, with lr {replay_lr} "
            f"instead of {LEARNING_RATE} ..."
        )
        report = training.replay.replay_epoch(replay_epoch, modify=lambda: training.set_learning_rate(replay_lr))
    report_text = _report_text(report, pause_iteration)
    say(report_text.rstrip("\n"))
    report_file = folder / REPORT_FILE
    report_file.write_text(report_text + "\n" + _report_table(report))

    loss_plot, timeline_plot = _write_plots(folder, training, report, pause_iteration, epoch_length)
    checkpoints = tuple(info.path for info in training.checkpoint.list_checkpoints())
    say(
        f"wrote {LOSS_PLOT}, {TIMELINE_PLOT}, {REPORT_FILE} and {len(checkpoints)} checkpoints "
        f"in {CHECKPOINT_FOLDER}/"
    )
    verdict = (
        f"REPLAY MATCHED: epoch {replay_epoch} reproduced exactly"
        if report.reproduced
        else f"REPLAY DIVERGED: epoch {replay_epoch} did not reproduce; first divergence at iteration "
        f"{report.first_divergent_iteration}"
    )
    say(verdict)
    sys.stdout.flush()
    return DemoResult(folder, loss_plot, timeline_plot, report_file, checkpoints, pause_iteration, report)


def _write_plots(folder: Path, training: _Training, report: ReplayReport, pause_iteration: int, epoch_length: int) -> tuple[Path, Path]:
    loss_plot = folder / LOSS_PLOT
    loss_plot.write_bytes(_loss_png(training, report, pause_iteration, epoch_length))
    timeline_plot = folder / TIMELINE_PLOT
    timeline_plot.write_bytes(_timeline_png(training.timeline, pause_iteration))
    return loss_plot, timeline_plot


def _remove_earlier_demo_checkpoints(folder: Path) -> None:
    """A demo run again in the same folder replaces its checkpoints; other files are left alone."""
    if not folder.is_dir():
        return
    for path in folder.glob(f"{CHECKPOINT_PREFIX}_checkpoint_*.pt"):
        path.unlink()


def _report_text(report: ReplayReport, pause_iteration: int) -> str:
    lines = [
        str(report),
        f"  the epoch was paused after iteration {pause_iteration}, checkpointed and resumed when it was recorded",
        f"  batches compared by fingerprint: {'all identical' if report.fingerprints_equal else 'some differ'}",
        f"  losses compared exactly (atol {report.atol}): "
        + ("all identical" if report.outputs_equal else f"largest difference {report.max_abs_diff}"),
    ]
    if report.first_divergent_iteration is not None:
        lines.append(f"  first divergence at iteration {report.first_divergent_iteration}")
    if report.skipped_handlers:
        lines.append("  not run during the replay: " + "; ".join(_handler_label(name) for name in report.skipped_handlers))
    return "\n".join(lines) + "\n"


def _report_table(report: ReplayReport) -> str:
    reference = {int(it): row for row, it in enumerate(report.reference.iterations)}
    rows = ["iteration  recorded loss         replayed loss         same batch  same loss"]
    for row, iteration in enumerate(report.replayed.iterations):
        iteration = int(iteration)
        replayed_loss = float(report.replayed.values[row, 0])
        ref_row = reference.get(iteration)
        if ref_row is None:
            rows.append(f"{iteration:9d}  {'(not recorded)':<20}  {replayed_loss!r:<20}")
            continue
        recorded_loss = float(report.reference.values[ref_row, 0])
        same_batch = report.replayed.fingerprints[row] == report.reference.fingerprints[ref_row]
        rows.append(
            f"{iteration:9d}  {recorded_loss!r:<20}  {replayed_loss!r:<20}  {'yes' if same_batch else 'NO':<10}  "
            f"{'yes' if recorded_loss == replayed_loss else 'NO'}"
        )
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------------------------------------- plots
# Drawn by nbengine.plotting, the module that draws the panel's plots too.


def _loss_png(training: _Training, report: ReplayReport, pause_iteration: int, epoch_length: int) -> bytes:
    snapshot = training.history.snapshot()
    iterations, losses = snapshot.iterations.astype(float), snapshot.series("output").astype(float)
    epochs = int(iterations.max()) // epoch_length if len(iterations) else 0
    marks = [plotting.Mark(pause_iteration, "paused, checkpointed, resumed", "#ff7f0e", "--")]
    marks += [plotting.Mark(epoch * epoch_length, "_epoch", "#bbbbbb", "-") for epoch in range(1, epochs + 1)]
    metrics = {}
    if training.validation_accuracy:
        at, accuracy = zip(*training.validation_accuracy)
        metrics["accuracy"] = (np.array(at, dtype=float), np.array(accuracy, dtype=float))
    replayed = report.replayed
    points = [
        plotting.Points(
            replayed.iterations.astype(float), replayed.series("output").astype(float),
            f"replay of epoch {report.epoch} ({'identical' if report.reproduced else 'diverged'})",
        )
    ]  # fmt: skip
    figure = plotting.LossFigure(900, 480, 100)
    return figure.render(
        plotting.decimate_outputs(iterations, losses), metrics, marks=marks, points=points,
        title="nbengine demo: an MLP on scikit-learn's digits (training loss, cross-entropy)",
    )  # fmt: skip


# The text rows of the timeline figure: characters that fit its width in 7.5 pt monospace, and where
# the handlers column starts (after "#, epoch, iter, event").
_TEXT_COLUMNS = 150
_HANDLERS_COLUMN = 44
_OBJECT_REPR = re.compile(r"<(?:[\w.]+\.)?(\w+) object at 0x[0-9a-fA-F]+>")

# The rows of the timeline plot, top to bottom; other events go to an "other" row.
_TIMELINE_ROWS = (
    "STARTED",
    "EPOCH_STARTED",
    "GET_BATCH_STARTED",
    "GET_BATCH_COMPLETED",
    "ITERATION_STARTED",
    "ITERATION_COMPLETED",
    "DATALOADER_STOP_ITERATION",
    "EPOCH_COMPLETED",
    "SAVED_CHECKPOINT",
    "COMPLETED",
)


def _timeline_png(timeline: EventTimeline, pause_iteration: int) -> bytes:
    entries = timeline.snapshot()
    names = list(_TIMELINE_ROWS) + sorted({e.event for e in entries} - set(_TIMELINE_ROWS))
    row_of = {name: index for index, name in enumerate(names)}
    pause_seq = next((e.seq for e in entries if e.event == "ITERATION_COMPLETED" and e.iteration == pause_iteration), None)
    paused = None
    if pause_seq is not None:
        paused_at = next(e.time for e in entries if e.seq == pause_seq)
        resumed_at = next((e.time for e in entries if e.seq > pause_seq and e.event == "GET_BATCH_STARTED"), paused_at)
        paused = (paused_at, resumed_at)
    window = [e for e in entries if pause_seq - 8 <= e.seq <= pause_seq + 6] if pause_seq is not None else entries[:15]
    lines = [(f"{'#':>5}  {'epoch':>5}  {'iter':>4}  {'event':<22}  handlers (microseconds)", "black")]
    for entry in window:
        ran = ", ".join(f"{_handler_label(name)} ({seconds * 1e6:.0f})" for name, seconds in entry.handlers) or "-"
        line = f"{entry.seq:>5}  {entry.epoch:>5}  {entry.iteration:>4}  {entry.event:<22}  {ran}"
        # Long handler lists wrap under the handlers column instead of running off the right edge.
        for piece in textwrap.wrap(line, width=_TEXT_COLUMNS, subsequent_indent=" " * _HANDLERS_COLUMN):
            lines.append((piece, "#08519c" if entry.handlers else "#555555"))
        if entry.seq == pause_seq:
            lines.append(("       -- paused here: the model inspected, a checkpoint saved, then resumed --", "#d94801"))
    return plotting.RunTimelineFigure(1000, 750, 100).render(
        np.array([e.time for e in entries]), np.array([row_of[e.event] for e in entries]),
        np.array([bool(e.handlers) for e in entries]), names, paused, lines,
        ("every event the trainer fired", "around the pause: each event and the handlers that ran for it"),
    )  # fmt: skip


def _handler_label(name: str) -> str:
    """A handler's name as shown: a callable object's repr ``<module.Class object at 0x...>`` becomes
    ``Class`` (the address changes from run to run and says nothing)."""
    return _OBJECT_REPR.sub(r"\1", name)
