"""Start the 2-rank test jobs of ``_worker.py`` (torchrun or Parallel) on 127.0.0.1 and never leave one behind.

Every job runs in a session of its own; :class:`Job` kills that whole process group when the test ends,
whatever happened, and every wait has a limit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import torch

from nbengine.distributed.launcher import free_port

WORKER = Path(__file__).with_name("_worker.py")
ROOT = WORKER.parents[2]
JOB_LIMIT = 400.0


class Job:
    """One 2-rank job: ``launcher`` is ``"torchrun"`` or ``"parallel"``; ``args`` go to the worker."""

    def __init__(self, out: Path, launcher: str, *args: str) -> None:
        self.out = out
        port = free_port()
        if launcher == "torchrun":
            command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                       f"--master_port={port}", str(WORKER)]
        else:
            command = [sys.executable, str(WORKER), "--launcher", "parallel"]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MASTER_PORT": str(port),
               "MASTER_ADDR": "127.0.0.1"}
        self.log_path = out.with_suffix(".log")
        out.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in kill()
        self.process = subprocess.Popen([*command, "--out", str(out), *args], cwd=ROOT, env=env,
                                        stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, limit: float = JOB_LIMIT) -> int:
        """The job's exit code; a job still running after ``limit`` seconds is killed and fails the test."""
        try:
            return self.process.wait(limit)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"job did not end within {limit} s; log:\n{self.log()}") from None

    def wait_for_files(self, *names: str, limit: float = JOB_LIMIT) -> list[str]:
        """Wait until the worker wrote every file in ``names``; returns their contents."""
        deadline = time.monotonic() + limit
        paths = [self.out / name for name in names]
        while not all(path.exists() and path.read_text() for path in paths):
            if self.process.poll() is not None:
                raise AssertionError(f"job ended (code {self.process.returncode}) before writing {names}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"job did not write {names} within {limit} s; log:\n{self.log()}")
            time.sleep(0.05)
        return [path.read_text() for path in paths]

    def signal_job(self, signum: int) -> None:
        """Send ``signum`` to the launcher process only (torchrun forwards it to every rank)."""
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL every process of the job: its session and every descendant (torchrun starts each rank in a
        session of its own, so killing the launcher's session alone would orphan the ranks)."""
        kill_tree(self.process.pid)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()[-6000:]

    def ranks(self) -> list[dict]:
        """What each rank recorded (``rank0.pt``, ``rank1.pt``)."""
        return [torch.load(self.out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def kill_tree(pid: int) -> None:
    """SIGKILL process ``pid``, its session and all its descendants."""
    try:
        descendants = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    for process in descendants:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    psutil.wait_procs(descendants, timeout=30)


def run_job(out: Path, launcher: str, *args: str) -> tuple[int, Job]:
    """Run a job to its end (killing it on a timeout) and return its exit code."""
    job = Job(out, launcher, *args)
    try:
        return job.wait(), job
    finally:
        job.kill()


def same_weights(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
