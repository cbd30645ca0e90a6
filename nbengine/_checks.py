"""The package's argument validators: one place that refuses bad input at call or attach time.

Every message names the argument, the value given and what was expected; where pytorch-ignite has a
wording for the same mistake, the message starts with it (``prefix``) so code and tests written for
ignite recognise it.

>>> check_positive_int("max_epochs", 0)
Traceback (most recent call last):
...
ValueError: max_epochs should be a positive integer, got 0
>>> check_positive_int("n", 3)
3
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = [
    "is_int",
    "check_positive_int",
    "check_optional_positive_int",
    "check_non_negative_int",
    "check_callable",
    "check_iterable",
    "check_mapping",
]


def _lead(prefix: str) -> str:
    return f"{prefix}: " if prefix else ""


def is_int(value: Any) -> bool:
    """An integer that is not a bool (``True`` is not a count)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(name: str, value: Any, prefix: str = "") -> int:
    if not is_int(value) or value < 1:
        raise ValueError(f"{_lead(prefix)}{name} should be a positive integer, got {value!r}")
    return int(value)


def check_optional_positive_int(name: str, value: Any, prefix: str = "") -> int | None:
    if value is None:
        return None
    if not is_int(value) or value < 1:
        raise ValueError(f"{_lead(prefix)}{name} should be a positive integer or None, got {value!r}")
    return int(value)


def check_non_negative_int(name: str, value: Any, prefix: str = "") -> int:
    if not is_int(value) or value < 0:
        raise ValueError(f"{_lead(prefix)}{name} should be a non-negative integer, got {value!r}")
    return int(value)


def check_callable(name: str, value: Any, expected: str = "callable", prefix: str = "") -> Callable:
    if not callable(value):
        raise TypeError(f"{_lead(prefix)}{name} should be {expected}, got {value!r} of type {type(value).__name__}")
    return value


def check_iterable(name: str, value: Any, expected: str = "an iterable", prefix: str = "") -> Iterable:
    if not isinstance(value, Iterable):
        raise TypeError(f"{_lead(prefix)}{name} should be {expected}, got {value!r} of type {type(value).__name__}")
    return value


def check_mapping(name: str, value: Any, prefix: str = "") -> Mapping:
    if not isinstance(value, Mapping):
        raise TypeError(f"{_lead(prefix)}{name} should be a mapping, got {type(value).__name__}")
    return value
