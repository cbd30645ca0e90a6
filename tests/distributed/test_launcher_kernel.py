"""``launch`` from a real Jupyter kernel, driven over the protocol as a front end drives it: functions
and classes defined in cells run in the ranks, the ranks' output lands in the launching cell while
other cells run, a failing rank is raised in the cell, ■ (interrupt) reaches every rank, and no rank
outlives the kernel. Real processes (gloo on 127.0.0.1); every wait has a deadline."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.widgets._kernel import Kernel

pytestmark = pytest.mark.timeout(600)

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 240.0

# Defined in cells, so they live in the kernel's __main__: a spawned process could not import them.
DEFINITIONS = """
import os, time
from pathlib import Path
import torch, torch.distributed as dist
from nbengine.distributed.notebook_launcher import launch

class Scaled:
    def __init__(self, factor):
        self.factor = factor

def await_file(path):
    while not Path(path).exists():
        time.sleep(0.05)

def reduce_after(local_rank, go_file, scaled):
    await_file(go_file)
    value = torch.tensor([float(dist.get_rank() + 1) * scaled.factor])
    dist.all_reduce(value)
    print(f"reduced {value.item()}")
    return value.item()

def fails_on_rank_one(local_rank):
    if dist.get_rank() == 1:
        raise KeyError("no such column")
    dist.all_reduce(torch.ones(1))

def wait_for_ctrl_c(local_rank, folder):
    Path(folder, f"{local_rank}.pid").write_text(str(os.getpid()))
    try:
        time.sleep(1000)
    except KeyboardInterrupt:
        print("got Ctrl-C")
        return "interrupted"
"""


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until_gone(pids: list[int], deadline: float = 60.0) -> list[int]:
    end = time.monotonic() + deadline
    while time.monotonic() < end and any(alive(pid) for pid in pids):
        time.sleep(0.1)
    return [pid for pid in pids if alive(pid)]


def wait_for_files(folder: Path, count: int) -> None:
    end = time.monotonic() + DEADLINE
    while len(list(folder.glob("*.pid"))) < count:
        if time.monotonic() > end:
            raise AssertionError(f"the ranks did not start within {DEADLINE} s")
        time.sleep(0.1)


def stream_texts(kernel: Kernel, parent_msg_id: str) -> list[str]:
    return [m["content"]["text"] for m in kernel.messages
            if m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == parent_msg_id]


@pytest.fixture(scope="module")
def kernel():
    kernel = Kernel(cwd=str(REPO))
    try:
        kernel.execute(DEFINITIONS)
        yield kernel
    finally:
        kernel.close()


def test_cell_defined_function_and_class_run_in_the_ranks_and_print_into_the_launching_cell(kernel, tmp_path):
    go = tmp_path / "go"
    launching, _ = kernel.execute(f"job = launch(reduce_after, ({str(go)!r}, Scaled(10.0)), nproc_per_node=2)")
    # The ranks print only after this other cell has run: what they print still belongs to the first.
    other, _ = kernel.execute(f"Path({str(go)!r}).touch(); print('other cell')")
    assert kernel.value(f"job.wait({DEADLINE})") == [30.0, 30.0]
    kernel.drain(0.5)
    relayed = "".join(stream_texts(kernel, launching))
    assert sorted(relayed.splitlines()) == ["[rank 0] reduced 30.0", "[rank 1] reduced 30.0"]
    assert "".join(stream_texts(kernel, other)) == "other cell\n"
    assert wait_until_gone(kernel.value("job.pids")) == []



def test_parallel_in_a_cell_runs_a_cell_defined_function_in_fresh_interpreters_without_fork(kernel):
    kernel.execute("""
import sys
import nbengine.distributed as idist

def where_am_i(local_rank, scaled):
    # A forked kernel would have ipykernel loaded; a fresh interpreter has not.
    print(f"fresh {'ipykernel' not in sys.modules} factor {scaled.factor} world {idist.get_world_size()}")
""")
    cell, _ = kernel.execute("""
with idist.Parallel(backend="gloo", nproc_per_node=2) as parallel:
    parallel.run(where_am_i, Scaled(2.0))
""")
    kernel.drain(0.5)
    relayed = "".join(stream_texts(kernel, cell))
    assert sorted(relayed.splitlines()) == ["[rank 0] fresh True factor 2.0 world 2",
                                            "[rank 1] fresh True factor 2.0 world 2"]

def test_a_failing_rank_is_shown_and_raised_in_the_cell(kernel):
    cell, outputs = kernel.execute(f"job = launch(fails_on_rank_one, nproc_per_node=2); job.wait({DEADLINE})",
                                   expect_error=True)
    (error,) = [o for o in outputs if o["msg_type"] == "error"]
    assert error["content"]["ename"] == "RankError"
    assert error["content"]["evalue"].startswith("rank 1 failed: KeyError: 'no such column'")
    shown = "".join(o["content"]["text"] for o in outputs if o["msg_type"] == "stream")
    assert "[rank 1] KeyError: 'no such column'\n" in shown
    assert wait_until_gone(kernel.value("job.pids")) == []


def test_interrupting_the_kernel_sends_ctrl_c_to_every_rank(kernel, tmp_path):
    code = f"job = launch(wait_for_ctrl_c, ({str(tmp_path)!r},), nproc_per_node=2); job.wait()"
    request = kernel.client.session.msg("execute_request", {"code": code, "silent": False, "store_history": True,
                                                             "user_expressions": {}, "allow_stdin": False,
                                                             "stop_on_error": True})
    kernel.client.shell_channel.send(request)
    wait_for_files(tmp_path, 2)
    kernel.manager.interrupt_kernel()
    reply = kernel.client.get_shell_msg(timeout=DEADLINE)
    while reply["parent_header"].get("msg_id") != request["header"]["msg_id"]:
        reply = kernel.client.get_shell_msg(timeout=DEADLINE)
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
    # Each rank got SIGINT as KeyboardInterrupt, handled it and returned.
    assert kernel.value(f"job.wait({DEADLINE})") == ["interrupted", "interrupted"]
    kernel.drain(0.5)
    relayed = "".join(stream_texts(kernel, request["header"]["msg_id"]))
    assert sorted(relayed.splitlines()) == ["[rank 0] got Ctrl-C", "[rank 1] got Ctrl-C"]



def test_interrupting_the_kernel_while_no_cell_runs_sends_ctrl_c_to_every_rank(kernel, tmp_path):
    launching, _ = kernel.execute(f"job = launch(wait_for_ctrl_c, ({str(tmp_path)!r},), nproc_per_node=2)")
    wait_for_files(tmp_path, 2)
    # No cell runs: the kernel would ignore SIGINT; the launcher's handler forwards it to the ranks.
    kernel.manager.interrupt_kernel()
    assert kernel.value(f"job.wait({DEADLINE})") == ["interrupted", "interrupted"]
    kernel.drain(0.5)
    relayed = "".join(stream_texts(kernel, launching))
    assert sorted(relayed.splitlines()) == ["[rank 0] got Ctrl-C", "[rank 1] got Ctrl-C"]
    # With no job running, the kernel is as before: an idle interrupt changes nothing, cells still run.
    kernel.manager.interrupt_kernel()
    assert kernel.value("1 + 1") == 2

def test_no_rank_outlives_a_killed_kernel(tmp_path):
    doomed = Kernel(cwd=str(REPO))
    try:
        doomed.execute(DEFINITIONS)
        doomed.execute(f"job = launch(wait_for_ctrl_c, ({str(tmp_path)!r},), nproc_per_node=2)")
        wait_for_files(tmp_path, 2)
        pids = [int(path.read_text()) for path in tmp_path.glob("*.pid")]
        assert all(alive(pid) for pid in pids)
        # SIGKILL: nothing of the kernel's own cleanup can run.
        os.kill(doomed.value("os.getpid()"), signal.SIGKILL)
        assert wait_until_gone(pids) == []
    finally:
        doomed.close()


def test_running_the_launching_cell_again_stops_the_job_it_started(kernel, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    cell = "job = launch(wait_for_ctrl_c, (folder,), nproc_per_node=2)"
    kernel.execute(f"folder = {str(first)!r}")
    kernel.execute(cell, cell_id="launching-cell")
    wait_for_files(first, 2)
    earlier = [int(path.read_text()) for path in first.glob("*.pid")]
    kernel.execute(f"folder = {str(second)!r}")
    kernel.execute(cell, cell_id="launching-cell")
    assert wait_until_gone(earlier) == []
    wait_for_files(second, 2)
    later = [int(path.read_text()) for path in second.glob("*.pid")]
    assert all(alive(pid) for pid in later)
    kernel.execute("job.stop()")
    assert wait_until_gone(later) == []
