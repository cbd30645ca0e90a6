"""``RootMeanSquaredError``: the square root of :class:`~nbengine.metrics.MeanSquaredError`."""

from __future__ import annotations

import math

from nbengine.metrics.mean_squared_error import MeanSquaredError

__all__ = ["RootMeanSquaredError"]


class RootMeanSquaredError(MeanSquaredError):
    """``sqrt(MeanSquaredError)``; same inputs and state.

    >>> rmse = RootMeanSquaredError()
    >>> rmse.update((torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0])))
    >>> rmse.compute() == math.sqrt(2.0)
    True
    """

    def compute(self) -> float:
        return math.sqrt(super().compute())
