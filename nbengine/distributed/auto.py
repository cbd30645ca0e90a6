"""``auto_model``, ``auto_optim`` and ``auto_dataloader``: adapt a model, an optimizer and a data loader to
the job this process is in (ignite's ``idist.auto_*``), plus the samplers that split the data by rank.

On one process they return their input (the model moved to :func:`~nbengine.distributed.device`). In a
process group the model is wrapped in ``DistributedDataParallel``, and a map-style dataset gets a
:class:`ShardedSampler` (or a :class:`DistributedProxySampler` around the user's sampler).

:class:`ShardedSampler` is a ``DistributedSampler`` whose order comes from a ``generator`` attribute when
one is lent, which is how ``DeterministicEngine`` drives it: the engine lends a generator seeded from
``(seed, pass)``, every rank draws the same permutation of the whole dataset and keeps its own stride of
it, so the indices of rank ``r`` in pass ``p`` are a pure function of ``(seed, p, r, world size)``.
Without a lent generator it behaves as ``DistributedSampler`` (order from ``(self.seed, self.epoch)``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from nbengine.distributed import utils as idist

__all__ = ["DistributedProxySampler", "ShardedSampler", "auto_dataloader", "auto_model", "auto_optim"]

_logger = logging.getLogger(__name__)


class ShardedSampler(DistributedSampler):
    """This rank's share of a map-style dataset: every rank permutes the whole dataset the same way and
    takes every ``num_replicas``-th index from ``rank``, padded (or, with ``drop_last``, cut) to equal shares.

    ``generator`` (None by default) is the torch.Generator the permutation is drawn from; when it is None
    the permutation is drawn from a generator seeded with ``seed + epoch``, as ``DistributedSampler`` does.

    >>> shards = [list(ShardedSampler(range(10), num_replicas=3, rank=r, shuffle=False)) for r in range(3)]
    >>> shards
    [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]
    """

    def __init__(self, dataset: Any, num_replicas: int | None = None, rank: int | None = None, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.generator: torch.Generator | None = None

    def _order(self) -> list[int]:
        size = len(self.dataset)  # type: ignore[arg-type]
        if not self.shuffle:
            return list(range(size))
        generator = self.generator
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
        return torch.randperm(size, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        order = self._order()
        if self.drop_last:
            order = order[: self.total_size]
        else:
            while len(order) < self.total_size:
                order += order[: self.total_size - len(order)]
        return iter(order[self.rank : self.total_size : self.num_replicas])


class DistributedProxySampler(DistributedSampler):
    """Split what another sampler yields between the ranks: rank ``r`` keeps every ``num_replicas``-th index
    from ``r`` of the wrapped sampler's indices, repeated or cut to ``total_size``.

    The wrapped sampler must have a length and must not be distributed already. Before drawing, the
    global torch generator is seeded with the epoch (as ignite does), so every rank draws the same order.
    """

    def __init__(self, sampler: Sampler, num_replicas: int | None = None, rank: int | None = None) -> None:
        if not isinstance(sampler, Sampler):
            raise TypeError(f"Argument sampler should be instance of torch Sampler, but given: {type(sampler)}")
        if isinstance(sampler, DistributedSampler):
            raise TypeError("Argument sampler must not be a distributed sampler already")
        if not hasattr(sampler, "__len__"):
            raise TypeError("Argument sampler should have length")
        super().__init__(sampler, num_replicas=num_replicas, rank=rank, shuffle=False)  # type: ignore[arg-type]
        self.sampler = sampler

    def __iter__(self) -> Iterator[int]:
        torch.manual_seed(self.epoch)
        indices: list[int] = []
        while len(indices) < self.total_size:
            indices += list(self.sampler)
        indices = indices[: self.total_size][self.rank : self.total_size : self.num_replicas]
        if len(indices) != self.num_samples:
            raise RuntimeError(f"{len(indices)} vs {self.num_samples}")
        return iter(indices)


def auto_dataloader(dataset: Dataset, **kwargs: Any) -> DataLoader:
    """A ``DataLoader`` over ``dataset`` for this job (``kwargs`` as for ``DataLoader``).

    In a process group of ``W`` ranks: ``batch_size`` is divided by ``W`` (when at least ``W``),
    ``num_workers`` by the processes per node, and without a ``sampler`` a :class:`ShardedSampler` is used
    (``shuffle`` passed to it); a ``DistributedSampler`` given is kept, any other sampler is wrapped in a
    :class:`DistributedProxySampler`. An ``IterableDataset`` or a ``batch_sampler`` is left as given.
    ``pin_memory`` defaults to True on CUDA.
    """
    world_size = idist.get_world_size()
    rank = idist.get_rank()
    if world_size > 1:
        if "batch_size" in kwargs and kwargs["batch_size"] >= world_size:
            kwargs["batch_size"] //= world_size
        per_node = idist.get_nproc_per_node()
        if "num_workers" in kwargs and kwargs["num_workers"] >= per_node:
            kwargs["num_workers"] = (kwargs["num_workers"] + per_node - 1) // per_node
        if "batch_sampler" in kwargs:
            warnings.warn(
                "Found batch_sampler in provided kwargs. Please, make sure that it is compatible "
                "with distributed configuration"
            )
        elif isinstance(dataset, IterableDataset):
            _logger.info("Iterable dataset: no distributed sampling; each rank's dataset must yield its own share")
        else:
            kwargs["sampler"] = _distributed_sampler(dataset, kwargs, rank, world_size)
    kwargs.setdefault("pin_memory", "cuda" in idist.device().type)
    return DataLoader(dataset, **kwargs)


def _distributed_sampler(dataset: Dataset, kwargs: dict, rank: int, world_size: int) -> Sampler:
    sampler = kwargs.get("sampler")
    if isinstance(sampler, DistributedSampler):
        if sampler.rank != rank:
            warnings.warn(f"Found distributed sampler with rank={sampler.rank}, but process rank is {rank}")
        if sampler.num_replicas != world_size:
            warnings.warn(
                f"Found distributed sampler with num_replicas={sampler.num_replicas}, but world size is {world_size}"
            )
        return sampler
    if sampler is None:
        return ShardedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=kwargs.pop("shuffle", True))
    return DistributedProxySampler(sampler, num_replicas=world_size, rank=rank)


def auto_model(model: nn.Module, sync_bn: bool = False, **kwargs: Any) -> nn.Module:
    """``model`` on this rank's device, wrapped in ``DistributedDataParallel`` in a process group of more than
    one rank (``sync_bn`` converts batch norms to ``SyncBatchNorm`` first; ``kwargs`` go to the wrapper).

    Under CUDA the wrapper gets ``device_ids=[local rank]``. Alone with several GPUs it is wrapped in
    ``DataParallel``.
    """
    target = idist.device()
    if not all(p.device == target for p in model.parameters()):
        model.to(target)
    if idist.get_world_size() > 1:
        if sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if torch.cuda.is_available() and target.type == "cuda":
            if "device_ids" in kwargs:
                raise ValueError(f"Argument kwargs should not contain 'device_ids', but got {kwargs}")
            kwargs["device_ids"] = [idist.get_local_rank()]
        return nn.parallel.DistributedDataParallel(model, **kwargs)
    if torch.cuda.device_count() > 1 and target.type == "cuda":
        return nn.parallel.DataParallel(model, **kwargs)
    return model


def auto_optim(optimizer: Optimizer, **kwargs: Any) -> Optimizer:
    """``optimizer`` itself: under torch.distributed, DDP already averages gradients, so nothing wraps it."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"Argument optimizer should be a torch.optim.Optimizer, got {type(optimizer)}")
    return optimizer
