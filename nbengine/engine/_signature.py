"""Attach-time checks that a callable can take the arguments it will be called with."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any


def describe_callable(fn: Callable) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    return f"{name}{_signature_text(fn)}"


def _signature_text(fn: Callable) -> str:
    try:
        return str(inspect.signature(fn))
    except (TypeError, ValueError):
        return "(...)"


def can_bind(fn: Callable, args: Sequence[Any], kwargs: dict[str, Any]) -> bool | None:
    """True or False when the signature is known, None when Python cannot tell (some builtins)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        return False
    return True


def check_callable_takes(fn: Callable, argument: str, arg_names: Sequence[str], sample_args: Sequence[Any]) -> None:
    """Refuse ``fn`` when it cannot be called with ``sample_args`` (named ``arg_names`` in the message)."""
    if can_bind(fn, sample_args, {}) is False:
        raise ValueError(
            f"Error adding {fn} '{argument}': takes parameters {_signature_text(fn)} but will be called with "
            f"({', '.join(arg_names)}): {argument} {describe_callable(fn)} cannot be called with ({', '.join(arg_names)})"
        )
