"""Where the loss plot's numbers come from: the adapter between a recorder and ``LossData``.

This module owns the one place that knows how the recorded training outputs and validation
metrics are read: ``LossSource.version`` says whether anything new was recorded, and
``LossSource.loss_data()`` returns arrays for ``LossPlot``. Reading happens on the panel's refresh
thread, so the recorder must give a consistent copy under its own lock.
"""

from __future__ import annotations

import numbers
import threading
from collections import deque
from typing import Any

import numpy as np

from nbengine.engine import Events
from nbengine.widgets.plots import LossData

__all__ = ["LossSource"]


def _as_float(value: Any) -> float | None:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    item = getattr(value, "item", None)
    numel = getattr(value, "numel", None)
    if callable(item) and callable(numel) and numel() == 1:
        return float(item())
    return None


class LossSource:
    """Records the trainer's output per iteration and the evaluator's metrics per epoch, bounded."""

    def __init__(self, trainer: Any, evaluator: Any = None, capacity: int = 100_000) -> None:
        self._trainer = trainer
        self._lock = threading.Lock()
        self._iterations: deque[int] = deque(maxlen=capacity)
        self._outputs: deque[float] = deque(maxlen=capacity)
        self._metrics: dict[str, tuple[list[float], list[float]]] = {}
        self._version = 0
        self._handles = [trainer.add_event_handler(Events.ITERATION_COMPLETED, self._on_iteration)]
        if evaluator is not None:
            self._handles.append(evaluator.add_event_handler(Events.COMPLETED, self._on_evaluated))

    @property
    def version(self) -> int:
        return self._version

    def _on_iteration(self, engine: Any) -> None:
        value = _as_float(engine.state.output)
        if value is None:
            return
        with self._lock:
            self._iterations.append(engine.state.iteration)
            self._outputs.append(value)
            self._version += 1

    def _on_evaluated(self, evaluator: Any) -> None:
        iteration = self._trainer.state.iteration
        with self._lock:
            for name, value in evaluator.state.metrics.items():
                number = _as_float(value)
                if number is not None:
                    xs, ys = self._metrics.setdefault(str(name), ([], []))
                    xs.append(float(iteration))
                    ys.append(number)
            self._version += 1

    def loss_data(self) -> LossData:
        with self._lock:
            iterations = np.fromiter(self._iterations, dtype=float, count=len(self._iterations))
            outputs = np.fromiter(self._outputs, dtype=float, count=len(self._outputs))
            metrics = {name: (np.array(xs), np.array(ys)) for name, (xs, ys) in self._metrics.items()}
        return LossData(iterations, outputs, metrics)

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
