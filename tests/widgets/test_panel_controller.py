"""The panel's controller without widgets: enabling rules per status, the checkpoint selection after
Save and Load, manual checkpoints surviving the periodic rotation, Step epoch's output routing, and
which evaluations the loss plot is fed. No ipywidgets is imported here (a test checks it)."""

from __future__ import annotations

import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from nbengine.engine import Engine, Events
from nbengine.handlers import Checkpoint, DiskSaver, EventTimeline
from nbengine.widgets.controls import RUN_CONTROLS
from nbengine.widgets.loss_source import LossSource
from nbengine.widgets.panel_controller import ActionRefused, PanelController

from ._training import Mlp, wait_until

REPO = Path(__file__).resolve().parents[2]

NO_DATA = "the panel has no data to run: give TrainingPanel(trainer, data=...) or call panel.start(data)"


@pytest.fixture
def controllers():
    made: list[PanelController] = []
    yield made
    for controller in made:
        if controller.trainer.status in ("running", "paused"):
            controller.trainer.stop()
        try:
            controller.trainer.wait(timeout=30)
        except Exception:  # noqa: BLE001 - a test that expects a failed run has already checked it
            pass


def make(controllers, trainer, **kwargs) -> PanelController:
    controller = PanelController(trainer, **kwargs)
    controllers.append(controller)
    return controller


def checkpoint_of(mlp: Mlp, folder: Path, n_saved: int | None = None) -> Checkpoint:
    return Checkpoint({"trainer": mlp.trainer, "model": mlp.model, "optimizer": mlp.optimizer}, DiskSaver(folder, create_dir=True), n_saved=n_saved)


def test_the_controller_imports_without_ipywidgets_or_ipython():
    code = (
        "import sys, nbengine.widgets.panel_controller, nbengine.widgets.loss_source, nbengine.widgets.refresh;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'ipywidgets', 'IPython'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"


def test_enabling_rules_per_status(controllers, tmp_path):
    mlp = Mlp()
    controller = make(controllers, mlp.trainer, checkpoint=checkpoint_of(mlp, tmp_path))
    # Idle without data: nothing to run, and the reason says what to give.
    assert controller.control_reasons("idle") == {
        "run": NO_DATA, "pause": "nothing to pause: the engine is idle", "step": NO_DATA, "step_event": NO_DATA,
        "step_epoch": NO_DATA, "resume": "nothing to resume: the engine is idle", "stop": "nothing to stop: the engine is idle",
    }  # fmt: skip
    controller.set_run_arguments(data=mlp.data, max_epochs=100_000)
    enabled = {name for name, reason in controller.control_reasons("idle").items() if reason is None}
    assert enabled == {"run", "step", "step_event", "step_epoch"}
    controller.start()
    wait_until(lambda: mlp.trainer.state.iteration >= 5, what="5 iterations")
    status = controller.shown_status()
    assert status == "running"
    reasons = controller.control_reasons(status)
    assert [name for name in RUN_CONTROLS if reasons[name] is None] == ["pause", "stop"]
    assert reasons["run"] == "the engine is running: Pause or Stop it first"
    assert reasons["step"] == "the engine is running: Pause it first"
    assert controller.checkpoint_reasons(status, None, False) == {
        "save": None,
        "load": "Load is possible while the run stands still: Pause it first",
        "replay": "no epoch replay was given",
    }
    controller.pause()
    assert controller.shown_status() == "paused"
    reasons = controller.control_reasons("paused")
    assert [name for name in RUN_CONTROLS if reasons[name] is None] == ["step", "step_event", "step_epoch", "resume", "stop"]
    assert reasons["run"] == "the run is paused: Resume, Step or Stop it"
    assert controller.checkpoint_reasons("paused", None, False)["load"] == "no checkpoint saved yet"
    assert controller.checkpoint_reasons("paused", "/some/file.pt", False)["load"] is None
    controller.stop()
    assert mlp.trainer.status == "done"
    reasons = controller.control_reasons("done")
    assert [name for name in RUN_CONTROLS if reasons[name] is None] == ["run", "step", "step_event", "step_epoch"]
    assert controller.control_help("run", "done") == "Start a new run from iteration 0 in the background (the finished run is replaced)"
    with pytest.raises(ActionRefused, match="Resume is not possible now: nothing to resume: the engine is done"):
        controller.resume()


def test_a_failed_run_enables_run_and_steps_only(controllers):
    mlp = Mlp(fail_at=3)
    controller = make(controllers, mlp.trainer, data=mlp.data, max_epochs=5)
    controller.start()
    with pytest.raises(ValueError, match="bad batch at iteration 3"):
        controller.wait(timeout=30)
    reasons = controller.control_reasons(controller.shown_status())
    assert controller.shown_status() == "failed"
    assert [name for name in RUN_CONTROLS if reasons[name] is None] == ["run", "step", "step_event", "step_epoch"]


def test_the_selection_follows_save_and_load(controllers, tmp_path):
    mlp = Mlp(batches=10)
    periodic = checkpoint_of(mlp, tmp_path, n_saved=None)
    mlp.trainer.add_event_handler(Events.EPOCH_COMPLETED, periodic)
    controller = make(controllers, mlp.trainer, data=mlp.data, max_epochs=100, checkpoint=periodic)
    shelf = controller.shelf
    controller.step_epoch()
    controller.wait(timeout=30)
    controller.step()
    controller.step()  # paused at iteration 12
    listing = shelf.listing()
    assert [info.iteration for info in listing] == [10]
    assert shelf.selection(listing, None) == str(listing[0].path)
    controller.save()  # paused: saved at once
    listing = shelf.listing()
    assert [info.iteration for info in listing] == [12, 10]
    # The user had chosen the epoch checkpoint: the one just saved is selected all the same.
    assert shelf.selection(listing, str(listing[1].path)) == str(listing[0].path)
    assert controller.message.text == f"Saved {listing[0].path}."
    # Between events the user's choice stays.
    assert shelf.selection(listing, str(listing[1].path)) == str(listing[1].path)
    # Saving again at the same position writes nothing and selects that file.
    controller.save()
    assert controller.message.text == f"Already saved at this position: {listing[0].path} (nothing overwritten)."
    assert shelf.selection(shelf.listing(), str(listing[1].path)) == str(listing[0].path)

    controller.step_epoch()  # to iteration 20: a new epoch checkpoint, the newest, is selected
    controller.wait(timeout=30)
    listing = shelf.listing()
    assert [info.iteration for info in listing] == [20, 12, 10]
    assert shelf.selection(listing, str(listing[1].path)) == str(listing[0].path)

    controller.load(str(listing[2].path))
    assert mlp.trainer.state.iteration == 10
    assert controller.shown_status() == "paused"  # a loaded run stands paused there
    assert controller.control_reasons("paused")["resume"] is None
    assert shelf.selection(shelf.listing(), str(listing[0].path)) == str(listing[2].path)
    assert controller.message.text.startswith(f"Loaded {listing[2].path}: paused at epoch 1, iteration 10")


def test_checkpoints_saved_with_the_button_survive_the_rotation(controllers, tmp_path):
    mlp = Mlp(batches=5)
    periodic = checkpoint_of(mlp, tmp_path, n_saved=1)
    mlp.trainer.add_event_handler(Events.EPOCH_COMPLETED, periodic)
    controller = make(controllers, mlp.trainer, data=mlp.data, max_epochs=6, checkpoint=periodic)
    controller.step()
    controller.step()
    controller.save()
    manual = Path(controller.shelf.listing()[0].path)
    assert manual.name.startswith("manual_") and manual.exists()
    controller.start()
    controller.wait(timeout=60)
    assert mlp.trainer.status == "done"
    listing = controller.shelf.listing()
    # The periodic handler keeps only its last one; the button's file is still there and listed.
    assert sorted(info.iteration for info in listing) == [2, 30]
    assert manual.exists() and manual in [info.path for info in listing]


def test_step_epoch_runs_in_the_background_inside_the_output_routing(controllers):
    mlp = Mlp(batches=10)
    routed = threading.local()
    calls: list[tuple[bool, bool]] = []

    @contextmanager
    def thread_setup():
        routed.inside = True
        try:
            yield
        finally:
            routed.inside = False

    def handler(engine):
        calls.append((getattr(routed, "inside", False), threading.current_thread() is threading.main_thread()))

    mlp.trainer.add_event_handler(Events.ITERATION_COMPLETED, handler)
    controller = make(controllers, mlp.trainer, data=mlp.data, max_epochs=3, thread_setup=thread_setup)
    controller.step()  # from idle: one iteration, paused
    calls.clear()
    controller.step_epoch()
    assert controller.message.text == "Stepping to the end of the epoch…"
    controller.wait(timeout=30)
    assert mlp.trainer.state.iteration == 10 and mlp.trainer.status == "paused"
    # Every handler of the epoch ran in the training thread, inside the routing the panel gives.
    assert calls == [(True, False)] * 9
    controller.settle_message(mlp.trainer.status)
    assert controller.message.text == "Stepped to epoch 1, iteration 10 (EPOCH_COMPLETED)."


def test_interrupt_pauses_a_running_run_only(controllers):
    mlp = Mlp()
    controller = make(controllers, mlp.trainer, data=mlp.data, max_epochs=100_000)
    assert controller.interrupt() is False
    controller.start()
    wait_until(lambda: mlp.trainer.state.iteration >= 5, what="5 iterations")
    assert controller.interrupt() is True
    controller.wait(timeout=30)
    assert mlp.trainer.status == "paused"
    controller.settle_message("paused")
    assert controller.message.text == f"■ paused the run at {controller.position()}; Resume continues it."


def test_a_manual_evaluation_is_not_plotted_as_an_epoch():
    mlp = Mlp(batches=4)
    evaluator = Engine(lambda engine, batch: None)
    evaluator.add_event_handler(Events.COMPLETED, lambda engine: engine.state.metrics.update(loss=float(engine.state.epoch)))
    mlp.trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: evaluator.run([0], max_epochs=1))
    reached, release = threading.Event(), threading.Event()

    def hold_at_six(engine):
        # The training thread waits here, running, while the main thread evaluates by hand.
        if engine.state.iteration == 6:
            reached.set()
            release.wait(30)

    mlp.trainer.add_event_handler(Events.ITERATION_COMPLETED, hold_at_six)
    source = LossSource(mlp.trainer, EventTimeline(outputs=100).attach(mlp.trainer), evaluator)
    mlp.trainer.start(mlp.data, max_epochs=3, until=Events.EPOCH_COMPLETED)
    mlp.trainer.wait(timeout=30)
    evaluator.run([0], max_epochs=1)  # by hand, while paused
    mlp.trainer.resume()
    assert reached.wait(30)
    assert mlp.trainer.status == "running"
    evaluator.run([0], max_epochs=1)  # by hand, in another thread than the training's, while it runs
    release.set()
    mlp.trainer.wait(timeout=30)
    evaluator.run([0], max_epochs=1)  # by hand, after the run
    xs, _ = source.loss_data().metrics["loss"]
    assert xs.tolist() == [4.0, 8.0, 12.0]
    source.detach()


def test_an_evaluator_attached_after_the_loss_source_is_plotted_at_its_epochs():
    mlp = Mlp(batches=4)
    evaluator = Engine(lambda engine, batch: None)
    evaluator.add_event_handler(Events.COMPLETED, lambda engine: engine.state.metrics.update(accuracy=0.5))
    source = LossSource(mlp.trainer, EventTimeline(outputs=100).attach(mlp.trainer), evaluator)
    # Attached after the source's own handlers: confirmed at the next EPOCH_COMPLETED or COMPLETED.
    mlp.trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: evaluator.run([0], max_epochs=1))
    mlp.trainer.start(mlp.data, max_epochs=3)
    mlp.trainer.wait(timeout=30)
    xs, ys = source.loss_data().metrics["accuracy"]
    assert xs.tolist() == [4.0, 8.0, 12.0] and ys.tolist() == [0.5] * 3
    source.detach()


def test_the_loss_source_reads_each_output_once_and_follows_the_ring_buffer_and_a_clear():
    outputs = iter(range(1, 10_000))
    trainer = Engine(lambda engine, batch: float(next(outputs)))
    timeline = EventTimeline(outputs=5).attach(trainer)
    source = LossSource(trainer, timeline)
    trainer.run([0] * 3, max_epochs=1)
    data = source.loss_data()
    assert (data.iterations.tolist(), data.outputs.tolist()) == ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    trainer.run([0] * 3, max_epochs=2)  # iterations 4-6: the buffer of 5 keeps 2-6
    data = source.loss_data()
    assert (data.iterations.tolist(), data.outputs.tolist()) == ([2.0, 3.0, 4.0, 5.0, 6.0], [2.0, 3.0, 4.0, 5.0, 6.0])
    assert source.loss_data().outputs.tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]  # nothing new: the same
    timeline.clear()
    trainer.run([0] * 3, max_epochs=3)  # iterations 7-9 after the clear: only they are shown
    data = source.loss_data()
    assert (data.iterations.tolist(), data.outputs.tolist()) == ([7.0, 8.0, 9.0], [7.0, 8.0, 9.0])
    timeline.clear()
    trainer.run([0] * 3, max_epochs=6)  # more outputs after a clear than the source had seen: still only they
    data = source.loss_data()
    assert data.iterations.tolist() == [14.0, 15.0, 16.0, 17.0, 18.0]
