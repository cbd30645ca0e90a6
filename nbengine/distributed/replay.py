"""Replay of an epoch under DDP: every rank re-runs the epoch from its own snapshot, together (the DDP
gradient all-reduce runs inside the replay), and the ranks' reports are gathered so that each rank,
and a controller through the job's store, sees how every rank's replay went.

Each rank's :class:`~nbengine.handlers.EpochReplay` holds the snapshots of its own trainer (its RNG
states, its shard's position, the model and optimizer state at the epoch's start), so a replay on
every rank at once re-runs exactly the epoch the job ran. Call :func:`replay_epoch` on every rank, or
request it from any rank with ``DistributedControl.replay(epoch)``.
"""

from __future__ import annotations

from typing import Any

from nbengine.distributed import utils as idist
from nbengine.handlers import EpochReplay

__all__ = ["replay_epoch"]


def replay_epoch(replay: EpochReplay, epoch: int, group: Any = None, **options: Any) -> list[dict[str, Any]]:
    """Replay ``epoch`` on this rank (every rank must call it) and return every rank's summary, by rank:
    ``{"rank", "epoch", "iterations", "reproduced", "first_divergent_iteration", "max_abs_diff", "text"}``.

    The summaries are gathered over ``group`` (the default group when None; ``DistributedControl``
    passes its gloo group, so that under NCCL no Python object travels through the GPUs).
    ``options`` go to :meth:`EpochReplay.replay_epoch` (``modify``, ``atol``, ``continue_from_replay``).
    """
    if not isinstance(replay, EpochReplay):
        raise TypeError(f"replay should be an EpochReplay, got {type(replay).__name__}: {replay!r}")
    report = replay.replay_epoch(epoch, **options)
    summary = {
        "rank": idist.get_rank(),
        "epoch": report.epoch,
        "iterations": report.iterations,
        "reproduced": report.reproduced,
        "first_divergent_iteration": report.first_divergent_iteration,
        "max_abs_diff": report.max_abs_diff,
        "text": str(report),
    }
    return list(idist.all_gather(summary, group=group)) if idist.get_world_size() > 1 else [summary]
