"""Driving a run: who may drive it, until when, in which thread, and what an interrupt does.

This module owns the engine's status, the drive lock (a ``threading.Condition``: one driver at a
time, and a ``call_at_boundary`` made while nobody drives runs at once under the same lock), the
queue of calls waiting for the next boundary, the step conditions, the background thread, and the
SIGINT policy — the only place in the package that knows about interrupts:

- the first Ctrl-C while a run is driven in the main thread asks for a pause at the next boundary,
  where ``run()``/``step()`` raise ``KeyboardInterrupt`` once;
- a second Ctrl-C before that boundary, or any ``KeyboardInterrupt`` raised inside the run (a handler,
  the process function, the data fetch, an engine run nested in a handler), ends the generator
  where it was; the engine keeps that position, so the next ``run()`` re-calls the interrupted
  handler (or redoes the fetch or the process call) and goes on. Nothing retries in a loop.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
import weakref
from typing import Any

from nbengine._checks import check_callable, check_positive_int
from nbengine.engine.events import CallableEventWithFilter, Events, event_key

__all__ = ["Driver", "IDLE", "RUNNING", "PAUSED", "DONE", "FAILED"]

IDLE = "idle"
RUNNING = "running"
PAUSED = "paused"
DONE = "done"
FAILED = "failed"

_ITERATION_COMPLETED = Events.ITERATION_COMPLETED


class StepCondition:
    """When a ``step(...)`` call stops. Built-in events are seen at boundaries through ``at_boundary``;
    custom events, which can fire inside the process function, through ``saw_custom``."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.reached = False

    def at_boundary(self, event: Any) -> bool:
        return self.reached or self._matches(event)

    def saw_custom(self, event: Any) -> None:
        if self._matches(event):
            self.reached = True

    def _matches(self, event: Any) -> bool:
        raise NotImplementedError


class AfterIterations(StepCondition):
    def __init__(self, engine: Any, iterations: int) -> None:
        super().__init__(engine)
        self._left = iterations

    def _matches(self, event: Any) -> bool:
        if event is _ITERATION_COMPLETED:
            self._left -= 1
        return self._left <= 0


class AfterEvents(StepCondition):
    def __init__(self, engine: Any, events: int) -> None:
        super().__init__(engine)
        self._left = events

    def _matches(self, event: Any) -> bool:
        self._left -= 1
        return self._left <= 0


class AtEvent(StepCondition):
    def __init__(self, engine: Any, target: CallableEventWithFilter | str) -> None:
        super().__init__(engine)
        self._key = event_key(target)
        self._filter = None if isinstance(target, str) else target.filter

    def _matches(self, event: Any) -> bool:
        if event_key(event) != self._key:
            return False
        return self._filter is None or bool(self._filter(self._engine, self._engine._count(self._key)))


def step_condition(engine: Any, caller: str, n: Any, until: Any, events: Any) -> StepCondition | None:
    """The condition for ``n=``, ``until=`` or ``events=`` (at most one), or None for none."""
    given = [name for name, value in (("n", n), ("until", until), ("events", events)) if value is not None]
    if len(given) > 1:
        raise ValueError(f"{caller} takes one of n=, until= or events=, got {', '.join(given)}")
    if until is not None:
        engine._known_event_key(until, "until")
        return AtEvent(engine, until)
    if events is not None:
        return AfterEvents(engine, check_positive_int("events (a number of events)", events))
    if n is not None:
        return AfterIterations(engine, check_positive_int("n (a number of iterations)", n))
    return None


class Driver:
    """Drains one engine's run generator: in the caller's thread or in a background thread."""

    @property
    def engine(self) -> Any:
        return self._engine()

    def __init__(self, engine: Any) -> None:
        self._engine = weakref.ref(engine)  # owned by the engine: no reference cycle
        self.status = IDLE
        self.error: BaseException | None = None
        self.thread_error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.thread_setup: Callable[[], AbstractContextManager] | None = None
        self.condition: StepCondition | None = None
        # ``attention`` is read at every boundary: True when anything below may need serving.
        self.attention = False
        self.pause_requested = False
        self._boundary_calls: deque[tuple[Callable[[], Any], Future]] = deque()
        self._lock = threading.Condition()
        self._driving = False
        self._direct_call_thread: int | None = None
        self._sigint_count = 0
        self._sigint_pause = False
        self.paused_at: float | None = None

    # ------------------------------------------------------------------ requests from anywhere

    @property
    def pending_requests(self) -> bool:
        with self._lock:
            return bool(self.pause_requested or self._boundary_calls or self.engine._should_terminate)

    def request_pause(self) -> None:
        self.pause_requested = True
        self.attention = True

    def pause(self) -> None:
        with self._lock:
            if self.status == RUNNING:
                self.request_pause()

    def call_at_boundary(self, fn: Callable[[], Any]) -> Future:
        check_callable("fn", fn)
        future: Future = Future()
        with self._lock:
            while self._driving and self.status != RUNNING:
                self._lock.wait()  # a direct call or a drive is starting or ending: wait for it
            if self.status == RUNNING:
                self._boundary_calls.append((fn, future))
                self.attention = True
                return future
            self._driving = True
        self._direct_call_thread = threading.get_ident()
        try:
            _run_call(fn, future)
        finally:
            self._direct_call_thread = None
            with self._lock:
                self._driving = False
                self._lock.notify_all()
        return future

    def serve_boundary_calls(self) -> None:
        while True:
            with self._lock:
                if not self._boundary_calls:
                    return
                fn, future = self._boundary_calls.popleft()
            _run_call(fn, future)

    # ------------------------------------------------------------------ the drive lock

    def acquire(self, condition: StepCondition | None) -> None:
        if self._direct_call_thread == threading.get_ident():
            raise RuntimeError("the engine cannot be run from inside a function given to call_at_boundary()")
        with self._lock:
            while self._driving and self.status != RUNNING:
                self._lock.wait()
            if self.status == RUNNING:
                raise RuntimeError("the engine is already running (status 'running'); pause() or stop() it first")
            self._driving = True
            self.status = RUNNING
            self.error = None
            self.thread_error = None
            self.condition = condition
            self._sigint_count = 0
            self._sigint_pause = False
            self.pause_requested = False
            self.attention = bool(self._boundary_calls) or bool(self.engine._trace_hooks)
        if self.paused_at is not None:
            self.engine._add_idle_time(time.perf_counter() - self.paused_at)
            self.paused_at = None

    def release(self, status: str) -> None:
        while True:
            with self._lock:
                if not self._boundary_calls:
                    self.status = status
                    self.condition = None
                    self.pause_requested = False
                    self.paused_at = time.perf_counter()
                    self._driving = False
                    self._lock.notify_all()
                    return
            self.serve_boundary_calls()

    # ------------------------------------------------------------------ driving

    def drive(self, condition: StepCondition | None, *, acquired: bool = False) -> Any:
        """Drain the generator until the run ends, pauses or meets ``condition``; return the state."""
        engine = self.engine
        if not acquired:
            self.acquire(condition)
        previous_sigint = self._install_sigint()
        outcome = PAUSED
        try:
            with engine._drive_context():
                gen = engine._loop.generator()
                verdict = 0
                for event in gen:
                    if self.attention:
                        verdict = self._serve_attention(event)
                        if verdict:
                            break
                    if condition is not None and condition.at_boundary(event):
                        verdict = 1
                        break
                if not verdict:
                    outcome = engine._loop.ended()
                elif verdict == 2:
                    raise KeyboardInterrupt(self._paused_message())
        except KeyboardInterrupt as interrupt:
            if engine._loop.interrupted():
                # It ended the generator inside a handler, a fetch or the process function (or an
                # engine nested there): say where this run stands, the cause chained.
                raise KeyboardInterrupt(self._paused_message()) from interrupt
            raise
        except BaseException as exc:
            engine._loop.failed()
            self.error = exc
            outcome = FAILED
            raise
        finally:
            self._restore_sigint(previous_sigint)
            self.release(outcome)
            engine._notify_status(outcome)
        return engine.state

    def _paused_message(self) -> str:
        engine = self.engine
        return (
            f"run paused by interrupt at epoch {engine.state.epoch}, iteration {engine.state.iteration} "
            f"({engine.last_event!r}); call run() or step() to continue"
        )

    def _serve_attention(self, event: Any) -> int:
        """Serve what other threads, signals and trace hooks asked for at this boundary.
        Returns 0 to go on, 1 to pause, 2 to pause and raise KeyboardInterrupt."""
        engine = self.engine
        self.attention = bool(engine._trace_hooks)
        if engine._trace_hooks:
            engine._report_pending_trace(event)
        if self._boundary_calls:
            self.serve_boundary_calls()
        if self._sigint_pause:
            self._sigint_pause = False
            self._sigint_count = 0
            return 2
        if self.pause_requested:
            self.pause_requested = False
            return 1
        return 0

    # ------------------------------------------------------------------ Ctrl-C

    def _install_sigint(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return None
        try:
            return signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:
            return None

    @staticmethod
    def _restore_sigint(previous: Any) -> None:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._sigint_count:
            raise KeyboardInterrupt("second interrupt: raised at once; run() continues from where it stopped")
        self._sigint_count = 1
        self._sigint_pause = True
        self.attention = True

    # ------------------------------------------------------------------ the background thread

    def launch(self, condition: StepCondition | None) -> None:
        self.pause_requested = False
        self.acquire(condition)
        thread = threading.Thread(target=self._background_main, args=(condition,), name="nbengine-run", daemon=True)
        self.thread = thread
        try:
            thread.start()
        except BaseException:
            self.release(PAUSED)
            raise

    def _background_main(self, condition: StepCondition | None) -> None:
        setup = self.thread_setup
        try:
            with setup() if setup is not None else nullcontext():
                self.drive(condition, acquired=True)
        except BaseException as exc:  # kept for wait(); logged so it is seen even if nobody waits
            self.thread_error = exc
            if not isinstance(exc, KeyboardInterrupt):
                self.engine.logger.error("background run failed: %r", exc, exc_info=exc)

    def background_alive(self) -> bool:
        thread = self.thread
        return thread is not None and thread.is_alive()

    def wait(self, timeout: float | None) -> None:
        thread = self.thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"the background run is still running after {timeout} s")
        error = self.thread_error
        if isinstance(error, KeyboardInterrupt):
            # An interrupt pauses; it is reported once, like a foreground run()'s.
            self.thread_error = None
        if error is not None:
            raise error

    def refuse_if_background(self, what: str) -> None:
        thread = self.thread
        if thread is not None and thread.is_alive():
            raise RuntimeError(
                f"{what} was called while a background run is active (status {self.status!r}, thread "
                f"{thread.name}); call pause() and wait(), or stop() and wait(), first"
            )


def _run_call(fn: Callable[[], Any], future: Future) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn()
    except BaseException as exc:  # handed to whoever waits on the future
        future.set_exception(exc)
    else:
        future.set_result(result)
