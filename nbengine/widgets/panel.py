"""``TrainingPanel``: one notebook panel that drives and shows a training run.

This module owns how the panel's parts are put together and kept up to date:

- ``PanelController`` (``panel_controller``): the commands behind the buttons and the rules that
  enable them, without widgets;
- the views, thin and widget-only: ``RunControlsView`` (badge, buttons, message), the State view
  (``state_view``), ``LossView``, ``TimelineView``, ``CheckpointsView``;
- the refresh: ``RefreshLoop`` brings the cheap parts up to date every ``refresh_interval``
  seconds when something changed, and ``PlotThread`` draws the plots when ``PlotSchedule`` says
  they are due (``refresh``), in a helper process (``plot_renderer``);
- the kernel session (``session``): output routed to the panel's cell, one panel per cell, ■
  pausing the background run, and the cell hooks (``nbengine.notebook_cells``) that keep the
  user's cells and the background run apart, installed while a run the panel started is active.

Threads. Training runs in the engine's own background thread, so the kernel stays free; the
buttons run on the kernel's main thread. The training thread does no UI work while it trains: the
panel reads the engine, the ``EventTimeline`` and the loss recorder, each safe to read from another
thread (it does one refresh as its run ends, so the final state is on screen when ``wait()``
returns).

Errors. A failed run turns the status red and shows the traceback; ``wait()`` re-raises it. An
exception in a button or in a refresh is shown in the panel's message line with its traceback and
kept in ``panel.errors``; nothing is swallowed.

Re-running a cell: a new panel from the same cell closes the earlier one and stops its run,
unless both drive the same engine, in which case the run goes on and only the display is replaced.
"""

from __future__ import annotations

import logging
import numbers
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import ipywidgets as widgets

from nbengine.engine import PAUSED, RUNNING, Engine
from nbengine.handlers.checkpoint import Checkpoint
from nbengine.handlers.history import History
from nbengine.handlers.replay import EpochReplay
from nbengine.handlers.timeline import EventTimeline
from nbengine.notebook_cells import CellHooks
from nbengine.widgets.checkpoints_view import CheckpointsView
from nbengine.widgets.controls import CONTROL_LABELS, RUN_CONTROLS
from nbengine.widgets.loss_source import LossSource
from nbengine.widgets.loss_view import DEFAULT_LOSS_PLOT_SIZE, LossView
from nbengine.widgets.panel_controller import ActionRefused, PanelController
from nbengine.widgets.panel_display import PanelDisplay
from nbengine.widgets.plot_renderer import PlotRenderer
from nbengine.widgets.refresh import PlotSchedule, PlotThread, RefreshLoop
from nbengine.widgets.run_controls_view import RunControlsView, close_all
from nbengine.widgets.session import KernelSession
from nbengine.widgets.timeline_view import TimelineView

__all__ = ["TrainingPanel", "ActionRefused"]

logger = logging.getLogger(__name__)

# How long a re-run cell waits for the earlier run to stop.
_STOP_EARLIER_SECONDS = 10.0


def _positive(name: str, value: Any, upper: float | None = None) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value > 0 or (upper is not None and value > upper):
        limit = f" and at most {upper}" if upper is not None else ""
        raise ValueError(f"{name} should be a number greater than 0{limit}, got {value!r}")
    return float(value)


def _check_panel_options(history: Any, trainer: Any, key: Any, plot_size: Any, guard_cells: Any) -> None:
    if history is not None and (not isinstance(history, History) or history.engine is not trainer):
        raise ValueError(
            f"history should be a History attached to the trainer (History().attach(trainer)), got {history!r}"
            + (f" attached to {history.engine!r}" if isinstance(history, History) else "")
        )
    if key is not None and not isinstance(key, str):
        raise TypeError(f"key should be a str or None, got {key!r} of type {type(key).__name__}")
    if not isinstance(guard_cells, bool):
        raise TypeError(f"guard_cells should be True or False, got {guard_cells!r} of type {type(guard_cells).__name__}")
    if not (isinstance(plot_size, tuple) and len(plot_size) == 3 and all(isinstance(v, int) and v > 0 for v in plot_size)):
        raise ValueError(f"plot_size should be (width, height, dpi) in positive integers, got {plot_size!r}")


class TrainingPanel:
    """Controls and live views for one trainer; display it as a cell's last expression.

    >>> panel = TrainingPanel(trainer, data=train_loader, max_epochs=5,
    ...                       evaluator=evaluator, checkpoint=checkpoint).start()   # doctest: +SKIP

    Args:
        trainer: the nbengine ``Engine`` to drive.
        data, max_epochs, epoch_length, max_iters: what Run (and Step, from idle) runs, as for
            ``engine.run``. Without them the panel reuses what the engine last ran.
        evaluator: an ``Engine`` whose metrics, at each of its COMPLETED events run by the trainer's
            epochs, are plotted per epoch (a manual ``evaluator.run`` in a cell is not).
        checkpoint: a ``Checkpoint`` handler with a ``DiskSaver``: enables Save now, the list of saved
            checkpoints and Load (which loads into the handler's ``to_save`` objects).
        history: a ``History`` attached to the trainer: the loss plot reads the outputs from it.
        replay: an ``EpochReplay`` of the trainer: enables Replay epoch k and shows its report; its
            History feeds the loss plot when ``history`` is not given.
        key: what identifies "the same cell" for re-runs; by default the running cell.
        refresh_interval: seconds between display refreshes while something changes.
        plot_interval: seconds between two loss-plot redraws while training runs.
        plot_budget: the largest share of the kernel's time that plot drawing may take while
            training runs (drawings while paused are not counted).
        timeline_capacity: events the timeline keeps.
        draw_in_process: draw the plots in the kernel's process instead of a helper process.
        optimizer: the trainer's optimizer: State shows the learning rate of its first group.
        plot_size: (width, height, dpi) of the loss plot, drawn at that size and never stretched.
        guard_cells: while a run the panel started is active, guard every cell of the kernel
            (``nbengine.notebook_cells.install_cell_hooks``): a cell's random draws do not move the
            training's stream, and a cell never sees a half-done step.
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
        plot_size: tuple[int, int, int] = DEFAULT_LOSS_PLOT_SIZE,
        guard_cells: bool = True,
    ) -> None:
        _check_panel_options(history, trainer, key, plot_size, guard_cells)
        refresh_interval = _positive("refresh_interval", refresh_interval)
        schedule = PlotSchedule(_positive("plot_interval", plot_interval), _positive("plot_budget", plot_budget, upper=1.0))
        self.controller = PanelController(
            trainer, data=data, max_epochs=max_epochs, epoch_length=epoch_length, max_iters=max_iters,
            evaluator=evaluator, checkpoint=checkpoint, replay=replay, optimizer=optimizer,
            thread_setup=self._background_run, output=self._routed, before_background=self._before_background,
            on_change=self._wake,
        )  # fmt: skip
        self.trainer, self.evaluator, self.optimizer = trainer, evaluator, optimizer
        self.checkpoint, self.replay = checkpoint, replay
        self.history = history if history is not None else (replay.history if replay is not None else None)
        #: Exceptions raised by buttons and refreshes, newest last (also shown in the message line).
        self.errors = self.controller.errors
        #: Refreshes done so far (including those that found nothing new), and plots drawn so far.
        self.refresh_count = 0
        self.plot_count = 0
        self._lock = threading.RLock()
        self._plot_lock = threading.Lock()
        self._closed = threading.Event()
        self._guard_cells = guard_cells
        # One trace hook records the events and, unless a History does, the outputs for the loss plot.
        self.timeline = EventTimeline(capacity=timeline_capacity, outputs=100_000 if self.history is None else 1).attach(trainer)
        self.loss_source = LossSource(trainer, self.timeline, evaluator, history=self.history)
        self._renderer = PlotRenderer(in_process=draw_in_process)
        _build_views(self, schedule, plot_size)
        self._display = PanelDisplay(self)
        self._join_session(key)
        self._plot_thread = PlotThread(self._draw_due_plots, lambda error: self._report_error("plot", error), refresh_interval)
        self.refresh()
        self._refresher = RefreshLoop(self.refresh, lambda error: self._report_error("refresh", error), refresh_interval)

    # ------------------------------------------------------------------ construction

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"TrainingPanel(trainer={self.trainer!r}, status={self.trainer.status!r}, key={self.key!r})"

    @property
    def loss_plot_count(self) -> int:
        """Loss plots drawn so far."""
        return self.loss_view.drawn

    @property
    def loss_plot_size(self) -> tuple[int, int, int]:
        """(width, height, dpi) of the loss plot image."""
        return self.loss_view.size

    # ------------------------------------------------------------------ kernel session

    def _join_session(self, key: str | None) -> None:
        self._session = KernelSession()
        self._output_parent = self._session.current_parent()
        self.key = key if key is not None else self._session.cell_key(self._output_parent)
        earlier = self._session.register(self.key, self)
        if earlier is not None:
            stop_run = earlier.trainer is not self.trainer
            earlier._close(stop_run=stop_run, unregister=False)
            if stop_run and earlier.trainer.status == RUNNING:
                self.controller.show(
                    f"The earlier run of this cell has not stopped after {_STOP_EARLIER_SECONDS:.0f} s; it stops at its next event boundary.",
                    "#ef6c00",
                )
        #: The cell guard, installed while a run the panel started is active.
        self.cell_hooks = CellHooks(self.trainer, self._session.shell)
        self._unregister_after_cell = self._session.after_each_cell(self._after_cell)
        self._stop_forwarding_interrupts = self._session.forward_interrupts(self._on_interrupt)

    def _after_cell(self) -> None:
        # After every cell: a trainer stepped or loaded in a cell shows at once.
        if not self._closed.is_set():
            self._guarded("refresh", self.refresh)()

    def _routed(self) -> Any:
        return self._session.route_output(self._output_parent)

    def _before_background(self) -> None:
        # On the caller's thread, before a background run starts: guard the user's cells meanwhile.
        if self._guard_cells and self._session.in_kernel:
            self.cell_hooks.install()

    @contextmanager
    def _background_run(self) -> Iterator[None]:
        # Entered by the engine inside its thread: output to the starting cell, last refresh at the end.
        with self._routed():
            try:
                yield
            finally:
                if self.trainer.status not in (RUNNING, PAUSED):
                    self.cell_hooks.remove()  # the run has ended: cells need no guard until the next one
                if not self._closed.is_set():
                    self._guarded("refresh", self.refresh)()

    def _on_interrupt(self) -> bool:
        # In the kernel's main thread, from a signal handler: only thread-safe calls, no waiting.
        if self._closed.is_set() or not self.controller.interrupt():
            return False
        self._wake()
        return True

    # ------------------------------------------------------------------ public API

    def start(self, data: Iterable | None = None, max_epochs: int | None = None, epoch_length: int | None = None, max_iters: int | None = None) -> TrainingPanel:
        """Start (or continue) training in the background and return the panel, so that
        ``TrainingPanel(trainer, ...).start()`` as a cell's last line shows it. Arguments given here
        replace those given to the panel. Printed output goes to the cell calling this; while the
        run is active, every cell of the kernel is guarded (see ``guard_cells``)."""
        self.controller.set_run_arguments(data, max_epochs, epoch_length, max_iters)
        parent = self._session.current_parent()
        if parent is not None:
            self._output_parent = parent
        self.controller.start()
        self.refresh()
        return self

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for a replay started by the Replay button and for the background run to end
        (finished, paused or failed), each up to ``timeout`` seconds, and return the trainer's
        state, with the display (plots included) showing it; re-raises the run's exception."""
        try:
            return self.controller.wait(timeout)
        finally:
            if self.trainer.status != RUNNING and not self._closed.is_set():
                self.refresh()
                self._draw_due_plots()

    def refresh(self) -> None:
        """Bring the display up to date now (any thread)."""
        with self._lock:
            if self._closed.is_set():
                return
            if self._display.refresh():
                self._plot_thread.wake()
            self.refresh_count += 1

    def close(self) -> None:
        """Remove the panel: stop refreshing, detach its recorders and cell hooks, close its widgets.
        The run itself goes on; ``trainer.stop()`` ends it."""
        self._close(stop_run=False, unregister=True)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # ------------------------------------------------------------------ closing

    def _close(self, stop_run: bool, unregister: bool) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self.controller.closed = True
        if stop_run and self.trainer.status in (RUNNING, PAUSED):
            self.trainer.stop()
            try:
                self.controller.join(_STOP_EARLIER_SECONDS)
            except TimeoutError:
                pass  # reported by the replacing panel, which checks the status
        self.cell_hooks.remove()
        self._unregister_after_cell()
        self._stop_forwarding_interrupts()
        self._refresher.close()
        self._plot_thread.close()
        self._renderer.close()
        self.timeline.detach()
        self.loss_source.detach()
        if unregister:
            self._session.unregister(self.key, self)
        with self._lock:
            close_all(self.widget)

    # ------------------------------------------------------------------ clicks

    def _guarded(self, action: str, function: Callable[[], None]) -> Callable[..., None]:
        def run(*_: Any) -> None:
            try:
                with self._routed():
                    function()
            except ActionRefused as refusal:
                self.controller.show(str(refusal), "#ef6c00")
            except Exception as error:  # shown in the panel and kept in self.errors, never dropped
                self._report_error(action, error)
            if action != "refresh" and not self._closed.is_set():
                try:
                    self.refresh()
                except Exception as error:  # same: shown and kept
                    self._report_error("refresh", error)

        return run

    def _report_error(self, action: str, error: BaseException) -> None:
        logger.error("nbengine panel: %s failed: %r", action, error, exc_info=error)
        self.controller.report_error(action, error)
        self._wake()

    def _wake(self) -> None:
        # Called from the training side or a signal handler: only wake the refresh thread.
        refresher = getattr(self, "_refresher", None)
        if refresher is not None:
            refresher.wake()

    def _show_report(self, report: Any) -> None:
        with self._lock:
            if not self._closed.is_set():
                self.checkpoints_view.show_report(report)

    # ------------------------------------------------------------------ refreshing

    def _on_view_option(self, change: Any) -> None:
        self._display.view_version += 1
        self.timeline_view.force()
        self._guarded("refresh", self.refresh)()

    def _publish(self, show: Callable[[], None]) -> bool:
        with self._lock:
            if self._closed.is_set():
                return False
            show()
            self.plot_count += 1
            return True

    def _draw_due_plots(self) -> float | None:
        """Draw what is due (on the plot thread, or in ``wait()``); the seconds until the loss plot is next due."""
        with self._plot_lock:
            if self._closed.is_set():
                return None
            return self._display.draw_due_plots(self._publish)


def _build_views(self: TrainingPanel, schedule: PlotSchedule, plot_size: tuple[int, int, int]) -> None:
    """The panel's views, their clicks connected to its controller, and their layout."""
    self.controls_view = RunControlsView()
    self.buttons, self.status_badge, self.message = self.controls_view.buttons, self.controls_view.status_badge, self.controls_view.message
    actions = {name: getattr(self.controller, name) for name in RUN_CONTROLS}
    for name, action in actions.items():
        self.buttons[name].on_click(self._guarded(CONTROL_LABELS[name], action))
    self.state_view = widgets.HTML(layout=widgets.Layout(flex="1 1 280px", max_width="420px", min_width="0"))
    self.state_view.add_class("nbengine-state-view")
    note = "" if self.evaluator is not None else "Validation metrics are off: no evaluator was given (TrainingPanel(..., evaluator=...))."
    self.loss_view = LossView(self.loss_source, self._renderer.render, schedule, note, plot_size)
    self.loss_image, self.log_scale, self.validation_note = self.loss_view.image, self.loss_view.log_scale, self.loss_view.note
    self.log_scale.observe(self._on_view_option, names="value")
    self.timeline_view = TimelineView(self.timeline, self._renderer.render)
    self.timeline_view.filter.observe(self._on_view_option, names="value")
    self.checkpoints_view = CheckpointsView(
        None if self.checkpoint is not None else "Checkpoints are off: no checkpoint handler was given (TrainingPanel(..., checkpoint=Checkpoint(...))).",
        None if self.replay is not None else "Replay is off: no epoch replay was given (TrainingPanel(..., replay=EpochReplay(trainer, ...))).",
    )
    view = self.checkpoints_view
    self.save_button, self.load_button, self.replay_button = view.save_button, view.load_button, view.replay_button
    self.save_button.on_click(self._guarded("Save", self.controller.save))
    self.load_button.on_click(self._guarded("Load", lambda: self.controller.load(view.checkpoints.value)))
    self.replay_button.on_click(self._guarded("Replay", lambda: self.controller.replay_epoch(view.replay_epoch.value)))
    view.checkpoints.observe(self._guarded("refresh", lambda: self._display.show_checkpoint_controls(self.controller.shown_status())), names="value")
    self.controller.on_replay_report = self._show_report
    self.widget = widgets.VBox(
        [
            *self.controls_view.children,
            widgets.HBox([self.state_view, self.loss_view.widget], layout=widgets.Layout(flex_flow="row wrap", grid_gap="12px")),
            self.timeline_view.widget,
            view.widget,
        ],
        layout=widgets.Layout(border="1px solid #ddd", padding="8px", max_width="100%", overflow="hidden"),
    )
    self.widget.add_class("nbengine-panel")
