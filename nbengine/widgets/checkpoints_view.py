"""The panel's checkpoint and replay part: Save now, the list of saved checkpoints with Load, and
Replay epoch k with its report.

This module owns the widgets of that part and how they are labelled: one dropdown entry per
committed checkpoint, from the checkpoint handler's listing API (newest first), and the HTML of a
replay report. What the buttons do, and when they are enabled, is the panel's business; when the
panel has no checkpoint handler or no replay recorder, this part shows why its controls are off.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets

__all__ = ["CheckpointsView", "checkpoint_label"]


def _size_text(size: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def checkpoint_label(info: Any) -> str:
    """One dropdown entry: position, score, time, size and file name of a ``CheckpointInfo``."""
    parts = []
    if info.epoch is not None:
        parts.append(f"epoch {info.epoch}")
    if info.iteration is not None:
        parts.append(f"iter {info.iteration}")
    if info.score is not None:
        parts.append(f"{info.score_name or 'score'}={info.score:.4g}")
    parts.append(datetime.datetime.fromtimestamp(info.wall_time).strftime("%H:%M:%S"))
    parts.append(_size_text(info.size))
    parts.append(info.path.name)
    return " · ".join(parts)


class CheckpointsView:
    """Save, the checkpoint dropdown and Load; Replay epoch k and its report."""

    def __init__(self, checkpoint_note: str | None, replay_note: str | None) -> None:
        self.save_button = widgets.Button(description="Save now", icon="save", tooltip="Save a checkpoint at the next boundary")
        self.checkpoints = widgets.Dropdown(
            options=[], description="saved", layout=widgets.Layout(flex="1 1 240px", max_width="560px", min_width="0", width="auto")
        )
        self.load_button = widgets.Button(description="Load", icon="upload")
        self.checkpoint_note = widgets.HTML(self._note(checkpoint_note))
        self.replay_epoch = widgets.Dropdown(options=[], description="epoch", layout=widgets.Layout(width="160px"))
        self.replay_button = widgets.Button(description="Replay epoch", icon="repeat")
        self.replay_note = widgets.HTML(self._note(replay_note))
        self.replay_report = widgets.HTML()
        for widget, name in (
            (self.save_button, "save"),
            (self.load_button, "load"),
            (self.replay_button, "replay"),
            (self.checkpoints, "checkpoints"),
            (self.replay_epoch, "replay-epoch"),
            (self.replay_report, "replay-report"),
        ):
            widget.add_class(f"nbengine-{name}")
        self.widget = widgets.VBox(
            [
                widgets.HTML("<b>Checkpoints and replay</b>"),
                widgets.HBox([self.save_button, self.checkpoints, self.load_button], layout=widgets.Layout(flex_flow="row wrap")),
                self.checkpoint_note,
                widgets.HBox([self.replay_epoch, self.replay_button], layout=widgets.Layout(flex_flow="row wrap")),
                self.replay_note,
                self.replay_report,
            ]
        )
        self._listed: list[tuple[str, str]] = []

    @staticmethod
    def _note(text: str | None) -> str:
        if not text:
            return ""
        return f"<span class='nbengine-note' style='color:#757575;font-size:12px'>{html.escape(text)}</span>"

    def show_listing(self, infos: Sequence[Any], selected: str | None) -> None:
        """Fill the dropdown from a listing (newest first) and select ``selected``."""
        options = [(checkpoint_label(info), str(info.path)) for info in infos]
        if options != self._listed:
            self.checkpoints.options = options
            self._listed = options
        if selected is not None and self.checkpoints.value != selected:
            self.checkpoints.value = selected

    @property
    def listed_paths(self) -> list[str]:
        return [value for _, value in self._listed]

    def show_replayable(self, epochs: Sequence[int], completed: int) -> None:
        """Offer the epochs that have a snapshot; keep the selection when it is still offered, else
        select the latest of them that is complete (``completed`` epochs are)."""
        options = tuple(int(epoch) for epoch in epochs)
        if options == tuple(self.replay_epoch.options):
            return
        selected = self.replay_epoch.value
        self.replay_epoch.options = options
        if options:
            done = [epoch for epoch in options if epoch <= completed]
            self.replay_epoch.value = selected if selected in options else (done or options)[-1]

    def show_report(self, report: Any) -> None:
        """Show a ``ReplayReport``: the verdict first, then the comparison in figures."""
        if report.reproduced:
            verdict = "<b class='nbengine-replay-verdict' style='color:#2e7d32'>reproduced: every batch and every output identical</b>"
        elif report.first_divergent_iteration is not None:
            verdict = (
                "<b class='nbengine-replay-verdict' style='color:#c62828'>diverged at iteration "
                f"{report.first_divergent_iteration}</b>"
            )
        else:
            verdict = "<b class='nbengine-replay-verdict' style='color:#ef6c00'>not every iteration could be compared</b>"
        rows = [
            ("epoch", report.epoch),
            ("iterations replayed", report.iterations),
            ("iterations compared", report.iterations_compared),
            ("batches identical", report.fingerprints_equal),
            ("outputs identical", report.outputs_equal),
            ("max |difference|", report.max_abs_diff),
            ("tolerance", report.atol),
            ("first divergence", report.first_divergent_iteration),
        ]
        if report.skipped_handlers:
            rows.append(("handlers not run", ", ".join(report.skipped_handlers)))
        table = "".join(
            f"<tr><th style='text-align:left;padding-right:10px;color:#555'>{html.escape(name)}</th>"
            f"<td class='nbengine-replay-{html.escape(name.replace(' ', '-').replace('|', ''))}'>{html.escape(str(value))}</td></tr>"
            for name, value in rows
        )
        self.replay_report.value = (
            f"<div>{verdict}<br><span style='font-size:12px'>{html.escape(str(report))}</span>"
            f"<table style='font-size:12px;border-collapse:collapse'>{table}</table></div>"
        )
