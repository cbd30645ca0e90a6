"""``Loss``: a loss function averaged over every sample the engine saw."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from nbengine._checks import check_callable
from nbengine.exceptions import NotComputableError
from nbengine.metrics.metric import Metric, _describe, _identity, reinit__is_reduced, sync_all_reduce

__all__ = ["Loss"]


class Loss(Metric):
    """Mean of ``loss_fn(y_pred, y)`` over samples, weighting each batch by its size.

    Args:
        loss_fn: returns the *batch average* as a 0-d tensor (e.g. ``nn.CrossEntropyLoss()``).
        output_transform: see :class:`~nbengine.metrics.Metric`. ``update`` takes ``(y_pred, y)`` or
            ``(y_pred, y, kwargs)`` where ``kwargs`` is a dict passed on to ``loss_fn``; a mapping output
            may carry them under ``"criterion_kwargs"``.
        batch_size: maps ``y`` to the number of samples in the batch (default ``len``).

    >>> loss = Loss(torch.nn.MSELoss())
    >>> loss.update((torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0])))
    >>> loss.update((torch.tensor([3.0]), torch.tensor([4.0])))
    >>> loss.compute()
    1.6666666666666667
    """

    required_output_keys = ("y_pred", "y")
    optional_output_keys = ("criterion_kwargs",)
    _state_dict_all_req_keys = ("_sum", "_num_examples")

    def __init__(
        self,
        loss_fn: Callable[..., torch.Tensor],
        output_transform: Callable[[Any], Any] = _identity,
        batch_size: Callable[[Any], int] = len,
        device: str | torch.device = torch.device("cpu"),
        skip_unrolling: bool = False,
    ) -> None:
        self._loss_fn = check_callable("argument loss_fn", loss_fn, prefix="Loss")
        self._batch_size = check_callable("argument batch_size", batch_size, prefix="Loss")
        super().__init__(output_transform=output_transform, device=device, skip_unrolling=skip_unrolling)

    @reinit__is_reduced
    def reset(self) -> None:
        self._sum = torch.tensor(0.0, dtype=self._double_dtype, device=self._device)
        self._num_examples = 0

    @reinit__is_reduced
    def update(self, output: Any) -> None:
        if not isinstance(output, (tuple, list)) or len(output) not in (2, 3):
            raise TypeError(
                f"{self._label()}: update takes (y_pred, y) or (y_pred, y, loss_fn_kwargs), got {_describe(output)}"
            )
        y_pred, y = output[0], output[1]
        kwargs = output[2] if len(output) == 3 else {}
        if not isinstance(kwargs, Mapping):
            raise TypeError(f"{self._label()}: the third item should be a dict of loss_fn kwargs, got {_describe(kwargs)}")
        average_loss = self._loss_fn(y_pred, y, **kwargs)
        if not isinstance(average_loss, torch.Tensor) or average_loss.ndim != 0:
            raise ValueError(
                f"loss_fn did not return the average loss. {self._label()}: loss_fn returned {_describe(average_loss)}; "
                "expected the batch average as a 0-d tensor (use reduction='mean')"
            )
        count = self._batch_size(y)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"{self._label()}: batch_size(y) returned {count!r}; expected a non-negative int")
        self._sum += average_loss.detach().to(device=self._device, dtype=self._double_dtype) * count
        self._num_examples += count

    @sync_all_reduce("_sum", "_num_examples")
    def compute(self) -> float:
        if self._num_examples == 0:
            raise NotComputableError("Loss must have at least one example before it can be computed.")
        return self._sum.item() / self._num_examples
