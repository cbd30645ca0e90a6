"""``TopKCategoricalAccuracy``: the fraction of samples whose true class is among the k highest scores."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch

from nbengine.exceptions import NotComputableError
from nbengine.metrics.metric import Metric, _identity, reinit__is_reduced, sync_all_reduce, unpack_prediction_pair

__all__ = ["TopKCategoricalAccuracy"]


class TopKCategoricalAccuracy(Metric):
    """Top-k accuracy: ``update`` takes scores ``y_pred`` of shape ``(N, C)`` and class indices ``y`` of shape ``(N,)``.

    >>> top2 = TopKCategoricalAccuracy(k=2)
    >>> top2.update((torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]]), torch.tensor([1, 0])))
    >>> top2.compute()
    0.5
    """

    _state_dict_all_req_keys = ("_num_correct", "_num_examples")

    def __init__(
        self,
        k: int = 5,
        output_transform: Callable[[Any], Any] = _identity,
        device: str | torch.device = torch.device("cpu"),
        skip_unrolling: bool = False,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"Argument k should be a positive int, got {k!r}")
        self._k = int(k)
        super().__init__(output_transform, device=device, skip_unrolling=skip_unrolling)

    @reinit__is_reduced
    def reset(self) -> None:
        self._num_correct = torch.tensor(0, device=self._device)
        self._num_examples = 0

    @reinit__is_reduced
    def update(self, output: Sequence[torch.Tensor]) -> None:
        y_pred, y = unpack_prediction_pair(self, output)
        if y_pred.ndim != 2 or y_pred.shape[1] < self._k:
            raise ValueError(
                f"TopKCategoricalAccuracy: y_pred should have shape (N, C) with C >= k = {self._k}, "
                f"got {tuple(y_pred.shape)}"
            )
        top_classes = y_pred.topk(self._k, dim=1).indices
        hits = (top_classes == y.reshape(-1, 1)).sum(dim=1)
        self._num_correct += hits.sum().to(self._device)
        self._num_examples += hits.shape[0]

    @sync_all_reduce("_num_correct", "_num_examples")
    def compute(self) -> float:
        if self._num_examples == 0:
            raise NotComputableError(
                "TopKCategoricalAccuracy must have at least one example before it can be computed."
            )
        return self._num_correct.item() / self._num_examples
