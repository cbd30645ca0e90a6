"""The two decorators a metric's methods wear so that the metric works on several processes.

``reinit__is_reduced`` marks ``reset``/``update`` (methods that change the accumulators): it drops a
cached ``_result``. ``sync_all_reduce("attr", "attr:OP", ...)`` wraps ``compute``: on more than one
process each named accumulator is replaced, for the duration of the call, by its reduction over all
processes (``nbengine.distributed.all_reduce``; SUM by default, or MIN, MAX, PRODUCT), then restored,
so calling ``compute`` twice never reduces twice. On one process nothing is communicated.

``nbengine.distributed`` is imported inside the call, not at import time: ``import nbengine`` (and
``nbengine.metrics``) stays free of it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from numbers import Number
from typing import Any

import torch

__all__ = ["reinit__is_reduced", "sync_all_reduce"]

_REDUCTION_OPS = ("MIN", "MAX", "SUM", "PRODUCT")


def reinit__is_reduced(func: Callable) -> Callable:
    """Decorate a method that changes a metric's accumulators: it clears the metric's cached ``_result``."""

    @wraps(func)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = func(self, *args, **kwargs)
        if "_result" in self.__dict__:
            self._result = None
        return result

    wrapper._decorated = True  # type: ignore[attr-defined]
    return wrapper


def _parse_spec(spec: str) -> tuple[str, str | None]:
    """``"attr"`` -> ``("attr", None)``; ``"attr:OP"`` -> ``("attr", "OP")`` (validated when called)."""
    if ":" in spec:
        attr, op = spec.split(":", 1)
        return attr, op
    return spec, None


def _reduction_inputs(metric: Any, specs: list[tuple[str, str | None]]) -> list[tuple[str, Any, dict]]:
    """Check every named accumulator exists and is a number or tensor; return (name, value, op kwargs)."""
    inputs = []
    for attr, op in specs:
        op_kwargs: dict = {}
        if op is not None:
            if op not in _REDUCTION_OPS:
                raise ValueError(
                    f"Reduction operation is not valid (expected : {list(_REDUCTION_OPS)}, got: {op}) "
                    f"in sync_all_reduce('{attr}:{op}') of {type(metric).__name__}"
                )
            op_kwargs["op"] = op
        if attr not in metric.__dict__:
            raise ValueError(f"Metric {type(metric)} has no attribute named `{attr}`.")
        value = metric.__dict__[attr]
        if not isinstance(value, (Number, torch.Tensor)):
            raise TypeError(
                "Attribute provided to sync_all_reduce should be a number or tensor but "
                f"`{attr}` has type {type(value)}"
            )
        inputs.append((attr, value, op_kwargs))
    return inputs


def sync_all_reduce(*attrs: str) -> Callable:
    """Decorate ``compute``: reduce the named accumulators over all processes while it runs.

    Each of ``attrs`` is an attribute name, optionally with ``":SUM"``, ``":MIN"``, ``":MAX"`` or
    ``":PRODUCT"`` (default SUM).
    """
    specs = [_parse_spec(attr) for attr in attrs]

    def decorator(func: Callable) -> Callable:
        @wraps(func)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            from nbengine.metrics.metric import Metric

            if not isinstance(self, Metric):
                raise RuntimeError(
                    "Decorator sync_all_reduce should be used on ignite.metric.Metric class methods only "
                    f"(nbengine.metrics.Metric), got {type(self).__name__}"
                )
            inputs = _reduction_inputs(self, specs)
            if not inputs:
                return func(self, *args, **kwargs)
            import nbengine.distributed as idist

            if idist.get_world_size() <= 1:
                return func(self, *args, **kwargs)
            for attr, value, op_kwargs in inputs:
                # all_reduce may work in place on a tensor of this process's device: reduce a copy.
                local = value.clone() if isinstance(value, torch.Tensor) else value
                setattr(self, attr, idist.all_reduce(local, **op_kwargs))
            try:
                return func(self, *args, **kwargs)
            finally:
                for attr, value, _ in inputs:
                    setattr(self, attr, value)

        return wrapper

    decorator._decorated = True  # type: ignore[attr-defined]
    return decorator
