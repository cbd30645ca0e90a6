"""``RankStates``: every rank's engine state (iteration, seed, RNG states, data position) in one checkpoint entry.

Under DDP the model and the optimizer are the same on every rank and rank 0 writes them; what differs
between ranks is the engine's state: each rank has its own RNG states and its own share of the data.
Put a ``RankStates(trainer)`` in a :class:`~nbengine.handlers.Checkpoint`'s ``to_save`` next to the model
and the optimizer: its ``state_dict()`` gathers the state of every rank (a collective, so the checkpoint
must be taken on every rank at the same boundary, as :class:`~nbengine.distributed.DistributedControl`
does), and its ``load_state_dict()`` gives each rank its own state back.

Resuming on another world size is refused: a rank's data position and RNG states belong to one shard of
one world size, and no re-sharding of a mid-epoch position reproduces the uninterrupted run.

>>> from nbengine.engine import DeterministicEngine
>>> trainer = DeterministicEngine(lambda engine, batch: None, seed=3)
>>> _ = trainer.run(range(4), max_epochs=1)
>>> saved = RankStates(trainer).state_dict()
>>> saved["world_size"], len(saved["ranks"]), saved["ranks"][0]["iteration"]
(1, 1, 4)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nbengine.distributed import utils as idist
from nbengine.engine import Engine

__all__ = ["RankStates", "load_job_checkpoint"]


class RankStates:
    """Checkpoint entry holding ``engine.state_dict()`` of every rank of the job.

    The states are gathered over ``group`` (the default group when None). Under NCCL a gather of
    Python objects runs on the current CUDA device, which must be this rank's own (``idist.initialize``
    and ``Parallel`` select it): ``state_dict()`` refuses to gather otherwise, since ranks sharing one
    device would wait for each other forever. Pass a gloo group to keep the gather off the GPUs.
    """

    def __init__(self, engine: Engine, group: Any = None) -> None:
        if not isinstance(engine, Engine):
            raise TypeError(f"engine should be an nbengine Engine, got {type(engine).__name__}: {engine!r}")
        self.engine = engine
        self.group = group

    def state_dict(self) -> dict[str, Any]:
        """``{"world_size": W, "ranks": [state of rank 0, ..., state of rank W-1]}`` (collective)."""
        own = dict(self.engine.state_dict())
        if idist.get_world_size() == 1:
            return {"world_size": 1, "ranks": [own]}
        if self.group is None:
            _check_nccl_device()
        return {"world_size": idist.get_world_size(), "ranks": list(idist.all_gather(own, group=self.group))}

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Load this rank's entry into the engine; refuses a checkpoint of another world size."""
        self.check(state_dict)
        self.engine.load_state_dict(state_dict["ranks"][idist.get_rank()])

    @staticmethod
    def check(state_dict: Mapping) -> None:
        """Raise ``ValueError`` unless ``state_dict`` is a ``RankStates`` entry of this job's world size
        (what :meth:`load_state_dict` checks first; callable before anything else is loaded)."""
        if not isinstance(state_dict, Mapping) or "world_size" not in state_dict or "ranks" not in state_dict:
            raise ValueError(
                "state_dict should be what RankStates.state_dict() returned, with keys 'world_size' and 'ranks', "
                f"got {type(state_dict).__name__} with keys {list(state_dict) if isinstance(state_dict, Mapping) else None}"
            )
        saved_size, size = int(state_dict["world_size"]), idist.get_world_size()
        if saved_size != size:
            raise ValueError(
                f"this checkpoint was taken by a job of {saved_size} rank(s) and this job has {size}: each rank's "
                "data position and RNG states belong to one shard of one world size, so resuming on another "
                f"world size is refused; resume with {saved_size} processes (torchrun --nproc_per_node="
                f"{saved_size} on one node), or load only the model and optimizer to start a new run"
            )


def load_job_checkpoint(to_load: Mapping, path: str) -> None:
    """Load the checkpoint at ``path`` into ``to_load`` (as ``Checkpoint.load_objects``) on this rank,
    after checking every :class:`RankStates` entry against this job's world size, so that a checkpoint
    of another world size is refused before anything is loaded."""
    from nbengine.handlers import Checkpoint, load_checkpoint

    saved = load_checkpoint(path)
    for key, obj in to_load.items():
        if isinstance(obj, RankStates):
            if not isinstance(saved, Mapping) or key not in saved:
                raise ValueError(f"{path} has no entry {key!r} for the RankStates of to_load")
            RankStates.check(saved[key])
    Checkpoint.load_objects(to_load=to_load, checkpoint=saved)


def _check_nccl_device(cuda: Any = None, backend: str | None = None) -> None:
    """Under NCCL, refuse to gather objects on a CUDA device other than this rank's own (``cuda`` and
    ``backend`` stand for ``torch.cuda`` and the job's backend)."""
    if (backend or idist.backend()) != "nccl":
        return
    if cuda is None:
        import torch.cuda as cuda
    local_rank = idist.get_local_rank()
    if cuda.current_device() != local_rank:
        raise RuntimeError(
            f"RankStates gathers every rank's state over NCCL on the current CUDA device, which is cuda:"
            f"{cuda.current_device()} on local rank {local_rank}: call torch.cuda.set_device({local_rank}) first "
            "(idist.initialize and Parallel do), or pass a gloo group: RankStates(engine, group=...)"
        )
