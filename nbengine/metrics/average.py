"""``Average``: the running mean of numbers or tensors produced by the engine (losses, image statistics, ...)."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import torch

from nbengine.metrics.metric import Metric, NotComputableError, _describe, _identity

__all__ = ["Average"]


class Average(Metric):
    """Arithmetic mean of the values it is fed, in float64.

    What one ``update`` counts as, following pytorch-ignite:

    - a Python number or a tensor with 0 or 1 dimensions is **one** sample (a 1-D tensor is one
      vector-valued sample, and the mean is taken element-wise);
    - a tensor of shape ``(N, ...)`` with 2 or more dimensions is **N** samples of shape ``(...)``.

    So to average a per-sample loss vector of shape ``(N,)`` over samples, feed it as ``(N, 1)``.

    >>> average = Average()
    >>> for batch in (torch.tensor([[1.0, 10.0], [3.0, 30.0]]), torch.tensor([[5.0, 50.0]])):
    ...     average.update(batch)
    >>> average.compute()
    tensor([ 3., 30.], dtype=torch.float64)
    """

    required_output_keys = None
    _state_dict_all_req_keys = ("accumulator", "num_examples")

    def __init__(
        self,
        output_transform: Callable[[Any], Any] = _identity,
        device: str | torch.device = "cpu",
        skip_unrolling: bool = False,
    ) -> None:
        super().__init__(output_transform=output_transform, device=device, skip_unrolling=skip_unrolling)

    def reset(self) -> None:
        self.accumulator = torch.tensor(0.0, dtype=torch.float64, device=self._device)
        self.num_examples = 0

    def update(self, output: Any) -> None:
        if isinstance(output, bool) or not isinstance(output, (numbers.Real, torch.Tensor)):
            raise TypeError(
                f"{self._label()}: update takes a number or a tensor, got {_describe(output)}; use output_transform "
                "to pick the value out of the engine output"
            )
        if isinstance(output, torch.Tensor):
            value = output.detach().to(device=self._device, dtype=torch.float64)
            if value.ndim > 1:
                count = value.shape[0]
                value = value.sum(dim=0)
            else:
                count = 1
        else:
            value, count = float(output), 1

        if self.num_examples > 0:
            seen = tuple(self.accumulator.shape)
            given = tuple(value.shape) if isinstance(value, torch.Tensor) else ()
            if seen != given:
                raise ValueError(
                    f"{self._label()}: this update's samples have shape {given} but earlier samples had shape "
                    f"{seen}; expected the same sample shape until the next reset"
                )
        self.accumulator = self.accumulator + value
        self.num_examples += count

    def compute(self) -> torch.Tensor:
        if self.num_examples < 1:
            raise NotComputableError(f"{self._label()}: needs at least one example before it can be computed")
        return self.accumulator / self.num_examples
