"""The run loop: one generator that fires ignite's events in order and yields at every boundary.

This module owns the order of events and what happens between them, and where a run stands (the
generator of the run in progress, and the position an interrupt or a state dict left). The
generator yields after every fired event (a *boundary*); whoever drains it decides when to stop
(engine/driver.py). It never catches ``KeyboardInterrupt``: an exception that escapes it ends it,
and ``Position`` says where the run stood, so a new generator continues from exactly there — after
an interrupt in a handler (that handler is called again, the ones before it are not), after one in
the process function or the data fetch (that step is redone), or from a state dict saved at any
boundary in another process (the batch in flight is fetched again).

Steps of an iteration, in order: GET_BATCH_STARTED, fetch, GET_BATCH_COMPLETED, count the iteration,
ITERATION_STARTED, process, ITERATION_COMPLETED. A position is a step and, for an event, how many of
its handlers have already been called.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator
import weakref
from typing import Any, NamedTuple

from nbengine.engine.driver import DONE, FAILED, RUNNING
from nbengine.engine.events import BUILTIN_EVENT_NAMES, Events, event_key

__all__ = ["Position", "RunLoop", "Terminate", "TerminateEpoch"]

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

# Steps of an iteration, in order; a position inside an iteration is one of these ranks.
TOP, GBS, FETCH, GBC, COUNT, ITS, PROCESS, ITC, END = range(9)
_ITERATION_RANK = {_GBS: GBS, _GBC: GBC, _ITS: ITS, _ITC: ITC}
# Events of the run's end: a position there skips the epochs. (A position at STARTED is taken
# before this is asked.)
_RUN_LEVEL = ("TERMINATE", "COMPLETED", "EXCEPTION_RAISED")


class Terminate(Exception):
    """Unwinds the run generator to TERMINATE after ``terminate()``."""


class TerminateEpoch(Exception):
    """Unwinds the epoch to TERMINATE_SINGLE_EPOCH after ``terminate_epoch()``."""


class Position(NamedTuple):
    """Where a run stands: inside ``event`` after ``done`` of its handlers were called, or, with
    ``done`` None, after the event and all its handlers. ``restart``: the position came from a state
    dict, so the run starts anew there: STARTED fires first (as in ignite) and the batch in flight,
    not in memory, is fetched again."""

    event: str
    done: int | None = None
    restart: bool = False


class _Entry:
    """The position a generator starts from, consumed as the loop passes it."""

    __slots__ = ("event", "done", "refetch")

    def __init__(self, position: Position | None) -> None:
        self.event = None if position is None else position.event
        self.done = None if position is None else position.done
        self.refetch = False if position is None else position.restart

    def take(self, event: str) -> int | None:
        """If the entry is inside or after ``event``: consume it and return the handler index to
        start from (-1: the event is already over). None: the entry is elsewhere."""
        if self.event != event:
            return None
        done, self.event = self.done, None
        return -1 if done is None else done


class RunLoop:
    """Builds the run generator of one engine. The loop keeps nothing between generators: the
    counters it needs to continue live on the engine (``state``, ``iter_in_epoch``)."""

    @property
    def engine(self) -> Any:
        return self._engine()

    def __init__(self, engine: Any) -> None:
        self._engine = weakref.ref(engine)  # owned by the engine: no reference cycle

    # ------------------------------------------------------------------ where the run stands

    def position(self) -> Position | None:
        """Where the run stands now, for a state dict: inside the event whose handler is running (that
        handler counted as done), at the boundary it paused at, or where it was interrupted or loaded."""
        engine = self.engine
        table = engine._table
        if table.firing is not None and engine._driver.status == RUNNING:
            return Position(table.firing, table.index + 1)
        if engine._gen is not None:
            event = self._position_event()
            return None if event is None else Position(event.name)
        return engine._resume_at

    def _position_event(self) -> Any:
        engine = self.engine
        event = engine.last_event
        if event is not None and event_key(event) not in BUILTIN_EVENT_NAMES:
            event = engine._loop_event
        if event is Events.INTERRUPT:
            event = engine._before_interrupt
        return event

    # ------------------------------------------------------------------ the generator and its ends

    def generator(self) -> Iterator[Any]:
        engine = self.engine
        if engine._gen is None:
            engine._gen = self.run(engine._resume_at)
            engine._resume_at = None
        return engine._gen

    def ended(self) -> str:
        engine = self.engine
        engine._gen = None
        engine._resume_at = None
        if engine._taken_error is not None:
            engine._driver.error = engine._taken_error
            return FAILED
        return DONE

    def interrupted(self) -> bool:
        """A KeyboardInterrupt left the driver. If it ended the generator, keep where it was and
        return True."""
        engine = self.engine
        gen = engine._gen
        if gen is None or gen.gi_frame is not None:
            return False  # paused at a boundary: the generator continues from there
        engine._gen = None
        inside = engine._table.interrupted_at()
        if inside is not None:
            engine._resume_at = Position(*inside)
            return True
        event = self._position_event()
        if event is None:
            return True
        engine._resume_at = Position(event.name)
        if event is Events.GET_BATCH_STARTED:
            engine._data_stream.interrupted_fetch()
        return True

    def failed(self) -> None:
        engine = self.engine
        engine._gen = None
        engine._resume_at = None
        engine._table.firing = None

    # ------------------------------------------------------------------ one event

    def event(self, event: Any, event_args: tuple = (), start: int = 0, control: bool = True) -> Iterator[Any]:
        """Fire ``event`` (from handler ``start`` on; -1: it already fired) and yield the boundary,
        then apply what terminate(), terminate_epoch() or interrupt() asked for."""
        engine = self.engine
        if start >= 0:
            engine._note_fired(event.name)
            engine.last_event = event
            engine._dispatch(event, event_args, start)
            yield event
        if control and engine._control_pending:
            yield from self.control()

    def control(self) -> Iterator[Any]:
        engine = self.engine
        if engine._should_terminate:
            raise Terminate()
        if engine._should_terminate_single_epoch:
            raise TerminateEpoch()
        if engine._should_interrupt:
            engine._should_interrupt = False
            engine._refresh_control_pending()
            engine._driver.request_pause()
            engine._before_interrupt = engine.last_event
            engine._note_fired(Events.INTERRUPT.name)
            engine.last_event = Events.INTERRUPT
            engine._dispatch(Events.INTERRUPT, (), 0)
            yield Events.INTERRUPT

    # ------------------------------------------------------------------ the run

    def run(self, position: Position | None) -> Iterator[Any]:
        """The run from ``position`` (None: from the start, firing STARTED) to its end."""
        engine = self.engine
        state = engine.state
        entry = _Entry(position)
        restart = position is None or position.restart
        if restart or position.event == "STARTED":
            state.times[Events.EPOCH_COMPLETED.name] = 0.0
            state.times[Events.COMPLETED.name] = 0.0
            engine._clock_run = time.perf_counter()
            limit = ("max_iters", state.max_iters) if state.max_iters is not None else ("max_epochs", state.max_epochs)
            engine.logger.info("Engine run starting with %s=%s.", *limit)
        try:
            try:
                start = entry.take("STARTED")
                if restart or start is not None:
                    yield from self.event(_STARTED, start=0 if restart or start is None else start)
                if entry.refetch:
                    self._restore_position(entry)
                ending = entry.event in _RUN_LEVEL
                while not ending and (entry.event is not None or (not engine._is_done(state) and not engine._should_terminate)):
                    yield from self.epoch(entry)
            except Terminate:
                yield from self.event(Events.TERMINATE, control=False)
                entry.event = None
            start = entry.take("TERMINATE")
            if start is not None:
                yield from self.event(Events.TERMINATE, start=start, control=False)
            state.times[Events.COMPLETED.name] = time.perf_counter() - engine._clock_run
            start = entry.take("COMPLETED")
            if engine._should_terminate != "skip_completed" and entry.event != "EXCEPTION_RAISED":
                yield from self.event(Events.COMPLETED, start=0 if start is None else start, control=False)
                state.times[Events.COMPLETED.name] = time.perf_counter() - engine._clock_run
            start = entry.take("EXCEPTION_RAISED")
            if start is not None:
                yield from self.event(Events.EXCEPTION_RAISED, (engine._taken_error,), start=start, control=False)
        except Exception as exc:
            engine._data_iter = None
            if not engine._handles_exceptions():
                raise
            # As in ignite, EXCEPTION_RAISED handlers take the exception: run() returns. The run
            # still ends failed, with the exception in ``error``, so a panel never hides it.
            engine._taken_error = exc
            yield from self.event(Events.EXCEPTION_RAISED, (exc,), control=False)
        engine._data_iter = None

    def epoch(self, entry: _Entry) -> Iterator[Any]:
        """One epoch, or the rest of the one ``entry`` is in."""
        engine = self.engine
        state = engine.state
        try:
            start = entry.take("EPOCH_STARTED")
            if entry.event is None or start is not None:
                if start is None:
                    state.epoch += 1
                    engine._clock_epoch = time.perf_counter()
                    # A state dict given at an iteration inside an epoch (ignite's form) continues it.
                    engine.iter_in_epoch, engine._init_iter = engine._init_iter or 0, None
                yield from self.event(_EPOCH_STARTED, start=0 if start is None else start)
                if engine._data_iter is None:
                    engine._data_stream.open(state.iteration, resuming=True)
            if entry.event not in ("TERMINATE_SINGLE_EPOCH", "EPOCH_COMPLETED"):
                yield from self.iterations(entry)
        except TerminateEpoch:
            yield from self.event(Events.TERMINATE_SINGLE_EPOCH, control=False)
            engine._data_stream.open(state.iteration)
        start = entry.take("TERMINATE_SINGLE_EPOCH")
        if start is not None:
            yield from self.event(Events.TERMINATE_SINGLE_EPOCH, start=start, control=False)
            engine._data_stream.open(state.iteration)
        state.times[Events.EPOCH_COMPLETED.name] = time.perf_counter() - engine._clock_epoch
        start = entry.take("EPOCH_COMPLETED")
        if engine._should_terminate_single_epoch != "skip_epoch_completed" or start is not None:
            yield from self.event(Events.EPOCH_COMPLETED, start=0 if start is None else start, control=False)
            state.times[Events.EPOCH_COMPLETED.name] = time.perf_counter() - engine._clock_epoch
        # terminate_epoch() from EPOCH_COMPLETED has nothing left to end.
        engine._should_terminate_single_epoch = False
        engine._refresh_control_pending()
        if engine._control_pending:
            yield from self.control()

    def _restore_position(self, entry: _Entry) -> None:
        """A run loaded from a state dict, STARTED fired again: fetch the batch in flight again where
        the position needs it, then let the data stream put back what it keeps (random states)."""
        engine = self.engine
        event, done = entry.event, entry.done
        handlers_left = done is not None and done < len(engine._table.entries.get(event, ()))
        if event in (_GBC, _ITS) or (event == _ITC and handlers_left):
            engine._data_stream.refetch(engine.state.iteration - (0 if event == _GBC else 1))
        engine._data_stream.resumed()
        entry.refetch = False

    def _enter_iteration(self, entry: _Entry) -> tuple[int, int]:
        """Where the first iteration of ``iterations`` starts: (step rank, first handler)."""
        engine = self.engine
        rank, start = TOP, 0
        if entry.event in _ITERATION_RANK:
            event = entry.event
            start = entry.take(event)
            # Inside the event: from its next handler; after it: from the step that follows.
            rank = _ITERATION_RANK[event] + (1 if start < 0 else 0)
            start = max(start, 0)
        if engine._data_iter is None:
            engine._data_stream.open(engine.state.iteration, resuming=True)
        # A state dict in ignite's form, given in the middle of an epoch, continues with its random states.
        engine._data_stream.resumed(mid_epoch=engine.iter_in_epoch > 0)
        return rank, start

    def iterations(self, entry: _Entry) -> Iterator[Any]:
        """The iterations of the epoch, from ``entry`` on; written straight through, each step
        guarded by ``rank`` only so that the first iteration can start in its middle."""
        engine = self.engine
        state = engine.state
        table = engine._table
        handlers = table.every_event if engine._dispatch_hooked else table.entries
        fire = engine._fire_via_hook if engine._dispatch_hooked else table.fire
        process = engine._process_function
        has_data = state.dataloader is not None
        hooks = engine._trace_hooks
        if hooks and not engine._dispatch_hooked:
            fire = engine._fire_traced
        rank, start = TOP, 0
        if entry.event == "DATALOADER_STOP_ITERATION":
            start = entry.take(entry.event)
            if start >= 0:
                yield from self.event(Events.DATALOADER_STOP_ITERATION, start=start)
            engine._data_stream.open(state.iteration)
            engine._data_restarted = True
            rank, start = FETCH, 0
        else:
            rank, start = self._enter_iteration(entry)
        while True:
            if engine._trace_hooks is not hooks and not engine._dispatch_hooked:
                # A trace hook came or went (the panel's timeline): time the handlers from now on.
                hooks = engine._trace_hooks
                fire = engine._fire_traced if hooks else table.fire
            if rank <= GBS:
                state.batch = None
                if has_data and not engine._data_restarted:
                    engine.last_event = _GET_BATCH_STARTED
                    if _GBS in handlers:
                        fire(_GBS, handlers[_GBS], (), start)
                    yield _GET_BATCH_STARTED
                    if engine._control_pending:
                        yield from self.control()
            if rank <= FETCH:
                try:
                    batch = next(engine._data_iter)
                except StopIteration:
                    if (yield from self._data_ended(entry)):
                        return
                    rank = FETCH
                    continue
                engine._data_restarted = False
                state.batch = batch
                state.output = None
            if rank <= GBC and has_data:
                engine.last_event = _GET_BATCH_COMPLETED
                if _GBC in handlers:
                    fire(_GBC, handlers[_GBC], (), start if rank == GBC else 0)
                yield _GET_BATCH_COMPLETED
                if engine._control_pending:
                    yield from self.control()
            if rank <= COUNT:
                engine.iter_in_epoch += 1
                state.iteration += 1
            if rank <= ITS:
                engine.last_event = _ITERATION_STARTED
                if _ITS in handlers:
                    fire(_ITS, handlers[_ITS], (), start if rank == ITS else 0)
                yield _ITERATION_STARTED
                if engine._control_pending:
                    yield from self.control()
            if rank <= PROCESS:
                state.output = process(engine, state.batch)
            if rank <= ITC:
                engine.last_event = _ITERATION_COMPLETED
                if _ITC in handlers:
                    fire(_ITC, handlers[_ITC], (), start if rank == ITC else 0)
                yield _ITERATION_COMPLETED
                if engine._control_pending:
                    yield from self.control()
            rank = start = TOP
            if state.epoch_length is not None and engine.iter_in_epoch >= state.epoch_length:
                return
            if state.max_iters is not None and state.iteration >= state.max_iters:
                engine._should_terminate = True
                raise Terminate()

    def _data_ended(self, entry: _Entry) -> Iterator[Any]:
        """The data iterator is exhausted: end the epoch (returns True) or restart the data."""
        engine = self.engine
        state = engine.state
        restarted, engine._data_restarted = engine._data_restarted, False
        if state.epoch_length is None:
            # An iterable without a length: its end defines the epoch.
            state.epoch_length = engine.iter_in_epoch
            if state.max_iters is not None:
                state.max_epochs = math.ceil(state.max_iters / state.epoch_length)
            return True
        if restarted:
            if not engine._is_done(state):
                warnings.warn(
                    "Data iterator can not provide data anymore but required total number of iterations to run "
                    f"is not reached. Current iteration: {state.iteration} vs Total iterations to run : "
                    f"{engine._total_iterations()} (the data iterator yields no batch even after a restart)",
                    UserWarning,
                    stacklevel=2,
                )
            return True
        if state.dataloader is not None:
            yield from self.event(Events.DATALOADER_STOP_ITERATION)
        engine._data_stream.open(state.iteration)
        engine._data_restarted = True
        return False

