"""Metric usages: which three engine events reset a metric, feed it, and write its result.

============================================  ==================  ============================  =======================
usage                                          reset on            update on                     result written on
============================================  ==================  ============================  =======================
``EpochWise`` / ``"epoch_wise"`` (default)     EPOCH_STARTED       ITERATION_COMPLETED           EPOCH_COMPLETED
``RunningEpochWise`` / ``"running_epoch_wise"``  STARTED           EPOCH_COMPLETED               EPOCH_COMPLETED
``BatchWise`` / ``"batch_wise"``               ITERATION_STARTED   ITERATION_COMPLETED           ITERATION_COMPLETED
``RunningBatchWise`` / ``"running_batch_wise"``  STARTED           ITERATION_COMPLETED           ITERATION_COMPLETED
``SingleEpochRunningBatchWise``                EPOCH_STARTED       ITERATION_COMPLETED           ITERATION_COMPLETED
``BatchFiltered(every=k)``                     EPOCH_STARTED       ITERATION_COMPLETED(every=k)  EPOCH_COMPLETED
============================================  ==================  ============================  =======================

The names and events are pytorch-ignite's (``ignite.metrics.metric``), which re-exports them.
"""

from __future__ import annotations

from typing import Any

from nbengine.engine.events import Events

__all__ = [
    "BatchFiltered",
    "BatchWise",
    "EpochWise",
    "MetricUsage",
    "RunningBatchWise",
    "RunningEpochWise",
    "SingleEpochRunningBatchWise",
    "to_usage",
]


class MetricUsage:
    """The three events of a usage: ``STARTED`` (reset), ``ITERATION_COMPLETED`` (update), ``COMPLETED`` (write)."""

    usage_name: str = "custom"

    def __init__(self, started: Any, completed: Any, iteration_completed: Any) -> None:
        self._started = started
        self._completed = completed
        self._iteration_completed = iteration_completed

    @property
    def STARTED(self) -> Any:  # noqa: N802 - the attribute names are ignite's
        return self._started

    @property
    def COMPLETED(self) -> Any:  # noqa: N802
        return self._completed

    @property
    def ITERATION_COMPLETED(self) -> Any:  # noqa: N802
        return self._iteration_completed

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class EpochWise(MetricUsage):
    """One value per epoch: reset when the epoch starts, written when it completes (the default)."""

    usage_name = "epoch_wise"

    def __init__(self) -> None:
        super().__init__(Events.EPOCH_STARTED, Events.EPOCH_COMPLETED, Events.ITERATION_COMPLETED)


class RunningEpochWise(EpochWise):
    """Fed once per epoch and never reset during the run (for running measures over epochs)."""

    usage_name = "running_epoch_wise"

    def __init__(self) -> None:
        MetricUsage.__init__(self, Events.STARTED, Events.EPOCH_COMPLETED, Events.EPOCH_COMPLETED)


class BatchWise(MetricUsage):
    """One value per iteration, from that iteration's output alone."""

    usage_name = "batch_wise"

    def __init__(self) -> None:
        super().__init__(Events.ITERATION_STARTED, Events.ITERATION_COMPLETED, Events.ITERATION_COMPLETED)


class RunningBatchWise(BatchWise):
    """Written after every iteration, accumulated over the whole run."""

    usage_name = "running_batch_wise"

    def __init__(self) -> None:
        MetricUsage.__init__(self, Events.STARTED, Events.ITERATION_COMPLETED, Events.ITERATION_COMPLETED)


class SingleEpochRunningBatchWise(BatchWise):
    """Written after every iteration, accumulated since the start of the current epoch."""

    usage_name = "single_epoch_running_batch_wise"

    def __init__(self) -> None:
        MetricUsage.__init__(self, Events.EPOCH_STARTED, Events.ITERATION_COMPLETED, Events.ITERATION_COMPLETED)


class BatchFiltered(MetricUsage):
    """Epoch-wise, but fed only on the iterations the filter selects (``every=``, ``once=``, ...)."""

    usage_name = "batch_filtered"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(Events.EPOCH_STARTED, Events.EPOCH_COMPLETED, Events.ITERATION_COMPLETED(*args, **kwargs))


_NAMED_USAGES: tuple[type[MetricUsage], ...] = (
    EpochWise,
    RunningEpochWise,
    BatchWise,
    RunningBatchWise,
    SingleEpochRunningBatchWise,
)


def to_usage(usage: str | MetricUsage) -> MetricUsage:
    """Return the ``MetricUsage`` for a usage name or instance; refuse anything else, naming the choices."""
    if isinstance(usage, MetricUsage):
        return usage
    if isinstance(usage, str):
        for usage_cls in _NAMED_USAGES:
            if usage_cls.usage_name == usage:
                return usage_cls()
        names = [usage_cls.usage_name for usage_cls in _NAMED_USAGES]
        raise ValueError(
            "Argument usage should be '(Running)EpochWise.usage_name' or "
            f"'((SingleEpoch)Running)BatchWise.usage_name', got {usage!r} (one of {names} or a MetricUsage)"
        )
    raise TypeError(f"Unhandled usage type {type(usage)}: argument usage should be a usage name or a MetricUsage")
