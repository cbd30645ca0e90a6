"""Guarding every IPython cell: ``install_cell_hooks(engine)`` wraps each cell run in the engine's
``CellGuard`` (``nbengine.engine.cell_guard``) through IPython's ``pre_run_cell`` and
``post_run_cell`` events, so cells run while the engine trains in the background never share the
global random generators with the training and never see a half-done step.

This module owns only that registration, and ``CellHooks``, which installs it while a background
run is active (``TrainingPanel`` does so for the runs it starts). It does not import IPython: it
finds the running shell through ``sys.modules``, so importing it costs nothing outside a notebook.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from nbengine.engine.cell_guard import CellGuard

__all__ = ["install_cell_hooks", "CellHooks"]


def _running_shell() -> Any:
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    return get_ipython() if callable(get_ipython) else None


def install_cell_hooks(engine: Any, *, patience: float = 1.5, shell: Any = None) -> Callable[[], None]:
    """Guard every cell of ``shell`` (default: the running IPython shell) with a ``CellGuard`` of
    ``engine``; returns a function that removes the hooks. ``patience`` is the guard's: how long a
    background run waits for a cell before going on beside it (and noting it)."""
    shell = shell if shell is not None else _running_shell()
    events = getattr(shell, "events", None)
    if events is None or not callable(getattr(events, "register", None)):
        raise RuntimeError(
            f"install_cell_hooks needs a running IPython shell (a notebook kernel), got shell={shell!r}; "
            "outside IPython use `with CellGuard(engine):` around the code that runs beside the training"
        )
    guard = CellGuard(engine, patience=patience)

    def enter_cell(*info: Any) -> None:
        guard.__enter__()

    def leave_cell(*result: Any) -> None:
        guard.__exit__(None, None, None)

    events.register("pre_run_cell", enter_cell)
    events.register("post_run_cell", leave_cell)

    removed: list[bool] = []

    def remove() -> None:
        if removed:
            return  # removing twice does nothing
        removed.append(True)
        events.unregister("pre_run_cell", enter_cell)
        events.unregister("post_run_cell", leave_cell)
        guard.detach()

    return remove


class CellHooks:
    """``install_cell_hooks(engine)`` on demand, at most once at a time: ``install()`` (from the
    kernel's main thread, before a background run starts) and ``remove()`` (any thread, once the
    run has ended; removing when none is installed does nothing). Outside IPython (``shell`` None
    and no running shell) both do nothing."""

    def __init__(self, engine: Any, shell: Any = None, *, patience: float = 1.5) -> None:
        self._engine = engine
        self._shell = shell if shell is not None else _running_shell()
        self._patience = patience
        self._remove: Callable[[], None] | None = None

    @property
    def installed(self) -> bool:
        return self._remove is not None

    def install(self) -> None:
        if self._remove is None and getattr(self._shell, "events", None) is not None:
            self._remove = install_cell_hooks(self._engine, patience=self._patience, shell=self._shell)

    def remove(self) -> None:
        remove, self._remove = self._remove, None
        if remove is not None:
            remove()
