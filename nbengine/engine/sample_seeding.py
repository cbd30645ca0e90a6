"""Per-sample randomness: the global generators are seeded from ``(seed, pass, sample index)`` before
each sample of a map-style DataLoader is built, so a sample's random augmentation does not depend on
who builds it.

This module owns the sample keys and the dataset wrapper that turns them into seeded fetches. A
``ReproducibleBatchSampler`` with ``seeds_samples`` set yields, instead of plain indices, keys
``SampleKey(pass_seed, index)``, where ``pass_seed`` is derived from ``(seed, pass)``; ``SeededSamples``
(the loader's dataset) seeds Python's ``random``, numpy's global generator and torch's CPU generator
from them and then builds ``dataset[index]``. Whatever process builds the sample (a
worker, which worker, the main process when ``num_workers=0``), however many workers there are, and
wherever the run was resumed, sample ``index`` of pass ``p`` draws the same numbers.

What the user gives up: inside ``__getitem__`` the generators no longer run as one long sequence
from the worker's seed; each sample starts a fresh stream. Two samples never share draws, but a
dataset that relies on the continuation of the stream from one sample to the next (rare) sees
something else. With ``num_workers=0`` the samples are built in the training process, so the
training's own draws after a fetch continue from the last sample's stream (still a pure function of
the seed and the iteration, so exact; but not the same numbers as with workers). ``collate_fn`` and
``worker_init_fn`` are not seeded per sample. A dataset's own ``__getitems__`` (batch fetching) is
not used: samples are built one by one.

>>> import random
>>> import torch
>>> from torch.utils.data import Dataset, get_worker_info
>>> class Noisy(Dataset):
...     def __len__(self):
...         return 4
...     def __getitem__(self, index):
...         return index + torch.rand(1).item() + random.random()
>>> samples = SeededSamples(Noisy())
>>> samples[SampleKey(7, 2)] == samples[SampleKey(7, 2)] != samples[SampleKey(8, 2)]
True
>>> [[type(key).__name__ for key in batch] for batch in keyed_batches([[3, 1], [0, 2]], 0, 11, "batch")]
[['SampleKey', 'int'], ['SampleKey', 'int']]
>>> batch = next(keyed_batches([[3, 1]], 0, 11, "batch"))
>>> samples.__getitems__(batch) == samples.__getitems__(batch)
True
>>> len(samples), samples.dataset.__class__.__name__
(4, 'Noisy')
"""

from __future__ import annotations

import _random
import random
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

__all__ = ["GRANULARITIES", "SampleKey", "SeededSamples", "keyed_batches", "sample_seed"]

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15

# The C-level seeding of ``random``'s module instance: Random.seed() adds a Python-level call that
# costs a quarter of the seeding, and with an int argument does nothing else but clear gauss_next.
_seed_python = _random.Random.seed
_python_generator = random._inst  # the instance behind random.random(), random.shuffle(), ...


def _index_key(index: Any) -> int:
    if type(index) is int:
        return index
    if isinstance(index, (int, np.integer)):
        return int(index)
    # Not hash(): str hashing is salted per process, and the key must be the same in every process.
    return zlib.crc32(repr(index).encode())


def sample_seed(pass_seed: int, index: Any) -> int:
    """The seed of sample ``index`` in the pass whose seed is ``pass_seed``: a 63-bit mix of both
    (splitmix64), the same in every process.

    >>> sample_seed(5, 0) == sample_seed(5, 0), sample_seed(5, 0) == sample_seed(5, 1)
    (True, False)
    """
    value = (pass_seed + (_index_key(index) + 1) * _GOLDEN) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (value ^ (value >> 31)) >> 1


def _seed_generators(seed: int) -> None:
    _seed_python(_python_generator, seed)
    _python_generator.gauss_next = None
    np.random.seed(seed & 0xFFFFFFFF)
    torch.default_generator.manual_seed(seed)


class SampleKey(NamedTuple):
    """What a seeding ``ReproducibleBatchSampler`` yields in place of an index: the sample's index, and
    the seed to seed the generators with before building it (None: build it as they stand)."""

    seed: int | None
    index: Any


GRANULARITIES = ("batch", "sample")


def keyed_batches(batches: Iterable[list], first: int, pass_seed: int, granularity: str) -> Iterator[list]:
    """The batches of indices ``batches`` (the first of which is batch number ``first`` of its pass),
    as lists of ``SampleKey``: with ``granularity="sample"`` every sample is seeded from
    ``sample_seed(pass_seed, index)``; with ``"batch"`` the first sample of each batch is seeded from
    ``sample_seed(pass_seed, batch number)`` and the others continue its stream."""
    if granularity == "sample":
        for batch in batches:
            yield [SampleKey(sample_seed(pass_seed, index), index) for index in batch]
        return
    for number, batch in enumerate(batches, first):
        # Only the first is a key: SeededSamples builds the plain indices after it unseeded.
        yield [SampleKey(sample_seed(pass_seed, number), batch[0]), *batch[1:]] if batch else batch


class SeededSamples(Dataset):
    """A map-style dataset that seeds the global generators before building each sample, then returns
    ``dataset[index]``.

    Read with a ``SampleKey(seed, index)`` (what the DeterministicEngine's sampler yields), it seeds
    from ``seed`` unless it is None. Read with a plain index inside a DataLoader worker
    (a loader built by hand, e.g. ``StatefulDataLoader(SeededSamples(dataset), num_workers=2)``), it
    seeds from the iterator's base seed and the index: the base seed is drawn from the loader's
    ``generator`` once per pass and is the same in every worker, and torchdata's
    ``StatefulDataLoader`` restores it with its state, so a resumed pass draws what it drew. A plain
    index in the main process is built unseeded.

    ``len()`` is the dataset's, and other attributes are read from the dataset
    (``loader.dataset.classes`` still works)."""

    def __init__(self, dataset: Any) -> None:
        if isinstance(dataset, SeededSamples):
            dataset = dataset.dataset
        if not callable(getattr(dataset, "__getitem__", None)):
            raise TypeError(
                f"dataset should be a map-style dataset (with __getitem__), got {dataset!r} of type "
                f"{type(dataset).__name__}"
            )
        self.dataset = dataset

    def __getitem__(self, key: Any) -> Any:
        if type(key) is SampleKey:
            seed, index = key
            if seed is not None:
                _seed_generators(seed)
            return self.dataset[index]
        else:
            index = key
            worker = get_worker_info()
            if worker is None:
                return self.dataset[index]  # a plain index in the main process: nothing to seed from
            base_seed = worker.seed - worker.id  # the iterator's, the same in every worker
        _seed_generators(sample_seed(base_seed, index))
        return self.dataset[index]

    def __getitems__(self, keys: list) -> list:
        """A batch, as the DataLoader fetches it: the keyed samples seeded, the plain indices after a
        key built as the generators stand (a batch seeded once). The wrapped dataset's own
        ``__getitems__``, if any, is not used."""
        if not keys or type(keys[0]) is not SampleKey:
            return [self[key] for key in keys]
        dataset = self.dataset
        samples = []
        for key in keys:
            if type(key) is SampleKey:
                seed, key = key
                if seed is not None:
                    _seed_generators(seed)
            samples.append(dataset[key])
        return samples

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes this object lacks; "dataset" itself is missing while unpickling
        # (in a DataLoader worker), before __dict__ is filled.
        if name == "dataset" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        return f"SeededSamples({self.dataset!r})"
