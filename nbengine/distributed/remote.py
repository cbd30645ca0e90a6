"""The two ends of the link between a notebook's panel and the ranks of a job, both over the job's
torch.distributed store (the one ``DistributedControl`` keeps its command log in; with
``notebook_launcher.launch`` the kernel hosts it).

- **On every rank**, ``RankReport(control)`` publishes where the rank stands while it runs: status,
  epoch and iteration, at most every ``interval`` seconds while running and at once when a stretch of
  driving ends (paused, finished, failed). Rank 0 also publishes its training output per iteration
  (the loss), the numeric metrics in its ``state.metrics`` whenever they change (metrics attached with
  nbengine's ``Metric`` are reduced over the ranks, so rank 0's value is the job's), and its most
  recent events with their handler times. The other ranks publish their events and handler times
  **on demand** only: while a controller asks for them (``RemoteRun.trace(ranks)``), a rank traces
  its dispatch and publishes them like rank 0; otherwise it pays nothing for it.
- **In the kernel**, ``RemoteRun`` mirrors the engine's controls (``pause``, ``step``, ``resume``,
  ``stop``, ``save``, ``load``, ``replay``) as requests in the job's command log, which
  ``DistributedControl`` applies at one boundary on every rank; and it reads what the ranks published
  (``ranks()``, ``outputs()``, ``metrics()``, ``events(rank)``, ``checkpoints()``). It never enters a
  collective, so the kernel never waits on a rank.

Keys, under the command log's ``nbengine/<run id>/``: ``status/<rank>`` (the same JSON that
``DistributedControl`` writes when paused), ``report/outputs`` (rank 0's ``"iteration output\\n"``
lines, appended), ``report/metrics`` (JSON lines ``[iteration, name, value]``, appended),
``report/events`` (JSON: rank 0's last events), ``report/events/<rank>`` (another rank's, while asked
for), ``report/trace`` (JSON: the other ranks whose events are asked for) and ``report/abilities``
(what the job can do on request, and its checkpoint folder).

The cost on a rank is one clock read per iteration, plus one store write per ``interval`` (and, on the
ranks other than 0, one store read of ``report/trace``); rank 0 adds one list append per iteration for
the output and, while events are reported, the engine's traced dispatch.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from nbengine.distributed import utils as idist
from nbengine.distributed.commands import CommandLog
from nbengine.engine import Engine, Events

__all__ = ["RankReport", "RemoteRun"]

_CURRENT_KEY = "nbengine/current"
#: How many of rank 0's last events are published.
RECENT_EVENTS = 64


def _number(output: Any) -> float | None:
    if isinstance(output, torch.Tensor) and output.numel() == 1:
        return float(output.item())
    if isinstance(output, numbers.Real):
        return float(output)
    return None


def _report_store(control: Any) -> dist.Store:
    """A connection of this rank's own to the job's store, so reports never queue behind the
    command log's requests; on one process, the log's in-memory store."""
    if idist.model_name() != "native-dist":
        return control.log.store
    return dist.TCPStore(os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ["MASTER_PORT"]),
                         is_master=False, timeout=timedelta(seconds=60))


class RankReport:
    """Publish this rank's progress for a controller (see the module docstring); create it on every rank
    after its ``DistributedControl``. ``events=False`` leaves rank 0's event trace off."""

    def __init__(self, control: Any, interval: float = 0.25, events: bool = True) -> None:
        if not isinstance(interval, (int, float)) or isinstance(interval, bool) or not interval > 0:
            raise ValueError(f"Argument interval should be a positive number of seconds, but given {interval!r}")
        self.engine: Engine = control.engine
        self.rank = idist.get_rank()
        self.interval = float(interval)
        self._keys = dist.PrefixStore(f"nbengine/{control.log.run_id}/", _report_store(control))
        self._lock = threading.Lock()
        self._last = -math.inf
        self._outputs: list[str] = []
        self._metrics: list[str] = []
        self._metric_values: dict[str, float] = {}
        self._events: deque = deque(maxlen=RECENT_EVENTS)
        self._started = time.monotonic()
        self._untrace: Callable[[], None] | None = None
        if self.rank == 0:
            # What the job can do on request: a controller refuses the others before they reach the ranks.
            self._keys.set("report/abilities", json.dumps(_abilities(control)))
        self.engine.add_event_handler(Events.ITERATION_COMPLETED, self._at_iteration)
        self.engine.add_status_hook(lambda engine, status: self.publish(status))
        if self.rank == 0 and events:
            self._untrace = self.engine.add_trace_hook(self._traced)

    def _at_iteration(self, engine: Engine) -> None:
        if self.rank == 0:
            value = _number(engine.state.output)
            if value is not None:
                self._outputs.append(f"{engine.state.iteration} {value!r}\n")
            if engine.state.metrics:
                self._note_metrics(engine)
        if time.monotonic() - self._last >= self.interval:
            self.publish("running")

    def _note_metrics(self, engine: Engine) -> None:
        for name, metric in engine.state.metrics.items():
            value = _number(metric)
            if value is not None and self._metric_values.get(name) != value:
                self._metric_values[name] = value
                self._metrics.append(json.dumps([engine.state.iteration, str(name), value]) + "\n")

    def _traced(self, event: Any, state: Any, timings: list[tuple[str, float]]) -> None:
        name = getattr(event, "name", str(event))
        self._events.append((round(time.monotonic() - self._started, 6), name, state.epoch, state.iteration,
                             [(handler, seconds) for handler, seconds in timings]))

    def _follow_trace_requests(self) -> None:
        """On a rank other than 0: trace this rank's events while a controller asks for them."""
        wanted = self._keys.check(["report/trace"]) and self.rank in json.loads(self._keys.get("report/trace"))
        if wanted and self._untrace is None:
            self._events.clear()
            self._untrace = self.engine.add_trace_hook(self._traced)
        elif not wanted and self._untrace is not None:
            self._untrace()
            self._untrace = None
            self._events.clear()

    def publish(self, status: str) -> None:
        """Write this rank's status now (and, on rank 0, the outputs and events gathered since)."""
        state = self.engine.state
        with self._lock:
            self._last = time.monotonic()
            if self.rank != 0:
                self._follow_trace_requests()
            self._keys.set(f"status/{self.rank}", json.dumps(
                {"status": status, "epoch": state.epoch, "iteration": state.iteration}))
            if self._outputs:
                lines, self._outputs = "".join(self._outputs), []
                self._keys.append("report/outputs", lines)
            if self._metrics:
                lines, self._metrics = "".join(self._metrics), []
                self._keys.append("report/metrics", lines)
            if self._events:
                self._keys.set(_events_key(self.rank), json.dumps(list(self._events)))


def _events_key(rank: int) -> str:
    return "report/events" if rank == 0 else f"report/events/{rank}"


def _abilities(control: Any) -> dict[str, Any]:
    """What the job can do on request (a controller refuses the rest before it reaches the ranks), and
    the folder its checkpoints go to (for a controller's list of checkpoints to load)."""
    checkpoint = getattr(control, "checkpoint", None)
    folder = getattr(getattr(checkpoint, "save_handler", None), "dirname", None)
    return {"save": checkpoint is not None,
            "load": getattr(control, "loader", None) is not None,
            "replay": getattr(control, "replay_handler", None) is not None,
            "checkpoints": str(folder) if folder is not None else None}


class RemoteRun:
    """The controller's handle on the run of a job: requests to every rank, and what the ranks report.

    ``RemoteRun(store, world_size)`` finds the run that rank 0 announced (waiting up to ``timeout``
    seconds for it); ``RemoteRun.of(job)`` does so for a ``RankJob`` from ``launch``.
    """

    def __init__(self, store: dist.Store, world_size: int, run_id: str | None = None, timeout: float = 300.0) -> None:
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"Argument world_size should be a positive int, but given {world_size!r}")
        self.store = store
        self.world_size = world_size
        # One store connection serves the panel's refresh thread and the clicks on the main thread.
        self._lock = threading.Lock()
        self.log = CommandLog(store, run_id or self._announced_run(timeout))
        self._keys = dist.PrefixStore(f"nbengine/{self.log.run_id}/", store)
        self._outputs = ""
        self._abilities: dict[str, Any] | None = None

    @classmethod
    def of(cls, job: Any, timeout: float = 300.0) -> RemoteRun:
        return cls(job.store, len(job.processes), timeout=timeout)

    def _announced_run(self, timeout: float) -> str:
        self.store.wait([_CURRENT_KEY], timedelta(seconds=timeout))
        return self.store.get(_CURRENT_KEY).decode()

    def _post(self, kind: str, **arguments: Any) -> int:
        with self._lock:
            return self.log.post(kind, **arguments)

    # ------------------------------------------------------------------ requests (every rank, one boundary)

    def pause(self) -> int:
        """Every rank pauses at the same boundary. Returns the request's number in the log."""
        return self._post("pause")

    def resume(self) -> int:
        """A paused job runs on."""
        return self._post("resume")

    def step(self, n: int | None = None, *, until: Any = None, events: int | None = None) -> int:
        """Every rank steps as ``Engine.step`` does: ``n`` iterations (1 when nothing is given), up to
        the next ``until`` event (an ``Events`` member or its name), or ``events`` events."""
        given = [name for name, value in (("n", n), ("until", until), ("events", events)) if value is not None]
        if len(given) > 1:
            raise ValueError(f"step() takes one of n=, until= or events=, got {', '.join(given)}")
        for name, value in (("n", n), ("events", events)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"Argument {name} should be a positive integer, but given {value!r}")
        until_name = getattr(until, "name", until)
        if until is not None and not (isinstance(until_name, str) and isinstance(getattr(Events, until_name, None), Events)):
            raise ValueError(f"Argument until should be an Events member or its name, but given {until!r}")
        if not given:
            n = 1
        return self._post("step", n=n, until=until_name, events=events)

    def stop(self) -> int:
        """Every rank ends the run at the same boundary (its TERMINATE and COMPLETED handlers run)."""
        return self._post("stop")

    def save(self) -> int:
        """Every rank runs the job's checkpoint at the same boundary (rank 0 writes the file)."""
        self._require("save", "checkpoint=")
        return self._post("save")

    def load(self, path: str) -> int:
        """Every rank loads the checkpoint at ``path`` (a running job pauses first, and stays paused at
        the loaded position); ``result(number)`` then holds every rank's outcome."""
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise ValueError(f"Argument path should be the path of a checkpoint file, but given {path!r}")
        self._require("load", "a Checkpoint as checkpoint= or load=")
        return self._post("load", path=str(path))

    def checkpoints(self) -> list[Any]:
        """The committed checkpoints in the job's checkpoint folder, newest first
        (:class:`~nbengine.handlers.CheckpointInfo`); empty when the job has none (the kernel reads the
        folder: the ranks run on this host)."""
        folder = self.abilities().get("checkpoints")
        if not folder or not os.path.isdir(folder):
            return []
        from nbengine.handlers import list_checkpoints

        return list_checkpoints(folder)

    def trace(self, ranks: list[int]) -> None:
        """Ask ``ranks`` (other than 0, which always reports) to publish their events and handler
        times; the others stop. Takes effect at each rank's next report."""
        if not isinstance(ranks, (list, tuple)) or any(
                isinstance(r, bool) or not isinstance(r, int) or not 0 <= r < self.world_size for r in ranks):
            raise ValueError(f"Argument ranks should be a list of ranks in 0..{self.world_size - 1}, but given {ranks!r}")
        with self._lock:
            self._keys.set("report/trace", json.dumps(sorted({r for r in ranks if r != 0})))

    def replay(self, epoch: int) -> int:
        """Every rank replays ``epoch`` together (a running job pauses first); ``result(number)`` then
        holds every rank's report."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            raise ValueError(f"Argument epoch should be a positive integer, but given {epoch!r}")
        self._require("replay", "replay=EpochReplay(...)")
        return self._post("replay", epoch=epoch)

    def abilities(self, timeout: float = 30.0) -> dict[str, Any]:
        """Which requests beyond the engine's own the job can serve (``save``, ``load``, ``replay``: True
        or False) and its checkpoint folder (``checkpoints``), as rank 0's ``RankReport`` published
        them; waits up to ``timeout`` seconds for it."""
        if self._abilities is None:
            with self._lock:
                self._keys.wait(["report/abilities"], timedelta(seconds=timeout))
                self._abilities = json.loads(self._keys.get("report/abilities"))
        return self._abilities

    def _require(self, kind: str, argument: str) -> None:
        # A request the ranks cannot serve would make every rank fail: refuse it here instead.
        if not self.abilities().get(kind, False):
            raise RuntimeError(f"this job cannot {kind}: its DistributedControl was made without {argument}")

    def result(self, number: int, timeout: float = 300.0) -> Any:
        """What request ``number`` produced (a replay: every rank's summary, by rank), waiting up to
        ``timeout`` seconds for it."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.result_if_ready(number)
            if result is not None:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"request {number} produced no result within {timeout} s")
            time.sleep(0.05)

    def result_if_ready(self, number: int) -> Any:
        """What request ``number`` produced, or None while it has not (yet)."""
        with self._lock:
            return self.log.result(number)

    # ------------------------------------------------------------------ what the ranks report

    def ranks(self) -> list[dict | None]:
        """Each rank's last report (``status``, ``epoch``, ``iteration``), None before its first."""
        with self._lock:
            return [self.log.status(rank) for rank in range(self.world_size)]

    def outputs(self) -> tuple[list[int], list[float]]:
        """Rank 0's output (loss) at every iteration it has reported."""
        with self._lock:
            if self._keys.check(["report/outputs"]):
                self._outputs = self._keys.get("report/outputs").decode()
        iterations, values = [], []
        for line in self._outputs.splitlines():
            iteration, value = line.split(" ")
            iterations.append(int(iteration))
            values.append(float(value))
        return iterations, values

    def metrics(self) -> dict[str, tuple[list[int], list[float]]]:
        """Rank 0's numeric metrics, each as ``(iterations, values)`` at the iterations it changed."""
        with self._lock:
            text = self._keys.get("report/metrics").decode() if self._keys.check(["report/metrics"]) else ""
        series: dict[str, tuple[list[int], list[float]]] = {}
        for line in text.splitlines():
            iteration, name, value = json.loads(line)
            iterations, values = series.setdefault(name, ([], []))
            iterations.append(iteration)
            values.append(value)
        return series

    def events(self, rank: int = 0) -> list[tuple[float, str, int, int, list]]:
        """``rank``'s last events: ``(seconds, event name, epoch, iteration, [(handler, seconds)])``; for
        a rank other than 0, only while :meth:`trace` asks for them (and what it published last)."""
        key = _events_key(rank)
        with self._lock:
            if not self._keys.check([key]):
                return []
            return [tuple(event) for event in json.loads(self._keys.get(key))]

    def wait_until(self, condition: Callable[[list[dict | None]], bool], timeout: float = 120.0,
                   what: str = "the ranks' reports") -> list[dict | None]:
        """Poll ``ranks()`` until ``condition(ranks)`` holds; returns them. ``TimeoutError`` after
        ``timeout`` seconds (a stuck job is reported, not waited on forever)."""
        deadline = time.monotonic() + timeout
        while True:
            ranks = self.ranks()
            if condition(ranks):
                return ranks
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout} s for {what}; the ranks report {ranks}")
            time.sleep(0.05)

    def all_paused(self) -> list[dict]:
        """Wait until every rank reports ``paused``; returns their reports."""
        return self.wait_until(lambda ranks: all(r is not None and r["status"] == "paused" for r in ranks),
                               what="every rank to pause")
