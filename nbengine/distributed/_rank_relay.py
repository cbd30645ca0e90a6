"""The launcher's supervising thread: it hands each rank its function, relays what the ranks print to
the launching cell, and records how each rank ended.

One thread per job owns every pipe of every rank (``selectors``), so no read can block another, and
it is the only place that decides what a rank's end means:

- a rank that reported ``("ok", value)`` returned ``value``;
- a rank that reported ``("error", RemoteFailure)``, or whose process ended without reporting while
  nobody was stopping the job, is a failure (the earliest one is blamed); ``on_failure`` is then
  called once, which stops the other ranks;
- a rank ended by ``stop()``, or by the stop that follows a failure, has no outcome (``None``).

Output from rank ``r`` is written line by line as ``[rank r] line`` to this process's ``sys.stdout``
or ``sys.stderr`` (the one the rank wrote to). In a Jupyter kernel the thread first declares the
launching cell as its parent (ipykernel's ``set_thread_parent``), so the lines land in that cell.
"""

from __future__ import annotations

import os
import pickle
import re
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: One relayed segment: a line ended by \n, \r\n or \r (progress bars redraw with \r).
SEGMENT = re.compile(rb"[^\r\n]*(?:\r\n|\n|\r)")
#: An unterminated tail longer than this is relayed anyway.
LONGEST_PARTIAL = 1 << 16
#: Seconds between checks of the processes when no pipe has data.
POLL_INTERVAL = 0.1


class RankRelay(threading.Thread):
    def __init__(self, processes: list[subprocess.Popen], result_fds: list[int], payload: bytes, shell: Any,
                 parent: Any, on_failure: Callable[[], None]) -> None:
        super().__init__(name="nbengine-rank-relay", daemon=True)
        self._processes = processes
        self._payload = payload
        self._shell = shell
        self._parent = parent
        self._on_failure = on_failure
        self._selector = selectors.DefaultSelector()
        self._partial: dict[tuple[int, str], bytes] = {}
        self._results = [bytearray() for _ in processes]
        self._result_fds = result_fds
        #: Set by ``RankJob.stop()`` before it signals the ranks: their ends are not failures.
        self.stop_requested = threading.Event()
        #: By rank: ``("ok", value)``, ``("error", RemoteFailure)`` or None (no outcome yet, or stopped).
        self.outcomes: list[tuple | None] = [None] * len(processes)
        #: ``(time, rank, exitcode, RemoteFailure or None)`` of every rank that failed.
        self._failures: list[tuple[float, int, int | None, Any]] = []
        #: An error of this thread itself (a bug), re-raised by ``RankJob.wait()``.
        self.error: BaseException | None = None
        self.finished = threading.Event()

    def run(self) -> None:
        try:
            with self._route_output():
                self._send_payloads()
                self._supervise()
        except BaseException as error:
            self.error = error
            self._on_failure()
            raise
        finally:
            self._selector.close()
            self.finished.set()

    @contextmanager
    def _route_output(self) -> Iterator[None]:
        set_thread_parent = getattr(self._shell, "set_thread_parent", None)
        if self._parent is None or not callable(set_thread_parent):
            yield
            return
        token = set_thread_parent(self._parent)
        try:
            yield
        finally:
            self._shell.reset_thread_parent(token)

    def _send_payloads(self) -> None:
        for rank, process in enumerate(self._processes):
            for name, pipe in (("stdout", process.stdout), ("stderr", process.stderr)):
                os.set_blocking(pipe.fileno(), False)
                self._selector.register(pipe.fileno(), selectors.EVENT_READ, (rank, name))
            os.set_blocking(self._result_fds[rank], False)
            self._selector.register(self._result_fds[rank], selectors.EVENT_READ, (rank, "result"))
        for process in self._processes:
            try:
                # stdin stays open: its end of file tells the rank that the launcher is gone.
                process.stdin.write(self._payload)
                process.stdin.flush()
            except BrokenPipeError:
                # The rank died before reading its function; _supervise reports it by its exit code.
                pass

    def _supervise(self) -> None:
        running = set(range(len(self._processes)))
        while running:
            for key, _ in self._selector.select(POLL_INTERVAL):
                self._read(key.fd, *key.data)
            for rank in sorted(running):
                exitcode = self._processes[rank].poll()
                if exitcode is not None:
                    self._drain(rank)
                    self._rank_ended(rank, exitcode)
                    running.discard(rank)

    def _read(self, fd: int, rank: int, name: str) -> bool:
        """Read what ``fd`` holds now; False once it is at its end (or only a grandchild holds it open)."""
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return False
        if not chunk:
            self._let_go(fd, name)
            return False
        if name == "result":
            self._results[rank] += chunk
        else:
            self._relay(rank, name, chunk)
        return True

    def _drain(self, rank: int) -> None:
        """The rank's process has ended: take what is left in its pipes, then let go of them."""
        for key in list(self._selector.get_map().values()):
            if key.data[0] == rank:
                while self._read(key.fd, *key.data):
                    pass
                if key.fd in self._selector.get_map():
                    self._let_go(key.fd, key.data[1])
        for name in ("stdout", "stderr"):
            tail = self._partial.pop((rank, name), b"")
            if tail:
                self._write(rank, name, [tail + b"\n"])

    def _let_go(self, fd: int, name: str) -> None:
        self._selector.unregister(fd)
        if name == "result":
            # The result pipe is ours; stdout and stderr belong to their Popen objects.
            os.close(fd)

    def _relay(self, rank: int, name: str, chunk: bytes) -> None:
        data = self._partial.pop((rank, name), b"") + chunk
        segments = SEGMENT.findall(data)
        tail = data[sum(len(segment) for segment in segments):]
        if len(tail) > LONGEST_PARTIAL:
            segments.append(tail + b"\n")
        elif tail:
            self._partial[(rank, name)] = tail
        if segments:
            self._write(rank, name, segments)

    @staticmethod
    def _write(rank: int, name: str, segments: list[bytes]) -> None:
        prefix = f"[rank {rank}] "
        text = "".join(prefix + segment.decode("utf-8", errors="replace") for segment in segments)
        stream = sys.stdout if name == "stdout" else sys.stderr
        stream.write(text)
        stream.flush()

    def _rank_ended(self, rank: int, exitcode: int) -> None:
        outcome = None
        if self._results[rank]:
            try:
                outcome = pickle.loads(bytes(self._results[rank]))
            except Exception:
                # A truncated report (the rank was killed while writing it) is no report.
                outcome = None
        if outcome is not None:
            self.outcomes[rank] = outcome
        if outcome is not None and outcome[0] == "error":
            self._fail(rank, exitcode, outcome[1])
        elif outcome is None and (not self.stop_requested.is_set() or self._failures):
            # Ended without a report: a failure unless stop() ended it (after a failure, the
            # earliest one is blamed anyway).
            self._fail(rank, exitcode, None)

    def _fail(self, rank: int, exitcode: int, failure: Any) -> None:
        self._failures.append((failure.time if failure is not None else time.time(), rank, exitcode, failure))
        if not self.stop_requested.is_set():
            self.stop_requested.set()
            self._on_failure()

    @property
    def failure(self) -> tuple[int, int | None, Any] | None:
        """``(rank, exitcode, RemoteFailure or None)`` of the rank that failed first: the others often
        fail only because their peer went away (e.g. gloo's "Connection reset by peer")."""
        if not self._failures:
            return None
        return min(self._failures, key=lambda failure: failure[0])[1:]
