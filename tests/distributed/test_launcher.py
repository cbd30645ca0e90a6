"""``launch``: real rank processes on gloo over 127.0.0.1, started from this (non-kernel) process.

Every test has a deadline and kills what it started (the ``jobs`` fixture); none asserts on time.
The kernel's side (cell-defined functions, output in the launching cell, ■) is in
``test_launcher_kernel.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import psutil
import pytest

from nbengine.distributed.notebook_launcher import JobStopped, RankError, RankJob, launch, refuse_cuda_in_launcher

pytestmark = pytest.mark.timeout(300)

DEADLINE = 240.0


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until_gone(pids: list[int], deadline: float = 60.0) -> list[int]:
    """The pids still alive after waiting up to ``deadline`` s for them to end."""
    end = time.monotonic() + deadline
    while time.monotonic() < end and any(alive(pid) for pid in pids):
        time.sleep(0.1)
    return [pid for pid in pids if alive(pid)]


@pytest.fixture
def jobs():
    started: list[RankJob] = []
    yield started
    for job in started:
        job.stop(grace=1.0)


# ----------------------------------------------------------------------------------------- functions run by ranks


def reduce_ranks(local_rank: int, offset: float) -> tuple:
    import torch
    import torch.distributed as dist

    value = torch.tensor([float(dist.get_rank()) + offset])
    dist.all_reduce(value)
    print(f"sum {value.item()} on local rank {local_rank}")
    print("a warning", file=sys.stderr)
    return dist.get_rank(), dist.get_world_size(), os.environ["LOCAL_RANK"], value.item()


class RankOneBroke(ValueError):
    pass


def rank_one_raises(local_rank: int) -> None:
    import torch
    import torch.distributed as dist

    if dist.get_rank() == 1:
        raise RankOneBroke("rank one broke")
    # Rank 0 waits in a collective that rank 1 never enters: only the launcher can end it.
    dist.all_reduce(torch.ones(1))


def rank_zero_exits(local_rank: int) -> None:
    if local_rank == 0:
        os._exit(3)
    time.sleep(1000)


def sleep_with_a_child(local_rank: int, pid_folder: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
    with open(os.path.join(pid_folder, f"{local_rank}.pid"), "w") as file:
        file.write(f"{os.getpid()} {child.pid}")
    time.sleep(1000)


def unpicklable_result(local_rank: int):
    return lambda_free_lock()


def lambda_free_lock():
    import threading

    return threading.Lock()


# ------------------------------------------------------------------------------------------------------- tests


def test_every_rank_runs_in_one_group_and_returns_by_rank(jobs, capfd):
    job = launch(reduce_ranks, (10.0,), nproc_per_node=2)
    jobs.append(job)
    assert job.wait(DEADLINE) == [(0, 2, "0", 21.0), (1, 2, "1", 21.0)]
    assert job.status == "completed"
    out, err = capfd.readouterr()
    assert sorted(out.splitlines()) == ["[rank 0] sum 21.0 on local rank 0", "[rank 1] sum 21.0 on local rank 1"]
    assert sorted(line for line in err.splitlines() if "warning" in line) == [
        "[rank 0] a warning", "[rank 1] a warning"]
    assert wait_until_gone(job.pids) == []


def test_a_failing_rank_stops_the_others_and_is_raised_with_its_traceback(jobs, capfd):
    job = launch(rank_one_raises, nproc_per_node=2)
    jobs.append(job)
    with pytest.raises(RankError, match="rank 1 failed: RankOneBroke: rank one broke") as raised:
        job.wait(DEADLINE)
    assert raised.value.rank == 1
    assert isinstance(raised.value.__cause__, RankOneBroke)
    assert 'raise RankOneBroke("rank one broke")' in raised.value.remote_traceback
    # The launcher's own frames are left out of the rank's traceback.
    assert "_rank_child" not in raised.value.remote_traceback
    assert job.status == "failed"
    assert wait_until_gone(job.pids) == []
    # The traceback was shown as the rank's output, not only raised.
    shown = capfd.readouterr().err.splitlines()
    assert "[rank 1] tests.distributed.test_launcher.RankOneBroke: rank one broke" in shown


def test_a_rank_that_dies_without_reporting_is_a_failure_with_its_exit_code(jobs):
    job = launch(rank_zero_exits, nproc_per_node=2)
    jobs.append(job)
    with pytest.raises(RankError, match="rank 0 failed: its process exited with code 3 without reporting") as raised:
        job.wait(DEADLINE)
    assert raised.value.exitcode == 3
    assert wait_until_gone(job.pids) == []


def test_stop_ends_every_rank_and_the_processes_they_started(jobs, tmp_path):
    job = launch(sleep_with_a_child, (str(tmp_path),), nproc_per_node=2)
    jobs.append(job)
    end = time.monotonic() + DEADLINE
    while len(list(tmp_path.glob("*.pid"))) < 2 and time.monotonic() < end:
        time.sleep(0.1)
    pids = [int(pid) for path in tmp_path.glob("*.pid") for pid in path.read_text().split()]
    assert len(pids) == 4 and all(alive(pid) for pid in pids)
    job.stop()
    assert job.status == "stopped"
    with pytest.raises(JobStopped, match=r"stopped before ranks \[0, 1\] returned"):
        job.wait(DEADLINE)
    assert wait_until_gone(pids) == []


def test_a_return_value_that_cannot_be_pickled_is_that_ranks_failure(jobs):
    job = launch(unpicklable_result, nproc_per_node=1)
    jobs.append(job)
    with pytest.raises(RankError, match="rank 0 failed: TypeError: the return value could not be pickled"):
        job.wait(DEADLINE)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        ({"fn": 3}, TypeError, "Argument fn should be a callable, but given 3"),
        ({"args": 5}, TypeError, "Argument args should be a tuple or a list, but given 5"),
        ({"kwargs": [1]}, TypeError, r"Argument kwargs should be a mapping or None, but given \[1\]"),
        ({"nproc_per_node": 0}, ValueError, "Argument nproc_per_node should positive, but given 0"),
        ({"nproc_per_node": "2"}, ValueError, "Argument nproc_per_node should positive, but given '2'"),
        ({"backend": "tcp"}, ValueError, "Unknown backend 'tcp'. Available backends:"),
        ({"master_port": 70000}, ValueError, "Argument master_port should be None or a port number in 1..65535"),
    ],
)
def test_bad_arguments_are_refused_before_anything_starts(arguments, error, message):
    call = {"fn": reduce_ranks, "args": (), "kwargs": None, "nproc_per_node": 2, **arguments}
    children_before = psutil.Process().children()
    with pytest.raises(error, match=message):
        launch(call.pop("fn"), call.pop("args"), call.pop("kwargs"), **call)
    assert psutil.Process().children() == children_before


def test_cuda_initialised_in_the_launcher_is_refused_with_what_to_do():
    # This machine's torch has no CUDA, so the state of torch.cuda is described by a stand-in with
    # the two functions the check reads.
    initialised = SimpleNamespace(_is_in_bad_fork=lambda: False, is_initialized=lambda: True)
    with pytest.raises(RuntimeError, match=r"CUDA is already initialised in this kernel .* inside the function"):
        refuse_cuda_in_launcher(initialised)
    bad_fork = SimpleNamespace(_is_in_bad_fork=lambda: True, is_initialized=lambda: True)
    with pytest.raises(RuntimeError, match=r"torch.cuda._is_in_bad_fork\(\) is True"):
        refuse_cuda_in_launcher(bad_fork)
    refuse_cuda_in_launcher(SimpleNamespace(_is_in_bad_fork=lambda: False, is_initialized=lambda: False))



def test_fork_after_cuda_is_refused_before_anything_starts():
    from nbengine.distributed.launcher import refuse_cuda_before_fork

    children_before = psutil.Process().children()
    initialised = SimpleNamespace(_is_in_bad_fork=lambda: False, is_initialized=lambda: True)
    with pytest.raises(RuntimeError, match=r"^Cannot start ranks with start_method='fork': CUDA is already "
                                           r"initialised in this process .* Use start_method='spawn'"):
        refuse_cuda_before_fork(initialised)
    refuse_cuda_before_fork(SimpleNamespace(_is_in_bad_fork=lambda: False, is_initialized=lambda: False))
    assert psutil.Process().children() == children_before


def test_spawn_from_ipython_starts_fresh_interpreters_through_launch(jobs, monkeypatch, capfd):
    import builtins

    import nbengine.distributed as idist

    # What IPython sets in every shell and kernel: spawn must not fork (ignite's choice there).
    monkeypatch.setitem(builtins.__dict__, "__IPYTHON__", True)
    job = idist.spawn("gloo", reduce_ranks, (1.0,), nproc_per_node=2, join=False, start_method="fork")
    jobs.append(job)
    assert isinstance(job, RankJob)
    assert job.wait(DEADLINE) == [(0, 2, "0", 3.0), (1, 2, "1", 3.0)]
    # What the ranks print comes here, prefixed with the rank.
    out, _ = capfd.readouterr()
    assert sorted(out.splitlines()) == ["[rank 0] sum 3.0 on local rank 0", "[rank 1] sum 3.0 on local rank 1"]
    with pytest.raises(ValueError, match=r"^From IPython, ranks are started on this host only by "
                                         r"notebook_launcher\.launch: nnodes should be 1"):
        idist.spawn("gloo", reduce_ranks, (1.0,), nproc_per_node=1, nnodes=2, node_rank=0,
                    master_addr="127.0.0.1", master_port=29999)
    with idist.Parallel(backend="gloo", nproc_per_node=2) as parallel:
        parallel.run(reduce_ranks, 2.0)
    out, _ = capfd.readouterr()
    assert sorted(out.splitlines()) == ["[rank 0] sum 5.0 on local rank 0", "[rank 1] sum 5.0 on local rank 1"]

LAUNCHER_SCRIPT = """
import sys, threading, time
from nbengine.distributed.notebook_launcher import launch

def start():
    job = launch(time.sleep, nproc_per_node={nproc})
    print(" ".join(map(str, job.pids)), flush=True)
    return job

if {from_thread}:
    jobs = []
    thread = threading.Thread(target=lambda: jobs.append(start()))
    thread.start()
    thread.join()
else:
    job = start()
time.sleep(1000)
"""


@pytest.mark.parametrize("from_thread, nproc", [(False, 2), (True, 1)], ids=["main-thread", "other-thread"])
def test_no_rank_outlives_its_launcher(from_thread, nproc, tmp_path):
    """The launcher is killed with SIGKILL (no cleanup of its own can run): its ranks end anyway,
    through PR_SET_PDEATHSIG from the main thread, and through the stdin watchdog in every case."""
    script = tmp_path / "launcher.py"
    # time.sleep(local_rank) would return at once for rank 0: the ranks sleep on the launcher's
    # stdin watchdog instead, by sleeping long.
    script.write_text(LAUNCHER_SCRIPT.format(nproc=nproc, from_thread=from_thread).replace(
        "launch(time.sleep,", "launch(lambda local_rank: time.sleep(1000),"))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    launcher = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=root,
                                env={**os.environ, "PYTHONPATH": root})
    try:
        pids = [int(pid) for pid in launcher.stdout.readline().split()]
        assert len(pids) == nproc and all(alive(pid) for pid in pids)
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(DEADLINE)
        assert wait_until_gone(pids) == []
    finally:
        launcher.kill()
        launcher.wait()
        for pid in pids if "pids" in locals() else []:
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)
