"""``Timer``: a stopwatch driven by engine events (total time, or the average per step).

This module owns the stopwatch: when it starts, pauses, resumes and counts steps, and what of it goes
through ``state_dict`` (the time accumulated and the step count, so a resumed run keeps counting
from where the checkpoint was taken). Behaviour is pytorch-ignite 0.5.5's ``ignite.handlers.Timer``:
wall-clock time from ``time.perf_counter``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from time import perf_counter
from typing import Any

from nbengine.engine import Engine, Events
from nbengine.handlers._state_dicts import check_state_dict

__all__ = ["Timer"]


class Timer:
    """Measures the time between engine events.

    Args:
        average: :meth:`value` is the time per step (``step`` events) instead of the total.

    Attached with :meth:`attach`: ``start`` resets it, ``pause`` stops the clock, ``resume`` restarts it
    and ``step`` counts a step. Time spent while a run is paused (between two ``run()``/``step()`` calls)
    is counted like any other, as in ignite: attach ``pause``/``resume`` to the events around the work
    to measure.

    >>> from nbengine.engine import Engine, Events
    >>> trainer = Engine(lambda engine, batch: None)
    >>> per_batch = Timer(average=True).attach(
    ...     trainer, start=Events.EPOCH_STARTED, pause=Events.ITERATION_COMPLETED,
    ...     resume=Events.ITERATION_STARTED, step=Events.ITERATION_COMPLETED,
    ... )
    >>> state = trainer.run(range(4))
    >>> (per_batch.step_count, per_batch.running, per_batch.value() >= 0.0)
    (4.0, False, True)
    """

    def __init__(self, average: bool = False) -> None:
        if not isinstance(average, bool):
            raise TypeError(f"Argument average should be True or False, got {average!r}")
        self._average = average
        self.reset()

    def attach(
        self,
        engine: Engine,
        start: Any = Events.STARTED,
        pause: Any = Events.COMPLETED,
        resume: Any = None,
        step: Any = None,
    ) -> Timer:
        """Reset on ``start``, pause on ``pause``, and when given resume on ``resume`` and count a step on
        ``step``. Returns the timer."""
        engine.add_event_handler(start, self.reset)
        engine.add_event_handler(pause, self.pause)
        if resume is not None:
            engine.add_event_handler(resume, self.resume)
        if step is not None:
            engine.add_event_handler(step, self.step)
        return self

    def reset(self, *args: Any) -> Timer:
        """Zero the total and the step count and start the clock."""
        self._t0 = perf_counter()
        self.total = 0.0
        self.step_count = 0.0
        self.running = True
        return self

    def pause(self, *args: Any) -> None:
        """Stop the clock, adding the time since it started to the total."""
        if self.running:
            self.total += perf_counter() - self._t0
            self.running = False

    def resume(self, *args: Any) -> None:
        """Start the clock again after :meth:`pause`."""
        if not self.running:
            self.running = True
            self._t0 = perf_counter()

    def step(self, *args: Any) -> None:
        """Count one step (the divisor of :meth:`value` with ``average=True``)."""
        self.step_count += 1.0

    def value(self) -> float:
        """Seconds measured so far (per step with ``average=True``)."""
        total = self.total + (perf_counter() - self._t0 if self.running else 0.0)
        return total / max(self.step_count, 1.0) if self._average else total

    def state_dict(self) -> OrderedDict:
        """The time measured so far (``total``), ``step_count`` and whether the clock is ``running``."""
        measured = self.total + (perf_counter() - self._t0 if self.running else 0.0)
        return OrderedDict([("total", measured), ("step_count", self.step_count), ("running", self.running)])

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Continue from a :meth:`state_dict`; a running clock restarts now, in this process."""
        check_state_dict(state_dict, ("total", "step_count", "running"))
        self.total = float(state_dict["total"])
        self.step_count = float(state_dict["step_count"])
        self.running = bool(state_dict["running"])
        self._t0 = perf_counter()
