"""Collective control: pause, step, resume, stop, save and Ctrl-C act on every rank at the same boundary.

A DDP run may only pause where every rank pauses: a rank that stops one iteration early leaves the
others blocked in the gradient all-reduce. So a request made on any rank (or by a controller through the
job's store, see :class:`~nbengine.distributed.commands.CommandLog`) is never acted on where it is made.
It is appended to the job's command log, and the ranks *agree* on how far the log reaches:

- every ``k`` iterations (at ITERATION_COMPLETED) each rank launches an asynchronous MAX all-reduce,
  on a gloo group of its own, of three numbers: the length of the log it knows of, whether it got
  SIGINT, and the ``k`` it proposes for the next round. It waits for the all-reduce it launched ``k``
  iterations earlier, which has long finished, so a round costs one launch; every rank gets the same
  numbers at the same iteration, and so the same next round. With ``every=None`` (the default) each
  rank proposes as many iterations as it runs in ``interval`` seconds and the smallest proposal wins:
  about one round per 0.2 s whatever the step costs, so a request takes effect within 0.4 s. (A gloo
  all-reduce per iteration costs ~40% of a small MLP step on a loaded 2-core machine; a launch costs
  0.2-0.4 ms of the training thread, so one per 0.2 s is ~0.15%.) The speed measured in one stretch of
  driving sizes the first round of the next, so a new ``run()`` does not start with rounds one
  iteration apart. A fixed ``every`` makes the boundaries independent of speed (the tests use ``every=1``);
- the requests up to that length are then applied on every rank at that boundary: ``save`` runs the
  checkpoint at the boundary (after the event's other handlers), ``stop`` terminates the run there, and
  ``pause``, ``step`` and an agreed interrupt pause it there;
- while paused, every rank reads the following requests from the log, in order, and applies them
  (``step`` steps the engine the same way on every rank), so no rank ever waits in a collective that
  another rank will not enter. ``load`` and ``replay`` are applied only there: a running job pauses
  first. A ``load`` that fails (a missing file, another world size) leaves the job paused, and every
  rank's outcome is in the log's result for the request.

Ctrl-C (SIGINT, which ``torchrun`` forwards to every rank) is a lossless pause of the whole job: every
rank pauses at the same boundary and :meth:`DistributedControl.run` raises ``KeyboardInterrupt`` there,
once; calling ``run()`` again continues. A second SIGINT before that boundary raises at once.

The engine is driven in its background thread (``start``/``resume``), so that SIGINT reaches this
component on the main thread rather than the engine's own per-process handler.

Under NCCL (GPU ranks) the agreement, the seed check and the gathering of load and replay reports run
on a gloo group of their own, on CPU tensors: they never wait behind the GPU's stream, and no Python
object travels through a GPU. (NCCL itself could not be tested on the CPU-only machines this was
built on; the code paths are the same as gloo's except for that group.)

A rank that fails reports it in the store and leaves the process group, so that the other ranks' next
collective fails instead of waiting; they stop with a :class:`RankFailedError` naming the failed rank
(see :mod:`nbengine.distributed.failures`).
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.distributed as dist

from nbengine.distributed import utils as idist
from nbengine.distributed.commands import CommandLog
from nbengine.distributed.failures import FailureReporter, RankFailedError
from nbengine.engine import PAUSED, Engine, Events, State
from nbengine.handlers import EpochReplay

__all__ = ["DistributedControl", "RankFailedError"]

_POLL_SECONDS = 0.2
_MAX_EVERY = 10_000


class _Agreement:
    """The asynchronous MAX all-reduce of (log length, interrupt, proposed every) that the ranks agree
    through, and the rounds: when the next one is due, and what this rank proposes for the one after."""

    def __init__(self, group: Any, every: int | None, interval: float) -> None:
        self.group = group
        self.every = every
        self.interval = interval
        self._work: Any = None
        self._flags: torch.Tensor | None = None
        self.next_round = 0  # the iteration of the next round; 0: the next ITERATION_COMPLETED
        self.round_every = every or 1
        self._clock = (0, 0.0)  # (iteration, perf_counter) of the last round on this rank
        self._seconds_per_iteration: float | None = None  # measured by the last two rounds, kept across stretches

    def launch(self, known: int, interrupt: bool, iteration: int) -> None:
        # MAX of -k is the smallest proposal.
        flags = torch.tensor([known, int(interrupt), -self._proposed_every(iteration)], dtype=torch.int64)
        self.next_round = iteration + self.round_every
        if self.group is None:
            self._flags, self._work = flags, None
            return
        self._flags = flags
        self._work = dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=self.group, async_op=True)

    def collect(self) -> tuple[int, bool, int] | None:
        """The agreed (log length, interrupt, next every) of the last launch (waiting for it), or None when
        nothing was launched."""
        flags = self._flags
        if flags is None:
            return None
        if self._work is not None:
            self._work.wait()
        self._flags = self._work = None
        known, interrupt, every = flags.tolist()
        self.round_every = -every
        return known, bool(interrupt), -every

    def restart(self) -> None:
        """A stretch of driving ended: the next one starts with a round at its first iteration."""
        self.next_round = 0
        self._clock = (0, 0.0)

    def _proposed_every(self, iteration: int) -> int:
        if self.every is not None:
            return self.every
        now = time.perf_counter()
        last_iteration, last_time = self._clock
        self._clock = (iteration, now)
        if last_time != 0.0 and iteration > last_iteration and now > last_time:
            self._seconds_per_iteration = (now - last_time) / (iteration - last_iteration)
        if self._seconds_per_iteration is None:
            return 1  # nothing measured yet: the next round measures the step
        return max(1, min(_MAX_EVERY, int(self.interval / self._seconds_per_iteration)))


def _check_arguments(engine: Any, every: Any, interval: Any, checkpoint: Any, replay: Any, load: Any) -> None:
    if not isinstance(engine, Engine):
        raise TypeError(f"engine should be an nbengine Engine, got {type(engine).__name__}: {engine!r}")
    if every is not None and (not isinstance(every, int) or isinstance(every, bool) or every < 1):
        raise ValueError(f"every should be None or a positive number of iterations, got {every!r}")
    if not isinstance(interval, (int, float)) or isinstance(interval, bool) or not interval > 0:
        raise ValueError(f"interval should be a positive number of seconds, got {interval!r}")
    if replay is not None and not isinstance(replay, EpochReplay):
        raise TypeError(f"replay should be an EpochReplay or None, got {type(replay).__name__}: {replay!r}")
    if checkpoint is not None and not callable(checkpoint):
        raise TypeError(f"checkpoint should be a callable fn(engine) or None, got {checkpoint!r}")
    if load is not None and not callable(load):
        raise TypeError(f"load should be a callable fn(engine, path) or None, got {load!r}")


class DistributedControl:
    """Collective pause / step / resume / stop / save for ``engine`` on every rank of a torch.distributed job.

    Create it on every rank (it runs collectives), then drive the run with :meth:`run` on every rank.
    Requests (:meth:`pause`, :meth:`step`, :meth:`resume`, :meth:`stop`, :meth:`save`) may be made on any
    rank, from any thread, or by a controller holding the job's :class:`CommandLog` (``control.log``).

    Args:
        engine: the trainer, the same on every rank.
        every: agree every ``every`` iterations; None (the default) adapts it so that the ranks agree
            about every ``interval`` seconds. A request takes effect within two rounds.
        interval: the seconds between two rounds that ``every=None`` aims at (0.2 by default).
        replay: the trainer's :class:`~nbengine.handlers.EpochReplay`, for :meth:`replay` requests.
        checkpoint: ``fn(engine)`` run on every rank for a ``save`` request (e.g. a
            :class:`~nbengine.handlers.Checkpoint` over :class:`~nbengine.distributed.RankStates`).
        load: ``fn(engine, path)`` run on every rank for a ``load`` request; by default, when
            ``checkpoint`` is a Checkpoint, its ``to_save`` objects are loaded from the file
            (:func:`~nbengine.distributed.checkpoint.load_job_checkpoint`).
        store: the store of the command log; by default a connection to the job's
            (``MASTER_ADDR``/``MASTER_PORT``), or an in-memory one on a single process.
    """

    def __init__(self, engine: Engine, *, every: int | None = None, interval: float = 0.2,
                 checkpoint: Callable[[Engine], Any] | None = None, replay: EpochReplay | None = None,
                 store: dist.Store | None = None, load: Callable[[Engine, str], Any] | None = None) -> None:
        _check_arguments(engine, every, interval, checkpoint, replay, load)
        if load is None and isinstance(getattr(checkpoint, "to_save", None), Mapping):
            load = _loader_of(checkpoint)
        self.loader = load
        self.engine = engine
        self.every = every
        self.interval = float(interval)
        self.checkpoint = checkpoint
        self.replay_handler = replay
        self.replay_reports: dict[int, list[dict]] = {}
        #: Every rank's outcome of each ``load`` request, by the request's number.
        self.load_reports: dict[int, list[dict]] = {}
        self.rank = idist.get_rank()
        self.world_size = idist.get_world_size()
        distributed = idist.model_name() == "native-dist"
        self.log = CommandLog(store if store is not None else _job_store(distributed), _agreed_run_id(distributed))
        if self.rank == 0:
            self.log.announce()
        self._failures = FailureReporter(self.log, engine, self.rank, self.world_size)
        self._agreement = _Agreement(dist.new_group(backend="gloo") if distributed else None, every, self.interval)
        self._known = 0
        self._applied = 0
        self._sigint = False
        self._interrupt_due = False
        self._stepping = False
        # A load discards the paused run (the engine stands idle at the loaded state): the job still
        # stands still, waiting for the next request, until a step, resume or stop.
        self._loaded = False
        self._commands: dict[int, dict] = {}
        engine.add_event_handler(Events.STARTED, self._check_same_seed)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._at_iteration_completed)

    # ------------------------------------------------------------------ requests (any rank, any thread)

    def _request(self, kind: str, **arguments: Any) -> int:
        seq = self.log.post(kind, **arguments)
        self._known = max(self._known, seq)
        return seq

    def pause(self) -> int:
        """Ask every rank to pause at the same boundary. Returns the request's number in the log."""
        return self._request("pause")

    def resume(self) -> int:
        """Ask a paused job to run on to the end."""
        return self._request("resume")

    def step(self, n: int | None = None, *, until: Any = None, events: int | None = None) -> int:
        """Ask every rank to step as ``Engine.step`` does (``n`` iterations, ``until`` an event given by
        name or ``Events`` member, or ``events`` events); a running job pauses first, then steps."""
        given = [name for name, value in (("n", n), ("until", until), ("events", events)) if value is not None]
        if len(given) > 1:
            raise ValueError(f"step() takes one of n=, until= or events=, got {', '.join(given)}")
        for name, value in (("n", n), ("events", events)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} should be a positive integer, got {value!r}")
        name = getattr(until, "name", until)
        if until is not None and not (isinstance(name, str) and isinstance(getattr(Events, name, None), Events)):
            raise ValueError(f"until should be an Events member or its name, got {until!r}")
        return self._request("step", n=n, until=name, events=events)

    @property
    def interrupt_pending(self) -> bool:
        """True from a SIGINT on this rank until the job agrees on it."""
        return self._sigint

    def replay(self, epoch: int) -> int:
        """Ask every rank to replay ``epoch`` (a running job pauses first); every rank's summary lands in
        ``replay_reports[seq]`` on every rank and in the log (``log.result(seq)``)."""
        if self.replay_handler is None:
            raise RuntimeError("replay() needs an EpochReplay: pass replay= to DistributedControl")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
            raise ValueError(f"epoch should be a positive integer, got {epoch!r}")
        return self._request("replay", epoch=epoch)

    def load(self, path: str) -> int:
        """Ask every rank to load the checkpoint at ``path`` (a running job pauses first); every rank's
        outcome lands in the log (``log.result(seq)``)."""
        if self.loader is None:
            raise RuntimeError("load() needs a loader: pass load=fn(engine, path), or a Checkpoint as checkpoint=")
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise ValueError(f"path should be the path of a checkpoint file, got {path!r}")
        return self._request("load", path=str(path))

    def stop(self) -> int:
        """Ask every rank to end the run at the same boundary."""
        return self._request("stop")

    def save(self) -> int:
        """Ask every rank to run the checkpoint at the same boundary."""
        if self.checkpoint is None:
            raise RuntimeError("save() needs a checkpoint: pass checkpoint=fn(engine) to DistributedControl")
        return self._request("save")

    # ------------------------------------------------------------------ the agreement (training thread)

    def _check_same_seed(self, engine: Engine) -> None:
        """A DeterministicEngine's seed decides every rank's shard and randomness: it must be the same."""
        seed = getattr(engine.state, "seed", None)
        if seed is None:
            return
        seeds = _gathered(seed, self._agreement.group, self.world_size)
        if len(set(seeds)) > 1:
            raise ValueError(
                f"the ranks' DeterministicEngine seeds differ ({seeds}, by rank): each rank would draw its own "
                "order of the data and the shards would overlap; pass seed= to DeterministicEngine, or call "
                "manual_seed(s) with the same s on every rank before run()"
            )

    def _at_iteration_completed(self, engine: Engine) -> None:
        iteration = engine.state.iteration
        if iteration < self._agreement.next_round:
            return
        agreed = self._agreement.collect()
        if agreed is not None and self._apply_while_running(agreed[0], agreed[1]):
            return
        self._agreement.launch(self._known, self._sigint, iteration)

    def _apply_while_running(self, length: int, interrupt: bool) -> bool:
        """Apply the agreed requests at this boundary; True when the run stops or pauses here.

        Requests apply in log order. A step or resume waits for the step under way to end (the paused
        loop applies it); during an open-ended stretch a step pauses the run first."""
        self._known = max(self._known, length)
        while self._applied < length:
            kind = self._command(self._applied + 1)["kind"]
            if kind in ("step", "resume", "replay", "load") and self._stepping:
                break
            if kind == "save":
                self.engine.call_at_boundary(self._save)
            elif kind == "stop":
                self._applied += 1
                self.engine.terminate()
                return True
            elif kind in ("pause", "step", "replay", "load", "interrupt"):
                if kind not in ("step", "replay", "load"):  # those are applied by the paused loop
                    self._applied += 1
                self._interrupt_due = kind == "interrupt"
                self.engine.pause()
                return True
            self._applied += 1
        if interrupt:
            self._sigint = False
            self._interrupt_due = True
            self.engine.pause()
            return True
        return False

    def _command(self, seq: int) -> dict:
        """Request ``seq`` of the log, read from the store once."""
        if seq not in self._commands:
            for done in [key for key in self._commands if key <= self._applied]:
                del self._commands[done]
            self._commands[seq] = self.log.read(seq)
        return self._commands[seq]

    def _save(self) -> None:
        if self.checkpoint is None:
            raise RuntimeError("a save was requested but this rank's DistributedControl has no checkpoint")
        self.checkpoint(self.engine)

    # ------------------------------------------------------------------ driving (main thread, every rank)

    def run(self, data: Iterable | None = None, max_epochs: int | None = None, epoch_length: int | None = None,
            max_iters: int | None = None) -> State:
        """Drive the run on this rank until it ends (completed or stopped); while it is paused, wait for
        and apply the next requests of the log.

        Call it on every rank with the same arguments. Raises ``KeyboardInterrupt`` on every rank at the
        same boundary when the job was interrupted (Ctrl-C, or an ``interrupt`` request), and
        :class:`RankFailedError` when another rank failed. Calling it again continues the run.
        """
        previous = _install_sigint(self._on_sigint)
        try:
            self._stepping = False
            self._failures.guard(lambda: self.engine.start(data, max_epochs, epoch_length, max_iters))
            while True:
                self._failures.guard(self._await_engine)
                self._publish_status()
                if self.engine.status != PAUSED and not self._loaded:
                    return self.engine.state
                if self._interrupt_due:
                    self._interrupt_due = False
                    raise KeyboardInterrupt(
                        f"job paused by interrupt on every rank at epoch {self.engine.state.epoch}, iteration "
                        f"{self.engine.state.iteration}; call run() on every rank to continue"
                    )
                self._failures.guard(self._serve_paused)
        finally:
            _restore_sigint(previous)

    def _await_engine(self) -> None:
        while True:
            try:
                self.engine.wait(timeout=_POLL_SECONDS)
            except TimeoutError:
                if self.rank == 0:
                    self._known = max(self._known, self.log.count())
                continue
            break
        self._flush_agreement()

    def _flush_agreement(self) -> None:
        """A stretch ended with an all-reduce in flight (the run ended or stepped to its end): finish it."""
        agreed = self._agreement.collect()
        self._agreement.restart()
        if agreed is not None:
            self._known = max(self._known, agreed[0])
            if agreed[1]:
                self._sigint = False
                self._interrupt_due = True

    def _serve_paused(self) -> None:
        """Apply the next request of the log on this paused rank (every rank reads the same one)."""
        seq = self._applied + 1
        while not self.log.wait_for(seq, _POLL_SECONDS):
            if self._sigint:
                self._sigint = False
                self._request("interrupt")
            self._failures.raise_if_another_failed()
        command = self._command(seq)
        self._applied = seq
        kind = command["kind"]
        self._stepping = kind == "step"
        if kind in ("step", "resume", "stop"):
            self._loaded = False
        if kind == "step":
            until = command.get("until")
            self.engine.resume(command.get("n"), until=getattr(Events, until) if until else None,
                               events=command.get("events"))
        elif kind == "resume":
            self.engine.resume()
        elif kind == "save":
            self._save()
        elif kind == "stop":
            self.engine.stop()
        elif kind == "replay":
            from nbengine.distributed.replay import replay_epoch

            reports = replay_epoch(self.replay_handler, command["epoch"], group=self._agreement.group)
            self.replay_reports[seq] = reports
            if self.rank == 0:
                self.log.report_result(seq, reports)
        elif kind == "load":
            self._load(seq, command["path"])
        elif kind == "interrupt":
            self._interrupt_due = True

    def _load(self, seq: int, path: str) -> None:
        """Load ``path`` on this paused rank; gather every rank's outcome, so that a load that failed on
        one rank is known on all (the job stays paused), and publish it."""
        try:
            self.engine.call_at_boundary(lambda: self.loader(self.engine, path)).result()
            error = None
        except (OSError, ValueError, TypeError, RuntimeError, KeyError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        self._loaded = self._loaded or self.engine.status != PAUSED
        state = self.engine.state
        outcome = {"rank": self.rank, "path": path, "loaded": error is None, "error": error,
                   "epoch": state.epoch, "iteration": state.iteration}
        outcomes = self.load_reports[seq] = _gathered(outcome, self._agreement.group, self.world_size)
        if self.rank == 0:
            self.log.report_result(seq, outcomes)

    def _publish_status(self) -> None:
        state = self.engine.state
        status = "paused" if self._loaded else self.engine.status
        self.log.report_status(self.rank, status=status, epoch=state.epoch, iteration=state.iteration)

    # ------------------------------------------------------------------ SIGINT

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._sigint:
            raise KeyboardInterrupt
        self._sigint = True


def _gathered(value: Any, group: Any, world_size: int) -> list[Any]:
    """Every rank's ``value``, by rank, gathered over ``group`` (just ``[value]`` on one process)."""
    if group is None:
        return [value]
    values: list[Any] = [None] * world_size
    dist.all_gather_object(values, value, group=group)
    return values


def _loader_of(checkpoint: Any) -> Callable[[Engine, str], None]:
    from nbengine.distributed.checkpoint import load_job_checkpoint

    def load(engine: Engine, path: str) -> None:
        load_job_checkpoint(checkpoint.to_save, path)

    return load


def _job_store(distributed: bool) -> dist.Store:
    if not distributed:
        return dist.HashStore()
    from datetime import timedelta

    return dist.TCPStore(os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ["MASTER_PORT"]),
                         is_master=False, timeout=timedelta(seconds=300))


def _agreed_run_id(distributed: bool) -> str:
    box = [uuid.uuid4().hex]
    if distributed:
        dist.broadcast_object_list(box, src=0)
    return box[0]


def _install_sigint(handler: Callable) -> Any:
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, handler)


def _restore_sigint(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)
