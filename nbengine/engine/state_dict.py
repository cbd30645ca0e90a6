"""Engine state dicts, for both engines: what ``state_dict()`` holds and checking one before loading.

This module owns the keys and their meaning. ignite's keys come first (``epoch_length``, ``iteration``
or ``epoch``, one of ``max_epochs``/``max_iters``, the user keys); nbengine adds ``boundary`` where
the run stands anywhere but at the start of an epoch: the event it stands after (or inside, with
``handlers_done``), its epoch and its iteration inside the epoch, so that loading resumes exactly
there. A state dict without ``boundary`` (ignite's own) resumes as ignite does: at the start of the
iteration after ``iteration``. ``DeterministicEngine`` adds its seed, random states and data lengths.

Every value is checked before anything is changed; unknown keys are named in a warning.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, NamedTuple

from nbengine._checks import check_mapping, check_non_negative_int, check_optional_positive_int, is_int
from nbengine.engine.data_state import STATE_KEY as DATA_STATE_KEY
from nbengine.engine.data_state import data_state
from nbengine.engine.events import Events
from nbengine.engine.loop import Position
from nbengine.utils.seed import check_rng_states

__all__ = ["BOUNDARY_KEY", "Loaded", "build", "parse", "parse_deterministic"]

BOUNDARY_KEY = "boundary"
DETERMINISTIC_KEYS = ("seed", "rng_states", "num_threads", "data_length", "dataset_length")
# Events a run can stand after or inside (INTERRUPT stands where the event before it stood).
_RESUMABLE = tuple(event.name for event in Events if event is not Events.INTERRUPT)


class Loaded(NamedTuple):
    """A checked state dict, ready to be applied."""

    epoch_length: int | None
    iteration: int
    epoch: int
    max_epochs: int | None
    max_iters: int | None
    user_values: dict
    data_state: Any
    position: Position | None
    iter_in_epoch: int | None
    output: Any


def build(engine: Any, position: Position | None, iter_in_epoch: int) -> OrderedDict:
    """``engine``'s state dict, with the boundary of ``position`` when it is not an epoch's start."""
    state = engine.state
    keys: list[str] = ["epoch_length", "iteration"]
    keys.append("max_iters" if state.max_iters is not None else "max_epochs")
    keys.extend(engine.state_dict_user_keys)
    state_dict = OrderedDict((key, getattr(state, key)) for key in keys)
    loader_state = data_state(state.dataloader)  # a StatefulDataLoader's position (data_state.py)
    if loader_state is not None:
        state_dict[DATA_STATE_KEY] = loader_state
    if position is not None and not _at_epoch_start(state, position, iter_in_epoch):
        boundary: dict[str, Any] = {
            "event": position.event,
            "handlers_done": position.done,
            "epoch": state.epoch,
            "iteration_in_epoch": iter_in_epoch,
        }
        if position.event == Events.ITERATION_COMPLETED.name and position.done is not None:
            boundary["output"] = state.output  # the handlers still to run read it
        state_dict[BOUNDARY_KEY] = boundary
    return state_dict


def _at_epoch_start(state: Any, position: Position, iter_in_epoch: int) -> bool:
    """Where ignite's rule (the iteration after ``iteration``, a new epoch when it divides evenly)
    puts the run anyway: after an epoch that is not the last, or after the whole run."""
    if position.done is not None or position.event not in ("EPOCH_COMPLETED", "COMPLETED", "STARTED"):
        return False
    if position.event == "EPOCH_COMPLETED" and state.max_epochs is not None and state.epoch >= state.max_epochs:
        return False  # COMPLETED is still to come; ignite's rule would see a finished run
    length = state.epoch_length
    return bool(length) and state.iteration == state.epoch * length and (position.event == "STARTED" or iter_in_epoch in (0, length))


def parse(engine: Any, state_dict: Any) -> Loaded:
    """Check ``state_dict`` against ``engine`` (ignite's wording where ignite has one)."""
    check_mapping("state_dict", state_dict, "Argument state_dict should be a dictionary")
    keys = list(state_dict)
    if "iteration" in state_dict and "epoch" in state_dict:
        raise ValueError(
            "State dictionary should contain only one of 'iteration' or 'epoch' keys. Found both: "
            f"iteration={state_dict['iteration']!r}, epoch={state_dict['epoch']!r}"
        )
    user_keys = engine.state_dict_user_keys
    required = ["epoch_length"] + ([] if "epoch" in state_dict else ["iteration"]) + list(user_keys)
    for key in required:
        if key not in state_dict:
            kind = "user state attribute" if key in user_keys else "state attribute"
            raise ValueError(f"Required {kind} '{key}' is absent in provided state_dict {keys}")
    if ("max_epochs" in state_dict) == ("max_iters" in state_dict):
        raise ValueError(
            f"state_dict should contain exactly one of '('max_epochs', 'max_iters')' keys; it has keys {keys}"
        )
    _warn_unknown(engine, keys)
    epoch_length = check_optional_positive_int(
        "state_dict['epoch_length']",
        state_dict["epoch_length"],
        "epoch_length must be a positive integer to calculate missing 'iteration' or 'epoch' key",
    )
    for key in ("iteration", "epoch"):
        if key in state_dict:
            check_non_negative_int(f"state_dict[{key!r}]", state_dict[key])
    given = "iteration" if "iteration" in state_dict else "epoch"
    count = int(state_dict[given])
    if count and epoch_length is None:
        raise ValueError(
            "epoch_length must be a positive integer to calculate missing 'iteration' or 'epoch' key: "
            f"state_dict gives {given}={count} with epoch_length=None"
        )
    if given == "iteration":
        iteration, epoch = count, (count // epoch_length if epoch_length else 0)
    else:
        epoch, iteration = count, (count * epoch_length if epoch_length else 0)
    position, iter_in_epoch, output = None, None, None
    if BOUNDARY_KEY in state_dict:
        position, epoch, iter_in_epoch, output = _parse_boundary(state_dict[BOUNDARY_KEY])
    limits = {}
    for name, progress_name, progress in (("max_epochs", "epoch", epoch), ("max_iters", "iteration", iteration)):
        value = state_dict.get(name)
        check_optional_positive_int(
            f"state_dict[{name!r}]", value, f"Argument {name} is invalid. Please, set a correct {name} positive value"
        )
        if value is not None:
            engine._check_limit_reached(name, value, progress_name, progress)
        limits[name] = value
    return Loaded(
        epoch_length, iteration, epoch, limits["max_epochs"], limits["max_iters"],
        {key: state_dict[key] for key in user_keys}, state_dict.get(DATA_STATE_KEY), position, iter_in_epoch, output,
    )


def _warn_unknown(engine: Any, keys: list[str]) -> None:
    known = {"epoch", *engine._state_dict_all_req_keys, "max_epochs", "max_iters", DATA_STATE_KEY, BOUNDARY_KEY,
             *engine.state_dict_user_keys, *engine._extra_state_dict_keys}
    unknown = [key for key in keys if key not in known]
    if unknown:
        warnings.warn(
            f"state_dict has keys that {type(engine).__name__}.load_state_dict does not know and ignores: "
            f"{unknown}; it knows {sorted(known)}",
            UserWarning,
            stacklevel=3,
        )


def _parse_boundary(boundary: Any) -> tuple[Position, int, int, Any]:
    name = f"state_dict[{BOUNDARY_KEY!r}]"
    check_mapping(name, boundary)
    event = boundary.get("event")
    if event not in _RESUMABLE:
        raise ValueError(f"{name}['event'] should be the name of a built-in event ({', '.join(_RESUMABLE)}), got {event!r}")
    done = boundary.get("handlers_done")
    if done is not None:
        check_non_negative_int(f"{name}['handlers_done']", done)
    epoch = check_non_negative_int(f"{name}['epoch']", boundary.get("epoch"))
    iter_in_epoch = check_non_negative_int(f"{name}['iteration_in_epoch']", boundary.get("iteration_in_epoch"))
    return Position(event, done, restart=True), epoch, iter_in_epoch, boundary.get("output")


class DeterministicLoaded(NamedTuple):
    seed: int | None
    rng_states: Mapping | None
    num_threads: int | None
    data_length: int | None
    dataset_length: int | None


def parse_deterministic(state_dict: Mapping) -> DeterministicLoaded:
    """Check the keys ``DeterministicEngine`` adds; each is optional (ignite's state dicts lack them)."""
    check_mapping("state_dict", state_dict, "Argument state_dict should be a dictionary")
    seed = state_dict.get("seed")
    if seed is not None:
        if not is_int(seed) or not 0 <= seed < (1 << 64):
            raise ValueError(f"state_dict['seed'] should be None or an integer in [0, 2**64), got {seed!r}")
        seed = int(seed)
    rng_states = state_dict.get("rng_states")
    if rng_states is not None:
        check_rng_states(rng_states, "state_dict['rng_states']")
    num_threads = check_optional_positive_int("state_dict['num_threads']", state_dict.get("num_threads"))
    data_length = check_optional_positive_int("state_dict['data_length']", state_dict.get("data_length"))
    dataset_length = state_dict.get("dataset_length")
    if dataset_length is not None and (not is_int(dataset_length) or dataset_length < 0):
        raise ValueError(f"state_dict['dataset_length'] should be None or a non-negative integer, got {dataset_length!r}")
    return DeterministicLoaded(seed, rng_states, num_threads, data_length, dataset_length)
