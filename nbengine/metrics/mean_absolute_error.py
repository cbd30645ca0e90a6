"""``MeanAbsoluteError``: the summed absolute error per sample, averaged over samples."""

from __future__ import annotations

from typing import Any

import torch

from nbengine.exceptions import NotComputableError
from nbengine.metrics.mean_squared_error import prediction_errors
from nbengine.metrics.metric import Metric, reinit__is_reduced, sync_all_reduce

__all__ = ["MeanAbsoluteError"]


class MeanAbsoluteError(Metric):
    """``sum over samples i of |y_pred_i - y_i|`` (summed over a sample's components), divided by N.

    ``update`` takes ``(y_pred, y)`` as for :class:`~nbengine.metrics.MeanSquaredError`.

    >>> mae = MeanAbsoluteError()
    >>> mae.update((torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 0.0, 4.0])))
    >>> mae.compute()
    1.0
    """

    _state_dict_all_req_keys = ("_sum_of_absolute_errors", "_num_examples")

    @reinit__is_reduced
    def reset(self) -> None:
        self._sum_of_absolute_errors = torch.tensor(0.0, dtype=self._double_dtype, device=self._device)
        self._num_examples = 0

    @reinit__is_reduced
    def update(self, output: Any) -> None:
        errors = prediction_errors(self, output)
        self._sum_of_absolute_errors += errors.abs().sum().to(self._sum_of_absolute_errors)
        self._num_examples += errors.shape[0]

    @sync_all_reduce("_sum_of_absolute_errors", "_num_examples")
    def compute(self) -> float:
        if self._num_examples == 0:
            raise NotComputableError("MeanAbsoluteError must have at least one example before it can be computed.")
        return self._sum_of_absolute_errors.item() / self._num_examples
