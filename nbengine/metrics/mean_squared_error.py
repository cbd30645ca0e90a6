"""``MeanSquaredError`` and the per-sample error check it shares with MAE and RMSE."""

from __future__ import annotations

from typing import Any

import torch

from nbengine.exceptions import NotComputableError
from nbengine.metrics.metric import Metric, reinit__is_reduced, sync_all_reduce, unpack_prediction_pair

__all__ = ["MeanSquaredError"]


def prediction_errors(metric: Metric, output: Any) -> torch.Tensor:
    """``y_pred - y`` in float64 (``y`` viewed with ``y_pred``'s shape), refusing shapes that do not pair up."""
    y_pred, y = unpack_prediction_pair(metric, output)
    if y_pred.ndim == 0 or y.ndim == 0 or y_pred.numel() != y.numel() or y_pred.shape[0] != y.shape[0]:
        raise ValueError(
            f"{metric._label()}: y_pred has shape {tuple(y_pred.shape)} and y has shape {tuple(y.shape)}; expected "
            "both of shape (N, ...) with the same N and the same number of elements"
        )
    return y_pred.to(torch.float64) - y.reshape(y_pred.shape).to(torch.float64)


class MeanSquaredError(Metric):
    """``sum over samples i of ||y_pred_i - y_i||^2``, divided by the number of samples N.

    ``update`` takes ``(y_pred, y)`` with the same number of elements and the same first dimension
    N (``y`` is viewed with ``y_pred``'s shape, so ``(N,)`` against ``(N, 1)`` is accepted). For
    one value per sample this is the usual mean squared error; for vector outputs the squared
    errors of a sample's components are summed, not averaged (as in pytorch-ignite).

    >>> mse = MeanSquaredError()
    >>> mse.update((torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 0.0, 4.0])))
    >>> mse.compute()
    1.6666666666666667
    """

    _state_dict_all_req_keys = ("_sum_of_squared_errors", "_num_examples")

    @reinit__is_reduced
    def reset(self) -> None:
        self._sum_of_squared_errors = torch.tensor(0.0, dtype=self._double_dtype, device=self._device)
        self._num_examples = 0

    @reinit__is_reduced
    def update(self, output: Any) -> None:
        errors = prediction_errors(self, output)
        self._sum_of_squared_errors += errors.square().sum().to(self._sum_of_squared_errors)
        self._num_examples += errors.shape[0]

    @sync_all_reduce("_sum_of_squared_errors", "_num_examples")
    def compute(self) -> float:
        if self._num_examples == 0:
            raise NotComputableError(f"{type(self).__name__} must have at least one example before it can be computed.")
        return self._sum_of_squared_errors.item() / self._num_examples
