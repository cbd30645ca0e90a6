"""Where this process stands in a torch.distributed job, and the collectives ignite's ``idist`` offers.

Nothing here is cached: every answer is read from ``torch.distributed`` (is a default process group
initialised, which backend, which rank) and from the launcher's environment variables (``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, set by ``torchrun`` and by :class:`~nbengine.distributed.Parallel`). A group that
the user creates or destroys by hand is therefore seen at once, with no ``sync()`` needed, and on one
process (no group) every query answers as a single process would and every collective returns its
input.

Topology that torch.distributed does not record (processes per node) comes from ``LOCAL_WORLD_SIZE``;
without it the job is taken as single-node (local rank = rank), so no query ever runs a collective
behind the caller's back: a collective is only run by the functions named after one.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from functools import wraps
from numbers import Number
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist

from nbengine.distributed.comp_models import (  # _SerialModel: imported from here by ignite's tests
    _SerialModel,  # noqa: F401
    has_hvd_support,
    has_native_dist_support,
    has_xla_support,
)

__all__ = [
    "all_gather",
    "all_gather_tensors_with_shapes",
    "all_reduce",
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
    "sync",
]

_NATIVE_BACKENDS = ("nccl", "gloo", "mpi")
_REDUCE_OPS = {"SUM": "SUM", "PRODUCT": "PRODUCT", "MIN": "MIN", "MAX": "MAX", "AND": "BAND", "OR": "BOR"}


def is_distributed() -> bool:
    """True when a default process group of more than one process is initialised."""
    return has_native_dist_support and dist.is_initialized() and dist.get_world_size() > 1


def _group_initialized() -> bool:
    return has_native_dist_support and dist.is_initialized()


def sync(temporary: bool = False) -> None:
    """Kept for ignite code that calls it: this module always reads the live process group, so there is nothing to sync."""


def model_name() -> str:
    """``"native-dist"`` inside a torch.distributed process group, ``"serial"`` otherwise (ignite's names)."""
    return "native-dist" if _group_initialized() else "serial"


def backend() -> str | None:
    """The process group's backend (``"gloo"``, ``"nccl"``, ``"mpi"``), or ``None`` on one process."""
    return dist.get_backend() if _group_initialized() else None


def available_backends() -> tuple[str, ...]:
    """The torch.distributed backends this torch build provides."""
    if not has_native_dist_support:
        return ()
    found = [("nccl", dist.is_nccl_available()), ("gloo", dist.is_gloo_available()), ("mpi", dist.is_mpi_available())]
    return tuple(name for name, ok in found if ok)


def get_world_size() -> int:
    """Number of processes in the job; 1 without a process group."""
    return dist.get_world_size() if _group_initialized() else 1


def get_rank() -> int:
    """This process's rank in the job; 0 without a process group."""
    return dist.get_rank() if _group_initialized() else 0


def get_local_rank() -> int:
    """This process's rank on its node: ``LOCAL_RANK`` where the launcher set it, else the global rank."""
    if not _group_initialized():
        return 0
    local = os.environ.get("LOCAL_RANK")
    return int(local) if local is not None else dist.get_rank()


def get_nproc_per_node() -> int:
    """Processes per node: ``LOCAL_WORLD_SIZE`` where the launcher set it, else the world size (one node)."""
    if not _group_initialized():
        return 1
    local_size = os.environ.get("LOCAL_WORLD_SIZE")
    return int(local_size) if local_size is not None else dist.get_world_size()


def get_nnodes() -> int:
    """Number of nodes in the job."""
    return max(get_world_size() // get_nproc_per_node(), 1)


def get_node_rank() -> int:
    """This node's index in the job."""
    return get_rank() // get_nproc_per_node()


def hostname() -> str:
    """This machine's host name."""
    return socket.gethostname()


def device() -> torch.device:
    """The device this rank computes on: ``cuda:<local rank>`` under NCCL, CPU under gloo, CUDA/MPS/CPU alone."""
    if _group_initialized():
        if dist.get_backend() == "nccl":
            return torch.device(f"cuda:{get_local_rank()}")
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_local_rank(index: int) -> None:
    """Tell the helpers this process's local rank when the process group was made by hand (sets ``LOCAL_RANK``)."""
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ValueError(f"Argument index should be a non-negative int, got {index!r}")
    os.environ["LOCAL_RANK"] = str(index)


def initialize(backend: str, **kwargs: Any) -> None:
    """Create the default process group with ``backend`` (``init_method="env://"`` unless given).

    ``kwargs`` are passed to ``torch.distributed.init_process_group`` (``timeout``, ``init_method``,
    ``rank``, ``world_size``). Under NCCL the CUDA device of the local rank is selected.
    """
    if backend not in available_backends():
        raise ValueError(f"Backend should be one of '{available_backends()}', got {backend!r}")
    if dist.is_initialized():
        raise RuntimeError("Can not create new distributed process group if default one is already initialized")
    options = dict(kwargs)
    if options.get("init_method") is None:
        options["init_method"] = "env://"
        if "rank" in options or "world_size" in options:
            os.environ.setdefault("RANK", str(options.get("rank", 0)))
            os.environ.setdefault("WORLD_SIZE", str(options.get("world_size", 1)))
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "15000")
        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")
    dist.init_process_group(backend, **options)
    if backend == "nccl":
        torch.cuda.set_device(get_local_rank())


def finalize() -> None:
    """Destroy the default process group, if there is one."""
    if _group_initialized():
        dist.destroy_process_group()


def show_config() -> None:
    """Log the distributed configuration (model, backend, device, host, ranks) at INFO level."""
    logger = logging.getLogger(__name__)
    for label, value in (
        ("distributed configuration", model_name()),
        ("backend", backend()),
        ("device", device().type),
        ("hostname", hostname()),
        ("world size", get_world_size()),
        ("rank", get_rank()),
        ("local rank", get_local_rank()),
        ("num processes per_node", get_nproc_per_node()),
        ("num nodes", get_nnodes()),
        ("node rank", get_node_rank()),
    ):
        logger.info("%s: %s", label, value)


def new_group(ranks: list[int], **kwargs: Any) -> Any:
    """A process group over ``ranks`` (every rank of the job must call it); ``ranks`` itself on one process."""
    if not (isinstance(ranks, list) and all(isinstance(r, int) for r in ranks)):
        raise ValueError("Argument ranks should be list of int")
    if not _group_initialized():
        return ranks
    return dist.new_group(ranks=ranks, **kwargs)


def _resolve_group(group: Any) -> Any:
    if group is None:
        return None
    if isinstance(group, list) and all(isinstance(r, int) for r in group):
        return dist.new_group(ranks=group)
    if isinstance(group, dist.ProcessGroup) or group == dist.GroupMember.NON_GROUP_MEMBER:
        return group
    raise ValueError(f"Argument group should be list of int or ProcessGroup, got {type(group)}, group={group}")


def _rank_not_in_group(group: Any) -> bool:
    if group is None or not _group_initialized():
        return False
    if isinstance(group, list):
        return get_rank() not in group
    return dist._rank_not_in_group(group)


def _as_tensor(value: torch.Tensor | float) -> tuple[torch.Tensor, bool]:
    if isinstance(value, torch.Tensor):
        return value, False
    dtype = torch.double if isinstance(value, float) else None
    return torch.tensor(value, device=device(), dtype=dtype), True


def all_reduce(tensor: torch.Tensor | float, op: str = "SUM", group: Any = None) -> torch.Tensor | float:
    """Reduce ``tensor`` (a tensor or a number) over every rank with ``op``: SUM, PRODUCT, MIN, MAX, AND, OR.

    A tensor is reduced in place and returned; a number comes back as a number. On one process the input
    is returned as it is.
    """
    if not isinstance(tensor, (torch.Tensor, Number)):
        raise TypeError(f"Unhandled input type {type(tensor)}")
    if op not in _REDUCE_OPS:
        raise ValueError(f"Unsupported reduction operation: '{op}'")
    if not _group_initialized():
        return tensor
    group = _resolve_group(group)
    if _rank_not_in_group(group):
        return tensor
    value, was_number = _as_tensor(tensor)
    target = value.to(device()) if value.device != device() else value
    dist.all_reduce(target, getattr(dist.ReduceOp, _REDUCE_OPS[op]), group=group)
    if target is not value:
        value.copy_(target)
    return value.item() if was_number else value


def all_gather(tensor: Any, group: Any = None) -> Any:
    """Gather ``tensor`` from every rank.

    A tensor comes back concatenated along its first dimension (a 0-d tensor as shape ``(world_size,)``),
    a number or a string as a list with one entry per rank, any other picklable object as a list. On one
    process a tensor is returned as it is and anything else as a one-item list.
    """
    group = _resolve_group(group) if _group_initialized() else None
    if not _group_initialized() or _rank_not_in_group(group):
        return tensor if isinstance(tensor, torch.Tensor) else [tensor]
    size = dist.get_world_size(group)
    if isinstance(tensor, torch.Tensor):
        source = tensor.unsqueeze(0) if tensor.ndim == 0 else tensor
        moved = source.to(device())
        parts = [torch.empty_like(moved) for _ in range(size)]
        dist.all_gather(parts, moved.contiguous(), group=group)
        return torch.cat(parts, dim=0).to(tensor.device)
    if isinstance(tensor, Number):
        value, _ = _as_tensor(tensor)
        parts = [torch.empty_like(value.unsqueeze(0)) for _ in range(size)]
        dist.all_gather(parts, value.unsqueeze(0), group=group)
        return torch.cat(parts).tolist()
    gathered: list[Any] = [None] * size
    dist.all_gather_object(gathered, tensor, group=group)
    return gathered


def all_gather_tensors_with_shapes(
    tensor: torch.Tensor, shapes: Sequence[Sequence[int]], group: Any = None
) -> list[torch.Tensor]:
    """Gather tensors whose shapes differ between ranks (same number of dimensions); ``shapes`` lists them per rank."""
    if not _group_initialized():
        return [tensor]
    group = _resolve_group(group)
    if _rank_not_in_group(group):
        return [tensor]
    size = dist.get_world_size(group)
    biggest = torch.tensor(shapes).amax(dim=0).tolist()
    padded = torch.zeros(biggest, dtype=tensor.dtype, device=device())
    padded[tuple(slice(0, n) for n in tensor.shape)] = tensor.to(device())
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded, group=group)
    return [part[tuple(slice(0, n) for n in shape)].to(tensor.device) for part, shape in zip(parts, shapes)]


def broadcast(tensor: Any, src: int = 0, safe_mode: bool = False) -> Any:
    """Send ``tensor`` (a tensor, number, str or ``pathlib.Path``) from rank ``src`` to every rank.

    Without ``safe_mode`` the other ranks pass a placeholder of the same type (and, for a tensor, shape
    and dtype); with it they may pass ``None``.
    """
    if not (isinstance(tensor, (torch.Tensor, Number, str, Path)) or tensor is None):
        raise TypeError(f"Unhandled input type {type(tensor)}")
    rank = get_rank()
    if tensor is None:
        if rank == src:
            raise ValueError("Source data can not be None")
        if not safe_mode:
            raise ValueError("Argument safe_mode should be True if None is passed for non src rank")
    if not _group_initialized():
        return tensor
    if isinstance(tensor, torch.Tensor) and not safe_mode:
        moved = tensor.to(device())
        dist.broadcast(moved, src=src)
        return moved.to(tensor.device)
    if safe_mode:
        header = [(tuple(tensor.shape), tensor.dtype) if isinstance(tensor, torch.Tensor) else None]
        dist.broadcast_object_list(header, src=src)
        if header[0] is not None:
            shape, dtype = header[0]
            moved = tensor.to(device()) if rank == src else torch.empty(shape, dtype=dtype, device=device())
            dist.broadcast(moved, src=src)
            return moved
    box = [tensor if rank == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    """Wait until every rank reaches this call (nothing on one process)."""
    if _group_initialized():
        dist.barrier()


def one_rank_only(rank: int = 0, with_barrier: bool = False) -> Callable[[Callable], Callable]:
    """Decorator: run the function on rank ``rank`` only (others return ``None``), then a barrier if asked."""

    def decorate(func: Callable) -> Callable:
        @wraps(func)
        def on_one_rank(*args: Any, **kwargs: Any) -> Any:
            result = func(*args, **kwargs) if get_rank() == rank else None
            if with_barrier:
                barrier()
            return result

        return on_one_rank

    return decorate


@contextmanager
def one_rank_first(rank: int = 0, local: bool = False) -> Iterator[None]:
    """Run the block on ``rank`` (global, or local with ``local=True``) before every other rank runs it."""
    current = get_local_rank() if local else get_rank()
    size = get_nproc_per_node() if local else get_world_size()
    if rank >= size or rank < 0:
        raise ValueError(f"rank should be between 0 and {size - 1}, but given {rank}")
    if current != rank:
        barrier()
    yield
    if current == rank:
        barrier()


def _set_model(model: Any, temporary: bool = False) -> None:
    """Accepted for ignite's test fixtures, which reset the cached model after destroying a group by hand:
    this module caches nothing, so there is nothing to reset."""
