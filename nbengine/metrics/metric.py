"""The metric protocol: ``Metric`` (reset / update / compute, attach, state_dict) as in pytorch-ignite.

A metric keeps everything it has accumulated on itself, never in the loop, so a run that is paused,
stepped or resumed in any way feeds it exactly the updates of an uninterrupted run; ``state_dict``
holds those accumulators (the names in ``_state_dict_all_req_keys``), so a checkpointed metric resumes
exactly. ``attach`` wires three handlers onto an engine, chosen by a usage (``nbengine.metrics.usage``);
the result lands in ``engine.state.metrics[name]`` (0-d tensors as Python numbers).

This module is ``ignite.metrics.metric``'s counterpart and re-exports what ignite keeps here: the
usages, ``reinit__is_reduced`` and ``sync_all_reduce``.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from numbers import Number
from typing import Any

import torch

from nbengine._checks import check_callable
from nbengine.exceptions import NotComputableError
from nbengine.metrics.arithmetic import MetricArithmetic
from nbengine.metrics.reduction import reinit__is_reduced, sync_all_reduce
from nbengine.metrics.usage import (
    BatchFiltered,
    BatchWise,
    EpochWise,
    MetricUsage,
    RunningBatchWise,
    RunningEpochWise,
    SingleEpochRunningBatchWise,
    to_usage,
)

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
    "reinit__is_reduced",
    "sync_all_reduce",
]

_RESULT_MODES = ("flatten", "named", "both")


def _identity(output: Any) -> Any:
    return output


def _is_sequence_of_tensors_or_numbers(value: Any) -> bool:
    return isinstance(value, Sequence) and all(isinstance(item, (torch.Tensor, Number)) for item in value)


def _as_batch_of_one(value: Any, device: torch.device | None = None) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.unsqueeze(0)
    return torch.tensor([value], device=device)


class Metric(MetricArithmetic, metaclass=ABCMeta):
    """Base class of all metrics: subclasses implement ``reset``, ``update`` and ``compute``.

    Args:
        output_transform: maps ``engine.state.output`` to what ``update`` takes; for most metrics
            ``(y_pred, y)``, or a mapping with the keys in ``required_output_keys``.
        device: where the accumulators live.
        skip_unrolling: by default an output ``([y_pred_1, ...], [y_1, ...])`` of lists of tensors or
            numbers is fed to ``update`` pair by pair (variable-size samples); ``True`` passes it whole
            (e.g. for a model with several outputs).
        metrics_result_mode: where a result that is a mapping goes in ``engine.state.metrics``:
            ``"flatten"`` (its items), ``"named"`` (under the metric's name) or ``"both"``.

    A subclass may set attributes before calling ``super().__init__``, which calls ``reset``.
    ``_state_dict_all_req_keys`` names the attributes ``state_dict`` saves: numbers, tensors, None,
    metrics, and lists or dicts of those.
    """

    required_output_keys: tuple[str, ...] | None = ("y_pred", "y")
    # Keys taken from a mapping output when present (after the required ones), e.g. Loss's criterion_kwargs.
    optional_output_keys: tuple[str, ...] = ()
    _state_dict_all_req_keys: tuple[str, ...] = ()
    __state_dict_key_per_rank: str = "__metric_state_per_rank"

    def __init__(
        self,
        output_transform: Callable[[Any], Any] = _identity,
        device: str | torch.device = torch.device("cpu"),
        skip_unrolling: bool = False,
        metrics_result_mode: str = "both",
    ) -> None:
        if not isinstance(device, (str, torch.device)):
            raise TypeError(
                f"{type(self).__name__}: Argument device should be a str or torch.device, got {device!r} "
                f"({type(device).__name__})"
            )
        if torch.device(device).type == "xla":
            raise ValueError("Cannot create metric on an XLA device. Use device='cpu' instead.")
        if not isinstance(skip_unrolling, bool):
            raise TypeError(f"{type(self).__name__}: Argument skip_unrolling should be a bool, got {skip_unrolling!r}")
        if not isinstance(metrics_result_mode, str) or metrics_result_mode not in _RESULT_MODES:
            raise ValueError(f"Argument metrics_result_mode should be one of {_RESULT_MODES}, got {metrics_result_mode}")
        self._output_transform = check_callable("Argument output_transform", output_transform, prefix=type(self).__name__)
        self._device = torch.device(device)
        self._skip_unrolling = skip_unrolling
        self._metrics_result_mode = metrics_result_mode
        # MPS has no float64.
        self._double_dtype = torch.float32 if self._device.type == "mps" else torch.float64
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
        """The metric's class name and the names it is attached under: used in error messages."""
        names = self.__dict__.get("_attached_names")
        if names:
            return f"{type(self).__name__} ({', '.join(repr(n) for n in names)})"
        return type(self).__name__

    # Handlers wired by attach().

    def started(self, engine: Any) -> None:
        """Handler for the usage's STARTED event: reset."""
        self.reset()

    def iteration_completed(self, engine: Any) -> None:
        """Handler for the usage's ITERATION_COMPLETED event: transform ``engine.state.output`` and update."""
        # Switching the mode by hand costs half of a ``torch.no_grad()`` block; no graph is built here.
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
            and all(_is_sequence_of_tensors_or_numbers(part) for part in output)
        ):
            if not (len(output) == 2 and len(output[0]) == len(output[1])):
                lengths = ", ".join(str(len(part)) for part in output)
                raise ValueError(
                    f"{self._label()}: Output should have 2 items of the same length, got {len(output)} and {lengths} "
                    "(an output of lists is read as ([y_pred_1, ...], [y_1, ...]))"
                )
            for y_pred, y in zip(output[0], output[1]):
                y_pred = _as_batch_of_one(y_pred)
                self.update((y_pred, _as_batch_of_one(y, device=y_pred.device)))
        else:
            self.update(output)

    def _select_output_keys(self, output: Mapping) -> tuple:
        if self.required_output_keys is None:
            raise TypeError(
                f"{self._label()}: Transformed engine output for {type(self).__name__} metric should be a tuple/list, "
                f"but given {type(output)} with keys {list(output.keys())}; this metric takes the value itself, so give "
                "it an output_transform that picks the value out"
            )
        if not all(key in output for key in self.required_output_keys):
            raise ValueError(
                f"{self._label()}: When transformed engine's output is a mapping, "
                f"it should contain {self.required_output_keys} keys, but given {list(output.keys())}"
            )
        selected = [output[key] for key in self.required_output_keys]
        selected.extend(output[key] for key in self.optional_output_keys if key in output)
        return tuple(selected)

    def completed(self, engine: Any, name: str) -> None:
        """Handler for the usage's COMPLETED event: write ``compute()`` to ``engine.state.metrics[name]``."""
        result = self.compute()
        metrics = engine.state.metrics
        if isinstance(result, Mapping):
            named = self._metrics_result_mode in ("named", "both")
            if named and name in result:
                raise ValueError(
                    f"{self._label()}: Argument name '{name}' is conflicting with mapping keys: {list(result.keys())} "
                    "of its result; attach it under another name"
                )
            if self._metrics_result_mode in ("flatten", "both"):
                for key, value in result.items():
                    metrics[key] = value
            if named:
                metrics[name] = result
            return
        if isinstance(result, torch.Tensor):
            if result.ndim == 0:
                result = result.item()
            elif result.device.type != "cpu":
                result = result.cpu()
        metrics[name] = result

    # Wiring.

    def _check_usage(self, usage: str | MetricUsage) -> MetricUsage:
        return to_usage(usage)

    def attach(self, engine: Any, name: str, usage: str | MetricUsage = "epoch_wise") -> None:
        """Compute this metric on ``engine`` and store it in ``engine.state.metrics[name]``.

        ``usage`` is a usage name or a ``MetricUsage`` such as ``BatchFiltered(every=10)``. Attaching
        the same metric under several names shares one accumulator.
        """
        usage = self._check_usage(usage)
        self._check_engine(engine)
        if not isinstance(name, str):
            raise TypeError(f"{self._label()}: argument name should be a str, got {name!r}")
        if not engine.has_event_handler(self.started, usage.STARTED):
            engine.add_event_handler(usage.STARTED, self.started)
        if not engine.has_event_handler(self.iteration_completed, usage.ITERATION_COMPLETED):
            engine.add_event_handler(usage.ITERATION_COMPLETED, self.iteration_completed)
        self._attach_completed(engine, name, usage)

    def _attach_completed(self, engine: Any, name: str, usage: MetricUsage) -> None:
        engine.add_event_handler(usage.COMPLETED, self.completed, name)
        names = self.__dict__.setdefault("_attached_names", [])
        if name not in names:
            names.append(name)

    def detach(self, engine: Any, usage: str | MetricUsage = "epoch_wise") -> None:
        """Remove the handlers that ``attach`` added for ``usage``."""
        usage = self._check_usage(usage)
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
        usage = self._check_usage(usage)
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
        """The accumulators, as ``{"__metric_state_per_rank": [state of rank 0, ...]}`` (ignite's layout).

        Each rank's state maps the names in ``_state_dict_all_req_keys`` to numbers, tensors (copies),
        None, or lists/dicts of those; a metric held in an attribute contributes its own state. It loads
        with ``torch.load(weights_only=True)``.
        """
        from nbengine.metrics.state import metric_state

        state = metric_state(self)
        world_size = _world_size()
        if world_size > 1:
            import nbengine.distributed as idist

            return OrderedDict([(Metric.__state_dict_key_per_rank, idist.all_gather(state))])
        return OrderedDict([(Metric.__state_dict_key_per_rank, [state])])

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restore what ``state_dict`` returned (this process's rank's part of it)."""
        from nbengine.metrics.state import load_metric_state

        key = Metric.__state_dict_key_per_rank
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"{self._label()}: Argument state_dict should be a dictionary, but given {type(state_dict)}")
        if not (len(state_dict) == 1 and key in state_dict):
            raise ValueError(
                f"{self._label()}: Incorrect state_dict object. Argument state_dict should be a dictionary provided by "
                f"Metric.state_dict(). Expected single key: {key}, but given {list(state_dict.keys())}"
            )
        per_rank = state_dict[key]
        rank, world_size = _rank_and_world_size()
        if len(per_rank) != world_size:
            raise ValueError(
                f"{self._label()}: Incorrect state_dict object. Argument state_dict should be a dictionary provided by "
                "Metric.state_dict(). Expected a list of state_dicts of size equal world_size: "
                f"{world_size}, but got {len(per_rank)}"
            )
        load_metric_state(self, per_rank[rank])

    def __getstate__(self) -> dict:
        return self.__dict__

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _world_size() -> int:
    import nbengine.distributed as idist

    return idist.get_world_size()


def _rank_and_world_size() -> tuple[int, int]:
    import nbengine.distributed as idist

    return idist.get_rank(), idist.get_world_size()


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
