"""Epoch replay: ``EpochReplay`` keeps a snapshot of the start of recent epochs and re-runs any of them
in isolation, comparing it iteration by iteration with what the run recorded (``ReplayReport``).

This module owns the snapshots (what they hold, how many are kept, how they go into and come back
from a checkpoint), the isolation of a replay, and the comparison.

**A snapshot** is taken at ``EPOCH_STARTED`` of every epoch that starts at its first iteration: the
trainer's ``state_dict()`` (position, seed, RNG states, thread count) and a deep copy of the
``state_dict()`` of every object in ``to_snapshot`` (model, optimizer, lr scheduler, ...). When the
epoch completes, its *trace* (the batch fingerprints and outputs the History recorded) is added. The
last ``keep_last`` snapshots stay in memory; ``state_dict()`` / ``load_state_dict()`` carry them
through a checkpoint (plain types and tensors: ``torch.load(weights_only=True)`` reads them).

**A replay** of epoch k restores snapshot k into the objects, then runs epoch k on a *replica* of the
trainer (``DeterministicEngine.replica``): same process function and data, its own state, its own
History. The trainer itself is not touched: its paused position, its handlers, its History and its
checkpoints stay as they are. Handlers run during a replay only if listed in ``replay_handlers``
(e.g. an lr scheduler stepped by a handler), and only for the events inside an epoch
(``EPOCH_STARTED`` for the handlers attached after the EpochReplay, whose effect is not in the
snapshot; ``GET_BATCH_*``, ``ITERATION_*``, ``DATALOADER_STOP_ITERATION`` and custom events). So
checkpoint savers, evaluators, metrics and progress bars never fire during a replay; the report
names the in-epoch handlers that did not run. Afterwards the objects, gradients, train/eval flags,
global RNG states, thread count and cudnn flags are put back exactly as they were, unless
``continue_from_replay=True``: then the trainer is rewound to the end of the replayed epoch (its
``EPOCH_COMPLETED`` handlers do not run for it), later snapshots are dropped and the History's
records after the epoch's start are replaced by the replay's.

A replay costs about one epoch, whatever k: loading a snapshot and opening the data at epoch k are
constant-time (see ``nbengine.engine.deterministic``).

>>> import torch
>>> from torch.utils.data import DataLoader
>>> from nbengine.engine.deterministic import DeterministicEngine
>>> model = torch.nn.Linear(3, 1)
>>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
>>> def train_step(engine, batch):
...     optimizer.zero_grad()
...     loss = model(batch).pow(2).mean()
...     loss.backward()
...     optimizer.step()
...     return loss.item()
>>> trainer = DeterministicEngine(train_step, seed=3)
>>> replay = EpochReplay(trainer, {"model": model, "optimizer": optimizer}, keep_last=2)
>>> _ = trainer.run(DataLoader(torch.randn(12, 3), batch_size=4, shuffle=True), max_epochs=3)
>>> replay.epochs
[2, 3]
>>> report = replay.replay_epoch(2)
>>> (report.iterations, report.iterations_compared, report.reproduced, report.max_abs_diff)
(3, 3, True, 0.0)
"""

from __future__ import annotations

import copy
import inspect
import numbers
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nbengine.engine.deterministic import DeterministicEngine
from nbengine.engine.engine import RUNNING
from nbengine.engine.events import Events
from nbengine.handlers.history import History, HistorySnapshot
from nbengine.engine.state_dict import BOUNDARY_KEY
from nbengine.utils.seed import get_rng_states, set_rng_states

__all__ = ["EpochReplay", "ReplayReport"]

_IN_EPOCH_EVENTS = frozenset(
    event.name
    for event in (
        Events.GET_BATCH_STARTED,
        Events.GET_BATCH_COMPLETED,
        Events.ITERATION_STARTED,
        Events.ITERATION_COMPLETED,
        Events.DATALOADER_STOP_ITERATION,
    )
)
_BUILTIN_EVENTS = frozenset(event.name for event in Events)
_SNAPSHOT_KEYS = ("epoch", "engine", "objects", "trace")
_TRACE_KEYS = ("iterations", "fingerprints", "values", "names")
# Optional in a trace: "partial" (True for an epoch saved before it completed; the records after the
# save are added from the History when it completes or is replayed) and "notes" (see ``_NOTE_TEXT``).
_OPTIONAL_TRACE_KEYS = ("partial", "notes", "generators")
# What the notes a CellGuard leaves in ``trainer.state.rng_notes`` say in a report.
_NOTE_TEXT = {
    "cell": "shared the generators with a cell from iteration {}",
    "outside": "disturbed from outside at iteration {}",
}


@dataclass(frozen=True)
class ReplayReport:
    """What a replay of one epoch found, compared iteration by iteration with the recorded run."""

    epoch: int
    #: Iterations the replay ran.
    iterations: int
    #: Of those, how many the recorded run still had a record of (fingerprint and outputs).
    iterations_compared: int
    #: Every compared batch had the recorded fingerprint.
    fingerprints_equal: bool
    #: Every compared output was within ``atol`` of the recorded one (NaN matches NaN).
    outputs_equal: bool
    #: The largest absolute difference between compared outputs; None when nothing was compared.
    max_abs_diff: float | None
    #: The first iteration whose batch or output differs, or None.
    first_divergent_iteration: int | None
    atol: float
    #: Whether the trainer now continues from the replayed state.
    continued: bool
    #: In-epoch handlers of the trainer that did not run during the replay (not in replay_handlers).
    skipped_handlers: tuple[str, ...]
    #: The replay's records, and the recorded run's records of the same epoch.
    replayed: HistorySnapshot
    reference: HistorySnapshot
    #: ``(iteration, kind)`` for each place where the recorded epoch may not have been exact: "cell"
    #: (from that iteration it shared the generators with a notebook cell) or "outside".
    notes: tuple[tuple[int, str], ...] = ()

    @property
    def reproduced(self) -> bool:
        """Every replayed iteration was compared and matched."""
        return (
            self.iterations > 0
            and self.iterations_compared == self.iterations
            and self.fingerprints_equal
            and self.outputs_equal
        )

    def __str__(self) -> str:
        head = f"epoch {self.epoch} replayed: {self.iterations} iterations, {self.iterations_compared} compared"
        if self.iterations_compared == 0:
            return f"{head}; nothing recorded to compare with"
        batches = "batches identical" if self.fingerprints_equal else "batches differ"
        outputs = "outputs identical" if self.outputs_equal else "outputs differ"
        verdict = (
            "reproduced"
            if self.reproduced
            else (
                f"first divergence at iteration {self.first_divergent_iteration}"
                if self.first_divergent_iteration is not None
                else "not every iteration could be compared"
            )
        )
        noted = [_NOTE_TEXT.get(kind, kind + " at iteration {}").format(iteration) for iteration, kind in self.notes]
        if noted and self.first_divergent_iteration is not None:
            # The recorded run was not exact from the noted iteration on: that, not the replay, is to blame.
            earliest = min(iteration for iteration, _ in self.notes)
            if earliest <= self.first_divergent_iteration:
                verdict = f"the recorded run {'; '.join(noted)}"
                noted = []
        tail = "".join(f"; the recorded run {text}" for text in noted)
        return f"{head}; {batches}; {outputs} (max |diff| {self.max_abs_diff}); {verdict}{tail}"


def _has_state_dict(obj: Any) -> bool:
    return callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))


def _describe_handler(handler: Any) -> str:
    return getattr(handler, "__qualname__", None) or getattr(handler, "__name__", None) or repr(handler)


def _compare(
    reference: HistorySnapshot, replayed: HistorySnapshot, atol: float
) -> tuple[int, bool, bool, float | None, int | None]:
    ref_rows = {int(iteration): row for row, iteration in enumerate(reference.iterations)}
    pairs = [(row, ref_rows[int(it)]) for row, it in enumerate(replayed.iterations) if int(it) in ref_rows]
    if not pairs:
        return 0, True, True, None, None
    replay_rows = np.array([p[0] for p in pairs])
    reference_rows = np.array([p[1] for p in pairs])
    iterations = replayed.iterations[replay_rows]
    fingerprint_same = replayed.fingerprints[replay_rows] == reference.fingerprints[reference_rows]
    if replayed.names == reference.names:
        a = replayed.values[replay_rows]
        b = reference.values[reference_rows]
        both_nan = np.isnan(a) & np.isnan(b)
        with np.errstate(invalid="ignore"):
            diff = np.where(both_nan, 0.0, np.abs(a - b))
        diff = np.where(np.isnan(diff), np.inf, diff)
        per_iteration = diff.max(axis=1) if diff.shape[1] else np.zeros(len(pairs))
    else:
        per_iteration = np.full(len(pairs), np.inf)
    output_same = per_iteration <= atol
    diverged = ~(fingerprint_same & output_same)
    first = int(iterations[np.argmax(diverged)]) if diverged.any() else None
    max_abs_diff = float(per_iteration.max()) if len(per_iteration) else None
    return len(pairs), bool(fingerprint_same.all()), bool(output_same.all()), max_abs_diff, first


def _trace_snapshot(trace: Mapping, epoch: int) -> HistorySnapshot:
    iterations = trace["iterations"].numpy().astype(np.int64)
    return HistorySnapshot(
        version=0,
        names=tuple(trace["names"]),
        runs=np.zeros(len(iterations), dtype=np.int64),
        epochs=np.full(len(iterations), epoch, dtype=np.int64),
        iterations=iterations,
        fingerprints=trace["fingerprints"].numpy().astype(np.int64),
        generators=(
            trace["generators"].numpy().astype(np.int64)
            if trace.get("generators") is not None
            else np.zeros(len(iterations), dtype=np.int64)
        ),
        values=trace["values"].numpy().astype(np.float64).reshape(len(iterations), len(trace["names"])),
    )


def _trace_of(records: HistorySnapshot, notes: list | tuple = (), partial: bool = False) -> dict[str, Any]:
    trace = {
        "iterations": torch.from_numpy(records.iterations.copy()),
        "fingerprints": torch.from_numpy(records.fingerprints.copy()),
        "values": torch.from_numpy(np.ascontiguousarray(records.values, dtype=np.float64)),
        "names": list(records.names),
        "notes": [[int(iteration), str(kind)] for iteration, kind in notes],
    }
    if records.generators is not None and records.generators.any():
        trace["generators"] = torch.from_numpy(records.generators.copy())
    if partial:
        trace["partial"] = True
    return trace


def _generators(records: HistorySnapshot) -> np.ndarray:
    if records.generators is None:
        return np.zeros(len(records), dtype=np.int64)
    return records.generators


def _disturbed_at(reference: HistorySnapshot, replayed: HistorySnapshot, first_divergent: int | None) -> int | None:
    """The iteration that started with another torch generator state in the recorded run than in the
    replay, while every iteration before it matched: the replay redoes everything the training did,
    so something outside it drew from the generator (another thread). None when nothing was watched."""
    recorded, again = _generators(reference), _generators(replayed)
    if not recorded.any() or not again.any():
        return None
    at = {int(iteration): int(value) for iteration, value in zip(reference.iterations, recorded)}
    for iteration, value in zip(replayed.iterations, again):
        iteration = int(iteration)
        if first_divergent is not None and iteration > first_divergent:
            return None
        if iteration in at and at[iteration] and at[iteration] != int(value):
            return iteration
    return None


def _merged(first: HistorySnapshot, later: HistorySnapshot) -> HistorySnapshot:
    """The records of both, one per iteration (``later``'s where both have it), in iteration order."""
    if not len(later):
        return first
    if not len(first):
        return later
    if first.names != later.names:
        raise ValueError(
            f"the checkpoint's records of this epoch have output series {list(first.names)}, the History "
            f"records {list(later.names)}"
        )
    keep = ~np.isin(first.iterations, later.iterations)
    iterations = np.concatenate((first.iterations[keep], later.iterations))
    order = np.argsort(iterations, kind="stable")
    return HistorySnapshot(
        version=later.version,
        names=later.names,
        runs=np.concatenate((first.runs[keep], later.runs))[order],
        epochs=np.concatenate((first.epochs[keep], later.epochs))[order],
        iterations=iterations[order],
        fingerprints=np.concatenate((first.fingerprints[keep], later.fingerprints))[order],
        generators=np.concatenate((_generators(first)[keep], _generators(later)))[order],
        values=np.concatenate((first.values[keep], later.values))[order],
    )


class EpochReplay:
    """Snapshots the start of the last ``keep_last`` epochs of ``trainer`` and replays any of them.

    ``to_snapshot`` maps names to the objects whose ``state_dict()`` makes up the training state
    (model, optimizer, lr scheduler, grad scaler, ...). ``history`` is the History the replays are
    compared with (attached to ``trainer``); by default the EpochReplay attaches its own.
    ``replay_handlers`` lists handlers (or the objects whose bound methods they are) that take part
    in training and must run during a replay too. The EpochReplay attaches itself to ``trainer``.
    """

    def __init__(
        self,
        trainer: DeterministicEngine,
        to_snapshot: Mapping[str, Any],
        keep_last: int = 3,
        *,
        history: History | None = None,
        replay_handlers: Iterable[Any] = (),
    ) -> None:
        if not isinstance(trainer, DeterministicEngine):
            raise TypeError(
                "trainer should be a DeterministicEngine (the data order of a plain Engine cannot be "
                f"replayed), got {trainer!r} of type {type(trainer).__name__}"
            )
        if not isinstance(to_snapshot, Mapping):
            raise TypeError(
                f"to_snapshot should be a dict of name -> object with state_dict/load_state_dict, got "
                f"{type(to_snapshot).__name__}"
            )
        for name, obj in to_snapshot.items():
            if not isinstance(name, str):
                raise TypeError(f"to_snapshot keys should be strings, got {name!r} of type {type(name).__name__}")
            if not _has_state_dict(obj):
                raise TypeError(
                    f"to_snapshot[{name!r}] should have state_dict() and load_state_dict() methods, got "
                    f"{obj!r} of type {type(obj).__name__}"
                )
        if not isinstance(keep_last, numbers.Integral) or isinstance(keep_last, bool) or keep_last < 1:
            raise ValueError(f"keep_last should be a positive number of epochs, got {keep_last!r}")
        if history is not None and (not isinstance(history, History) or history.engine is not trainer):
            raise ValueError(
                f"history should be a History attached to the trainer, got {history!r}"
                + ("" if not isinstance(history, History) else f" attached to {history.engine!r}")
            )
        if isinstance(replay_handlers, (str, bytes)) or not isinstance(replay_handlers, Iterable):
            raise TypeError(
                f"replay_handlers should be a list of handlers or handler owners, got {replay_handlers!r}"
            )
        self._trainer = trainer
        self._objects = dict(to_snapshot)
        self._keep_last = int(keep_last)
        self._replay_handlers = tuple(replay_handlers)
        self._owns_history = history is None
        # Its own History watches the generators, so a replay can name a disturbance from outside.
        self._history = history if history is not None else History(watch_generators=True).attach(trainer)
        self._snapshots: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        trainer.add_event_handler(Events.STARTED, self._on_started)
        trainer.add_event_handler(Events.EPOCH_STARTED, self._take_snapshot)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._store_trace)

    @property
    def history(self) -> History:
        """The History replays are compared with."""
        return self._history

    @property
    def epochs(self) -> list[int]:
        """The epochs that have a snapshot, ascending."""
        with self._lock:
            return sorted(self._snapshots)

    # ------------------------------------------------------------------ taking snapshots (training side)

    def _on_started(self, engine: Any) -> None:
        if engine.state.iteration == 0:
            # A new run: the snapshots of an earlier run describe another timeline.
            with self._lock:
                self._snapshots.clear()

    def _take_snapshot(self, engine: Any) -> None:
        state = engine.state
        epoch_length = state.epoch_length
        if not epoch_length or state.iteration != (state.epoch - 1) * epoch_length:
            return  # resumed mid-epoch: this is not the start of the epoch
        engine_state = dict(engine.state_dict())
        # The snapshot stands for the start of the epoch (a replica replays it whole), not for the
        # handler of EPOCH_STARTED that took it.
        engine_state.pop(BOUNDARY_KEY, None)
        snapshot = {
            "epoch": state.epoch,
            "engine": engine_state,
            "objects": {name: copy.deepcopy(obj.state_dict()) for name, obj in self._objects.items()},
            "trace": None,
        }
        self._store(snapshot)

    def _store(self, snapshot: dict[str, Any]) -> None:
        with self._lock:
            self._snapshots[snapshot["epoch"]] = snapshot
            self._snapshots.move_to_end(snapshot["epoch"])
            while len(self._snapshots) > self._keep_last:
                self._snapshots.popitem(last=False)

    def _store_trace(self, engine: Any) -> None:
        epoch = engine.state.epoch
        with self._lock:
            snapshot = self._snapshots.get(epoch)
        if snapshot is not None:
            records, notes = self._epoch_trace(snapshot)
            snapshot["trace"] = _trace_of(records, notes)

    def _epoch_trace(self, snapshot: Mapping[str, Any]) -> tuple[HistorySnapshot, list]:
        """What was recorded of the snapshot's epoch, and its notes: the stored trace when complete;
        else the part a checkpoint brought (if any) followed by what the History holds."""
        epoch = int(snapshot["epoch"])
        trace = snapshot["trace"]
        if trace is not None and not trace.get("partial"):
            return _trace_snapshot(trace, epoch), [tuple(note) for note in trace.get("notes", ())]
        records = self._history.epoch_records(epoch)
        notes = [(int(iteration), str(kind)) for _, _, iteration, kind in records.notes]
        if trace is not None:
            records = _merged(_trace_snapshot(trace, epoch), records)
            notes = [tuple(note) for note in trace.get("notes", ()) if tuple(note) not in notes] + notes
        return records, notes

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """The snapshots held, as plain types and tensors (``torch.load(weights_only=True)`` reads them)."""
        with self._lock:
            snapshots = list(self._snapshots.values())
        # An epoch under way carries what was recorded of it so far: a replay after loading the
        # checkpoint in a new process compares every iteration of the epoch.
        carried = []
        for snapshot in snapshots:
            if snapshot["trace"] is None or snapshot["trace"].get("partial"):
                records, notes = self._epoch_trace(snapshot)
                snapshot = {**snapshot, "trace": _trace_of(records, notes, partial=True)}
            carried.append(snapshot)
        return {"keep_last": self._keep_last, "snapshots": carried}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Replace the snapshots held by those of ``state_dict`` (the last ``keep_last`` of them)."""
        if not isinstance(state_dict, Mapping) or "snapshots" not in state_dict:
            raise ValueError(
                "state_dict should be a dict with a 'snapshots' list, as from EpochReplay.state_dict(); "
                f"got {state_dict!r:.200}"
            )
        snapshots = state_dict["snapshots"]
        if not isinstance(snapshots, (list, tuple)):
            raise ValueError(f"state_dict['snapshots'] should be a list, got {type(snapshots).__name__}")
        checked = []
        for index, snapshot in enumerate(snapshots):
            where = f"state_dict['snapshots'][{index}]"
            if not isinstance(snapshot, Mapping) or set(snapshot) != set(_SNAPSHOT_KEYS):
                raise ValueError(f"{where} should be a dict with keys {list(_SNAPSHOT_KEYS)}, got {snapshot!r:.200}")
            epoch = snapshot["epoch"]
            if not isinstance(epoch, numbers.Integral) or isinstance(epoch, bool) or epoch < 1:
                raise ValueError(f"{where}['epoch'] should be a positive integer, got {epoch!r}")
            if not isinstance(snapshot["engine"], Mapping) or not snapshot["engine"].get("epoch_length"):
                raise ValueError(f"{where}['engine'] should be a DeterministicEngine state_dict with an epoch_length")
            objects = snapshot["objects"]
            if not isinstance(objects, Mapping) or set(objects) != set(self._objects):
                raise ValueError(
                    f"{where}['objects'] holds {sorted(objects) if isinstance(objects, Mapping) else objects!r}, "
                    f"but this EpochReplay snapshots {sorted(self._objects)}"
                )
            trace = snapshot["trace"]
            if trace is not None and (
                not isinstance(trace, Mapping) or set(trace) - set(_OPTIONAL_TRACE_KEYS) != set(_TRACE_KEYS)
            ):
                raise ValueError(
                    f"{where}['trace'] should be None or a dict with keys {list(_TRACE_KEYS)} (and optionally "
                    f"{list(_OPTIONAL_TRACE_KEYS)})"
                )
            checked.append(dict(snapshot))
        with self._lock:
            self._snapshots.clear()
        for snapshot in checked:
            self._store(snapshot)

    # ------------------------------------------------------------------ replaying

    def replay_epoch(
        self,
        epoch: int,
        *,
        continue_from_replay: bool = False,
        modify: Callable[[], Any] | None = None,
        atol: float = 0.0,
    ) -> ReplayReport:
        """Re-run epoch ``epoch`` from its snapshot and compare it with the recorded run.

        Allowed while the trainer is idle, paused, done or failed (from a cell or a button); refused
        while it runs. ``modify()``, if given, is called after the snapshot is restored and before
        the epoch runs: a deliberate change (e.g. another lr) whose effect the report then shows.
        ``atol`` is the tolerance on outputs (0: bit-exact, as promised on CPU with the same thread
        count). With ``continue_from_replay`` the trainer continues from the replayed state.
        """
        if not isinstance(epoch, numbers.Integral) or isinstance(epoch, bool) or epoch < 1:
            raise ValueError(f"epoch should be a positive integer, got {epoch!r}")
        if not isinstance(continue_from_replay, bool):
            raise TypeError(f"continue_from_replay should be True or False, got {continue_from_replay!r}")
        if modify is not None and not callable(modify):
            raise TypeError(f"modify should be callable with no arguments or None, got {modify!r}")
        if not isinstance(atol, numbers.Real) or isinstance(atol, bool) or not atol >= 0:
            raise ValueError(f"atol should be a non-negative number, got {atol!r}")
        if self._trainer.status == RUNNING:
            raise RuntimeError(
                f"replay_epoch({epoch}) was called while the trainer is running; pause() it (and wait() for "
                "a background run) first, or replay after the run"
            )
        with self._lock:
            snapshot = self._snapshots.get(int(epoch))
            held = sorted(self._snapshots)
        if snapshot is None:
            raise ValueError(
                f"there is no snapshot of epoch {epoch}; snapshots are held for epochs {held} "
                f"(keep_last={self._keep_last}); load older ones with load_state_dict() from a checkpoint"
            )
        # Under the trainer's drive lock: nothing can start the trainer while the replay runs.
        future = self._trainer.call_at_boundary(
            lambda: self._replay(snapshot, continue_from_replay, modify, float(atol))
        )
        return future.result()

    def _replay(
        self, snapshot: dict[str, Any], continue_from_replay: bool, modify: Callable[[], Any] | None, atol: float
    ) -> ReplayReport:
        trainer = self._trainer
        epoch = int(snapshot["epoch"])
        engine_state = snapshot["engine"]
        epoch_length = int(engine_state["epoch_length"])
        reference, notes = self._epoch_trace(snapshot)
        live = self._capture_live()
        continued = False
        try:
            for name, obj in self._objects.items():
                obj.load_state_dict(copy.deepcopy(snapshot["objects"][name]))
            if modify is not None:
                modify()
            start_objects = (
                {name: copy.deepcopy(obj.state_dict()) for name, obj in self._objects.items()}
                if continue_from_replay
                else None
            )
            matched = [False] * len(self._replay_handlers)
            skipped: list[str] = []
            twin = trainer.replica(
                self._handler_filter(matched, skipped), epoch_start_rng_states=engine_state.get("rng_states")
            )
            if twin.state.dataloader is None and engine_state.get("data_length") is not None:
                raise ValueError(
                    f"the trainer has no data to replay epoch {epoch} with; give it the data it was trained on "
                    "first, with trainer.set_data(data) (or by running it)"
                )
            unmatched = [index for index, found in enumerate(matched) if not found]
            if unmatched:
                index = unmatched[0]
                raise ValueError(
                    f"replay_handlers[{index}] = {self._replay_handlers[index]!r} is not a handler attached to "
                    "the trainer, nor the owner of one"
                )
            recorder = History(
                capacity=epoch_length,
                output_transform=self._history.output_transform,
                fingerprint=self._history.fingerprint,
                watch_generators=self._history.watch_generators,
            ).attach(twin)
            replay_state = dict(engine_state)
            replay_state.pop("max_epochs", None)
            max_iters = replay_state.pop("max_iters", None)
            if max_iters is not None:
                replay_state["max_iters"] = min(int(max_iters), epoch * epoch_length)
            else:
                replay_state["max_epochs"] = epoch
            twin.load_state_dict(replay_state)
            twin.run()
            replayed = recorder.snapshot()
            compared, fingerprints_equal, outputs_equal, max_abs_diff, first = _compare(reference, replayed, atol)
            disturbed = _disturbed_at(reference, replayed, first)
            if disturbed is not None and (disturbed, "outside") not in notes:
                notes = [*notes, (disturbed, "outside")]
            if continue_from_replay:
                self._continue_from(twin, epoch, epoch_length, engine_state, start_objects, replayed)
                continued = True
        finally:
            if not continued:
                self._restore_live(live)
        return ReplayReport(
            epoch=epoch,
            iterations=len(replayed),
            iterations_compared=compared,
            fingerprints_equal=fingerprints_equal,
            outputs_equal=outputs_equal,
            max_abs_diff=max_abs_diff,
            first_divergent_iteration=first,
            atol=atol,
            continued=continued,
            skipped_handlers=tuple(skipped),
            replayed=replayed,
            reference=reference,
            notes=tuple(notes),
        )

    def _handler_filter(self, matched: list[bool], skipped: list[str]) -> Callable[[str, Callable], bool]:
        after_snapshot = [False]

        def keep(event_name: str, handler: Callable) -> bool:
            owner = getattr(handler, "__self__", None)
            if owner is self:
                if event_name == Events.EPOCH_STARTED.name:
                    after_snapshot[0] = True
                return False
            if isinstance(owner, History):
                return False
            listed = False
            for index, item in enumerate(self._replay_handlers):
                if item is handler or (inspect.ismethod(item) and item == handler) or (owner is not None and owner is item):
                    matched[index] = True
                    listed = True
            if event_name == Events.EPOCH_STARTED.name:
                # Handlers that ran before the snapshot are in it; running them again would apply them twice.
                if not after_snapshot[0]:
                    return False
            elif event_name in _BUILTIN_EVENTS and event_name not in _IN_EPOCH_EVENTS:
                return False
            if not listed:
                skipped.append(f"{_describe_handler(handler)} on {event_name}")
            return listed

        return keep

    def _capture_live(self) -> dict[str, Any]:
        modules = [obj for obj in self._objects.values() if isinstance(obj, torch.nn.Module)]
        return {
            "objects": {name: copy.deepcopy(obj.state_dict()) for name, obj in self._objects.items()},
            "training": [(m, m.training) for module in modules for m in module.modules()],
            "grads": [
                (p, None if p.grad is None else p.grad.detach().clone())
                for module in modules
                for p in module.parameters()
            ],
            "rng": get_rng_states(),
        }

    def _restore_live(self, live: dict[str, Any]) -> None:
        for name, obj in self._objects.items():
            obj.load_state_dict(live["objects"][name])
        for module, training in live["training"]:
            module.training = training
        for parameter, grad in live["grads"]:
            parameter.grad = grad
        set_rng_states(live["rng"])

    def _continue_from(
        self,
        twin: DeterministicEngine,
        epoch: int,
        epoch_length: int,
        engine_state: Mapping[str, Any],
        start_objects: dict[str, Any] | None,
        replayed: HistorySnapshot,
    ) -> None:
        trainer = self._trainer
        rewound = twin.state_dict()
        rewound.pop("max_epochs", None)
        rewound.pop("max_iters", None)
        if trainer.state.max_iters is not None:
            rewound["max_iters"] = trainer.state.max_iters
        else:
            rewound["max_epochs"] = max(trainer.state.max_epochs or epoch, epoch)
        trainer.load_state_dict(rewound)
        with self._lock:
            for later in [e for e in self._snapshots if e > epoch]:
                del self._snapshots[later]
        self._store(
            {"epoch": epoch, "engine": dict(engine_state), "objects": start_objects, "trace": _trace_of(replayed)}
        )
        self._history.rewind((epoch - 1) * epoch_length, replacement=replayed)

    def __repr__(self) -> str:
        return f"EpochReplay(objects={sorted(self._objects)}, keep_last={self._keep_last}, epochs={self.epochs})"

