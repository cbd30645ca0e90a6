"""Start a torch.distributed job of N processes from a Jupyter kernel, and supervise it from there.

``launch(fn, args, nproc_per_node=N, backend="gloo")`` starts N rank processes, each of which joins
one process group and calls ``fn(local_rank, *args, **kwargs)`` (ignite's ``Parallel.run``
convention), and returns a ``RankJob`` at once; ``job.wait()`` returns every rank's return value.

**The kernel is the job's controller, not one of its ranks.** Why:

- *The kernel must stay responsive.* The panel's clicks run on the kernel's main thread; a rank
  blocks in collectives whenever a peer is slower. As controller the kernel never enters a
  collective, so no click ever waits on another process.
- *A failure must not cost the kernel.* A rank that raises leaves its process group unusable (a
  collective may be half-entered, and ``destroy_process_group`` after a failure can block), and a
  rank's CUDA context and memory are only freed when its process ends. As controller the kernel
  survives every failure of the job: the next launch is a fresh job, with no kernel restart.
- *CUDA stays out of the kernel.* NCCL ranks each own one GPU; the controller owns none.
- *Ctrl-C.* "Interrupt kernel" (■) signals the kernel's process group. Ranks run in their own
  sessions, so they do not receive it by accident; the kernel forwards it on purpose, to every job
  of this kernel that is still running: SIGINT to every rank, which is what Ctrl-C in a ``torchrun``
  terminal does (under ``DistributedControl``, a collective pause at one boundary, and ``run()``
  raises ``KeyboardInterrupt`` on every rank), or what the job's ``on_interrupt`` says (a
  ``RanksPanel`` makes ■ a Pause request, which its Resume continues). It is forwarded while a cell
  waits in ``wait()`` (which then re-raises it) and also while no cell runs at all: the kernel
  ignores SIGINT between cells (ipykernel installs SIG_IGN and a KeyboardInterrupt handler only
  while it handles a message), so ``launch`` puts, once per kernel, a handler in its place that
  forwards ■ to the running jobs and otherwise does what the handler it replaced did. A cell that is
  running something else still gets its ``KeyboardInterrupt``, and the jobs are left alone.
- *Like torchrun's agent.* The controller hosts the job's ``TCPStore`` and the ranks join it as
  clients (``TORCHELASTIC_USE_AGENT_STORE=True``, the variable ``torchrun`` sets), so the store
  outlives any rank, and the controller can read and write it while the job runs (``job.store``).

**Each rank is a fresh interpreter, and the function travels by value.** What was tried here (torch
2.13, ipykernel 7.4, Python 3.11):

- ``multiprocessing`` with ``spawn`` (the default of ``torch.multiprocessing`` and of
  ``Parallel`` outside IPython) pickles the function by reference. A function defined in a cell lives
  in the kernel's ``__main__``, which a spawned child does not have, and the child dies with
  ``AttributeError: Can't get attribute 'train' on <module '__main__' (built-in)>`` (tried).
- ``fork`` (what Accelerate's ``notebook_launcher`` and Lightning's ``ddp_notebook`` use) copies a
  kernel that runs several threads (ZMQ I/O, heartbeat, history, control); a lock held by one of them
  at the fork stays held forever in the child. After CUDA it is fatal: "Cannot re-initialize CUDA in
  forked subprocess" (accelerate#3925, Lightning-AI#21389).
- So every rank is ``python -c <bootstrap>`` (``subprocess``: fork immediately followed by exec,
  nothing of the kernel's state is inherited) with the kernel's ``sys.path`` and working folder, and
  receives ``(fn, args, kwargs)`` serialised with **cloudpickle**: what lives in ``__main__``
  (functions, classes, lambdas defined in cells, and the globals they use) by value, what is
  importable by reference.

**CUDA initialised in the kernel is refused** before anything starts, with a message saying what to do.
The ranks would not crash (they are not forked), but the kernel would hold a CUDA context and memory
on the GPUs that the ranks need, and CUDA tensors passed as arguments would be unpickled onto the
kernel's device in every rank: an out-of-memory error or wrong placement later, in a rank, is worse
than a clear refusal now. ``torch.cuda._is_in_bad_fork()`` (a kernel that is itself a bad fork) is
refused too.

**Output, failures, stopping.**

- Every line a rank writes to stdout or stderr is relayed, prefixed ``[rank r]``, to the cell that
  called ``launch`` (ipykernel's ``set_thread_parent``, so it lands there even while other cells run).
- A rank that raises prints its traceback (relayed like any output); the launcher then stops the
  other ranks and ``wait()`` raises ``RankError`` naming the rank, with the rank's traceback, chained
  to the original exception when it could be pickled. A rank that dies without reporting (killed,
  crashed, ``os._exit``) is a failure too. Nothing hangs on a dead peer.
- ``job.stop()`` ends every rank (SIGTERM to its process group, then SIGKILL after ``grace``).
  Re-running the cell that launched a job stops that job before the new one starts.
- No rank outlives the kernel: on Linux each rank asks for ``PR_SET_PDEATHSIG`` when launched from the
  main thread (the signal is tied to the launching *thread*), and every rank ends itself when its
  stdin, held open by the launcher, reaches end of file, i.e. when the launcher process is gone.
- As ``torchrun`` does, ``OMP_NUM_THREADS=1`` is set for the ranks when it is not set already and
  more than one process is started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from types import ModuleType
from typing import Any

import torch
import torch.distributed as dist

from nbengine.distributed._rank_child import RemoteFailure
from nbengine.distributed._rank_relay import RankRelay

__all__ = ["JobStopped", "RankError", "RankJob", "launch"]

#: Run by each rank's interpreter: read the header line, take the kernel's sys.path, hand over.
BOOTSTRAP = (
    "import json, sys; header = json.loads(sys.stdin.buffer.readline()); sys.path[:] = header['sys_path']; "
    "from nbengine.distributed._rank_child import main; main(header)"
)


class RankError(RuntimeError):
    """A rank of a launched job failed; ``rank``, ``exitcode`` and the rank's ``remote_traceback``."""

    def __init__(self, rank: int, message: str, exitcode: int | None = None, remote_traceback: str = "") -> None:
        text = f"rank {rank} failed: {message}"
        if remote_traceback:
            text += f"\n\nTraceback in rank {rank}:\n{remote_traceback}"
        super().__init__(text)
        self.rank = rank
        self.exitcode = exitcode
        self.remote_traceback = remote_traceback


class JobStopped(RuntimeError):
    """``wait()`` on a job that ``stop()`` ended before every rank returned."""


def refuse_cuda_in_launcher(cuda: ModuleType | Any = torch.cuda) -> None:
    """Raise ``RuntimeError`` when CUDA is initialised in this process (see the module docstring)."""
    if cuda._is_in_bad_fork():
        raise RuntimeError(
            "Cannot launch ranks from this process: it is a fork of a process that had initialised CUDA "
            "(torch.cuda._is_in_bad_fork() is True). Launch from a fresh kernel."
        )
    if cuda.is_initialized():
        raise RuntimeError(
            "Cannot launch ranks: CUDA is already initialised in this kernel (torch.cuda.is_initialized() is "
            "True). The kernel controls the job and must not hold a CUDA context or GPU memory on the devices "
            "its ranks use. Create models and tensors on the GPU inside the function given to launch() "
            "(each rank picks its device, e.g. idist.device()), restart the kernel, and run again."
        )


def _check_arguments(fn: Any, args: Any, kwargs: Any, nproc_per_node: Any, backend: Any, master_port: Any) -> None:
    if not callable(fn):
        raise TypeError(f"Argument fn should be a callable, but given {fn!r}")
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"Argument args should be a tuple or a list, but given {args!r}")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise TypeError(f"Argument kwargs should be a mapping or None, but given {kwargs!r}")
    if isinstance(nproc_per_node, bool) or not isinstance(nproc_per_node, int) or nproc_per_node < 1:
        raise ValueError(f"Argument nproc_per_node should positive, but given {nproc_per_node!r}")
    available = tuple(name for name in ("gloo", "nccl", "mpi") if dist.is_backend_available(name))
    if backend not in available:
        raise ValueError(f"Unknown backend '{backend}'. Available backends: {available}")
    if master_port is not None and (isinstance(master_port, bool) or not isinstance(master_port, int)
                                    or not 0 < master_port < 2**16):
        raise ValueError(f"Argument master_port should be None or a port number in 1..65535, but given {master_port!r}")


def _rank_environment(rank: int, nproc: int, address: str, port: int) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update(
        RANK=str(rank), LOCAL_RANK=str(rank), GROUP_RANK="0", ROLE_RANK=str(rank),
        WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc), ROLE_WORLD_SIZE=str(nproc),
        MASTER_ADDR=address, MASTER_PORT=str(port), TORCHELASTIC_USE_AGENT_STORE="True",
        PYTHONUNBUFFERED="1",
    )
    if nproc > 1:
        environment.setdefault("OMP_NUM_THREADS", "1")
    return environment


def _kernel_parent() -> tuple[Any, Any]:
    """The IPython shell and the message being handled now (the launching cell), if in a kernel.
    IPython is only looked up, never imported: outside IPython there is nothing to route."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    get_parent = getattr(shell, "get_parent", None)
    return shell, (get_parent() if callable(get_parent) else None)


def launch(fn: Callable, args: Sequence = (), kwargs: Mapping | None = None, *, nproc_per_node: int,
           backend: str = "gloo", master_addr: str = "127.0.0.1", master_port: int | None = None,
           init_timeout: timedelta | None = None) -> RankJob:
    """Start ``nproc_per_node`` ranks of a ``backend`` job on this host, each calling
    ``fn(local_rank, *args, **kwargs)`` inside its process group; returns the running ``RankJob``.

    ``master_port=None`` lets the store pick a free port. ``init_timeout`` is passed to
    ``init_process_group`` as ``timeout``.
    """
    _check_arguments(fn, args, kwargs, nproc_per_node, backend, master_port)
    refuse_cuda_in_launcher()
    import cloudpickle

    payload = cloudpickle.dumps((fn, tuple(args), dict(kwargs or {})))
    store = dist.TCPStore(master_addr, master_port or 0, is_master=True, wait_for_workers=False)
    init_kwargs = {"timeout": init_timeout} if init_timeout is not None else {}
    shell, parent = _kernel_parent()
    _stop_job_of_this_cell(shell, parent)
    job = RankJob(payload, nproc_per_node, backend, store, master_addr, init_kwargs, shell, parent)
    _remember_job_of_this_cell(shell, parent, job)
    _forward_interrupts_between_cells(shell)
    return job


#: Attribute of the IPython shell holding ``{cell: job}``: it lives as long as the kernel session,
#: per kernel, and is no module-level state.
JOBS_ATTRIBUTE = "nbengine_rank_jobs"


def _cell_key(parent: Any) -> str | None:
    """The launching cell: its ``cellId`` (JupyterLab, Notebook 7, VS Code send it), else its source."""
    if not isinstance(parent, dict) or parent.get("header", {}).get("msg_type") != "execute_request":
        return None
    cell_id = (parent.get("metadata") or {}).get("cellId")
    if isinstance(cell_id, str) and cell_id:
        return f"cell:{cell_id}"
    code = (parent.get("content") or {}).get("code")
    return f"source:{code}" if isinstance(code, str) and code.strip() else None


def _stop_job_of_this_cell(shell: Any, parent: Any) -> None:
    """Re-running the cell that launched a job stops that job first: its ranks would otherwise run on,
    unreachable, next to the new ones."""
    key = _cell_key(parent)
    earlier = getattr(shell, JOBS_ATTRIBUTE, {}).pop(key, None) if key is not None else None
    if earlier is not None and not earlier.done:
        earlier.stop()


def _remember_job_of_this_cell(shell: Any, parent: Any, job: RankJob) -> None:
    """Keep ``job`` under its cell (a job launched outside a cell under a key of its own, so that ■
    reaches it too); jobs that have ended are dropped."""
    if shell is None:
        return
    key = _cell_key(parent) or f"job:{id(job)}"
    jobs = getattr(shell, JOBS_ATTRIBUTE, None)
    if not isinstance(jobs, dict):
        jobs = {}
        setattr(shell, JOBS_ATTRIBUTE, jobs)
    for ended in [name for name, earlier in jobs.items() if earlier.done]:
        del jobs[ended]
    jobs[key] = job


#: Attribute of the IPython shell holding the SIGINT handler that ``launch`` installed in that kernel.
INTERRUPTS_ATTRIBUTE = "nbengine_rank_interrupts"


def _forward_interrupts_between_cells(shell: Any) -> None:
    """Once per kernel, from its main thread: between cells, SIGINT (■) goes to the running jobs of
    this kernel (see the module docstring), else to the handler it replaced."""
    kernel = getattr(shell, "kernel", None)
    if kernel is None or getattr(shell, INTERRUPTS_ATTRIBUTE, None) is not None:
        return
    if threading.current_thread() is not threading.main_thread():
        return
    # Inside a message ipykernel has saved the between-messages handler and restores it afterwards:
    # ours takes its place there, so it is the one active between cells.
    inside_message = hasattr(kernel, "saved_sigint_handler")
    earlier = kernel.saved_sigint_handler if inside_message else signal.getsignal(signal.SIGINT)

    def on_interrupt(signum: int, frame: Any) -> None:
        running = [job for job in getattr(shell, JOBS_ATTRIBUTE, {}).values() if not job.done]
        for job in running:
            job.forward_interrupt()
        if running:
            return
        if callable(earlier):
            earlier(signum, frame)
        elif earlier == signal.SIG_DFL:
            raise KeyboardInterrupt

    if inside_message:
        kernel.saved_sigint_handler = on_interrupt
    else:
        signal.signal(signal.SIGINT, on_interrupt)
    setattr(shell, INTERRUPTS_ATTRIBUTE, on_interrupt)


class RankJob:
    """A running job started by ``launch``: its rank processes, the store it hosts, how each rank ended."""

    def __init__(self, payload: bytes, nproc: int, backend: str, store: Any, address: str, init_kwargs: dict,
                 shell: Any, parent: Any) -> None:
        self.store = store
        self.address = (address, store.port)
        self._stopped = False
        #: What ■ (or Ctrl-C during ``wait()``) does to the running job: ``None`` sends SIGINT to every
        #: rank (``interrupt()``); a callable is called instead (a ``RanksPanel`` posts a Pause). It is
        #: called from a signal handler on the main thread: it must not block.
        self.on_interrupt: Callable[[], Any] | None = None
        on_main_thread = threading.current_thread() is threading.main_thread()
        self.processes: list[subprocess.Popen] = []
        result_pipes = []
        try:
            for rank in range(nproc):
                reader, writer = os.pipe()
                header = {"sys_path": sys.path, "launcher_pid": os.getpid(), "pdeathsig": on_main_thread,
                          "payload_size": len(payload), "result_fd": writer, "backend": backend,
                          "init_kwargs": init_kwargs}
                self.processes.append(self._start_rank(rank, nproc, address, writer))
                os.close(writer)
                result_pipes.append(reader)
                self.processes[-1].stdin.write(json.dumps(header, default=_timedelta_seconds).encode() + b"\n")
        except BaseException:
            self._signal_all(signal.SIGKILL)
            raise
        self._relay = RankRelay(self.processes, result_pipes, payload, shell, parent,
                                on_failure=lambda: self._signal_all(signal.SIGTERM))
        self._relay.start()

    def _start_rank(self, rank: int, nproc: int, address: str, result_fd: int) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", BOOTSTRAP],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=_rank_environment(rank, nproc, self.address[0], self.address[1]),
            pass_fds=(result_fd,), start_new_session=True,
        )

    @property
    def pids(self) -> list[int]:
        """The process id of each rank, by rank."""
        return [process.pid for process in self.processes]

    @property
    def done(self) -> bool:
        """True when every rank has ended (returned, failed or been stopped) and its output is relayed."""
        return self._relay.finished.is_set()

    @property
    def status(self) -> str:
        """``"running"``, ``"completed"``, ``"failed"`` or ``"stopped"``."""
        if not self.done:
            return "running"
        if self._relay.failure is not None:
            return "failed"
        return "stopped" if self._stopped and None in self._relay.outcomes else "completed"

    def wait(self, timeout: float | None = None) -> list[Any]:
        """Block until every rank has ended; return their return values by rank.

        Raises ``RankError`` for the first rank that failed, ``JobStopped`` when ``stop()`` ended the
        job first, ``TimeoutError`` after ``timeout`` seconds (the job goes on). A ``KeyboardInterrupt``
        here (■ in Jupyter) is forwarded to the job (``forward_interrupt()``), then re-raised.
        """
        try:
            finished = self._relay.finished.wait(timeout)
        except KeyboardInterrupt:
            self.forward_interrupt()
            raise
        if not finished:
            raise TimeoutError(f"the ranks did not all end within {timeout} s; they are still running")
        self._relay.join()
        if self._relay.error is not None:
            raise RuntimeError("the launcher's relay thread failed; the ranks were stopped") from self._relay.error
        if self._relay.failure is not None:
            raise self._rank_error(*self._relay.failure)
        if self._stopped and None in self._relay.outcomes:
            unfinished = [rank for rank, outcome in enumerate(self._relay.outcomes) if outcome is None]
            raise JobStopped(f"the job was stopped before ranks {unfinished} returned")
        return [outcome[1] for outcome in self._relay.outcomes]

    def _rank_error(self, rank: int, exitcode: int | None, failure: RemoteFailure | None) -> RankError:
        if failure is None:
            return RankError(rank, f"its process exited with code {exitcode} without reporting a result",
                             exitcode=exitcode)
        error = RankError(rank, f"{failure.type_name}: {failure.message}", exitcode, failure.traceback)
        if failure.pickled_exception is not None:
            import pickle

            try:
                error.__cause__ = pickle.loads(failure.pickled_exception)
            except Exception:
                # The exception's class may not exist here: the traceback text above still says it all.
                pass
        return error

    def forward_interrupt(self) -> None:
        """What ■ does to this job: ``on_interrupt()`` when set, else ``interrupt()``."""
        if self.done:
            return
        if self.on_interrupt is not None:
            try:
                self.on_interrupt()
                return
            except Exception:
                # Called from a signal handler: a failing hook must not escape into the kernel's
                # event loop; the ranks still get their Ctrl-C.
                pass
        self.interrupt()

    def interrupt(self) -> None:
        """Send SIGINT to every running rank (and the processes it started), as Ctrl-C in a terminal does."""
        self._signal_all(signal.SIGINT)

    def stop(self, grace: float = 3.0) -> None:
        """End every rank: SIGTERM now, SIGKILL to those still there after ``grace`` seconds; returns
        when all have ended and their output is relayed."""
        self._stopped = True
        self._relay.stop_requested.set()
        self._signal_all(signal.SIGTERM)
        if not self._relay.finished.wait(grace):
            self._signal_all(signal.SIGKILL)
        self._relay.join()

    def _signal_all(self, signum: int) -> None:
        for process in self.processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signum)
                except ProcessLookupError:
                    # Ended between poll() and killpg(): nothing left to signal.
                    pass

    def __repr__(self) -> str:
        return f"<RankJob {self.status} ranks={len(self.processes)} pids={self.pids} store={self.address}>"


def _timedelta_seconds(value: Any) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot send {value!r} to a rank")
