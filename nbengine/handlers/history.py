"""``History``: the per-iteration outputs and batch fingerprints, and the per-epoch metrics, of a run.

This module owns what the loss panel and epoch replay read about a run's past: for every iteration,
its run number, epoch, iteration, a fingerprint of the batch (0 where none is taken, see below) and
the process function's output as Python floats (never tensors, which could keep a graph alive); for
every epoch, the scalar metrics. Memory is bounded: iterations live in preallocated numpy ring
buffers of ``capacity`` rows (filled a block at a time from a short list, which is cheaper per
iteration), epochs in a ring of ``epoch_capacity``. Another thread reads it through ``snapshot()``
(consistent copies, taken under a lock that the recording thread needs only once per block) and can
tell whether anything changed from ``version``, which grows by one for every change.

What identifies a batch (``History(fingerprint=...)``, default ``"auto"``):

- on a ``DeterministicEngine`` over a map-style DataLoader, its sample indices (hashed): exact, and
  about 1 µs per iteration inside a training loop, because the order of the pass is already drawn;
- on a ``DeterministicEngine`` over other data, ``batch_fingerprint``, a CRC-32 of the bytes of each
  tensor or array in the batch, seeded with its shape and dtype and mixed along the structure of the
  batch; tensors over 1 KiB are read through three 256-byte windows (start, middle, end), so the
  cost does not grow with the batch. It is costly for a recorder: measured on the 2-core reference
  machine, 4-5 µs for an ``(x, y)`` batch in a tight loop but about 15 µs inside a training loop,
  where every Python step runs with cold caches (``benchmarks/bench_progress.py``). Equal
  fingerprints are strong evidence, not proof, of equal batches (a change outside the windows goes
  unseen); different ones prove the batches differ. A batch on an accelerator is sampled at 64
  evenly spaced elements (one small device-to-host copy);
- on a plain ``Engine``, nothing (0): its batches cannot be replayed (``EpochReplay`` needs a
  DeterministicEngine), so the recorder keeps to the outputs: about 2 µs per iteration inside a
  training loop, 0.35 µs in a tight one. Pass ``fingerprint=batch_fingerprint`` to fingerprint
  content on any engine (on a DeterministicEngine it then also shows whether the dataset returned
  the same data, random augmentation included), a function of the batch to use your own, or
  ``None`` for nothing.

Both kinds of fingerprint are the same in every process.

>>> from nbengine.engine import Engine, Events
>>> engine = Engine(lambda engine, batch: float(batch) / 2)
>>> history = History(capacity=3).attach(engine)
>>> _ = engine.run([1, 2, 3, 4], max_epochs=1)
>>> snap = history.snapshot()
>>> (snap.iterations.tolist(), snap.values[:, 0].tolist(), snap.names, snap.dropped)
([2, 3, 4], [1.0, 1.5, 2.0], ('output',), 1)
>>> snap.fingerprints.tolist()  # a plain Engine: no fingerprints unless asked for
[0, 0, 0]
>>> content = History(fingerprint=batch_fingerprint).attach(Engine(lambda engine, batch: 0.0))
>>> _ = content.engine.run([7], max_epochs=1)
>>> int(content.snapshot().fingerprints[0]) == batch_fingerprint(7)
True
"""

from __future__ import annotations

import numbers
import threading
import warnings
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from nbengine.engine.events import Events

__all__ = ["History", "HistorySnapshot", "batch_fingerprint"]

_MASK63 = (1 << 63) - 1
_MASK64 = (1 << 64) - 1
_MASK32 = (1 << 32) - 1
_FNV_PRIME = 0x100000001B3
_WINDOW = 256
_DEVICE_SAMPLES = 64
_SEQUENCE_SAMPLES = 16


def _mix(acc: int, part: int) -> int:
    return ((acc ^ (part & _MASK64)) * _FNV_PRIME) & _MASK64


def _crc(array: np.ndarray, seed: int, window: int) -> int:
    # Raises ValueError/TypeError for a non-contiguous array: the caller makes it contiguous.
    nbytes = array.nbytes
    seed &= _MASK32
    if nbytes <= 4 * window:
        return zlib.crc32(array, seed)
    raw = memoryview(array).cast("B")
    middle = (nbytes - window) // 2
    return zlib.crc32(raw[nbytes - window :], zlib.crc32(raw[middle : middle + window], zlib.crc32(raw[:window], seed)))


def _array_fingerprint(array: np.ndarray, window: int) -> int:
    # Hashes of tuples of ints are the same in every process (only str/bytes hashing is salted).
    seed = hash(array.shape) ^ array.dtype.num
    try:
        return _crc(array, seed, window)
    except (BufferError, ValueError, TypeError):
        return _crc(np.ascontiguousarray(array), seed, window)


def _tensor_fingerprint(tensor: torch.Tensor, window: int) -> int:
    # The common case (a contiguous CPU tensor numpy can view) takes as few Python steps as possible:
    # in a training loop this runs with cold caches, where every step costs several times its
    # micro-benchmarked price.
    if tensor.is_cpu:
        try:
            array = tensor.numpy()
            return _crc(array, hash(tensor.shape) ^ array.dtype.num, window)
        except (BufferError, ValueError, TypeError, RuntimeError):
            pass  # requires grad, non-contiguous, or a dtype numpy lacks
    return _unusual_tensor_fingerprint(tensor, window)


def _unusual_tensor_fingerprint(tensor: torch.Tensor, window: int) -> int:
    seed = hash(tensor.shape)
    tensor = tensor.detach()
    if not tensor.is_cpu:
        flat = tensor.reshape(-1)
        count = flat.numel()
        if count > _DEVICE_SAMPLES:
            positions = torch.linspace(0, count - 1, _DEVICE_SAMPLES, device=flat.device).long()
            flat = flat[positions]
        tensor = flat.cpu()
    tensor = tensor.contiguous()
    try:
        array = tensor.numpy()
        seed ^= array.dtype.num
    except TypeError:
        # bfloat16 and other dtypes numpy lacks: the raw bytes.
        array = tensor.reshape(-1).view(torch.uint8).numpy()
        seed ^= zlib.crc32(str(tensor.dtype).encode())
    return _crc(array, seed, window)


def _fingerprint(value: Any, window: int) -> int:
    # Checks ordered by how often batches are made of them; the abstract Mapping check is slow.
    if isinstance(value, torch.Tensor):
        return _tensor_fingerprint(value, window)
    if isinstance(value, (list, tuple)):
        count = len(value)
        acc = count * 2 + isinstance(value, tuple)
        if count <= _SEQUENCE_SAMPLES:
            for item in value:
                acc = (acc * _FNV_PRIME) ^ _fingerprint(item, window)
        else:
            step = count / _SEQUENCE_SAMPLES
            for index in range(_SEQUENCE_SAMPLES):
                acc = (acc * _FNV_PRIME) ^ _fingerprint(value[int(index * step)], window)
        return acc & _MASK64
    if isinstance(value, np.ndarray):
        return _array_fingerprint(value, window)
    if value is None or isinstance(value, (bool, int, float)):
        return hash(value)
    if isinstance(value, str):
        return zlib.crc32(value.encode())
    if isinstance(value, (bytes, bytearray)):
        return zlib.crc32(value)
    if isinstance(value, Mapping):
        acc = len(value)
        for key, item in value.items():
            acc = _mix(_mix(acc, _fingerprint(key, window)), _fingerprint(item, window))
        return acc
    if isinstance(value, numbers.Number):
        return hash(value)
    return zlib.crc32(type(value).__qualname__.encode())


def batch_fingerprint(batch: Any, *, window: int = _WINDOW) -> int:
    """A cheap fingerprint of ``batch`` (tensors, arrays, numbers, strings and the mappings, lists and
    tuples they are nested in), as an int in ``[0, 2**63)``; see the module docstring. Tensors up to
    ``4 * window`` bytes are read whole, larger ones through three windows of ``window`` bytes
    (``functools.partial(batch_fingerprint, window=...)`` reads more).

    >>> x = torch.arange(6.0)
    >>> batch_fingerprint((x, 1)) == batch_fingerprint((x.clone(), 1))
    True
    >>> batch_fingerprint((x, 1)) == batch_fingerprint((x + 1, 1))
    False
    """
    if not isinstance(window, numbers.Integral) or isinstance(window, bool) or window < 1:
        raise ValueError(f"window should be a positive number of bytes, got {window!r}")
    return _fingerprint(batch, int(window)) & _MASK63


@dataclass(frozen=True)
class HistorySnapshot:
    """A consistent copy of what a ``History`` holds, oldest record first."""

    #: ``History.version`` when the copy was taken.
    version: int
    #: The names of the output series, e.g. ``("output",)`` or ``("loss", "accuracy")``.
    names: tuple[str, ...]
    #: Per iteration: the run number (counting from 1, a new run starts at iteration 0), epoch, iteration, fingerprint.
    runs: np.ndarray
    epochs: np.ndarray
    iterations: np.ndarray
    fingerprints: np.ndarray
    #: Per iteration, one column per name; NaN where an output had no value for that name.
    values: np.ndarray
    #: Per completed epoch: ``(run, epoch, iteration, {metric name: float})``.
    epoch_metrics: list[tuple[int, int, int, dict[str, float]]] = field(default_factory=list)
    #: Iteration records dropped because the buffer was full.
    dropped: int = 0
    #: ``(run, epoch, iteration, kind)`` where the run may not have been exact from that iteration on:
    #: "cell" (it shared the global generators with a notebook cell, see ``CellGuard``) or "outside".
    notes: list[tuple[int, int, int, str]] = field(default_factory=list)
    #: Per iteration, a CRC-32 of torch's CPU generator state when the iteration started (0 where
    #: not watched; see ``History(watch_generators=True)``).
    generators: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.iterations)

    def series(self, name: str) -> np.ndarray:
        """The values of one output series."""
        if name not in self.names:
            raise KeyError(f"no output series named {name!r}; the series are {list(self.names)}")
        return self.values[:, self.names.index(name)]


def _scalar(value: Any) -> float | None:
    kind = type(value)
    if kind is float:
        return value
    if kind is int:
        return float(value)
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else None
    if isinstance(value, np.ndarray):
        return float(value.reshape(-1)[0]) if value.size == 1 else None
    if isinstance(value, numbers.Real):
        return float(value)
    return None


def _series_names(output: Any) -> tuple[str, ...] | None:
    if _scalar(output) is not None:
        return ("output",)
    if isinstance(output, Mapping) and output and all(_scalar(v) is not None for v in output.values()):
        return tuple(str(key) for key in output)
    if isinstance(output, (list, tuple)) and output and all(_scalar(v) is not None for v in output):
        return tuple(f"output_{index}" for index in range(len(output)))
    return None


class History:
    """Records a run's iterations and epochs for the panels and for epoch replay.

    ``capacity`` bounds the iteration records (the oldest are dropped), ``epoch_capacity`` the epoch
    records. ``output_transform`` maps ``engine.state.output`` to what is recorded: a number or
    one-element tensor (series ``"output"``), a mapping of them (one series per key) or a list/tuple
    of them (``"output_0"``, ...). The series are fixed by the first iteration recorded; a later
    output without a value for a series records NaN there, and an output that cannot be recorded
    records NaN with one ``RuntimeWarning``. ``fingerprint`` says what identifies a batch:
    ``"auto"`` (the default) records the batch's sample indices on a DeterministicEngine that knows
    them (``batch_indices()``, a map-style DataLoader), ``batch_fingerprint`` of its content on other
    DeterministicEngines and nothing (0) on a plain Engine; a callable maps ``engine.state.batch`` to
    an int; None records 0.

    Records are taken at ``ITERATION_COMPLETED`` (after the process function, so a batch changed in
    place is fingerprinted as changed) and, for the metrics, at ``EPOCH_COMPLETED``: attach the
    History after the metrics so that it sees their values. Metrics that are not scalars are left out.
    """

    def __init__(
        self,
        capacity: int = 100_000,
        *,
        output_transform: Callable[[Any], Any] | None = None,
        fingerprint: Callable[[Any], int] | str | None = "auto",
        epoch_capacity: int = 10_000,
        watch_generators: bool = False,
    ) -> None:
        for name, value in (("capacity", capacity), ("epoch_capacity", epoch_capacity)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} should be a positive integer, got {value!r}")
        if output_transform is not None and not callable(output_transform):
            raise TypeError(f"output_transform should be callable or None, got {output_transform!r}")
        if fingerprint is not None and fingerprint != "auto" and not callable(fingerprint):
            raise TypeError(f"fingerprint should be 'auto', a callable or None, got {fingerprint!r}")
        if not isinstance(watch_generators, bool):
            raise TypeError(f"watch_generators should be True or False, got {watch_generators!r}")
        self._capacity = int(capacity)
        self._watch_generators = watch_generators
        self._generator_at_start = 0
        self._output_transform = output_transform
        self._fingerprint = fingerprint
        # What the recorder calls for a batch's fingerprint, chosen at attach time (None: record 0).
        self._fingerprint_of: Callable[[Any], int] | None = None
        self._lock = threading.Lock()
        # Edits other than appended iterations (runs, epochs, rewinds, clears); see ``version``.
        self._edits = 0
        # Iteration records ever moved into the buffers (a rewind does not lower it); see ``version``.
        self._moved = 0
        self._count = 0
        self._run = 0
        self._runs = np.zeros(self._capacity, dtype=np.int64)
        self._epochs = np.zeros(self._capacity, dtype=np.int64)
        self._iterations = np.zeros(self._capacity, dtype=np.int64)
        self._fingerprints = np.zeros(self._capacity, dtype=np.int64)
        self._generators = np.zeros(self._capacity, dtype=np.int64)
        self._values: np.ndarray | None = None
        self._names: tuple[str, ...] | None = None
        # Whether an output that is a float is recorded as it is (one series, no transform).
        self._float_as_is = False
        # Records go to a plain list first and into the numpy buffers a block at a time: one list
        # append per iteration costs less, inside a training loop, than five numpy item writes. The
        # recording thread appends without the lock (a list append is atomic); moving the records
        # into the buffers, and everything else that changes them, takes the lock.
        self._pending: list[tuple] = []
        self._flush_at = min(1024, self._capacity)
        self._epoch_records: deque[tuple[int, int, int, dict[str, float]]] = deque(maxlen=int(epoch_capacity))
        # Notes of completed epochs, copied from the engine's ``state.rng_notes`` once per epoch.
        self._notes: deque[tuple[int, int, int, str]] = deque(maxlen=int(epoch_capacity))
        self._warned = False
        self._engine: Any = None
        self._handles: list[Any] = []

    # ------------------------------------------------------------------ attaching

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def engine(self) -> Any:
        """The engine being recorded, or None when detached."""
        return self._engine

    @property
    def output_transform(self) -> Callable[[Any], Any] | None:
        return self._output_transform

    @property
    def fingerprint(self) -> Callable[[Any], int] | str | None:
        return self._fingerprint

    @property
    def watch_generators(self) -> bool:
        """Whether each iteration records a CRC-32 of torch's CPU generator state as it started, so
        that a replay can tell a generator disturbed from outside (another thread drew from it) from
        a divergence of the computation. About 2-3 µs per iteration. What it sees: a draw between the
        fetch of a batch and the start of its iteration, or between iterations when the batches are
        built in worker processes; a draw landing inside the process function shows as a divergence
        at that iteration, and one before a fetch in the training process is wiped out by the
        per-batch seeding of the data (harmless)."""
        return self._watch_generators

    @property
    def version(self) -> int:
        """Grows by one with every change (a record, a rewind, a clear): compare it to see if anything changed."""
        with self._lock:
            return self._edits + self._moved + len(self._pending)

    @property
    def count(self) -> int:
        """Iterations recorded and still counted (held or dropped by the cap)."""
        return self._count + len(self._pending)

    @property
    def run(self) -> int:
        """The number of the run being recorded (0 before the first)."""
        return self._run

    def attach(self, engine: Any) -> History:
        """Record ``engine`` from now on. Returns the History."""
        if not callable(getattr(engine, "add_event_handler", None)):
            raise TypeError(f"engine should be an nbengine Engine, got {engine!r} of type {type(engine).__name__}")
        if self._engine is not None:
            raise RuntimeError(f"this History already records {self._engine!r}; detach() it first or make another")
        self._engine = engine
        self._fingerprint_of = self._choose_fingerprint(engine)
        self._handles = [
            *([engine.add_event_handler(Events.ITERATION_STARTED, self._on_iteration_started)] if self._watch_generators else []),
            engine.add_event_handler(Events.STARTED, self._on_started),
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._on_iteration_completed),
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._on_epoch_completed),
        ]
        return self

    def detach(self) -> None:
        """Stop recording; what was recorded stays readable."""
        handles, self._handles = self._handles, []
        self._engine = None
        self._fingerprint_of = None
        for handle in handles:
            handle.remove()

    def owns_handler(self, handler: Any) -> bool:
        """Whether ``handler`` is one of the handlers this History attached."""
        return getattr(handler, "__self__", None) is self

    # ------------------------------------------------------------------ recording (training side)

    def _choose_fingerprint(self, engine: Any) -> Callable[[Any], int] | None:
        if self._fingerprint is None:
            return None
        if self._fingerprint != "auto":
            return self._custom_fingerprint
        batch_indices = getattr(engine, "batch_indices", None)
        if not callable(batch_indices):
            return None  # a plain Engine: nothing to replay, so nothing to identify (module docstring)

        def indices_or_content(batch: Any) -> int:
            indices = batch_indices()
            if indices is None:
                return batch_fingerprint(batch)
            return hash(indices if type(indices) is int else tuple(indices)) & _MASK63

        return indices_or_content

    def _custom_fingerprint(self, batch: Any) -> int:
        fingerprint = self._fingerprint(batch)  # type: ignore[operator]
        if type(fingerprint) is not int:
            raise TypeError(
                f"the History's fingerprint function returned {fingerprint!r} of type "
                f"{type(fingerprint).__name__}; it should return an int"
            )
        return fingerprint & _MASK63

    def _on_started(self, engine: Any) -> None:
        if engine.state.iteration == 0 or self._run == 0:
            with self._lock:
                self._run += 1
                self._edits += 1

    def _on_iteration_started(self) -> None:
        self._generator_at_start = zlib.crc32(torch.default_generator.get_state().numpy())

    def _on_iteration_completed(self, engine: Any) -> None:
        # The hot path of the recorder: a float output and no fingerprint take a handful of steps.
        state = engine.state
        output = state.output
        value = output if self._float_as_is and type(output) is float else self._values_of(output)
        fingerprint_of = self._fingerprint_of
        pending = self._pending
        pending.append(
            (
                self._run,
                state.epoch,
                state.iteration,
                0 if fingerprint_of is None else fingerprint_of(state.batch),
                self._generator_at_start,
                value,
            )
        )
        if len(pending) >= self._flush_at:
            with self._lock:
                self._flush()

    def _flush(self) -> None:
        """Move the pending records into the ring buffers. Called with the lock held."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        self._moved += len(pending)
        if len(pending) > self._capacity:
            self._count += len(pending) - self._capacity
            pending = pending[-self._capacity :]
        count = len(pending)
        runs, epochs, iterations, fingerprints, generators, values = zip(*pending)
        rows = (np.arange(count) + self._count) % self._capacity
        self._runs[rows] = runs
        self._epochs[rows] = epochs
        self._iterations[rows] = iterations
        self._fingerprints[rows] = fingerprints
        self._generators[rows] = generators
        self._values[rows] = np.asarray(values, dtype=np.float64).reshape(count, -1)  # type: ignore[index]
        self._count += count

    def _start_series(self, output: Any) -> tuple[str, ...]:
        names = _series_names(output)
        if names is None:
            names = ("output",)
        with self._lock:
            self._names = names
            self._values = np.full((self._capacity, len(names)), np.nan)
            self._float_as_is = len(names) == 1 and self._output_transform is None
        return names

    def _values_of(self, output: Any) -> Any:
        """What to record for ``output`` (after the output_transform): a float, or a list of them, one per series."""
        if self._output_transform is not None:
            output = self._output_transform(output)
        names = self._names
        if names is None:
            names = self._start_series(output)
        if len(names) == 1:
            value = _scalar(output)
            if value is None and isinstance(output, Mapping) and len(output) == 1:
                value = _scalar(next(iter(output.values())))
            elif value is None and isinstance(output, (list, tuple)) and len(output) == 1:
                value = _scalar(output[0])
            if value is None:
                self._warn(output)
                return np.nan
            return value
        if isinstance(output, Mapping):
            row = [_scalar(output.get(name)) if name in output else None for name in names]
        elif isinstance(output, (list, tuple)) and len(output) == len(names):
            row = [_scalar(v) for v in output]
        else:
            self._warn(output)
            return np.nan
        return [np.nan if v is None else v for v in row]

    def _warn(self, output: Any) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"History cannot record an output of type {type(output).__name__} as numbers; NaN is recorded "
                "instead. Give History an output_transform that returns a number, or a mapping or list of "
                "numbers",
                RuntimeWarning,
                stacklevel=2,
            )

    def _on_epoch_completed(self, engine: Any) -> None:
        state = engine.state
        metrics = {}
        for name, value in state.metrics.items():
            scalar = _scalar(value)
            if scalar is not None:
                metrics[str(name)] = scalar
        notes = [(self._run, epoch, iteration, kind) for epoch, iteration, kind in self._engine_notes(engine) if epoch == state.epoch]
        with self._lock:
            self._epoch_records.append((self._run, state.epoch, state.iteration, metrics))
            self._notes.extend(note for note in notes if note not in self._notes)
            self._edits += 1

    @staticmethod
    def _engine_notes(engine: Any) -> list:
        return list(getattr(getattr(engine, "state", None), "rng_notes", None) or ())

    def _current_notes(self) -> list[tuple[int, int, int, str]]:
        """The notes held, and those the engine has for the epoch under way (not yet copied)."""
        held = list(self._notes)
        engine = self._engine
        if engine is not None:
            epoch = engine.state.epoch
            held.extend(
                note
                for note in ((self._run, e, i, kind) for e, i, kind in self._engine_notes(engine) if e == epoch)
                if note not in held
            )
        return held

    # ------------------------------------------------------------------ reading (any thread)

    def _ordered(self, array: np.ndarray, held: int) -> np.ndarray:
        if self._count <= self._capacity:
            return array[:held].copy()
        start = self._count % self._capacity
        return np.concatenate((array[start:], array[:start]))

    def snapshot(self) -> HistorySnapshot:
        """A consistent copy of everything held, oldest first. Safe to call from any thread."""
        with self._lock:
            # A copy of the pending records, not a flush: the recording thread appends to that list
            # without the lock, so only it may move them into the buffers.
            pending = self._pending[:]
            held = min(self._count, self._capacity)
            dropped = self._count - held
            names = self._names or ()
            columns = [
                self._ordered(array, held)
                for array in (self._runs, self._epochs, self._iterations, self._fingerprints, self._generators)
            ]
            values = self._ordered(self._values, held) if self._values is not None else np.zeros((held, 0))
            if pending:
                *pending_columns, pending_values = zip(*pending)
                columns = [
                    np.concatenate((column, np.asarray(extra, dtype=np.int64)))
                    for column, extra in zip(columns, pending_columns)
                ]
                values = np.concatenate(
                    (values, np.asarray(pending_values, dtype=np.float64).reshape(len(pending), -1))
                )
                excess = len(values) - self._capacity
                if excess > 0:
                    columns = [column[excess:] for column in columns]
                    values = values[excess:]
                    dropped += excess
            runs, epochs, iterations, fingerprints, generators = columns
            return HistorySnapshot(
                # From the copy: records appended after it are not in this snapshot, nor in its version.
                version=self._edits + self._moved + len(pending),
                names=names,
                runs=runs,
                epochs=epochs,
                iterations=iterations,
                fingerprints=fingerprints,
                generators=generators,
                values=values,
                epoch_metrics=list(self._epoch_records),
                dropped=dropped,
                notes=self._current_notes(),
            )

    def epoch_records(self, epoch: int, run: int | None = None) -> HistorySnapshot:
        """The iterations of ``epoch`` in ``run`` (default: the latest run) still held."""
        snap = self.snapshot()
        run = self._run if run is None else run
        keep = (snap.runs == run) & (snap.epochs == epoch)
        return HistorySnapshot(
            version=snap.version,
            names=snap.names,
            runs=snap.runs[keep],
            epochs=snap.epochs[keep],
            iterations=snap.iterations[keep],
            fingerprints=snap.fingerprints[keep],
            generators=snap.generators[keep],
            values=snap.values[keep],
            epoch_metrics=[record for record in snap.epoch_metrics if record[0] == run and record[1] == epoch],
            dropped=0,
            notes=[note for note in snap.notes if note[0] == run and note[1] == epoch],
        )

    def __len__(self) -> int:
        return min(self._count + len(self._pending), self._capacity)

    # ------------------------------------------------------------------ editing

    def clear(self) -> None:
        """Forget everything recorded (the run counter and the series names too)."""
        with self._lock:
            self._moved += len(self._pending)
            self._pending = []
            self._count = 0
            self._run = 0
            self._names = None
            self._values = None
            self._float_as_is = False
            self._epoch_records.clear()
            self._notes.clear()
            self._edits += 1

    def rewind(self, iteration: int, replacement: HistorySnapshot | None = None) -> None:
        """Forget the latest run's records after ``iteration`` (iterations and epochs), then append the
        iteration records of ``replacement`` as part of the latest run. Used when a run is rewound to
        a replayed epoch and continues from there."""
        if not isinstance(iteration, numbers.Integral) or isinstance(iteration, bool) or iteration < 0:
            raise ValueError(f"iteration should be a non-negative integer, got {iteration!r}")
        if replacement is not None and self._names is not None and replacement.names != self._names:
            raise ValueError(
                f"replacement has output series {list(replacement.names)}, this History records {list(self._names)}"
            )
        with self._lock:
            self._flush()
            oldest = max(0, self._count - self._capacity)
            while self._count > oldest:
                row = (self._count - 1) % self._capacity
                if self._runs[row] != self._run or self._iterations[row] <= iteration:
                    break
                self._count -= 1
            kept = [r for r in self._epoch_records if r[0] != self._run or r[2] <= iteration]
            self._epoch_records.clear()
            self._epoch_records.extend(kept)
            if replacement is not None and len(replacement):
                if self._values is None:
                    self._names = replacement.names
                    self._values = np.full((self._capacity, len(replacement.names)), np.nan)
                    self._float_as_is = len(replacement.names) == 1 and self._output_transform is None
                generators = replacement.generators
                if generators is None:
                    generators = np.zeros(len(replacement), dtype=np.int64)
                self._pending = [
                    (self._run, int(epoch), int(iteration), int(fingerprint), int(generator), values.tolist())
                    for epoch, iteration, fingerprint, generator, values in zip(
                        replacement.epochs,
                        replacement.iterations,
                        replacement.fingerprints,
                        generators,
                        replacement.values,
                    )
                ]
                self._flush()
            self._edits += 1

    def __repr__(self) -> str:
        attached = "detached" if self._engine is None else "attached"
        return f"History(capacity={self._capacity}, held={len(self)}, version={self.version}, {attached})"
