"""Parameter schedulers: handlers that set an optimizer parameter (the learning rate, momentum, ...) on
every event they are attached to, following a schedule.

This module owns the schedules and their positions. Each scheduler counts the events it has seen
(``event_index``) and carries that count, and whatever else its schedule has moved on (the cycle, a
wrapped torch scheduler's state), through ``state_dict``: put it in a
:class:`~nbengine.handlers.Checkpoint`'s ``to_save`` and a resumed run sets the same values as an
uninterrupted one. ``simulate_values`` returns a schedule's values without touching the optimizer, so
a notebook can plot it before training.

The API, values and error messages are pytorch-ignite 0.5.5's ``ignite.handlers.param_scheduler``:
:class:`LinearCyclicalScheduler`, :class:`CosineAnnealingScheduler`, :class:`PiecewiseLinear`,
:class:`ConcatScheduler`, :class:`ParamGroupScheduler`, :class:`LRScheduler` (any
``torch.optim.lr_scheduler``), :class:`ReduceLROnPlateauScheduler`, :class:`BatchSizeScheduler` and
:func:`create_lr_scheduler_with_warmup`. Where this differs: ``simulate_values`` saves and restores
the schedulers in memory (ignite writes a temporary file), ``ReduceLROnPlateauScheduler`` honours a
``min_lr`` given without ``param_group_index`` (ignite drops it), and ``plot_values`` draws on a
matplotlib ``Figure`` it returns (never pyplot).
"""

from __future__ import annotations

import copy
import itertools
import math
import numbers
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts, ReduceLROnPlateau
from torch.optim.lr_scheduler import LRScheduler as PyTorchLRScheduler
from torch.utils.data import DataLoader
from torch.utils.data.sampler import BatchSampler

from nbengine._checks import check_callable
from nbengine.engine import Engine, Events
from nbengine.handlers._state_dicts import check_state_dict

__all__ = [
    "BaseParamScheduler",
    "ParamScheduler",
    "CyclicalScheduler",
    "LinearCyclicalScheduler",
    "CosineAnnealingScheduler",
    "ConcatScheduler",
    "LRScheduler",
    "PiecewiseLinear",
    "ParamGroupScheduler",
    "ReduceLROnPlateauScheduler",
    "BatchSizeScheduler",
    "create_lr_scheduler_with_warmup",
]


def _record_history(engine: Engine | None, name: str, values: Any) -> None:
    """Append ``values`` to ``engine.state.param_history[name]`` (the list is made on first use)."""
    if engine is None:
        return
    history = getattr(engine.state, "param_history", None)
    if history is None:
        history = {}
        engine.state.param_history = history
    history.setdefault(name, []).append(values)


class BaseParamScheduler(ABC):
    """A handler that sets one parameter from a schedule, counting the events it is called on.

    Subclasses give :meth:`get_param` (the value at ``event_index``) and :meth:`simulate_values`, and
    list in :meth:`_state_keys` the attributes their schedule moves on.
    """

    def __init__(self, param_name: str, save_history: bool = False) -> None:
        self.param_name = param_name
        self.event_index = 0
        self._save_history = save_history

    @property
    def save_history(self) -> bool:
        return self._save_history

    @save_history.setter
    def save_history(self, value: bool) -> None:
        self._save_history = value

    def _state_keys(self) -> tuple[str, ...]:
        return ("event_index", "param_name", "save_history")

    def state_dict(self) -> OrderedDict:
        """The schedule's position and settings (a wrapped torch scheduler as its own ``state_dict``)."""
        state = OrderedDict()
        for name in self._state_keys():
            if hasattr(self, name):
                value = getattr(self, name)
                if hasattr(value, "state_dict"):
                    value = value.state_dict()
                state[name] = copy.copy(value)
        return state

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Continue from a :meth:`state_dict`."""
        check_state_dict(state_dict, self._state_keys())
        for name in self._state_keys():
            value = state_dict[name]
            target = getattr(self, name, None)
            if isinstance(value, Mapping) and hasattr(target, "load_state_dict"):
                target.load_state_dict(value)
            else:
                setattr(self, name, value)

    @abstractmethod
    def get_param(self) -> Any:
        """The parameter value(s) at the current ``event_index``."""

    @classmethod
    @abstractmethod
    def simulate_values(cls, num_events: int, **scheduler_kwargs: Any) -> list[list]:
        """``[[event, value], ...]`` for ``num_events`` events of a scheduler made from ``scheduler_kwargs``."""

    @classmethod
    def plot_values(cls, num_events: int, **scheduler_kwargs: Any) -> Any:
        """Draw :meth:`simulate_values` on a new matplotlib ``Figure`` and return the figure."""
        try:
            from matplotlib.figure import Figure
        except ImportError as error:
            raise ModuleNotFoundError(
                "This method requires matplotlib to be installed. "
                "Please install it with command: \n pip install matplotlib"
            ) from error
        values = cls.simulate_values(num_events=num_events, **scheduler_kwargs)
        figure = Figure()
        axes = figure.add_subplot()
        label = scheduler_kwargs.get("param_name", "learning rate")
        axes.plot([row[0] for row in values], [row[1:] for row in values], label=label)
        axes.legend()
        axes.grid(which="both")
        return figure


class ParamScheduler(BaseParamScheduler):
    """A scheduler of ``param_name`` in an optimizer's parameter groups (all of them, or the one at
    ``param_group_index``). Called as ``scheduler(engine)``: sets the value, records it in
    ``engine.state.param_history[param_name]`` when ``save_history``, and moves to the next event."""

    def __init__(
        self,
        optimizer: Optimizer,
        param_name: str,
        save_history: bool = False,
        param_group_index: int | None = None,
    ) -> None:
        super().__init__(param_name, save_history)
        if not (
            isinstance(optimizer, Optimizer)
            or (hasattr(optimizer, "param_groups") and isinstance(optimizer.param_groups, Sequence))
        ):
            raise TypeError(
                "Argument optimizer should be torch.optim.Optimizer or has attribute 'param_groups' as list/tuple, "
                f"but given {type(optimizer)}"
            )
        self.optimizer = optimizer
        self.param_group_index = param_group_index

    def _state_keys(self) -> tuple[str, ...]:
        return (*super()._state_keys(), "param_group_index")

    def attach(self, engine: Engine, event: Any = Events.ITERATION_STARTED) -> None:
        """Call this scheduler on ``engine``'s ``event`` (default ITERATION_STARTED)."""
        engine.add_event_handler(event, self)

    @property
    def optimizer_param_groups(self) -> list[dict[str, Any]]:
        if self.param_group_index is None:
            return self.optimizer.param_groups
        return [self.optimizer.param_groups[self.param_group_index]]

    def _get_param(self) -> Any:
        return self.get_param()

    def __call__(self, engine: Engine | None, name: str | None = None) -> None:
        value = self._get_param()
        groups = self.optimizer_param_groups
        if isinstance(value, list):
            if len(value) != len(groups):
                raise ValueError(
                    f"size of value is different than optimizer_param_groups {len(value)} != {len(groups)}"
                )
            for group, group_value in zip(groups, value):
                group[self.param_name] = group_value
        else:
            for group in groups:
                group[self.param_name] = value
        if self.save_history:
            _record_history(engine, name or self.param_name, [group[self.param_name] for group in groups])
        self.event_index += 1

    @classmethod
    def simulate_values(cls, num_events: int, **scheduler_kwargs: Any) -> list[list]:
        """``[[event, value], ...]``: the first parameter group's value after each of ``num_events``
        calls of a scheduler made from ``scheduler_kwargs`` on a throwaway optimizer.

        >>> LinearCyclicalScheduler.simulate_values(5, param_name="lr", start_value=1.0, end_value=0.0, cycle_size=4)
        [[0, 1.0], [1, 0.5], [2, 0.0], [3, 0.5], [4, 1.0]]
        """
        kwargs = {key: value for key, value in scheduler_kwargs.items() if key not in ("optimizer", "save_history")}
        scheduler = cls(optimizer=_throwaway_optimizer(), save_history=False, **kwargs)
        values = []
        for event in range(num_events):
            scheduler(engine=None)
            values.append([event, scheduler.optimizer_param_groups[0][scheduler.param_name]])
        return values


class CyclicalScheduler(ParamScheduler):
    """A schedule that goes from ``start_value`` to ``end_value`` and back in cycles of ``cycle_size``
    events; after each cycle the cycle length is multiplied by ``cycle_mult``, ``start_value`` by
    ``start_value_mult`` and ``end_value`` by ``end_value_mult``. With ``warmup_duration`` > 0 each
    cycle ends with that many events going linearly from ``end_value`` back to ``start_value``."""

    def __init__(
        self,
        optimizer: Optimizer,
        param_name: str,
        start_value: float,
        end_value: float,
        cycle_size: int,
        cycle_mult: float = 1.0,
        start_value_mult: float = 1.0,
        end_value_mult: float = 1.0,
        warmup_duration: int = 0,
        save_history: bool = False,
        param_group_index: int | None = None,
    ) -> None:
        super().__init__(optimizer, param_name, save_history=save_history, param_group_index=param_group_index)
        if cycle_size < 2:
            raise ValueError(f"Argument cycle_size should be positive and larger than 1, but given {cycle_size}")
        self.start_value = start_value
        self.end_value = end_value
        self.cycle_size = cycle_size
        self.cycle_mult = cycle_mult
        self.cycle = 0
        self.start_value_mult = start_value_mult
        self.end_value_mult = end_value_mult
        self.warmup_duration = warmup_duration
        self.total_cycle_size = warmup_duration + cycle_size

    def _state_keys(self) -> tuple[str, ...]:
        return (
            *super()._state_keys(),
            "start_value",
            "end_value",
            "cycle_size",
            "cycle_mult",
            "cycle",
            "start_value_mult",
            "end_value_mult",
            "warmup_duration",
            "total_cycle_size",
        )

    def __call__(self, engine: Engine | None, name: str | None = None) -> None:
        if self.event_index != 0 and self.event_index == self.cycle_size:
            self.start_value *= self.start_value_mult
        if self.event_index != 0 and self.event_index == self.total_cycle_size:
            # A new cycle begins.
            self.event_index = 0
            self.cycle_size = int(self.cycle_size * self.cycle_mult)
            self.warmup_duration = int(self.warmup_duration * self.cycle_mult)
            self.total_cycle_size = self.warmup_duration + self.cycle_size
            self.cycle += 1
            self.end_value *= self.end_value_mult
        super().__call__(engine, name)

    def _get_param(self) -> Any:
        if self.event_index > self.cycle_size:
            progress = (self.event_index - self.cycle_size) / self.warmup_duration
            return self.end_value + (self.start_value - self.end_value) * progress
        return self.get_param()


class LinearCyclicalScheduler(CyclicalScheduler):
    """Linear cycles: ``start_value`` to ``end_value`` and back within each cycle, or with
    ``monotonic=True`` only from ``start_value`` to ``end_value`` (then ``warmup_duration`` may bring it
    back). Other arguments as for :class:`CyclicalScheduler`.

    >>> import torch
    >>> optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
    >>> scheduler = LinearCyclicalScheduler(optimizer, "lr", start_value=1.0, end_value=0.0, cycle_size=4)
    >>> values = []
    >>> for _ in range(6):
    ...     scheduler(None)
    ...     values.append(optimizer.param_groups[0]["lr"])
    >>> values
    [1.0, 0.5, 0.0, 0.5, 1.0, 0.5]
    """

    def __init__(self, *args: Any, monotonic: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.monotonic = monotonic
        if self.warmup_duration > 0 and not monotonic:
            raise ValueError(
                "Invalid combination when warmup_duration > 0 and monotonic=False, "
                "please use either set warmup_duration=0 or monotonic=True"
            )

    def get_param(self) -> float:
        progress = self.event_index / self.cycle_size
        if self.monotonic:
            return self.start_value + (self.end_value - self.start_value) * progress
        return self.end_value + (self.start_value - self.end_value) * abs(progress - 0.5) * 2


class CosineAnnealingScheduler(CyclicalScheduler):
    """Cosine cycles from ``start_value`` to ``end_value`` (SGDR without the restart jump being smoothed).
    Arguments as for :class:`CyclicalScheduler`.

    >>> values = CosineAnnealingScheduler.simulate_values(
    ...     5, param_name="lr", start_value=1.0, end_value=0.0, cycle_size=4)
    >>> [round(value, 4) for _, value in values]
    [1.0, 0.8536, 0.5, 0.1464, 1.0]
    """

    def get_param(self) -> float:
        progress = self.event_index / self.cycle_size
        return self.start_value + (self.end_value - self.start_value) / 2 * (1 - math.cos(math.pi * progress))


class PiecewiseLinear(ParamScheduler):
    """Linear between the ``(event, value)`` pairs of ``milestones_values``; the first value before the
    first milestone, the last after the last one.

    >>> values = PiecewiseLinear.simulate_values(6, param_name="lr", milestones_values=[(1, 1.0), (3, 0.0)])
    >>> [value for _, value in values]
    [1.0, 1.0, 0.5, 0.0, 0.0, 0.0]
    """

    def __init__(
        self,
        optimizer: Optimizer,
        param_name: str,
        milestones_values: list[tuple[int, float]],
        save_history: bool = False,
        param_group_index: int | None = None,
    ) -> None:
        super().__init__(optimizer, param_name, save_history, param_group_index=param_group_index)
        if not isinstance(milestones_values, Sequence):
            raise TypeError(
                f"Argument milestones_values should be a list or tuple, but given {type(milestones_values)}"
            )
        if len(milestones_values) < 1:
            raise ValueError(
                f"Argument milestones_values should be with at least one value, but given {milestones_values}"
            )
        milestones: list[int] = []
        values: list[float] = []
        for pair in milestones_values:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise ValueError(
                    f"Argument milestones_values should be a list of pairs (milestone, param_value), got {pair!r}"
                )
            milestone, value = pair
            if not isinstance(milestone, numbers.Integral):
                raise TypeError(f"Value of a milestone should be integer, but given {type(milestone)}")
            if milestones and milestone < milestones[-1]:
                raise ValueError(
                    f"Milestones should be increasing integers, but given {milestone} is smaller "
                    f"than the previous milestone {milestones[-1]}"
                )
            milestones.append(milestone)
            values.append(value)
        self.milestones = milestones
        self.values = values
        self._index = 0

    def _state_keys(self) -> tuple[str, ...]:
        return (*super()._state_keys(), "values", "milestones", "_index")

    def get_param(self) -> float:
        event = self.event_index
        if event < self.milestones[0]:
            return self.values[0]
        if event >= self.milestones[-1]:
            return self.values[-1]
        # The segment only moves forward; _index remembers it so each call is O(1) on average.
        while not self.milestones[self._index] <= event < self.milestones[self._index + 1]:
            self._index += 1
        start, end = self.milestones[self._index], self.milestones[self._index + 1]
        start_value, end_value = self.values[self._index], self.values[self._index + 1]
        return start_value + (end_value - start_value) * (event - start) / (end - start)


class ParamGroupScheduler:
    """Several schedulers called together, typically one per parameter group of an optimizer.

    Args:
        schedulers: the :class:`ParamScheduler` s.
        names: the name each records its history under (default each one's ``param_name``).
        save_history: record each one's values in ``engine.state.param_history``.

    >>> import torch
    >>> optimizer = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)]},
    ...                              {"params": [torch.zeros(1, requires_grad=True)]}], lr=0.0)
    >>> scheduler = ParamGroupScheduler([
    ...     LinearCyclicalScheduler(optimizer, "lr", 1.0, 0.0, 4, param_group_index=0),
    ...     LinearCyclicalScheduler(optimizer, "lr", 0.0, 1.0, 4, param_group_index=1),
    ... ], names=["lr (body)", "lr (head)"])
    >>> scheduler(None); scheduler(None)
    >>> [group["lr"] for group in optimizer.param_groups]
    [0.5, 0.5]
    """

    def __init__(
        self, schedulers: list[ParamScheduler], names: list[str] | None = None, save_history: bool = False
    ) -> None:
        if not isinstance(schedulers, Sequence):
            raise TypeError(f"Argument schedulers should be a list/tuple, but given {schedulers}")
        if not all(isinstance(scheduler, ParamScheduler) for scheduler in schedulers):
            raise ValueError(
                f"Argument schedulers should be a list/tuple of parameter schedulers, but given {schedulers}"
            )
        if names is None:
            names = [scheduler.param_name for scheduler in schedulers]
        if not isinstance(names, (list, tuple)):
            raise TypeError(f"Argument names should be a list/tuple, but given {names}")
        if not all(isinstance(name, str) for name in names):
            raise ValueError(
                f"Argument names should be a list/tuple of parameter scheduler's names, but given {names}"
            )
        if len(names) != len(schedulers):
            raise ValueError(f"{len(schedulers)} should be equal {len(names)}")
        self.schedulers = schedulers
        self.names = names
        for scheduler in schedulers:
            scheduler.save_history = save_history
        self.optimizer = [scheduler.optimizer for scheduler in schedulers]
        self.param_name = [scheduler.param_name for scheduler in schedulers]

    def __call__(self, engine: Engine | None, name: str | None = None) -> None:
        for scheduler, scheduler_name in zip(self.schedulers, self.names):
            scheduler(engine, scheduler_name)

    def attach(self, engine: Engine, event: Any = Events.ITERATION_STARTED) -> None:
        """Call these schedulers on ``engine``'s ``event`` (default ITERATION_STARTED)."""
        engine.add_event_handler(event, self)

    @property
    def optimizer_param_groups(self) -> list[dict[str, Any]]:
        return [group for scheduler in self.schedulers for group in scheduler.optimizer_param_groups]

    @property
    def save_history(self) -> bool:
        return self.schedulers[0].save_history

    @save_history.setter
    def save_history(self, value: bool) -> None:
        for scheduler in self.schedulers:
            scheduler.save_history = value

    def get_param(self) -> list:
        return [scheduler.get_param() for scheduler in self.schedulers]

    def state_dict(self) -> OrderedDict:
        """``{"schedulers": [(name, state_dict), ...]}``."""
        return OrderedDict(
            schedulers=[(name, scheduler.state_dict()) for name, scheduler in zip(self.names, self.schedulers)]
        )

    def load_state_dict(self, state_dict: Mapping) -> None:
        check_state_dict(state_dict, ("schedulers",))
        saved = state_dict["schedulers"]
        if len(saved) != len(self.schedulers):
            raise ValueError(
                f"Input state_dict contains {len(saved)} state_dicts of param group schedulers, "
                f"but {len(self.schedulers)} needed"
            )
        for expected, (name, _) in zip(self.names, saved):
            if expected != name:
                raise ValueError(
                    f"Name of scheduler from input state dict does not correspond to required one, {name} vs {expected}"
                )
        for scheduler, (_, scheduler_state) in zip(self.schedulers, saved):
            scheduler.load_state_dict(scheduler_state)

    @classmethod
    def simulate_values(cls, num_events: int, schedulers: list[ParamScheduler], **kwargs: Any) -> list[list]:
        """``[[event, value of scheduler 0, value of scheduler 1, ...], ...]``; the schedulers and their
        optimizer are left as they were."""
        with _restored([*schedulers, *{id(s.optimizer): s.optimizer for s in schedulers}.values()]):
            group = cls(schedulers=schedulers, **kwargs)
            values = []
            for event in range(num_events):
                values.append([event, *(scheduler.get_param() for scheduler in schedulers)])
                group(engine=None)
        return values


class ConcatScheduler(ParamScheduler):
    """Runs ``schedulers`` one after the other: the first for ``durations[0]`` events, the second for
    ``durations[1]``, ..., the last until the end. They must schedule the same parameter of the same
    optimizer.

    >>> import torch
    >>> optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
    >>> warmup = LinearCyclicalScheduler(optimizer, "lr", 0.0, 1.0, cycle_size=4, monotonic=True)
    >>> decay = CosineAnnealingScheduler(optimizer, "lr", 1.0, 0.0, cycle_size=4)
    >>> values = ConcatScheduler.simulate_values(6, schedulers=[warmup, decay], durations=[3])
    >>> [value for _, value in values]
    [0.0, 0.25, 0.5, 1.0, 0.8535533905932737, 0.5]
    """

    def __init__(self, schedulers: list[ParamScheduler], durations: list[int], save_history: bool = False) -> None:
        if not isinstance(schedulers, Sequence):
            raise TypeError(f"Argument schedulers should be a sequence, but given {schedulers}")
        if len(schedulers) < 2:
            raise ValueError(
                f"Argument schedulers should be of more than one parameter schedulers, but given {schedulers}"
            )
        if not isinstance(durations, (list, tuple)):
            raise TypeError(f"Argument durations should be list/tuple, but given {durations}")
        if not all(isinstance(duration, numbers.Integral) for duration in durations):
            raise ValueError(f"Argument durations should be list/tuple of integers, but given {durations}")
        if len(schedulers) != len(durations) + 1:
            raise ValueError(
                f"Incorrect number schedulers or duration values, given {len(schedulers)} and {len(durations)}"
            )
        for index, scheduler in enumerate(schedulers):
            if not isinstance(scheduler, (ParamScheduler, ParamGroupScheduler)):
                raise TypeError(
                    f"Value at index {index} of schedulers should be a parameter scheduler, but given {type(scheduler)}"
                )
        optimizer = _the_one(schedulers, "optimizer", "schedulers should be related to same optimizer")
        param_name = _the_one(schedulers, "param_name", "schedulers should be related to same param_name")
        self.schedulers = schedulers
        self.durations = durations
        for scheduler in schedulers:
            scheduler.save_history = save_history
        super().__init__(optimizer=optimizer, param_name=param_name, save_history=save_history)
        self._scheduler_index = 0
        self._setup_scheduler()

    def _state_keys(self) -> tuple[str, ...]:
        return (*super()._state_keys(), "_current_duration", "durations", "_scheduler_index")

    def state_dict(self) -> OrderedDict:
        state = super().state_dict()
        state["schedulers"] = [scheduler.state_dict() for scheduler in self.schedulers]
        return state

    def load_state_dict(self, state_dict: Mapping) -> None:
        check_state_dict(state_dict, ("schedulers",))
        saved = state_dict["schedulers"]
        if len(saved) != len(self.schedulers):
            raise ValueError(
                f"Input state_dict contains {len(saved)} state_dicts of concatenated schedulers, "
                f"but {len(self.schedulers)} needed"
            )
        for scheduler, scheduler_state in zip(self.schedulers, saved):
            scheduler.load_state_dict(scheduler_state)
        super().load_state_dict(state_dict)
        self._current_scheduler = self.schedulers[self._scheduler_index]

    def _setup_scheduler(self) -> None:
        self._current_scheduler = self.schedulers[self._scheduler_index]
        self._current_duration = (
            self.durations[self._scheduler_index] if self._scheduler_index < len(self.durations) else -1
        )

    def __call__(self, engine: Engine | None, name: str | None = None) -> None:
        if self._current_duration == 0:
            self._scheduler_index += 1
            self._setup_scheduler()
        self._current_scheduler(engine, name)
        self._current_duration -= 1

    @property
    def optimizer_param_groups(self) -> list[dict[str, Any]]:
        return self._current_scheduler.optimizer_param_groups

    @property
    def save_history(self) -> bool:
        return self._current_scheduler.save_history

    @save_history.setter
    def save_history(self, value: bool) -> None:
        for scheduler in getattr(self, "schedulers", ()):
            scheduler.save_history = value

    def get_param(self) -> Any:
        return self._current_scheduler.get_param()

    @classmethod
    def simulate_values(  # type: ignore[override]
        cls,
        num_events: int,
        schedulers: list[ParamScheduler],
        durations: list[int],
        param_names: list[str] | tuple[str, ...] | None = None,
    ) -> list[list]:
        """``[[event, value per parameter group, ...], ...]`` of the concatenated schedule (for each of
        ``param_names``, default the scheduled one); the schedulers and the optimizer are left as they were."""
        if param_names is not None:
            if not isinstance(param_names, (list, tuple)):
                raise TypeError(f"Argument param_names should be list or tuple, but given {type(param_names)}")
            if not all(isinstance(name, str) for name in param_names):
                raise ValueError(f"Argument param_names should be list or tuple of strings, but given {param_names}")
        optimizer = _the_one(schedulers, "optimizer", "schedulers should be related to same optimizer")
        with _restored([*schedulers, optimizer]):
            for scheduler in schedulers:
                scheduler.save_history = False
            concat = cls(schedulers=schedulers, save_history=False, durations=durations)
            names = [concat.param_name] if param_names is None else list(param_names)
            output = []
            for event in range(num_events):
                concat(engine=None)
                row: list = [event]
                for name in names:
                    row += [group[name] for group in concat.optimizer_param_groups]
                output.append(row)
        return output


class _WarmRestartsLR:
    """The learning rates of a ``CosineAnnealingWarmRestarts`` one step on, computed the way its own
    ``step()`` advances ``T_cur`` (its ``get_lr`` alone does not advance it)."""

    def __init__(self, lr_scheduler: CosineAnnealingWarmRestarts) -> None:
        self._lr_scheduler = lr_scheduler

    @property
    def optimizer(self) -> Optimizer:
        return self._lr_scheduler.optimizer

    @property
    def last_epoch(self) -> int:
        return self._lr_scheduler.last_epoch

    @last_epoch.setter
    def last_epoch(self, value: int) -> None:
        self._lr_scheduler.last_epoch = value

    def state_dict(self) -> dict[str, Any]:
        return self._lr_scheduler.state_dict()

    def load_state_dict(self, state_dict: Mapping) -> None:
        self._lr_scheduler.load_state_dict(state_dict)

    def get_lr(self) -> list[float]:
        inner = self._lr_scheduler
        if inner.last_epoch < 0:
            inner.T_i, inner.T_cur, epoch = inner.T_0, 0, 0
        else:
            epoch = inner.last_epoch + 1
            inner.T_cur += 1
            if inner.T_cur >= inner.T_i:
                inner.T_cur -= inner.T_i
                inner.T_i *= inner.T_mult
        inner.last_epoch = epoch
        return [
            inner.eta_min + (base_lr - inner.eta_min) * (1 + math.cos(math.pi * inner.T_cur / inner.T_i)) / 2
            for base_lr in inner.base_lrs
        ]


class LRScheduler(ParamScheduler):
    """Any ``torch.optim.lr_scheduler`` scheduler as a handler: each call sets the learning rate the
    torch scheduler gives for the current event, then moves it on by one (``last_epoch += 1``).

    Args:
        lr_scheduler: the torch scheduler (not ``ReduceLROnPlateau``: see
            :class:`ReduceLROnPlateauScheduler`).
        save_history: record the values in ``engine.state.param_history["lr"]``.
        use_legacy: skip the torch scheduler's first value, for code that attaches the scheduler to
            ITERATION_COMPLETED (warns, as ignite does).

    Its ``state_dict`` holds the torch scheduler's, so put the LRScheduler (not the torch scheduler) in
    a Checkpoint's ``to_save``.

    >>> import torch
    >>> optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    >>> step_lr = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    >>> [value for _, value in LRScheduler.simulate_values(5, step_lr)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    >>> optimizer.param_groups[0]["lr"]
    1.0
    """

    def __init__(self, lr_scheduler: PyTorchLRScheduler, save_history: bool = False, use_legacy: bool = False) -> None:
        if not isinstance(lr_scheduler, PyTorchLRScheduler):
            raise TypeError(
                "Argument lr_scheduler should be a subclass of torch.optim.lr_scheduler.LRScheduler, "
                f"but given {type(lr_scheduler)}"
            )
        self.lr_scheduler: Any = (
            _WarmRestartsLR(lr_scheduler) if isinstance(lr_scheduler, CosineAnnealingWarmRestarts) else lr_scheduler
        )
        super().__init__(optimizer=self.lr_scheduler.optimizer, param_name="lr", save_history=save_history)
        if use_legacy:
            warnings.warn(
                "Please make sure to attach scheduler to Events.ITERATION_COMPLETED "
                "instead of Events.ITERATION_STARTED to make sure to use "
                "the first lr value from the optimizer, otherwise it will be skipped",
                stacklevel=2,
            )
            self.lr_scheduler.last_epoch += 1

    def _state_keys(self) -> tuple[str, ...]:
        return (*super()._state_keys(), "lr_scheduler")

    def __call__(self, engine: Engine | None, name: str | None = None) -> None:
        super().__call__(engine, name)
        self.lr_scheduler.last_epoch += 1

    def get_param(self) -> Any:
        """The torch scheduler's learning rate(s) at its current ``last_epoch``."""
        scheduler = self.lr_scheduler
        # Torch warns when get_lr() is called outside its step(); this call is the step.
        scheduler._get_lr_called_within_step = True
        try:
            lrs = scheduler.get_lr()
        finally:
            scheduler._get_lr_called_within_step = False
        return lrs[0] if len(lrs) == 1 else lrs

    @classmethod
    def simulate_values(  # type: ignore[override]
        cls, num_events: int, lr_scheduler: PyTorchLRScheduler, **kwargs: Any
    ) -> list[list]:
        """``[[event, lr per parameter group...], ...]``; ``lr_scheduler`` and its optimizer are left as they were."""
        if not isinstance(lr_scheduler, PyTorchLRScheduler):
            raise TypeError(
                "Argument lr_scheduler should be a subclass of torch.optim.lr_scheduler.LRScheduler, "
                f"but given {type(lr_scheduler)}"
            )
        with _restored([lr_scheduler, lr_scheduler.optimizer]):
            scheduler = cls(save_history=False, lr_scheduler=lr_scheduler, **kwargs)
            values = []
            for event in range(num_events):
                scheduler(engine=None)
                values.append([event, *(group[scheduler.param_name] for group in scheduler.optimizer_param_groups)])
        return values


class _PlateauForGroups(ReduceLROnPlateau):
    """torch's ReduceLROnPlateau that lowers only the parameter groups a :class:`ReduceLROnPlateauScheduler`
    schedules (all of them, or the one at ``param_group_index``)."""

    def __init__(self, optimizer: Optimizer, param_group_index: int | None, **kwargs: Any) -> None:
        self.param_group_index = param_group_index
        super().__init__(optimizer, **kwargs)

    def _reduce_lr(self, epoch: Any) -> None:
        indices = (
            range(len(self.optimizer.param_groups)) if self.param_group_index is None else [self.param_group_index]
        )
        for index in indices:
            group = self.optimizer.param_groups[index]
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, self.min_lrs[index])
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr


class ReduceLROnPlateauScheduler(ParamScheduler):
    """Lowers the learning rate when ``engine.state.metrics[metric_name]`` stops improving
    (torch's ``ReduceLROnPlateau``, as a handler attached to an evaluator).

    Args:
        optimizer: the optimizer.
        metric_name: the metric to watch, in the state of the engine this handler is called with.
        trainer: the engine whose ``state.param_history`` records the values (``save_history``).
        save_history: record the values.
        param_group_index: lower only this parameter group; then ``min_lr`` must be a float.
        scheduler_kwargs: ``ReduceLROnPlateau``'s arguments (``mode``, ``factor``, ``patience``,
            ``threshold``, ``threshold_mode``, ``cooldown``, ``min_lr``, ``eps``).

    >>> [value for _, value in ReduceLROnPlateauScheduler.simulate_values(
    ...     5, [10, 9, 9, 9, 8.1], 1.0, factor=0.5, patience=2, threshold=0.1)]
    [1.0, 1.0, 1.0, 0.5, 0.5]
    """

    def __init__(
        self,
        optimizer: Optimizer,
        metric_name: str,
        trainer: Engine | None = None,
        save_history: bool = False,
        param_group_index: int | None = None,
        **scheduler_kwargs: Any,
    ) -> None:
        super().__init__(optimizer, "lr", save_history=save_history, param_group_index=param_group_index)
        self.metric_name = metric_name
        self.trainer = trainer
        kwargs = dict(scheduler_kwargs)
        if param_group_index is not None and "min_lr" in kwargs:
            min_lr = kwargs["min_lr"]
            if not isinstance(min_lr, float):
                raise TypeError(f"When param_group_index is given, min_lr should be a float, but given {type(min_lr)}")
            groups = range(len(optimizer.param_groups))
            kwargs["min_lr"] = [min_lr if index == param_group_index else 0 for index in groups]
        if kwargs.pop("verbose", False):
            warnings.warn(
                "Found verbose=True in provided scheduler_kwargs. It would be set to False. Please use save_history instead.",
                stacklevel=2,
            )
        self.scheduler = _PlateauForGroups(optimizer, param_group_index, **kwargs)

    def _state_keys(self) -> tuple[str, ...]:
        return (*super()._state_keys(), "metric_name", "scheduler")

    def __call__(self, engine: Engine, name: str | None = None) -> None:  # type: ignore[override]
        metrics = getattr(getattr(engine, "state", None), "metrics", None)
        if metrics is None or self.metric_name not in metrics:
            raise ValueError(
                "Argument engine should have in its 'state', attribute 'metrics' "
                f"which itself has the metric {self.metric_name}."
            )
        self.scheduler.step(metrics[self.metric_name])
        super().__call__(self.trainer, name)

    def get_param(self) -> Any:
        lrs = [group["lr"] for group in self.optimizer_param_groups]
        return lrs[0] if len(lrs) == 1 else lrs

    @classmethod
    def simulate_values(  # type: ignore[override]
        cls, num_events: int, metric_values: list[float], init_lr: float, **scheduler_kwargs: Any
    ) -> list[list]:
        """``[[event, lr], ...]`` for a metric taking ``metric_values`` on ``num_events`` events, from ``init_lr``."""
        if len(metric_values) != num_events:
            raise ValueError(
                "Length of argument metric_values should be equal to num_events. "
                f"{len(metric_values)} != {num_events}"
            )
        kwargs = {
            key: value
            for key, value in scheduler_kwargs.items()
            if key not in ("optimizer", "metric_name", "save_history")
        }
        scheduler = cls(_throwaway_optimizer(lr=init_lr), metric_name="metric", save_history=False, **kwargs)
        engine = Engine(lambda engine, batch: None)
        values = []
        for event, metric in enumerate(metric_values):
            engine.state.metrics["metric"] = metric
            scheduler(engine)
            values.append([event, scheduler.optimizer_param_groups[0]["lr"]])
        return values


class BatchSizeScheduler(BaseParamScheduler):
    """Sets ``dataloader.batch_sampler.batch_size`` to ``scheduler_fn(event_index)`` on each event
    (default EPOCH_STARTED).

    >>> BatchSizeScheduler.simulate_values(3, scheduler_fn=lambda event: 16 * 2**event)
    [[0, 16], [1, 32], [2, 64]]
    """

    def __init__(self, dataloader: DataLoader, scheduler_fn: Callable[[int], int], save_history: bool = False) -> None:
        super().__init__(param_name="batch_size", save_history=save_history)
        if not isinstance(dataloader, DataLoader):
            raise TypeError(
                f"Argument dataloader should be torch.utils.data.DataLoader, but given {type(dataloader)}"
            )
        if not isinstance(getattr(dataloader, "batch_sampler", None), BatchSampler):
            raise ValueError(
                "Argument dataloader should have a BatchSampler, i.e. dataloader.batch_sampler should be an instance "
                "of torch.utils.data.sampler.BatchSampler"
            )
        check_callable(
            "scheduler_fn", scheduler_fn, "fn(event_index) -> batch size",
            prefix=f"Argument scheduler_fn should be callable, but given {type(scheduler_fn)}",
        )
        self.dataloader = dataloader
        self.scheduler_fn = scheduler_fn

    def __call__(self, engine: Engine | None) -> None:
        value = self.get_param()
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"Batch size returned by scheduler_fn should be a positive integer, but given {value}")
        self.dataloader.batch_sampler.batch_size = value
        if self.save_history:
            _record_history(engine, self.param_name, value)
        self.event_index += 1

    def get_param(self) -> int:
        return self.scheduler_fn(self.event_index)

    def attach(self, engine: Engine, event: Any = Events.EPOCH_STARTED) -> None:
        """Call this scheduler on ``engine``'s ``event`` (default EPOCH_STARTED)."""
        engine.add_event_handler(event, self)

    @classmethod
    def simulate_values(cls, num_events: int, **scheduler_kwargs: Any) -> list[list]:
        if "scheduler_fn" not in scheduler_kwargs:
            raise ValueError("Argument scheduler_kwargs must contain 'scheduler_fn'")
        scheduler_fn = scheduler_kwargs["scheduler_fn"]
        return [[event, scheduler_fn(event)] for event in range(num_events)]


def create_lr_scheduler_with_warmup(
    lr_scheduler: ParamScheduler | PyTorchLRScheduler,
    warmup_start_value: float,
    warmup_duration: int,
    warmup_end_value: float | None = None,
    save_history: bool = False,
    output_simulated_values: list | None = None,
) -> ConcatScheduler:
    """``lr_scheduler`` preceded by a linear warm-up over ``warmup_duration`` events from
    ``warmup_start_value`` to ``warmup_end_value`` (default each group's current lr).

    Args:
        lr_scheduler: a :class:`ParamScheduler` or a torch scheduler (wrapped in :class:`LRScheduler`).
        warmup_start_value: the first warm-up value.
        warmup_duration: the warm-up's length in events (>= 2).
        warmup_end_value: the last warm-up value; default each parameter group's lr.
        save_history: record the values in ``engine.state.param_history``.
        output_simulated_values: a list to fill with the simulated ``[event, value]`` pairs (its length
            is the number of events simulated).

    >>> import torch
    >>> optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    >>> decay = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    >>> values = [None] * 7
    >>> scheduler = create_lr_scheduler_with_warmup(decay, 0.0, 3, output_simulated_values=values)
    >>> [round(lr, 4) for _, lr in values]
    [0.0, 0.05, 0.1, 0.1, 0.05, 0.05, 0.025]
    """
    if not isinstance(lr_scheduler, (ParamScheduler, PyTorchLRScheduler)):
        raise TypeError(
            "Argument lr_scheduler should be a subclass of torch.optim.lr_scheduler.LRScheduler or "
            f"ParamScheduler, but given {type(lr_scheduler)}"
        )
    if not isinstance(warmup_duration, numbers.Integral) or isinstance(warmup_duration, bool):
        raise TypeError(f"Argument warmup_duration should be integer, but given {warmup_duration}")
    if warmup_duration <= 1:
        raise ValueError(f"Argument warmup_duration should be at least 2 events, but given {warmup_duration}")
    warmups: list[ParamScheduler] = []
    milestones_values: list[tuple[int, float]] = []
    for index, group in enumerate(lr_scheduler.optimizer.param_groups):
        end_value = group["lr"] if warmup_end_value is None else warmup_end_value
        milestones_values = [(0, warmup_start_value), (warmup_duration - 1, end_value)]
        if isinstance(lr_scheduler, PyTorchLRScheduler):
            initial_lr = group["lr"]
            if initial_lr != end_value:
                milestones_values.append((warmup_duration, initial_lr))
        else:
            initial_lr = lr_scheduler.get_param()
            if initial_lr == end_value:
                # The scheduler's first value already ends the warm-up: end the ramp one event early.
                if warmup_duration > 2:
                    step = (end_value - warmup_start_value) / (warmup_duration - 1)
                    milestones_values[-1] = (warmup_duration - 2, end_value - step)
                else:
                    milestones_values.pop(-1)
        warmups.append(
            PiecewiseLinear(
                lr_scheduler.optimizer,
                param_name="lr",
                milestones_values=milestones_values,
                param_group_index=index,
                save_history=save_history,
            )
        )
    if isinstance(lr_scheduler, PyTorchLRScheduler):
        # The warm-up covers the torch scheduler's first value.
        lr_scheduler.last_epoch += 1
        lr_scheduler = LRScheduler(lr_scheduler, save_history=save_history)
    schedulers: list[Any] = [ParamGroupScheduler(warmups, save_history=save_history), lr_scheduler]
    durations = [milestones_values[-1][0] + 1]
    combined = ConcatScheduler(schedulers, durations=durations, save_history=save_history)
    if output_simulated_values is not None:
        if not isinstance(output_simulated_values, list):
            raise TypeError(
                "Argument output_simulated_values should be a list of None, e.g. `[None] * 100`, "
                f"but given {type(output_simulated_values)}."
            )
        simulated = ConcatScheduler.simulate_values(
            num_events=len(output_simulated_values), schedulers=schedulers, durations=durations
        )
        output_simulated_values[:] = simulated
    return combined


def _the_one(schedulers: Sequence[Any], attribute: str, message: str) -> Any:
    """The single ``attribute`` value (an optimizer, a parameter name) shared by all ``schedulers``."""
    values = []
    for scheduler in schedulers:
        value = getattr(scheduler, attribute)
        for item in value if isinstance(value, list) else [value]:
            if not any(item is seen for seen in values):
                values.append(item)
    distinct = values if attribute == "optimizer" else list(dict.fromkeys(values))
    if len(distinct) != 1:
        raise ValueError(message)
    return distinct[0]


class _restored:
    """Context manager: the ``state_dict`` of each object is copied on entry and loaded back on exit, so
    ``simulate_values`` leaves schedulers and optimizers as it found them."""

    def __init__(self, objects: Sequence[Any]) -> None:
        self._objects = list(objects)

    def __enter__(self) -> None:
        self._saved = [copy.deepcopy(obj.state_dict()) for obj in self._objects]

    def __exit__(self, *exc_info: Any) -> None:
        for obj, state in zip(self._objects, self._saved):
            obj.load_state_dict(state)


def _throwaway_optimizer(lr: float = 0.01) -> Optimizer:
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
