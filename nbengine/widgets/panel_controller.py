"""``PanelController``: what the panel's buttons do and when each may be pressed, with no widgets.

This module owns the panel's commands (Run, Pause, Step, Step event, Step epoch, Resume, Stop,
Save, Load, Replay, and what ■ does), the rules that enable each control in each status (with the
sentence shown as its tooltip), the message line's content, and the errors kept. It imports no
ipywidgets, IPython or matplotlib, so it is tested headless; ``TrainingPanel`` shows it.

Threads. Training runs in the engine's own background thread (``engine.start``) and a replay in
one of the controller's; the commands run on the caller's thread (the kernel's main thread for a
click). Whatever changes training state (save, load, step) runs at a boundary
(``call_at_boundary``) or, when paused, in the caller's thread with the engine's lock. The
controller calls ``on_change()`` when something it holds changed outside a command (a Save done
at a boundary, a replay ended), so that a view can refresh.

Background runs are started with ``thread_setup`` (a context manager entered in the training
thread: the panel routes printed output to its cell there) after ``before_background()`` (the
panel installs the cell hooks there).
"""

from __future__ import annotations

import numbers
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from nbengine.engine import IDLE, PAUSED, RUNNING, Engine, Events
from nbengine.handlers.checkpoint import Checkpoint, DiskSaver
from nbengine.handlers.replay import EpochReplay
from nbengine.widgets.checkpoint_shelf import CheckpointShelf
from nbengine.widgets.controls import CONTROL_HELP, CONTROL_LABELS, RUN_CONTROLS, control_reasons

__all__ = ["PanelController", "ControlRules", "ActionRefused", "Message", "CHECKPOINT_CONTROLS", "SETTLE_SECONDS"]

#: How long a command waits for the background thread to reach its next boundary before saying so.
SETTLE_SECONDS = 5.0
#: The checkpoint and replay controls, with the run controls' rules in ``checkpoint_reasons``.
CHECKPOINT_CONTROLS = ("save", "load", "replay")

_ORANGE, _GREEN, _BLUE, _RED = "#ef6c00", "#2e7d32", "#1565c0", "#c62828"


class ActionRefused(RuntimeError):
    """A button was pressed when its action makes no sense (the status changed since it was drawn)."""


@dataclass(frozen=True)
class Message:
    """The message line: ``text`` in ``colour``, a traceback in ``details``; with ``when_still`` (a
    format string with ``{position}``) it describes something under way, and is replaced by
    ``when_still`` once the run stands still."""

    text: str
    colour: str = _GREEN
    details: str | None = None
    when_still: str | None = None


def check_run_arguments(data: Any, max_epochs: Any, epoch_length: Any, max_iters: Any) -> None:
    """Refuse what ``engine.run`` would refuse, at the call."""
    if data is not None and not isinstance(data, Iterable):
        raise TypeError(f"data should be an iterable (a list, a DataLoader) or None, got {data!r} of type {type(data).__name__}")
    for name, value in (("max_epochs", max_epochs), ("epoch_length", epoch_length), ("max_iters", max_iters)):
        if value is not None and (not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{name} should be a positive integer or None, got {value!r}")
    if max_epochs is not None and max_iters is not None:
        raise ValueError(f"max_epochs and max_iters are mutually exclusive, got max_epochs={max_epochs} and max_iters={max_iters}")


def _check_parts(trainer: Any, evaluator: Any, checkpoint: Any, replay: Any, optimizer: Any) -> None:
    if not isinstance(trainer, Engine):
        raise TypeError(f"trainer should be an nbengine Engine, got {trainer!r} of type {type(trainer).__name__}")
    if evaluator is not None and not isinstance(evaluator, Engine):
        raise TypeError(f"evaluator should be an nbengine Engine or None, got {evaluator!r} of type {type(evaluator).__name__}")
    if evaluator is trainer:
        raise ValueError("evaluator should be another engine than trainer, got the trainer itself")
    if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
        raise TypeError(f"checkpoint should be an nbengine Checkpoint or None, got {checkpoint!r} of type {type(checkpoint).__name__}")
    if checkpoint is not None and not isinstance(checkpoint.save_handler, DiskSaver):
        raise TypeError(
            "checkpoint should save through a DiskSaver (the panel lists the saved checkpoints from its "
            f"folder), got a Checkpoint whose save_handler is {checkpoint.save_handler!r}"
        )
    if replay is not None and (not isinstance(replay, EpochReplay) or replay.history.engine is not trainer):
        raise ValueError(f"replay should be an EpochReplay of the trainer (EpochReplay(trainer, ...)), got {replay!r}")
    if optimizer is not None and not isinstance(getattr(optimizer, "param_groups", None), list):
        raise TypeError(f"optimizer should be a torch optimizer (with param_groups) or None, got {optimizer!r}")


class ControlRules:
    """What a panel driving ``trainer`` may do now and what it says: the enabling rules (with
    the tooltips), the message line, the errors kept. ``PanelController`` adds the commands.

    Args are ``TrainingPanel``'s of the same names; ``thread_setup``, ``output``,
    ``before_background`` and ``on_change`` connect it to the kernel and to its view.
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
        replay: EpochReplay | None = None,
        optimizer: Any = None,
        thread_setup: Callable[[], AbstractContextManager] | None = None,
        output: Callable[[], AbstractContextManager] | None = None,
        before_background: Callable[[], None] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        _check_parts(trainer, evaluator, checkpoint, replay, optimizer)
        check_run_arguments(data, max_epochs, epoch_length, max_iters)
        self.trainer, self.evaluator, self.checkpoint = trainer, evaluator, checkpoint
        self.replay, self.optimizer = replay, optimizer
        self._run_args = {"data": data, "max_epochs": max_epochs, "epoch_length": epoch_length, "max_iters": max_iters}
        self._thread_setup = thread_setup or nullcontext
        self._output = output or nullcontext
        self._before_background = before_background or (lambda: None)
        self._on_change = on_change or (lambda: None)
        self.shelf = CheckpointShelf(checkpoint) if checkpoint is not None else None
        #: Exceptions raised by commands and refreshes, newest last (also shown in the message line).
        self.errors: deque[BaseException] = deque(maxlen=20)
        #: The message line's content, and a count that grows with each new message.
        self.message: Message | None = None
        self.message_version = 0
        # The trainer's iteration right after a Load: while it stands there, the loaded run shows
        # as paused, and Resume and Step continue it.
        self._loaded_at: int | None = None
        # The epoch a background replay is replaying (None: no replay running), and its thread.
        self.replaying_epoch: int | None = None
        self.replay_thread: threading.Thread | None = None
        self.closed = False
        #: Loads done so far (a view caches what it read of the run per load).
        self.load_count = 0
        #: Called with the report of a replay that ended (the view shows its table).
        self.on_replay_report: Callable[[Any], None] = lambda report: None

    # ------------------------------------------------------------------ messages

    def show(self, text: str, colour: str = _GREEN, details: str | None = None, when_still: str | None = None) -> None:
        """Show ``text`` in the message line (see ``Message``)."""
        self.message = Message(text, colour, details, when_still)
        self.message_version += 1

    def report_error(self, action: str, error: BaseException) -> None:
        """Keep ``error`` and show it with its traceback."""
        self.errors.append(error)
        trace = "".join(traceback.format_exception(error))
        self.show(f"{action} failed: {type(error).__name__}: {error}", _RED, details=trace)

    def settle_message(self, status: str) -> None:
        """Replace a message about something under way once the run stands still."""
        message = self.message
        if message is not None and message.when_still is not None and status != RUNNING:
            self.show(message.when_still.format(position=self.position()), _ORANGE)

    def position(self) -> str:
        state = self.trainer.state
        name = getattr(self.trainer.last_event, "name", self.trainer.last_event)
        return f"epoch {state.epoch}, iteration {state.iteration} ({name})"

    # ------------------------------------------------------------------ rules

    def shown_status(self) -> str:
        """The engine's status, except that a loaded run that has not moved since shows as paused."""
        status = self.trainer.status
        if self._loaded_at is not None:
            if status == IDLE and self.trainer.state.iteration == self._loaded_at:
                return PAUSED
            self._loaded_at = None
        return status

    def _busy_reason(self) -> str | None:
        epoch = self.replaying_epoch
        if epoch is None:
            return None
        # The replay holds the trainer's lock and has the trained objects at the replayed epoch.
        return f"epoch {epoch} is being replayed: its report comes when the replay ends"

    def can_start(self) -> tuple[bool, str]:
        """Whether Run knows what to run, and what is missing when it does not."""
        if self._run_args["data"] is not None or self._run_args["epoch_length"] is not None:
            return True, ""
        if self.trainer.state.dataloader is not None:
            return True, ""
        return False, "the panel has no data to run: give TrainingPanel(trainer, data=...) or call panel.start(data)"

    def control_reasons(self, status: str) -> dict[str, str | None]:
        """For each run control: None when enabled in ``status``, else why not (its tooltip)."""
        busy = self._busy_reason()
        if busy is not None:
            return dict.fromkeys(RUN_CONTROLS, busy)
        can_start, why = self.can_start()
        return control_reasons(status, can_start=can_start, cannot_start_reason=why)

    def control_help(self, name: str, status: str) -> str:
        """The tooltip of an enabled control (run or checkpoint): what it will do now."""
        if name == "run" and status in ("done", "failed"):
            return "Start a new run from iteration 0 in the background (the finished run is replaced)"
        if name == "resume" and self._loaded_at is not None:
            return "Continue the loaded run from where it was saved, in the background"
        if name == "save":
            when = "at the next event boundary" if status == RUNNING else "of this position"
            return f"Save a checkpoint {when} (kept apart from the periodic ones: their rotation never removes it)"
        if name == "load":
            return "Load the selected checkpoint; the run then stands paused there"
        if name == "replay":
            return "Re-run the selected epoch from its snapshot and compare"
        return CONTROL_HELP[name]

    def checkpoint_reasons(self, status: str, selected: str | None, replayable: bool) -> dict[str, str | None]:
        """For Save, Load and Replay: None when enabled, else why not. ``selected``: the checkpoint
        chosen in the list; ``replayable``: whether an epoch snapshot is there to replay."""
        busy = self._busy_reason()
        if busy is not None:
            return dict.fromkeys(CHECKPOINT_CONTROLS, busy)
        reasons: dict[str, str | None] = dict.fromkeys(("save", "load"), "no checkpoint handler was given")
        if self.checkpoint is not None:
            reasons["save"] = None
            if status == RUNNING:
                reasons["load"] = "Load is possible while the run stands still: Pause it first"
            else:
                reasons["load"] = None if selected else "no checkpoint saved yet"
        if self.replay is None:
            reasons["replay"] = "no epoch replay was given"
        elif status == RUNNING:
            reasons["replay"] = "Replay is possible only while the trainer is not running: Pause it first"
        else:
            reasons["replay"] = None if replayable else "no epoch snapshot yet: snapshots are taken at the start of each epoch"
        return reasons

    def _refuse_unless_enabled(self, name: str) -> None:
        reason = self.control_reasons(self.shown_status())[name]
        if reason is not None:
            raise ActionRefused(f"{CONTROL_LABELS[name]} is not possible now: {reason}")

    def _refuse_while_replaying(self, name: str) -> None:
        busy = self._busy_reason()
        if busy is not None:
            raise ActionRefused(f"{name} is not possible now: {busy}")

class PanelController(ControlRules):
    """The commands of a panel driving ``trainer`` (see the module docstring), under its rules."""

    # ------------------------------------------------------------------ waiting

    def join(self, timeout: float) -> None:
        """Wait for the background thread to end. A failure of the run stays with the trainer
        (``trainer.error``; ``wait()`` re-raises it) and is shown by the State view, so it is not
        raised into the command that happened to wait for it."""
        try:
            self.trainer.wait(timeout)
        except TimeoutError:
            raise
        except BaseException as error:
            if error is not self.trainer.error:
                raise

    def settle(self) -> None:
        """After a pause, wait for the background thread to finish leaving (a boundary away)."""
        if self.trainer.status != RUNNING:
            self.join(SETTLE_SECONDS)

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for a replay and for the background run, each up to ``timeout`` s; the trainer's state."""
        replay_thread = self.replay_thread
        if replay_thread is not None:
            replay_thread.join(timeout)
            if replay_thread.is_alive():
                raise TimeoutError(f"the replay of epoch {self.replaying_epoch} is still running after {timeout} s")
        return self.trainer.wait(timeout)

    # ------------------------------------------------------------------ run commands

    def set_run_arguments(self, data: Any = None, max_epochs: Any = None, epoch_length: Any = None, max_iters: Any = None) -> None:
        """Replace what Run runs with what is given (None: keep)."""
        check_run_arguments(data, max_epochs, epoch_length, max_iters)
        if max_epochs is not None or max_iters is not None:
            self._run_args.update(max_epochs=max_epochs, max_iters=max_iters)
        if data is not None:
            self._run_args["data"] = data
        if epoch_length is not None:
            self._run_args["epoch_length"] = epoch_length

    def run_arguments(self) -> dict[str, Any]:
        """The arguments of ``engine.run`` for Run (the engine's last ones where none were given)."""
        state = self.trainer.state
        max_epochs, max_iters = self._run_args["max_epochs"], self._run_args["max_iters"]
        if max_epochs is None and max_iters is None:
            max_iters = state.max_iters
            max_epochs = state.max_epochs if max_iters is None else None
        arguments: dict[str, Any] = {"data": self._run_args["data"], "max_epochs": max_epochs, "max_iters": max_iters}
        if self._run_args["epoch_length"] is not None:
            arguments["epoch_length"] = self._run_args["epoch_length"]
        return arguments

    def _start_background(self, **arguments: Any) -> None:
        self._before_background()
        self.trainer.start(**arguments, thread_setup=self._thread_setup)

    def start(self) -> None:
        """Start (or continue, when paused) the run in the background."""
        self.settle()
        if self.trainer.status == PAUSED:
            self._start_background()
        else:
            self._start_background(**self.run_arguments())

    def run(self) -> None:
        self.settle()
        self._refuse_unless_enabled("run")
        self._start_background(**self.run_arguments())

    def pause(self) -> None:
        self._refuse_unless_enabled("pause")
        self.trainer.pause()
        try:
            self.join(SETTLE_SECONDS)
        except TimeoutError:
            self.show("Pausing: the engine pauses at its next event boundary.", _ORANGE, when_still="Paused at {position}.")
            return
        self.show(f"Paused at {self.position()}.", _ORANGE)

    def step(self) -> None:
        self._step("step", n=1)

    def step_event(self) -> None:
        self._step("step_event", events=1)

    def step_epoch(self) -> None:
        # An epoch can be long: stepped in the background thread, so the kernel stays free for clicks
        # (Pause works during it), the panel updates live, and its output goes to the panel's cell.
        self.settle()
        self._refuse_unless_enabled("step_epoch")
        if self.trainer.status == PAUSED:
            # start(), not resume(): the thread is entered with the panel's output routing even when
            # the run was begun by a Step in the kernel's main thread (which gave it none).
            self._start_background(until=Events.EPOCH_COMPLETED)
        else:
            self._start_background(**self.run_arguments(), until=Events.EPOCH_COMPLETED)
        self.show("Stepping to the end of the epoch…", _GREEN, when_still="Stepped to {position}.")

    def _step(self, name: str, **condition: Any) -> None:
        self.settle()
        self._refuse_unless_enabled(name)
        if self.trainer.status == PAUSED:
            self.trainer.step(**condition)
        else:
            self.trainer.step(**condition, **self.run_arguments())
        self.show(f"Stepped to {self.position()}.", _ORANGE)

    def resume(self) -> None:
        self.settle()
        self._refuse_unless_enabled("resume")
        if self.trainer.status == IDLE:
            # A loaded run: continued with what the panel runs (the loaded state says where).
            self._start_background(**self.run_arguments())
        else:
            self._start_background()

    def stop(self) -> None:
        self.settle()
        self._refuse_unless_enabled("stop")
        if self.trainer.status == IDLE:
            # A loaded run that was not continued: nothing runs; it is no longer shown as paused.
            self._loaded_at = None
            self.show(f"The loaded run is left at {self.position()}; Run starts it again.", _BLUE)
            return
        if self.trainer.status == PAUSED:
            # Ending a paused run runs its TERMINATE and COMPLETED handlers (a last evaluation, a
            # last save), which can take long: in the background, like the run, not in the click.
            self.trainer.terminate()
            self._start_background()
        else:
            self.trainer.stop()
        try:
            self.join(SETTLE_SECONDS)
        except TimeoutError:
            self.show("Stopping: the run ends at its next event boundary.", _ORANGE, when_still="Stopped at {position}.")
            return
        self.show(f"Stopped at {self.position()}.", _BLUE)

    def interrupt(self) -> bool:
        """■ (SIGINT between cells): pause a running run; False when there is none. Called from a
        signal handler: only thread-safe calls, no waiting."""
        if self.closed or self.trainer.status != RUNNING:
            return False
        self.trainer.pause()
        self.show("■ pausing the run…", _ORANGE, when_still="■ paused the run at {position}; Resume continues it.")
        return True

    # ------------------------------------------------------------------ checkpoint commands

    def save(self) -> None:
        if self.shelf is None:
            raise RuntimeError("Save is not possible: the panel has no checkpoint handler")
        self._refuse_while_replaying("Save")
        future, new = self.shelf.save(self.trainer)
        if not new:
            self.show(f"Already saved at this position: {future.result()} (nothing overwritten).", _ORANGE)
            return
        if future.done():
            self._on_saved(future)
        else:
            self.show("Saving at the next event boundary…", _ORANGE)
            future.add_done_callback(self._on_saved)

    def _on_saved(self, future: Any) -> None:
        # Runs on the training side when the save happened at a boundary: only note and wake.
        error = future.exception()
        if error is not None:
            self.report_error("Save", error)
        else:
            self.show(f"Saved {future.result()}.")
        self._on_change()

    def load(self, path: str | None) -> None:
        """Load the checkpoint at ``path`` into the handler's objects; the run then stands paused there."""
        if self.shelf is None:
            raise RuntimeError("Load is not possible: the panel has no checkpoint handler")
        self._refuse_while_replaying("Load")
        self.settle()
        if self.trainer.status == RUNNING:
            raise ActionRefused("Load is possible only while the run stands still: Pause it first")
        if not path:
            raise ActionRefused("Load needs a checkpoint: none is selected (save one first)")
        loader, to_load = type(self.checkpoint).load_objects, self.checkpoint.to_save  # type: ignore[union-attr]
        self.trainer.call_at_boundary(lambda: loader(to_load=to_load, checkpoint=path)).result()
        self._loaded_at = self.trainer.state.iteration
        self.load_count += 1
        self.shelf.select(path)
        self.show(f"Loaded {path}: paused at {self.position()}; Resume or Step continues from there.", _BLUE)

    def replay_epoch(self, epoch: int | None) -> None:
        """Replay ``epoch`` in a background thread (the controls stay off until its report)."""
        if self.replay is None:
            raise RuntimeError("Replay is not possible: the panel has no epoch replay")
        self._refuse_while_replaying("Replay")
        self.settle()
        if self.trainer.status == RUNNING:
            raise ActionRefused("Replay is possible only while the trainer is not running: Pause it first")
        if epoch is None:
            raise ActionRefused("Replay needs an epoch: no epoch snapshot yet")
        self.replaying_epoch = epoch
        thread = threading.Thread(target=self._replay_in_background, args=(epoch,), name="nbengine-replay", daemon=True)
        self.replay_thread = thread
        self.show(f"Replaying epoch {epoch} in the background…", _ORANGE)
        try:
            thread.start()
        except BaseException:
            self.replaying_epoch = None
            raise

    def _replay_in_background(self, epoch: int) -> None:
        with self._output():
            try:
                report = self.replay.replay_epoch(epoch)  # type: ignore[union-attr]
            except Exception as error:  # shown in the panel and kept in self.errors, like a command's
                self.report_error("Replay", error)
            else:
                self.on_replay_report(report)
                self.show(str(report), _GREEN if report.reproduced else _RED)
            finally:
                self.replaying_epoch = None
                self._on_change()  # the next refresh turns the controls back on
