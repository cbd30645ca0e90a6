"""``CellGuard``: the user's code and an engine's background run never share the global random
generators, and the user's code never sees a half-done step.

This module owns the *park*: while user code runs (a notebook cell, or the body of ``with guard:``)
during a background run, the training waits at its next boundary (at most the rest of one step), the
global generators hold the user's states (Python, numpy, torch CPU, CUDA), and when the user code
ends the training's states go back in and the training goes on. So the user's draws come from the
user's stream and the training's from its own, and a weight read by the user is never mid-update.

User code that waits for the training must not hang, so the park ends early when

- the user code asks the engine for something: ``pause()``, ``stop()``/``terminate()``, a function
  given to ``call_at_boundary`` (a checkpoint button), or it waits in ``wait()`` (also through
  ``panel.wait()``);
- it has lasted ``patience`` seconds (a ``time.sleep`` loop polling ``trainer.state``, a long cell).

Then the training's states go back in and the training goes on beside the user code, which now draws
from the training's stream: the guard notes ``(epoch, iteration, "cell")`` in
``engine.state.rng_notes``, the first iteration that may have shared the generators with user code,
and ``History``/``EpochReplay`` report it. Nothing is done, and nothing is paid, per iteration: the
guard acts only when user code starts and ends while a background run is active.

The user's stream starts where the global generators stood when the background run started (at
``STARTED``); on a ``DeterministicEngine`` the training reseeds its own at every epoch, so the two
streams are unrelated. Outside IPython use the guard as a context manager:

>>> import time
>>> import torch
>>> from nbengine.engine import Events
>>> from nbengine.engine.deterministic import DeterministicEngine
>>> trainer = DeterministicEngine(lambda engine, batch: torch.rand(1).item(), seed=1)
>>> guard = CellGuard(trainer)
>>> trainer.start([0] * 50, max_epochs=4)
>>> with guard:
...     mine = torch.rand(3)  # drawn from the user's stream; the training waits meanwhile
>>> _ = trainer.wait()
>>> reference = DeterministicEngine(lambda engine, batch: torch.rand(1).item(), seed=1)
>>> _ = reference.run([0] * 50, max_epochs=4)
>>> trainer.state.output == reference.state.output
True
"""

from __future__ import annotations

import numbers
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any

from nbengine.engine.events import Events
from nbengine.utils.seed import get_rng_states, set_rng_states

__all__ = ["CellGuard"]

_RUNNING = "running"
_POLL_SECONDS = 0.005
_DEFAULT_PATIENCE = 1.5


class CellGuard:
    """Keeps user code and ``engine``'s background run apart (see the module docstring).

    ``patience`` is how long, in seconds, the training waits for user code before going on beside
    it. Enter and exit the guard around user code (``with guard:``); ``install_cell_hooks`` in
    ``nbengine.notebook_cells`` does so around every IPython cell.
    """

    def __init__(self, engine: Any, *, patience: float = _DEFAULT_PATIENCE) -> None:
        if not callable(getattr(engine, "call_at_boundary", None)):
            raise TypeError(f"engine should be an nbengine Engine, got {engine!r} of type {type(engine).__name__}")
        if not isinstance(patience, numbers.Real) or isinstance(patience, bool) or not patience > 0:
            raise ValueError(f"patience should be a positive number of seconds, got {patience!r}")
        self._engine = engine
        self._patience = float(patience)
        self._user_states: dict | None = None
        self._depth = 0
        self._parked = threading.Event()
        self._release = threading.Event()
        self._park_request: Future | None = None
        self._wait_code = getattr(getattr(type(engine), "wait", None), "__code__", None)
        self._user_thread: int | None = None
        engine.state.rng_notes = []
        self._handle = engine.add_event_handler(Events.STARTED, self._on_started)

    @property
    def engine(self) -> Any:
        return self._engine

    @property
    def patience(self) -> float:
        return self._patience

    def detach(self) -> None:
        """Stop guarding: the engine's STARTED handler is removed."""
        self._handle.remove()

    # ------------------------------------------------------------------ training side

    def _on_started(self, engine: Any) -> None:
        if engine.state.iteration == 0:
            engine.state.rng_notes = []
        if threading.current_thread() is not threading.main_thread():
            # A background run: the user's stream continues from here, apart from the training's.
            self._user_states = get_rng_states()

    def _park(self) -> None:
        """Runs on the training side at a boundary, while user code runs: swap the generators, wait
        for the user code to end (or to ask the engine for something, or for the patience), swap back."""
        if threading.get_ident() == self._user_thread:
            return  # the run paused just before: call_at_boundary ran this in the user's thread
        training = get_rng_states()
        if self._user_states is not None:
            set_rng_states(self._user_states)
        self._parked.set()
        deadline = time.monotonic() + self._patience
        released = self._release.wait(_POLL_SECONDS)
        while not released and not self._wanted_by_user() and time.monotonic() < deadline:
            released = self._release.wait(_POLL_SECONDS)
        self._user_states = get_rng_states()
        set_rng_states(training)
        if not released:
            self._note_shared()

    def _wanted_by_user(self) -> bool:
        """Whether the user code waits for the engine or asked it for something (then the park ends)."""
        engine = self._engine
        if engine.pending_requests:
            return True
        frame = sys._current_frames().get(self._user_thread) if self._user_thread is not None else None
        wait_code = self._wait_code
        while frame is not None and wait_code is not None:
            if frame.f_code is wait_code:
                return True
            frame = frame.f_back
        return False

    def _note_shared(self, iteration: int | None = None) -> None:
        state = self._engine.state
        if iteration is None:
            # Iterations are counted at ITERATION_STARTED: from any other boundary, the next one is affected.
            iteration = state.iteration if self._engine.last_event is Events.ITERATION_STARTED else state.iteration + 1
        # The epoch of that iteration: parked at STARTED or EPOCH_COMPLETED, the next one is in the next epoch.
        epoch = (iteration - 1) // state.epoch_length + 1 if state.epoch_length else state.epoch
        notes = getattr(state, "rng_notes", None)
        if notes is None:
            notes = state.rng_notes = []
        notes.append((epoch, iteration, "cell"))

    # ------------------------------------------------------------------ user side

    def _background_active(self) -> bool:
        return self._engine.status == _RUNNING and self._engine.in_background

    def __enter__(self) -> CellGuard:
        self._depth += 1
        if self._depth > 1 or not self._background_active():
            return self
        self._user_thread = threading.get_ident()
        self._parked.clear()
        self._release.clear()
        request = self._engine.call_at_boundary(self._park)
        if self._parked.wait(self._patience):
            self._park_request = request
        elif request.cancel():
            # The step outlasted the patience: the user code runs beside the training.
            self._note_shared()
        else:
            self._parked.wait()  # it started parking just now
            self._park_request = request
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._depth == 0:
            return  # IPython: the end of the cell that installed the hooks, whose start was not seen
        self._depth -= 1
        if self._depth:
            return
        request, self._park_request = self._park_request, None
        if request is not None:
            self._release.set()
            request.result()
        self._user_thread = None

    def __repr__(self) -> str:
        return f"CellGuard({self._engine!r}, patience={self._patience})"
