"""Where the panel's figures are drawn: in a helper process, so that drawing never holds the
kernel's interpreter lock while training runs beside it.

This module owns that process and the way to it. ``PlotRenderer`` starts ``python -m
nbengine.plotting`` (which imports only numpy and matplotlib), sends it the decimated arrays of a
figure and reads back the PNG bytes; the calling thread waits on a pipe, which releases the lock,
so training goes on at full speed while the helper draws on another core. Measured on the 2-core
machine (``benchmarks/bench_panel.py``): a loss drawing costs the kernel about a millisecond this
way, against 100-300 ms of interpreter time drawn in-process.

If the helper cannot be started, or dies, the figures are drawn in this process with the same
``nbengine.plotting`` code, and ``fallback_reason`` says why; nothing is lost but speed.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

from nbengine import plotting

__all__ = ["PlotRenderer"]


class PlotRenderer:
    """Draws ``nbengine.plotting`` figures, in a helper process unless ``in_process`` (or unless it
    could not start). Thread-safe: one drawing at a time."""

    def __init__(self, in_process: bool = False) -> None:
        self._lock = threading.Lock()
        self._figures: dict[tuple, Any] = {}
        self._process: subprocess.Popen | None = None
        #: Why figures are drawn in this process (None while the helper process draws them).
        self.fallback_reason: str | None = "asked for (in_process=True)" if in_process else None
        if not in_process:
            try:
                # Started now, so it has imported matplotlib by the time the first drawing is asked.
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "nbengine.plotting"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    close_fds=True,
                )
            except OSError as error:
                self.fallback_reason = f"the drawing process could not start: {error!r}"

    @property
    def in_process(self) -> bool:
        """True when figures are drawn in this process."""
        return self._process is None

    def render(self, kind: str, size: tuple[int, int, int], args: tuple, options: dict[str, Any]) -> bytes:
        """PNG bytes of the ``kind`` figure ("loss" or "timeline") of ``size`` (width, height, dpi
        in pixels) drawn from ``args`` and ``options`` (see ``nbengine.plotting``)."""
        with self._lock:
            process = self._process
            if process is not None:
                try:
                    plotting.write_frame(process.stdin, (kind, size, args, options))  # type: ignore[arg-type]
                    status, payload = plotting.read_frame(process.stdout)  # type: ignore[arg-type]
                except (EOFError, OSError) as error:
                    self._give_up_process(f"the drawing process ended ({error!r}, exit code {process.poll()})")
                else:
                    if status == "error":
                        raise RuntimeError(f"drawing the {kind} figure failed in the drawing process:\n{payload}")
                    return payload
            figure = self._figures.get((kind, size))
            if figure is None:
                kinds = {"loss": plotting.LossFigure, "timeline": plotting.TimelineFigure}
                figure = self._figures[(kind, size)] = kinds[kind](*size)
            return figure.render(*args, **options)

    def _give_up_process(self, reason: str) -> None:
        self.fallback_reason = reason
        self._stop_process()

    def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            process.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass  # already gone: nothing to tell it
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()  # type: ignore[union-attr]

    def close(self) -> None:
        """End the helper process (it also ends by itself when this process does)."""
        with self._lock:
            self._stop_process()
            self._figures.clear()
