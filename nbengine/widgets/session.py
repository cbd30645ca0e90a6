"""The panel's ties to the Jupyter kernel session: which cell is running, where printed output goes,
which earlier panel a re-run cell replaces, and the hook that runs after every cell.

This module owns three decisions:

- **Where output goes.** A background thread's ``print`` lands in whichever cell ran last unless the
  thread declares its parent message (ipykernel#1451). ``route_output(parent)`` is a context manager
  that does so with the shell's ``set_thread_parent`` (ipykernel >= 7.4) and undoes it on exit;
  without a kernel, or on an ipykernel that lacks it, it does nothing.
- **Which earlier run a re-run cell stops.** Re-running a cell usually builds a new trainer object,
  so the old one cannot be found through the new one. The live panels are kept in a dict stored as an
  attribute of the IPython shell (``shell.nbengine_panels``): it lives exactly as long as the kernel
  session, is per kernel, survives ``%reset`` (it is not in ``user_ns``) and needs no module-level
  state. Panels are keyed by the cell that built them: the front end's ``cellId`` (JupyterLab,
  Notebook 7 and VS Code send it with each execute request), else a hash of the cell's source (a
  front end without cell ids re-running the same source), else an explicit ``key=``.
- **After-cell refresh.** ``after_each_cell(callback)`` registers ``callback`` with IPython's
  ``post_run_cell`` event and returns the function that unregisters it.
- **Where "Interrupt kernel" (■) goes while no cell runs.** The kernel ignores SIGINT between
  cells (ipykernel sets SIG_IGN, and installs the default handler only while it handles a
  message), so ■ would not reach a run in a background thread. ``forward_interrupts(callback)``
  installs, in a kernel and from its main thread, a SIGINT handler that calls ``callback()`` (the
  panel pauses its run there; ``Engine.pause()`` is thread-safe) and otherwise does what the
  handler it replaced did. Installed from a cell or a click, it takes the place of the handler
  that ipykernel restores after each message (``kernel.saved_sigint_handler``), so it is the one
  active between cells; a cell that is running still gets its KeyboardInterrupt.

Outside IPython (a script, pytest) there is no shell: no registry, no routing, no hook.
"""

from __future__ import annotations

import hashlib
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["KernelSession", "route_output"]

#: Attribute of the IPython shell that holds ``{key: panel}`` for the panels alive in this kernel.
REGISTRY_ATTRIBUTE = "nbengine_panels"


def _current_shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


class KernelSession:
    """The IPython shell the panel lives in, or nothing when there is none."""

    def __init__(self, shell: Any = None) -> None:
        self.shell = shell if shell is not None else _current_shell()

    @property
    def in_kernel(self) -> bool:
        """True inside a Jupyter kernel (a shell that can route output per thread)."""
        return self.shell is not None and callable(getattr(self.shell, "set_thread_parent", None))

    def current_parent(self) -> dict | None:
        """The execute request being run now (its full message), or None when not in a cell (for
        instance in a widget callback, whose parent is a comm message)."""
        get_parent = getattr(self.shell, "get_parent", None)
        if not callable(get_parent):
            return None
        parent = get_parent()
        if not isinstance(parent, dict) or parent.get("header", {}).get("msg_type") != "execute_request":
            return None
        return parent

    @staticmethod
    def cell_key(parent: dict | None) -> str | None:
        """The key of the cell that sent ``parent``: its ``cellId``, else a hash of its source."""
        if parent is None:
            return None
        cell_id = (parent.get("metadata") or {}).get("cellId")
        if isinstance(cell_id, str) and cell_id:
            return f"cell:{cell_id}"
        code = (parent.get("content") or {}).get("code")
        if isinstance(code, str) and code.strip():
            return "source:" + hashlib.sha256(code.encode()).hexdigest()[:16]
        return None

    def registry(self) -> dict | None:
        """``{key: panel}`` for this kernel, created on first use; None without a shell."""
        if self.shell is None:
            return None
        panels = getattr(self.shell, REGISTRY_ATTRIBUTE, None)
        if not isinstance(panels, dict):
            panels = {}
            setattr(self.shell, REGISTRY_ATTRIBUTE, panels)
        return panels

    def register(self, key: str | None, panel: Any) -> Any:
        """Register ``panel`` as the one of the cell ``key``; the panel it replaces, or None."""
        registry = self.registry()
        if registry is None or key is None:
            return None
        earlier = registry.get(key)
        registry[key] = panel
        return earlier if earlier is not panel else None

    def unregister(self, key: str | None, panel: Any) -> None:
        """Forget ``panel`` as the one of the cell ``key`` (if it still is)."""
        registry = self.registry()
        if registry is not None and key is not None and registry.get(key) is panel:
            del registry[key]

    def after_each_cell(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` after every cell; returns the function that stops it."""
        events = getattr(self.shell, "events", None)
        if events is None:
            return lambda: None

        def post_run_cell(result: Any) -> None:
            callback()

        events.register("post_run_cell", post_run_cell)

        def unregister() -> None:
            try:
                events.unregister("post_run_cell", post_run_cell)
            except ValueError:
                # Already unregistered (closing twice): nothing left to undo.
                pass

        return unregister

    def forward_interrupts(self, callback: Callable[[], bool]) -> Callable[[], None]:
        """While no cell runs, call ``callback()`` on SIGINT (■); when it returns False, do what the
        earlier handler did. Only in a kernel and from its main thread (elsewhere it does nothing).
        Returns the function that removes it."""
        kernel = getattr(self.shell, "kernel", None)
        if not self.in_kernel or kernel is None or threading.current_thread() is not threading.main_thread():
            return lambda: None
        # Inside a cell or a click, ipykernel has saved the between-messages handler (SIG_IGN) in
        # saved_sigint_handler and restores it afterwards: ours goes there, so it is the one
        # between messages; while a cell runs, the cell keeps its KeyboardInterrupt.
        inside_message = hasattr(kernel, "saved_sigint_handler")
        earlier = kernel.saved_sigint_handler if inside_message else signal.getsignal(signal.SIGINT)
        removed = threading.Event()

        def on_interrupt(signum: int, frame: Any) -> None:
            if not removed.is_set() and callback():
                return
            if callable(earlier):
                earlier(signum, frame)
            elif earlier == signal.SIG_DFL:
                raise KeyboardInterrupt

        if inside_message:
            kernel.saved_sigint_handler = on_interrupt
        else:
            signal.signal(signal.SIGINT, on_interrupt)

        def remove() -> None:
            removed.set()
            if getattr(kernel, "saved_sigint_handler", None) is on_interrupt:
                kernel.saved_sigint_handler = earlier
            if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is on_interrupt:
                signal.signal(signal.SIGINT, earlier)

        return remove

    @contextmanager
    def route_output(self, parent: dict | None) -> Iterator[None]:
        """While inside, ``print``, logging to stderr and ``display`` from this thread go to the cell
        that sent ``parent``."""
        set_thread_parent = getattr(self.shell, "set_thread_parent", None)
        reset_thread_parent = getattr(self.shell, "reset_thread_parent", None)
        if parent is None or not callable(set_thread_parent) or not callable(reset_thread_parent):
            yield
            return
        tokens = set_thread_parent(parent)
        try:
            yield
        finally:
            reset_thread_parent(tokens)


def route_output(parent: dict | None) -> Any:
    """``KernelSession().route_output(parent)``: route this thread's output to ``parent``'s cell."""
    return KernelSession().route_output(parent)
