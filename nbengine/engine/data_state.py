"""Data that knows its own position: a loader with ``state_dict()`` and ``load_state_dict()``, such
as torchdata's ``StatefulDataLoader`` (``pip install "nbengine[stateful]"``).

This module owns how such a loader's state goes into the engine's ``state_dict`` (under
``"dataloader"``) and back into the loader when a loaded run continues, so that a plain ``Engine``
resumes mid-epoch exactly where the loader was: the remaining batches of the epoch, with workers,
without fetching the consumed ones. (A ``DeterministicEngine`` positions its data from the iteration
itself and needs no loader state.)

Randomness inside ``__getitem__`` runs in the workers, which a loader's state does not capture;
``SeededSamples`` (``nbengine.engine.sample_seeding``) seeds each sample from the loader's per-pass
base seed, which ``StatefulDataLoader`` does save:
``StatefulDataLoader(SeededSamples(dataset), num_workers=2, ...)``. torchdata itself refuses a
state saved with another number of workers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["STATE_KEY", "data_state", "has_state", "restore_data_state"]

#: The key of the loader's state in the engine's state_dict.
STATE_KEY = "dataloader"


def has_state(data: Any) -> bool:
    """Whether ``data`` saves and restores its own position."""
    return callable(getattr(data, "state_dict", None)) and callable(getattr(data, "load_state_dict", None))


def data_state(data: Any) -> dict | None:
    """``data``'s state when it keeps one, else None."""
    return data.state_dict() if has_state(data) else None


def restore_data_state(data: Any, state: Any) -> None:
    """Put ``state`` (from ``data_state``) back into ``data`` before it is iterated again."""
    if not isinstance(state, Mapping):
        raise ValueError(f"state_dict[{STATE_KEY!r}] should be a loader's state_dict (a dict), got {state!r:.200}")
    if not has_state(data):
        raise ValueError(
            f"the state_dict holds the state of a stateful loader under {STATE_KEY!r}, but the data given "
            f"({type(data).__name__}) has no load_state_dict(); resume with the loader the checkpoint was taken with"
        )
    data.load_state_dict(state)
