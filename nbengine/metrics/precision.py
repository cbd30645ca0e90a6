"""``Precision`` and the counting it shares with ``Recall``: per-class true positives over a denominator.

``average`` chooses the result, as in pytorch-ignite:

- ``False``: one value per class (binary: the precision of class 1, a float), as a tensor;
- ``None``: per class, also for binary (two classes);
- ``"micro"``: from the counts summed over classes; ``"macro"`` (or ``True``): the mean over classes;
- ``"weighted"``: the mean over classes weighted by each class's number of true samples;
- ``"samples"`` (multilabel only): the mean over samples of each sample's value.

The counts (``_numerator``, ``_denominator``, ``_weight``) are in ``state_dict``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from nbengine.exceptions import NotComputableError
from nbengine.metrics.classification import ClassificationMetric
from nbengine.metrics.metric import _identity, reinit__is_reduced, sync_all_reduce, unpack_prediction_pair
from nbengine.utils.onehot import to_onehot

__all__ = ["Precision"]

_AVERAGES = ("macro", "micro", "weighted", "samples")
_EPS = 1e-20


class PrecisionRecallBase(ClassificationMetric):
    """Counting shared by Precision and Recall; subclasses say what the denominator counts in ``update``."""

    _state_dict_all_req_keys = ("_numerator", "_denominator", "_weight", "_updated")

    def __init__(
        self,
        output_transform: Callable[[Any], Any] = _identity,
        average: bool | str | None = False,
        is_multilabel: bool = False,
        device: str | torch.device = torch.device("cpu"),
        skip_unrolling: bool = False,
    ) -> None:
        if not (average is None or isinstance(average, bool) or average in _AVERAGES):
            raise ValueError(
                "Argument average should be None or a boolean or one of values "
                f"'macro', 'micro', 'weighted' and 'samples'. Got {average!r}"
            )
        self._average: bool | str | None = "macro" if average is True else average
        self.eps = _EPS
        self._updated = False
        super().__init__(
            output_transform=output_transform, is_multilabel=is_multilabel, device=device, skip_unrolling=skip_unrolling
        )

    @reinit__is_reduced
    def reset(self) -> None:
        self._numerator: int | torch.Tensor = 0
        self._denominator: int | torch.Tensor = 0
        self._weight: int | torch.Tensor = 0
        self._updated = False
        super().reset()

    def _check_type(self, output: Sequence[torch.Tensor]) -> None:
        super()._check_type(output)
        if self._type in ("binary", "multiclass") and self._average == "samples":
            raise ValueError("Argument average='samples' is incompatible with binary and multiclass input data.")
        y_pred, y = output
        if self._type == "multiclass" and y.dtype != torch.long:
            warnings.warn("`y` should be of dtype long when entry type is multiclass", RuntimeWarning, stacklevel=3)
        if (
            self._type == "binary"
            and self._average is not False
            and (y.dtype != torch.long or y_pred.dtype != torch.long)
        ):
            warnings.warn(
                "`y` and `y_pred` should be of dtype long when entry type is binary and average!=False",
                RuntimeWarning,
                stacklevel=3,
            )

    def _prepare_output(self, output: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(y_pred, y, y_pred * y)`` as float indicators of shape (samples, classes), or flat for binary
        with ``average=False``."""
        y_pred, y = unpack_prediction_pair(self, output)
        if self._type in ("binary", "multiclass"):
            num_classes = 2 if self._type == "binary" else y_pred.shape[1]
            if self._type == "multiclass" and y.max() + 1 > num_classes:
                raise ValueError(
                    "y_pred contains fewer classes than y. Number of classes in the prediction is "
                    f"{num_classes} and an element in y has invalid class = {y.max().item() + 1}."
                )
            y = y.reshape(-1)
            if self._type == "binary" and self._average is False:
                y_pred = y_pred.reshape(-1)
            else:
                y = to_onehot(y.long(), num_classes=num_classes)
                predicted = y_pred.argmax(dim=1) if self._type == "multiclass" else y_pred.long()
                y_pred = to_onehot(predicted.reshape(-1), num_classes=num_classes)
        else:
            num_labels = y_pred.shape[1]
            y_pred = y_pred.transpose(1, -1).reshape(-1, num_labels)
            y = y.transpose(1, -1).reshape(-1, num_labels)
        y_pred = y_pred.to(dtype=self._double_dtype, device=self._device)
        y = y.to(dtype=self._double_dtype, device=self._device)
        return y_pred, y, y * y_pred

    def _accumulate(self, positives: torch.Tensor, y: torch.Tensor, correct: torch.Tensor) -> None:
        """Add one batch: ``positives`` are the predicted (Precision) or actual (Recall) positives."""
        if self._average == "samples":
            self._numerator += (correct.sum(dim=1) / (positives.sum(dim=1) + self.eps)).sum()
            self._denominator += y.shape[0]
        elif self._average == "micro":
            self._denominator += positives.sum()
            self._numerator += correct.sum()
        else:
            self._denominator += positives.sum(dim=0)
            self._numerator += correct.sum(dim=0)
            if self._average == "weighted":
                self._weight += y.sum(dim=0)
        self._updated = True

    @sync_all_reduce("_numerator", "_denominator")
    def compute(self) -> torch.Tensor | float:
        if not self._updated:
            raise NotComputableError(
                f"{type(self).__name__} must have at least one example before it can be computed."
            )
        fraction = self._numerator / (self._denominator + (self.eps if self._average != "samples" else 0))
        if self._average == "weighted":
            weight = self._reduced_weight()
            return (fraction @ weight / (weight.sum() + self.eps)).item()
        if self._average in ("micro", "samples"):
            return fraction.item()
        if self._average == "macro":
            return fraction.mean().item()
        return fraction

    def _reduced_weight(self) -> torch.Tensor:
        import nbengine.distributed as idist

        weight = self._weight.clone()
        return idist.all_reduce(weight) if idist.get_world_size() > 1 else weight


class Precision(PrecisionRecallBase):
    """Of the samples predicted as a class, the fraction that belong to it: ``TP / (TP + FP)``.

    Args:
        output_transform: see :class:`~nbengine.metrics.Metric`; ``update`` takes ``(y_pred, y)``.
        average: see :mod:`nbengine.metrics.precision`.
        is_multilabel: multilabel outputs (0/1 indicators of shape ``(N, C, ...)``).
        device, skip_unrolling: as for :class:`~nbengine.metrics.Metric`.

    >>> precision = Precision(average="macro")
    >>> precision.update((torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]]), torch.tensor([0, 1, 0])))
    >>> precision.compute()
    0.75
    """

    @reinit__is_reduced
    def update(self, output: Sequence[torch.Tensor]) -> None:
        self._check_shape(output)
        self._check_type(output)
        y_pred, y, correct = self._prepare_output(output)
        self._accumulate(y_pred, y, correct)
