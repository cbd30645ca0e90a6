"""What a rank does when its run fails: report it in the job's command log, then leave the process group,
so that no other rank waits for this one in a collective; and what a rank raises when another failed.

A rank whose own code failed reports ``<error> at epoch e, iteration i`` and destroys its process group:
the other ranks' next collective then fails at once (gloo: "Connection closed by peer") instead of
waiting. A rank whose collective failed first looks for such reports (a few seconds): when another rank
reported, it raises :class:`RankFailedError` naming that rank and its error; when none did, another
rank probably died without a word, and it raises :class:`RankFailedError` saying so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch.distributed as dist

from nbengine.distributed import utils as idist
from nbengine.distributed.commands import CommandLog
from nbengine.engine import Engine

__all__ = ["FailureReporter", "RankFailedError"]

_REPORT_WAIT_ROUNDS = 25
_REPORT_WAIT_SECONDS = 0.2


class RankFailedError(RuntimeError):
    """Another rank of the job failed, so this one stopped."""


class FailureReporter:
    """Runs a rank's driving steps (:meth:`guard`) and turns a failure into a report and a clean exit."""

    def __init__(self, log: CommandLog, engine: Engine, rank: int, world_size: int) -> None:
        self.log = log
        self.engine = engine
        self.rank = rank
        self.world_size = world_size

    def guard(self, action: Callable[[], Any]) -> Any:
        """``action()``; a failure other than an interrupt or a peer's failure is reported, then re-raised
        (or turned into :class:`RankFailedError` when it came from another rank)."""
        try:
            return action()
        except (KeyboardInterrupt, RankFailedError):
            raise
        except BaseException as exc:
            self._fail(exc)
            raise

    def raise_if_another_failed(self) -> None:
        """For a paused rank: raise :class:`RankFailedError` when another rank has reported a failure."""
        failed = self.log.failures(self.world_size)
        if failed:
            raise RankFailedError(_failure_text(failed, self.rank))

    def _fail(self, exc: BaseException) -> None:
        collective = _is_collective_error(exc)
        failed = self._wait_for_reports() if collective else {}
        if failed and self.rank not in failed:
            raise RankFailedError(_failure_text(failed, self.rank)) from exc
        state = self.engine.state
        where = f"at epoch {state.epoch}, iteration {state.iteration}"
        try:
            self.log.report_failure(self.rank, f"a collective failed {where}: {exc!r}" if collective else f"{exc!r} {where}")
        except (RuntimeError, OSError):  # the store went away with the rank that hosted it
            pass
        if idist.model_name() == "native-dist":
            dist.destroy_process_group()
        if collective:
            raise RankFailedError(
                f"rank {self.rank} stopped {where}: a collective failed ({exc}) and no rank reported a failure, "
                "so another rank probably died"
            ) from exc

    def _wait_for_reports(self) -> dict[int, str]:
        for _ in range(_REPORT_WAIT_ROUNDS):
            try:
                failed = self.log.failures(self.world_size)
            except (RuntimeError, OSError):  # the store went away with the rank that hosted it
                return {}
            if failed:
                return failed
            threading.Event().wait(_REPORT_WAIT_SECONDS)
        return {}


def _failure_text(failed: dict[int, str], rank: int) -> str:
    reports = "; ".join(f"rank {r} failed: {text}" for r, text in sorted(failed.items()))
    return f"rank {rank} stopped because another rank of the job failed ({reports})"


def _is_collective_error(exc: BaseException) -> bool:
    """Errors a collective raises when a peer went away (gloo: "Connection closed by peer", ...)."""
    text = str(exc).lower()
    return isinstance(exc, dist.DistError) or (
        isinstance(exc, RuntimeError) and any(word in text for word in ("gloo", "connection", "peer", "nccl"))
    )
