"""Deterministic data flow: ``DeterministicEngine``, ``ReproducibleBatchSampler``, ``keep_random_state``
and ``update_dataloader`` (the API of ``ignite.engine.deterministic``).

This module owns the rule that makes runs resumable and replayable: **the data stream is a pure
function of the seed and the iteration**. Batch ``i`` of a run (counted from 0 over the whole run)
is batch ``i % L`` of pass ``i // L`` over the data, where ``L = len(data)``, and the order of pass
``p`` is drawn from a ``torch.Generator`` seeded from ``(seed, p)``, never from the global RNG. So
resuming at any iteration, at an epoch boundary or mid-epoch, opens the data at exactly the batch
the uninterrupted run would have fetched next: the consumed batches are not fetched, and the set-up
costs the same whatever the epoch. (pytorch-ignite's sampler draws the order lazily from the global
RNG *after* the saved RNG state was restored, so its mid-epoch resume repeats and skips samples.)

Because the position in the data follows from the iteration alone, ``terminate_epoch()`` does not
restart the data as ``Engine`` does: the next epoch goes on with the next batch of the stream, and
``set_data(data)`` continues at the batch ``data`` holds for the current iteration.

What else is made deterministic, and how:

- At every ``EPOCH_STARTED`` the global generators (Python, numpy, torch, CUDA) are seeded from
  ``(seed, epoch)``, before any other handler, so the randomness of epoch ``e`` (dropout,
  augmentation in the main process, iterables that shuffle themselves) depends on ``(seed, e)``.
- ``state_dict()`` holds the seed, the global RNG states as plain types, the torch thread count and
  the data length. A checkpoint taken mid-epoch restores the RNG states after the data is reopened,
  so the next process-function call draws what it drew in the uninterrupted run.
- Before each batch of a map-style DataLoader is built (in a worker or in this process), the global
  generators are seeded from ``(seed, pass, batch number)`` (``nbengine.engine.sample_seeding``), so
  random augmentation in ``__getitem__`` does not depend on the worker, the number of workers or the
  point of resume. DataLoader workers get their base seed from a generator seeded from ``(seed, pass)``.
- For its own run only (entered around every stretch of driving and restored after), the engine
  sets ``torch.backends.cudnn.deterministic = True`` and ``benchmark = False`` and runs with the
  torch thread count the run started with (or the checkpoint recorded): CPU results are bit-exact
  only with the same thread count.

Which data gets what:

- A map-style ``DataLoader`` has its batch sampler wrapped in ``ReproducibleBatchSampler``; exact at
  any iteration, with ``num_workers`` 0 or more, for any sampler whose randomness comes from a
  ``generator`` attribute (``RandomSampler``, ``WeightedRandomSampler``, ``SubsetRandomSampler``),
  from ``set_epoch`` (``DistributedSampler``) or from the global generators. A sampler that keeps
  random state of its own is refused with a ``ValueError``.
- Sequences and tensors are skipped into without fetching anything.
- Other iterables (generators, ``IterableDataset`` loaders) are reproduced at epoch granularity
  when one epoch is one pass; a mid-epoch resume has to fetch and drop the consumed batches.
  Randomness inside the workers of such loaders is reproduced per pass, not mid-epoch, unless the
  dataset derives it from the sample index.

>>> import torch
>>> from torch.utils.data import DataLoader
>>> seen = []
>>> engine = DeterministicEngine(lambda engine, batch: seen.append(batch.tolist()), seed=12)
>>> loader = DataLoader(torch.arange(12), batch_size=3, shuffle=True)
>>> _ = engine.run(loader, max_epochs=2)
>>> first_run = list(seen)
>>> seen.clear()
>>> engine.load_state_dict({"iteration": 6, "epoch_length": 4, "max_epochs": 2, "seed": 12})
>>> _ = engine.run(loader)
>>> seen == first_run[6:]
True
"""

from __future__ import annotations

import functools
import inspect
import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset
from torch.utils.data.distributed import DistributedSampler
from torch.utils.data.sampler import (
    BatchSampler,
    RandomSampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

from nbengine._checks import is_int
from nbengine.engine._ignite_compat import _get_rng_states, _repr_rng_state, _set_rng_states  # noqa: F401 (ignite's names)
from nbengine.engine.data import DataStream
from nbengine.engine.driver import RUNNING
from nbengine.engine.engine import Engine
from nbengine.engine.state_dict import DETERMINISTIC_KEYS, parse_deterministic
from nbengine.engine.events import Events, State
from nbengine.engine.sample_seeding import GRANULARITIES, SeededSamples, keyed_batches
from nbengine.utils.seed import (
    check_rng_states,
    derive_seed,
    get_rng_states,
    manual_seed,
    preserve_random_state,
    set_rng_states,
)

__all__ = ["DeterministicEngine", "ReproducibleBatchSampler", "keep_random_state", "update_dataloader"]

# Keys given to derive_seed so that each consumer of the run seed draws from its own stream.
_SAMPLER_STREAM = 1
_SAMPLER_GLOBAL_STREAM = 2
_LOADER_STREAM = 3
_EPOCH_STREAM = 4
_ITERABLE_STREAM = 5
_SAMPLE_STREAM = 6

# Samplers whose only randomness is a ``generator`` attribute, ``set_epoch``, or none at all: they
# need no probe. Exact types only: a subclass may draw from somewhere else.
_KNOWN_SAMPLER_TYPES = (
    SequentialSampler,
    RandomSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
    BatchSampler,
    DistributedSampler,
)

# update_dataloader rebuilds a DataLoader from its attributes; these describe how batches are formed
# and are replaced by the new batch sampler.
_BATCHING_ARGUMENTS = ("batch_size", "shuffle", "sampler", "batch_sampler", "drop_last")


def keep_random_state(func: Callable) -> Callable:
    """Decorator: call ``func``, return its value, and restore the global RNG states (Python, numpy,
    torch, CUDA) afterwards, also when ``func`` raises.

    >>> @keep_random_state
    ... def draw():
    ...     return torch.rand(1).item()
    >>> _ = torch.manual_seed(0)
    >>> draw() == draw()
    True
    """
    if not callable(func):
        raise TypeError(f"keep_random_state should decorate a callable, got {func!r} of type {type(func).__name__}")

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with preserve_random_state():
            return func(*args, **kwargs)

    return wrapper


def update_dataloader(dataloader: DataLoader, new_batch_sampler: Any) -> DataLoader:
    """A new DataLoader like ``dataloader`` (same dataset, workers, collate function, generator, ...)
    whose batches come from ``new_batch_sampler``. A loader without automatic batching
    (``batch_size=None``) gets it as its ``sampler``."""
    if not isinstance(dataloader, DataLoader):
        raise TypeError(f"dataloader should be a torch.utils.data.DataLoader, got {type(dataloader).__name__}")
    if not hasattr(dataloader, "dataset"):
        raise TypeError(
            f"dataloader of type {type(dataloader).__name__} has no dataset attribute, so it cannot be rebuilt "
            "with another batch sampler; give a DataLoader made by DataLoader.__init__"
        )
    if isinstance(dataloader.dataset, IterableDataset):
        raise ValueError(
            "dataloader iterates an IterableDataset, which has no sampler to replace; "
            f"got dataset of type {type(dataloader.dataset).__name__}"
        )
    if not isinstance(new_batch_sampler, Iterable):
        raise TypeError(
            f"new_batch_sampler should be an iterable of batches of indices, got {type(new_batch_sampler).__name__}"
        )
    return _rebuilt_loader(dataloader, new_batch_sampler, dataloader.dataset)


def _rebuilt_loader(dataloader: DataLoader, new_batch_sampler: Any, dataset: Any) -> DataLoader:
    arguments: dict[str, Any] = {"dataset": dataset}
    for name, parameter in inspect.signature(type(dataloader).__init__).parameters.items():
        if name in ("self", "dataset") or name in _BATCHING_ARGUMENTS:
            continue
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if hasattr(dataloader, name):
            arguments[name] = getattr(dataloader, name)
    if dataloader.batch_sampler is None:
        arguments["sampler"] = new_batch_sampler
        arguments["batch_size"] = None
    else:
        arguments["batch_sampler"] = new_batch_sampler
    return type(dataloader)(**arguments)


def _seeded_loader(
    dataloader: DataLoader, batch_sampler: ReproducibleBatchSampler, granularity: str = "batch"
) -> DataLoader:
    """``update_dataloader(dataloader, batch_sampler)`` whose batches (``granularity="batch"``) or
    samples (``"sample"``) are each built with the global generators seeded from (seed, pass, batch
    number or sample index); see ``nbengine.engine.sample_seeding``. Only with automatic batching: a
    loader with ``batch_size=None`` hands its dataset whole batches."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity should be one of {list(GRANULARITIES)}, got {granularity!r}")
    if dataloader.batch_sampler is None or isinstance(dataloader.dataset, IterableDataset):
        return update_dataloader(dataloader, batch_sampler)
    if batch_sampler is dataloader.batch_sampler:
        # The user's own loader keeps yielding plain indices to its plain dataset.
        batch_sampler = ReproducibleBatchSampler(batch_sampler, seed=batch_sampler.seed)
    batch_sampler.sample_seeding = granularity
    return _rebuilt_loader(dataloader, batch_sampler, SeededSamples(dataloader.dataset))


def _sampler_chain(batch_sampler: Any) -> list[Any]:
    chain = [batch_sampler]
    inner = getattr(batch_sampler, "sampler", None)
    while inner is not None and all(inner is not seen for seen in chain) and len(chain) < 8:
        chain.append(inner)
        inner = getattr(inner, "sampler", None)
    return chain


def _same_batches(first: list, second: list) -> bool:
    if len(first) != len(second):
        return False
    for a, b in zip(first, second):
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)):
                return False
        elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            if not _same_batches(list(a), list(b)):
                return False
        elif a != b:
            return False
    return True


class ReproducibleBatchSampler(BatchSampler):
    """Wraps a batch sampler so that an iteration can start at any batch of the pass
    (``start_iteration``, reset to None when the first batch is drawn), and, given a ``seed``, so
    that the order of each pass is a pure function of ``(seed, epoch)``, where ``epoch`` counts
    passes from 0 (set it with ``set_epoch``) and the skipped batches are not drawn.

    Without a seed (``seed=None``, the default, as pytorch-ignite's class is used on its own), each
    pass is what the wrapped batch sampler yields, drawn whole when its first batch is asked for,
    with the global generators as the wrapped sampler draws them: seeding those before each pass
    reproduces it, ``set_epoch`` is not needed, and the wrapped sampler's own ``set_epoch`` is the
    caller's to call. A ``DeterministicEngine`` gives the sampler of its data the run's seed.

    With a seed, the order is drawn from a ``torch.Generator`` seeded from ``(seed, epoch)``. What
    ``DataLoader(shuffle=True/False)`` builds (a BatchSampler over a RandomSampler without
    replacement, or over a SequentialSampler) is drawn directly, as one permutation of the pass.
    Otherwise the generator is lent in place of the ``generator`` attribute of each sampler in the chain
    (``batch_sampler.sampler``, ...), ``set_epoch(epoch)`` is called on samplers that have it, and
    samplers of other types draw with the global generators seeded from ``(seed, epoch)``, restored
    afterwards. Such samplers are probed once: if two draws of the same pass differ, they keep random
    state of their own and are refused with a ``ValueError``.

    ``iter()`` draws the whole pass at once (the order of a pass is cached) and yields from
    ``start_iteration``, which is reset to None when the first batch is drawn. (Samplers are
    probed, and refused, also when no seed is given yet.)

    >>> from torch.utils.data import BatchSampler, RandomSampler
    >>> sampler = ReproducibleBatchSampler(BatchSampler(RandomSampler(range(6)), 2, False), seed=5)
    >>> everything = list(sampler)
    >>> sampler.start_iteration = 1
    >>> list(sampler) == everything[1:]
    True
    >>> sampler.set_epoch(1)
    >>> sorted(i for batch in sampler for i in batch)
    [0, 1, 2, 3, 4, 5]
    """

    def __init__(self, batch_sampler: Any, start_iteration: int | None = None, *, seed: int | None = None) -> None:
        # BatchSampler.__init__ is not called: it validates a batch_size and drop_last this class has not.
        if isinstance(batch_sampler, ReproducibleBatchSampler):
            batch_sampler = batch_sampler.batch_sampler
        if not isinstance(batch_sampler, Iterable) or isinstance(batch_sampler, (str, bytes, Mapping)):
            raise TypeError(
                "Argument batch_sampler should be torch.utils.data.sampler.BatchSampler or another batch sampler "
                "(batch_sampler should be an iterable of batches of indices), "
                f"got {batch_sampler!r:.80} of type {type(batch_sampler).__name__}"
            )
        if isinstance(batch_sampler, Iterator):
            raise ValueError(
                f"batch_sampler of type {type(batch_sampler).__name__} cannot be made reproducible: it is an "
                "iterator, which yields its batches only once; give an iterable that can be iterated again"
            )
        try:
            len(batch_sampler)
        except TypeError:
            raise ValueError(
                f"batch_sampler of type {type(batch_sampler).__name__} cannot be made reproducible: it has no "
                "length, so a resumed run cannot know where a pass ends"
            ) from None
        self.batch_sampler = batch_sampler
        self.sampler = getattr(batch_sampler, "sampler", batch_sampler)
        self.start_iteration = start_iteration
        self.seed = seed
        self.epoch = 0
        # Set by _seeded_loader ("batch" or "sample"): batches are then of SampleKeys, for SeededSamples.
        self.sample_seeding: str | None = None
        self._cached: tuple[int, int, list] | None = None
        self._chain = _sampler_chain(batch_sampler)
        self._needs_global_seed = not all(type(s) in _KNOWN_SAMPLER_TYPES for s in self._chain)
        self._check_start(start_iteration)
        if self._needs_global_seed:
            self._probe()

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "seed" and value is not None:
            value = self._checked_seed(value)
        elif name == "start_iteration":
            self._check_start(value)
        super().__setattr__(name, value)

    @staticmethod
    def _checked_seed(seed: Any) -> int:
        if not is_int(seed) or not 0 <= seed < (1 << 64):
            raise ValueError(f"seed should be an integer in [0, 2**64), got {seed!r}")
        return int(seed)

    @staticmethod
    def _check_start(start: Any) -> None:
        if start is not None and (not is_int(start) or start < 0):
            raise ValueError(f"start_iteration should be None or a non-negative integer, got {start!r}")

    def set_epoch(self, epoch: int) -> None:
        """Choose the pass (from 0) that the next iteration draws."""
        if not is_int(epoch) or epoch < 0:
            raise ValueError(f"epoch should be a non-negative integer, got {epoch!r}")
        self.epoch = int(epoch)

    def _probe(self) -> None:
        seed = 0 if self.seed is None else self.seed
        first = self._draw(seed, 0)
        second = self._draw(seed, 0)
        if not _same_batches(first, second):
            names = " -> ".join(type(s).__name__ for s in self._chain)
            raise ValueError(
                f"batch_sampler ({names}) cannot be made reproducible: two draws of the same pass with the "
                "same seed gave different orders, so it keeps random state of its own that neither a "
                "`generator` attribute, set_epoch() nor the global generators control; draw from "
                "`self.generator` (a torch.Generator attribute) or from the global generators instead"
            )
        self._cached = (seed, 0, first)

    def _plain_batches(self, generator: torch.Generator) -> list | None:
        """The batches of a plain DataLoader (BatchSampler over RandomSampler or SequentialSampler),
        drawn in one go: a third of the time of iterating the samplers, and the same kind of order
        (one permutation per pass, from the pass's generator)."""
        batch_sampler = self.batch_sampler
        if type(batch_sampler) is not BatchSampler:
            return None
        sampler = batch_sampler.sampler
        if (
            type(sampler) is RandomSampler
            and not sampler.replacement
            and sampler.num_samples == len(sampler.data_source)
        ):
            order = torch.randperm(len(sampler.data_source), generator=generator).tolist()
        elif type(sampler) is SequentialSampler:
            order = list(range(len(sampler.data_source)))
        else:
            return None
        size = batch_sampler.batch_size
        end = len(order) - len(order) % size if batch_sampler.drop_last else len(order)
        return [order[start : start + size] for start in range(0, end, size)]

    def _draw(self, seed: int, epoch: int) -> list:
        generator = torch.Generator()
        generator.manual_seed(derive_seed(seed, _SAMPLER_STREAM, epoch))
        plain = self._plain_batches(generator)
        if plain is not None:
            return plain
        lent: list[tuple[Any, str, Any]] = []
        try:
            for sampler in self._chain:
                current = getattr(sampler, "generator", None)
                if hasattr(sampler, "generator") and (current is None or isinstance(current, torch.Generator)):
                    lent.append((sampler, "generator", current))
                    sampler.generator = generator
                if callable(getattr(sampler, "set_epoch", None)) and hasattr(sampler, "epoch"):
                    lent.append((sampler, "epoch", sampler.epoch))
                    sampler.set_epoch(epoch)
            if self._needs_global_seed:
                with preserve_random_state():
                    manual_seed(derive_seed(seed, _SAMPLER_GLOBAL_STREAM, epoch))
                    return list(self.batch_sampler)
            return list(self.batch_sampler)
        finally:
            for sampler, name, value in reversed(lent):
                setattr(sampler, name, value)

    def batches(self, epoch: int | None = None) -> list:
        """Every batch of pass ``epoch`` (default: the current one), in order. Cached per pass.
        Without a seed: the batches the wrapped sampler yields now (``epoch`` is not used)."""
        if self.seed is None:
            return list(self.batch_sampler)
        epoch = self.epoch if epoch is None else epoch
        cached = self._cached
        if cached is not None and cached[0] == self.seed and cached[1] == epoch:
            return cached[2]
        batches = self._draw(self.seed, epoch)
        self._cached = (self.seed, epoch, batches)
        return batches

    def __iter__(self) -> Iterator:
        if self.seed is None:
            return self._iterate_unseeded()
        # The pass and the start are read now, not at the first next(): what was set before iter()
        # is what counts, whatever is set afterwards for another iteration.
        batches = self.batches()
        start = self.start_iteration or 0
        if start > len(batches):
            raise ValueError(f"start_iteration={start} is past the end of the pass, which has {len(batches)} batches")
        pass_seed = derive_seed(self.seed, _SAMPLE_STREAM, self.epoch) if self.sample_seeding else None
        return self._iterate(batches, start, pass_seed)

    def _iterate(self, batches: list, start: int, pass_seed: int | None) -> Iterator:
        # start_iteration is consumed when the first batch is drawn: a multiprocessing DataLoader
        # calls iter() on its sampler twice before drawing, and only the second iterator is used.
        self.start_iteration = None
        remaining = itertools.islice(batches, start, None)
        if pass_seed is None:
            yield from remaining
        else:
            yield from keyed_batches(remaining, start, pass_seed, self.sample_seeding)

    def _iterate_unseeded(self) -> Iterator:
        # Drawn when the first batch is asked for, as the wrapped sampler would draw: a DataLoader
        # draws its workers' base seed from the global generator before it asks for a batch.
        batches = list(self.batch_sampler)
        start, self.start_iteration = self.start_iteration or 0, None
        yield from itertools.islice(batches, start, None)

    def __len__(self) -> int:
        return len(self.batch_sampler)


def _length(data: Any) -> int | None:
    try:
        return len(data)
    except TypeError:
        return None


def _dataset_length(data: Any) -> int | None:
    # A DataLoader subclass may have no dataset attribute (it wraps another loader, say).
    dataset = getattr(data, "dataset", None) if isinstance(data, DataLoader) else None
    if dataset is not None and not isinstance(dataset, IterableDataset):
        return _length(dataset)
    return None


def _reproducible_sampler(data: Any) -> ReproducibleBatchSampler | None:
    if isinstance(data, DataLoader):
        for sampler in (data.batch_sampler, data.sampler):
            if isinstance(sampler, ReproducibleBatchSampler):
                return sampler
    return None


def _skip(iterator: Iterator, count: int) -> Iterator:
    # Advances at C speed; for lists and tensors nothing is computed for the skipped items.
    next(itertools.islice(iterator, count, count), None)
    return iterator


@contextmanager
def _deterministic_settings(num_threads: int | None) -> Iterator[None]:
    """The cuDNN flags and thread count for the run, and back afterwards. A setting the user changed
    while the run was driven (from a cell beside a background run) is the user's: it is not put back."""
    cudnn = torch.backends.cudnn
    saved_deterministic, saved_benchmark = cudnn.deterministic, cudnn.benchmark
    threads_before = torch.get_num_threads()
    cudnn.deterministic = True
    cudnn.benchmark = False
    threads_set = num_threads if num_threads is not None else threads_before
    if threads_set != threads_before:
        torch.set_num_threads(threads_set)
    try:
        yield
    finally:
        if cudnn.deterministic is True:
            cudnn.deterministic = saved_deterministic
        if cudnn.benchmark is False:
            cudnn.benchmark = saved_benchmark
        if torch.get_num_threads() == threads_set != threads_before:
            torch.set_num_threads(threads_before)


class ReproducibleStream(DataStream):
    """A DeterministicEngine's batches: a map-style DataLoader iterated through a
    ``ReproducibleBatchSampler`` and its own worker-seed generator, so the data can be placed at any
    iteration; sequences and tensors are sliced; other iterables are opened with seeded generators
    and fast-forwarded. It also holds the training's random streams between stretches of driving."""

    def __init__(self, engine: DeterministicEngine) -> None:
        super().__init__(engine)
        self.loader_generator = torch.Generator()
        self.index_source: tuple[ReproducibleBatchSampler, int] | None = None
        self._cached: tuple[Any, Any] | None = None
        # The lengths a loaded state dict was saved with: data of other lengths is refused.
        self.expected_lengths: tuple[int | None, int | None] | None = None
        # The training's generator states while nobody drives; the ones a state dict brought, to be
        # installed where the loaded run stands.
        self.training_states: Mapping | None = None
        self.position_states: Mapping | None = None

    def prepare(self, data: Any) -> Any:
        """The data this engine iterates for ``data``: a DataLoader with a ReproducibleBatchSampler
        and its own worker-seed generator, or ``data`` itself. Cached for the last data given."""
        self._check_lengths(data)
        cached = self._cached
        if cached is not None and (data is cached[0] or data is cached[1]):
            return cached[1]
        if not isinstance(data, DataLoader) or not hasattr(data, "dataset") or isinstance(data.dataset, IterableDataset):
            return data  # an iterable, or a DataLoader subclass without a dataset: iterated as given
        inner = data.batch_sampler if data.batch_sampler is not None else data.sampler
        sampler = inner if isinstance(inner, ReproducibleBatchSampler) else ReproducibleBatchSampler(inner)
        loader = _seeded_loader(data, sampler)  # each batch built with the generators seeded (sample_seeding.py)
        loader.generator = self.loader_generator
        self._cached = (data, loader)
        return loader

    def _check_lengths(self, data: Any) -> None:
        expected = self.expected_lengths
        if expected is None or data is None:
            return
        data_length, dataset_length = expected
        given = (_length(data), _dataset_length(data))
        if (data_length is not None and given[0] != data_length) or (
            dataset_length is not None and given[1] != dataset_length
        ):
            raise ValueError(
                f"the state_dict was saved for data of length {data_length} (dataset length "
                f"{dataset_length}), but the data given has length {given[0]} (dataset length {given[1]}); "
                "resume with the data the checkpoint was taken with"
            )

    def begin(self, fresh: bool) -> None:
        engine = self.engine
        if fresh:
            self.position_states = self.training_states = None
            self.expected_lengths = None
            engine.state.seed = engine._draw_seed()
            engine._run_num_threads = torch.get_num_threads()
            return
        self.expected_lengths = None
        if engine.state.seed is None:
            engine.state.seed = engine._draw_seed()
        if engine._run_num_threads is None:
            engine._run_num_threads = torch.get_num_threads()

    def open(self, position: int, resuming: bool = False) -> None:
        engine = self.engine
        if engine.state.dataloader is None:
            super().open(position)
            return
        length = _length(engine.state.dataloader)
        if resuming and length and position and position % length == 0:
            # The uninterrupted run holds the iterator of the pass that just ended: its next fetch
            # finds it exhausted (DATALOADER_STOP_ITERATION fires) and opens the next pass.
            engine._data_iter = iter(())
            return
        engine._data_iter = self._open_at(position)

    def _open_at(self, position: int) -> Iterator:
        state = self.engine.state
        data = state.dataloader
        length = _length(data)
        if length:
            pass_index, offset = divmod(position, length)
        elif state.epoch_length:
            pass_index, offset = divmod(position, state.epoch_length)
        else:
            pass_index, offset = 0, 0
        sampler = _reproducible_sampler(data)
        self.index_source = (sampler, length) if sampler is not None and length else None
        if sampler is not None:
            sampler.seed = state.seed
            sampler.set_epoch(pass_index)
            sampler.start_iteration = offset
            if data.generator is self.loader_generator:
                self.loader_generator.manual_seed(derive_seed(state.seed, _LOADER_STREAM, pass_index))
            return iter(data)
        if isinstance(data, (Sequence, torch.Tensor)):
            return _skip(iter(data), offset) if offset else iter(data)
        # An iterable that may draw when it is opened (a DataLoader of an IterableDataset draws its
        # worker seed): open it with generators seeded from (seed, pass), and leave the global ones as they were.
        with preserve_random_state():
            manual_seed(derive_seed(state.seed, _ITERABLE_STREAM, pass_index))
            iterator = iter(data)
        if offset:
            # The dropped batches are drawn as the uninterrupted run drew them: from the generators
            # the epoch seeding set.
            self.engine.logger.info("resuming mid-epoch on an iterable: fetching and dropping %d batches", offset)
            _skip(iterator, offset)
        return iterator

    def interrupted_fetch(self) -> None:
        # The iterator may be half-way through a batch: reopen at the batch in flight.
        self.engine._data_iter = None

    def resumed(self, mid_epoch: bool = True) -> None:
        # At an epoch's start the epoch seeding puts the generators where the uninterrupted run had them.
        states, self.position_states = self.position_states, None
        if states is not None and mid_epoch:
            set_rng_states(states)

    def settings(self) -> Any:
        """The cuDNN flags and thread count of the run (entered around each stretch of driving)."""
        return _deterministic_settings(self.engine._run_num_threads)

    @contextmanager
    def training_streams(self) -> Iterator[None]:
        """While the run is driven, the generators hold the training's streams; a foreground run
        gives the caller's back afterwards, so that a cell drawing random numbers between two steps
        neither moves the training's streams nor sees them."""
        foreground = threading.current_thread() is not self.engine._driver.thread
        users = get_rng_states() if foreground else None
        if self.training_states is not None:
            set_rng_states(self.training_states)
        try:
            yield
        finally:
            self.training_states = get_rng_states()
            if users is not None:
                set_rng_states(users)


class DeterministicEngine(Engine):
    """An ``Engine`` whose data flow and randomness are a pure function of a seed and the iteration,
    so that resuming anywhere reproduces the uninterrupted run (see the module docstring).

    ``seed`` fixes the seed of every run; without it each new run draws one from torch's global
    generator (so ``manual_seed(s)`` before ``run()`` makes the run reproducible, as in
    pytorch-ignite). A loaded ``state_dict`` brings its own seed; one without ``"seed"`` (such as
    ``{"epoch": 1, "epoch_length": 5, "max_epochs": 2}``) draws it again when the run continues.

    The training draws from its own streams: a foreground ``run()`` or ``step()`` leaves the global
    generators as the caller had them, and the caller's draws between two steps do not change the run.

    ``state_dict()`` adds ``seed``, ``rng_states``, ``num_threads``, ``data_length`` and
    ``dataset_length`` to the Engine's keys; ``load_state_dict`` accepts them all as optional and
    refuses, when the run continues, data whose length differs from ``data_length`` or
    ``dataset_length``.
    """

    _extra_state_dict_keys = DETERMINISTIC_KEYS

    def __init__(self, process_function: Callable[[Engine, Any], Any], *, seed: int | None = None) -> None:
        super().__init__(process_function)
        if seed is not None:
            seed = ReproducibleBatchSampler._checked_seed(seed)
        self._fixed_seed = seed
        self.state.seed = seed
        self._epoch_start_rng_states: Mapping | None = None
        self._run_num_threads: int | None = None
        stream = ReproducibleStream(self)
        self._data_stream = stream
        self._drive_contexts = (stream.settings, stream.training_streams)
        self.add_event_handler(Events.EPOCH_STARTED, self._seed_epoch)

    def _seed_epoch(self) -> None:
        states, self._epoch_start_rng_states = self._epoch_start_rng_states, None
        if states is not None:
            set_rng_states(states)
            return
        manual_seed(derive_seed(self.state.seed, _EPOCH_STREAM, self.state.epoch))

    def _draw_seed(self) -> int:
        if self._fixed_seed is not None:
            return self._fixed_seed
        return int(torch.randint(0, 2**31 - 1, (1,)).item())

    def batch_indices(self) -> Any:
        """The dataset indices of the batch of the current iteration (``state.iteration``), when the
        data is a map-style DataLoader (its batch sampler knows them); None otherwise. About a
        microsecond: the order of the pass is already drawn. History uses it as the fingerprint.

        >>> import torch
        >>> from torch.utils.data import DataLoader
        >>> engine = DeterministicEngine(lambda engine, batch: None, seed=1)
        >>> _ = engine.step(2, data=DataLoader(torch.arange(10) * 100, batch_size=4, shuffle=True))
        >>> engine.state.batch.tolist() == [100 * i for i in engine.batch_indices()]
        True
        """
        source = self._data_stream.index_source
        position = self.state.iteration - 1
        if source is None or position < 0:
            return None
        sampler, length = source
        pass_index, offset = divmod(position, length)
        cached = sampler._cached
        if cached is not None and cached[1] == pass_index and cached[0] == sampler.seed:
            return cached[2][offset]
        return sampler.batches(pass_index)[offset]

    def set_data(self, data: Iterable) -> None:
        """Switch the data; the next batch is the one the new data holds at this iteration of the run
        (batch ``iteration % len(data)`` of pass ``iteration // len(data)``)."""
        super().set_data(data)

    # ------------------------------------------------------------------ state_dict

    def state_dict(self) -> OrderedDict:
        """The Engine's keys plus ``seed``, ``rng_states`` (plain types: the training's streams, also
        while paused or just loaded), ``num_threads``, ``data_length`` and ``dataset_length``; loads
        with ``torch.load(weights_only=True)``."""
        state_dict = super().state_dict()
        stream = self._data_stream
        data = self.state.dataloader
        driven_here = self._driver.status == RUNNING
        state_dict["seed"] = self.state.seed
        if stream.position_states is not None:
            state_dict["rng_states"] = stream.position_states
        elif driven_here or stream.training_states is None:
            state_dict["rng_states"] = get_rng_states()
        else:
            state_dict["rng_states"] = stream.training_states
        state_dict["num_threads"] = self._run_num_threads if self._run_num_threads is not None else torch.get_num_threads()
        lengths = stream.expected_lengths if data is None and stream.expected_lengths is not None else (
            _length(data) if data is not None else None, _dataset_length(data))
        state_dict["data_length"], state_dict["dataset_length"] = lengths
        return state_dict

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Like ``Engine.load_state_dict``; ``seed``, ``rng_states``, ``num_threads``, ``data_length``
        and ``dataset_length`` are optional. The random states are installed where the loaded run
        stands, after the batch in flight is fetched again."""
        extra = parse_deterministic(state_dict)
        super().load_state_dict(state_dict)
        stream = self._data_stream
        self.state.seed = extra.seed if extra.seed is not None else self._fixed_seed
        stream.position_states = extra.rng_states
        stream.training_states = extra.rng_states
        self._run_num_threads = extra.num_threads
        lengths = (extra.data_length, extra.dataset_length)
        stream.expected_lengths = None if lengths == (None, None) else lengths

    # ------------------------------------------------------------------ replicas

    def replica(
        self,
        handler_filter: Callable[[str, Callable], bool] | None = None,
        *,
        epoch_start_rng_states: Mapping | None = None,
    ) -> DeterministicEngine:
        """A new DeterministicEngine that shares nothing of this one's run: same process function,
        custom events, ``state_dict_user_keys`` and fixed seed; its data is the data this engine was
        given. State attributes that are not user keys are copied by reference.

        ``handler_filter(event_name, handler)`` is called for every handler attached to this engine,
        event by event in attach order; those it accepts are attached to the replica the same way
        (filters and arguments included). ``epoch_start_rng_states`` are installed at the replica's
        first ``EPOCH_STARTED`` in place of the epoch seeding (for a state captured inside that
        event). Used by epoch replay.
        """
        if handler_filter is not None and not callable(handler_filter):
            raise TypeError(f"handler_filter should be callable as (event_name, handler), got {handler_filter!r}")
        if epoch_start_rng_states is not None:
            check_rng_states(epoch_start_rng_states, "epoch_start_rng_states")
        twin = DeterministicEngine(self._process_function, seed=self._fixed_seed)
        builtin = {event.name for event in Events}
        custom = [event for key, event in self._allowed_events.items() if key not in builtin]
        if custom:
            counted = {
                self._allowed_events[key]: attr for key, attr in self._event_to_attr.items() if key not in builtin
            }
            twin.register_events(*custom, event_to_attr=counted or None)
        twin.state_dict_user_keys.extend(self.state_dict_user_keys)
        standard = set(vars(State()))
        for name, value in vars(self.state).items():
            if name not in standard and name not in self.state_dict_user_keys and not hasattr(twin.state, name):
                setattr(twin.state, name, value)
        own = self._seed_epoch
        for key, entries in self._table.entries.items():
            for entry in entries:
                if entry[0] != own and handler_filter is not None and handler_filter(key, entry[0]):
                    twin._table.append(key, entry)
        twin.state.dataloader = self._given_data
        twin._epoch_start_rng_states = epoch_start_rng_states
        return twin
