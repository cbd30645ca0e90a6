"""Applying ``run()``'s arguments: continue the run that stands, or begin a new one (ignite 0.5's rules).

This module owns the decision and the checks that go with it. A defined, unfinished state continues
(a paused, stepped, interrupted or loaded run), with the arguments given overriding it; a first run,
or one after the previous run finished, begins a new state. A finished run given a larger
``max_epochs`` (or ``max_iters``) continues to it; a smaller one is refused; ``state.max_epochs =
None`` before ``run()`` restarts, a paused run too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nbengine._checks import check_iterable, check_optional_positive_int

__all__ = ["check_limit_reached", "prepare_run"]


def check_limit_reached(name: str, value: int, progress_name: str, progress: int) -> None:
    if value < progress:
        raise ValueError(
            f"Argument {name} should be greater than or equal to the start {progress_name} defined in the "
            f"state: {value} vs {progress}. Please, set engine.state.{name} = None before calling "
            "engine.run() in order to restart the training from the beginning."
        )


def _check_arguments(data: Any, max_epochs: Any, epoch_length: Any, max_iters: Any) -> None:
    if data is not None:
        check_iterable(
            "data", data, "an iterable (a list, an iterator, a DataLoader) or None", "Argument data should be iterable"
        )
    for name, value in (("max_epochs", max_epochs), ("max_iters", max_iters)):
        check_optional_positive_int(name, value, f"Argument {name} is invalid. Please, set a correct {name} positive value")
    check_optional_positive_int("epoch_length", epoch_length, "Argument epoch_length is invalid")
    if max_epochs is not None and max_iters is not None:
        raise ValueError(
            "Arguments max_iters and max_epochs are mutually exclusive. Please provide only max_epochs or "
            f"max_iters; got max_epochs={max_epochs} and max_iters={max_iters}"
        )


def _apply_limits(state: Any, max_epochs: int | None, max_iters: int | None) -> None:
    # As in ignite, a limit of the other kind than the state's is refused even on a finished run:
    # the state's limit is reset explicitly.
    if max_iters is not None and state.max_epochs is not None:
        raise ValueError(
            "To switch from max_epochs to max_iters mode during resume, you must first reset by setting "
            f"'engine.state.max_epochs = None' before calling run(); got max_iters={max_iters} for a run "
            f"with max_epochs={state.max_epochs}"
        )
    if max_epochs is not None and state.max_iters is not None:
        raise ValueError(
            "To switch from max_iters to max_epochs mode during resume, you must first reset by setting "
            f"'engine.state.max_iters = None' before calling run(); got max_epochs={max_epochs} for a run "
            f"with max_iters={state.max_iters}"
        )
    # A new limit applies before deciding whether the run is finished: a finished run given more
    # epochs continues to them (ignite 0.5).
    if state.max_epochs is not None and max_epochs is not None:
        check_limit_reached("max_epochs", max_epochs, "epoch", state.epoch)
        state.max_epochs = max_epochs
    if state.max_iters is not None and max_iters is not None:
        check_limit_reached("max_iters", max_iters, "iteration", state.iteration)
        state.max_iters = max_iters


def _data_length(data: Iterable) -> int | None:
    try:
        return len(data)  # type: ignore[arg-type]
    except TypeError:
        return None


def _refuse_empty(data: Any, epoch_length: int | None) -> None:
    if epoch_length is not None and epoch_length < 1:
        raise ValueError(f"Input data has zero size. Please provide non-empty data: got {data!r} of length 0")


def prepare_run(engine: Any, data: Any, max_epochs: Any, epoch_length: Any, max_iters: Any) -> bool:
    """Make ``engine`` ready to be driven; returns True when a new state was begun."""
    _check_arguments(data, max_epochs, epoch_length, max_iters)
    state = engine.state
    _apply_limits(state, max_epochs, max_iters)
    if engine._suspended() and state.max_epochs is None and state.max_iters is None:
        # ignite: `state.max_epochs = None` before run() restarts, a paused (interrupted) run too.
        engine._discard_suspended_run()
    fresh = engine._fresh_state_needed()
    if fresh:
        _begin(engine, data, max_epochs, epoch_length, max_iters)
    else:
        _continue(engine, data, epoch_length)
    engine._data_stream.begin(fresh)
    return fresh


def _continue(engine: Any, data: Any, epoch_length: int | None) -> None:
    state = engine.state
    if epoch_length is not None and state.epoch_length is not None and epoch_length != state.epoch_length:
        raise ValueError(
            "Argument epoch_length should be same as in the state, but given "
            f"{epoch_length} vs {state.epoch_length}: epoch_length={epoch_length} differs from the epoch "
            "length of the run being continued"
        )
    if state.epoch_length is None:
        if epoch_length is None and data is not None:
            epoch_length = _data_length(data)
        _refuse_empty(data, epoch_length)
        if epoch_length is not None:
            state.epoch_length = epoch_length
    if engine._suspended():
        if data is not None and data is not engine._given_data:
            engine.set_data(data)
        return
    if data is None:
        data = engine._given_data if engine._given_data is not None else state.dataloader
    if data is None and state.epoch_length is None:
        raise ValueError("epoch_length should be provided if data is None: give epoch_length, or data to run on")
    if engine._should_terminate:
        # Continuing after terminate() starts the next epoch from its first batch.
        engine._init_iter = 0
    _clear_run_flags(engine)
    engine._use_data(data)


def _begin(engine: Any, data: Any, max_epochs: int | None, epoch_length: int | None, max_iters: int | None) -> None:
    state = engine.state
    if data is None:
        data = (engine._given_data if engine._given_data is not None else state.dataloader) if epoch_length is None else None
    if epoch_length is None:
        if data is not None:
            epoch_length = _data_length(data)
        if epoch_length is None and data is None:
            epoch_length = state.epoch_length
    if data is None and epoch_length is None:
        raise ValueError("epoch_length should be provided if data is None: give epoch_length, or data to run on")
    _refuse_empty(data, epoch_length)
    if max_iters is None and max_epochs is None:
        max_epochs = 1
    state.iteration = 0
    state.epoch = 0
    state.max_epochs = max_epochs
    state.max_iters = max_iters
    state.epoch_length = epoch_length
    engine.iter_in_epoch = 0
    engine._init_iter = None
    _clear_run_flags(engine)
    engine._use_data(data)


def _clear_run_flags(engine: Any) -> None:
    """A new run, or one continued after the last ended: what terminate() and a taken exception left
    is over (a paused or loaded run keeps a stop() asked for it)."""
    engine._should_terminate = engine._should_terminate_single_epoch = engine._should_interrupt = False
    engine._control_pending = False
    engine._taken_error = None
