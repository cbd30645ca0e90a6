"""Checkpoint: the engine handler that saves ``state_dict``s, keeps the best ``n_saved``, and loads them back.

The API is pytorch-ignite's ``Checkpoint``; what differs is underneath. Older checkpoints are removed
only after the new one is committed (ignite removes first, so a crash can leave none), files are written
durably by :class:`~nbengine.handlers.DiskSaver`, and :meth:`Checkpoint.load_objects` loads through
:func:`~nbengine.handlers.load_checkpoint`: CRC-checked, ``weights_only=True`` and nothing else.

For the notebook panels: :meth:`Checkpoint.request_save` (the Save button) has the training side save
at its next boundary, and loading refuses an engine that is running.
"""

from __future__ import annotations

import numbers
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from nbengine.engine import RUNNING, Engine, EventEnum
from nbengine.engine._signature import can_bind, describe_callable
from nbengine.handlers.checkpoint_disk import DiskSaver, list_checkpoints
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
    "Checkpoint",
    "CheckpointError",
    "CheckpointEvents",
    "CheckpointInfo",
    "CorruptCheckpointError",
    "DiskSaver",
    "UnsafeCheckpointError",
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
            f"{argument} should be a mapping of names to objects with {method}(), got "
            f"{type(objects).__name__}: {objects!r}"
        )
    for key, obj in objects.items():
        if not isinstance(key, str):
            raise TypeError(f"{argument} keys should be strings, got {key!r} of type {type(key).__name__}")
        if not callable(getattr(_unwrap(obj), method, None)):
            raise TypeError(
                f"{argument}[{key!r}] should have a {method}() method, got {type(obj).__name__}: {obj!r}"
            )


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
    ) -> None:
        _check_objects(to_save, "to_save", "state_dict")
        if include_self and "checkpointer" in to_save:
            raise ValueError(
                f"to_save has the key 'checkpointer', which include_self=True reserves; got keys {list(to_save)}"
            )
        if not isinstance(save_handler, (str, os.PathLike)) and not callable(save_handler):
            raise TypeError(
                "save_handler should be a DiskSaver, a folder path or a callable fn(checkpoint, filename[, metadata]), "
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
                f"global_step_transform should be a callable fn(engine, event) -> int, got {global_step_transform!r}"
            )
        if filename_pattern is not None and not isinstance(filename_pattern, str):
            raise TypeError(f"filename_pattern should be a str or None, got {filename_pattern!r}")
        if filename_pattern is not None:
            self._check_pattern(filename_pattern)
        for name, value in (("include_self", include_self), ("greater_or_equal", greater_or_equal)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} should be True or False, got {value!r}")
        if isinstance(save_handler, (str, os.PathLike)):
            save_handler = DiskSaver(save_handler, create_dir=True)
        self._handler_takes_metadata = isinstance(save_handler, DiskSaver) or can_bind(
            save_handler, (None, None, None), {}
        ) is not False
        if not self._handler_takes_metadata and can_bind(save_handler, (None, None), {}) is False:
            raise TypeError(
                f"save_handler {describe_callable(save_handler)} cannot be called as fn(checkpoint, filename) "
                "nor fn(checkpoint, filename, metadata)"
            )
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
            raise ValueError("at least one of with_score and with_global_step should be True")
        if with_score_name and not with_score:
            raise ValueError("with_score_name=True needs with_score=True")
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
            raise ValueError(f"score_sign should be 1.0 or -1.0, got {score_sign!r}")

        def score(engine: Engine) -> float:
            return score_sign * engine.state.metrics[metric_name]

        score.__qualname__ = f"score_from_metric[{metric_name!r}]"
        return score

    @property
    def last_checkpoint(self) -> Path | str | None:
        """The newest kept checkpoint: its path with a DiskSaver, its file name otherwise."""
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

    def __call__(self, engine: Engine) -> None:
        self._save(engine)

    def request_save(self, engine: Engine) -> Future:
        """Save from any thread (the panel's Save button): the training side does it at its next
        boundary, or this thread at once when the engine is not running. The Future gives the path
        (the file name without a DiskSaver), or None when the score did not make the cut."""
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
                    f"score_function {describe_callable(self.score_function)} should return a number, "
                    f"got {priority!r}"
                )
        else:
            if global_step is None:
                global_step = engine.state.iteration
            priority = global_step
        if not self._has_room() and not self._beats_worst(priority):
            return None

        checkpoint: dict[str, Any] = {key: _unwrap(obj).state_dict() for key, obj in self.to_save.items()}
        keys = list(checkpoint)
        name = keys[0] if len(keys) == 1 and not self.include_self else "checkpoint"
        score_text = None
        if self.score_function is not None:
            score_text = f"{priority}" if isinstance(priority, numbers.Integral) else f"{priority:.4f}"
        pattern = self.filename_pattern or self.setup_filename_pattern(
            with_prefix=bool(self.filename_prefix),
            with_score=self.score_function is not None,
            with_score_name=self.score_name is not None,
            with_global_step=global_step is not None,
        )
        filename = pattern.format(
            filename_prefix=self.filename_prefix,
            name=name,
            score=score_text,
            score_name=self.score_name,
            global_step=global_step,
            ext=self.ext,
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

        metadata = {
            "basename": f"{self.filename_prefix}_{name}" if self.filename_prefix else name,
            "score_name": self.score_name,
            "priority": _plain_number(priority),
            "epoch": engine.state.epoch,
            "iteration": engine.state.iteration,
            "score": _plain_number(priority) if self.score_function is not None else None,
            "global_step": global_step,
            "name": name,
            "keys": keys,
        }
        if self._handler_takes_metadata:
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
        return self.last_checkpoint

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
                f"checkpoint should be a file path or a mapping of state_dicts, got {type(checkpoint).__name__}: "
                f"{checkpoint!r}"
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
                _load_one(obj, checkpoint, strict)
                return
        missing = [key for key in to_load if key not in checkpoint]
        if missing and strict:
            raise ValueError(
                f"{source} has no entry for to_load keys {missing}; it has keys {list(checkpoint)}. "
                "Pass strict=False to load the others"
            )
        for key, obj in to_load.items():
            if key in checkpoint:
                _load_one(obj, checkpoint[key], strict)


def _load_one(obj: Any, state: Any, strict: bool) -> None:
    obj = _unwrap(obj)
    if isinstance(obj, nn.Module):
        obj.load_state_dict(state, strict=strict)
    else:
        obj.load_state_dict(state)


def _plain_number(value: Any) -> int | float:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value)
