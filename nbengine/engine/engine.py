"""The Engine: pytorch-ignite's ``Engine`` API over a run that can be paused, stepped and resumed.

This module owns the public face and the engine's own state; the work is done by parts that each own
one thing: the handler table (handlers.py), the one run generator (loop.py), driving it and the
interrupt policy (driver.py), where batches come from (data.py), run() arguments (run_args.py) and
state dicts (state_dict.py). Every way of running is a way of draining the one generator:

- ``run()`` drains it in the caller's thread;
- ``step(...)`` drains it until a stop condition holds (n iterations, the next event, the next
  occurrence of a possibly filtered event);
- ``start()`` / ``resume()`` drain it in one background thread owned by the engine;
- ``pause()`` (thread-safe) asks the driver to stop at the next boundary; ``stop()`` ends the run
  like ``terminate()``.

A boundary is never inside the process function, so nobody observes a half-updated model. Work that
must happen on the training side between two events (a checkpoint save requested by a button) goes
through ``call_at_boundary``. Ctrl-C and ``KeyboardInterrupt`` pause the run (driver.py).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from nbengine._checks import check_optional_positive_int
from nbengine.engine._signature import can_bind, describe_callable
from nbengine.engine.data import DataStream
from nbengine.engine.driver import DONE, FAILED, IDLE, PAUSED, RUNNING, AfterIterations, Driver, step_condition
from nbengine.engine.events import (
    BUILTIN_EVENT_NAMES,
    BUILTIN_EVENT_TO_ATTR,
    CallableEventWithFilter,
    EventEnum,
    Events,
    EventsList,
    RemovableEventHandle,
    State,
    event_key,
)
from nbengine.engine.handlers import HandlerTable
from nbengine.engine.loop import Position, RunLoop
from nbengine.engine.run_args import check_limit_reached, prepare_run
from nbengine.engine import state_dict as state_dicts

__all__ = ["Engine", "IDLE", "RUNNING", "PAUSED", "DONE", "FAILED"]


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

    A ``KeyboardInterrupt`` inside a handler pauses the run there; the next ``run()`` calls that
    handler again and none of the ones of the same event that had finished:

    >>> calls = []
    >>> engine = Engine(lambda engine, batch: None)
    >>> @engine.on(Events.EPOCH_COMPLETED)
    ... def first(engine):
    ...     calls.append(("first", engine.state.epoch))
    >>> @engine.on(Events.EPOCH_COMPLETED)
    ... def second(engine):
    ...     if not calls.count(("second", None)):
    ...         calls.append(("second", None))
    ...         raise KeyboardInterrupt
    ...     calls.append(("second", engine.state.epoch))
    >>> try:
    ...     engine.run([1, 2], max_epochs=1)
    ... except KeyboardInterrupt:
    ...     print(engine.status)
    paused
    >>> _ = engine.run()
    >>> calls
    [('first', 1), ('second', None), ('second', 1)]
    """

    # ignite's switch between its generator run and its older loop; both are the one generator here,
    # so it only decides whether interrupt() is allowed, as in ignite.
    interrupt_resume_enabled = True
    _state_dict_all_req_keys: tuple[str, ...] = ("epoch_length", "iteration")
    _state_dict_one_of_opt_keys: tuple[tuple[str, ...], ...] = (("max_epochs", "max_iters"),)
    # Keys a subclass adds to its state dict; load_state_dict warns about any key outside these.
    _extra_state_dict_keys: tuple[str, ...] = ()

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

        self._table = HandlerTable(self)
        # A subclass that overrides _fire_event (ignite's dispatch hook) sees every fired event.
        self._dispatch_hooked = type(self)._fire_event is not Engine._fire_event
        self._allowed_events: dict[str, Any] = {event.name: event for event in Events}
        self._event_to_attr: dict[str, str] = dict(BUILTIN_EVENT_TO_ATTR)
        self._fire_counts: dict[str, int] = {}
        self._state_dict_user_keys: list[str] = []

        self._loop = RunLoop(self)
        self._driver = Driver(self)
        self._data_stream = DataStream(self)
        self._drive_contexts: tuple[Callable[[], AbstractContextManager], ...] = ()
        self._gen: Iterator | None = None
        self._resume_at: Position | None = None
        self._data_iter: Iterator | None = None
        self._init_iter: int | None = None
        self.iter_in_epoch = 0
        self._data_restarted = False
        self._given_data: Any = None
        self._loop_event: Any = None  # the loop's last event while a custom one is last_event
        self._before_interrupt: Any = None

        self._should_terminate: bool | str = False
        self._should_terminate_single_epoch: bool | str = False
        self._should_interrupt = False
        self._control_pending = False
        self._taken_error: Exception | None = None

        self._trace_hooks: tuple[Callable, ...] = ()
        self._status_hooks: tuple[Callable, ...] = ()
        self._last_timings: list[tuple[str, float]] = []
        self._clock_run = 0.0
        self._clock_epoch = 0.0

    # ------------------------------------------------------------------ introspection

    @property
    def status(self) -> str:
        """``"idle"``, ``"running"``, ``"paused"``, ``"done"`` or ``"failed"``."""
        return self._driver.status

    @property
    def _status(self) -> str:
        return self._driver.status

    @property
    def error(self) -> BaseException | None:
        """The exception that failed the last run, if it failed."""
        return self._driver.error

    @property
    def pending_requests(self) -> bool:
        """True while a pause, a stop (or terminate) or a ``call_at_boundary`` waits for the next boundary."""
        return self._driver.pending_requests

    @property
    def in_background(self) -> bool:
        """True while the background thread of ``start()``/``resume()`` is alive."""
        return self._driver.background_alive()

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
        return self._table.ignite_view()

    @property
    def _handlers(self) -> dict[str, tuple]:
        return self._table.entries

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
            key = event_key(event)
            known = self._allowed_events.get(key)
            if known is not None and known is not event and not (isinstance(known, str) and known == event):
                raise ValueError(
                    f"event_names[{index}] {event!r} has the same name as the already registered event "
                    f"{known!r}; give it another name"
                )
            self._allowed_events[key] = event
        for event, attr in (event_to_attr or {}).items():
            key = event_key(event)
            if key not in self._allowed_events:
                raise ValueError(f"event_to_attr names {event!r}, which is not among the registered events")
            if not isinstance(attr, str) or not attr.isidentifier():
                raise ValueError(f"event_to_attr[{event!r}] should be a State attribute name, got {attr!r}")
            self._event_to_attr[key] = attr
            if not hasattr(self.state, attr):
                setattr(self.state, attr, 0)

    def has_registered_events(self, event: Any) -> bool:
        return event_key(event) in self._allowed_events if isinstance(event, (str, CallableEventWithFilter)) else False

    def _known_event_key(self, event: Any, argument: str = "event_name") -> str:
        if not isinstance(event, (str, CallableEventWithFilter)):
            raise TypeError(
                f"{argument} should be an event (Events.X, a registered custom event, or an EventsList), "
                f"got {event!r} of type {type(event).__name__}"
            )
        key = event_key(event)
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
        event_args: tuple = (Exception(),) if key == Events.EXCEPTION_RAISED.name else ()
        self._table.add(key, getattr(event_name, "filter", None), handler, args, kwargs, event_args)
        return RemovableEventHandle(event_name, handler, self)

    def on(self, event_name: Any, *args: Any, **kwargs: Any) -> Callable[[Callable], Callable]:
        """Decorator form of ``add_event_handler``."""

        def decorator(handler: Callable) -> Callable:
            self.add_event_handler(event_name, handler, *args, **kwargs)
            return handler

        return decorator

    def has_event_handler(self, handler: Callable, event_name: Any | None = None) -> bool:
        if event_name is None:
            return self._table.has(handler)
        if not isinstance(event_name, (str, CallableEventWithFilter)):
            return False
        return self._table.has(handler, event_key(event_name))

    def remove_event_handler(self, handler: Callable, event_name: Any) -> None:
        key = event_key(event_name) if isinstance(event_name, (str, CallableEventWithFilter)) else None
        self._table.remove(handler, key, event_name)

    def fire_event(self, event_name: Any) -> None:
        """Fire a registered event now: from a handler or from inside the process function. Fired
        while the run is not being driven (say, a checkpoint saved while paused), it runs the
        handlers but leaves ``last_event`` at the boundary where the run stands."""
        key = self._known_event_key(event_name)
        event = self._allowed_events[key]
        self._note_fired(key)
        if self._driver.status == RUNNING:
            if self.last_event is not None and event_key(self.last_event) in BUILTIN_EVENT_NAMES:
                self._loop_event = self.last_event
            self.last_event = event
        entries = self._table.entries.get(key)
        if self._dispatch_hooked:
            self._fire_event(event)
        elif entries:
            timings = self._table.fire_nested(key, entries, (), bool(self._trace_hooks))
            if self._trace_hooks:
                self._report_trace(event, timings)
        elif self._trace_hooks:
            self._report_trace(event, [])
        condition = self._driver.condition
        if condition is not None and key not in BUILTIN_EVENT_TO_ATTR:
            condition.saw_custom(event)
            if condition.reached:
                self._driver.attention = True

    def _fire_event(self, event_name: Any, *event_args: Any) -> None:
        """Run the handlers of ``event_name`` with ``event_args`` after the engine (ignite's dispatch
        hook). The engine calls it for every event it fires only when a subclass overrides it, so
        that a plain engine pays nothing for events without handlers."""
        key = event_key(event_name)
        entries = self._table.entries.get(key)
        if entries:
            self._table.fire(key, entries, event_args)

    def _fire_via_hook(self, key: str, entries: tuple, event_args: tuple, start: int = 0) -> None:
        self._fire_event(self._allowed_events[key], *event_args)

    def _fire_traced(self, key: str, entries: tuple, event_args: tuple, start: int = 0) -> None:
        self._last_timings = self._table.fire_traced(key, entries, event_args, start)

    def _dispatch(self, event: Any, event_args: tuple, start: int) -> None:
        """Run the handlers of a loop event, from handler ``start`` on."""
        if self._dispatch_hooked:
            self._fire_event(event, *event_args)
            return
        key = event.name
        entries = self._table.entries.get(key)
        if entries:
            if self._trace_hooks:
                self._fire_traced(key, entries, event_args, start)
            else:
                self._table.fire(key, entries, event_args, start)

    def _handles_exceptions(self) -> bool:
        return Events.EXCEPTION_RAISED.name in self._table.entries

    def _note_fired(self, key: str) -> None:
        if key not in self._event_to_attr:
            self._fire_counts[key] = self._fire_counts.get(key, 0) + 1

    def _count(self, key: str) -> int:
        attr = self._event_to_attr.get(key)
        if attr is not None:
            return getattr(self.state, attr)
        return self._fire_counts.get(key, 0)

    def add_trace_hook(self, hook: Callable[[Any, State, list[tuple[str, float]]], None]) -> Callable[[], None]:
        """Call ``hook(event, state, timings)`` on the training side after every fired event, where
        timings lists ``(handler name, seconds)`` for the handlers that ran. Returns a function that
        removes the hook. Runs cost nothing extra while no hook is attached."""
        if not callable(hook):
            raise TypeError(f"hook should be callable, got {hook!r}")
        self._trace_hooks = self._trace_hooks + (hook,)
        self._driver.attention = True

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

    def _report_pending_trace(self, event: Any) -> None:
        timings, self._last_timings = self._last_timings, []
        self._report_trace(event, timings)

    def _notify_status(self, outcome: str) -> None:
        for hook in self._status_hooks:
            hook(self, outcome)

    # ------------------------------------------------------------------ run control flags

    def terminate(self, skip_completed: bool = False) -> None:
        """End the run after the current event: TERMINATE, then COMPLETED unless ``skip_completed``."""
        self._should_terminate = "skip_completed" if skip_completed else True
        self._control_pending = True

    def terminate_epoch(self, skip_epoch_completed: bool = False) -> None:
        """End the current epoch after the current event: TERMINATE_SINGLE_EPOCH, then EPOCH_COMPLETED
        unless ``skip_epoch_completed``; the run goes on with the next epoch."""
        if self.last_event is Events.STARTED and self._driver.status == RUNNING:
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

    # ------------------------------------------------------------------ where the run stands

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

    def _suspended(self) -> bool:
        """Whether a run stands somewhere it can continue from (paused, interrupted or loaded)."""
        return self._gen is not None or self._resume_at is not None

    def _fresh_state_needed(self) -> bool:
        if self._suspended():
            return False
        state = self.state
        return (state.max_epochs is None and state.max_iters is None) or self._is_done(state)

    def _drive_context(self) -> AbstractContextManager:
        """Entered around every stretch of driving (a DeterministicEngine's settings and streams)."""
        contexts = self._drive_contexts
        if not contexts:
            return nullcontext()
        from contextlib import ExitStack

        stack = ExitStack()
        for factory in contexts:
            stack.enter_context(factory())
        return stack

    def _add_idle_time(self, seconds: float) -> None:
        self._clock_run += seconds
        self._clock_epoch += seconds

    # ------------------------------------------------------------------ data

    def _setup_engine(self) -> None:
        # ignite's: open the data where the run stands and set where the epoch's counter starts.
        self._data_stream.open(self.state.iteration, resuming=True)
        if self._init_iter is None and self.state.epoch_length:
            self._init_iter = self.state.iteration % self.state.epoch_length

    def set_data(self, data: Iterable) -> None:
        """Switch the data: the next batch comes from ``data``. The epoch length is unchanged."""
        if not isinstance(data, Iterable):
            raise TypeError(f"data should be an iterable, got {data!r} of type {type(data).__name__}")
        self._use_data(data)
        if self._gen is not None:
            # A run paused in the middle of its loop fetches next from an open iterator.
            self._data_stream.open(self.state.iteration, resuming=True)

    def _use_data(self, data: Any) -> None:
        self.state.dataloader = None if data is None else self._data_stream.prepare(data)
        self._given_data = data
        self._data_iter = None
        self._data_restarted = False

    # ------------------------------------------------------------------ running

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
        self._driver.refuse_if_background("run()")
        prepare_run(self, data, max_epochs, epoch_length, max_iters)
        return self._driver.drive(None)

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
        condition = step_condition(self, "step()", n, until, events) or AfterIterations(self, 1)
        self._driver.refuse_if_background("step()")
        prepare_run(self, data, max_epochs, epoch_length, max_iters)
        return self._driver.drive(condition)

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
        condition = step_condition(self, "start()", n, until, events)
        driver = self._driver
        if driver.background_alive():
            self.stop()
            driver.thread.join()
        if thread_setup is not None:
            driver.thread_setup = thread_setup
        prepare_run(self, data, max_epochs, epoch_length, max_iters)
        driver.launch(condition)

    def resume(self, n: int | None = None, *, until: Any = None, events: int | None = None) -> None:
        """Continue a paused (or loaded, not yet finished) run in the background thread: to the end,
        or, with ``n``, ``until`` or ``events`` (as in ``step()``), to that point, where it pauses."""
        condition = step_condition(self, "resume()", n, until, events)
        driver = self._driver
        if driver.background_alive():
            return
        if not self._suspended() and self._fresh_state_needed():
            raise RuntimeError(
                f"there is no run to resume (status {driver.status!r}); use start(data, ...) to begin one"
            )
        prepare_run(self, None, None, None, None)
        driver.launch(condition)

    def pause(self) -> None:
        """Ask the run to pause at the next boundary. Thread-safe; does nothing when not running."""
        self._driver.pause()

    def stop(self) -> None:
        """End the run cleanly at the next boundary, like ``terminate()``. A paused run is ended at
        once in this thread (TERMINATE and COMPLETED handlers run)."""
        running = self._driver.status == RUNNING
        if not running and not self._suspended():
            return
        self.terminate()
        if not running:
            self._driver.drive(None)

    def wait(self, timeout: float | None = None) -> State:
        """Wait for the background thread to end (finished, paused or failed) and return the state;
        if it failed, re-raise its exception, on every call until the engine is driven again (like
        ``Future.result()``, so that one caller cannot hide the failure from another); an interrupt
        (which pauses) is re-raised once. Raises TimeoutError if it is still running after
        ``timeout`` seconds."""
        self._driver.wait(timeout)
        return self.state

    def call_at_boundary(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn()`` on the training side at the next boundary, or at once in this thread when no
        run is being driven. Thread-safe; the Future holds fn's result or exception."""
        return self._driver.call_at_boundary(fn)

    # ------------------------------------------------------------------ state_dict

    def state_dict(self) -> OrderedDict:
        """``epoch_length``, ``iteration``, ``max_epochs`` or ``max_iters``, the user keys, and where
        the run stands (``boundary``) when that is not the start of an epoch (state_dict.py)."""
        return state_dicts.build(self, self._loop.position(), self.iter_in_epoch)

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Set the state from ``state_dict``, given at an epoch (``epoch``) or an iteration
        (``iteration``), and where within it the run stood if it says (``boundary``). Allowed while
        idle, paused, done or failed; a paused run is discarded. Keys this engine does not know are
        named in a warning (a misspelt key is not silently lost)."""
        if self._driver.status == RUNNING:
            raise RuntimeError(
                "load_state_dict() was called while the engine is running; pause() it first (and wait() "
                "for a background run)"
            )
        loaded = state_dicts.parse(self, state_dict)
        self._discard_suspended_run()
        self._data_stream.loaded_state = loaded.data_state
        state = self.state
        for key, value in loaded.user_values.items():
            setattr(state, key, value)
        state.epoch_length = loaded.epoch_length
        state.iteration = loaded.iteration
        state.epoch = loaded.epoch
        state.max_epochs = loaded.max_epochs
        state.max_iters = loaded.max_iters
        self._resume_at = loaded.position
        if loaded.position is None:
            self.iter_in_epoch = 0
            self._init_iter = loaded.iteration % loaded.epoch_length if loaded.epoch_length else None
        else:
            self.iter_in_epoch = loaded.iter_in_epoch
            state.output = loaded.output
        self._clock_run = self._clock_epoch = time.perf_counter()
        self._driver.status = IDLE

    _check_limit_reached = staticmethod(check_limit_reached)

    # ignite's helpers that validate and set a new limit on the state; its tests call them.
    def _check_and_set_max_epochs(self, max_epochs: int | None = None) -> None:
        if max_epochs is not None:
            check_optional_positive_int("max_epochs", max_epochs, "Argument max_epochs is invalid")
            check_limit_reached("max_epochs", max_epochs, "epoch", self.state.epoch)
            self.state.max_epochs = max_epochs

    def _check_and_set_max_iters(self, max_iters: int | None = None) -> None:
        if max_iters is not None:
            check_optional_positive_int("max_iters", max_iters, "Argument max_iters is invalid")
            check_limit_reached("max_iters", max_iters, "iteration", self.state.iteration)
            self.state.max_iters = max_iters

    def _discard_suspended_run(self) -> None:
        gen, self._gen = self._gen, None
        if gen is not None:
            gen.close()
        self._resume_at = None
        self._table.firing = None
        self._data_iter = None
        self._init_iter = None
        self._data_restarted = False
        self._should_terminate = self._should_terminate_single_epoch = self._should_interrupt = False
        self._control_pending = False
        self._driver.paused_at = None
