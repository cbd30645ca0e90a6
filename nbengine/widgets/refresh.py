"""When the panel refreshes: the rule for redrawing plots (``PlotSchedule``), the thread that applies
it (``PlotThread``), and the thread that brings the cheap parts (State, badge, buttons, table) up
to date every few tenths of a second (``RefreshLoop``).

This module owns the plot refresh policy, apart from any widget:

- While training runs, the loss plot is redrawn every ``interval`` seconds (it changes with every
  iteration), unless the kernel-side time of the last drawing, divided by ``budget``, asks for a
  longer gap: the drawing competes with training for the interpreter lock. Only drawings made
  while running are charged to that budget; those made while paused, stepping or done are not.
- When the run starts moving again (a Resume, a Step epoch), the first drawing is due ``interval``
  seconds later, whatever was charged before.
- While the run stands still (paused, done, idle), anything new is drawn at once.

The drawing itself runs in ``PlotThread``, one thread per panel, so that the State view and the
status badge (cheap HTML, refreshed by the panel's own refresh thread) are never held up by a plot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

__all__ = ["PlotSchedule", "PlotThread", "RefreshLoop"]


class PlotSchedule:
    """Says when a plot whose content is identified by a signature is due for a redraw."""

    def __init__(self, interval: float, budget: float) -> None:
        self.interval = interval
        self.budget = budget
        self._drawn: Hashable = object()
        self._next_at = 0.0
        self._was_running = False

    def due_in(self, signature: Hashable, running: bool, now: float) -> float | None:
        """Seconds until a redraw of ``signature`` is due (0: now), or None when it is on screen."""
        if signature == self._drawn:
            self._note_running(running, now)
            return None
        self._note_running(running, now)
        if not running:
            return 0.0
        return max(0.0, self._next_at - now)

    def _note_running(self, running: bool, now: float) -> None:
        if running and not self._was_running:
            # The run moves again: what was charged before no longer delays the first drawing.
            self._next_at = now + self.interval
        self._was_running = running

    def drawn(self, signature: Hashable, running: bool, kernel_seconds: float, now: float) -> None:
        """Record a drawing of ``signature`` that cost ``kernel_seconds`` of the kernel's time."""
        self._drawn = signature
        if running:
            self._next_at = now + max(self.interval, kernel_seconds / self.budget)

    def forget(self) -> None:
        """Make the next check see a change (a view option changed)."""
        self._drawn = object()


class PlotThread:
    """Calls ``draw_due()`` whenever woken and at least every ``period`` seconds; ``draw_due``
    returns the seconds until it next wants to be called (None: no wish). Errors go to ``on_error``."""

    def __init__(self, draw_due: Callable[[], float | None], on_error: Callable[[BaseException], None], period: float) -> None:
        self._draw_due = draw_due
        self._on_error = on_error
        self._period = period
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nbengine-panel-plots", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        delay: float | None = 0.0
        while not self._closed.is_set():
            self._wake.wait(self._period if delay is None else min(self._period, delay))
            self._wake.clear()
            if self._closed.is_set():
                return
            try:
                delay = self._draw_due()
            except Exception as error:  # shown by the panel; the loop goes on
                self._on_error(error)
                delay = None

    def close(self, timeout: float = 10.0) -> None:
        self._closed.set()
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)


class RefreshLoop:
    """Calls ``refresh()`` on its own thread every ``interval`` seconds and whenever woken, until
    closed. Errors go to ``on_error`` and the loop goes on."""

    def __init__(self, refresh: Callable[[], None], on_error: Callable[[BaseException], None], interval: float) -> None:
        self._refresh = refresh
        self._on_error = on_error
        self._interval = interval
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nbengine-panel-refresh", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._closed.is_set():
                return
            try:
                self._refresh()
            except Exception as error:  # shown by the panel; the loop goes on
                self._on_error(error)

    def close(self, timeout: float = 5.0) -> None:
        self._closed.set()
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
