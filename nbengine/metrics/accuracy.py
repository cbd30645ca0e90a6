"""``Accuracy``: the fraction of correct predictions, for binary, multiclass and multilabel outputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from nbengine.metrics.metric import Metric, NotComputableError, _identity, unpack_prediction_pair

__all__ = ["Accuracy"]


def _shape(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(tensor.shape)


def _case(update_type: str, num_classes: int | None) -> str:
    if update_type == "binary":
        return "binary"
    return f"{update_type} with {num_classes} {'classes' if update_type == 'multiclass' else 'labels'}"


class Accuracy(Metric):
    """Fraction of samples whose prediction is exactly right.

    ``update`` takes ``(y_pred, y)``; the case is read from the shapes:

    - **binary**: ``y_pred`` and ``y`` of shape ``(N, ...)`` holding 0s and 1s (or ``y_pred`` of
      shape ``(N, 1, ...)``). Threshold probabilities first, e.g. ``output_transform=lambda o:
      ((o[0] > 0.5).long(), o[1])``.
    - **multiclass**: ``y_pred`` of shape ``(N, C, ...)`` with ``C > 1`` scores (logits or
      probabilities; the arg-max is the prediction) and ``y`` of shape ``(N, ...)`` holding integer
      class indices in ``[0, C)``.
    - **multilabel** (``is_multilabel=True``): ``y_pred`` and ``y`` of shape ``(N, C, ...)``, ``C > 1``,
      holding 0s and 1s; a sample counts as correct only if all of its ``C`` labels are.

    The case and ``C`` are fixed by the first update after a reset; later updates must agree.

    >>> accuracy = Accuracy()
    >>> accuracy.update((torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), torch.tensor([1, 1, 1])))
    >>> accuracy.compute()
    0.6666666666666666
    """

    _state_dict_all_req_keys = ("_num_correct", "_num_examples", "_type", "_num_classes")

    def __init__(
        self,
        output_transform: Callable[[Any], Any] = _identity,
        is_multilabel: bool = False,
        device: str | torch.device = "cpu",
        skip_unrolling: bool = False,
    ) -> None:
        if not isinstance(is_multilabel, bool):
            raise TypeError(f"Accuracy: argument is_multilabel should be a bool, got {is_multilabel!r}")
        self._is_multilabel = is_multilabel
        super().__init__(output_transform=output_transform, device=device, skip_unrolling=skip_unrolling)

    def reset(self) -> None:
        self._num_correct = torch.tensor(0, device=self._device)
        self._num_examples = 0
        self._type: str | None = None
        self._num_classes: int | None = None

    def update(self, output: Any) -> None:
        y_pred, y = unpack_prediction_pair(self, output)
        update_type, num_classes = self._classify(y_pred, y)
        if self._type is None:
            self._type, self._num_classes = update_type, num_classes
        elif (self._type, self._num_classes) != (update_type, num_classes):
            raise ValueError(
                f"{self._label()}: this update is {_case(update_type, num_classes)} (y_pred {_shape(y_pred)}, "
                f"y {_shape(y)}), but earlier updates since the last reset were {_case(self._type, self._num_classes)}; "
                "expected the same case until the next reset"
            )

        if update_type == "binary":
            correct = y_pred.reshape(-1).to(y.dtype) == y.reshape(-1)
        elif update_type == "multiclass":
            correct = (y_pred.argmax(dim=1) == y).reshape(-1)
        else:
            # Move the class axis last so every other axis counts as a sample: (N, C, ...) -> (N * ..., C).
            y_pred_rows = y_pred.movedim(1, -1).reshape(-1, num_classes)
            y_rows = y.movedim(1, -1).reshape(-1, num_classes)
            correct = (y_pred_rows.to(y_rows.dtype) == y_rows).all(dim=-1)

        self._num_correct += correct.sum().to(self._device)
        self._num_examples += correct.shape[0]

    def _classify(self, y_pred: torch.Tensor, y: torch.Tensor) -> tuple[str, int]:
        """Return ``("binary" | "multiclass" | "multilabel", number of classes)`` or refuse the shapes."""
        label = self._label()
        if self._is_multilabel:
            if y_pred.shape != y.shape or y.ndim < 2 or y.shape[1] < 2:
                raise ValueError(
                    f"{label}: multilabel y_pred has shape {_shape(y_pred)} and y has shape {_shape(y)}; expected "
                    "both of the same shape (N, C, ...) with C > 1"
                )
            self._check_zeros_and_ones(y_pred, "y_pred", "multilabel")
            self._check_zeros_and_ones(y, "y", "multilabel")
            return "multilabel", y.shape[1]

        if y_pred.ndim == y.ndim + 1 and y_pred.ndim >= 2:
            num_classes = y_pred.shape[1]
            if y_pred.shape[0] != y.shape[0] or y_pred.shape[2:] != y.shape[1:]:
                raise ValueError(
                    f"{label}: y_pred has shape {_shape(y_pred)} and y has shape {_shape(y)}; expected y_pred of shape "
                    f"(N, C, ...) and y of shape (N, ...) with the same N and trailing dimensions, i.e. y of shape "
                    f"{(y_pred.shape[0],) + _shape(y_pred)[2:]}"
                )
            if num_classes == 1:
                self._check_zeros_and_ones(y_pred, "y_pred", "binary")
                self._check_zeros_and_ones(y, "y", "binary")
                return "binary", 1
            if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
                raise TypeError(
                    f"{label}: multiclass y has dtype {y.dtype}; expected integer class indices (e.g. torch.long) "
                    f"for y_pred of shape {_shape(y_pred)}"
                )
            if y.numel() > 0:
                low, high = int(y.min()), int(y.max())
                if low < 0 or high >= num_classes:
                    raise ValueError(
                        f"{label}: multiclass y holds class indices from {low} to {high}; expected indices in "
                        f"[0, {num_classes - 1}] for y_pred of shape {_shape(y_pred)} ({num_classes} classes)"
                    )
            return "multiclass", num_classes

        if y_pred.shape == y.shape:
            self._check_zeros_and_ones(y_pred, "y_pred", "binary")
            self._check_zeros_and_ones(y, "y", "binary")
            return "binary", 1

        raise ValueError(
            f"{label}: y_pred has shape {_shape(y_pred)} and y has shape {_shape(y)}; expected y_pred (N, C, ...) with "
            "y (N, ...) for multiclass, or both of the same shape (N, ...) holding 0s and 1s for binary "
            "(pass is_multilabel=True for multilabel)"
        )

    def _check_zeros_and_ones(self, tensor: torch.Tensor, role: str, case: str) -> None:
        if not bool(((tensor == 0) | (tensor == 1)).all()):
            found = torch.unique(tensor[(tensor != 0) & (tensor != 1)])[:5].tolist()
            raise ValueError(
                f"{self._label()}: {case} {role} of shape {_shape(tensor)} holds values other than 0 and 1 "
                f"(e.g. {found}); expected 0s and 1s (threshold probabilities in output_transform)"
            )

    def compute(self) -> float:
        if self._num_examples == 0:
            raise NotComputableError(f"{self._label()}: needs at least one example before it can be computed")
        return self._num_correct.item() / self._num_examples
