"""``TerminateOnNan``: ends a run as soon as the process function's output holds a NaN or an infinity.

This module owns the walk over the output (a number, a tensor, or mappings/sequences of them) and
the decision to stop. Behaviour and log message are pytorch-ignite 0.5.5's
``ignite.handlers.TerminateOnNan``.
"""

from __future__ import annotations

import logging
import cmath
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from nbengine._checks import check_callable
from nbengine.engine import Engine

__all__ = ["TerminateOnNan"]


def _all_finite(value: Any) -> bool:
    """False when a number or tensor anywhere in ``value`` is NaN or infinite; other leaves are ignored."""
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value).all())
    if isinstance(value, numbers.Integral):
        return True
    if isinstance(value, numbers.Number):
        return cmath.isfinite(value)
    if isinstance(value, (str, bytes)):
        return True
    if isinstance(value, Mapping):
        return all(_all_finite(item) for item in value.values())
    if isinstance(value, Sequence):
        return all(_all_finite(item) for item in value)
    return True


class TerminateOnNan:
    """Calls ``engine.terminate()`` when ``output_transform(engine.state.output)`` holds a NaN or an
    infinite number or tensor, at any depth of mappings, tuples and lists.

    Args:
        output_transform: picks what to check from the output; default the whole output.

    >>> from nbengine.engine import Engine, Events
    >>> trainer = Engine(lambda engine, batch: {"loss": batch * 2})
    >>> _ = trainer.add_event_handler(Events.ITERATION_COMPLETED, TerminateOnNan())
    >>> state = trainer.run([1.0, 2.0, float("inf"), 3.0])
    >>> (state.iteration, state.output)
    (3, {'loss': inf})
    """

    def __init__(self, output_transform: Callable[[Any], Any] = lambda output: output) -> None:
        check_callable("output_transform", output_transform, "fn(output) -> what to check")
        self.logger = logging.getLogger(f"{__name__}.{type(self).__name__}")
        self._output_transform = output_transform

    def __call__(self, engine: Engine) -> None:
        output = self._output_transform(engine.state.output)
        if not _all_finite(output):
            self.logger.warning(f"{type(self).__name__}: Output '{output}' contains NaN or Inf. Stop training")
            engine.terminate()
