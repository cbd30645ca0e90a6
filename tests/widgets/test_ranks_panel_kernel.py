"""``RanksPanel`` in a real Jupyter kernel over a real 2-process gloo job started from a cell, clicked
over the protocol as a browser clicks: Pause leaves both ranks at the same iteration, Step advances
both by exactly one, Save writes one checkpoint, Replay of an epoch reports for each rank, Load takes
both back to the checkpoint, Resume goes on (with rank 1's timeline shown on demand), ■ pauses both,
Stop leaves no process behind. What
is checked is what the panel's widgets show (their state as sent to the front end)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import psutil
import pytest

from tests.widgets._kernel import Kernel

pytestmark = pytest.mark.timeout(600)

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 240.0


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Shown:
    """What the panel's State table shows, read from the widget state the kernel sent."""

    def __init__(self, kernel: Kernel, model_id: str) -> None:
        self.kernel = kernel
        self.model_id = model_id

    def ranks(self) -> list[tuple[str, int, int]]:
        text = self.kernel.widget_state.get(self.model_id, {}).get("value", "")
        rows = re.findall(r"nbengine-status-(\w+)'.*?nbengine-epoch'>(\d+)<.*?nbengine-iteration'>(\d+)<", text)
        return [(status, int(epoch), int(iteration)) for status, epoch, iteration in rows]

    def wait_for(self, condition, what: str) -> list[tuple[str, int, int]]:
        deadline = time.monotonic() + DEADLINE
        while True:
            self.kernel.drain(0.2)
            ranks = self.ranks()
            if len(ranks) == 2 and condition(ranks):
                return ranks
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {DEADLINE} s for {what}; the panel shows {ranks}")


@pytest.fixture
def kernel():
    kernel = Kernel(cwd=str(REPO))
    try:
        yield kernel
    finally:
        kernel.close()


def test_one_panel_pauses_steps_saves_resumes_and_stops_both_ranks(kernel, tmp_path):
    kernel.execute(f"""
from nbengine.distributed.notebook_launcher import launch
from nbengine.widgets.ranks_panel import RanksPanel
from tests.distributed._digits_job import train
job = launch(train, ({str(tmp_path)!r}, 1000), nproc_per_node=2)
panel = RanksPanel(job, interval=0.2)
panel
""")
    pids = kernel.value("job.pids")
    button = {label: kernel.value(f"panel.buttons[{label!r}].model_id") for label in
              ("Pause", "Step", "Save", "Load", "Replay", "Resume", "Stop")}
    shown = Shown(kernel, kernel.value("panel.state.model_id"))
    shown.wait_for(lambda ranks: all(status == "running" for status, _, _ in ranks), "both ranks running")

    kernel.click(button["Pause"])
    paused = shown.wait_for(lambda ranks: all(status == "paused" for status, _, _ in ranks), "both ranks paused")
    assert paused[0] == paused[1]
    iteration = paused[0][2]
    # The epoch of the iteration the Step below reaches (29 per epoch): the pause may land on an
    # epoch's last iteration, and the step then starts the next epoch.
    epoch = iteration // 29 + 1

    kernel.click(button["Step"])
    stepped = shown.wait_for(lambda ranks: all(it != iteration for _, _, it in ranks), "a step on both ranks")
    stepped = shown.wait_for(lambda ranks: all(status == "paused" for status, _, _ in ranks), "paused after the step")
    assert [it for _, _, it in stepped] == [iteration + 1, iteration + 1]

    kernel.click(button["Save"])
    folder = tmp_path / "checkpoints"
    deadline = time.monotonic() + DEADLINE
    while not list(folder.glob("*.pt")) and time.monotonic() < deadline:
        time.sleep(0.1)
    kernel.drain(1.0)
    assert [path.name for path in folder.glob("*.pt")] == [f"checkpoint_{iteration + 1}.pt"]

    # Replay the current epoch: step both ranks to its end, then click Replay for it.
    kernel.execute("panel.buttons['Step epoch'].click()")
    epoch_end = shown.wait_for(lambda ranks: all(status == "paused" and it == epoch * 29 for status, _, it in ranks),
                               "both ranks paused at the end of the epoch")
    assert epoch_end[0] == epoch_end[1]
    kernel.execute(f"panel.replay_epoch.value = {epoch}")
    kernel.click(button["Replay"])
    report_id = kernel.value("panel.replay_report.model_id")
    reproduced = (f"epoch {epoch} replayed: 29 iterations, 29 compared; batches identical; outputs identical "
                  "(max |diff| 0.0); reproduced")
    deadline = time.monotonic() + DEADLINE
    while "rank 1:" not in kernel.widget_state.get(report_id, {}).get("value", ""):
        assert time.monotonic() < deadline, "the replay's report did not appear"
        kernel.drain(0.2)
    assert kernel.widget_state[report_id]["value"] == (
        f"<ul style='margin:0'><li>rank 0: {reproduced}</li><li>rank 1: {reproduced}</li></ul>")

    # Load the checkpoint saved above (the list chose it): both ranks go back to where it was taken.
    assert kernel.value("panel.checkpoints.value") == str(folder / f"checkpoint_{iteration + 1}.pt")
    kernel.click(button["Load"])
    back = shown.wait_for(lambda ranks: all(status == "paused" and it == iteration + 1 for status, _, it in ranks),
                          "both ranks back at the saved iteration")
    assert back[0] == back[1]
    load_id = kernel.value("panel.load_report.model_id")
    deadline = time.monotonic() + DEADLINE
    while "rank 1:" not in kernel.widget_state.get(load_id, {}).get("value", ""):
        assert time.monotonic() < deadline, "the load's outcome did not appear"
        kernel.drain(0.2)
    saved = folder / f"checkpoint_{iteration + 1}.pt"
    assert kernel.widget_state[load_id]["value"] == "<ul style='margin:0'>" + "".join(
        f"<li>rank {r}: loaded {saved}: paused at epoch {epoch}, iteration {iteration + 1}</li>" for r in (0, 1)
    ) + "</ul>"

    # The timeline of rank 1, on demand: rank 1 reports its events while it is shown.
    kernel.execute("panel.timeline_rank.value = 1")
    kernel.click(button["Resume"])
    shown.wait_for(lambda ranks: all(status == "running" and it > iteration + 1 for status, _, it in ranks),
                   "both ranks running on after Resume")
    deadline = time.monotonic() + DEADLINE
    while not kernel.value("len(panel.run.events(1)) > 0"):
        assert time.monotonic() < deadline, "rank 1 did not report its events"
        time.sleep(0.2)

    # ■ while no cell runs: the panel makes it a Pause of both ranks, and Resume goes on.
    kernel.manager.interrupt_kernel()
    interrupted = shown.wait_for(lambda ranks: all(status == "paused" for status, _, _ in ranks),
                                 "both ranks paused by ■")
    assert interrupted[0] == interrupted[1]
    kernel.click(button["Resume"])
    shown.wait_for(lambda ranks: all(status == "running" and it > interrupted[0][2] for status, _, it in ranks),
                   "both ranks running on after the second Resume")

    kernel.click(button["Stop"])
    ended = shown.wait_for(lambda ranks: all(status == "done" for status, _, _ in ranks), "both ranks done")
    assert ended[0] == ended[1]
    assert kernel.value(f"job.wait({DEADLINE}) is not None and job.status") == "completed"
    deadline = time.monotonic() + 60
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in pids if alive(pid)] == []
