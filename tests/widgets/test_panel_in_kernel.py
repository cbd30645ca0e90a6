"""TrainingPanel in a real Jupyter kernel, driven over the protocol as a front end drives it:
display in one line, printed output routed to the starting cell, clicks as comm messages, steps
typed in cells reflected after each cell, re-running a cell stops the earlier run, failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from ._kernel import Kernel

REPO = Path(__file__).resolve().parents[2]

SETUP = """
import threading
from nbengine.engine import Events
from nbengine.widgets import TrainingPanel
from tests.widgets._training import Mlp, wait_until
"""


@pytest.fixture(scope="module")
def kernel():
    kernel = Kernel(cwd=str(REPO))
    try:
        kernel.execute(SETUP)
        yield kernel
    finally:
        kernel.close()


def streams(kernel: Kernel, text: str) -> list[dict]:
    return [m for m in kernel.messages if m["msg_type"] == "stream" and text in m["content"]["text"]]


def test_displayed_in_one_line_and_printed_output_goes_to_the_starting_cell(kernel):
    cell_a = """
mlp = Mlp()
say, said = threading.Event(), threading.Event()

@mlp.trainer.on(Events.ITERATION_COMPLETED)
def speak(engine):
    if say.is_set():
        say.clear()
        print(f"marker from iteration {engine.state.iteration} in {threading.current_thread().name}")
        said.set()

panel = TrainingPanel(mlp.trainer, data=mlp.data, max_epochs=100_000)
panel.start()
"""
    cell_a_id, outputs = kernel.execute(cell_a, cell_id="cell-a")
    (shown,) = [o for o in outputs if o["msg_type"] == "execute_result"]
    view = shown["content"]["data"]["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == kernel.value("panel.widget.model_id")

    # Another cell runs while the background thread prints: the print belongs to cell A.
    cell_b_id, outputs_b = kernel.execute("said.clear(); say.set(); assert said.wait(30)")
    (printed,) = streams(kernel, "marker from iteration")
    assert "in nbengine-run" in printed["content"]["text"]
    assert printed["parent_header"]["msg_id"] == cell_a_id != cell_b_id
    assert not [o for o in outputs_b if o["msg_type"] == "stream"]

    # Clicks arrive as comm messages while no cell runs; a step's handler prints into cell A too.
    kernel.click(kernel.value("panel.buttons['pause'].comm.comm_id"))
    kernel.execute("wait_until(lambda: mlp.trainer.status == 'paused', what='the pause')")
    iteration = kernel.value("mlp.trainer.state.iteration")
    kernel.execute("said.clear(); say.set()")
    kernel.click(kernel.value("panel.buttons['step'].comm.comm_id"))
    printed = kernel.wait_for_message(
        lambda m: m["msg_type"] == "stream" and f"marker from iteration {iteration + 1} in MainThread" in m["content"]["text"],
        what="the step's print",
    )
    assert printed["parent_header"]["msg_id"] == cell_a_id
    assert kernel.value("(mlp.trainer.status, mlp.trainer.state.iteration, list(map(repr, panel.errors)))") == (
        "paused",
        iteration + 1,
        [],
    )
    kernel.execute("mlp.trainer.stop(); panel.close()")


def test_steps_typed_in_cells_show_in_the_panel_after_each_cell(kernel):
    kernel.execute("mlp2 = Mlp(batches=4)\npanel2 = TrainingPanel(mlp2.trainer, data=mlp2.data, max_epochs=2)\npanel2")
    state_view = kernel.value("panel2.state_view.model_id")
    badge = kernel.value("panel2.status_badge.model_id")
    kernel.execute("mlp2.trainer.step(data=mlp2.data, max_epochs=2)")
    for expected in (1, 2, 3):
        value = kernel.widget_state[state_view]["value"]
        assert f"class='nbengine-iteration'>{expected}<" in value
        assert "nbengine-status-paused" in kernel.widget_state[badge]["value"]
        kernel.execute("mlp2.trainer.step()")
    kernel.execute("mlp2.trainer.step(until=Events.EPOCH_COMPLETED)")
    assert "class='nbengine-iteration-in-epoch'>4 / 4<" in kernel.widget_state[state_view]["value"]
    assert "<code class='nbengine-last-event'>EPOCH_COMPLETED</code>" in kernel.widget_state[state_view]["value"]
    kernel.execute("mlp2.trainer.run()")
    assert "nbengine-status-done" in kernel.widget_state[badge]["value"]
    kernel.execute("panel2.close()")


RUN_CELL = """
runs = globals().setdefault("runs", [])
mlp = Mlp()
runs.append(mlp.trainer)
panel = TrainingPanel(mlp.trainer, data=mlp.data, max_epochs=100_000)
panel.start()
"""


def test_rerunning_a_cell_stops_the_run_it_started_earlier(kernel):
    kernel.execute("runs = []")
    kernel.execute(RUN_CELL, cell_id="run-cell")
    kernel.execute("wait_until(lambda: runs[0].state.iteration > 5)")
    # The user edits the cell and runs it again: a new trainer, the same cell.
    kernel.execute(RUN_CELL + "# lr changed\n", cell_id="run-cell")
    assert kernel.value("[t.status for t in runs]") == ["done", "running"]
    # Another cell's run is left alone.
    kernel.execute(RUN_CELL, cell_id="other-cell")
    assert kernel.value("[t.status for t in runs]") == ["done", "running", "running"]
    registry = kernel.value("sorted(get_ipython().nbengine_panels)")
    assert registry == ["cell:other-cell", "cell:run-cell"]
    # Without cell ids (a front end that sends none), the same source is the same cell.
    kernel.execute(RUN_CELL)
    kernel.execute(RUN_CELL)
    assert kernel.value("[t.status for t in runs]") == ["done", "running", "running", "done", "running"]
    alive = kernel.value("sum(t.name == 'nbengine-run' for t in threading.enumerate())")
    assert alive == 3
    kernel.execute("for t in runs: t.stop()\nfor t in runs: t.wait(30)\nfor p in list(get_ipython().nbengine_panels.values()): p.close()")
    assert kernel.value("get_ipython().nbengine_panels") == {}


def test_a_failed_background_run_turns_the_status_red_and_wait_raises(kernel):
    kernel.execute("mlp3 = Mlp(fail_at=25)\npanel3 = TrainingPanel(mlp3.trainer, data=mlp3.data, max_epochs=100)\npanel3.start()")
    _, outputs = kernel.execute("panel3.wait(60)", expect_error=True)
    (error,) = [o for o in outputs if o["msg_type"] == "error"]
    assert (error["content"]["ename"], error["content"]["evalue"]) == ("ValueError", "bad batch at iteration 25")
    badge = kernel.value("panel3.status_badge.model_id")
    state_view = kernel.value("panel3.state_view.model_id")
    assert "nbengine-status-failed" in kernel.widget_state[badge]["value"]
    assert "background:#c62828" in kernel.widget_state[badge]["value"]
    view = kernel.widget_state[state_view]["value"]
    assert "ValueError: bad batch at iteration 25" in view and "Traceback (most recent call last)" in view
    kernel.execute("panel3.close()")


def test_interrupt_kernel_pauses_a_background_run_started_from_the_panel(kernel):
    kernel.execute(
        """
mlp = Mlp()
panel = TrainingPanel(mlp.trainer, data=mlp.data, max_epochs=100_000)
panel.start()
wait_until(lambda: mlp.trainer.state.iteration > 20, what="20 iterations")
""",
        cell_id="cell-interrupt",
    )
    # ■ while no cell runs: the kernel's main thread gets SIGINT and the panel pauses its run.
    kernel.manager.interrupt_kernel()
    kernel.execute("wait_until(lambda: mlp.trainer.status == 'paused', timeout=30, what='the pause after ■')")
    iteration = kernel.value("mlp.trainer.state.iteration")
    kernel.execute("import time; time.sleep(1); panel.refresh()")
    assert kernel.value("mlp.trainer.state.iteration") == iteration
    assert "■ paused the run at" in kernel.value("panel.message.value")
    # Resume continues; a cell that runs still gets its own KeyboardInterrupt from ■.
    kernel.click(kernel.value("panel.buttons['resume'].comm.comm_id"))
    kernel.execute("wait_until(lambda: mlp.trainer.state.iteration > %d, what='the resumed run')" % iteration)
    kernel.execute("mlp.trainer.stop(); panel.close()")


def test_output_of_step_epoch_goes_to_the_panels_cell_without_start(kernel):
    cell_id, _ = kernel.execute(
        """
mlp = Mlp(batches=4)

@mlp.trainer.on(Events.ITERATION_COMPLETED)
def speak(engine):
    print(f"step-epoch marker {engine.state.iteration} in {threading.current_thread().name}")

panel = TrainingPanel(mlp.trainer, data=mlp.data, max_epochs=3)
panel
""",
        cell_id="cell-step-epoch",
    )
    kernel.execute("pass", cell_id="another-cell")
    kernel.click(kernel.value("panel.buttons['step_epoch'].comm.comm_id"))
    printed = kernel.wait_for_message(
        lambda m: m["msg_type"] == "stream" and "step-epoch marker 4 in nbengine-run" in m["content"]["text"],
        what="the print of the last iteration of the epoch",
    )
    assert printed["parent_header"]["msg_id"] == cell_id
    kernel.execute("panel.wait(30); panel.close()")
