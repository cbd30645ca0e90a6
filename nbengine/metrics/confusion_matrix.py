"""``ConfusionMatrix`` and the measures read off it (IoU, mIoU, Dice, accuracy, precision, recall).

The measures are ``MetricsLambda`` expressions over the matrix, so attaching one attaches the matrix
partially; several measures built on one ``ConfusionMatrix`` share its counts.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch

from nbengine.exceptions import NotComputableError
from nbengine.metrics.metric import Metric, _identity, reinit__is_reduced, sync_all_reduce, unpack_prediction_pair
from nbengine.metrics.metrics_lambda import MetricsLambda

__all__ = ["ConfusionMatrix", "DiceCoefficient", "IoU", "JaccardIndex", "cmAccuracy", "cmPrecision", "cmRecall", "mIoU"]

_AVERAGES = ("samples", "recall", "precision")
_EPS = 1e-15


class ConfusionMatrix(Metric):
    """Counts ``matrix[true class, predicted class]`` over multiclass outputs.

    Args:
        num_classes: C (> 1).
        average: None (counts, int64), ``"samples"`` (counts / number of samples), ``"recall"`` (rows
            normalised) or ``"precision"`` (columns normalised).
        output_transform, device: as for :class:`~nbengine.metrics.Metric`; ``update`` takes ``y_pred``
            of shape ``(N, C, ...)`` (scores; the arg-max is the prediction) and ``y`` of shape ``(N, ...)``.
            Targets outside ``[0, C)`` are ignored (e.g. an ignore label of 255).
        skip_unrolling: True by default, as in ignite.

    >>> cm = ConfusionMatrix(num_classes=2)
    >>> cm.update((torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]]), torch.tensor([0, 1, 0])))
    >>> cm.compute().tolist()
    [[1, 1], [0, 1]]
    """

    _state_dict_all_req_keys = ("confusion_matrix", "_num_examples")

    def __init__(
        self,
        num_classes: int,
        average: str | None = None,
        output_transform: Callable[[Any], Any] = _identity,
        device: str | torch.device = torch.device("cpu"),
        skip_unrolling: bool = True,
    ) -> None:
        if average is not None and average not in _AVERAGES:
            raise ValueError(f"Argument average can None or one of 'samples', 'recall', 'precision', got {average!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
            raise TypeError(f"Argument num_classes should be an int, got {num_classes!r}")
        if num_classes <= 1:
            raise ValueError(f"Argument num_classes needs to be > 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self._num_examples = 0
        self.average = average
        super().__init__(output_transform=output_transform, device=device, skip_unrolling=skip_unrolling)

    @reinit__is_reduced
    def reset(self) -> None:
        self.confusion_matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64, device=self._device)
        self._num_examples = 0

    def _check_shape(self, y_pred: torch.Tensor, y: torch.Tensor) -> None:
        expected = f"y_pred must have shape (batch_size, num_classes (currently set to {self.num_classes}), ...)"
        if y_pred.ndim < 2:
            raise ValueError(f"{expected}, but given {y_pred.shape}")
        if y_pred.shape[1] != self.num_classes:
            raise ValueError(f"y_pred does not have correct number of classes: {y_pred.shape[1]} vs {self.num_classes}")
        if y.ndim + 1 != y_pred.ndim:
            raise ValueError(
                f"{expected} and y must have shape of (batch_size, ...), but given {y.shape} vs {y_pred.shape}."
            )
        if tuple(y.shape) != (y_pred.shape[0],) + tuple(y_pred.shape[2:]):
            raise ValueError(
                f"y and y_pred must have compatible shapes. Given y {tuple(y.shape)} and y_pred {tuple(y_pred.shape)}"
            )

    @reinit__is_reduced
    def update(self, output: Sequence[torch.Tensor]) -> None:
        y_pred, y = unpack_prediction_pair(self, output)
        self._check_shape(y_pred, y)
        self._num_examples += y_pred.shape[0]
        predicted = y_pred.argmax(dim=1).flatten()
        target = y.flatten()
        in_range = (target >= 0) & (target < self.num_classes)
        cells = self.num_classes * target[in_range] + predicted[in_range]
        counts = torch.bincount(cells, minlength=self.num_classes**2).reshape(self.num_classes, self.num_classes)
        self.confusion_matrix += counts.to(self.confusion_matrix)

    @sync_all_reduce("confusion_matrix", "_num_examples")
    def compute(self) -> torch.Tensor:
        if self._num_examples == 0:
            raise NotComputableError("Confusion matrix must have at least one example before it can be computed.")
        if not self.average:
            return self.confusion_matrix
        matrix = self.confusion_matrix.float()
        if self.average == "samples":
            return matrix / self._num_examples
        return self.normalize(matrix, self.average)

    @staticmethod
    def normalize(matrix: torch.Tensor, average: str) -> torch.Tensor:
        """Divide each row (``"recall"``) or column (``"precision"``) by its sum."""
        if average == "recall":
            return matrix / (matrix.sum(dim=1).unsqueeze(1) + _EPS)
        if average == "precision":
            return matrix / (matrix.sum(dim=0) + _EPS)
        raise ValueError(f"Argument average should be one of 'samples', 'recall', 'precision', got {average!r}")


def _check_cm(cm: Any, ignore_index: Any) -> None:
    if not isinstance(cm, ConfusionMatrix):
        raise TypeError(f"Argument cm should be instance of ConfusionMatrix, but given {type(cm)}")
    if ignore_index is not None and not (
        isinstance(ignore_index, numbers.Integral) and 0 <= ignore_index < cm.num_classes
    ):
        raise ValueError(
            f"ignore_index should be integer and in the range of [0, {cm.num_classes}), but given {ignore_index}"
        )


def _without_index(per_class: MetricsLambda, ignore_index: int | None, what: str) -> MetricsLambda:
    if ignore_index is None:
        return per_class

    def drop(vector: torch.Tensor) -> torch.Tensor:
        if ignore_index >= len(vector):
            raise ValueError(f"ignore_index {ignore_index} is larger than the length of {what} vector {len(vector)}")
        kept = [i for i in range(len(vector)) if i != ignore_index]
        return vector[kept]

    return MetricsLambda(drop, per_class)


def IoU(cm: ConfusionMatrix, ignore_index: int | None = None) -> MetricsLambda:  # noqa: N802 - ignite's name
    """Intersection over union per class, ``TP / (TP + FP + FN)``, optionally without class ``ignore_index``.

    >>> cm = ConfusionMatrix(num_classes=2)
    >>> iou = IoU(cm)
    >>> iou.update((torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]]), torch.tensor([0, 1, 0])))
    >>> [round(value, 6) for value in iou.compute().tolist()]
    [0.5, 0.5]
    """
    _check_cm(cm, ignore_index)
    if cm.average not in (None, "samples"):
        raise ValueError(f"ConfusionMatrix should have average attribute either None or 'samples', got {cm.average!r}")
    matrix = cm.to(torch.double)
    iou = matrix.diag() / (matrix.sum(dim=1) + matrix.sum(dim=0) - matrix.diag() + _EPS)
    return _without_index(iou, ignore_index, "IoU")


def mIoU(cm: ConfusionMatrix, ignore_index: int | None = None) -> MetricsLambda:  # noqa: N802
    """The mean of :func:`IoU` over classes (except ``ignore_index``)."""
    return IoU(cm=cm, ignore_index=ignore_index).mean()


JaccardIndex = IoU


def cmAccuracy(cm: ConfusionMatrix) -> MetricsLambda:  # noqa: N802
    """Accuracy from the matrix: the trace over the total."""
    matrix = cm.to(torch.double)
    return matrix.diag().sum() / (matrix.sum() + _EPS)


def cmPrecision(cm: ConfusionMatrix, average: bool = True) -> MetricsLambda:  # noqa: N802
    """Precision per class from the matrix (columns), or its mean over classes when ``average``."""
    matrix = cm.to(torch.double)
    precision = matrix.diag() / (matrix.sum(dim=0) + _EPS)
    return precision.mean() if average else precision


def cmRecall(cm: ConfusionMatrix, average: bool = True) -> MetricsLambda:  # noqa: N802
    """Recall per class from the matrix (rows), or its mean over classes when ``average``."""
    matrix = cm.to(torch.double)
    recall = matrix.diag() / (matrix.sum(dim=1) + _EPS)
    return recall.mean() if average else recall


def DiceCoefficient(cm: ConfusionMatrix, ignore_index: int | None = None) -> MetricsLambda:  # noqa: N802
    """Dice per class, ``2 TP / (2 TP + FP + FN)``, optionally without class ``ignore_index``."""
    _check_cm(cm, ignore_index)
    matrix = cm.to(torch.double)
    dice = 2.0 * matrix.diag() / (matrix.sum(dim=1) + matrix.sum(dim=0) + _EPS)
    return _without_index(dice, ignore_index, "Dice")
