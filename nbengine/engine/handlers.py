"""The handler table of one engine: which handlers are attached to which event, and calling them.

This module owns attaching (with the signature checked once, at attach time, so a handler that cannot
take its arguments is refused then and not in the middle of a run), detaching, and firing: plain,
traced (each handler timed, for the panel's timeline), and from a given handler onwards (a run
continued after an interrupt re-calls the interrupted handler and none of those that had finished).

While an event's handlers run, ``firing`` names the event and ``index`` the handler being called;
the loop and ``state_dict`` read them to know where inside an event the run stands. An exception
leaves them set (the loop asks ``interrupted_at``); custom events fired from inside a handler or the
process function are dispatched with ``fire_nested``, which leaves the outer event's position as it was.
"""

from __future__ import annotations

import time
import weakref
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from nbengine._checks import check_callable
from nbengine.engine._signature import can_bind, describe_callable
from nbengine.engine.events import EveryFilter

__all__ = ["HandlerTable", "handler_name"]

# How a handler is called, decided once at attach time.
CALL_BARE = 0  # handler()
CALL_ENGINE = 1  # handler(engine)
CALL_GENERAL = 2  # handler([engine,] *event_args, *args, **kwargs)


def handler_name(handler: Callable) -> str:
    """A handler's name for the timeline: callable objects (a Checkpoint, a metric) have no
    ``__qualname__`` of their own and are named by their class, never by a repr with an address."""
    return getattr(handler, "__qualname__", None) or type(handler).__qualname__


class _EveryEventTable(dict):
    """Stands for the entries when every event must be dispatched (ignite's _fire_event hook overridden)."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: Any) -> tuple:
        return ()


class HandlerTable:
    """Event name -> tuple of entries ``(handler, mode, every, (pass_engine, args, kwargs, filter))``.

    Entries are short tuples read on the hot path; ``every`` filters are checked inline."""

    def __init__(self, engine: Any) -> None:
        # A weak reference: the engine owns its table, and an engine nobody holds must go at once
        # (no cycle for the garbage collector to find later).
        self._engine = weakref.ref(engine)
        self.entries: dict[str, tuple] = {}
        self.every_event = _EveryEventTable()
        self.firing: str | None = None
        self.index = 0

    # ------------------------------------------------------------------ attaching

    def add(self, key: str, event_filter: Any, handler: Callable, args: tuple, kwargs: dict, event_args: tuple) -> None:
        check_callable("handler", handler)
        engine = self._engine()
        with_engine = can_bind(handler, (engine, *event_args, *args), kwargs)
        if with_engine is False:
            if can_bind(handler, (*event_args, *args), kwargs) is False:
                given = ", ".join([*(["exception"] if event_args else []), *map(repr, args), *(f"{k}=" for k in kwargs)])
                raise ValueError(
                    f"handler {describe_callable(handler)} for {key} cannot be called with "
                    f"(engine{', ' + given if given else ''}) nor with ({given})"
                )
            pass_engine = False
        else:
            # True, or None when Python cannot read the signature: pass the engine, as ignite does.
            pass_engine = True
        every = event_filter.every if isinstance(event_filter, EveryFilter) else 0
        other_filter = None if every else event_filter
        if args or kwargs or event_args or other_filter is not None:
            mode = CALL_GENERAL
        else:
            mode = CALL_ENGINE if pass_engine else CALL_BARE
        self.append(key, (handler, mode, every, (pass_engine, args, kwargs, other_filter)))

    def append(self, key: str, entry: tuple) -> None:
        """Attach an entry taken from another table (an engine's replica shares its handlers)."""
        self.entries[key] = self.entries.get(key, ()) + (entry,)

    def has(self, handler: Callable, key: str | None = None) -> bool:
        keys = list(self.entries) if key is None else [key]
        return any(entry[0] == handler for name in keys for entry in self.entries.get(name, ()))

    def remove(self, handler: Callable, key: str, event_name: Any) -> None:
        entries = self.entries.get(key)
        if entries is None:
            raise ValueError(
                f"Input event name '{event_name}' does not exist: no handler is attached to it "
                f"(events with handlers: {', '.join(self.entries) or 'none'})"
            )
        kept = tuple(entry for entry in entries if entry[0] != handler)
        if len(kept) == len(entries):
            raise ValueError(
                f"Input handler '{handler}' is not found among registered event handlers: "
                f"{describe_callable(handler)} is not attached to {key}"
            )
        if kept:
            self.entries[key] = kept
        else:
            del self.entries[key]

    def ignite_view(self) -> defaultdict:
        """ignite's ``_event_handlers`` shape, as a copy: event name -> [(handler, args, kwargs)]."""
        table: defaultdict = defaultdict(list)
        for key, entries in self.entries.items():
            table[key] = [(entry[0], entry[3][1], entry[3][2]) for entry in entries]
        return table

    # ------------------------------------------------------------------ firing

    def fire(self, key: str, entries: tuple, event_args: tuple, start: int = 0) -> None:
        """Call the handlers of ``key`` whose filters pass, from entry ``start`` on."""
        engine = self._engine()
        self.firing = key
        count = -1
        index = start
        for handler, mode, every, rest in entries[start:] if start else entries:
            self.index = index
            index += 1
            if every:
                if count < 0:
                    count = engine._count(key)
                if count % every:
                    continue
            if mode == CALL_ENGINE:
                handler(engine)
            elif mode == CALL_BARE:
                handler()
            else:
                pass_engine, args, kwargs, event_filter = rest
                if event_filter is not None:
                    if count < 0:
                        count = engine._count(key)
                    if not event_filter(engine, count):
                        continue
                if pass_engine:
                    handler(engine, *event_args, *args, **kwargs)
                else:
                    handler(*event_args, *args, **kwargs)
        self.firing = None

    def fire_traced(self, key: str, entries: tuple, event_args: tuple, start: int = 0) -> list[tuple[str, float]]:
        """Like ``fire``, timing each handler called: ``[(handler name, seconds), ...]``."""
        engine = self._engine()
        self.firing = key
        timings: list[tuple[str, float]] = []
        count = engine._count(key)
        clock = time.perf_counter
        for index in range(start, len(entries)):
            handler, _mode, every, (pass_engine, args, kwargs, event_filter) = entries[index]
            self.index = index
            if every and count % every:
                continue
            if event_filter is not None and not event_filter(engine, count):
                continue
            began = clock()
            if pass_engine:
                handler(engine, *event_args, *args, **kwargs)
            else:
                handler(*event_args, *args, **kwargs)
            timings.append((handler_name(handler), clock() - began))
        self.firing = None
        return timings

    def fire_nested(self, key: str, entries: tuple, event_args: tuple, traced: bool) -> list[tuple[str, float]]:
        """Fire a custom event from inside the run (a handler, the process function): the unit an
        interrupt goes back to stays the outer handler or the process function."""
        outer = self.firing, self.index
        try:
            if traced:
                return self.fire_traced(key, entries, event_args)
            self.fire(key, entries, event_args)
            return []
        finally:
            self.firing, self.index = outer

    def interrupted_at(self) -> tuple[str, int] | None:
        """After an exception escaped a ``fire``: the event and the handler it escaped from."""
        if self.firing is None:
            return None
        at = (self.firing, self.index)
        self.firing = None
        return at
