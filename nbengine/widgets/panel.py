"""``TrainingPanel``: one notebook panel that drives and shows a training run.

This module owns the panel: how its parts (run controls, State view, event timeline, loss plot,
checkpoints and replay) are put together, what each button does, and when the display is brought
up to date.

Threads. Training runs in the engine's own background thread (``engine.start``), and a replay in
one of the panel's (under the trainer's lock, with the controls off until its report is shown), so
the kernel stays free; the buttons run on the kernel's main thread; a refresh thread owned by the
panel brings the display up to date every ``refresh_interval`` seconds when something changed. The training thread does no UI work
while it trains: the panel reads the engine, the ``EventTimeline`` and the loss recorder, each of
which is safe to read from another thread. (It does one refresh as its run ends, so that the final
state is on screen when ``wait()`` returns, and posts the message of a Save it carried out.) Plots cost tens of milliseconds, so while the engine runs they are
redrawn at most every ``plot_interval`` seconds and never more than ``plot_budget`` of the time
(the refresh thread competes with training for the interpreter lock); while paused they follow
each step at once. Whatever changes training state (save, load, step) runs on the training side
at a boundary (``call_at_boundary``) or, when paused, in the caller's thread with the engine's lock.

Errors. A failed run turns the status red and shows the traceback; ``wait()`` re-raises it. An
exception in a button or in a refresh is shown in the panel's message line with its traceback and
kept in ``panel.errors``; nothing is swallowed.

Re-running a cell (see ``nbengine.widgets.session``): panels are registered per cell in the kernel
session; a new panel from the same cell closes the earlier one and stops its run, unless both
drive the same engine, in which case the run goes on and only the display is replaced.
"""

from __future__ import annotations

import html
import logging
import numbers
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import ipywidgets as widgets

from nbengine.engine import IDLE, PAUSED, RUNNING, Engine, Events
from nbengine.handlers.checkpoint import Checkpoint, DiskSaver
from nbengine.handlers.history import History
from nbengine.handlers.replay import EpochReplay
from nbengine.handlers.timeline import EventTimeline
from nbengine.widgets.checkpoint_shelf import CheckpointShelf
from nbengine.widgets.checkpoints_view import CheckpointsView
from nbengine.widgets.controls import CONTROL_HELP, CONTROL_LABELS, RUN_CONTROLS, control_reasons
from nbengine import plotting
from nbengine.widgets.loss_source import LossSource
from nbengine.widgets.plot_renderer import PlotRenderer
from nbengine.widgets.refresh import PlotSchedule, PlotThread
from nbengine.widgets.session import KernelSession
from nbengine.widgets.state_view import read_state, state_html, status_badge_html
from nbengine.widgets.timeline_view import TimelineView

__all__ = ["TrainingPanel", "ActionRefused"]

logger = logging.getLogger(__name__)

_ICONS = {
    "run": "play",
    "pause": "pause",
    "step": "step-forward",
    "step_event": "forward",
    "step_epoch": "fast-forward",
    "resume": "play-circle",
    "stop": "stop",
}

# How long a click waits for the background thread to reach its next boundary before saying so.
_SETTLE_SECONDS = 5.0
# How long a re-run cell waits for the earlier run to stop.
_STOP_EARLIER_SECONDS = 10.0


class ActionRefused(RuntimeError):
    """A button was pressed when its action makes no sense (the status changed since it was drawn)."""


def _check_optional_positive_int(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{name} should be a positive integer or None, got {value!r}")


def _check_positive_number(name: str, value: Any, upper: float | None = None) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value > 0 or (upper is not None and value > upper):
        limit = f" and at most {upper}" if upper is not None else ""
        raise ValueError(f"{name} should be a number greater than 0{limit}, got {value!r}")
    return float(value)


def _set(widget: widgets.Widget, **values: Any) -> None:
    # Only what changed: each assignment of a synced trait is validated and may send a message.
    for name, value in values.items():
        if getattr(widget, name) != value:
            setattr(widget, name, value)


class TrainingPanel:
    """Controls and live views for one trainer; display it as a cell's last expression.

    >>> panel = TrainingPanel(trainer, data=train_loader, max_epochs=5,
    ...                       evaluator=evaluator, checkpoint=checkpoint).start()   # doctest: +SKIP

    Args:
        trainer: the nbengine ``Engine`` to drive.
        data, max_epochs, epoch_length, max_iters: what Run (and Step, from idle) runs, as for
            ``engine.run``. Without them the panel reuses what the engine last ran.
        evaluator: an ``Engine`` whose metrics, at each of its COMPLETED events, are plotted per
            epoch; without it the validation part says why it is off.
        checkpoint: a ``Checkpoint`` handler with a ``DiskSaver``: enables Save now, the list of saved
            checkpoints and Load (which loads into the handler's ``to_save`` objects).
        history: a ``History`` attached to the trainer: the loss plot reads the outputs from it
            instead of recording them itself.
        replay: an ``EpochReplay`` of the trainer: enables Replay epoch k and shows its report; its
            History feeds the loss plot when ``history`` is not given.
        key: what identifies "the same cell" for re-runs; by default the running cell.
        refresh_interval: seconds between display refreshes while something changes.
        plot_interval: seconds between two loss-plot redraws while training runs.
        plot_budget: the largest share of the kernel's time that plot drawing may take while
            training runs (drawings while paused are not counted). The plots are drawn in a
            helper process, which costs the kernel about a millisecond per drawing.
        timeline_capacity: events the timeline keeps.
        draw_in_process: draw the plots in the kernel's process instead of a helper process
            (slower for training: drawing then holds the interpreter lock).
        optimizer: the trainer's optimizer: State shows the learning rate of its first parameter
            group (which a parameter scheduler changes).
    """

    def __init__(
        self,
        trainer: Engine,
        *,
        data: Iterable | None = None,
        max_epochs: int | None = None,
        epoch_length: int | None = None,
        max_iters: int | None = None,
        evaluator: Engine | None = None,
        checkpoint: Checkpoint | None = None,
        history: History | None = None,
        replay: EpochReplay | None = None,
        key: str | None = None,
        refresh_interval: float = 0.25,
        plot_interval: float = 1.0,
        plot_budget: float = 0.03,
        timeline_capacity: int = 2000,
        draw_in_process: bool = False,
        optimizer: Any = None,
    ) -> None:
        if not isinstance(trainer, Engine):
            raise TypeError(f"trainer should be an nbengine Engine, got {trainer!r} of type {type(trainer).__name__}")
        if evaluator is not None and not isinstance(evaluator, Engine):
            raise TypeError(
                f"evaluator should be an nbengine Engine or None, got {evaluator!r} of type {type(evaluator).__name__}"
            )
        if evaluator is trainer:
            raise ValueError("evaluator should be another engine than trainer, got the trainer itself")
        if checkpoint is not None:
            if not isinstance(checkpoint, Checkpoint):
                raise TypeError(
                    f"checkpoint should be an nbengine Checkpoint or None, got {checkpoint!r} of type {type(checkpoint).__name__}"
                )
            if not isinstance(checkpoint.save_handler, DiskSaver):
                raise TypeError(
                    "checkpoint should save through a DiskSaver (the panel lists the saved checkpoints from its "
                    f"folder), got a Checkpoint whose save_handler is {checkpoint.save_handler!r}"
                )
        if history is not None and (not isinstance(history, History) or history.engine is not trainer):
            raise ValueError(
                f"history should be a History attached to the trainer (History().attach(trainer)), got {history!r}"
                + (f" attached to {history.engine!r}" if isinstance(history, History) else "")
            )
        if replay is not None and (not isinstance(replay, EpochReplay) or replay.history.engine is not trainer):
            raise ValueError(
                f"replay should be an EpochReplay of the trainer (EpochReplay(trainer, ...)), got {replay!r}"
            )
        if key is not None and not isinstance(key, str):
            raise TypeError(f"key should be a str or None, got {key!r} of type {type(key).__name__}")
        self._check_run_arguments(data, max_epochs, epoch_length, max_iters)
        self._refresh_interval = _check_positive_number("refresh_interval", refresh_interval)
        self._plot_interval = _check_positive_number("plot_interval", plot_interval)
        self._plot_budget = _check_positive_number("plot_budget", plot_budget, upper=1.0)

        if optimizer is not None and not isinstance(getattr(optimizer, "param_groups", None), list):
            raise TypeError(f"optimizer should be a torch optimizer (with param_groups) or None, got {optimizer!r}")
        self.trainer = trainer
        self.evaluator = evaluator
        self.optimizer = optimizer
        self.checkpoint = checkpoint
        self.replay = replay
        self.history = history if history is not None else (replay.history if replay is not None else None)
        self._data = data
        self._max_epochs = max_epochs
        self._epoch_length = epoch_length
        self._max_iters = max_iters

        #: Exceptions raised by buttons and refreshes, newest last (also shown in the message line).
        self.errors: deque[BaseException] = deque(maxlen=20)
        #: Refreshes done so far (including those that found nothing new), plots drawn so far (loss
        #: and timeline), and of them the loss plots.
        self.refresh_count = 0
        self.plot_count = 0
        self.loss_plot_count = 0
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._wake = threading.Event()
        self._plots_dirty = True
        self._listing_dirty = checkpoint is not None
        self._listing_signature: tuple | None = None
        self._shelf = CheckpointShelf(checkpoint) if checkpoint is not None else None
        # Iterations of the listed checkpoints, marked on the loss plot.
        self._checkpoint_marks: tuple[int, ...] = ()
        # The trainer's iteration right after a Load: while it stands there, the loaded run shows
        # as paused, and Resume and Step continue it.
        self._loaded_at: int | None = None
        self._plot_lock = threading.Lock()
        self._loss_schedule = PlotSchedule(self._plot_interval, self._plot_budget)
        self._renderer = PlotRenderer(in_process=draw_in_process)
        #: (width, height, dpi) of the loss plot image.
        self.loss_plot_size = (640, 320, 80)
        self._shown_signature: tuple | None = None
        self._message_when_still: str | None = None
        self._view_version = 0
        # The epoch a background replay is replaying (None: no replay running), and its thread.
        self._replaying_epoch: int | None = None
        self._replay_thread: threading.Thread | None = None

        # One trace hook records the events and, unless a History does, the outputs for the loss
        # plot (with a History, only the last one, which the State view shows between iterations).
        outputs = 100_000 if self.history is None else 1
        self.timeline = EventTimeline(capacity=timeline_capacity, outputs=outputs).attach(trainer)
        self.loss_source = LossSource(trainer, self.timeline, evaluator, history=self.history)
        # (epoch, iteration) at the last EPOCH_STARTED, read from the timeline once per epoch: where
        # in its epoch the run stands, also after terminate_epoch() or a run started again.
        self._epoch_started_at: tuple[int, int] | None = None
        self._build_widgets()

        self._session = KernelSession()
        self._output_parent = self._session.current_parent()
        self.key = key if key is not None else self._session.cell_key(self._output_parent)
        self._replace_earlier_panel()
        self._unregister_after_cell = self._session.after_each_cell(self._after_cell)
        self._stop_forwarding_interrupts = self._session.forward_interrupts(self._on_interrupt)

        self._plot_thread = PlotThread(self._draw_due_plots, lambda error: self._report_error("plot", error), refresh_interval)
        self.refresh()
        self._refresher = threading.Thread(target=self._refresh_loop, name="nbengine-panel-refresh", daemon=True)
        self._refresher.start()

    # ------------------------------------------------------------------ construction

    @staticmethod
    def _check_run_arguments(data: Any, max_epochs: Any, epoch_length: Any, max_iters: Any) -> None:
        if data is not None and not isinstance(data, Iterable):
            raise TypeError(f"data should be an iterable (a list, a DataLoader) or None, got {data!r} of type {type(data).__name__}")
        _check_optional_positive_int("max_epochs", max_epochs)
        _check_optional_positive_int("epoch_length", epoch_length)
        _check_optional_positive_int("max_iters", max_iters)
        if max_epochs is not None and max_iters is not None:
            raise ValueError(
                f"max_epochs and max_iters are mutually exclusive, got max_epochs={max_epochs} and max_iters={max_iters}"
            )

    def _build_widgets(self) -> None:
        self.status_badge = widgets.HTML()
        self.status_badge.add_class("nbengine-status-badge")
        self.buttons: dict[str, widgets.Button] = {}
        for name in RUN_CONTROLS:
            button = widgets.Button(description=CONTROL_LABELS[name], icon=_ICONS[name], layout=widgets.Layout(width="auto"))
            button.add_class(f"nbengine-{name.replace('_', '-')}")
            self.buttons[name] = button
        actions: dict[str, Callable[[], None]] = {
            "run": self._run,
            "pause": self._pause,
            "step": lambda: self._step(n=1),
            "step_event": lambda: self._step(events=1),
            "step_epoch": lambda: self._step(until=Events.EPOCH_COMPLETED),
            "resume": self._resume,
            "stop": self._stop,
        }
        for name, action in actions.items():
            self.buttons[name].on_click(self._guarded(CONTROL_LABELS[name], action))
        self.message = widgets.HTML()
        self.message.add_class("nbengine-message")

        self.state_view = widgets.HTML(layout=widgets.Layout(flex="1 1 280px", max_width="420px", min_width="0"))
        self.state_view.add_class("nbengine-state-view")

        self.loss_image = widgets.Image(format="png", layout=widgets.Layout(width="100%", max_width="640px", height="auto"))
        self.loss_image.add_class("nbengine-loss-plot")
        self.log_scale = widgets.Checkbox(value=False, description="log scale", indent=False)
        self.log_scale.observe(self._on_view_option, names="value")
        validation_note = (
            "" if self.evaluator is not None else "Validation metrics are off: no evaluator was given (TrainingPanel(..., evaluator=...))."
        )
        self.validation_note = widgets.HTML(
            f"<span class='nbengine-note' style='color:#757575;font-size:12px'>{html.escape(validation_note)}</span>"
        )

        self.timeline_view = TimelineView(self.timeline, self._renderer.render)
        self.timeline_view.filter.observe(self._on_view_option, names="value")

        checkpoint_note = (
            None if self.checkpoint is not None else "Checkpoints are off: no checkpoint handler was given (TrainingPanel(..., checkpoint=Checkpoint(...)))."
        )
        replay_note = (
            None if self.replay is not None else "Replay is off: no epoch replay was given (TrainingPanel(..., replay=EpochReplay(trainer, ...)))."
        )
        self.checkpoints_view = CheckpointsView(checkpoint_note, replay_note)
        self.save_button = self.checkpoints_view.save_button
        self.load_button = self.checkpoints_view.load_button
        self.replay_button = self.checkpoints_view.replay_button
        self.save_button.on_click(self._guarded("Save", self._save))
        self.load_button.on_click(self._guarded("Load", self._load))
        self.replay_button.on_click(self._guarded("Replay", self._replay))
        self.checkpoints_view.checkpoints.observe(
            self._guarded("refresh", lambda: self._update_checkpoint_controls(self._shown_status())), names="value"
        )

        header = widgets.HBox(
            [widgets.HTML("<b style='font-size:15px'>nbengine</b>"), self.status_badge],
            layout=widgets.Layout(align_items="center", grid_gap="10px", flex_flow="row wrap"),
        )
        # Every row wraps: from an 800-px window with a side bar open to a wide screen, every control
        # stays inside the cell, and nothing has a fixed width wider than that.
        controls = widgets.HBox(list(self.buttons.values()), layout=widgets.Layout(flex_flow="row wrap"))
        loss = widgets.VBox(
            [self.loss_image, widgets.HBox([self.log_scale, self.validation_note], layout=widgets.Layout(flex_flow="row wrap"))],
            layout=widgets.Layout(flex="2 1 360px", max_width="640px", min_width="0"),
        )
        self.widget = widgets.VBox(
            [
                header,
                controls,
                self.message,
                widgets.HBox([self.state_view, loss], layout=widgets.Layout(flex_flow="row wrap", grid_gap="12px")),
                self.timeline_view.widget,
                self.checkpoints_view.widget,
            ],
            layout=widgets.Layout(border="1px solid #ddd", padding="8px", max_width="100%", overflow="hidden"),
        )
        self.widget.add_class("nbengine-panel")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"TrainingPanel(trainer={self.trainer!r}, status={self.trainer.status!r}, key={self.key!r})"

    # ------------------------------------------------------------------ kernel session

    def _replace_earlier_panel(self) -> None:
        registry = self._session.registry()
        if registry is None or self.key is None:
            return
        earlier = registry.get(self.key)
        registry[self.key] = self
        if earlier is None or earlier is self:
            return
        stop_run = earlier.trainer is not self.trainer
        earlier._close(stop_run=stop_run, unregister=False)
        if stop_run and earlier.trainer.status == RUNNING:
            self._show_message(
                f"The earlier run of this cell has not stopped after {_STOP_EARLIER_SECONDS:.0f} s; "
                "it stops at its next event boundary.",
                colour="#ef6c00",
            )

    def _after_cell(self) -> None:
        # After every cell: a trainer stepped or loaded in a cell shows at once.
        if not self._closed.is_set():
            self._guarded("refresh", self.refresh)()

    @contextmanager
    def _background_run(self) -> Iterator[None]:
        # Entered by the engine inside its thread: output to the starting cell, last refresh at the end.
        with self._session.route_output(self._output_parent):
            try:
                yield
            finally:
                if not self._closed.is_set():
                    self._guarded("refresh", self.refresh)()

    # ------------------------------------------------------------------ public API

    def start(
        self,
        data: Iterable | None = None,
        max_epochs: int | None = None,
        epoch_length: int | None = None,
        max_iters: int | None = None,
    ) -> TrainingPanel:
        """Start (or continue) training in the background and return the panel, so that
        ``TrainingPanel(trainer, ...).start()`` as a cell's last line shows it. Arguments given here
        replace those given to the panel. Printed output goes to the cell calling this."""
        self._check_run_arguments(data, max_epochs, epoch_length, max_iters)
        if max_epochs is not None or max_iters is not None:
            self._max_epochs, self._max_iters = max_epochs, max_iters
        if data is not None:
            self._data = data
        if epoch_length is not None:
            self._epoch_length = epoch_length
        parent = self._session.current_parent()
        if parent is not None:
            self._output_parent = parent
        self._settle()
        if self.trainer.status == PAUSED:
            self.trainer.start(thread_setup=self._background_run)
        else:
            self.trainer.start(**self._run_arguments(), thread_setup=self._background_run)
        self.refresh()
        return self

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for a replay started by the Replay button and for the background run to end
        (finished, paused or failed), each for up to ``timeout`` seconds, and return the trainer's
        state, with the display (plots included) showing it; re-raises the run's exception (as
        ``trainer.wait()`` does, on every call)."""
        replay_thread = self._replay_thread
        if replay_thread is not None:
            replay_thread.join(timeout)
            if replay_thread.is_alive():
                raise TimeoutError(f"the replay of epoch {self._replaying_epoch} is still running after {timeout} s")
        try:
            return self.trainer.wait(timeout)
        finally:
            if self.trainer.status != RUNNING and not self._closed.is_set():
                # The display shows the run as it ended when this returns (a saved notebook keeps it).
                self.refresh()
                self._draw_due_plots()

    def refresh(self) -> None:
        """Bring the display up to date now (any thread)."""
        with self._lock:
            self._refresh_locked()

    def close(self) -> None:
        """Remove the panel: stop refreshing, detach its recorders, close its widgets. The run itself
        goes on; ``trainer.stop()`` ends it."""
        self._close(stop_run=False, unregister=True)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # ------------------------------------------------------------------ closing

    def _close(self, stop_run: bool, unregister: bool) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake.set()
        if stop_run:
            self._stop_engine_for_rerun()
        self._unregister_after_cell()
        self._stop_forwarding_interrupts()
        self._plot_thread.close()
        self._renderer.close()
        self.timeline.detach()
        self.loss_source.detach()
        if unregister:
            registry = self._session.registry()
            if registry is not None and self.key is not None and registry.get(self.key) is self:
                del registry[self.key]
        if threading.current_thread() is not self._refresher:
            self._refresher.join(timeout=5.0)
        with self._lock:
            self._close_widgets()

    def _stop_engine_for_rerun(self) -> None:
        trainer = self.trainer
        if trainer.status not in (RUNNING, PAUSED):
            return
        trainer.stop()
        try:
            self._join(_STOP_EARLIER_SECONDS)
        except TimeoutError:
            # Reported by the replacing panel, which checks the status.
            pass

    def _close_widgets(self) -> None:
        stack = [self.widget]
        while stack:
            widget = stack.pop()
            stack.extend(getattr(widget, "children", ()))
            widget.close()

    # ------------------------------------------------------------------ button actions

    def _guarded(self, action: str, function: Callable[[], None]) -> Callable[..., None]:
        def run(*_: Any) -> None:
            try:
                with self._session.route_output(self._output_parent):
                    function()
            except ActionRefused as refusal:
                self._show_message(str(refusal), colour="#ef6c00")
            except Exception as error:  # shown in the panel and kept in self.errors, never dropped
                self._report_error(action, error)
            if action != "refresh" and not self._closed.is_set():
                try:
                    self.refresh()
                except Exception as error:  # same: shown and kept
                    self._report_error("refresh", error)

        return run

    def _report_error(self, action: str, error: BaseException) -> None:
        self.errors.append(error)
        logger.error("nbengine panel: %s failed: %r", action, error, exc_info=error)
        trace = "".join(traceback.format_exception(error))
        self._show_message(
            f"{action} failed: {type(error).__name__}: {error}",
            colour="#c62828",
            details=trace,
        )

    def _show_message(
        self, text: str, colour: str = "#2e7d32", details: str | None = None, when_still: str | None = None
    ) -> None:
        """Show ``text``; with ``when_still`` (a format string with ``{position}``), the message
        describes something under way, and is replaced by ``when_still`` once the run stands still."""
        self._message_when_still = when_still
        body = f"<span style='color:{colour}'>{html.escape(text)}</span>"
        if details:
            body += (
                "<pre style='font-size:11px;white-space:pre-wrap;max-height:200px;overflow:auto;margin:2px 0'>"
                f"{html.escape(details)}</pre>"
            )
        with self._lock:
            if not self._closed.is_set():
                self.message.value = f"<div class='nbengine-message-text'>{body}</div>"

    def _join(self, timeout: float) -> None:
        """Wait for the background thread to end. A failure of the run stays with the trainer
        (``trainer.error``; ``trainer.wait()`` and ``panel.wait()`` re-raise it) and is shown by the
        State view, so it is not raised into the click that happened to wait for it."""
        try:
            self.trainer.wait(timeout)
        except TimeoutError:
            raise
        except BaseException as error:
            if error is not self.trainer.error:
                raise

    def _settle(self) -> None:
        """After a pause, wait for the background thread to finish leaving (a boundary away)."""
        if self.trainer.status != RUNNING:
            self._join(_SETTLE_SECONDS)

    def _refuse_unless_enabled(self, name: str) -> None:
        reason = self._control_reasons(self._shown_status())[name]
        if reason is not None:
            raise ActionRefused(f"{CONTROL_LABELS[name]} is not possible now: {reason}")

    def _run_arguments(self) -> dict[str, Any]:
        state = self.trainer.state
        data = self._data
        max_epochs, max_iters = self._max_epochs, self._max_iters
        if max_epochs is None and max_iters is None:
            max_iters = state.max_iters
            max_epochs = state.max_epochs if max_iters is None else None
        arguments: dict[str, Any] = {"data": data, "max_epochs": max_epochs, "max_iters": max_iters}
        if self._epoch_length is not None:
            arguments["epoch_length"] = self._epoch_length
        return arguments

    def _can_start(self) -> tuple[bool, str]:
        if self._data is not None or self._epoch_length is not None or self.trainer.state.dataloader is not None:
            return True, ""
        return False, "the panel has no data to run: give TrainingPanel(trainer, data=...) or call panel.start(data)"

    def _control_reasons(self, status: str) -> dict[str, str | None]:
        busy = self._replay_busy_reason()
        if busy is not None:
            return dict.fromkeys(RUN_CONTROLS, busy)
        can_start, why = self._can_start()
        return control_reasons(status, can_start=can_start, cannot_start_reason=why)

    def _replay_busy_reason(self) -> str | None:
        epoch = self._replaying_epoch
        if epoch is None:
            return None
        # The replay holds the trainer's lock and has the trained objects at the replayed epoch.
        return f"epoch {epoch} is being replayed: its report comes when the replay ends"

    def _refuse_while_replaying(self, name: str) -> None:
        busy = self._replay_busy_reason()
        if busy is not None:
            raise ActionRefused(f"{name} is not possible now: {busy}")

    def _run(self) -> None:
        self._settle()
        self._refuse_unless_enabled("run")
        self.trainer.start(**self._run_arguments(), thread_setup=self._background_run)

    def _pause(self) -> None:
        self._refuse_unless_enabled("pause")
        self.trainer.pause()
        try:
            self._join(_SETTLE_SECONDS)
        except TimeoutError:
            self._show_message(
                "Pausing: the engine pauses at its next event boundary.", colour="#ef6c00", when_still="Paused at {position}."
            )
            return
        self._show_message(f"Paused at {self._position()}.", colour="#ef6c00")

    def _step(self, **condition: Any) -> None:
        self._settle()
        name = "step" if "n" in condition else ("step_event" if "events" in condition else "step_epoch")
        self._refuse_unless_enabled(name)
        if name == "step_epoch":
            # An epoch can be long: step to its end in the background thread, so the kernel stays
            # free for clicks (Pause works during it) and the panel updates live.
            if self.trainer.status == PAUSED:
                self.trainer.resume(**condition)
            else:
                self.trainer.start(**self._run_arguments(), **condition, thread_setup=self._background_run)
            self._show_message("Stepping to the end of the epoch…", colour="#2e7d32", when_still="Stepped to {position}.")
            return
        if self.trainer.status == PAUSED:
            self.trainer.step(**condition)
        else:
            self.trainer.step(**condition, **self._run_arguments())
        self._show_message(f"Stepped to {self._position()}.", colour="#ef6c00")

    def _resume(self) -> None:
        self._settle()
        self._refuse_unless_enabled("resume")
        if self.trainer.status == IDLE:
            # A loaded run: continued with what the panel runs (the loaded state says where).
            self.trainer.start(**self._run_arguments(), thread_setup=self._background_run)
        else:
            self.trainer.start(thread_setup=self._background_run)

    def _stop(self) -> None:
        self._settle()
        self._refuse_unless_enabled("stop")
        if self.trainer.status == IDLE:
            # A loaded run that was not continued: nothing runs; it is no longer shown as paused.
            self._loaded_at = None
            self._show_message(f"The loaded run is left at {self._position()}; Run starts it again.", colour="#1565c0")
            return
        if self.trainer.status == PAUSED:
            # Ending a paused run runs its TERMINATE and COMPLETED handlers (a last evaluation, a
            # last save), which can take long: in the background, like the run, not in the click.
            self.trainer.terminate()
            self.trainer.start(thread_setup=self._background_run)
        else:
            self.trainer.stop()
        try:
            self._join(_SETTLE_SECONDS)
        except TimeoutError:
            self._show_message(
                "Stopping: the run ends at its next event boundary.", colour="#ef6c00", when_still="Stopped at {position}."
            )
            return
        self._show_message(f"Stopped at {self._position()}.", colour="#1565c0")

    def _position(self) -> str:
        state = self.trainer.state
        event = self.trainer.last_event
        name = getattr(event, "name", event)
        return f"epoch {state.epoch}, iteration {state.iteration} ({name})"

    # ------------------------------------------------------------------ checkpoints

    def _save(self) -> None:
        if self._shelf is None:
            raise RuntimeError("Save is not possible: the panel has no checkpoint handler")
        self._refuse_while_replaying("Save")
        future, new = self._shelf.save(self.trainer)
        if not new:
            self._listing_dirty = True
            self._show_message(f"Already saved at this position: {future.result()} (nothing overwritten).", colour="#ef6c00")
            return
        if future.done():
            self._on_saved(future)
        else:
            self._show_message("Saving at the next event boundary…", colour="#ef6c00")
            future.add_done_callback(self._on_saved)

    def _on_saved(self, future: Any) -> None:
        # Runs on the training side when the save happened at a boundary: only flag and wake.
        error = future.exception()
        if error is not None:
            self._report_error("Save", error)
            return
        self._show_message(f"Saved {future.result()}.")
        self._listing_dirty = True
        self._wake.set()

    def _load(self) -> None:
        if self._shelf is None:
            raise RuntimeError("Load is not possible: the panel has no checkpoint handler")
        self._refuse_while_replaying("Load")
        self._settle()
        status = self.trainer.status
        if status == RUNNING:
            raise ActionRefused("Load is possible only while the run stands still: Pause it first")
        path = self.checkpoints_view.checkpoints.value
        if not path:
            raise ActionRefused("Load needs a checkpoint: none is selected (save one first)")
        loader = type(self.checkpoint).load_objects
        to_load = self.checkpoint.to_save
        self.trainer.call_at_boundary(lambda: loader(to_load=to_load, checkpoint=path)).result()
        self._loaded_at = self.trainer.state.iteration
        self._epoch_started_at = None
        self._shelf.select(path)
        self._listing_dirty = True
        self._show_message(f"Loaded {path}: paused at {self._position()}; Resume or Step continues from there.", colour="#1565c0")

    def _on_interrupt(self) -> bool:
        # In the kernel's main thread, from a signal handler: only thread-safe calls, no waiting.
        if self._closed.is_set() or self.trainer.status != RUNNING:
            return False
        self.trainer.pause()
        self._message_when_still = "■ paused the run at {position}; Resume continues it."
        self._wake.set()
        return True

    def _epoch_start(self) -> tuple[int, int] | None:
        epoch = self.trainer.state.epoch
        if self._epoch_started_at is None or self._epoch_started_at[0] != epoch:
            found = self.timeline.snapshot(events=["EPOCH_STARTED"], last=1)
            self._epoch_started_at = (found[0].epoch, found[0].iteration) if found else None
        return self._epoch_started_at

    def _control_help(self, name: str, status: str) -> str:
        """The tooltip of an enabled control: what it will do now."""
        if name == "run" and status in ("done", "failed"):
            return "Start a new run from iteration 0 in the background (the finished run is replaced)"
        if name == "resume" and self._loaded_at is not None:
            return "Continue the loaded run from where it was saved, in the background"
        return CONTROL_HELP[name]

    def _shown_status(self) -> str:
        """The engine's status, except that a loaded run that has not moved since shows as paused."""
        status = self.trainer.status
        if self._loaded_at is not None:
            if status == IDLE and self.trainer.state.iteration == self._loaded_at:
                return PAUSED
            self._loaded_at = None
        return status

    def _update_checkpoint_controls(self, status: str) -> None:
        view = self.checkpoints_view
        busy = self._replay_busy_reason()
        if busy is not None:
            for button in (view.save_button, view.load_button, view.replay_button):
                _set(button, disabled=True, tooltip=busy)
            _set(view.replay_epoch, disabled=True)
            return
        if self.checkpoint is None:
            for button in (view.save_button, view.load_button):
                _set(button, disabled=True, tooltip="no checkpoint handler was given")
            _set(view.checkpoints, disabled=True)
        else:
            _set(view.save_button, disabled=False, tooltip=(
                "Save a checkpoint at the next event boundary (kept apart from the periodic ones: their rotation never removes it)"
                if status == RUNNING else "Save a checkpoint of this position (kept apart from the periodic ones: their rotation never removes it)"
            ))
            if status == RUNNING:
                reason = "Load is possible while the run stands still: Pause it first"
            elif not view.checkpoints.value:
                reason = "no checkpoint saved yet"
            else:
                reason = None
            _set(view.load_button, disabled=reason is not None, tooltip=reason or "Load the selected checkpoint; the run then stands paused there")
        if self.replay is None:
            _set(view.replay_button, disabled=True, tooltip="no epoch replay was given")
            _set(view.replay_epoch, disabled=True)
        else:
            if status == RUNNING:
                reason = "Replay is possible only while the trainer is not running: Pause it first"
            elif not view.replay_epoch.options:
                reason = "no epoch snapshot yet: snapshots are taken at the start of each epoch"
            else:
                reason = None
            _set(view.replay_button, disabled=reason is not None, tooltip=reason or "Re-run the selected epoch from its snapshot and compare")
            _set(view.replay_epoch, disabled=False)

    def _replay(self) -> None:
        if self.replay is None:
            raise RuntimeError("Replay is not possible: the panel has no epoch replay")
        self._refuse_while_replaying("Replay")
        self._settle()
        if self.trainer.status == RUNNING:
            raise ActionRefused("Replay is possible only while the trainer is not running: Pause it first")
        epoch = self.checkpoints_view.replay_epoch.value
        if epoch is None:
            raise ActionRefused("Replay needs an epoch: no epoch snapshot yet")
        # A replay trains a whole epoch: it runs in the background so the kernel stays free, and the
        # controls stay off until it ends (the refresh after this click shows them off).
        self._replaying_epoch = epoch
        thread = threading.Thread(target=self._replay_in_background, args=(epoch,), name="nbengine-replay", daemon=True)
        self._replay_thread = thread
        self._show_message(f"Replaying epoch {epoch} in the background…", colour="#ef6c00")
        try:
            thread.start()
        except BaseException:
            self._replaying_epoch = None
            raise

    def _replay_in_background(self, epoch: int) -> None:
        with self._session.route_output(self._output_parent):
            try:
                report = self.replay.replay_epoch(epoch)  # type: ignore[union-attr]
            except Exception as error:  # shown in the panel and kept in self.errors, like a button's
                self._report_error("Replay", error)
            else:
                with self._lock:
                    if not self._closed.is_set():
                        self.checkpoints_view.show_report(report)
                self._show_message(str(report), colour="#2e7d32" if report.reproduced else "#c62828")
            finally:
                self._replaying_epoch = None
                self._wake.set()  # the next refresh turns the controls back on

    def _update_listing(self) -> None:
        if self._shelf is None:
            return
        # Committing a checkpoint (os.replace) or removing one changes the folder's mtime: one stat
        # per refresh tells whether the listing (a read per file) is worth redoing.
        try:
            folder_time: int | None = os.stat(self._shelf.folder).st_mtime_ns
        except FileNotFoundError:
            folder_time = None
        signature = (folder_time, len(self._shelf._ours()))
        if signature == self._listing_signature and not self._listing_dirty:
            return
        self._listing_dirty = False
        self._listing_signature = signature
        # No folder (yet, or any more): no checkpoints to list, which is not an error in itself.
        infos = self._shelf.listing() if folder_time is not None else []
        view = self.checkpoints_view
        view.show_listing(infos, self._shelf.selection(infos, view.checkpoints.value))
        self._checkpoint_marks = tuple(sorted({info.iteration for info in infos if info.iteration is not None})[-20:])
        self._plot_thread.wake()

    # ------------------------------------------------------------------ refreshing

    def _on_view_option(self, change: Any) -> None:
        self._view_version += 1
        self.timeline_view.force()
        self._guarded("refresh", self.refresh)()

    def _refresh_loop(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self._refresh_interval)
            self._wake.clear()
            if self._closed.is_set():
                return
            try:
                self.refresh()
            except Exception as error:  # shown in the panel; the loop goes on
                self._report_error("refresh", error)

    def _refresh_locked(self) -> None:
        if self._closed.is_set():
            return
        trainer = self.trainer
        signature = (
            trainer.status,
            trainer.state.iteration,
            trainer.state.epoch,
            trainer.last_event,
            trainer.error,
            self.timeline.count,
            self.loss_source.version,
            self._view_version,
            self._replaying_epoch,
        )
        if signature == self._shown_signature:
            # Nothing moved: only the checkpoint folder may have changed (a save from elsewhere).
            self._update_listing()
            self.refresh_count += 1
            return
        self._shown_signature = signature
        snapshot = read_state(
            self.trainer,
            last_output=self.loss_source.last_output,
            status=self._shown_status(),
            epoch_started_at=self._epoch_start(),
            evaluator=self.evaluator,
            optimizer=self.optimizer,
        )
        status = snapshot.status
        self.state_view.value = state_html(snapshot)
        # The badge with the State view: both say the same at every moment.
        position = f"epoch {snapshot.epoch}, iteration {snapshot.iteration} ({snapshot.last_event or '—'})"
        self.status_badge.value = status_badge_html(status, position)
        if self._message_when_still is not None and status != RUNNING:
            self._show_message(self._message_when_still.format(position=self._position()), colour="#ef6c00")
        for name, reason in self._control_reasons(status).items():
            _set(self.buttons[name], disabled=reason is not None, tooltip=reason or self._control_help(name, status))
        self._update_listing()
        if self.replay is not None:
            completed = snapshot.epoch if snapshot.iteration_in_epoch == snapshot.epoch_length else snapshot.epoch - 1
            self.checkpoints_view.show_replayable(self.replay.epochs, completed)
        self._update_checkpoint_controls(status)
        if self.timeline_view.changed_since_table():
            self.timeline_view.update_table()
        self._plot_thread.wake()
        self.refresh_count += 1

    def _loss_signature(self, status: str) -> tuple:
        return (
            self.loss_source.version, self._position(), status, self.log_scale.value, self._view_version,
            self._checkpoint_marks,
        )  # fmt: skip

    def _draw_due_plots(self) -> float | None:
        """Draw what is due (on the plot thread, or in ``wait()``); return the seconds until the loss
        plot is next due."""
        with self._plot_lock:
            if self._closed.is_set():
                return None
            return self._draw_due_plots_locked()

    def _draw_due_plots_locked(self) -> float | None:
        status = self.trainer.status
        running = status == RUNNING
        signature = self._loss_signature(status)
        due_in = self._loss_schedule.due_in(signature, running, time.monotonic())
        if due_in == 0.0:
            # Only this thread's CPU time is charged: waiting for the drawing process is not the kernel's.
            began = time.thread_time()
            data = self.loss_source.loss_data()
            curves = plotting.decimate_outputs(data.iterations, data.outputs)
            marks = [
                plotting.Mark(x, "checkpoints" if index == 0 else "_checkpoint", "#9467bd", ":")
                for index, x in enumerate(signature[5])
            ]
            options = {"log_scale": signature[3], "title": signature[1], "marks": marks}
            png = self._renderer.render("loss", self.loss_plot_size, (curves, data.metrics), options)
            with self._lock:
                if self._closed.is_set():
                    return None
                self.loss_image.value = png
                self.loss_plot_count += 1
                self.plot_count += 1
            self._loss_schedule.drawn(signature, running, time.thread_time() - began, time.monotonic())
            due_in = None
        if not running and self.timeline_view.changed_since_plot():
            # The timeline plot spans the last few thousand events, a fraction of a second while
            # running: it is drawn when the run stands still.
            # Not under the panel's lock: the State view need not wait for this drawing.
            self.timeline_view.update_plot()
            self.plot_count += 1
        return due_in
