"""The checks every handler's ``load_state_dict`` makes before it touches anything.

Handlers that carry state through a checkpoint (early stopping, parameter schedulers, timers) accept a
``state_dict`` only when it is a mapping holding every key they need; the messages keep ignite's
wording, so code and tests written against ignite read the same errors.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nbengine._checks import check_mapping

__all__ = ["check_state_dict"]


def check_state_dict(state_dict: Any, required_keys: Iterable[str]) -> None:
    """Refuse ``state_dict`` unless it is a mapping with every one of ``required_keys``."""
    check_mapping(
        "state_dict", state_dict, prefix=f"Argument state_dict should be a dictionary, but given {type(state_dict)}"
    )
    for key in required_keys:
        if key not in state_dict:
            raise ValueError(
                f"Required state attribute '{key}' is absent in provided state_dict '{state_dict.keys()}'"
            )
