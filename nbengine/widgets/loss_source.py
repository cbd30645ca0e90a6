"""Where the loss plot's numbers come from, read as ``LossData``: the trainer's outputs from a
``History`` when the panel is given one (or an ``EpochReplay``, which has one), else from the
panel's ``EventTimeline``, which keeps the numeric outputs too (``EventTimeline(outputs=...)``);
the evaluator's metrics from its COMPLETED events run by the trainer's epochs.

This module owns what the loss plot is fed: the trainer's output per iteration (the first series
of a History) and the evaluator's metrics at each of its COMPLETED events, placed at the trainer's
iteration at that moment. Only evaluations run by the trainer's own epochs are plotted: one is
kept when, in the thread driving the trainer, a trainer handler of this module at EPOCH_COMPLETED
or COMPLETED confirms it at the same iteration (or, for an evaluator attached after it, at the
next such event); a manual ``evaluator.run`` in a cell (another thread, or a trainer that is not
running) is never confirmed, so never plotted. (No EPOCH_STARTED handler: an epoch replay would
list it as a handler it skipped.) When
the run went back (a checkpoint loaded, a run started again), only
the records of the current timeline are plotted. ``version`` says whether anything new was
recorded; ``loss_data()`` returns the arrays; ``last_output`` is the last numeric output, which the
State view shows while the engine's own output is None (from the fetch of a batch to the end of
its iteration).

Nothing here hooks into the training loop: the timeline's single trace hook records the outputs,
so the panel costs one Python call per event, not two.
"""

from __future__ import annotations

import numbers
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from nbengine.engine import Events
from nbengine.plotting import LossData

__all__ = ["LossSource", "current_timeline"]

def _as_float(value: Any) -> float | None:
    if type(value) is float:
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    item = getattr(value, "item", None)
    numel = getattr(value, "numel", None)
    if callable(item) and callable(numel) and numel() == 1:
        return float(item())
    return None


def current_timeline(iterations: np.ndarray) -> np.ndarray:
    """Which records belong to the run as it stands: a record is dropped when a later one has the
    same or a lower iteration (the run was rewound by a load, or started again)."""
    if len(iterations) == 0:
        return np.zeros(0, dtype=bool)
    later_minimum = np.minimum.accumulate(iterations[::-1])[::-1]
    keep = np.ones(len(iterations), dtype=bool)
    keep[:-1] = iterations[:-1] < later_minimum[1:]
    return keep


class LossSource:
    """The training outputs (from ``history`` if given, else from ``timeline``) and the evaluator's
    metrics per evaluation."""

    def __init__(self, trainer: Any, timeline: Any, evaluator: Any = None, history: Any = None) -> None:
        self._trainer = trainer
        self._timeline = timeline
        self._history = history
        self._metrics_lock = threading.Lock()
        self._metrics: dict[str, tuple[list[float], list[float]]] = {}
        self._evaluations = 0
        # Evaluations seen while the trainer ran, waiting for the trainer to confirm them:
        # (thread ident, trainer iteration, metrics).
        self._pending: list[tuple[int, int, dict[str, float]]] = []
        self._handles: list[Any] = []
        # (thread ident, iteration) of the last confirmation: evaluations made after it at the same
        # event (by a handler attached after this module's) are confirmed at the next one.
        self._confirmed_at: tuple[int, int] | None = None
        # The timeline's outputs as arrays, and the number of the last one taken into them.
        self._outputs_lock = threading.Lock()
        self._outputs_seen = 0
        self._outputs_clears = timeline.clears
        self._iterations, self._values = np.zeros(0), np.zeros(0)
        if evaluator is not None:
            self._handles.append(evaluator.add_event_handler(Events.COMPLETED, self._on_evaluated))
            for event in (Events.EPOCH_COMPLETED, Events.COMPLETED):
                self._handles.append(trainer.add_event_handler(event, self._confirm))

    @property
    def version(self) -> int:
        """Grows whenever something is recorded."""
        outputs = self._timeline.outputs_recorded if self._history is None else self._history.version
        return outputs + self._evaluations

    @property
    def last_output(self) -> tuple[int, float] | None:
        """``(iteration, value)`` of the last numeric output, or None."""
        return self._timeline.last_output

    def _on_evaluated(self, evaluator: Any) -> None:
        if self._trainer.status != "running":
            return  # run by hand while the trainer stands still: not one of its epochs
        metrics = {str(name): number for name, value in dict(evaluator.state.metrics).items() if (number := _as_float(value)) is not None}
        with self._metrics_lock:
            self._pending.append((threading.get_ident(), int(self._trainer.state.iteration), metrics))

    def _confirm(self, trainer: Any) -> None:
        if not self._pending:
            self._confirmed_at = (threading.get_ident(), int(trainer.state.iteration))
            return
        me, iteration = threading.get_ident(), int(trainer.state.iteration)
        with self._metrics_lock:
            pending, self._pending = self._pending, []
            for thread, at, metrics in pending:
                if thread == me and (at == iteration or (me, at) == self._confirmed_at):
                    self._record(float(at), metrics)
            self._confirmed_at = (me, iteration)

    def _record(self, iteration: float, metrics: Mapping[str, float]) -> None:
        for name, number in metrics.items():
            xs, ys = self._metrics.setdefault(name, ([], []))
            xs.append(iteration)
            ys.append(number)
        self._evaluations += 1

    def _outputs(self) -> tuple[np.ndarray, np.ndarray]:
        if self._history is not None:
            snapshot = self._history.snapshot()
            values = snapshot.values[:, 0] if snapshot.values.shape[1] else np.zeros(len(snapshot))
            return snapshot.iterations.astype(float), values.astype(float)
        with self._outputs_lock:
            if self._timeline.clears != self._outputs_clears:  # a new recording: start again
                self._outputs_clears = self._timeline.clears
                self._outputs_seen, self._iterations, self._values = 0, np.zeros(0), np.zeros(0)
            # Only what is new since the last drawing is converted, under the interpreter lock that
            # training needs too: a drawing costs the kernel the same at any run length.
            new = self._timeline.outputs_after(self._outputs_seen)
            if new:
                records = np.array(new, dtype=float)
                keep = self._timeline.outputs_capacity
                self._iterations = np.concatenate([self._iterations, records[:, 1]])[-keep:]
                self._values = np.concatenate([self._values, records[:, 2]])[-keep:]
                self._outputs_seen = new[-1][0]
            return self._iterations, self._values

    def loss_data(self) -> LossData:
        iterations, outputs = self._outputs()
        keep = current_timeline(iterations)
        with self._metrics_lock:
            metrics = {}
            for name, (xs, ys) in self._metrics.items():
                x, y = np.array(xs), np.array(ys)
                kept = current_timeline(x)
                metrics[name] = (x[kept], y[kept])
        return LossData(iterations[keep], outputs[keep], metrics)

    def detach(self) -> None:
        """Stop listening to the evaluator and the trainer; what was recorded stays readable."""
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()
