"""The panel's loss plot as a widget: the image, its log-scale switch and the validation note, and
the drawing of the image when the refresh rule (``refresh.PlotSchedule``) says it is due.

This module owns what is drawn and at which size. The image is drawn at ``size`` pixels and shown
at that width at most (never stretched), so its text keeps its size; its legend sits under the
axes when the image is narrow. The position it shows ("epoch 3, iteration 120 (ITERATION_COMPLETED)")
is a caption above the image, put on screen with it: rasterizing that text, which changes with
every drawing, was a third of a drawing's cost. The drawing itself is ``nbengine.plotting``'s, done by the
renderer the panel gives (a helper process, so drawing never holds the kernel's interpreter lock).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets

from nbengine import plotting
from nbengine.widgets.refresh import PlotSchedule

__all__ = ["LossView", "DEFAULT_LOSS_PLOT_SIZE"]

#: (width, height, dpi) of the loss plot: narrow enough to be shown unscaled in a notebook cell
#: of an 800-px window with the file browser open, with 10-11 px text.
DEFAULT_LOSS_PLOT_SIZE = (480, 340, 96)


class LossView:
    """The loss plot of a ``LossSource``, redrawn by ``draw_due`` (any one thread at a time)."""

    def __init__(self, source: Any, render: Callable[..., bytes], schedule: PlotSchedule, note: str, size: tuple[int, int, int]) -> None:
        self.source = source
        self._render = render
        self.schedule = schedule
        #: (width, height, dpi) of the image.
        self.size = size
        self.image = widgets.Image(
            format="png", layout=widgets.Layout(width=f"{size[0]}px", max_width="100%", height="auto", min_width="0")
        )
        self.image.add_class("nbengine-loss-plot")
        self.caption = widgets.HTML(layout=widgets.Layout(min_width="0"))
        self.caption.add_class("nbengine-loss-title")
        self.log_scale = widgets.Checkbox(value=False, description="log scale", indent=False)
        self.note = widgets.HTML(f"<span class='nbengine-note' style='color:#757575;font-size:12px'>{html.escape(note)}</span>")
        #: Loss plots drawn so far.
        self.drawn = 0
        self.widget = widgets.VBox(
            [self.caption, self.image, widgets.HBox([self.log_scale, self.note], layout=widgets.Layout(flex_flow="row wrap"))],
            layout=widgets.Layout(flex=f"1 1 {min(size[0], 360)}px", max_width=f"{size[0]}px", min_width="0"),
        )

    def signature(self, status: str, position: str, marks: Sequence[int], view_version: int) -> tuple:
        """What the picture shows: it is redrawn when this changes (and the schedule allows)."""
        return (self.source.version, position, status, self.log_scale.value, view_version, tuple(marks))

    def draw_due(self, signature: tuple, running: bool, publish: Callable[[Callable[[], None]], bool]) -> float | None:
        """Draw if due; the seconds until it is next due (None: drawn, or nothing new). ``publish(show)``
        calls ``show()`` (which puts the picture on screen) unless the panel has closed, and says so."""
        due_in = self.schedule.due_in(signature, running, time.monotonic())
        if due_in != 0.0:
            return due_in
        # Only this thread's CPU time is charged: waiting for the drawing process is not the kernel's.
        began = time.thread_time()
        data = self.source.loss_data()
        curves = plotting.decimate_outputs(data.iterations, data.outputs)
        marks = [plotting.Mark(x, "checkpoints" if index == 0 else "_checkpoint", "#9467bd", ":") for index, x in enumerate(signature[5])]
        options = {"log_scale": signature[3], "title": "", "marks": marks}
        png = self._render("loss", self.size, (curves, data.metrics), options)
        caption = f"<span style='font-size:12px;color:#333'>{html.escape(signature[1])}</span>"

        def show() -> None:
            self.caption.value = caption
            self.image.value = png
            self.drawn += 1

        if not publish(show):
            return None
        self.schedule.drawn(signature, running, time.thread_time() - began, time.monotonic())
        return None
