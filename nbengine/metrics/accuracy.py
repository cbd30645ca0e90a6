"""``Accuracy``: the fraction of correct predictions, for binary, multiclass and multilabel outputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from nbengine.exceptions import NotComputableError
from nbengine.metrics.classification import ClassificationMetric
from nbengine.metrics.metric import _identity, reinit__is_reduced, sync_all_reduce, unpack_prediction_pair

__all__ = ["Accuracy"]


class Accuracy(ClassificationMetric):
    """Fraction of samples whose prediction is exactly right.

    ``update`` takes ``(y_pred, y)``; the case (binary, multiclass, multilabel) is read from the shapes,
    see :mod:`nbengine.metrics.classification`. Threshold binary probabilities first, e.g.
    ``output_transform=lambda o: ((o[0] > 0.5).long(), o[1])``. A multilabel sample counts as correct
    only if all of its labels are.

    >>> accuracy = Accuracy()
    >>> accuracy.update((torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), torch.tensor([1, 1, 1])))
    >>> accuracy.compute()
    0.6666666666666666
    """

    _state_dict_all_req_keys = ("_num_correct", "_num_examples")

    def __init__(
        self,
        output_transform: Callable[[Any], Any] = _identity,
        is_multilabel: bool = False,
        device: str | torch.device = torch.device("cpu"),
        skip_unrolling: bool = False,
    ) -> None:
        super().__init__(
            output_transform=output_transform, is_multilabel=is_multilabel, device=device, skip_unrolling=skip_unrolling
        )

    @reinit__is_reduced
    def reset(self) -> None:
        self._num_correct = torch.tensor(0, device=self._device)
        self._num_examples = 0
        super().reset()

    @reinit__is_reduced
    def update(self, output: Any) -> None:
        self._check_shape(output)
        self._check_type(output)
        y_pred, y = unpack_prediction_pair(self, output)
        if self._type == "binary":
            correct = y_pred.reshape(-1).to(y) == y.reshape(-1)
        elif self._type == "multiclass":
            correct = (y_pred.argmax(dim=1) == y).reshape(-1)
        else:
            # Class axis last, every other axis a sample: (N, C, ...) -> (N * ..., C).
            num_classes = y_pred.shape[1]
            y_pred_rows = y_pred.movedim(1, -1).reshape(-1, num_classes)
            y_rows = y.movedim(1, -1).reshape(-1, num_classes)
            correct = (y_rows == y_pred_rows.type_as(y_rows)).all(dim=-1)
        self._num_correct += correct.sum().to(self._device)
        self._num_examples += correct.shape[0]

    @sync_all_reduce("_num_examples", "_num_correct")
    def compute(self) -> float:
        if self._num_examples == 0:
            raise NotComputableError("Accuracy must have at least one example before it can be computed.")
        return self._num_correct.item() / self._num_examples
