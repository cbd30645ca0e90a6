"""The panel's event timeline: a filter by event type, a table of the recent events and their plot.

This module owns how an ``EventTimeline`` (``nbengine.handlers.timeline``) is shown: the event
types offered by the filter (in run order, custom events after the built-in ones), the table of
the last events that pass the filter (number, event, epoch, iteration, each handler with its
duration) and the ``TimelinePlot`` image. It reads the timeline only through ``snapshot()``, so
it may run on any thread; the panel decides when.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

import ipywidgets as widgets

import numpy as np

from nbengine.handlers.timeline import EventTimeline, TimelineEntry

__all__ = ["TimelineView", "timeline_table_html"]

#: Built-in events in the order a run fires them; the filter and the plot list them this way.
RUN_ORDER = (
    "STARTED",
    "EPOCH_STARTED",
    "GET_BATCH_STARTED",
    "GET_BATCH_COMPLETED",
    "ITERATION_STARTED",
    "ITERATION_COMPLETED",
    "DATALOADER_STOP_ITERATION",
    "EXCEPTION_RAISED",
    "TERMINATE_SINGLE_EPOCH",
    "EPOCH_COMPLETED",
    "TERMINATE",
    "INTERRUPT",
    "COMPLETED",
)

ALL_EVENTS = ""


def _ordered(names: set[str], first_seen: list[str]) -> list[str]:
    builtin = [name for name in RUN_ORDER if name in names]
    custom = [name for name in first_seen if name in names and name not in RUN_ORDER]
    return builtin + custom


def timeline_table_html(entries: Sequence[TimelineEntry], total: int, capacity: int) -> str:
    """The table of ``entries`` (given oldest first, shown newest first, at the top where the eye
    is); ``total`` events recorded in all, ``capacity`` kept. Handler names wrap, and each one's
    full name is its tooltip."""
    head = (
        "<tr style='color:#555'><th>#</th><th>event</th><th>epoch</th><th>iter</th>"
        "<th>handlers (ms)</th><th>t (s)</th></tr>"
    )
    rows = []
    for entry in reversed(entries):
        handlers = "<br>".join(
            f"<span title='{html.escape(name, quote=True)}'>{seconds * 1e3:.3f} {_breakable(_short(name))}</span>"
            for name, seconds in entry.handlers
        )
        rows.append(
            f"<tr class='nbengine-timeline-row'><td>{entry.seq}</td><td><code>{_breakable_event(entry.event.lower())}</code></td>"
            f"<td>{entry.epoch}</td><td>{entry.iteration}</td>"
            f"<td style='overflow-wrap:anywhere;line-height:1.2;min-width:6em'>{handlers or '—'}</td>"
            f"<td>{entry.time:.3f}</td></tr>"
        )
    caption = (
        f"<div class='nbengine-timeline-count' style='font-size:12px;color:#555'>{total} events recorded; "
        f"the last {min(total, capacity)} are kept</div>"
    )
    if not rows:
        rows.append("<tr><td colspan='6' style='color:#999'>no events yet</td></tr>")
    return (
        caption
        + "<table class='nbengine-timeline' style='border-collapse:collapse;font-size:12px;width:100%;table-layout:auto'>"
        + head
        + "".join(rows)
        + "</table>"
    )


def _breakable_event(name: str) -> str:
    """An event name escaped, with a line-break opportunity after each underscore (narrow cells)."""
    return "_<wbr>".join(html.escape(part) for part in name.split("_"))


def _breakable(name: str) -> str:
    """``name`` escaped, with a line-break opportunity after each dot: long names wrap at their parts."""
    return "<wbr>".join(html.escape(part) for part in name.replace(".", ".\0").split("\0"))


def _short(qualname: str) -> str:
    # "make_trainer.<locals>.log_loss" -> "log_loss": the local scope says nothing in a notebook.
    return qualname.rsplit("<locals>.", 1)[-1]


class TimelineView:
    """Filter dropdown, table and plot of one ``EventTimeline``."""

    def __init__(self, timeline: EventTimeline, render: Callable[..., bytes], rows: int = 14) -> None:
        self.timeline = timeline
        self._render = render
        self.rows = rows
        self._first_seen: list[str] = []
        self._names: set[str] = set()
        self.filter = widgets.Dropdown(
            options=[("all events", ALL_EVENTS)],
            value=ALL_EVENTS,
            description="show",
            layout=widgets.Layout(width="280px"),
        )
        self.table = widgets.HTML(layout=widgets.Layout(width="100%"))
        #: (width, height, dpi) of the plot image.
        self.plot_size = (480, 300, 80)
        # Shown at the size it is drawn (never stretched). It does not shrink to share a row with the
        # table (at 800 px that left it a third of its width): it wraps below it instead, and
        # shrinks only when the cell itself is narrower than the picture.
        self.image = widgets.Image(
            format="png", layout=widgets.Layout(width=f"{self.plot_size[0]}px", max_width="100%", height="auto", flex="0 0 auto", min_width="0")
        )
        self.image.add_class("nbengine-timeline-plot")
        self._shown_count = -1
        self._plotted_count = -1
        table_box = widgets.Box([self.table], layout=widgets.Layout(flex="1 1 340px", min_width="0", max_height="330px", overflow="auto"))
        self.widget = widgets.VBox(
            [
                widgets.HTML("<b>Event timeline</b>"),
                self.filter,
                widgets.HBox([table_box, self.image], layout=widgets.Layout(flex_flow="row wrap", grid_gap="8px")),
            ]
        )

    def _note_names(self) -> None:
        for name in self.timeline.event_names():
            if name not in self._names:
                self._names.add(name)
                self._first_seen.append(name)

    def _update_filter_options(self) -> None:
        options = [("all events", ALL_EVENTS)] + [(name.lower(), name) for name in _ordered(self._names, self._first_seen)]
        if list(self.filter.options) != options:
            selected = self.filter.value
            # Setting options selects the first one ("all events"); keep the user's choice.
            self.filter.options = options
            if selected in {value for _, value in options}:
                self.filter.value = selected

    def _wanted(self) -> list[str] | None:
        return None if self.filter.value == ALL_EVENTS else [self.filter.value]

    def changed_since_table(self) -> bool:
        return self.timeline.count != self._shown_count

    def changed_since_plot(self) -> bool:
        return self.timeline.count != self._plotted_count

    def update_table(self) -> None:
        """Refresh the filter's choices and the table (cheap)."""
        count = self.timeline.count
        self._note_names()
        self._update_filter_options()
        shown = self.timeline.snapshot(events=self._wanted(), last=self.rows)
        self.table.value = timeline_table_html(shown, count, self.timeline.capacity)
        self._shown_count = count

    def update_plot(self) -> None:
        """Redraw the plot (tens of milliseconds: the panel decides when)."""
        count = self.timeline.count
        self._note_names()
        wanted = self._wanted()
        names = wanted if wanted is not None else _ordered(self._names, self._first_seen)
        entries = self.timeline.snapshot(events=wanted)
        title = "recent events"
        if entries:
            last = entries[-1]
            title = f"the last {len(entries)} events, up to #{last.seq} (epoch {last.epoch}, iteration {last.iteration})"
        rows = {name: index for index, name in enumerate(names)}
        timed = [entry for entry in entries if entry.handlers]
        arrays = (
            np.fromiter((entry.time for entry in entries), dtype=float, count=len(entries)),
            np.fromiter((rows.get(entry.event, -1) for entry in entries), dtype=float, count=len(entries)),
            list(names),
            np.fromiter((entry.time for entry in timed), dtype=float, count=len(timed)),
            np.fromiter((entry.handler_seconds * 1e3 for entry in timed), dtype=float, count=len(timed)),
        )
        self.image.value = self._render("timeline", self.plot_size, arrays, {"title": title})
        self._plotted_count = count

    def force(self) -> None:
        """Make the next check see a change (after the filter changed)."""
        self._shown_count = -1
        self._plotted_count = -1
