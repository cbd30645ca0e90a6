"""``MetricsLambda``: a metric computed by a function of other metrics' results (and plain values).

``F1 = MetricsLambda(lambda p, r: 2 * p * r / (p + r), precision, recall)``; the operators on
``Metric`` build these. Attaching it attaches its operand metrics *partially* (their reset and update
handlers, not their result), so only the lambda's result is written; its reset and update reset and
update its operands.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import torch

from nbengine._checks import check_callable
from nbengine.metrics.metric import Metric, reinit__is_reduced
from nbengine.metrics.usage import MetricUsage

__all__ = ["MetricsLambda"]


def _computed_on_cpu(value: Any) -> Any:
    if isinstance(value, Metric):
        value = value.compute()
    if isinstance(value, torch.Tensor):
        value = value.cpu()
    return value


class MetricsLambda(Metric):
    """``compute()`` is ``f(*computed args, **computed kwargs)``, where metrics among the arguments are computed.

    Args:
        f: the function.
        args, kwargs: metrics or plain values given to ``f``.
        skip_unrolling, metrics_result_mode: as for :class:`~nbengine.metrics.Metric`.

    >>> from nbengine.metrics import MeanSquaredError
    >>> mse = MeanSquaredError()
    >>> root = MetricsLambda(lambda value: value ** 0.5, mse)
    >>> root.update((torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])))
    >>> root.compute()
    2.0
    """

    _state_dict_all_req_keys = ("_updated", "args", "kwargs")
    # Arguments that are neither state nor metrics (a dtype, an index) are kept, not saved.
    _state_dict_keeps_config = True

    def __init__(
        self,
        f: Callable[..., Any],
        *args: Any,
        skip_unrolling: bool = False,
        metrics_result_mode: str = "both",
        **kwargs: Any,
    ) -> None:
        self.function = check_callable("argument f", f, prefix="MetricsLambda")
        self.args = list(args)  # a list, so that load_state_dict can write into it
        self.kwargs = kwargs
        self.engine: Any = None
        self._updated = False
        super().__init__(device="cpu", skip_unrolling=skip_unrolling, metrics_result_mode=metrics_result_mode)

    def _operands(self) -> Iterator[Any]:
        return itertools.chain(self.args, self.kwargs.values())

    @reinit__is_reduced
    def reset(self) -> None:
        for operand in self._operands():
            if isinstance(operand, Metric):
                operand.reset()
        self._updated = False

    @reinit__is_reduced
    def update(self, output: Any) -> None:
        if self.engine:
            raise ValueError(
                "MetricsLambda is already attached to an engine, "
                "and MetricsLambda can't use update API while it's attached."
            )
        for operand in self._operands():
            if isinstance(operand, Metric):
                operand.update(output)
        self._updated = True

    def compute(self) -> Any:
        args = [_computed_on_cpu(arg) for arg in self.args]
        kwargs = {key: _computed_on_cpu(value) for key, value in self.kwargs.items()}
        return self.function(*args, **kwargs)

    def _internal_attach(self, engine: Any, usage: MetricUsage) -> None:
        self.engine = engine
        for operand in self._operands():
            if isinstance(operand, MetricsLambda):
                operand._internal_attach(engine, usage)
            elif isinstance(operand, Metric):
                if not engine.has_event_handler(operand.started, usage.STARTED):
                    engine.add_event_handler(usage.STARTED, operand.started)
                if not engine.has_event_handler(operand.iteration_completed, usage.ITERATION_COMPLETED):
                    engine.add_event_handler(usage.ITERATION_COMPLETED, operand.iteration_completed)

    def attach(self, engine: Any, name: str, usage: str | MetricUsage = "epoch_wise") -> None:
        """Attach the operands partially and write this metric's result under ``name``."""
        if self._updated:
            raise ValueError(
                "The underlying metrics are already updated, can't attach while using reset/update/compute API."
            )
        usage = self._check_usage(usage)
        self._check_engine(engine)
        self._internal_attach(engine, usage)
        self._attach_completed(engine, name, usage)

    def detach(self, engine: Any, usage: str | MetricUsage = "epoch_wise") -> None:
        """Remove this metric's result handler; the operands' handlers stay."""
        super().detach(engine, usage)
        self.engine = None

    def is_attached(self, engine: Any, usage: str | MetricUsage = "epoch_wise") -> bool:
        """Whether the result is written and every operand is (at least partially) attached."""
        usage = self._check_usage(usage)
        return super().is_attached(engine, usage) and self._internal_is_attached(engine, usage)

    def _internal_is_attached(self, engine: Any, usage: MetricUsage) -> bool:
        if engine is None:
            return False
        for operand in self._operands():
            if isinstance(operand, MetricsLambda):
                if not operand._internal_is_attached(engine, usage):
                    return False
            elif isinstance(operand, Metric):
                if not engine.has_event_handler(operand.started, usage.STARTED):
                    return False
                if not engine.has_event_handler(operand.iteration_completed, usage.ITERATION_COMPLETED):
                    return False
        return True
