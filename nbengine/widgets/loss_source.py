"""Where the loss plot's numbers come from, read as ``LossData``: the trainer's outputs from a
``History`` when the panel is given one (or an ``EpochReplay``, which has one), else from the
panel's ``EventTimeline``, which keeps the numeric outputs too (``EventTimeline(outputs=...)``);
the evaluator's metrics from its COMPLETED events.

This module owns what the loss plot is fed: the trainer's output per iteration (the first series
of a History) and the evaluator's metrics at each of its COMPLETED events, placed at the trainer's
iteration at that moment. When the run went back (a checkpoint loaded, a run started again), only
the records of the current timeline are plotted. ``version`` says whether anything new was
recorded; ``loss_data()`` returns the arrays; ``last_output`` is the last numeric output, which the
State view shows while the engine's own output is None (from the fetch of a batch to the end of
its iteration).

Nothing here hooks into the training loop: the timeline's single trace hook records the outputs,
so the panel costs one Python call per event, not two.
"""

from __future__ import annotations

import itertools
import numbers
import threading
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
        self._evaluator_handle = None
        if evaluator is not None:
            self._evaluator_handle = evaluator.add_event_handler(Events.COMPLETED, self._on_evaluated)

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
        iteration = float(self._trainer.state.iteration)
        with self._metrics_lock:
            for name, value in dict(evaluator.state.metrics).items():
                number = _as_float(value)
                if number is not None:
                    xs, ys = self._metrics.setdefault(str(name), ([], []))
                    xs.append(iteration)
                    ys.append(number)
            self._evaluations += 1

    def _outputs(self) -> tuple[np.ndarray, np.ndarray]:
        if self._history is not None:
            snapshot = self._history.snapshot()
            values = snapshot.values[:, 0] if snapshot.values.shape[1] else np.zeros(len(snapshot))
            return snapshot.iterations.astype(float), values.astype(float)
        points = self._timeline.outputs()
        pairs = np.fromiter(itertools.chain.from_iterable(points), dtype=float, count=2 * len(points)).reshape(-1, 2)
        return pairs[:, 0], pairs[:, 1]

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
        """Stop listening to the evaluator; what was recorded stays readable."""
        if self._evaluator_handle is not None:
            self._evaluator_handle.remove()
            self._evaluator_handle = None
