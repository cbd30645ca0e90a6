"""The metric protocol: ``Metric`` (reset / update / compute / attach) and the usages that decide when it runs.

A metric keeps all of its accumulated state on itself, never in the loop, so a run that is paused,
stepped or resumed in any way feeds it exactly the same updates as an uninterrupted run. ``attach``
wires three handlers onto an engine, chosen by a *usage*:

============================  ================  ============================  ======================
usage                         reset on          update on                     result written on
============================  ================  ============================  ======================
``"epoch_wise"`` (default)    EPOCH_STARTED     ITERATION_COMPLETED           EPOCH_COMPLETED
``"running_epoch_wise"``      STARTED           EPOCH_COMPLETED               EPOCH_COMPLETED
``"batch_wise"``              ITERATION_STARTED ITERATION_COMPLETED           ITERATION_COMPLETED
``"running_batch_wise"``      STARTED           ITERATION_COMPLETED           ITERATION_COMPLETED
``"single_epoch_running_..."`` EPOCH_STARTED    ITERATION_COMPLETED           ITERATION_COMPLETED
``BatchFiltered(every=k)``    EPOCH_STARTED     ITERATION_COMPLETED(every=k)  EPOCH_COMPLETED
============================  ================  ============================  ======================

The result lands in ``engine.state.metrics[name]`` (0-d tensors as Python numbers).
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from nbengine.engine.events import Events

__all__ = [
    "BatchFiltered",
    "BatchWise",
    "EpochWise",
    "Metric",
    "MetricUsage",
    "NotComputableError",
    "RunningBatchWise",
    "RunningEpochWise",
    "SingleEpochRunningBatchWise",
]


class NotComputableError(RuntimeError):
    """Raised by ``compute()`` when a metric has not seen enough data to produce a value."""


class MetricUsage:
    """When a metric is reset, updated and written to ``engine.state.metrics``: three events."""

    usage_name: str = "custom"

    def __init__(self, started: Any, completed: Any, iteration_completed: Any) -> None:
        self._started = started
        self._completed = completed
        self._iteration_completed = iteration_completed

    @property
    def STARTED(self) -> Any:  # noqa: N802 - the event names mirror ignite's usage attributes
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
    """Updated once per epoch and never reset during the run (for running averages over epochs)."""

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
    """Epoch-wise, but updated only on the iterations selected by the filter (``every=``, ``once=``, ...)."""

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
        raise ValueError(f"Argument usage should be one of {names} or a MetricUsage, got {usage!r}")
    raise TypeError(
        f"Argument usage should be a usage name (str) or a MetricUsage instance, got {usage!r} ({type(usage).__name__})"
    )


def _is_sequence_of_tensors_or_numbers(value: Any) -> bool:
    return isinstance(value, Sequence) and all(isinstance(item, (torch.Tensor, numbers.Number)) for item in value)


def _identity(output: Any) -> Any:
    return output


class Metric(ABC):
    """Base class of all metrics: subclasses implement ``reset``, ``update`` and ``compute``.

    Args:
        output_transform: maps ``engine.state.output`` to what ``update`` takes; for most metrics
            ``(y_pred, y)``, or a mapping with the keys in ``required_output_keys``.
        device: where the accumulators live.
        skip_unrolling: by default an output ``([y_pred_1, y_pred_2, ...], [y_1, y_2, ...])`` of lists
            of tensors is fed to ``update`` pair by pair (variable-size samples); ``True`` passes it whole.

    A subclass sets its state attributes before calling ``super().__init__``, which calls ``reset``.
    ``_state_dict_all_req_keys`` names the attributes saved by ``state_dict``.
    """

    required_output_keys: tuple[str, ...] | None = ("y_pred", "y")
    optional_output_keys: tuple[str, ...] = ()
    _state_dict_all_req_keys: tuple[str, ...] = ()

    def __init__(
        self,
        output_transform: Callable[[Any], Any] = _identity,
        device: str | torch.device = "cpu",
        skip_unrolling: bool = False,
    ) -> None:
        if not callable(output_transform):
            raise TypeError(
                f"{type(self).__name__}: argument output_transform should be callable, got {output_transform!r}"
            )
        if not isinstance(device, (str, torch.device)):
            raise TypeError(
                f"{type(self).__name__}: argument device should be a str or torch.device, got {device!r} "
                f"({type(device).__name__})"
            )
        if not isinstance(skip_unrolling, bool):
            raise TypeError(f"{type(self).__name__}: argument skip_unrolling should be a bool, got {skip_unrolling!r}")
        self._output_transform = output_transform
        self._device = torch.device(device)
        self._skip_unrolling = skip_unrolling
        self._attached_names: list[str] = []
        self.reset()

    @abstractmethod
    def reset(self) -> None:
        """Forget everything accumulated so far."""

    @abstractmethod
    def update(self, output: Any) -> None:
        """Accumulate one (transformed) engine output."""

    @abstractmethod
    def compute(self) -> Any:
        """Return the metric's value for everything accumulated since the last ``reset``."""

    def _label(self) -> str:
        """The metric's class name and, once attached, the names it is stored under: used in error messages."""
        name = type(self).__name__
        if self._attached_names:
            return f"{name} ({', '.join(repr(n) for n in self._attached_names)})"
        return name

    # Handlers wired by attach().

    def started(self, engine: Any) -> None:
        """Handler for the usage's STARTED event: reset."""
        self.reset()

    def iteration_completed(self, engine: Any) -> None:
        """Handler for the usage's ITERATION_COMPLETED event: transform ``engine.state.output`` and update."""
        # The transform may compute on tensors that carry autograd history; building a graph here would only
        # cost time and memory. Switching the mode by hand costs half of a ``torch.no_grad()`` block.
        grad_was_enabled = torch.is_grad_enabled()
        if grad_was_enabled:
            torch.set_grad_enabled(False)
        try:
            self._feed(self._output_transform(engine.state.output))
        finally:
            if grad_was_enabled:
                torch.set_grad_enabled(True)

    def _feed(self, output: Any) -> None:
        if isinstance(output, Mapping):
            output = self._select_output_keys(output)
        if (
            not self._skip_unrolling
            and isinstance(output, Sequence)
            and not isinstance(output, (str, bytes))
            and len(output) > 0
            and all(_is_sequence_of_tensors_or_numbers(part) for part in output)
        ):
            if len(output) != 2 or len(output[0]) != len(output[1]):
                lengths = [len(part) for part in output]
                raise ValueError(
                    f"{self._label()}: an output of lists is read as ([y_pred_1, ...], [y_1, ...]) and needs 2 lists "
                    f"of the same length, got {len(output)} lists of lengths {lengths}"
                )
            for y_pred, y in zip(output[0], output[1]):
                y_pred = y_pred.unsqueeze(0) if isinstance(y_pred, torch.Tensor) else torch.tensor([y_pred])
                y = y.unsqueeze(0) if isinstance(y, torch.Tensor) else torch.tensor([y], device=y_pred.device)
                self.update((y_pred, y))
        else:
            self.update(output)

    def _select_output_keys(self, output: Mapping) -> Any:
        if self.required_output_keys is None:
            raise TypeError(
                f"{self._label()}: the transformed engine output is a mapping with keys {list(output)}; this metric "
                "takes the value itself, so give it an output_transform that picks it out"
            )
        missing = [key for key in self.required_output_keys if key not in output]
        if missing:
            raise ValueError(
                f"{self._label()}: the transformed engine output is a mapping with keys {list(output)}; expected the "
                f"keys {list(self.required_output_keys)} (missing {missing})"
            )
        selected = [output[key] for key in self.required_output_keys]
        selected.extend(output[key] for key in self.optional_output_keys if key in output)
        return tuple(selected)

    def completed(self, engine: Any, name: str) -> None:
        """Handler for the usage's COMPLETED event: write ``compute()`` to ``engine.state.metrics[name]``."""
        result = self.compute()
        metrics = engine.state.metrics
        if isinstance(result, Mapping):
            if name in result:
                raise ValueError(
                    f"{self._label()}: the result's keys {list(result)} include the name {name!r} it is attached "
                    "under; attach it under another name"
                )
            for key, value in result.items():
                metrics[key] = value
        elif isinstance(result, torch.Tensor):
            if result.ndim == 0:
                result = result.item()
            elif result.device.type != "cpu":
                result = result.cpu()
        metrics[name] = result

    # Wiring.

    def attach(self, engine: Any, name: str, usage: str | MetricUsage = "epoch_wise") -> None:
        """Compute this metric on ``engine`` and store it in ``engine.state.metrics[name]``.

        ``usage`` is one of the names in the module docstring or a ``MetricUsage`` such as
        ``BatchFiltered(every=10)``. Attaching the same metric under several names shares one
        accumulator.
        """
        usage = to_usage(usage)
        self._check_engine(engine)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{self._label()}: argument name should be a non-empty str, got {name!r}")
        if not engine.has_event_handler(self.started, usage.STARTED):
            engine.add_event_handler(usage.STARTED, self.started)
        if not engine.has_event_handler(self.iteration_completed, usage.ITERATION_COMPLETED):
            engine.add_event_handler(usage.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(usage.COMPLETED, self.completed, name)
        if name not in self._attached_names:
            self._attached_names.append(name)

    def detach(self, engine: Any, usage: str | MetricUsage = "epoch_wise") -> None:
        """Remove the handlers that ``attach`` added for ``usage``."""
        usage = to_usage(usage)
        self._check_engine(engine)
        for handler, event in (
            (self.completed, usage.COMPLETED),
            (self.started, usage.STARTED),
            (self.iteration_completed, usage.ITERATION_COMPLETED),
        ):
            if engine.has_event_handler(handler, event):
                engine.remove_event_handler(handler, event)

    def is_attached(self, engine: Any, usage: str | MetricUsage = "epoch_wise") -> bool:
        """Whether this metric writes its result on ``engine`` with ``usage``."""
        usage = to_usage(usage)
        self._check_engine(engine)
        return bool(engine.has_event_handler(self.completed, usage.COMPLETED))

    def _check_engine(self, engine: Any) -> None:
        if not all(callable(getattr(engine, method, None)) for method in ("add_event_handler", "has_event_handler")):
            raise TypeError(
                f"{self._label()}: argument engine should be an Engine (with add_event_handler and has_event_handler), "
                f"got {type(engine).__name__}"
            )

    # Checkpointing.

    def state_dict(self) -> OrderedDict:
        """The accumulated state, as tensors, numbers, None and nested dicts (loadable with ``weights_only=True``)."""
        state: OrderedDict[str, Any] = OrderedDict()
        for key in self._state_dict_all_req_keys:
            value = getattr(self, key)
            state[key] = value.state_dict() if isinstance(value, Metric) else value
        return state

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restore what ``state_dict`` returned."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"{self._label()}: argument state_dict should be a mapping, got {type(state_dict).__name__}")
        missing = [key for key in self._state_dict_all_req_keys if key not in state_dict]
        if missing:
            raise ValueError(
                f"{self._label()}: argument state_dict lacks the keys {missing}; expected the keys "
                f"{list(self._state_dict_all_req_keys)}"
            )
        for key in self._state_dict_all_req_keys:
            current = getattr(self, key)
            if isinstance(current, Metric):
                current.load_state_dict(state_dict[key])
            else:
                setattr(self, key, state_dict[key])

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def unpack_prediction_pair(metric: Metric, output: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(y_pred, y)`` detached, refusing anything but a pair of tensors with a message naming ``metric``."""
    if not isinstance(output, Sequence) or isinstance(output, (str, bytes)) or len(output) != 2:
        raise TypeError(
            f"{metric._label()}: update takes (y_pred, y), a pair of tensors; got {_describe(output)}. "
            "Use output_transform to pick them out of the engine output"
        )
    y_pred, y = output
    for role, value in (("y_pred", y_pred), ("y", y)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{metric._label()}: {role} should be a torch.Tensor, got {_describe(value)}")
    return y_pred.detach(), y.detach()


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"{value!r} ({type(value).__name__})"
