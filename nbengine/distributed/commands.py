"""The job's command log: requests (pause, step, resume, stop, save, load, replay, interrupt) kept in a torch.distributed store.

Every request gets the next sequence number of the log (``store.add``) and is written under it, so every
rank, and any controller process connected to the same store, sees one order of requests. The ranks
apply request ``k`` only once they have agreed that the log reaches ``k`` (see
:mod:`nbengine.distributed.control`), which is what makes every rank act at the same boundary.

The log also holds what a controller needs to follow the job: each rank's last reported status
(``status/<rank>``) and failure reports (``failed/<rank>``). Keys live under ``nbengine/<run id>/``;
rank 0 writes the run id under ``nbengine/current`` so that a controller can find the live run.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import timedelta
from typing import Any

import torch.distributed as dist

_POLL_SECONDS = 0.02

__all__ = ["COMMAND_KINDS", "CommandLog"]

COMMAND_KINDS = ("pause", "resume", "step", "stop", "save", "load", "replay", "interrupt")
_CURRENT_KEY = "nbengine/current"


class CommandLog:
    """The command log of run ``run_id`` in ``store`` (any ``torch.distributed.Store``).

    >>> log = CommandLog(dist.HashStore(), "demo")
    >>> log.post("step", n=2), log.post("resume")
    (1, 2)
    >>> log.count(), log.read(1)
    (2, {'kind': 'step', 'n': 2})
    """

    def __init__(self, store: dist.Store, run_id: str) -> None:
        if not isinstance(run_id, str) or not run_id:
            raise ValueError(f"run_id should be a non-empty str, got {run_id!r}")
        self.run_id = run_id
        self.store = store
        self._keys = dist.PrefixStore(f"nbengine/{run_id}/", store)
        # One connection may be used by the training thread and by the main thread's polling.
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, host: str | None = None, port: int | None = None, run_id: str | None = None,
                timeout: float = 60.0) -> CommandLog:
        """A controller's view of a live job: connect to the job's store (``MASTER_ADDR``/``MASTER_PORT`` by
        default) and open the log of ``run_id``, or of the run that rank 0 last announced."""
        host = host or os.environ.get("MASTER_ADDR", "127.0.0.1")
        port = int(port or os.environ["MASTER_PORT"])
        store = dist.TCPStore(host, port, is_master=False, timeout=timedelta(seconds=timeout))
        if run_id is None:
            run_id = store.get(_CURRENT_KEY).decode()
        return cls(store, run_id)

    def _op(self, name: str, *args: Any) -> Any:
        with self._lock:
            return getattr(self._keys, name)(*args)

    def announce(self) -> None:
        """Record this run as the job's current one (rank 0 does it when control attaches)."""
        self.store.set(_CURRENT_KEY, self.run_id)

    def post(self, kind: str, **arguments: Any) -> int:
        """Append a request; returns its sequence number (from 1)."""
        if kind not in COMMAND_KINDS:
            raise ValueError(f"kind should be one of {COMMAND_KINDS}, got {kind!r}")
        payload = json.dumps({"kind": kind, **arguments})
        seq = self._op("add", "count", 1)
        self._op("set", f"cmd/{seq}", payload)
        return seq

    def count(self) -> int:
        """How many requests the log holds."""
        return self._op("add", "count", 0)

    def wait_for(self, seq: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for request ``seq`` to be written; True when it is."""
        # Polled with `check`: a store `wait` that times out logs a c10d warning each time, and a
        # paused job waits in short slices for as long as it stays paused (into the notebook cell).
        deadline = time.monotonic() + timeout
        while not self._op("check", [f"cmd/{seq}"]):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(_POLL_SECONDS, left))
        return True

    def read(self, seq: int) -> dict:
        """Request ``seq`` (waits for it to be written, up to the store's timeout)."""
        return json.loads(self._op("get", f"cmd/{seq}"))

    def report_status(self, rank: int, **status: Any) -> None:
        """Publish ``rank``'s status (status, epoch, iteration, ...) for a controller to read."""
        self._op("set", f"status/{rank}", json.dumps(status))

    def status(self, rank: int) -> dict | None:
        """The last status ``rank`` published, or None."""
        if not self._op("check", [f"status/{rank}"]):
            return None
        return json.loads(self._op("get", f"status/{rank}"))

    def report_result(self, seq: int, result: Any) -> None:
        """Publish what request ``seq`` produced (a replay's per-rank summaries), as JSON."""
        self._op("set", f"result/{seq}", json.dumps(result))

    def result(self, seq: int) -> Any:
        """What request ``seq`` produced, or None when it has not (yet)."""
        if not self._op("check", [f"result/{seq}"]):
            return None
        return json.loads(self._op("get", f"result/{seq}"))

    def report_failure(self, rank: int, text: str) -> None:
        """Record that ``rank`` failed, with a one-line description."""
        self._op("set", f"failed/{rank}", text)
        self._op("add", "failures", 1)

    def failures(self, world_size: int) -> dict[int, str]:
        """The failure reports of the ranks that have written one."""
        if self._op("add", "failures", 0) == 0:
            return {}
        found = {}
        for rank in range(world_size):
            if self._op("check", [f"failed/{rank}"]):
                found[rank] = self._op("get", f"failed/{rank}").decode()
        return found
