"""``EarlyStopping``: ends a run when a score has stopped improving for ``patience`` calls.

This module owns the improvement rule (absolute or relative threshold, maximise or minimise,
cumulative or per-call) and the counter and best score, which go through ``state_dict`` so that a
run resumed from a checkpoint stops exactly where the uninterrupted one would. Behaviour and
messages are pytorch-ignite 0.5.5's ``ignite.handlers.EarlyStopping``, deprecated argument names
included.
"""

from __future__ import annotations

import logging
import numbers
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Literal

from nbengine._checks import check_callable, check_positive_int
from nbengine.engine import Engine, Events
from nbengine.handlers._state_dicts import check_state_dict

__all__ = ["EarlyStopping"]

# Old argument name -> new one; ignite 0.5.5 renamed them and still takes the old ones, with a warning.
_RENAMED = {"min_delta": "threshold", "min_delta_mode": "threshold_mode", "cumulative_delta": "cumulative"}


def _warn_renamed(old: str) -> None:
    warnings.warn(
        f"'{old}' is deprecated and will be removed in a future version. Please use '{_RENAMED[old]}' instead.",
        DeprecationWarning,
        stacklevel=3,
    )


class EarlyStopping:
    """Calls ``trainer.terminate()`` once ``score_function(engine)`` has not improved ``patience``
    times in a row.

    Args:
        patience: how many calls without improvement end the run (a positive int).
        score_function: ``fn(engine) -> float``; higher is better with ``mode="max"``.
        trainer: the Engine to terminate.
        threshold: the least change that counts as an improvement (>= 0).
        cumulative: measure the change from the best score at the last improvement (True) or from
            the best score so far, which then follows non-improving scores too (False).
        threshold_mode: ``"abs"``: improved when ``score > best + threshold`` (``mode="max"``) or
            ``score < best - threshold`` (``mode="min"``); ``"rel"``: when ``score > best * (1 +
            threshold)`` or ``score < best * (1 - threshold)``.
        mode: ``"max"`` or ``"min"``.
        min_delta, min_delta_mode, cumulative_delta: ignite's old names for ``threshold``,
            ``threshold_mode`` and ``cumulative``; they win over the new ones, with a
            DeprecationWarning.

    ``counter`` and ``best_score`` are in :meth:`state_dict`: put the handler in a
    :class:`~nbengine.handlers.Checkpoint`'s ``to_save`` and a resumed run stops where the
    uninterrupted one would.

    >>> from nbengine.engine import Engine, Events
    >>> scores = iter([0.5, 0.7, 0.69, 0.7, 0.68, 0.9])
    >>> trainer = Engine(lambda engine, batch: None)
    >>> handler = EarlyStopping(patience=3, score_function=lambda engine: next(scores), trainer=trainer)
    >>> _ = trainer.add_event_handler(Events.EPOCH_COMPLETED, handler)
    >>> state = trainer.run([0], max_epochs=10)
    >>> (state.epoch, handler.counter, handler.best_score)
    (5, 3, 0.7)
    """

    def __init__(
        self,
        patience: int,
        score_function: Callable[[Engine], float],
        trainer: Engine,
        threshold: float = 0.0,
        cumulative: bool = False,
        threshold_mode: Literal["abs", "rel"] = "abs",
        mode: Literal["min", "max"] = "max",
        min_delta: float | None = None,
        min_delta_mode: Literal["abs", "rel"] | None = None,
        cumulative_delta: bool | None = None,
    ) -> None:
        check_callable(
            "score_function", score_function, "fn(engine) -> float", prefix="Argument score_function should be a function"
        )
        patience = check_positive_int("patience", patience, prefix="Argument patience should be positive integer")
        if not isinstance(trainer, Engine):
            raise TypeError(f"Argument trainer should be an instance of Engine. Got {type(trainer).__name__}")
        if min_delta is not None:
            _warn_renamed("min_delta")
            threshold = min_delta
        if min_delta_mode is not None:
            _warn_renamed("min_delta_mode")
            threshold_mode = min_delta_mode
        if cumulative_delta is not None:
            _warn_renamed("cumulative_delta")
            cumulative = cumulative_delta
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or threshold < 0.0:
            raise ValueError(f"Argument threshold should not be a negative number. Got {threshold!r}")
        if threshold_mode not in ("abs", "rel"):
            raise ValueError(f"Argument threshold_mode should be either 'abs' or 'rel'. Got {threshold_mode!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"Argument mode should be either 'min' or 'max'. Got {mode!r}")
        self.score_function = score_function
        self.patience = patience
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.cumulative = bool(cumulative)
        self.mode = mode
        self.trainer = trainer
        self.counter = 0
        self.best_score: float | None = None
        self.logger = logging.getLogger(f"{__name__}.{type(self).__name__}")

    # ignite's old attribute names, kept readable and writable with a warning.
    @property
    def min_delta(self) -> float:
        _warn_renamed("min_delta")
        return self.threshold

    @min_delta.setter
    def min_delta(self, value: float) -> None:
        _warn_renamed("min_delta")
        self.threshold = value

    @property
    def min_delta_mode(self) -> str:
        _warn_renamed("min_delta_mode")
        return self.threshold_mode

    @min_delta_mode.setter
    def min_delta_mode(self, value: Literal["abs", "rel"]) -> None:
        _warn_renamed("min_delta_mode")
        self.threshold_mode = value

    @property
    def cumulative_delta(self) -> bool:
        _warn_renamed("cumulative_delta")
        return self.cumulative

    @cumulative_delta.setter
    def cumulative_delta(self, value: bool) -> None:
        _warn_renamed("cumulative_delta")
        self.cumulative = value

    def _improves(self, score: float, best: float) -> bool:
        margin = self.threshold if self.mode == "max" else -self.threshold
        bar = best + margin if self.threshold_mode == "abs" else best * (1 + margin)
        return score > bar if self.mode == "max" else score < bar

    def __call__(self, engine: Engine | None) -> None:
        score = self.score_function(engine)
        if self.best_score is None:
            self.best_score = score
            return
        if self._improves(score, self.best_score):
            self.best_score = score
            self.counter = 0
            return
        if not self.cumulative:
            # Without cumulative, the next score is measured against this one when it is better.
            self.best_score = max(score, self.best_score) if self.mode == "max" else min(score, self.best_score)
        self.counter += 1
        self.logger.debug("EarlyStopping: %i / %i", self.counter, self.patience)
        if self.counter >= self.patience:
            self.logger.info("EarlyStopping: Stop training")
            self.trainer.terminate()

    def reset(self) -> None:
        """Forget the counter and the best score (e.g. when the trainer starts a new run)."""
        self.counter = 0
        self.best_score = None

    def attach(
        self,
        engine: Engine,
        event: Any = Events.COMPLETED,
        reset_engine: Engine | None = None,
        reset_event: Any = Events.STARTED,
    ) -> None:
        """Call this handler on ``engine``'s ``event`` (typically an evaluator's COMPLETED) and
        :meth:`reset` on ``reset_engine``'s (default ``engine``) ``reset_event``."""
        engine.add_event_handler(event, self)
        (reset_engine or engine).add_event_handler(reset_event, self.reset)

    def state_dict(self) -> OrderedDict:
        """``counter``, ``best_score`` and ``threshold_mode``."""
        return OrderedDict(
            [("counter", self.counter), ("best_score", self.best_score), ("threshold_mode", self.threshold_mode)]
        )

    def load_state_dict(self, state_dict: Mapping) -> None:
        check_state_dict(state_dict, ("counter", "best_score", "threshold_mode"))
        self.counter = state_dict["counter"]
        self.best_score = state_dict["best_score"]
        self.threshold_mode = state_dict.get("threshold_mode", self.threshold_mode)
