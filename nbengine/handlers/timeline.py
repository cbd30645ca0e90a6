"""``EventTimeline``: a bounded record of the events an engine fired, read by the notebook panel.

This module owns the recorder: which facts it keeps about each fired event (its number, name, the
epoch and iteration at that moment, when it happened, which handlers ran and how long each took),
how much it keeps (a ring buffer of the most recent ``capacity`` events, so memory stays bounded
however long the run), and how another thread reads it (``snapshot()``, a consistent copy taken without stopping the writer).

It records through the engine's trace hook (``Engine.add_trace_hook``), which the engine calls on
the training side after every fired event; nothing here imports ipywidgets, IPython or matplotlib.
Optionally (``outputs=``) the same hook also keeps the output of each ITERATION_COMPLETED when it
is a number, in a second ring buffer: a panel then needs a single hook for its timeline and its
loss plot, and every hook costs a Python call per event.
The hot path stores one tuple per event; names and relative times are worked out only when a
snapshot is taken.

>>> from nbengine.engine import Engine, Events
>>> engine = Engine(lambda engine, batch: batch)
>>> timeline = EventTimeline(capacity=4).attach(engine)
>>> _ = engine.run([1, 2], max_epochs=1)
>>> [(entry.event, entry.epoch, entry.iteration) for entry in timeline.snapshot()]
[('ITERATION_STARTED', 1, 2), ('ITERATION_COMPLETED', 1, 2), ('EPOCH_COMPLETED', 1, 2), ('COMPLETED', 1, 2)]
>>> timeline.count
12
"""

from __future__ import annotations

import itertools
import numbers
import time
from operator import itemgetter
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from nbengine.engine.events import Events

__all__ = ["EventTimeline", "TimelineEntry"]

_clock = time.perf_counter
_ITERATION_COMPLETED = Events.ITERATION_COMPLETED


def _number(value: Any) -> float | None:
    """A number or a one-element tensor/array as a float, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    numel = getattr(value, "numel", None) or getattr(value, "size", None)
    count = numel() if callable(numel) else numel
    if count == 1 and callable(getattr(value, "item", None)):
        item = value.item()
        return float(item) if isinstance(item, numbers.Real) and not isinstance(item, bool) else None
    return None


class TimelineEntry(NamedTuple):
    """One fired event as the timeline saw it."""

    #: 1-based number of the event among all events recorded since the timeline was attached.
    seq: int
    #: The event's name, e.g. ``"ITERATION_COMPLETED"``.
    event: str
    epoch: int
    iteration: int
    #: Seconds since the timeline was attached, taken when the event's handlers had finished.
    time: float
    #: ``(handler name, seconds)`` for each handler that ran for this event, in the order they ran.
    handlers: tuple[tuple[str, float], ...]

    @property
    def handler_seconds(self) -> float:
        """Time spent in this event's handlers, in seconds."""
        return sum(seconds for _, seconds in self.handlers)


def _event_name(event: Any) -> str:
    return event if isinstance(event, str) else event.name


class EventTimeline:
    """Keeps the last ``capacity`` events fired by one engine, with their handler timings, and, when
    ``outputs`` > 0, the numeric output of the last ``outputs`` iterations (for a loss plot).

    ``attach(engine)`` starts recording and ``detach()`` stops it; ``snapshot()`` returns the recorded
    events, oldest first, optionally only some event types or only the last few. ``count`` is the number
    of events recorded since attaching (it keeps growing after the buffer is full), so a reader can tell
    whether anything new happened since it last looked.
    """

    def __init__(self, capacity: int = 2000, *, outputs: int = 0) -> None:
        if not isinstance(capacity, numbers.Integral) or isinstance(capacity, bool) or capacity < 1:
            raise ValueError(f"capacity should be a positive integer number of events, got {capacity!r}")
        if not isinstance(outputs, numbers.Integral) or isinstance(outputs, bool) or outputs < 0:
            raise ValueError(f"outputs should be a non-negative integer number of iterations, got {outputs!r}")
        self._capacity = int(capacity)
        self._entries: deque[tuple] = deque(maxlen=self._capacity)
        self._append = self._entries.append
        self._numbers = itertools.count(1)
        # (number, iteration, value): the number (1, 2, ... since attaching) lets a reader take only
        # what is new since it last looked (``outputs_after``), whatever the iterations did.
        self._outputs: deque[tuple[int, int, float]] | None = deque(maxlen=int(outputs)) if outputs else None
        self._outputs_recorded = 0
        self._clears = 0
        self._origin = time.perf_counter()
        self._engine: Any = None
        self._remove_hook: Callable[[], None] | None = None

    @property
    def capacity(self) -> int:
        """How many events the ring buffer keeps."""
        return self._capacity

    @property
    def count(self) -> int:
        """Events recorded since attaching, including those the buffer no longer holds."""
        try:
            return self._entries[-1][0]
        except IndexError:
            return 0

    @property
    def engine(self) -> Any:
        """The engine being recorded, or None when detached."""
        return self._engine

    def attach(self, engine: Any) -> EventTimeline:
        """Record every event ``engine`` fires from now on. Returns the timeline."""
        add_trace_hook = getattr(engine, "add_trace_hook", None)
        if not callable(add_trace_hook):
            raise TypeError(
                f"engine should be an nbengine Engine (with add_trace_hook), got {engine!r} "
                f"of type {type(engine).__name__}"
            )
        if self._engine is not None:
            raise RuntimeError(
                f"this EventTimeline already records {self._engine!r}; detach() it first or make another timeline"
            )
        self._engine = engine
        self._remove_hook = add_trace_hook(self._record if self._outputs is None else self._record_with_output)
        return self

    def detach(self) -> None:
        """Stop recording. What was recorded stays readable."""
        remove, self._remove_hook = self._remove_hook, None
        self._engine = None
        if remove is not None:
            remove()

    def clear(self) -> None:
        """Forget the recorded events and outputs; ``count`` and the time origin start again from zero."""
        self._entries.clear()
        self._numbers = itertools.count(1)
        self._origin = time.perf_counter()
        if self._outputs is not None:
            self._outputs.clear()
        self._outputs_recorded = 0
        self._clears += 1

    @property
    def clears(self) -> int:
        """How many times ``clear()`` was called: a reader's place (a number of events or outputs
        it has seen) belongs to the recording it was taken from."""
        return self._clears

    def _record(self, event: Any, state: Any, timings: list[tuple[str, float]]) -> None:
        # The training side calls this after every event: one tuple, one append, no lock (a deque
        # append is atomic, and only the training side writes). The engine hands over a fresh
        # timings list each time, so keeping a reference is safe; an empty one is not kept, so it
        # goes back to the allocator at once instead of living on in the buffer.
        self._append((next(self._numbers), event, state.epoch, state.iteration, _clock(), timings or ()))

    def _record_with_output(self, event: Any, state: Any, timings: list[tuple[str, float]]) -> None:
        # The same record, and at ITERATION_COMPLETED the output when it is a number: one hook for
        # both, because every hook is a Python call the engine makes after every event.
        self._append((next(self._numbers), event, state.epoch, state.iteration, _clock(), timings or ()))
        if event is _ITERATION_COMPLETED:
            value = state.output
            if type(value) is not float:
                value = _number(value)
                if value is None:
                    return
            recorded = self._outputs_recorded + 1
            self._outputs.append((recorded, state.iteration, value))  # type: ignore[union-attr]
            self._outputs_recorded = recorded

    @property
    def outputs_recorded(self) -> int:
        """Outputs recorded since attaching (with ``outputs=`` > 0), including those no longer held."""
        return self._outputs_recorded

    @property
    def last_output(self) -> tuple[int, float] | None:
        """``(iteration, value)`` of the last numeric output recorded, or None."""
        try:
            _, iteration, value = self._outputs[-1]  # type: ignore[index]
        except (IndexError, TypeError):
            return None
        return iteration, value

    @property
    def outputs_capacity(self) -> int:
        """How many outputs the second ring buffer keeps (0: none are recorded)."""
        return 0 if self._outputs is None else self._outputs.maxlen  # type: ignore[return-value]

    def outputs(self) -> list[tuple[int, float]]:
        """``(iteration, value)`` of the last ``outputs`` numeric outputs at ITERATION_COMPLETED,
        oldest first (empty unless the timeline was made with ``outputs=`` > 0)."""
        return [(iteration, value) for _, iteration, value in self.outputs_after(0)]

    def outputs_after(self, seen: int) -> list[tuple[int, int, float]]:
        """``(number, iteration, value)`` of the outputs recorded after the first ``seen`` ones
        (numbered from 1 since attaching or ``clear()``), oldest first, as far as the buffer still
        holds them. A reader that keeps the last number it got reads only what is new: the cost is
        that of the new outputs, not of the buffer.

        >>> from nbengine.engine import Engine
        >>> engine = Engine(lambda engine, batch: float(batch))
        >>> timeline = EventTimeline(outputs=3).attach(engine)
        >>> _ = engine.run([5, 6, 7, 8], max_epochs=1)
        >>> timeline.outputs_after(0)
        [(2, 2, 6.0), (3, 3, 7.0), (4, 4, 8.0)]
        >>> timeline.outputs_after(3)
        [(4, 4, 8.0)]
        """
        held = self._outputs
        if held is None:
            return []
        wanted = 64
        while True:
            try:
                newest = held[-1][0]
            except IndexError:
                return []
            wanted = max(wanted, newest - seen + 64)
            try:
                # One call into C, newest first: the writer cannot append in the middle of it.
                tail = list(itertools.islice(reversed(held), wanted))
            except RuntimeError:  # see _copy_entries
                continue
            if len(tail) < wanted or tail[-1][0] <= seen:
                return [record for record in reversed(tail) if record[0] > seen]
            wanted *= 2  # more were appended meanwhile than the margin: look further back

    def _copy_entries(self) -> list[tuple]:
        # Copying a deque that another thread appends to can fail with "deque mutated during
        # iteration"; the copy is a few microseconds, so trying again soon succeeds.
        while True:
            try:
                return list(self._entries)
            except RuntimeError:
                continue

    def snapshot(self, events: Iterable[Any] | None = None, last: int | None = None) -> list[TimelineEntry]:
        """The recorded events, oldest first.

        ``events`` keeps only these event types (events or their names, filters ignored); ``last``
        keeps only the last ``last`` of the events that remain. Safe to call from any thread.
        """
        wanted: set[str] | None = None
        if events is not None:
            if isinstance(events, (str, bytes)) or not isinstance(events, Iterable):
                raise TypeError(
                    f"events should be an iterable of events or event names, got {events!r} "
                    f"of type {type(events).__name__}"
                )
            wanted = set()
            for index, event in enumerate(events):
                if not isinstance(event, str) and not isinstance(getattr(event, "name", None), str):
                    raise TypeError(f"events[{index}] should be an event or an event name, got {event!r}")
                wanted.add(_event_name(event))
        if last is not None and (not isinstance(last, numbers.Integral) or isinstance(last, bool) or last < 0):
            raise ValueError(f"last should be a non-negative integer or None, got {last!r}")
        raw = self._copy_entries()
        origin = self._origin
        limit = len(raw) if last is None else last
        # Newest first until ``last`` entries are found, so a short look at a full buffer stays cheap.
        picked = []
        for record in reversed(raw):
            if len(picked) >= limit:
                break
            name = _event_name(record[1])
            if wanted is None or name in wanted:
                picked.append((record, name))
        picked.reverse()
        return [
            TimelineEntry(seq, name, epoch, iteration, stamp - origin, tuple(timings))
            for (seq, _, epoch, iteration, stamp, timings), name in picked
        ]

    def event_names(self) -> list[str]:
        """The names of the event types in the buffer, in the order they first appear in it."""
        events = list(map(itemgetter(1), self._copy_entries()))
        # Deduplicated by identity, in C: hashing an event would run Python code for each entry.
        distinct = dict(zip(map(id, events), events))
        return list(dict.fromkeys(_event_name(event) for event in distinct.values()))

    def __repr__(self) -> str:
        attached = "detached" if self._engine is None else "attached"
        return f"EventTimeline(capacity={self._capacity}, count={self.count}, {attached})"
