"""pytorch-ignite's private RNG helpers, in ignite's shapes, for code (and ignite's own tests) that import them.

ignite keeps the global generators' states as a list ``[python, torch, numpy]``: ``random.getstate()``,
``torch.get_rng_state()`` and, when numpy imports, ``numpy.random.get_state()``. nbengine's own
helpers (``nbengine.utils.seed``: ``get_rng_states``/``set_rng_states``) keep them as a dict of plain
types and include CUDA; this module owns only the translation to and from ignite's list form, so
``from ignite.engine.deterministic import _get_rng_states, _set_rng_states, _repr_rng_state`` works
with ``ignite`` aliased to ``nbengine``. Nothing in nbengine itself uses these.

>>> import torch
>>> states = _get_rng_states()
>>> first = torch.rand(1)
>>> _set_rng_states(states)
>>> torch.equal(torch.rand(1), first)
True
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from nbengine.utils.seed import set_rng_states

__all__ = ["_get_rng_states", "_set_rng_states", "_repr_rng_state"]


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:  # numpy is optional: without it there is no numpy generator to keep
        return None
    return numpy


def _get_rng_states() -> list[Any]:
    """``[random.getstate(), torch.get_rng_state(), numpy.random.get_state()]`` (numpy's only when it imports)."""
    states: list[Any] = [random.getstate(), torch.get_rng_state()]
    numpy = _numpy()
    if numpy is not None:
        states.append(numpy.random.get_state())
    return states


def _set_rng_states(rng_states: Sequence[Any] | Mapping[str, Any]) -> None:
    """Restore states taken by :func:`_get_rng_states` (a list) or by ``nbengine.utils.seed.get_rng_states``
    (a dict). As in ignite, a torch state held on another device is moved to the CPU in the list itself.

    A list gives the Python state first, then torch's, then (optionally) numpy's; numpy's is skipped
    when numpy does not import.
    """
    if isinstance(rng_states, Mapping):
        set_rng_states(rng_states)
        return
    if isinstance(rng_states, (str, bytes)) or not isinstance(rng_states, Sequence) or not 2 <= len(rng_states) <= 3:
        raise TypeError(
            "rng_states should be a list [python state, torch state(, numpy state)] as from _get_rng_states() "
            f"or a dict as from nbengine.utils.seed.get_rng_states(), got {rng_states!r:.80}"
        )
    if not isinstance(rng_states[1], torch.Tensor):
        raise TypeError(
            f"rng_states[1] should be the torch state (a uint8 tensor from torch.get_rng_state()), "
            f"got {type(rng_states[1]).__name__}"
        )
    random.setstate(tuple(rng_states[0]))
    if rng_states[1].device.type != "cpu":
        rng_states[1] = rng_states[1].cpu()  # ignite's behaviour: the caller's list ends up holding a CPU tensor
    torch.set_rng_state(rng_states[1])
    numpy = _numpy()
    if len(rng_states) > 2 and numpy is not None:
        numpy.random.set_state(rng_states[2])


def _repr_rng_state(rng_states: Sequence[Any] | Mapping[str, Any]) -> str:
    """One md5 hex digest per generator state, space-separated: a short fingerprint for debugging prints."""
    states = rng_states.values() if isinstance(rng_states, Mapping) else rng_states
    return " ".join(hashlib.md5(str(_flat(state)).encode("utf-8")).hexdigest() for state in states)


def _flat(state: Any) -> list[Any]:
    if isinstance(state, torch.Tensor):
        return state.tolist()
    if isinstance(state, Mapping):
        return [(key, _flat(value)) for key, value in state.items()]
    try:
        return list(state)
    except TypeError:
        return [state]
