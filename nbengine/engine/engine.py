"""The Engine: ignite's run semantics as one generator that can be paused, stepped and resumed.

This module owns the run loop and everything that drives it. The whole run is a single generator
(``_run_as_generator``) that yields after every fired event; each yield is a *boundary*. Every way of
running is a way of draining that one generator:

- ``run()`` drains it in the caller's thread;
- ``step(...)`` drains it until a stop condition holds (n iterations, the next event, the next
  occurrence of a possibly filtered event);
- ``start()`` / ``resume()`` drain it in one background thread owned by the engine;
- ``pause()`` (thread-safe) asks the driver to stop at the next boundary; ``stop()`` ends the run
  like ``terminate()``.

A boundary is never inside the process function, so nobody observes a half-updated model. Work that
must happen on the training side between two events (a checkpoint save requested by a button) goes
through ``call_at_boundary``.

In the foreground and in the main thread, Ctrl-C is a lossless pause: the current event finishes,
the run pauses at the next boundary and ``KeyboardInterrupt`` is raised there; ``run()`` continues
with the next batch. A second Ctrl-C before that boundary raises at once, and the run stays
resumable from its last boundary (the interrupted part is redone).
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
import warnings
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from nbengine._checks import (
    check_iterable,
    check_mapping,
    check_non_negative_int,
    check_optional_positive_int,
    check_positive_int,
)
from nbengine.engine._signature import can_bind, describe_callable
from nbengine.engine.data_state import STATE_KEY as DATA_STATE_KEY
from nbengine.engine.data_state import data_state, restore_data_state
from nbengine.engine.events import (
    BUILTIN_EVENT_TO_ATTR,
    CallableEventWithFilter,
    EventEnum,
    Events,
    EventsList,
    EveryFilter,
    RemovableEventHandle,
    State,
)

__all__ = ["Engine", "IDLE", "RUNNING", "PAUSED", "DONE", "FAILED"]

IDLE = "idle"
RUNNING = "running"
PAUSED = "paused"
DONE = "done"
FAILED = "failed"

# Keys of the built-in events in the handler table (event names), bound once for the hot path.
_STARTED = Events.STARTED
_EPOCH_STARTED = Events.EPOCH_STARTED
_GET_BATCH_STARTED = Events.GET_BATCH_STARTED
_GET_BATCH_COMPLETED = Events.GET_BATCH_COMPLETED
_ITERATION_STARTED = Events.ITERATION_STARTED
_ITERATION_COMPLETED = Events.ITERATION_COMPLETED
_GBS = _GET_BATCH_STARTED.name
_GBC = _GET_BATCH_COMPLETED.name
_ITS = _ITERATION_STARTED.name
_ITC = _ITERATION_COMPLETED.name

# How a handler is called, decided once at attach time.
_CALL_BARE = 0  # handler()
_CALL_ENGINE = 1  # handler(engine)
_CALL_GENERAL = 2  # handler([engine,] *event_args, *args, **kwargs)


class _EveryEventTable(dict):
    """Stands for the handler table when every event must be dispatched (ignite's _fire_event hook)."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: Any) -> tuple:
        return ()


_EVERY_EVENT = _EveryEventTable()


class _HardInterrupt:
    """Yielded by the run generator when a second Ctrl-C landed inside the run."""

    def __repr__(self) -> str:
        return "<hard interrupt>"


_HARD_INTERRUPT = _HardInterrupt()


class _Terminate(Exception):
    """Unwinds the run generator to TERMINATE after ``terminate()``."""


class _TerminateEpoch(Exception):
    """Unwinds the epoch generator to TERMINATE_SINGLE_EPOCH after ``terminate_epoch()``."""


def _none_batches(count: int) -> Iterator[None]:
    for _ in range(count):
        yield None


def _handler_name(handler: Callable) -> str:
    # Callable objects (a Checkpoint, a metric's bound method's owner) have no __qualname__ of
    # their own: name them by their class, never by a repr that carries a memory address.
    return getattr(handler, "__qualname__", None) or type(handler).__qualname__


def _event_key(event: Any) -> str:
    return event if isinstance(event, str) else event.name


class _StepCondition:
    """When a ``step(...)`` call stops. Built-in events are seen at boundaries through ``at_boundary``;
    custom events, which can fire inside the process function, through ``saw_custom``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.reached = False

    def at_boundary(self, event: Any) -> bool:
        return self.reached or self._matches(event)

    def saw_custom(self, event: Any) -> None:
        if self._matches(event):
            self.reached = True

    def _matches(self, event: Any) -> bool:
        raise NotImplementedError


class _AfterIterations(_StepCondition):
    def __init__(self, engine: Engine, iterations: int) -> None:
        super().__init__(engine)
        self._left = iterations

    def _matches(self, event: Any) -> bool:
        if event is _ITERATION_COMPLETED:
            self._left -= 1
        return self._left <= 0


class _AfterEvents(_StepCondition):
    def __init__(self, engine: Engine, events: int) -> None:
        super().__init__(engine)
        self._left = events

    def _matches(self, event: Any) -> bool:
        self._left -= 1
        return self._left <= 0


class _AtEvent(_StepCondition):
    def __init__(self, engine: Engine, target: CallableEventWithFilter | str) -> None:
        super().__init__(engine)
        self._key = _event_key(target)
        self._filter = None if isinstance(target, str) else target.filter

    def _matches(self, event: Any) -> bool:
        if event is _HARD_INTERRUPT or _event_key(event) != self._key:
            return False
        return self._filter is None or bool(self._filter(self._engine, self._engine._count(self._key)))


class Engine:
    """Runs a process function over data, firing events that handlers attach to.

    The API is pytorch-ignite's ``Engine``; on top of it a run can be paused, stepped and resumed at
    any event boundary, in the foreground or in a background thread.

    >>> seen = []
    >>> engine = Engine(lambda engine, batch: batch * 10)
    >>> @engine.on(Events.ITERATION_COMPLETED(every=2))
    ... def record(engine):
    ...     seen.append((engine.state.epoch, engine.state.iteration, engine.state.output))
    >>> state = engine.run([1, 2, 3, 4], max_epochs=2)
    >>> seen
    [(1, 2, 20), (1, 4, 40), (2, 6, 20), (2, 8, 40)]
    >>> engine.status
    'done'

    Stepping through a run:

    >>> engine = Engine(lambda engine, batch: batch)
    >>> _ = engine.step(data=[10, 20, 30], max_epochs=2)
    >>> (engine.status, engine.state.iteration, engine.last_event)
    ('paused', 1, Events.ITERATION_COMPLETED)
    >>> _ = engine.step(until=Events.EPOCH_COMPLETED)
    >>> (engine.state.epoch, engine.state.iteration)
    (1, 3)
    >>> _ = engine.run()
    >>> (engine.status, engine.state.iteration)
    ('done', 6)
    """

    # ignite's switch between its generator run and its older loop; both are the one generator here,
    # so it only decides whether interrupt() is allowed, as in ignite.
    interrupt_resume_enabled = True
    _state_dict_all_req_keys: tuple[str, ...] = ("epoch_length", "iteration")
    _state_dict_one_of_opt_keys: tuple[tuple[str, ...], ...] = (("max_epochs", "max_iters"),)

    def __init__(self, process_function: Callable[[Engine, Any], Any]):
        if not callable(process_function):
            raise ValueError(
                "Engine must be given a processing function in order to run: process_function should be a "
                f"callable taking (engine, batch), got {process_function!r}"
            )
        if can_bind(process_function, (None, None), {}) is False:
            raise ValueError(
                f"Error adding {process_function} 'process_function': takes parameters "
                f"{describe_callable(process_function)} but will be called with (engine, batch): process_function "
                f"{describe_callable(process_function)} cannot be called with (engine, batch)"
            )
        self._process_function = process_function
        self.logger = logging.getLogger(f"{__name__}.{type(self).__name__}")
        self.state = State()
        self.last_event: Any = None

        self._handlers: dict[str, tuple] = {}
        # A subclass that overrides _fire_event (ignite's dispatch hook) sees every fired event.
        self._dispatch_hooked = type(self)._fire_event is not Engine._fire_event
        self._allowed_events: dict[str, Any] = {event.name: event for event in Events}
        self._event_to_attr: dict[str, str] = dict(BUILTIN_EVENT_TO_ATTR)
        self._fire_counts: dict[str, int] = {}
        self._state_dict_user_keys: list[str] = []

        self._gen: Any = None
        self._data_iter: Iterator | None = None
        self._init_iter: int | None = None
        self._data_restarted = False

        self._should_terminate: bool | str = False
        self._should_terminate_single_epoch: bool | str = False
        self._should_interrupt = False
        self._control_pending = False
        self._taken_error: Exception | None = None

        self._status = IDLE
        self._error: BaseException | None = None
        self._state_lock = threading.Lock()
        self._drive_lock = threading.Lock()
        self._attention = False
        self._pause_requested = False
        self._sigint_count = 0
        self._sigint_pause = False
        self._boundary_calls: deque[tuple[Callable[[], Any], Future]] = deque()
        self._step_condition: _StepCondition | None = None
        self._thread: threading.Thread | None = None
        self._thread_error: BaseException | None = None
        self._thread_setup: Callable[[], AbstractContextManager] | None = None
        self._direct_call_thread: int | None = None
        self._given_data: Any = None
        # A stateful loader's state from load_state_dict, put back into it when the run continues.
        self._loaded_data_state: Any = None

        self._trace_hooks: tuple[Callable, ...] = ()
        self._status_hooks: tuple[Callable, ...] = ()
        self._last_timings: list[tuple[str, float]] = []

        self._clock_run = 0.0
        self._clock_epoch = 0.0
        self._paused_at: float | None = None

    # ------------------------------------------------------------------ introspection

    @property
    def status(self) -> str:
        """``"idle"``, ``"running"``, ``"paused"``, ``"done"`` or ``"failed"``."""
        return self._status

    @property
    def error(self) -> BaseException | None:
        """The exception that failed the last run, if it failed."""
        return self._error

    @property
    def state_dict_user_keys(self) -> list[str]:
        """State attributes that ``state_dict`` saves and ``load_state_dict`` requires."""
        return self._state_dict_user_keys

    # ignite's public run-control flags. Setting one directly (as ignite code may) is seen at the
    # next boundary, like calling terminate(), terminate_epoch() or interrupt().
    @property
    def should_terminate(self) -> bool | str:
        """False, True, or ``"skip_completed"`` after ``terminate(skip_completed=True)``."""
        return self._should_terminate

    @should_terminate.setter
    def should_terminate(self, value: bool | str) -> None:
        self._should_terminate = value
        self._refresh_control_pending()

    @property
    def should_terminate_single_epoch(self) -> bool | str:
        """False, True, or ``"skip_epoch_completed"`` after ``terminate_epoch(skip_epoch_completed=True)``."""
        return self._should_terminate_single_epoch

    @should_terminate_single_epoch.setter
    def should_terminate_single_epoch(self, value: bool | str) -> None:
        self._should_terminate_single_epoch = value
        self._refresh_control_pending()

    @property
    def should_interrupt(self) -> bool:
        """True between ``interrupt()`` and the boundary where the run pauses."""
        return self._should_interrupt

    @should_interrupt.setter
    def should_interrupt(self, value: bool) -> None:
        self._should_interrupt = value
        self._refresh_control_pending()

    @property
    def last_event_name(self) -> Any:
        """ignite's name for ``last_event``: the event fired last (None before any run)."""
        return self.last_event

    @last_event_name.setter
    def last_event_name(self, value: Any) -> None:
        self.last_event = value

    @property
    def _dataloader_iter(self) -> Iterator | None:
        # ignite's name for the open data iterator; its tests read it.
        return self._data_iter

    @property
    def _event_handlers(self) -> defaultdict:
        # ignite's handler table, as a read-only copy: event name -> [(handler, args, kwargs)].
        table: defaultdict = defaultdict(list)
        for key, entries in self._handlers.items():
            table[key] = [(entry[0], entry[3][1], entry[3][2]) for entry in entries]
        return table

    @property
    def _internal_run_generator(self) -> Iterator | None:
        # ignite's name for the suspended run; its tests read it.
        return self._gen

    # ------------------------------------------------------------------ events and handlers

    def register_events(self, *event_names: str | EventEnum, event_to_attr: dict | None = None) -> None:
        """Allow custom events to be attached to and fired. ``event_to_attr`` maps an event to the
        State attribute that counts it (used by filters); the mapping belongs to this engine only."""
        if event_to_attr is not None and not isinstance(event_to_attr, Mapping):
            raise ValueError(
                f"Expected event_to_attr to be dictionary. Got {type(event_to_attr)}: event_to_attr should "
                f"be a dict mapping events to State attribute names, got {event_to_attr!r}"
            )
        for index, event in enumerate(event_names):
            if not isinstance(event, (str, EventEnum)):
                raise TypeError(
                    f"Value at {index} of event_names should be a str or EventEnum, but given {event!r} "
                    f"of type {type(event).__name__}"
                )
            key = _event_key(event)
            known = self._allowed_events.get(key)
            if known is not None and known is not event and not (isinstance(known, str) and known == event):
                raise ValueError(
                    f"event_names[{index}] {event!r} has the same name as the already registered event "
                    f"{known!r}; give it another name"
                )
            self._allowed_events[key] = event
        for event, attr in (event_to_attr or {}).items():
            key = _event_key(event)
            if key not in self._allowed_events:
                raise ValueError(f"event_to_attr names {event!r}, which is not among the registered events")
            if not isinstance(attr, str) or not attr.isidentifier():
                raise ValueError(f"event_to_attr[{event!r}] should be a State attribute name, got {attr!r}")
            self._event_to_attr[key] = attr
            if not hasattr(self.state, attr):
                setattr(self.state, attr, 0)

    def has_registered_events(self, event: Any) -> bool:
        return _event_key(event) in self._allowed_events if isinstance(event, (str, CallableEventWithFilter)) else False

    def _known_event_key(self, event: Any, argument: str = "event_name") -> str:
        if not isinstance(event, (str, CallableEventWithFilter)):
            raise TypeError(
                f"{argument} should be an event (Events.X, a registered custom event, or an EventsList), "
                f"got {event!r} of type {type(event).__name__}"
            )
        key = _event_key(event)
        if key not in self._allowed_events:
            owner = type(self).__name__
            raise ValueError(
                f"{argument} {event!r} is not an event this {owner} knows; register custom events with "
                f"register_events() first (Event {event} is not a valid event for this {owner})"
            )
        return key

    def add_event_handler(self, event_name: Any, handler: Callable, *args: Any, **kwargs: Any) -> RemovableEventHandle:
        """Call ``handler`` each time ``event_name`` fires (and its filter passes).

        The handler may take the engine as its first argument or not; ``args`` and ``kwargs`` follow.
        EXCEPTION_RAISED handlers also receive the exception, after the engine. The signature is checked
        here, so a handler that cannot take these arguments is refused now, not in the middle of a run.
        """
        if isinstance(event_name, EventsList):
            for event in event_name:
                self.add_event_handler(event, handler, *args, **kwargs)
            return RemovableEventHandle(event_name, handler, self)
        key = self._known_event_key(event_name)
        if not callable(handler):
            raise TypeError(f"handler should be callable, got {handler!r} of type {type(handler).__name__}")

        event_args: tuple = (Exception(),) if key == Events.EXCEPTION_RAISED.name else ()
        with_engine = can_bind(handler, (self, *event_args, *args), kwargs)
        if with_engine is False:
            without_engine = can_bind(handler, (*event_args, *args), kwargs)
            if without_engine is False:
                given = ", ".join([*(["exception"] if event_args else []), *map(repr, args), *(f"{k}=" for k in kwargs)])
                raise ValueError(
                    f"handler {describe_callable(handler)} for {key} cannot be called with "
                    f"(engine{', ' + given if given else ''}) nor with ({given})"
                )
            pass_engine = False
        else:
            # True, or None when Python cannot read the signature: pass the engine, as ignite does.
            pass_engine = True

        if args or kwargs or event_args:
            mode = _CALL_GENERAL
        else:
            mode = _CALL_ENGINE if pass_engine else _CALL_BARE

        event_filter = getattr(event_name, "filter", None)
        every = event_filter.every if isinstance(event_filter, EveryFilter) else 0
        other_filter = None if every else event_filter
        if other_filter is not None:
            mode = _CALL_GENERAL
        # Entries are short tuples read on the hot path; ``every`` filters are checked inline.
        entry = (handler, mode, every, (pass_engine, args, kwargs, other_filter))
        self._handlers[key] = self._handlers.get(key, ()) + (entry,)
        return RemovableEventHandle(event_name, handler, self)

    def on(self, event_name: Any, *args: Any, **kwargs: Any) -> Callable[[Callable], Callable]:
        """Decorator form of ``add_event_handler``."""

        def decorator(handler: Callable) -> Callable:
            self.add_event_handler(event_name, handler, *args, **kwargs)
            return handler

        return decorator

    def has_event_handler(self, handler: Callable, event_name: Any | None = None) -> bool:
        if event_name is None:
            keys = list(self._handlers)
        else:
            keys = [_event_key(event_name)] if isinstance(event_name, (str, CallableEventWithFilter)) else []
        return any(entry[0] == handler for key in keys for entry in self._handlers.get(key, ()))

    def remove_event_handler(self, handler: Callable, event_name: Any) -> None:
        if not isinstance(event_name, (str, CallableEventWithFilter)) or _event_key(event_name) not in self._handlers:
            raise ValueError(
                f"Input event name '{event_name}' does not exist: no handler is attached to it "
                f"(events with handlers: {', '.join(self._handlers) or 'none'})"
            )
        key = _event_key(event_name)
        entries = self._handlers[key]
        kept = tuple(entry for entry in entries if entry[0] != handler)
        if len(kept) == len(entries):
            raise ValueError(
                f"Input handler '{handler}' is not found among registered event handlers: "
                f"{describe_callable(handler)} is not attached to {key}"
            )
        if kept:
            self._handlers[key] = kept
        else:
            del self._handlers[key]

    def fire_event(self, event_name: Any) -> None:
        """Fire a registered event now: from a handler or from inside the process function. Fired
        while the run is not being driven (say, a checkpoint saved while paused), it runs the
        handlers but leaves ``last_event`` at the boundary where the run stands."""
        key = self._known_event_key(event_name)
        event = self._allowed_events[key]
        self._note_fired(key)
        if self._status == RUNNING:
            self.last_event = event
        entries = self._handlers.get(key)
        if self._dispatch_hooked:
            self._fire_event(event)
        elif entries:
            if self._trace_hooks:
                self._report_trace(event, self._fire_traced(entries, key, ()))
            else:
                self._fire(key, entries, ())
        elif self._trace_hooks:
            self._report_trace(event, [])
        condition = self._step_condition
        if condition is not None and key not in BUILTIN_EVENT_TO_ATTR:
            condition.saw_custom(event)
            if condition.reached:
                self._attention = True

    def _fire_event(self, event_name: Any, *event_args: Any) -> None:
        """Run the handlers of ``event_name`` with ``event_args`` after the engine (ignite's dispatch
        hook). The engine calls it for every event it fires only when a subclass overrides it, so
        that a plain engine pays nothing for events without handlers."""
        key = _event_key(event_name)
        entries = self._handlers.get(key)
        if entries:
            self._fire(key, entries, event_args)

    def _fire_via_hook(self, key: str, entries: tuple, event_args: tuple) -> None:
        self._fire_event(self._allowed_events[key], *event_args)

    def _note_fired(self, key: str) -> None:
        if key not in self._event_to_attr:
            self._fire_counts[key] = self._fire_counts.get(key, 0) + 1

    def _count(self, key: str) -> int:
        attr = self._event_to_attr.get(key)
        if attr is not None:
            return getattr(self.state, attr)
        return self._fire_counts.get(key, 0)

    def _fire(self, key: str, entries: tuple, event_args: tuple) -> None:
        if self._trace_hooks:
            self._last_timings = self._fire_traced(entries, key, event_args)
            return
        count = -1
        for handler, mode, every, rest in entries:
            if every:
                if count < 0:
                    # Inlined _count(): this is the hot path of every filtered handler.
                    attr = self._event_to_attr.get(key)
                    count = getattr(self.state, attr) if attr is not None else self._fire_counts.get(key, 0)
                if count % every:
                    continue
            if mode == _CALL_ENGINE:
                handler(self)
            elif mode == _CALL_BARE:
                handler()
            else:
                pass_engine, args, kwargs, event_filter = rest
                if event_filter is not None:
                    if count < 0:
                        count = self._count(key)
                    if not event_filter(self, count):
                        continue
                if pass_engine:
                    handler(self, *event_args, *args, **kwargs)
                else:
                    handler(*event_args, *args, **kwargs)

    def _fire_traced(self, entries: tuple, key: str, event_args: tuple) -> list[tuple[str, float]]:
        timings: list[tuple[str, float]] = []
        count = self._count(key)
        clock = time.perf_counter
        for handler, _mode, every, (pass_engine, args, kwargs, event_filter) in entries:
            if every and count % every:
                continue
            if event_filter is not None and not event_filter(self, count):
                continue
            began = clock()
            if pass_engine:
                handler(self, *event_args, *args, **kwargs)
            else:
                handler(*event_args, *args, **kwargs)
            timings.append((_handler_name(handler), clock() - began))
        return timings

    def add_trace_hook(self, hook: Callable[[Any, State, list[tuple[str, float]]], None]) -> Callable[[], None]:
        """Call ``hook(event, state, timings)`` on the training side after every fired event, where
        timings lists ``(handler name, seconds)`` for the handlers that ran. Returns a function that
        removes the hook. Runs cost nothing extra while no hook is attached."""
        if not callable(hook):
            raise TypeError(f"hook should be callable, got {hook!r}")
        self._trace_hooks = self._trace_hooks + (hook,)
        self._attention = True

        def remove() -> None:
            self._trace_hooks = tuple(h for h in self._trace_hooks if h is not hook)

        return remove

    def add_status_hook(self, hook: Callable[[Engine, str], None]) -> Callable[[], None]:
        """Call ``hook(engine, status)`` whenever a stretch of driving ends: the run paused, finished or
        failed. It runs in the thread that drove the run, after the status changed. Returns a function
        that removes the hook. A progress bar uses it to show where a paused run stands."""
        if not callable(hook):
            raise TypeError(f"hook should be callable, got {hook!r}")
        self._status_hooks = self._status_hooks + (hook,)

        def remove() -> None:
            self._status_hooks = tuple(h for h in self._status_hooks if h is not hook)

        return remove

    def _report_trace(self, event: Any, timings: list[tuple[str, float]]) -> None:
        for hook in self._trace_hooks:
            hook(event, self.state, timings)

    # ------------------------------------------------------------------ run control flags

    def terminate(self, skip_completed: bool = False) -> None:
        """End the run after the current event: TERMINATE, then COMPLETED unless ``skip_completed``."""
        self._should_terminate = "skip_completed" if skip_completed else True
        self._control_pending = True

    def terminate_epoch(self, skip_epoch_completed: bool = False) -> None:
        """End the current epoch after the current event: TERMINATE_SINGLE_EPOCH, then EPOCH_COMPLETED
        unless ``skip_epoch_completed``; the run goes on with the next epoch."""
        if self.last_event is _STARTED and self._status == RUNNING:
            raise RuntimeError(
                "terminate_epoch() was called at Events.STARTED, before any epoch began; "
                "call it from EPOCH_STARTED or later"
            )
        self._should_terminate_single_epoch = "skip_epoch_completed" if skip_epoch_completed else True
        self._control_pending = True

    def interrupt(self) -> None:
        """Fire INTERRUPT after the current event and pause there; ``run()`` continues."""
        if not type(self).interrupt_resume_enabled:
            raise RuntimeError(
                "Engine 'interrupt/resume' feature is disabled. Please, set Engine.interrupt_resume_enabled=True "
                f"to enable it (it is {type(self).interrupt_resume_enabled!r} on {type(self).__name__})"
            )
        self._should_interrupt = True
        self._control_pending = True

    def _refresh_control_pending(self) -> None:
        self._control_pending = bool(
            self._should_terminate or self._should_terminate_single_epoch or self._should_interrupt
        )

    def _control(self) -> Iterator[Any]:
        if self._should_terminate:
            raise _Terminate()
        if self._should_terminate_single_epoch:
            raise _TerminateEpoch()
        if self._should_interrupt:
            self._should_interrupt = False
            self._refresh_control_pending()
            self._request_pause()
            yield from self._boundary(Events.INTERRUPT)

    # ------------------------------------------------------------------ the run generator

    def _boundary(self, event: Any, event_args: tuple = ()) -> Iterator[Any]:
        """Fire ``event`` and yield it. A hard interrupt inside its handlers yields the marker; the
        handlers run again when the generator is resumed."""
        key = event.name
        while True:
            try:
                self._note_fired(key)
                self.last_event = event
                if self._dispatch_hooked:
                    self._fire_event(event, *event_args)
                else:
                    entries = self._handlers.get(key)
                    if entries:
                        self._fire(key, entries, event_args)
                break
            except KeyboardInterrupt:
                yield _HARD_INTERRUPT
        yield event

    def _run_as_generator(self) -> Iterator[Any]:
        state = self.state
        self._should_terminate = self._should_terminate_single_epoch = self._should_interrupt = False
        self._control_pending = False
        self._taken_error = None
        state.times[Events.EPOCH_COMPLETED.name] = 0.0
        state.times[Events.COMPLETED.name] = 0.0
        self._clock_run = time.perf_counter()
        limit = ("max_iters", state.max_iters) if state.max_iters is not None else ("max_epochs", state.max_epochs)
        self.logger.info("Engine run starting with %s=%s.", *limit)
        try:
            try:
                yield from self._boundary(_STARTED)
                if self._control_pending:
                    yield from self._control()
                while not self._is_done(state) and not self._should_terminate:
                    state.epoch += 1
                    self._clock_epoch = time.perf_counter()
                    try:
                        yield from self._boundary(_EPOCH_STARTED)
                        if self._control_pending:
                            yield from self._control()
                        if self._data_iter is None:
                            self._setup_engine()
                        yield from self._epoch_as_generator()
                    except _TerminateEpoch:
                        yield from self._boundary(Events.TERMINATE_SINGLE_EPOCH)
                        self._setup_data_iter()
                    state.times[Events.EPOCH_COMPLETED.name] = time.perf_counter() - self._clock_epoch
                    if self._should_terminate_single_epoch != "skip_epoch_completed":
                        yield from self._boundary(Events.EPOCH_COMPLETED)
                        state.times[Events.EPOCH_COMPLETED.name] = time.perf_counter() - self._clock_epoch
                    # terminate_epoch() from EPOCH_COMPLETED has nothing left to end.
                    self._should_terminate_single_epoch = False
                    self._refresh_control_pending()
                    if self._control_pending:
                        yield from self._control()
            except _Terminate:
                yield from self._boundary(Events.TERMINATE)
            state.times[Events.COMPLETED.name] = time.perf_counter() - self._clock_run
            if self._should_terminate != "skip_completed":
                yield from self._boundary(Events.COMPLETED)
                state.times[Events.COMPLETED.name] = time.perf_counter() - self._clock_run
        except Exception as exc:
            self._data_iter = None
            if Events.EXCEPTION_RAISED.name not in self._handlers:
                raise
            # As in ignite, EXCEPTION_RAISED handlers take the exception: run() returns. The run
            # still ends failed, with the exception in ``error``, so a panel never hides it.
            self._taken_error = exc
            yield from self._boundary(Events.EXCEPTION_RAISED, (exc,))
        self._data_iter = None

    def _epoch_as_generator(self) -> Iterator[Any]:
        state = self.state
        # With ignite's dispatch hook overridden, every event goes through it, handlers or not.
        handlers = _EVERY_EVENT if self._dispatch_hooked else self._handlers
        fire = self._fire_via_hook if self._dispatch_hooked else self._fire
        process = self._process_function
        iter_counter = 0 if self._init_iter is None else self._init_iter
        self._init_iter = None
        has_data = state.dataloader is not None
        should_exit = False
        # ``phase`` is the next step of the iteration; after a hard interrupt the loop comes back
        # to it, so no batch is fetched twice and no counter moves twice.
        phase = 0
        while True:
            try:
                if phase == 0:
                    state.batch = None
                    if has_data and not self._data_restarted:
                        self.last_event = _GET_BATCH_STARTED
                        if _GBS in handlers:
                            fire(_GBS, handlers[_GBS], ())
                        phase = 1
                        yield _GET_BATCH_STARTED
                        if self._control_pending:
                            yield from self._control()
                    phase = 1
                if phase == 1:
                    try:
                        batch = next(self._data_iter)  # type: ignore[arg-type]
                    except StopIteration:
                        self._data_restarted = False
                        if state.epoch_length is None:
                            # An iterable without a length: its end defines the epoch.
                            state.epoch_length = iter_counter
                            if state.max_iters is not None:
                                state.max_epochs = math.ceil(state.max_iters / state.epoch_length)
                            break
                        if should_exit:
                            if not self._is_done(state):
                                warnings.warn(
                                    "Data iterator can not provide data anymore but required total number of "
                                    "iterations to run is not reached. Current iteration: "
                                    f"{state.iteration} vs Total iterations to run : {self._total_iterations()}"
                                    " (the data iterator yields no batch even after a restart)",
                                    UserWarning,
                                    stacklevel=2,
                                )
                            break
                        if has_data:
                            yield from self._boundary(Events.DATALOADER_STOP_ITERATION)
                            if self._control_pending:
                                yield from self._control()
                        self._setup_data_iter()
                        self._data_restarted = True
                        should_exit = True
                        phase = 0
                        continue
                    self._data_restarted = False
                    state.batch = batch
                    state.output = None
                    should_exit = False
                    phase = 2
                if phase == 2:
                    if has_data:
                        self.last_event = _GET_BATCH_COMPLETED
                        if _GBC in handlers:
                            fire(_GBC, handlers[_GBC], ())
                        phase = 3
                        yield _GET_BATCH_COMPLETED
                        if self._control_pending:
                            yield from self._control()
                    phase = 3
                if phase == 3:
                    iter_counter += 1
                    state.iteration += 1
                    phase = 4
                if phase == 4:
                    self.last_event = _ITERATION_STARTED
                    if _ITS in handlers:
                        fire(_ITS, handlers[_ITS], ())
                    phase = 5
                    yield _ITERATION_STARTED
                    if self._control_pending:
                        yield from self._control()
                if phase == 5:
                    state.output = process(self, state.batch)
                    phase = 6
                self.last_event = _ITERATION_COMPLETED
                if _ITC in handlers:
                    fire(_ITC, handlers[_ITC], ())
                phase = 0
                yield _ITERATION_COMPLETED
                if self._control_pending:
                    yield from self._control()
                if state.epoch_length is not None and iter_counter == state.epoch_length:
                    break
                if state.max_iters is not None and state.iteration == state.max_iters:
                    self._should_terminate = True
                    raise _Terminate()
            except KeyboardInterrupt:
                yield _HARD_INTERRUPT

    @staticmethod
    def _is_done(state: State) -> bool:
        if state.max_iters is not None and state.iteration >= state.max_iters:
            return True
        if state.max_epochs is None:
            return False
        if state.epoch_length is not None and state.iteration >= state.epoch_length * state.max_epochs:
            return True
        return state.epoch >= state.max_epochs

    def _total_iterations(self) -> int | None:
        state = self.state
        if state.max_iters is not None:
            return state.max_iters
        if state.epoch_length is not None and state.max_epochs is not None:
            return state.epoch_length * state.max_epochs
        return None

    # ------------------------------------------------------------------ data

    def _setup_data_iter(self) -> None:
        """Open a fresh iterator over the data (or over ``epoch_length`` Nones when there is none)."""
        if self.state.dataloader is None:
            if self.state.epoch_length is None:
                raise ValueError("epoch_length should be provided if data is None: give epoch_length, or data to run on")
            self._data_iter = _none_batches(self.state.epoch_length)
        else:
            loaded, self._loaded_data_state = self._loaded_data_state, None
            if loaded is not None:
                restore_data_state(self.state.dataloader, loaded)
            self._data_iter = iter(self.state.dataloader)

    def _setup_engine(self) -> None:
        """Open the data iterator at the start of a (possibly resumed) run and set where the epoch's
        iteration counter starts. Subclasses that can skip consumed batches override this."""
        self._setup_data_iter()
        if self._init_iter is None:
            iteration = self.state.iteration
            if self.state.epoch_length is not None:
                iteration %= self.state.epoch_length
            self._init_iter = iteration

    def set_data(self, data: Iterable) -> None:
        """Switch the data: the next batch comes from ``data``. The epoch length is unchanged."""
        if not isinstance(data, Iterable):
            raise TypeError(f"data should be an iterable, got {data!r} of type {type(data).__name__}")
        self.state.dataloader = data
        self._given_data = data
        self._data_iter = iter(data)

    @staticmethod
    def _data_length(data: Iterable) -> int | None:
        try:
            return len(data)  # type: ignore[arg-type]
        except TypeError:
            return None

    # ------------------------------------------------------------------ preparing a run

    def _prepare(
        self,
        data: Iterable | None,
        max_epochs: int | None,
        epoch_length: int | None,
        max_iters: int | None,
    ) -> None:
        """Apply run() arguments: continue a defined, unfinished state (arguments override it), or
        make a new state for a first run or a run after the previous one finished."""
        if data is not None:
            check_iterable(
                "data", data, "an iterable (a list, an iterator, a DataLoader) or None", "Argument data should be iterable"
            )
        for name, value in (("max_epochs", max_epochs), ("max_iters", max_iters)):
            check_optional_positive_int(
                name, value, f"Argument {name} is invalid. Please, set a correct {name} positive value"
            )
        check_optional_positive_int("epoch_length", epoch_length, "Argument epoch_length is invalid")
        if max_epochs is not None and max_iters is not None:
            raise ValueError(
                "Arguments max_iters and max_epochs are mutually exclusive. Please provide only max_epochs or "
                f"max_iters; got max_epochs={max_epochs} and max_iters={max_iters}"
            )
        state = self.state
        # As in ignite, a limit of the other kind than the state's is refused even on a finished run:
        # the state's limit is reset explicitly.
        if max_iters is not None and state.max_epochs is not None:
            raise ValueError(
                "To switch from max_epochs to max_iters mode during resume, you must first reset by setting "
                f"'engine.state.max_epochs = None' before calling run(); got max_iters={max_iters} for a run "
                f"with max_epochs={state.max_epochs}"
            )
        if max_epochs is not None and state.max_iters is not None:
            raise ValueError(
                "To switch from max_iters to max_epochs mode during resume, you must first reset by setting "
                f"'engine.state.max_iters = None' before calling run(); got max_epochs={max_epochs} for a run "
                f"with max_iters={state.max_iters}"
            )
        # A new limit applies before deciding whether the run is finished: a finished run given more
        # epochs continues to them (ignite 0.5).
        if state.max_epochs is not None and max_epochs is not None:
            self._check_limit_reached("max_epochs", max_epochs, "epoch", state.epoch)
            state.max_epochs = max_epochs
        if state.max_iters is not None and max_iters is not None:
            self._check_limit_reached("max_iters", max_iters, "iteration", state.iteration)
            state.max_iters = max_iters
        if self._gen is not None and state.max_epochs is None and state.max_iters is None:
            # ignite: `state.max_epochs = None` before run() restarts, a paused (interrupted) run too.
            self._discard_suspended_run()
        if not self._fresh_state_needed():
            if epoch_length is not None and state.epoch_length is not None and epoch_length != state.epoch_length:
                raise ValueError(
                    "Argument epoch_length should be same as in the state, but given "
                    f"{epoch_length} vs {state.epoch_length}: epoch_length={epoch_length} differs from the epoch "
                    "length of the run being continued"
                )
            if state.epoch_length is None:
                if epoch_length is None and data is not None:
                    epoch_length = self._data_length(data)
                if epoch_length is not None:
                    if epoch_length < 1:
                        raise ValueError(f"Input data has zero size. Please provide non-empty data: got {data!r} of length 0")
                    state.epoch_length = epoch_length
            if self._gen is not None:
                if data is not None and data is not self._given_data:
                    self.set_data(data)
                return
            if data is None:
                data = state.dataloader
            if data is None and state.epoch_length is None:
                raise ValueError("epoch_length should be provided if data is None: give epoch_length, or data to run on")
            if self._should_terminate:
                # Continuing after terminate() starts the next epoch from its first batch.
                self._init_iter = 0
            self._data_iter = None
            state.dataloader = data
            self._given_data = data
        else:
            if data is None:
                data = state.dataloader if epoch_length is None else None
            if epoch_length is None:
                if data is not None:
                    epoch_length = self._data_length(data)
                if epoch_length is None and data is None:
                    epoch_length = state.epoch_length
            if data is None and epoch_length is None:
                raise ValueError("epoch_length should be provided if data is None: give epoch_length, or data to run on")
            if epoch_length is not None and epoch_length < 1:
                raise ValueError(f"Input data has zero size. Please provide non-empty data: got {data!r} of length 0")
            if max_iters is None and max_epochs is None:
                max_epochs = 1
            state.iteration = 0
            state.epoch = 0
            state.max_epochs = max_epochs
            state.max_iters = max_iters
            state.epoch_length = epoch_length
            state.dataloader = data
            self._given_data = data
            self._data_iter = None
            self._init_iter = None
        self._data_restarted = False
        self._gen = self._run_as_generator()

    # ignite's helpers that validate and set a new limit on the state; its tests call them.
    def _check_and_set_max_epochs(self, max_epochs: int | None = None) -> None:
        if max_epochs is not None:
            check_optional_positive_int("max_epochs", max_epochs, "Argument max_epochs is invalid")
            self._check_limit_reached("max_epochs", max_epochs, "epoch", self.state.epoch)
            self.state.max_epochs = max_epochs

    def _check_and_set_max_iters(self, max_iters: int | None = None) -> None:
        if max_iters is not None:
            check_optional_positive_int("max_iters", max_iters, "Argument max_iters is invalid")
            self._check_limit_reached("max_iters", max_iters, "iteration", self.state.iteration)
            self.state.max_iters = max_iters

    @staticmethod
    def _check_limit_reached(name: str, value: int, progress_name: str, progress: int) -> None:
        if value < progress:
            raise ValueError(
                f"Argument {name} should be greater than or equal to the start {progress_name} defined in the "
                f"state: {value} vs {progress}. Please, set engine.state.{name} = None before calling "
                "engine.run() in order to restart the training from the beginning."
            )

    def _fresh_state_needed(self) -> bool:
        state = self.state
        if self._gen is not None:
            return False
        return (state.max_epochs is None and state.max_iters is None) or self._is_done(state)

    # ------------------------------------------------------------------ driving the generator

    def run(
        self,
        data: Iterable | None = None,
        max_epochs: int | None = None,
        epoch_length: int | None = None,
        max_iters: int | None = None,
    ) -> State:
        """Run (or continue) until the end, in this thread, and return the state.

        A first run, or a run after the previous one finished, makes a new state; a paused, stepped,
        interrupted or loaded run continues where it stands, with the given arguments overriding it.
        """
        self._refuse_if_background("run()")
        self._prepare(data, max_epochs, epoch_length, max_iters)
        return self._drive(None)

    def step(
        self,
        n: int | None = None,
        *,
        until: Any = None,
        events: int | None = None,
        data: Iterable | None = None,
        max_epochs: int | None = None,
        epoch_length: int | None = None,
        max_iters: int | None = None,
    ) -> State:
        """Advance the run in this thread and pause: by ``n`` iterations (default 1), ``until`` the
        next occurrence of an event (its filter included), or by ``events`` events of any kind.
        The run arguments are those of ``run()`` and matter only when no run is under way."""
        condition = self._step_condition_for("step()", n, until, events)
        if condition is None:
            condition = _AfterIterations(self, 1)
        self._refuse_if_background("step()")
        self._prepare(data, max_epochs, epoch_length, max_iters)
        return self._drive(condition)

    def _step_condition_for(self, caller: str, n: Any, until: Any, events: Any) -> _StepCondition | None:
        given = [name for name, value in (("n", n), ("until", until), ("events", events)) if value is not None]
        if len(given) > 1:
            raise ValueError(f"{caller} takes one of n=, until= or events=, got {', '.join(given)}")
        if n is not None:
            check_positive_int("n (a number of iterations)", n)
        if events is not None:
            check_positive_int("events (a number of events)", events)
        if until is not None:
            self._known_event_key(until, "until")
            return _AtEvent(self, until)
        if events is not None:
            return _AfterEvents(self, int(events))
        if n is not None:
            return _AfterIterations(self, int(n))
        return None

    def _refuse_if_background(self, what: str) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            raise RuntimeError(
                f"{what} was called while a background run is active (status {self._status!r}, thread "
                f"{thread.name}); call pause() and wait(), or stop() and wait(), first"
            )

    def _acquire_drive(self, condition: _StepCondition | None) -> None:
        if self._direct_call_thread == threading.get_ident():
            raise RuntimeError("the engine cannot be run from inside a function given to call_at_boundary()")
        while True:
            with self._state_lock:
                if self._status == RUNNING:
                    raise RuntimeError("the engine is already running (status 'running'); pause() or stop() it first")
                # A direct call_at_boundary() may hold the lock for a moment: wait for it to finish.
                if self._drive_lock.acquire(blocking=False):
                    self._status = RUNNING
                    self._error = None
                    self._thread_error = None
                    self._step_condition = condition
                    self._sigint_count = 0
                    self._sigint_pause = False
                    self._pause_requested = False
                    self._attention = bool(self._boundary_calls) or bool(self._trace_hooks)
                    break
            time.sleep(0.001)
        if self._paused_at is not None:
            idle = time.perf_counter() - self._paused_at
            self._clock_run += idle
            self._clock_epoch += idle
            self._paused_at = None

    def _release_drive(self, status: str) -> None:
        while True:
            with self._state_lock:
                if not self._boundary_calls:
                    self._status = status
                    self._step_condition = None
                    self._pause_requested = False
                    self._paused_at = time.perf_counter()
                    self._drive_lock.release()
                    return
            self._serve_boundary_calls()

    def _drive(self, condition: _StepCondition | None, *, acquired: bool = False) -> State:
        if not acquired:
            self._acquire_drive(condition)
        previous_sigint = self._install_sigint()
        outcome = PAUSED
        gen = self._gen
        try:
            with self._run_context():
                raise_interrupt = False
                finished = True
                for event in gen:
                    if self._attention:
                        verdict = self._serve_attention(event)
                        if verdict:
                            raise_interrupt = verdict == 2
                            finished = False
                            break
                    if condition is not None and condition.at_boundary(event):
                        finished = False
                        break
                if finished:
                    self._gen = None
                    outcome = DONE
                    if self._taken_error is not None:
                        self._error, outcome = self._taken_error, FAILED
                if raise_interrupt:
                    raise KeyboardInterrupt(
                        f"run paused by interrupt at epoch {self.state.epoch}, iteration "
                        f"{self.state.iteration} ({self.last_event!r}); call run() or step() to continue"
                    )
        except KeyboardInterrupt:
            if gen.gi_frame is None:
                # The interrupt escaped the generator: continue later from the state it left.
                self._gen = None
            raise
        except BaseException as exc:
            self._gen = None
            self._error = exc
            outcome = FAILED
            raise
        finally:
            self._restore_sigint(previous_sigint)
            self._release_drive(outcome)
            for hook in self._status_hooks:
                hook(self, outcome)
        return self.state

    def _run_context(self) -> AbstractContextManager:
        """Entered around every stretch of driving; subclasses set and restore global flags here."""
        return nullcontext()

    def _serve_attention(self, event: Any) -> int:
        """Handle what other threads, signals and trace hooks asked for at this boundary.
        Returns 0 to go on, 1 to pause, 2 to pause and raise KeyboardInterrupt."""
        self._attention = bool(self._trace_hooks)
        if event is _HARD_INTERRUPT:
            return 2
        if self._trace_hooks:
            timings, self._last_timings = self._last_timings, []
            self._report_trace(event, timings)
        if self._boundary_calls:
            self._serve_boundary_calls()
        if self._sigint_pause:
            self._sigint_pause = False
            self._sigint_count = 0
            return 2
        if self._pause_requested:
            self._pause_requested = False
            return 1
        return 0

    def _request_pause(self) -> None:
        self._pause_requested = True
        self._attention = True

    # ------------------------------------------------------------------ Ctrl-C

    def _install_sigint(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return None
        try:
            return signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:
            return None

    def _restore_sigint(self, previous: Any) -> None:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._sigint_count:
            raise KeyboardInterrupt
        self._sigint_count = 1
        self._sigint_pause = True
        self._attention = True

    # ------------------------------------------------------------------ other threads

    def call_at_boundary(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn()`` on the training side at the next boundary, or at once in this thread when no
        run is being driven. Thread-safe; the Future holds fn's result or exception."""
        if not callable(fn):
            raise TypeError(f"fn should be callable, got {fn!r}")
        future: Future = Future()
        while True:
            with self._state_lock:
                if self._status == RUNNING:
                    self._boundary_calls.append((fn, future))
                    self._attention = True
                    return future
                if self._drive_lock.acquire(blocking=False):
                    break
            time.sleep(0.001)
        self._direct_call_thread = threading.get_ident()
        try:
            self._run_boundary_call(fn, future)
        finally:
            self._direct_call_thread = None
            self._drive_lock.release()
        return future

    def _serve_boundary_calls(self) -> None:
        while True:
            with self._state_lock:
                if not self._boundary_calls:
                    return
                fn, future = self._boundary_calls.popleft()
            self._run_boundary_call(fn, future)

    @staticmethod
    def _run_boundary_call(fn: Callable[[], Any], future: Future) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = fn()
        except BaseException as exc:  # handed to whoever waits on the future
            future.set_exception(exc)
        else:
            future.set_result(result)

    def pause(self) -> None:
        """Ask the run to pause at the next boundary. Thread-safe; does nothing when not running."""
        with self._state_lock:
            if self._status == RUNNING:
                self._request_pause()

    def start(
        self,
        data: Iterable | None = None,
        max_epochs: int | None = None,
        epoch_length: int | None = None,
        max_iters: int | None = None,
        *,
        n: int | None = None,
        until: Any = None,
        events: int | None = None,
        thread_setup: Callable[[], AbstractContextManager] | None = None,
    ) -> None:
        """Run (or continue) in a background thread owned by the engine; returns at once.

        With ``n``, ``until`` or ``events`` (as in ``step()``) the thread pauses the run there instead
        of running it to the end. An earlier background run of this engine is stopped first.
        ``thread_setup``, when given, is a context manager factory entered inside the thread (the
        widgets use it to route printed output to the cell that started the run). The thread's
        exception is kept: ``wait()`` re-raises it.
        """
        condition = self._step_condition_for("start()", n, until, events)
        thread = self._thread
        if thread is not None and thread.is_alive():
            self.stop()
            thread.join()
        if thread_setup is not None:
            self._thread_setup = thread_setup
        self._prepare(data, max_epochs, epoch_length, max_iters)
        self._launch(condition)

    def resume(self, n: int | None = None, *, until: Any = None, events: int | None = None) -> None:
        """Continue a paused (or loaded, not yet finished) run in the background thread: to the end,
        or, with ``n``, ``until`` or ``events`` (as in ``step()``), to that point, where it pauses."""
        condition = self._step_condition_for("resume()", n, until, events)
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        if self._gen is None and self._fresh_state_needed():
            raise RuntimeError(
                f"there is no run to resume (status {self._status!r}); use start(data, ...) to begin one"
            )
        self._prepare(None, None, None, None)
        self._launch(condition)

    def _launch(self, condition: _StepCondition | None) -> None:
        self._pause_requested = False
        self._acquire_drive(condition)
        thread = threading.Thread(target=self._background_main, args=(condition,), name="nbengine-run", daemon=True)
        self._thread = thread
        try:
            thread.start()
        except BaseException:
            self._release_drive(PAUSED)
            raise

    def _background_main(self, condition: _StepCondition | None) -> None:
        setup = self._thread_setup
        try:
            with setup() if setup is not None else nullcontext():
                self._drive(condition, acquired=True)
        except BaseException as exc:  # kept for wait(); logged so it is seen even if nobody waits
            self._thread_error = exc
            self.logger.error("background run failed: %r", exc, exc_info=exc)

    def stop(self) -> None:
        """End the run cleanly at the next boundary, like ``terminate()``. A paused run is ended at
        once in this thread (TERMINATE and COMPLETED handlers run)."""
        with self._state_lock:
            running = self._status == RUNNING
        if not running and self._gen is None:
            return
        self.terminate()
        if not running:
            self._drive(None)

    def wait(self, timeout: float | None = None) -> State:
        """Wait for the background thread to end (finished, paused or failed) and return the state;
        if it failed, re-raise its exception, on every call until the engine is driven again (like
        ``Future.result()``, so that one caller cannot hide the failure from another). Raises
        TimeoutError if it is still running after ``timeout`` seconds."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"the background run is still running after {timeout} s")
        error = self._thread_error
        if error is not None:
            raise error
        return self.state

    # ------------------------------------------------------------------ state_dict

    def state_dict(self) -> OrderedDict:
        """``epoch_length``, ``iteration``, ``max_epochs`` or ``max_iters``, and the user keys."""
        keys: list[str] = ["epoch_length", "iteration"]
        keys.append("max_iters" if self.state.max_iters is not None else "max_epochs")
        keys.extend(self._state_dict_user_keys)
        state_dict = OrderedDict((key, getattr(self.state, key)) for key in keys)
        loader_state = data_state(self.state.dataloader)  # a StatefulDataLoader's position (data_state.py)
        if loader_state is not None:
            state_dict[DATA_STATE_KEY] = loader_state
        return state_dict

    # Keys a subclass adds to its state dict; load_state_dict warns about any key outside these.
    _extra_state_dict_keys: tuple[str, ...] = ()

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Set the state from ``state_dict``, given at an epoch (``epoch``) or an iteration
        (``iteration``). Allowed while idle, paused, done or failed; a paused run is discarded.
        Keys this engine does not know are named in a warning (a misspelt key is not silently lost)."""
        check_mapping("state_dict", state_dict, "Argument state_dict should be a dictionary")
        if self._status == RUNNING:
            raise RuntimeError(
                "load_state_dict() was called while the engine is running; pause() it first (and wait() "
                "for a background run)"
            )
        keys = list(state_dict)
        if "iteration" in state_dict and "epoch" in state_dict:
            raise ValueError(
                "State dictionary should contain only one of 'iteration' or 'epoch' keys. Found both: "
                f"iteration={state_dict['iteration']!r}, epoch={state_dict['epoch']!r}"
            )
        required = ["epoch_length"] + ([] if "epoch" in state_dict else ["iteration"]) + self._state_dict_user_keys
        for key in required:
            if key not in state_dict:
                kind = "user state attribute" if key in self._state_dict_user_keys else "state attribute"
                raise ValueError(f"Required {kind} '{key}' is absent in provided state_dict {keys}")
        if ("max_epochs" in state_dict) == ("max_iters" in state_dict):
            raise ValueError(
                f"state_dict should contain exactly one of '('max_epochs', 'max_iters')' keys; it has keys {keys}"
            )
        known = {"epoch", *self._state_dict_all_req_keys, "max_epochs", "max_iters", DATA_STATE_KEY, *self._state_dict_user_keys}
        unknown = [key for key in keys if key not in known and key not in self._extra_state_dict_keys]
        if unknown:
            warnings.warn(
                f"state_dict has keys that {type(self).__name__}.load_state_dict does not know and ignores: "
                f"{unknown}; it knows {sorted(known | set(self._extra_state_dict_keys))}",
                UserWarning,
                stacklevel=2,
            )
        epoch_length = state_dict["epoch_length"]
        check_optional_positive_int(
            "state_dict['epoch_length']",
            epoch_length,
            "epoch_length must be a positive integer to calculate missing 'iteration' or 'epoch' key",
        )
        for key in ("iteration", "epoch"):
            if key in state_dict:
                check_non_negative_int(f"state_dict[{key!r}]", state_dict[key])
        position = int(state_dict.get("iteration", state_dict.get("epoch")))
        if position and epoch_length is None:
            raise ValueError(
                "epoch_length must be a positive integer to calculate missing 'iteration' or 'epoch' key: "
                f"state_dict gives {'iteration' if 'iteration' in state_dict else 'epoch'}={position} with "
                "epoch_length=None"
            )
        if "iteration" in state_dict:
            iteration = position
            epoch = iteration // epoch_length if epoch_length else 0
        else:
            epoch = position
            iteration = epoch * epoch_length if epoch_length else 0
        max_epochs = state_dict.get("max_epochs")
        max_iters = state_dict.get("max_iters")
        for name, value, progress_name, progress in (
            ("max_epochs", max_epochs, "epoch", epoch),
            ("max_iters", max_iters, "iteration", iteration),
        ):
            check_optional_positive_int(
                f"state_dict[{name!r}]", value, f"Argument {name} is invalid. Please, set a correct {name} positive value"
            )
            if value is not None:
                self._check_limit_reached(name, value, progress_name, progress)

        self._discard_suspended_run()
        self._loaded_data_state = state_dict.get(DATA_STATE_KEY)
        for key in self._state_dict_user_keys:
            setattr(self.state, key, state_dict[key])
        self.state.epoch_length = epoch_length
        self.state.iteration = iteration
        self.state.epoch = epoch
        self.state.max_epochs = max_epochs if "max_epochs" in state_dict else None
        self.state.max_iters = max_iters if "max_iters" in state_dict else None
        self._status = IDLE

    def _discard_suspended_run(self) -> None:
        gen, self._gen = self._gen, None
        if gen is not None:
            gen.close()
        self._data_iter = None
        self._init_iter = None
        self._data_restarted = False
        self._should_terminate = self._should_terminate_single_epoch = self._should_interrupt = False
        self._control_pending = False
        self._paused_at = None
