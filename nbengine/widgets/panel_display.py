"""Bringing a ``TrainingPanel``'s views up to date: what a refresh reads and what it changes.

This module owns the refresh itself (the panel's ``RefreshLoop`` and ``PlotThread`` decide when):

- ``refresh()`` (cheap, a few times a second): reads the engine once into a ``StateSnapshot`` and
  shows it in the State view and the badge together (they never disagree), the controller's
  message and enabling rules on the buttons, the checkpoint listing (one ``stat`` of the folder
  tells whether it is worth reading), the replayable epochs and the timeline table (at most once a
  second while the run goes on). When nothing moved since the last refresh, only the folder is
  looked at.
- ``draw_due_plots()`` (on the plot thread): the loss plot when its schedule says it is due, and
  the timeline plot while the run stands still (it spans thousands of events).
"""

from __future__ import annotations

import os
import time
from typing import Any

from nbengine.engine import RUNNING
from nbengine.widgets.panel_controller import CHECKPOINT_CONTROLS
from nbengine.widgets.run_controls_view import set_changed
from nbengine.widgets.state_view import read_state, state_html, status_badge_html

__all__ = ["PanelDisplay"]


class PanelDisplay:
    """The refresh of ``panel`` (a ``TrainingPanel``: its controller, recorders and views)."""

    def __init__(self, panel: Any) -> None:
        self.panel = panel
        self.controller = panel.controller
        self._shown: tuple | None = None
        self._listing: tuple | None = None
        self._marks: tuple[int, ...] = ()
        self._epoch_started_at: tuple[int, int, int] | None = None
        #: Grows when a view option (log scale, timeline filter) changes: everything is redrawn.
        self.view_version = 0
        #: Seconds between two timeline-table updates while the run goes on (the table changes
        #: with every event; rebuilding it four times a second cost the training about 1.5%).
        self.table_interval = 1.0
        self._table_at = float("-inf")

    # ------------------------------------------------------------------ the cheap parts

    def refresh(self) -> bool:
        """Bring the State, badge, buttons, message, listing and table up to date; True when
        something moved (the plot thread is then worth waking)."""
        panel, controller, trainer = self.panel, self.controller, self.panel.trainer
        signature = (
            trainer.status, trainer.state.iteration, trainer.state.epoch, trainer.last_event, trainer.error,
            panel.timeline.count, panel.loss_source.version, self.view_version, controller.replaying_epoch,
            controller.load_count,
        )  # fmt: skip
        moved = signature != self._shown
        if moved:
            self._shown = signature
            self._show_state()
        panel.controls_view.show_message(controller.message, controller.message_version)
        return self.update_listing() or moved

    def _show_state(self) -> None:
        panel, controller = self.panel, self.controller
        snapshot = read_state(
            panel.trainer, last_output=panel.loss_source.last_output, status=controller.shown_status(),
            epoch_started_at=self._epoch_start(), evaluator=panel.evaluator, optimizer=panel.optimizer,
        )  # fmt: skip
        status = snapshot.status
        controller.settle_message(status)
        # The table first: once the badge says the run stands still, everything it describes is on
        # screen (widget updates reach the page in the order they are made).
        now = time.monotonic()
        table_due = status != RUNNING or now - self._table_at >= self.table_interval
        if table_due and panel.timeline_view.changed_since_table():
            panel.timeline_view.update_table()
            self._table_at = now
        panel.state_view.value = state_html(snapshot)
        # The badge with the State view: both say the same at every moment.
        position = f"epoch {snapshot.epoch}, iteration {snapshot.iteration} ({snapshot.last_event or '—'})"
        reasons = controller.control_reasons(status)
        helps = {name: controller.control_help(name, status) for name in reasons}
        panel.controls_view.show(status_badge_html(status, position), reasons, helps)
        if panel.replay is not None:
            completed = snapshot.epoch if snapshot.iteration_in_epoch == snapshot.epoch_length else snapshot.epoch - 1
            panel.checkpoints_view.show_replayable(panel.replay.epochs, completed)
        self.show_checkpoint_controls(status)

    def _epoch_start(self) -> tuple[int, int] | None:
        """(epoch, iteration) at the last EPOCH_STARTED of the current epoch, read from the timeline
        once per epoch (and again after a Load): where in its epoch the run stands, also after
        ``terminate_epoch()`` or a run started again."""
        epoch, loads = self.panel.trainer.state.epoch, self.controller.load_count
        cached = self._epoch_started_at
        if cached is None or cached[0] != epoch or cached[2] != loads:
            found = self.panel.timeline.snapshot(events=["EPOCH_STARTED"], last=1)
            cached = self._epoch_started_at = (found[0].epoch, found[0].iteration, loads) if found else (epoch, -1, loads)
        return None if cached[1] < 0 or cached[0] != epoch else (cached[0], cached[1])

    def show_checkpoint_controls(self, status: str) -> None:
        """Save, Load and Replay on or off, with their tooltips."""
        view, controller = self.panel.checkpoints_view, self.controller
        reasons = controller.checkpoint_reasons(status, view.checkpoints.value, bool(view.replay_epoch.options))
        buttons = dict(zip(CHECKPOINT_CONTROLS, (view.save_button, view.load_button, view.replay_button)))
        for name, reason in reasons.items():
            set_changed(buttons[name], disabled=reason is not None, tooltip=reason or controller.control_help(name, status))
        set_changed(view.checkpoints, disabled=self.panel.checkpoint is None)
        set_changed(view.replay_epoch, disabled=self.panel.replay is None or controller.replaying_epoch is not None)

    def update_listing(self) -> bool:
        """Re-read the checkpoint listing when the folder, this panel's saves or the selection to
        make changed; True when it was re-read."""
        shelf = self.controller.shelf
        if shelf is None:
            return False
        # Committing a checkpoint (os.replace) or removing one changes the folder's mtime: one stat
        # per refresh tells whether the listing (a read per file) is worth redoing.
        try:
            folder_time: int | None = os.stat(shelf.folder).st_mtime_ns
        except FileNotFoundError:
            folder_time = None
        signature = (folder_time, shelf.version)
        if signature == self._listing:
            return False
        self._listing = signature
        # No folder (yet, or any more): no checkpoints to list, which is not an error in itself.
        infos = shelf.listing() if folder_time is not None else []
        view = self.panel.checkpoints_view
        view.show_listing(infos, shelf.selection(infos, view.checkpoints.value))
        self._marks = tuple(sorted({info.iteration for info in infos if info.iteration is not None})[-20:])
        return True

    # ------------------------------------------------------------------ the plots

    def loss_signature(self, status: str) -> tuple:
        return self.panel.loss_view.signature(status, self.controller.position(), self._marks, self.view_version)

    def draw_due_plots(self, publish: Any) -> float | None:
        """Draw what is due; the seconds until the loss plot is next due. ``publish(show)`` puts a
        picture on screen unless the panel closed (see ``LossView.draw_due``)."""
        panel = self.panel
        status = panel.trainer.status
        running = status == RUNNING
        due_in = panel.loss_view.draw_due(self.loss_signature(status), running, publish)
        if not running and panel.timeline_view.changed_since_plot():
            # The timeline plot spans the last few thousand events: drawn when the run stands still.
            panel.timeline_view.update_plot()
            panel.plot_count += 1
        return due_in
