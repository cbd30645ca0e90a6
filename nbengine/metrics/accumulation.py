"""Accumulating metrics over the values an engine produces: ``VariableAccumulation`` and the means built on it.

``Average`` (arithmetic mean) and ``GeometricAverage`` are ``VariableAccumulation`` with a fixed
operation; the accumulator and the count are in ``state_dict``. What one ``update`` counts as, as in
pytorch-ignite:

- a Python number or a tensor with 0 or 1 dimensions is **one** sample (a 1-D tensor is one
  vector-valued sample, and the mean is taken element-wise);
- a tensor of shape ``(N, ...)`` with 2 or more dimensions is **N** samples of shape ``(...)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch

from nbengine._checks import check_callable
from nbengine.exceptions import NotComputableError
from nbengine.metrics.metric import Metric, _describe, _identity, reinit__is_reduced, sync_all_reduce

__all__ = ["Average", "GeometricAverage", "VariableAccumulation"]


def _samples_in(value: float | torch.Tensor) -> int:
    if isinstance(value, torch.Tensor) and value.ndim > 1:
        return value.shape[0]
    return 1


class VariableAccumulation(Metric):
    """``accumulator = op(accumulator, value)`` for every value fed, counting samples; ``compute()`` gives both.

    Args:
        op: ``op(accumulator, value) -> new accumulator``; the accumulator starts as a float64 0-d tensor
            and ``value`` is a number or a float64 tensor on ``device``.
        output_transform, device, skip_unrolling: as for :class:`~nbengine.metrics.Metric`.

    >>> largest = VariableAccumulation(torch.maximum)
    >>> largest.update(torch.tensor(2.0))
    >>> largest.update(torch.tensor(5.0))
    >>> largest.compute()
    (tensor(5., dtype=torch.float64), 2)
    """

    required_output_keys = None
    _state_dict_all_req_keys = ("accumulator", "num_examples")

    def __init__(
        self,
        op: Callable[[Any, Any], Any],
        output_transform: Callable[[Any], Any] = _identity,
        device: str | torch.device = torch.device("cpu"),
        skip_unrolling: bool = False,
    ) -> None:
        self._op = check_callable("Argument op", op, expected="a callable", prefix=type(self).__name__)
        super().__init__(output_transform=output_transform, device=device, skip_unrolling=skip_unrolling)

    @reinit__is_reduced
    def reset(self) -> None:
        self.accumulator = torch.tensor(0.0, dtype=self._double_dtype, device=self._device)
        self.num_examples = 0

    def _check_output_type(self, output: Any) -> None:
        if isinstance(output, bool) or not isinstance(output, (numbers.Number, torch.Tensor)):
            raise TypeError(
                f"{self._label()}: Output should be a number or torch.Tensor, but given {type(output)} "
                f"({_describe(output)}); use output_transform to pick the value out of the engine output"
            )

    @reinit__is_reduced
    def update(self, output: float | torch.Tensor) -> None:
        self._check_output_type(output)
        if isinstance(output, torch.Tensor):
            output = output.detach()
            if output.device != self._device or output.dtype != self.accumulator.dtype:
                output = output.to(self.accumulator)
        self.accumulator = self._op(self.accumulator, output)
        self.num_examples += _samples_in(output)

    @sync_all_reduce("accumulator", "num_examples")
    def compute(self) -> tuple[torch.Tensor, int]:
        return self.accumulator, self.num_examples

    def _check_sample_shape(self, output: float | torch.Tensor) -> None:
        """For means: every update's samples must have the shape of the earlier ones (no silent broadcasting);
        single values (shapes ``()``, ``(1,)``, ...) mix freely, as in ignite."""
        if self.num_examples == 0:
            return
        given: tuple[int, ...] = ()
        if isinstance(output, torch.Tensor):
            given = tuple(output.shape[1:]) if output.ndim > 1 else tuple(output.shape)
        seen = tuple(self.accumulator.shape)
        if given != seen and not (math.prod(given) == 1 and math.prod(seen) == 1):
            raise ValueError(
                f"{self._label()}: this update's samples have shape {given} but earlier samples had shape {seen}; "
                "expected the same sample shape until the next reset"
            )

    def _check_computable(self) -> None:
        if self.num_examples < 1:
            raise NotComputableError(
                f"{type(self).__name__} must have at least one example before it can be computed."
            )


def _add_samples(accumulator: torch.Tensor, value: float | torch.Tensor) -> torch.Tensor:
    if isinstance(value, torch.Tensor) and value.ndim > 1:
        value = value.sum(dim=0)
    return accumulator + value


def _add_log_samples(accumulator: torch.Tensor, value: float | torch.Tensor) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        value = torch.tensor(value, dtype=accumulator.dtype, device=accumulator.device)
    value = torch.log(value)
    if value.ndim > 1:
        value = value.sum(dim=0)
    return accumulator + value


class Average(VariableAccumulation):
    """Arithmetic mean of the values fed (see the module docstring for what counts as a sample), in float64.

    To average a per-sample loss vector of shape ``(N,)`` over samples, feed it as ``(N, 1)``.

    >>> average = Average()
    >>> for batch in (torch.tensor([[1.0, 10.0], [3.0, 30.0]]), torch.tensor([[5.0, 50.0]])):
    ...     average.update(batch)
    >>> average.compute()
    tensor([ 3., 30.], dtype=torch.float64)
    """

    def __init__(
        self,
        output_transform: Callable[[Any], Any] = _identity,
        device: str | torch.device = torch.device("cpu"),
        skip_unrolling: bool = False,
    ) -> None:
        super().__init__(_add_samples, output_transform=output_transform, device=device, skip_unrolling=skip_unrolling)

    @reinit__is_reduced
    def update(self, output: float | torch.Tensor) -> None:
        self._check_output_type(output)
        self._check_sample_shape(output)
        super().update(output)

    @sync_all_reduce("accumulator", "num_examples")
    def compute(self) -> float | torch.Tensor:
        self._check_computable()
        return self.accumulator / self.num_examples


class GeometricAverage(VariableAccumulation):
    """Geometric mean of the (positive) values fed: ``exp(mean(log(value)))``; a single number as a float.

    >>> geometric = GeometricAverage()
    >>> for value in (1.0, 4.0, 16.0):
    ...     geometric.update(value)
    >>> round(geometric.compute(), 12)
    4.0
    """

    def __init__(
        self,
        output_transform: Callable[[Any], Any] = _identity,
        device: str | torch.device = torch.device("cpu"),
        skip_unrolling: bool = False,
    ) -> None:
        super().__init__(
            _add_log_samples, output_transform=output_transform, device=device, skip_unrolling=skip_unrolling
        )

    @reinit__is_reduced
    def update(self, output: float | torch.Tensor) -> None:
        self._check_output_type(output)
        self._check_sample_shape(output)
        super().update(output)

    @sync_all_reduce("accumulator", "num_examples")
    def compute(self) -> float | torch.Tensor:
        self._check_computable()
        mean = torch.exp(self.accumulator / self.num_examples)
        return mean.item() if mean.numel() == 1 else mean
