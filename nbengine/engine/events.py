"""Events, their filters, and the small objects handlers are attached with.

This module owns the vocabulary of a run: the built-in ``Events``, ``EventEnum`` for custom events,
``CallableEventWithFilter`` (an event narrowed by ``every=``, ``once=``, ``before=``, ``after=`` or
``event_filter=``), ``EventsList`` (built by ``|``), ``State`` and ``RemovableEventHandle``.

Filters are checked when the filtered event is created, so a bad ``every=0`` fails on the line that
wrote it, not later inside a run. Filters are plain data (``EveryFilter`` and friends) so the engine
can evaluate them as counter checks without calling a Python wrapper on every event.
"""

from __future__ import annotations

import inspect
import numbers
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from nbengine._checks import is_int
from nbengine.engine._signature import check_callable_takes

if TYPE_CHECKING:
    from nbengine.engine.engine import Engine

__all__ = [
    "CallableEventWithFilter",
    "EventEnum",
    "Events",
    "EventsList",
    "State",
    "RemovableEventHandle",
    "EveryFilter",
    "OnceFilter",
    "RangeFilter",
]


def _is_positive_int(value: Any) -> bool:
    return is_int(value) and value > 0


def _is_non_negative_int(value: Any) -> bool:
    return is_int(value) and value >= 0


class EveryFilter:
    """Passes every ``every``-th occurrence: counts every, 2*every, ..."""

    __slots__ = ("every",)

    def __init__(self, every: int) -> None:
        self.every = int(every)

    def __call__(self, engine: Engine | None, event: int) -> bool:
        return event % self.every == 0

    def __repr__(self) -> str:
        return f"every={self.every}"


class OnceFilter:
    """Passes the listed occurrences only."""

    __slots__ = ("counts",)

    def __init__(self, counts: Sequence[int]) -> None:
        self.counts = frozenset(int(c) for c in counts)

    def __call__(self, engine: Engine | None, event: int) -> bool:
        return event in self.counts

    def __repr__(self) -> str:
        counts = sorted(self.counts)
        return f"once={counts[0] if len(counts) == 1 else counts}"


class RangeFilter:
    """Passes occurrences strictly between ``after`` and ``before``, optionally every ``every``-th one
    counted from ``after + 1``."""

    __slots__ = ("before", "after", "every")

    def __init__(self, before: int | None, after: int | None, every: int | None) -> None:
        self.before = before
        self.after = after
        self.every = every

    def __call__(self, engine: Engine | None, event: int) -> bool:
        after = 0 if self.after is None else self.after
        if event <= after:
            return False
        if self.before is not None and event >= self.before:
            return False
        return self.every is None or (event - after - 1) % self.every == 0

    def __repr__(self) -> str:
        parts = [f"{name}={getattr(self, name)}" for name in ("every", "before", "after") if getattr(self, name) is not None]
        return ", ".join(parts)


class CallableEventWithFilter:
    """An event, possibly narrowed by a filter.

    Calling an event builds a new one with the same name and a filter: ``Events.ITERATION_COMPLETED(every=50)``.
    The filter receives ``(engine, count)`` where count is the event's counter (iteration for the iteration
    and batch events, epoch for the epoch events and STARTED/COMPLETED, the number of times the event
    fired for the others) and returns whether handlers attached through this event run.
    """

    def __init__(self, value: str, event_filter: Callable | None = None, name: str | None = None) -> None:
        self.filter = event_filter
        if not hasattr(self, "_value_"):
            self._value_ = value
        if not hasattr(self, "_name_") and name is not None:
            self._name_ = name

    @property
    def name(self) -> str:
        return self._name_

    @staticmethod
    def default_event_filter(engine: Any, event: int) -> bool:
        """ignite's old filter that lets every event through; deprecated there, kept for ported code."""
        warnings.warn(
            "default_event_filter is deprecated and will be removed: an event without a filter runs its "
            "handlers every time, no filter needs to be given",
            UserWarning,
            stacklevel=2,
        )
        return True

    @property
    def value(self) -> str:
        return self._value_

    def __call__(
        self,
        event_filter: Callable | None = None,
        every: int | None = None,
        once: int | Sequence[int] | None = None,
        before: int | None = None,
        after: int | None = None,
    ) -> CallableEventWithFilter:
        kinds_given = [
            name
            for name, given in (
                ("event_filter", event_filter is not None),
                ("once", once is not None),
                ("every/before/after", every is not None or before is not None or after is not None),
            )
            if given
        ]
        if len(kinds_given) != 1:
            raise ValueError(
                "Only one of the input arguments should be specified, except before, after and every: "
                f"{self.name}(...) takes exactly one of event_filter=, once=, or every=/before=/after=; "
                f"got {kinds_given or 'none of them'}"
            )
        if event_filter is not None:
            if not callable(event_filter):
                raise TypeError(
                    "Argument event_filter should be a callable: event_filter should be a callable taking "
                    f"(engine, event), got {event_filter!r} "
                    f"of type {type(event_filter).__name__}"
                )
            check_callable_takes(event_filter, "event_filter", ["engine", "event"], (None, 0))
            return CallableEventWithFilter(self.value, event_filter, self.name)
        if once is not None:
            counts = [once] if not isinstance(once, Sequence) or isinstance(once, str) else list(once)
            if not counts or not all(_is_positive_int(c) for c in counts):
                raise ValueError(
                    "Argument once should either be a positive integer or a list of positive integers, got "
                    f"{once!r}: once should be a positive integer or a non-empty list of them, got {once!r}"
                )
            return CallableEventWithFilter(self.value, OnceFilter(counts), self.name)
        if every is not None and not _is_positive_int(every):
            raise ValueError(
                f"Argument every should be integer and greater than zero: every should be an integer greater than "
                f"zero, got {every!r}"
            )
        if before is not None and not _is_non_negative_int(before):
            raise ValueError(
                "Argument before should be integer and greater or equal to zero: before should be an integer "
                f"greater than or equal to zero, got {before!r}"
            )
        if after is not None and not _is_non_negative_int(after):
            raise ValueError(
                "Argument after should be integer and greater or equal to zero: after should be an integer "
                f"greater than or equal to zero, got {after!r}"
            )
        if before is None and after is None:
            # every=1 passes everything: keep the event unfiltered so it costs nothing.
            return CallableEventWithFilter(self.value, None if every == 1 else EveryFilter(every), self.name)
        return CallableEventWithFilter(self.value, RangeFilter(before, after, every), self.name)

    def __repr__(self) -> str:
        if self.filter is None:
            return f"Events.{self.name}"
        return f"Events.{self.name}({self.filter!r})"

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, CallableEventWithFilter):
            return self.name == other.name
        if isinstance(other, str):
            return self.name == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._name_)

    def __or__(self, other: Any) -> EventsList:
        return EventsList() | self | other


class EventEnum(CallableEventWithFilter, Enum):
    """Base class of ``Events``; derive from it to declare custom events.

    >>> class BackpropEvents(EventEnum):
    ...     BACKWARD_STARTED = "backward_started"
    ...     BACKWARD_COMPLETED = "backward_completed"
    >>> BackpropEvents.BACKWARD_STARTED(every=2)
    Events.BACKWARD_STARTED(every=2)
    """

    def __new__(cls, value: str) -> EventEnum:
        member = CallableEventWithFilter.__new__(cls)
        member._value_ = value
        return member

    # Enum installs its own hash and equality; keep the name-based ones so a filtered copy of an
    # event finds the handlers of the plain event.
    __hash__ = CallableEventWithFilter.__hash__
    __eq__ = CallableEventWithFilter.__eq__

    def __or__(self, other: Any) -> EventsList:
        return EventsList() | self | other


class Events(EventEnum):
    """The events an Engine fires, in run order.

    - STARTED: the run starts.
    - EPOCH_STARTED: an epoch starts.
    - GET_BATCH_STARTED, GET_BATCH_COMPLETED: around fetching a batch (not fired when data is None).
    - ITERATION_STARTED, ITERATION_COMPLETED: around the process function.
    - DATALOADER_STOP_ITERATION: the data ran out inside an epoch and is restarted.
    - EXCEPTION_RAISED: an exception left a handler or the process function; handlers receive it.
    - TERMINATE_SINGLE_EPOCH: the epoch ends early after ``terminate_epoch()``.
    - EPOCH_COMPLETED: an epoch ends (skipped by ``terminate_epoch(skip_epoch_completed=True)``).
    - TERMINATE: the run ends early after ``terminate()`` (or on reaching ``max_iters`` mid-epoch).
    - INTERRUPT: the run pauses after ``interrupt()``.
    - COMPLETED: the run ends (skipped by ``terminate(skip_completed=True)``).
    """

    EPOCH_STARTED = "epoch_started"
    EPOCH_COMPLETED = "epoch_completed"
    STARTED = "started"
    COMPLETED = "completed"
    ITERATION_STARTED = "iteration_started"
    ITERATION_COMPLETED = "iteration_completed"
    EXCEPTION_RAISED = "exception_raised"
    GET_BATCH_STARTED = "get_batch_started"
    GET_BATCH_COMPLETED = "get_batch_completed"
    DATALOADER_STOP_ITERATION = "dataloader_stop_iteration"
    TERMINATE = "terminate"
    TERMINATE_SINGLE_EPOCH = "terminate_single_epoch"
    INTERRUPT = "interrupt"


class EventsList:
    """Several events, built with ``|``; attaching a handler to it attaches it to each event."""

    def __init__(self) -> None:
        self._events: list[CallableEventWithFilter] = []

    def _append(self, event: Any) -> None:
        if not isinstance(event, CallableEventWithFilter):
            raise TypeError(
                "Argument event should be Events or CallableEventWithFilter: only events can be combined "
                f"with |, got {event!r} of type {type(event).__name__}"
            )
        self._events.append(event)

    def __getitem__(self, item: int) -> CallableEventWithFilter:
        return self._events[item]

    def __iter__(self) -> Iterator[CallableEventWithFilter]:
        return iter(self._events)

    def __len__(self) -> int:
        return len(self._events)

    def __or__(self, other: Any) -> EventsList:
        if isinstance(other, EventsList):
            for event in other:
                self._append(event)
        else:
            self._append(other)
        return self

    def __repr__(self) -> str:
        return " | ".join(repr(e) for e in self._events)


#: Which State attribute counts each built-in event; filters compare against it.
BUILTIN_EVENT_TO_ATTR: dict[str, str] = {
    Events.GET_BATCH_STARTED.name: "iteration",
    Events.GET_BATCH_COMPLETED.name: "iteration",
    Events.ITERATION_STARTED.name: "iteration",
    Events.ITERATION_COMPLETED.name: "iteration",
    Events.EPOCH_STARTED.name: "epoch",
    Events.EPOCH_COMPLETED.name: "epoch",
    Events.STARTED.name: "epoch",
    Events.COMPLETED.name: "epoch",
}


# The names of ignite's built-in events: the events the run loop fires itself.
BUILTIN_EVENT_NAMES = frozenset(event.name for event in Events)


def event_key(event: Any) -> str:
    """The handler table's key of an event: its name (a custom event may be a plain string)."""
    return event if isinstance(event, str) else event.name


class State:
    """What a run knows about itself, shared by the process function and the handlers.

    ``iteration`` and ``epoch`` count from 1 during a run (0 before it). ``batch`` and ``output`` are
    the current batch and the process function's result; ``metrics`` is filled by metrics;
    ``times`` holds the duration of the last epoch and of the run, in seconds, with paused time left
    out. Any other attribute may be set freely.

    >>> state = State(alpha=0.1)
    >>> (state.iteration, state.epoch, state.alpha)
    (0, 0, 0.1)
    """

    def __init__(self, **kwargs: Any) -> None:
        self.iteration = 0
        self.epoch = 0
        self.epoch_length: int | None = None
        self.max_epochs: int | None = None
        self.max_iters: int | None = None
        self.output: Any = None
        self.batch: Any = None
        self.metrics: dict[str, Any] = {}
        self.dataloader: Any = None
        self.seed: int | None = None
        self.times: dict[str, float | None] = {
            Events.EPOCH_COMPLETED.name: None,
            Events.COMPLETED.name: None,
        }
        for key, value in kwargs.items():
            setattr(self, key, value)

    def get_event_attrib_value(self, event_name: Any) -> int:
        """The counter of a built-in event: ``epoch`` for STARTED/EPOCH_*/COMPLETED, ``iteration``
        for GET_BATCH_*/ITERATION_*.

        >>> State(iteration=7).get_event_attrib_value(Events.ITERATION_COMPLETED)
        7
        """
        key = event_name if isinstance(event_name, str) else getattr(event_name, "name", None)
        attr = BUILTIN_EVENT_TO_ATTR.get(key) if isinstance(key, str) else None
        if attr is None:
            raise RuntimeError(
                f"Unknown event name '{event_name}': event_name should be one of the built-in events "
                f"{', '.join(BUILTIN_EVENT_TO_ATTR)}"
            )
        return getattr(self, attr)

    def __repr__(self) -> str:
        lines = ["State:"]
        for attr, value in self.__dict__.items():
            shown = value if isinstance(value, (numbers.Number, str, type(None))) else type(value)
            lines.append(f"\t{attr}: {shown}")
        return "\n".join(lines)


class RemovableEventHandle:
    """Returned by ``add_event_handler``: ``remove()`` detaches the handler; as a context manager it
    detaches it on exit. Holds the engine and handler weakly so it never keeps them alive."""

    def __init__(self, event_name: Any, handler: Callable, engine: Engine) -> None:
        self.event_name = event_name
        self.handler = _weak_handler(handler)
        self.engine = weakref.ref(engine)

    def remove(self) -> None:
        engine = self.engine()
        handler = self.handler()
        if engine is None or handler is None:
            return
        events = list(self.event_name) if isinstance(self.event_name, EventsList) else [self.event_name]
        for event in events:
            if engine.has_event_handler(handler, event):
                engine.remove_event_handler(handler, event)

    def __enter__(self) -> RemovableEventHandle:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.remove()


def _weak_handler(handler: Callable) -> Callable[[], Callable | None]:
    # A bound method is a new object on each attribute access, so a plain weakref to it dies at once.
    if inspect.ismethod(handler):
        return weakref.WeakMethod(handler)
    try:
        return weakref.ref(handler)
    except TypeError:
        # Some callables (e.g. functools.partial of builtins) cannot be weakly referenced; the
        # engine keeps them alive anyway while they are attached.
        return lambda: handler
