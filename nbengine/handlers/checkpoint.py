"""Checkpoint: the engine handler that saves ``state_dict``s, keeps the best ``n_saved``, and loads them back.

The API is pytorch-ignite's ``Checkpoint``; what differs is underneath. Older checkpoints are removed
only after the new one is committed (ignite removes first, so a crash can leave none), files are written
durably by :class:`~nbengine.handlers.DiskSaver`, and :meth:`Checkpoint.load_objects` loads through
:func:`~nbengine.handlers.load_checkpoint`: CRC-checked, ``weights_only=True`` and nothing else.

For the notebook panels: :meth:`Checkpoint.request_save` (the Save button) has the training side save
at its next boundary, and loading refuses an engine that is running.

For code ported from ignite, the rest of its checkpoint API: :class:`ModelCheckpoint` (a Checkpoint into
a folder that is given the objects when called), :meth:`Checkpoint.reload_objects` (load back what a
handler saved) and :func:`global_step_from_engine` (name files by another engine's counter).
"""

from __future__ import annotations

import numbers
import os
import string
import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from nbengine.engine import RUNNING, CallableEventWithFilter, Engine, EventEnum
from nbengine.engine._signature import can_bind, describe_callable
from nbengine.handlers.checkpoint_disk import DiskSaver, list_checkpoints
from nbengine.handlers.checkpoint_saver import BaseSaveHandler
from nbengine.handlers.checkpoint_file import (
    CheckpointError,
    CheckpointInfo,
    CorruptCheckpointError,
    UnsafeCheckpointError,
    load_checkpoint,
    read_checkpoint_info,
    verify_checkpoint,
)

__all__ = [
    "BaseSaveHandler",
    "Checkpoint",
    "CheckpointError",
    "CheckpointEvents",
    "CheckpointInfo",
    "CorruptCheckpointError",
    "DiskSaver",
    "ModelCheckpoint",
    "UnsafeCheckpointError",
    "global_step_from_engine",
    "list_checkpoints",
    "load_checkpoint",
    "read_checkpoint_info",
    "verify_checkpoint",
]


class CheckpointEvents(EventEnum):
    """Events a :class:`Checkpoint` fires on the engine it is attached to.

    - SAVED_CHECKPOINT: a checkpoint was committed.
    """

    SAVED_CHECKPOINT = "saved_checkpoint"


def _unwrap(obj: Any) -> Any:
    if isinstance(obj, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return obj.module
    return obj


def _check_objects(objects: Any, argument: str, method: str) -> None:
    if not isinstance(objects, Mapping):
        raise TypeError(
            f"Argument `{argument}` should be a dictionary, but given {type(objects)}: a mapping of names to "
            f"objects with {method}() was expected, got {objects!r}"
        )
    for key, obj in objects.items():
        if not isinstance(key, str):
            raise TypeError(f"{argument} keys should be strings, got {key!r} of type {type(key).__name__}")
        _check_nested(obj, f"{argument}[{key!r}]", method)


def _check_nested(obj: Any, where: str, method: str) -> None:
    """``obj`` has ``method``, or is a dict, list or tuple whose items have it (at any depth), as ignite allows."""
    if callable(getattr(_unwrap(obj), method, None)):
        return
    if isinstance(obj, Mapping) and obj:
        for key, item in obj.items():
            _check_nested(item, f"{where}[{key!r}]", method)
    elif isinstance(obj, (list, tuple)) and obj:
        for index, item in enumerate(obj):
            _check_nested(item, f"{where}[{index}]", method)
    else:
        raise TypeError(f"Object {type(obj)} should have `{method}` method: {where} is {obj!r}")


def _state_dicts(obj: Any, save_on_rank: int = 0) -> Any:
    """The ``state_dict`` of ``obj``, or the same dict/list structure of its items' ``state_dict``s.

    A ``ZeroRedundancyOptimizer`` holds a shard of the optimizer state on each rank: it is consolidated
    on ``save_on_rank`` (a collective, so every rank calls it) and left empty on the other ranks, which
    do not write the file."""
    obj = _unwrap(obj)
    if _is_zero_optimizer(obj):
        obj.consolidate_state_dict(to=save_on_rank)
        return obj.state_dict() if torch.distributed.get_rank() == save_on_rank else {}
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        return {key: _state_dicts(item, save_on_rank) for key, item in obj.items()}
    return [_state_dicts(item, save_on_rank) for item in obj]


def _is_zero_optimizer(obj: Any) -> bool:
    """A ``torch.distributed.optim.ZeroRedundancyOptimizer`` in a live process group (looked up, never
    imported: only a job that made one has the module loaded)."""
    zero = sys.modules.get("torch.distributed.optim.zero_redundancy_optimizer")
    zero_class = getattr(zero, "ZeroRedundancyOptimizer", None)
    return zero_class is not None and isinstance(obj, zero_class) and torch.distributed.is_initialized()


def _check_save_on_rank(save_on_rank: Any) -> None:
    if not isinstance(save_on_rank, numbers.Integral) or isinstance(save_on_rank, bool) or save_on_rank < 0:
        raise ValueError(f"save_on_rank should be a non-negative int (a rank of the job), got {save_on_rank!r}")


def _load_nested(obj: Any, state: Any, strict: bool, where: str) -> None:
    """Load ``state`` into ``obj``, walking a dict/list structure of objects as :func:`_state_dicts` wrote it."""
    if hasattr(_unwrap(obj), "load_state_dict"):
        _load_one(obj, state, strict)
    elif isinstance(obj, Mapping):
        if not isinstance(state, Mapping):
            raise TypeError(f"{where} is a mapping of objects but the checkpoint holds a {type(state).__name__} there")
        for key, item in obj.items():
            if key not in state:
                raise ValueError(
                    f"Key {key!r} from x is not found in y: {where} (x) has it, the checkpoint's entry (y) has only "
                    f"keys {list(state)}"
                )
            _load_nested(item, state[key], strict, f"{where}[{key!r}]")
    else:
        if not isinstance(state, (list, tuple)) or len(state) != len(obj):
            raise ValueError(
                f"Size of y: {len(state) if isinstance(state, (list, tuple)) else type(state).__name__} does not "
                f"match the size of x: '{len(obj)}': {where} (x) and its entry in the checkpoint (y) differ"
            )
        for index, (item, item_state) in enumerate(zip(obj, state)):
            _load_nested(item, item_state, strict, f"{where}[{index}]")


def _engine_status_check(to_load: Mapping[str, Any]) -> None:
    for key, obj in to_load.items():
        if isinstance(obj, Engine) and obj.status == RUNNING:
            raise RuntimeError(
                f"cannot load into to_load[{key!r}]: the engine is {obj.status!r}; a checkpoint loads only while "
                "the engine is paused or not running. Call pause() (and wait() for a background run) first"
            )


class Checkpoint:
    """Saves the ``state_dict`` of each object in ``to_save`` when called as ``handler(engine)``.

    Args:
        to_save: names mapped to objects with ``state_dict``/``load_state_dict`` (model, optimizer,
            lr scheduler, the trainer Engine, ...). DataParallel wrappers are saved unwrapped.
        save_handler: a :class:`DiskSaver`, a folder (a DiskSaver is made for it, which requires it to
            hold no ``.pt`` file yet), or a callable ``fn(checkpoint, filename[, metadata])``; a
            callable with a ``remove(filename)`` method gets old checkpoints removed too.
        filename_prefix: put in front of file names, joined by ``_``.
        score_function: ``fn(engine) -> number``; the ``n_saved`` checkpoints with the highest scores
            are kept. Without it the latest ones are kept.
        score_name: shown in file names; alone, it means "score is ``engine.state.metrics[score_name]``".
        n_saved: how many checkpoints to keep; None keeps all.
        global_step_transform: ``fn(engine, event) -> int`` for the step in file names (for example the
            trainer's epoch when saving from an evaluator); default: the engine's iteration.
        filename_pattern: a ``str.format`` pattern over ``filename_prefix``, ``name``, ``score``,
            ``score_name``, ``global_step`` and ``ext``; default :meth:`setup_filename_pattern`.
        include_self: also save this handler's own ``state_dict`` under the key ``"checkpointer"``.
        greater_or_equal: replace the worst kept checkpoint on an equal score too, not only on a
            higher one.
        save_on_rank: in a ``torch.distributed`` job, the rank whose :class:`DiskSaver` writes and removes
            the files when ``save_handler`` is a folder (0 by default, as in ignite). The handler itself
            runs on every rank, so that every rank keeps the same list of checkpoints and objects whose
            ``state_dict`` is a collective (``RankStates``, ``ZeroRedundancyOptimizer``) are gathered;
            only that rank touches the disk.

    The file holds one dict of ``state_dict``s keyed like ``to_save`` (just the one ``state_dict``
    when ``to_save`` has a single entry) and is named ``{filename_prefix}_{name}_{suffix}.pt``,
    ``name`` being that single key or ``"checkpoint"``, and the suffix ``{global_step}``,
    ``{score}`` or ``{global_step}_{score_name}={score}`` depending on what is given.

    Resuming a run:

    >>> import tempfile, torch
    >>> from nbengine.engine import Engine, Events
    >>> from nbengine.handlers import Checkpoint, DiskSaver
    >>> model = torch.nn.Linear(2, 1)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> def update(engine, batch):
    ...     optimizer.zero_grad()
    ...     loss = model(batch).pow(2).mean()
    ...     loss.backward()
    ...     optimizer.step()
    ...     return loss.item()
    >>> trainer = Engine(update)
    >>> to_save = {"trainer": trainer, "model": model, "optimizer": optimizer}
    >>> folder = tempfile.TemporaryDirectory()
    >>> handler = Checkpoint(to_save, DiskSaver(folder.name, create_dir=True, require_empty=False), n_saved=2)
    >>> _ = trainer.add_event_handler(Events.EPOCH_COMPLETED, handler)
    >>> @trainer.on(Events.EPOCH_COMPLETED)
    ... def stop_early(engine):  # as if the process were killed after epoch 3 of 5
    ...     if engine.state.epoch == 3:
    ...         engine.terminate()
    >>> data = [torch.ones(4, 2)] * 3
    >>> _ = trainer.run(data, max_epochs=5)
    >>> [info.path.name for info in handler.list_checkpoints()]
    ['checkpoint_9.pt', 'checkpoint_6.pt']

    Later, in a new process, with freshly built objects:

    >>> trainer = Engine(update)
    >>> to_load = {"trainer": trainer, "model": model, "optimizer": optimizer}
    >>> Checkpoint.load_objects(to_load=to_load, checkpoint=handler.last_checkpoint)
    >>> (trainer.state.epoch, trainer.state.iteration)
    (3, 9)
    >>> resumed = []
    >>> _ = trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: resumed.append(engine.state.iteration))
    >>> _ = trainer.run(data, max_epochs=5)
    >>> resumed
    [10, 11, 12, 13, 14, 15]
    >>> folder.cleanup()
    """

    SAVED_CHECKPOINT = CheckpointEvents.SAVED_CHECKPOINT

    class Item(NamedTuple):
        priority: int | float
        filename: str

    def __init__(
        self,
        to_save: Mapping,
        save_handler: str | os.PathLike | Callable | DiskSaver,
        filename_prefix: str = "",
        score_function: Callable[[Engine], int | float] | None = None,
        score_name: str | None = None,
        n_saved: int | None = 1,
        global_step_transform: Callable | None = None,
        filename_pattern: str | None = None,
        include_self: bool = False,
        greater_or_equal: bool = False,
        save_on_rank: int = 0,
    ) -> None:
        _check_objects(to_save, "to_save", "state_dict")
        _check_save_on_rank(save_on_rank)
        if include_self and "checkpointer" in to_save:
            raise ValueError(
                f"Cannot have key 'checkpointer' if `include_self` is True: to_save has keys {list(to_save)}"
            )
        if not isinstance(save_handler, (str, os.PathLike)) and not callable(save_handler):
            raise TypeError(
                "Argument `save_handler` should be a string or Path object or callable or inherit from BaseSaveHandler "
                "(a DiskSaver, a folder path or a callable fn(checkpoint, filename[, metadata])), "
                f"got {type(save_handler).__name__}: {save_handler!r}"
            )
        if not isinstance(filename_prefix, str):
            raise TypeError(f"filename_prefix should be a str, got {filename_prefix!r}")
        if score_function is not None and not callable(score_function):
            raise TypeError(f"score_function should be a callable fn(engine) -> number, got {score_function!r}")
        if score_name is not None and not isinstance(score_name, str):
            raise TypeError(f"score_name should be a str or None, got {score_name!r}")
        if n_saved is not None and (not isinstance(n_saved, numbers.Integral) or isinstance(n_saved, bool) or n_saved < 1):
            raise ValueError(f"n_saved should be a positive integer or None, got {n_saved!r}")
        if global_step_transform is not None and not callable(global_step_transform):
            raise TypeError(
                "global_step_transform should be a function fn(engine, event) -> int, got "
                f"{type(global_step_transform)} instead: {global_step_transform!r}"
            )
        if filename_pattern is not None and not isinstance(filename_pattern, str):
            raise TypeError(f"filename_pattern should be a str or None, got {filename_pattern!r}")
        if filename_pattern is not None:
            self._check_pattern(filename_pattern)
        for name, value in (("include_self", include_self), ("greater_or_equal", greater_or_equal)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} should be True or False, got {value!r}")
        if isinstance(save_handler, (str, os.PathLike)):
            save_handler = DiskSaver(save_handler, create_dir=True, save_on_rank=save_on_rank)
        self.save_on_rank = save_on_rank
        self._checked_saver = (save_handler, _takes_metadata(save_handler))
        self.to_save = to_save
        self.save_handler = save_handler
        self.filename_prefix = filename_prefix
        self.score_name = score_name
        self.score_function = score_function
        if score_name is not None and score_function is None:
            self.score_function = self.get_default_score_fn(score_name)
        self.n_saved = n_saved
        self.ext = "pt"
        self.global_step_transform = global_step_transform
        self.filename_pattern = filename_pattern
        self.include_self = include_self
        self.greater_or_equal = greater_or_equal
        self._saved: list[Checkpoint.Item] = []

    @staticmethod
    def _check_pattern(pattern: str) -> None:
        try:
            pattern.format(filename_prefix="p", name="n", score=1.0, score_name="s", global_step=1, ext="pt")
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(
                f"filename_pattern {pattern!r} cannot be formatted with filename_prefix, name, score, score_name, "
                f"global_step and ext: {error!r}"
            ) from error

    # ------------------------------------------------------------------ names and bookkeeping

    @staticmethod
    def setup_filename_pattern(
        with_prefix: bool = True,
        with_score: bool = True,
        with_score_name: bool = True,
        with_global_step: bool = True,
    ) -> str:
        """The default file name pattern for the given parts.

        >>> Checkpoint.setup_filename_pattern()
        '{filename_prefix}_{name}_{global_step}_{score_name}={score}.{ext}'
        >>> Checkpoint.setup_filename_pattern(with_prefix=False, with_score=False, with_score_name=False)
        '{name}_{global_step}.{ext}'
        """
        if not (with_global_step or with_score):
            raise ValueError("At least one of with_score and with_global_step should be True.")
        if with_score_name and not with_score:
            raise ValueError("If with_score_name is True, with_score should be also True")
        pattern = "{name}"
        if with_global_step:
            pattern += "_{global_step}"
        if with_score:
            pattern += "_{score_name}={score}" if with_score_name else "_{score}"
        if with_prefix:
            pattern = "{filename_prefix}_" + pattern
        return pattern + ".{ext}"

    @staticmethod
    def get_default_score_fn(metric_name: str, score_sign: float = 1.0) -> Callable[[Engine], float]:
        """``fn(engine) -> score_sign * engine.state.metrics[metric_name]``; use ``score_sign=-1.0``
        for a metric where lower is better (a loss)."""
        if not isinstance(metric_name, str):
            raise TypeError(f"metric_name should be a str, got {metric_name!r}")
        if score_sign not in (1.0, -1.0):
            raise ValueError(f"Argument score_sign should be 1 or -1, got {score_sign!r}")

        def score(engine: Engine) -> float:
            return score_sign * engine.state.metrics[metric_name]

        score.__qualname__ = f"score_from_metric[{metric_name!r}]"
        return score

    def _name_for(self, keys: list[str]) -> str:
        """The ``{name}`` part of file names for objects saved under ``keys``."""
        return keys[0] if len(keys) == 1 and not self.include_self else "checkpoint"

    def _pattern(self, with_global_step: bool) -> str:
        """The file name pattern: ``filename_pattern``, or the default one for this handler's options."""
        return self.filename_pattern or self.setup_filename_pattern(
            with_prefix=bool(self.filename_prefix),
            with_score=self.score_function is not None,
            with_score_name=self.score_name is not None,
            with_global_step=with_global_step,
        )

    @property
    def last_checkpoint(self) -> Path | str | None:
        """The last of the kept checkpoints in priority order (the newest one without a score function,
        the best-scored one with it): its path with a DiskSaver, its file name otherwise."""
        if not self._saved:
            return None
        filename = self._saved[-1].filename
        if isinstance(self.save_handler, DiskSaver):
            return self.save_handler.dirname / filename
        return filename

    def reset(self) -> None:
        """Forget the kept checkpoints (the files stay), e.g. before a new independent run."""
        self._saved = []

    def state_dict(self) -> OrderedDict:
        """The kept checkpoints as ``{"_saved": [(priority, filename), ...]}``."""
        return OrderedDict([("_saved", [(item.priority, item.filename) for item in self._saved])])

    def load_state_dict(self, state_dict: Mapping) -> None:
        if not isinstance(state_dict, Mapping) or "_saved" not in state_dict:
            raise ValueError(f"state_dict should be a mapping with the key '_saved', got {state_dict!r}")
        self._saved = [Checkpoint.Item(priority, filename) for priority, filename in state_dict["_saved"]]

    def list_checkpoints(self) -> list[CheckpointInfo]:
        """Committed checkpoints in the DiskSaver's folder, newest first (all of them, not only this
        handler's); each a :class:`CheckpointInfo` read from the file's trailer alone."""
        if not isinstance(self.save_handler, DiskSaver):
            raise TypeError(
                f"list_checkpoints() needs a DiskSaver as save_handler, this handler has {self.save_handler!r}"
            )
        return self.save_handler.list_checkpoints()

    # ------------------------------------------------------------------ saving

    def __call__(self, engine: Engine, *event_args: Any) -> None:
        """Save now. Attached to any event; on ``EXCEPTION_RAISED`` the engine also passes the
        exception, which is ignored here (the checkpoint is of the engine's state)."""
        self._save(engine)

    def request_save(self, engine: Engine) -> Future:
        """Save from any thread (the panel's Save button): the training side does it at its next
        boundary, or this thread at once when the engine is not running. The Future gives the path
        of the file this save wrote (its file name without a DiskSaver), or None when the score did
        not make the cut."""
        if not isinstance(engine, Engine):
            raise TypeError(f"engine should be an nbengine Engine, got {type(engine).__name__}: {engine!r}")
        return engine.call_at_boundary(lambda: self._save(engine))

    def _save(self, engine: Engine) -> Path | str | None:
        global_step = None
        if self.global_step_transform is not None:
            global_step = self.global_step_transform(engine, engine.last_event)
        if self.score_function is not None:
            priority = self.score_function(engine)
            if not isinstance(priority, numbers.Real) or isinstance(priority, bool):
                raise ValueError(
                    f"Output of score_function should be a number: {describe_callable(self.score_function)} "
                    f"returned {priority!r}"
                )
        else:
            if global_step is None:
                global_step = engine.state.iteration
            priority = global_step
        if not self._has_room() and not self._beats_worst(priority):
            return None

        checkpoint = self._setup_checkpoint()
        keys = list(checkpoint)
        name = self._name_for(keys)
        score_text = None
        if self.score_function is not None:
            score_text = _score_text(priority)
        filename = self._format_filename(
            self._pattern(with_global_step=global_step is not None), name, score_text, global_step
        )

        # The list as it will be once this checkpoint is committed; nothing changes before that.
        kept = [item for item in self._saved if item.filename != filename]
        retired: list[Checkpoint.Item] = []
        if self.n_saved is not None and len(kept) >= self.n_saved:
            kept.sort(key=lambda item: item.priority)
            retired = kept[: len(kept) - self.n_saved + 1]
            kept = kept[len(retired) :]
        saved = sorted([*kept, Checkpoint.Item(priority, filename)], key=lambda item: item.priority)
        if self.include_self:
            checkpoint["checkpointer"] = OrderedDict([("_saved", [tuple(item) for item in saved])])
        payload = checkpoint[name] if name != "checkpoint" else checkpoint

        # A custom save handler gets exactly ignite's metadata; a DiskSaver also gets what its
        # listing shows (epoch, iteration, score, ...), which it writes into the file's trailer.
        metadata: dict[str, Any] = {
            "basename": f"{self.filename_prefix}_{name}" if self.filename_prefix else name,
            "score_name": self.score_name,
            "priority": priority,
        }
        if isinstance(self.save_handler, DiskSaver):
            metadata = {
                **metadata,
                "priority": _plain_number(priority),
                "epoch": engine.state.epoch,
                "iteration": engine.state.iteration,
                "score": _plain_number(priority) if self.score_function is not None else None,
                "global_step": global_step,
                "name": name,
                "keys": keys,
            }
        saver, takes_metadata = self._checked_saver
        if saver is not self.save_handler:
            # save_handler was replaced after construction: check the new one as the constructor would.
            saver = self.save_handler
            takes_metadata = _takes_metadata(saver)
            self._checked_saver = (saver, takes_metadata)
        if takes_metadata:
            self.save_handler(payload, filename, metadata)
        else:
            self.save_handler(payload, filename)

        self._saved = saved
        remove = getattr(self.save_handler, "remove", None)
        if callable(remove):
            for item in retired:
                remove(item.filename)
        if not engine.has_registered_events(CheckpointEvents.SAVED_CHECKPOINT):
            engine.register_events(*CheckpointEvents)
        engine.fire_event(CheckpointEvents.SAVED_CHECKPOINT)
        if isinstance(self.save_handler, DiskSaver):
            return self.save_handler.dirname / filename
        return filename

    def _setup_checkpoint(self) -> dict[str, Any]:
        """The ``state_dict`` of every object in ``to_save``, keyed like it (nested dicts and lists of
        objects give the same structure of ``state_dict``s); ignite's name for this step."""
        return {key: _state_dicts(obj, self.save_on_rank) for key, obj in self.to_save.items()}

    def _has_room(self) -> bool:
        return self.n_saved is None or len(self._saved) < self.n_saved

    def _beats_worst(self, priority: float) -> bool:
        worst = self._saved[0].priority
        return priority >= worst if self.greater_or_equal else priority > worst

    # ------------------------------------------------------------------ loading

    @staticmethod
    def load_objects(
        to_load: Mapping,
        checkpoint: str | os.PathLike | Mapping,
        strict: bool = True,
        *,
        mmap: bool = False,
    ) -> None:
        """Call ``load_state_dict`` on each object of ``to_load`` with its entry in ``checkpoint``.

        Args:
            to_load: names mapped to objects with ``load_state_dict``, like ``to_save``.
            checkpoint: a checkpoint file (verified and loaded with :func:`load_checkpoint`) or an
                already loaded mapping. When ``to_load`` has one entry and the mapping lacks its key,
                the mapping is taken to be that object's ``state_dict`` itself.
            strict: every key of ``to_load`` must be in the checkpoint, and modules load with
                ``strict=True``. With False, missing keys are skipped and modules load non-strictly.
            mmap: map the file instead of reading it (see :func:`load_checkpoint`).

        Refused with RuntimeError, before anything is loaded, when an Engine in ``to_load`` is
        running.
        """
        _check_objects(to_load, "to_load", "load_state_dict")
        if not isinstance(checkpoint, (str, os.PathLike, Mapping)):
            raise TypeError(
                f"Argument checkpoint should be a string or a dictionary, but given {type(checkpoint)}: a file path "
                f"or a mapping of state_dicts was expected, got {checkpoint!r}"
            )
        if not isinstance(strict, bool):
            raise TypeError(f"strict should be True or False, got {strict!r}")
        _engine_status_check(to_load)
        source = f"checkpoint {os.fspath(checkpoint)!r}" if isinstance(checkpoint, (str, os.PathLike)) else "checkpoint"
        if isinstance(checkpoint, (str, os.PathLike)):
            checkpoint = load_checkpoint(checkpoint, mmap=mmap)
            if not isinstance(checkpoint, Mapping):
                raise TypeError(f"{source} holds a {type(checkpoint).__name__}, not a mapping of state_dicts")
            _engine_status_check(to_load)
        if len(to_load) == 1:
            ((key, obj),) = to_load.items()
            if key not in checkpoint:
                _load_nested(obj, checkpoint, strict, f"to_load[{key!r}]")
                return
        missing = [key for key in to_load if key not in checkpoint]
        if missing and strict:
            raise ValueError(
                f"Key {missing[0]!r} from x is not found in y: {source} (y) has no entry for to_load (x) keys "
                f"{missing}; it has keys {list(checkpoint)}. Pass strict=False to load the others"
            )
        for key, obj in to_load.items():
            if key in checkpoint:
                _load_nested(obj, checkpoint[key], strict, f"to_load[{key!r}]")

    def reload_objects(self, to_load: Mapping, load_kwargs: Mapping | None = None, **filename_components: Any) -> None:
        """Load ``to_load`` from a checkpoint this handler saved, through :meth:`load_objects`.

        Without ``filename_components`` the file is :attr:`last_checkpoint`. With them, the file name is
        rebuilt the way a save builds it, from this handler's prefix, score name and pattern and from:

        - ``name``: default, the name a save of ``to_save`` gets (of ``to_load`` while ``to_save`` is
          empty, as for a :class:`ModelCheckpoint` not called yet);
        - ``global_step``: an int;
        - ``score``: a number, written as saves write it (``0.75`` becomes ``0.7500``), or the text
          of the file name.

        A part that the file names have must be given and one they lack is refused, so a typo cannot
        quietly name another file.

        Args:
            to_load: names mapped to objects with ``load_state_dict``.
            load_kwargs: options for :meth:`load_objects`: ``strict`` and ``mmap``.
            filename_components: ``name``, ``global_step`` and ``score``, as above.

        Needs a :class:`DiskSaver` as ``save_handler``. The file is CRC-checked and loaded with
        ``weights_only=True``, and an Engine in ``to_load`` that is running is refused, as by
        :meth:`load_objects`.

        >>> import tempfile, torch
        >>> from nbengine.engine import Engine, Events
        >>> from nbengine.handlers import Checkpoint
        >>> model = torch.nn.Linear(2, 1, bias=False)
        >>> _ = torch.nn.init.zeros_(model.weight)
        >>> trainer = Engine(lambda engine, batch: model.weight.data.add_(1.0))
        >>> folder = tempfile.TemporaryDirectory()
        >>> handler = Checkpoint({"model": model}, folder.name, n_saved=None)
        >>> _ = trainer.add_event_handler(Events.EPOCH_COMPLETED, handler)
        >>> _ = trainer.run([0, 1], max_epochs=3)
        >>> [info.path.name for info in handler.list_checkpoints()]
        ['model_6.pt', 'model_4.pt', 'model_2.pt']
        >>> handler.reload_objects({"model": model}, global_step=2)
        >>> model.weight.tolist()
        [[2.0, 2.0]]
        >>> handler.reload_objects({"model": model})
        >>> model.weight.tolist()
        [[6.0, 6.0]]
        >>> folder.cleanup()
        """
        if not isinstance(self.save_handler, DiskSaver):
            raise TypeError(
                f"Checkpoint's `save_handler` should be of type `DiskSaver`, given {type(self.save_handler)}: "
                f"reload_objects() reads the files back from a DiskSaver's folder, this handler has {self.save_handler!r}"
            )
        if load_kwargs is None:
            load_kwargs = {}
        if not isinstance(load_kwargs, Mapping):
            raise TypeError(
                f"load_kwargs should be a mapping of load_objects() options or None, got "
                f"{type(load_kwargs).__name__}: {load_kwargs!r}"
            )
        unknown = [key for key in load_kwargs if key not in ("strict", "mmap")]
        if unknown:
            raise ValueError(
                f"load_kwargs should hold only 'strict' and 'mmap' (the options of Checkpoint.load_objects), "
                f"got {unknown}"
            )
        if not filename_components:
            path = self.last_checkpoint
            if path is None:
                raise RuntimeError(
                    f"reload_objects() has no checkpoint to load: this handler has saved none into "
                    f"{str(self.save_handler.dirname)!r} yet. Pass global_step=... (and score=... or name=...) "
                    "to load a file saved earlier"
                )
        else:
            path = self.save_handler.dirname / self._filename_from(filename_components, to_load)
            if not path.exists():
                raise FileNotFoundError(
                    f"reload_objects() found no checkpoint file {str(path)!r} for filename_components "
                    f"{filename_components}; this handler keeps {[item.filename for item in self._saved]}"
                )
        Checkpoint.load_objects(to_load, path, **load_kwargs)

    def _filename_from(self, components: Mapping[str, Any], to_load: Mapping) -> str:
        """The file name a save with these ``name``/``global_step``/``score`` parts had."""
        unknown = [key for key in components if key not in ("name", "global_step", "score")]
        if unknown:
            raise TypeError(
                f"reload_objects() got unexpected filename_components {unknown}; the parts of a file name are "
                "name, global_step and score"
            )
        given = {key: value for key, value in components.items() if value is not None}
        name = given.get("name", self._name_for(list(self.to_save or to_load)))
        if not isinstance(name, str) or not name:
            raise TypeError(f"name should be a non-empty str, got {type(name).__name__}: {name!r}")
        global_step = given.get("global_step")
        if global_step is not None and (not isinstance(global_step, numbers.Integral) or isinstance(global_step, bool)):
            raise TypeError(f"global_step should be an int, got {type(global_step).__name__}: {global_step!r}")
        score = given.get("score")
        if score is not None and not isinstance(score, str):
            if not isinstance(score, numbers.Real) or isinstance(score, bool):
                raise TypeError(
                    f"score should be a number or the score as written in the file name, got "
                    f"{type(score).__name__}: {score!r}"
                )
            score = _score_text(score)
        # Saves put the step in default names whenever they have one: always without a score function,
        # and with one only through global_step_transform.
        pattern = self._pattern(
            with_global_step=self.score_function is None or self.global_step_transform is not None
        )
        fields = {field for _, field, _, _ in string.Formatter().parse(pattern) if field}
        for part in given:
            if part not in fields:
                raise ValueError(
                    f"filename_components[{part!r}] is not part of this handler's file names, whose pattern is "
                    f"{pattern!r}"
                )
        for part in ("global_step", "score"):
            if part in fields and part not in given:
                raise ValueError(
                    f"this handler's file names ({pattern!r}) have a {part}; pass {part}=... to reload_objects()"
                )
        return self._format_filename(pattern, name, score, global_step)

    def _format_filename(self, pattern: str, name: str, score: str | None, global_step: int | None) -> str:
        """``pattern`` filled with this handler's prefix, score name and extension and the given parts."""
        return pattern.format(
            filename_prefix=self.filename_prefix,
            name=name,
            score=score,
            score_name=self.score_name,
            global_step=global_step,
            ext=self.ext,
        )


def _no_saver_yet(checkpoint: Any, filename: str, metadata: Any = None) -> None:
    raise RuntimeError("ModelCheckpoint saved before its DiskSaver was set up")


class ModelCheckpoint(Checkpoint):
    """A :class:`Checkpoint` into the folder ``dirname`` that is given the objects to save when it is
    called, as ``handler(engine, to_save)``: attach it with ``to_save`` as the handler's argument.

    Args:
        dirname: the folder; files are written by a :class:`DiskSaver` made with ``atomic``,
            ``require_empty`` (refuse a folder that already holds ``.pt`` files) and ``create_dir``.
        filename_prefix, score_function, score_name, n_saved, global_step_transform, filename_pattern,
            include_self, greater_or_equal: as for :class:`Checkpoint`.
        save_on_rank: in a ``torch.distributed`` job, the rank whose :class:`DiskSaver` makes the folder,
            writes and removes the files (0 by default); call the handler on every rank, as in ignite:
            the other ranks keep the same list of checkpoints and write nothing.
        kwargs: refused: ignite hands them to ``torch.save``, while :class:`DiskSaver` writes its own
            CRC-checked format and takes no options.

    ``to_save`` is kept in ``self.to_save`` after each call: it is what :meth:`request_save` saves
    and what :meth:`~Checkpoint.reload_objects` names files after.

    >>> import os, tempfile, torch
    >>> from nbengine.engine import Engine, Events
    >>> from nbengine.handlers import ModelCheckpoint
    >>> folder = tempfile.TemporaryDirectory()
    >>> handler = ModelCheckpoint(folder.name, "myprefix", n_saved=2)
    >>> trainer = Engine(lambda engine, batch: None)
    >>> _ = trainer.add_event_handler(Events.EPOCH_COMPLETED(every=2), handler, {"mymodel": torch.nn.Linear(3, 3)})
    >>> _ = trainer.run([0, 1, 2, 3, 4], max_epochs=6)
    >>> sorted(os.listdir(folder.name))
    ['myprefix_mymodel_20.pt', 'myprefix_mymodel_30.pt']
    >>> handler.last_checkpoint.name
    'myprefix_mymodel_30.pt'
    >>> folder.cleanup()
    """

    def __init__(
        self,
        dirname: str | os.PathLike,
        filename_prefix: str = "",
        score_function: Callable[[Engine], int | float] | None = None,
        score_name: str | None = None,
        n_saved: int | None = 1,
        atomic: bool = True,
        require_empty: bool = True,
        create_dir: bool = True,
        global_step_transform: Callable | None = None,
        filename_pattern: str | None = None,
        include_self: bool = False,
        greater_or_equal: bool = False,
        save_on_rank: int = 0,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise TypeError(
                f"ModelCheckpoint got keyword arguments {sorted(kwargs)}, which ignite passes to torch.save; "
                "nbengine's DiskSaver writes its own CRC-checked format and takes no torch.save options"
            )
        _check_save_on_rank(save_on_rank)
        # Every other argument is checked before the DiskSaver makes or inspects the folder.
        super().__init__(
            {},
            _no_saver_yet,
            filename_prefix=filename_prefix,
            score_function=score_function,
            score_name=score_name,
            n_saved=n_saved,
            global_step_transform=global_step_transform,
            filename_pattern=filename_pattern,
            include_self=include_self,
            greater_or_equal=greater_or_equal,
            save_on_rank=save_on_rank,
        )
        self.save_handler = DiskSaver(dirname, atomic=atomic, create_dir=create_dir, require_empty=require_empty,
                                      save_on_rank=save_on_rank)
        self._checked_saver = (self.save_handler, True)

    @property
    def last_checkpoint(self) -> Path | None:
        """As :attr:`Checkpoint.last_checkpoint`: the path of the last kept file in ``dirname``."""
        if not isinstance(self.save_handler, DiskSaver):
            raise RuntimeError(
                f"Internal error, save_handler should be DiskSaver, but has {type(self.save_handler)}: a "
                "ModelCheckpoint writes into its folder; use a Checkpoint for another save handler"
            )
        return super().last_checkpoint

    def _check_to_save(self, to_save: Any) -> None:
        if isinstance(to_save, (Mapping, list, tuple)) and not to_save:
            raise RuntimeError(
                f"No objects to checkpoint found: to_save should map names to objects to save, got {to_save!r}"
            )
        _check_objects(to_save, "to_save", "state_dict")
        if self.include_self and "checkpointer" in to_save:
            raise ValueError(
                f"to_save has the key 'checkpointer', which include_self=True reserves; got keys {list(to_save)}"
            )

    def __call__(self, engine: Engine, to_save: Mapping, *exception_then_to_save: Any) -> None:
        """Save ``to_save``, the last argument: ``handler(engine, to_save)``, or on ``EXCEPTION_RAISED``
        ``handler(engine, exception, to_save)``. ``to_save`` is required, so attaching the handler
        without it is refused at attach time, as in ignite."""
        if exception_then_to_save:
            to_save = exception_then_to_save[-1]
        self._check_to_save(to_save)
        self.to_save = to_save
        self._save(engine)

    def request_save(self, engine: Engine, to_save: Mapping | None = None) -> Future:
        """As :meth:`Checkpoint.request_save`; saves ``to_save``, by default the objects of the last call."""
        if not isinstance(engine, Engine):
            raise TypeError(f"engine should be an nbengine Engine, got {type(engine).__name__}: {engine!r}")
        if to_save is None:
            if not self.to_save:
                raise RuntimeError(
                    "this ModelCheckpoint has no objects to save yet: it is given them when called as "
                    "handler(engine, to_save). Pass to_save=... to request_save()"
                )
            return super().request_save(engine)
        self._check_to_save(to_save)

        def save() -> Path | str | None:
            self.to_save = to_save
            return self._save(engine)

        return engine.call_at_boundary(save)


def global_step_from_engine(engine: Engine, custom_event_name: Any = None) -> Callable[[Any, Any], int]:
    """A ``global_step_transform`` for :class:`Checkpoint` that reads the step from another engine.

    The returned ``fn(engine_, event_name) -> int`` leaves ``engine_`` (the engine that saves) aside and
    returns ``engine``'s counter for ``event_name``, or for ``custom_event_name`` when it is given:
    ``state.epoch`` for STARTED, COMPLETED and the epoch events, ``state.iteration`` for the iteration
    and batch events, and for a custom event the State attribute it was registered with
    (``register_events(..., event_to_attr=...)``). An event without a counter on ``engine`` is an
    error naming it; ignite 0.5.5 falls back to the epoch there.

    A checkpoint saved by the evaluator, named by the trainer's epoch:

    >>> import os, tempfile, torch
    >>> from nbengine.engine import Engine, Events
    >>> from nbengine.handlers import Checkpoint, global_step_from_engine
    >>> trainer = Engine(lambda engine, batch: None)
    >>> evaluator = Engine(lambda engine, batch: None)
    >>> folder = tempfile.TemporaryDirectory()
    >>> handler = Checkpoint(
    ...     {"model": torch.nn.Linear(2, 1)}, folder.name, n_saved=2,
    ...     global_step_transform=global_step_from_engine(trainer),
    ... )
    >>> _ = evaluator.add_event_handler(Events.COMPLETED, handler)
    >>> _ = trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: evaluator.run([0, 1]))
    >>> _ = trainer.run([0, 1, 2], max_epochs=3)
    >>> sorted(os.listdir(folder.name))
    ['model_2.pt', 'model_3.pt']
    >>> folder.cleanup()
    """
    if not isinstance(engine, Engine):
        raise TypeError(f"engine should be an nbengine Engine, got {type(engine).__name__}: {engine!r}")
    if custom_event_name is not None:
        _counter_of(engine, custom_event_name, "custom_event_name")

    def global_step(engine_: Any, event_name: Any) -> int:
        event = event_name if custom_event_name is None else custom_event_name
        return int(getattr(engine.state, _counter_of(engine, event, "event_name")))

    return global_step


def _counter_of(engine: Engine, event: Any, argument: str) -> str:
    """The name of the State attribute that counts ``event`` on ``engine``."""
    if event is None and argument == "event_name":
        raise ValueError(
            "event_name is None: the engine that saves has fired no event yet, so there is no event to read "
            "the step for; pass custom_event_name=... to global_step_from_engine()"
        )
    if not isinstance(event, (str, CallableEventWithFilter)):
        raise TypeError(
            f"{argument} should be one event (Events.X or a registered custom event), got "
            f"{type(event).__name__}: {event!r}"
        )
    if not engine.has_registered_events(event):
        raise ValueError(
            f"{argument} {event!r} is not an event this {type(engine).__name__} knows; register custom events "
            "with register_events() first"
        )
    # The engine's own event -> State attribute mapping (built-in events plus its event_to_attr).
    attr = engine._event_to_attr.get(event if isinstance(event, str) else event.name)
    if attr is None:
        raise ValueError(
            f"{argument} {event!r} has no State counter on this {type(engine).__name__}; register it with "
            "event_to_attr={event: 'attribute'} or pass custom_event_name=Events.EPOCH_COMPLETED"
        )
    return attr


def _takes_metadata(save_handler: Any) -> bool:
    """Whether ``save_handler`` is called with metadata; refuses one that takes neither call form."""
    if isinstance(save_handler, DiskSaver) or can_bind(save_handler, (None, None, None), {}) is not False:
        return True
    if can_bind(save_handler, (None, None), {}) is False:
        raise TypeError(
            f"save_handler {describe_callable(save_handler)} cannot be called as fn(checkpoint, filename) "
            "nor fn(checkpoint, filename, metadata)"
        )
    return False


def _load_one(obj: Any, state: Any, strict: bool) -> None:
    obj = _unwrap(obj)
    if isinstance(obj, nn.Module):
        obj.load_state_dict(state, strict=strict)
    else:
        obj.load_state_dict(state)


def _score_text(score: numbers.Real) -> str:
    """A score as file names show it: an integer as is, anything else with four decimals."""
    return f"{score}" if isinstance(score, numbers.Integral) else f"{score:.4f}"


def _plain_number(value: Any) -> int | float:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value)
