"""Guarding every IPython cell: ``install_cell_hooks(engine)`` wraps each cell run in the engine's
``CellGuard`` (``nbengine.engine.cell_guard``) through IPython's ``pre_run_cell`` and
``post_run_cell`` events, so cells run while the engine trains in the background never share the
global random generators with the training and never see a half-done step.

This module owns only that registration. It does not import IPython: it finds the running shell
through ``sys.modules``, so importing it costs nothing outside a notebook.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from nbengine.engine.cell_guard import CellGuard

__all__ = ["install_cell_hooks"]


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

    def remove() -> None:
        events.unregister("pre_run_cell", enter_cell)
        events.unregister("post_run_cell", leave_cell)
        guard.detach()

    return remove
