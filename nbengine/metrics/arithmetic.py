"""Arithmetic on metrics: ``precision * recall * 2 / (precision + recall)``, ``cm.diag().sum()``, ``m[1:3]``.

Each operator, index or method call on a metric builds a ``MetricsLambda`` whose ``compute`` applies the
operation to the operands' computed values, as in pytorch-ignite. A public attribute a metric does not
have is read as a method of its *result* (``cm.sum(dim=0)`` sums the computed matrix); a typo there
fails when the value is computed, naming the place the attribute was written. Names starting with
``_`` are never turned into operations, so a missing private attribute is an ordinary
``AttributeError``.
"""

from __future__ import annotations

import operator
import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["MetricArithmetic"]


def _lambda(function: Callable, *operands: Any, **kwargs: Any) -> Any:
    from nbengine.metrics.metrics_lambda import MetricsLambda

    return MetricsLambda(function, *operands, **kwargs)




def _result_method(name: str, defined_at: str) -> Callable:
    def call(value: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            method = getattr(value, name)
        except AttributeError:
            raise AttributeError(
                f"Metric result of type '{type(value)}' has no attribute '{name}'. "
                f"Note: '{name}' was accessed on the metric at:\n{defined_at}"
            ) from None
        return method(*args, **kwargs)

    call.__name__ = name
    return call


class MetricArithmetic:
    """Operators of ``Metric``: each returns a ``MetricsLambda`` over this metric and the other operand."""

    def __add__(self, other: Any) -> Any:
        return _lambda(operator.add, self, other)

    def __radd__(self, other: Any) -> Any:
        return _lambda(operator.add, other, self)

    def __sub__(self, other: Any) -> Any:
        return _lambda(operator.sub, self, other)

    def __rsub__(self, other: Any) -> Any:
        return _lambda(operator.sub, other, self)

    def __mul__(self, other: Any) -> Any:
        return _lambda(operator.mul, self, other)

    def __rmul__(self, other: Any) -> Any:
        return _lambda(operator.mul, other, self)

    def __pow__(self, other: Any) -> Any:
        return _lambda(operator.pow, self, other)

    def __rpow__(self, other: Any) -> Any:
        return _lambda(operator.pow, other, self)

    def __mod__(self, other: Any) -> Any:
        return _lambda(operator.mod, self, other)

    def __truediv__(self, other: Any) -> Any:
        return _lambda(operator.truediv, self, other)

    def __rtruediv__(self, other: Any) -> Any:
        return _lambda(operator.truediv, other, self)

    def __floordiv__(self, other: Any) -> Any:
        return _lambda(operator.floordiv, self, other)

    def __getitem__(self, index: Any) -> Any:
        return _lambda(operator.itemgetter(index), self)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        # Only reached for attributes the metric does not have.
        if name.startswith("_"):
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        defined_at = "".join(traceback.format_stack(limit=8)[:-1])
        method = _result_method(name, defined_at)

        def build(*args: Any, **kwargs: Any) -> Any:
            return _lambda(method, self, *args, **kwargs)

        return build
