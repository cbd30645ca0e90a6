"""What classification metrics (Accuracy, Precision, Recall) share: reading the case from the shapes.

The case and the number of classes are fixed by the first update after a reset; later updates must
agree. Shapes, as in pytorch-ignite:

- **binary**: ``y_pred`` and ``y`` of shape ``(N, ...)`` holding 0s and 1s (or ``y_pred`` of shape
  ``(N, 1, ...)``);
- **multiclass**: ``y_pred`` of shape ``(N, C, ...)``, ``C > 1``, scores whose arg-max is the
  prediction, and ``y`` of shape ``(N, ...)`` holding class indices;
- **multilabel** (``is_multilabel=True``): ``y_pred`` and ``y`` of shape ``(N, C, ...)``, ``C > 1``,
  holding 0s and 1s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from nbengine.metrics.metric import Metric, _identity, unpack_prediction_pair

__all__ = ["ClassificationMetric"]


def _shape(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(tensor.shape)


def _check_zeros_and_ones(metric: Metric, tensor: torch.Tensor, role: str) -> None:
    if not torch.equal(tensor, tensor**2):
        found = torch.unique(tensor[(tensor != 0) & (tensor != 1)])[:5].tolist()
        raise ValueError(
            f"{metric._label()}: For binary cases, {role} must be comprised of 0's and 1's. {role} of shape "
            f"{_shape(tensor)} holds other values (e.g. {found}); threshold probabilities in output_transform"
        )


class ClassificationMetric(Metric):
    """A metric over ``(y_pred, y)`` classification outputs: shape checks and the case of the updates."""

    def __init__(
        self,
        output_transform: Callable[[Any], Any] = _identity,
        is_multilabel: bool = False,
        device: str | torch.device = torch.device("cpu"),
        skip_unrolling: bool = False,
    ) -> None:
        if not isinstance(is_multilabel, bool):
            raise TypeError(f"Argument is_multilabel should be a bool, got {is_multilabel!r}")
        self._is_multilabel = is_multilabel
        self._type: str | None = None
        self._num_classes: int | None = None
        super().__init__(output_transform=output_transform, device=device, skip_unrolling=skip_unrolling)

    def reset(self) -> None:
        self._type = None
        self._num_classes = None

    def _check_shape(self, output: Sequence[torch.Tensor]) -> None:
        y_pred, y = self._unpack(output)
        if y.ndim not in (y_pred.ndim, y_pred.ndim - 1):
            raise ValueError(
                f"{self._label()}: y must have shape of (batch_size, ...) and y_pred must have shape of "
                f"(batch_size, num_categories, ...) or (batch_size, ...), but given {y.shape} vs {y_pred.shape}."
            )
        y_pred_shape = _shape(y_pred)
        if y.ndim + 1 == y_pred.ndim:
            y_pred_shape = (y_pred_shape[0],) + y_pred_shape[2:]
        if _shape(y) != y_pred_shape:
            raise ValueError(
                f"{self._label()}: y and y_pred must have compatible shapes. y_pred has shape {_shape(y_pred)} and y has "
                f"shape {_shape(y)}; expected y of shape {y_pred_shape}"
            )
        if self._is_multilabel and not (y.shape == y_pred.shape and y.ndim > 1 and y.shape[1] > 1):
            raise ValueError(
                f"{self._label()}: y and y_pred must have same shape of (batch_size, num_categories, ...) and "
                f"num_categories > 1. Given multilabel y_pred {_shape(y_pred)} and y {_shape(y)}"
            )

    def _check_type(self, output: Sequence[torch.Tensor]) -> None:
        y_pred, y = self._unpack(output)
        if y.ndim + 1 == y_pred.ndim:
            num_classes = y_pred.shape[1]
            if num_classes == 1:
                update_type = "binary"
                _check_zeros_and_ones(self, y, "y")
                _check_zeros_and_ones(self, y_pred, "y_pred")
            else:
                update_type = "multiclass"
        elif y.ndim == y_pred.ndim:
            _check_zeros_and_ones(self, y, "y")
            _check_zeros_and_ones(self, y_pred, "y_pred")
            if self._is_multilabel:
                update_type, num_classes = "multilabel", y_pred.shape[1]
            else:
                update_type, num_classes = "binary", 1
        else:
            raise RuntimeError(
                f"{self._label()}: Invalid shapes of y (shape={y.shape}) and y_pred (shape={y_pred.shape}), check "
                "documentation. for expected shapes of y and y_pred."
            )
        if self._type is None:
            self._type, self._num_classes = update_type, num_classes
            return
        if self._type != update_type:
            raise RuntimeError(
                f"{self._label()}: Input data type has changed from {self._type} to {update_type} "
                f"(y_pred {_shape(y_pred)}, y {_shape(y)}); expected the same case until the next reset"
            )
        if self._num_classes != num_classes:
            raise ValueError(
                f"{self._label()}: Input data number of classes has changed from {self._num_classes} to {num_classes} "
                f"(y_pred {_shape(y_pred)}, y {_shape(y)}); expected the same number until the next reset"
            )

    def _unpack(self, output: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return unpack_prediction_pair(self, output)

    @staticmethod
    def get_sequence_transform(
        ignore_index: int | Iterable[int] | None = None, output_transform: Callable[[Any], Any] = _identity
    ) -> Callable[[Any], tuple[torch.Tensor, torch.Tensor]]:
        """An output transform for sequence outputs: ``y_pred (N, S, C)`` and ``y (N, S)`` to ``(N*S, C)`` and
        ``(N*S,)``, dropping the positions whose target is ``ignore_index`` (an index or several)."""

        def flatten_sequence(output: Any) -> tuple[torch.Tensor, torch.Tensor]:
            y_pred, y = output_transform(output)
            if y_pred.ndim != 3 or y.ndim != 2:
                raise ValueError(
                    f"Expected y_pred to be 3D (N, S, C) and y to be 2D (N, S), but got y_pred={y_pred.ndim}D "
                    f"and y={y.ndim}D."
                )
            if y_pred.shape[:2] != y.shape:
                raise ValueError(
                    f"y_pred and y have incompatible shapes: y_pred={y_pred.shape} (expected first two dims to "
                    f"match y={y.shape})."
                )
            y_pred = y_pred.reshape(-1, y_pred.shape[-1])
            y = y.reshape(-1)
            if ignore_index is not None:
                ignored = [ignore_index] if isinstance(ignore_index, int) else list(ignore_index)
                keep = torch.ones_like(y, dtype=torch.bool)
                for index in ignored:
                    keep &= y != index
                y_pred, y = y_pred[keep], y[keep]
            return y_pred, y

        return flatten_sequence
