"""``RunningAverage``: an exponential moving average of the engine output or of another metric."""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable
from typing import Any

import torch

from nbengine.engine.events import Events
from nbengine.exceptions import NotComputableError
from nbengine.metrics.metric import Metric, _describe, _identity, reinit__is_reduced
from nbengine.metrics.usage import MetricUsage, RunningBatchWise, SingleEpochRunningBatchWise

__all__ = ["RunningAverage"]


class RunningAverage(Metric):
    """``value = alpha * value + (1 - alpha) * new``, starting from the first new value.

    Give exactly one source:

    - ``src``: a metric; after every iteration its ``compute()`` is the new value and it is reset,
      so each new value covers one iteration (e.g. ``RunningAverage(Accuracy())``);
    - ``output_transform``: maps ``engine.state.output`` to a number or tensor (e.g.
      ``RunningAverage(output_transform=lambda loss: loss)`` for a smoothed training loss).

    By default it is attached with ``usage="running_batch_wise"``: written after every iteration and
    carried across epochs; ``"single_epoch_running_batch_wise"`` restarts it at every epoch.
    ``epoch_bound`` (deprecated in ignite, kept for ported code) chooses between the two: True is
    single-epoch, False is the whole run, and it overrides the ``usage`` given to ``attach``.

    On several processes the new value from ``output_transform`` is first averaged over processes.

    >>> smoothed = RunningAverage(output_transform=lambda loss: loss, alpha=0.5)
    >>> for loss in (4.0, 2.0, 1.0):
    ...     smoothed.update(loss)
    >>> smoothed.compute()
    2.0
    """

    required_output_keys = None
    _state_dict_all_req_keys = ("_value", "src")

    def __init__(
        self,
        src: Metric | None = None,
        alpha: float = 0.98,
        output_transform: Callable[[Any], Any] | None = None,
        epoch_bound: bool | None = None,
        device: str | torch.device | None = None,
        skip_unrolling: bool = False,
    ) -> None:
        if not (src is None or isinstance(src, Metric)):
            raise TypeError(f"RunningAverage: Argument src should be a Metric or None. Got {_describe(src)}")
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 < alpha <= 1.0:
            raise ValueError(f"RunningAverage: Argument alpha should be a float between 0.0 and 1.0 (0 excluded). Got {alpha!r}")
        if src is not None:
            if output_transform is not None:
                raise ValueError(
                    "RunningAverage: Argument output_transform should be None if src is a Metric (the metric applies its own)."
                )
            if device is not None:
                raise ValueError("RunningAverage: Argument device should be None if src is a Metric (its device is used).")
            output_transform = _identity
            device = src._device
        elif output_transform is None:
            raise ValueError(
                "RunningAverage: Argument output_transform should not be None if src corresponds to the output of process "
                "function: give either src (a Metric) or output_transform (engine output to a number or tensor)"
            )
        if epoch_bound is not None:
            warnings.warn(
                "`epoch_bound` is deprecated and will be removed in the future. Consider using `usage` argument "
                "of `attach` method instead. `epoch_bound=True` is equivalent with "
                "`usage=SingleEpochRunningBatchWise()` and `epoch_bound=False` is equivalent with "
                "`usage=RunningBatchWise()`.",
                stacklevel=2,
            )
        self.src = src
        self.alpha = float(alpha)
        self.epoch_bound = epoch_bound
        super().__init__(
            output_transform=output_transform,
            device=torch.device("cpu") if device is None else device,
            skip_unrolling=skip_unrolling,
        )

    @reinit__is_reduced
    def reset(self) -> None:
        self._value: float | torch.Tensor | None = None
        if self.src is not None:
            self.src.reset()

    @reinit__is_reduced
    def update(self, output: Any) -> None:
        if self.src is not None:
            value = self.src.compute()
            self.src.reset()
        elif isinstance(output, torch.Tensor):
            value = _mean_over_processes(output.detach().to(self._device, copy=True))
        elif isinstance(output, numbers.Real) and not isinstance(output, bool):
            value = _mean_over_processes(float(output))
        else:
            raise TypeError(f"{self._label()}: output_transform should give a number or a tensor, got {_describe(output)}")
        if self._value is None:
            self._value = value
        else:
            self._value = self._value * self.alpha + (1.0 - self.alpha) * value

    def compute(self) -> float | torch.Tensor:
        if self._value is None:
            raise NotComputableError(f"{self._label()}: needs at least one update before it can be computed")
        return self._value

    def iteration_completed(self, engine: Any) -> None:
        if self.src is not None:
            # The value comes from the source metric, already fed by its own handler this iteration.
            self.update(None)
        else:
            super().iteration_completed(engine)

    def _usage(self, usage: str | MetricUsage) -> MetricUsage:
        usage = self._check_usage(usage)
        if self.epoch_bound is not None:
            return SingleEpochRunningBatchWise() if self.epoch_bound else RunningBatchWise()
        return usage

    def attach(self, engine: Any, name: str, usage: str | MetricUsage = "running_batch_wise") -> None:
        """Attach as in :meth:`Metric.attach`; the source metric, if any, is fed after every iteration."""
        usage = self._usage(usage)
        self._check_engine(engine)
        if self.src is not None and not engine.has_event_handler(self.src.iteration_completed, Events.ITERATION_COMPLETED):
            engine.add_event_handler(Events.ITERATION_COMPLETED, self.src.iteration_completed)
        super().attach(engine, name, usage)

    def detach(self, engine: Any, usage: str | MetricUsage = "running_batch_wise") -> None:
        """Undo :meth:`attach`."""
        usage = self._usage(usage)
        self._check_engine(engine)
        if self.src is not None and engine.has_event_handler(self.src.iteration_completed, Events.ITERATION_COMPLETED):
            engine.remove_event_handler(self.src.iteration_completed, Events.ITERATION_COMPLETED)
        super().detach(engine, usage)

    def is_attached(self, engine: Any, usage: str | MetricUsage = "running_batch_wise") -> bool:
        return super().is_attached(engine, self._usage(usage))


def _mean_over_processes(value: float | torch.Tensor) -> float | torch.Tensor:
    import nbengine.distributed as idist

    world_size = idist.get_world_size()
    if world_size <= 1:
        return value
    return idist.all_reduce(value) / world_size
