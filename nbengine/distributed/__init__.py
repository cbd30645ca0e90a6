"""``nbengine.distributed`` (import it as ``idist``): the same Engine on torch.distributed.

ignite 0.5.5's ``ignite.distributed`` API (rank and topology queries, collectives, ``auto_model``,
``auto_optim``, ``auto_dataloader``, ``Parallel``), every part a no-op on one process, read live from
torch.distributed (gloo on CPU, NCCL on GPU). ``import nbengine`` does not import this package.

>>> import nbengine.distributed as idist
>>> idist.get_world_size(), idist.get_rank(), idist.backend()
(1, 0, None)
>>> idist.all_reduce(3)
3
"""

from nbengine.distributed import utils
from nbengine.distributed.checkpoint import RankStates
from nbengine.distributed.control import DistributedControl, RankFailedError
from nbengine.distributed.commands import CommandLog
from nbengine.distributed.auto import DistributedProxySampler, ShardedSampler, auto_dataloader, auto_model, auto_optim
from nbengine.distributed.launcher import Parallel, spawn
from nbengine.distributed.utils import (
    all_gather,
    all_gather_tensors_with_shapes,
    all_reduce,
    available_backends,
    backend,
    barrier,
    broadcast,
    device,
    finalize,
    get_local_rank,
    get_nnodes,
    get_node_rank,
    get_nproc_per_node,
    get_rank,
    get_world_size,
    has_hvd_support,
    has_native_dist_support,
    has_xla_support,
    hostname,
    initialize,
    model_name,
    new_group,
    one_rank_first,
    one_rank_only,
    set_local_rank,
    show_config,
    sync,
)

__all__ = [
    "CommandLog",
    "DistributedControl",
    "DistributedProxySampler",
    "RankFailedError",
    "RankStates",
    "Parallel",
    "ShardedSampler",
    "all_gather",
    "all_gather_tensors_with_shapes",
    "all_reduce",
    "auto_dataloader",
    "auto_model",
    "auto_optim",
    "available_backends",
    "backend",
    "barrier",
    "broadcast",
    "device",
    "finalize",
    "get_local_rank",
    "get_nnodes",
    "get_node_rank",
    "get_nproc_per_node",
    "get_rank",
    "get_world_size",
    "has_hvd_support",
    "has_native_dist_support",
    "has_xla_support",
    "hostname",
    "initialize",
    "model_name",
    "new_group",
    "one_rank_first",
    "one_rank_only",
    "set_local_rank",
    "show_config",
    "spawn",
    "sync",
    "utils",
]
