"""The panel's top part as widgets: the title with the status badge, the run buttons, the message line.

This module owns only how that part looks and how it shows what the ``PanelController`` says
(``show``): each button enabled or not with its tooltip, the message with its traceback folded
under it. What a button does is the controller's; the panel connects the clicks.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets

from nbengine.widgets.controls import CONTROL_LABELS, RUN_CONTROLS

__all__ = ["RunControlsView", "set_changed", "message_html", "close_all"]

_ICONS = {
    "run": "play",
    "pause": "pause",
    "step": "step-forward",
    "step_event": "forward",
    "step_epoch": "fast-forward",
    "resume": "play-circle",
    "stop": "stop",
}


def set_changed(widget: widgets.Widget, **values: Any) -> None:
    """Assign only what changed: each assignment of a synced trait is validated and may send a message."""
    for name, value in values.items():
        if getattr(widget, name) != value:
            setattr(widget, name, value)


def close_all(widget: widgets.Widget) -> None:
    """Close ``widget`` and every widget inside it."""
    stack = [widget]
    while stack:
        widget = stack.pop()
        stack.extend(getattr(widget, "children", ()))
        widget.close()


def message_html(message: Any) -> str:
    """The HTML of a controller ``Message`` (None: empty)."""
    if message is None:
        return ""
    body = f"<span style='color:{message.colour}'>{html.escape(message.text)}</span>"
    if message.details:
        body += (
            "<pre style='font-size:11px;white-space:pre-wrap;max-height:200px;overflow:auto;margin:2px 0'>"
            f"{html.escape(message.details)}</pre>"
        )
    return f"<div class='nbengine-message-text'>{body}</div>"


class RunControlsView:
    """Title and status badge, one button per run control, and the message line."""

    def __init__(self) -> None:
        self.status_badge = widgets.HTML()
        self.status_badge.add_class("nbengine-status-badge")
        self.buttons: dict[str, widgets.Button] = {}
        for name in RUN_CONTROLS:
            button = widgets.Button(description=CONTROL_LABELS[name], icon=_ICONS[name], layout=widgets.Layout(width="auto"))
            button.add_class(f"nbengine-{name.replace('_', '-')}")
            self.buttons[name] = button
        self.message = widgets.HTML()
        self.message.add_class("nbengine-message")
        self._message_version = -1
        header = widgets.HBox(
            [widgets.HTML("<b style='font-size:15px'>nbengine</b>"), self.status_badge],
            layout=widgets.Layout(align_items="center", grid_gap="10px", flex_flow="row wrap"),
        )
        # Wrapping rows: from an 800-px window with a side bar open to a wide screen, every button
        # stays inside the cell.
        controls = widgets.HBox(list(self.buttons.values()), layout=widgets.Layout(flex_flow="row wrap"))
        self.children = [header, controls, self.message]

    def show(self, badge: str, reasons: Mapping[str, str | None], helps: Mapping[str, str]) -> None:
        """The badge's HTML, and each button off with its reason, or on with its help."""
        set_changed(self.status_badge, value=badge)
        for name, reason in reasons.items():
            set_changed(self.buttons[name], disabled=reason is not None, tooltip=reason or helps[name])

    def show_message(self, message: Any, version: int) -> None:
        """Show the controller's message when it is new (``version`` grows with each)."""
        if version != self._message_version:
            self._message_version = version
            self.message.value = message_html(message)
