"""``deprecated``: ignite's decorator that marks a function deprecated (warning or error, and a doc note)."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["deprecated"]

_F = TypeVar("_F", bound=Callable[..., Any])


def deprecated(
    deprecated_in: str, removed_in: str = "", reasons: tuple[str, ...] = (), raise_exception: bool = False
) -> Callable[[_F], _F]:
    """Wrap a function so that calling it warns ``DeprecationWarning`` (or raises it, with
    ``raise_exception``), and note the deprecation and ``reasons`` in its docstring.

    >>> @deprecated("0.4", "0.6", reasons=("use new_add",))
    ... def old_add(a, b):
    ...     return a + b
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     old_add(1, 2)
    3
    >>> str(caught[0].message).splitlines()[0]
    'This function has been deprecated since version 0.4 and will be removed in version 0.6.'
    """
    message = (
        f"This function has been deprecated since version {deprecated_in}"
        + (f" and will be removed in version {removed_in}" if removed_in else "")
        + ".\n Please refer to the documentation for more details."
    )

    def decorator(func: _F) -> _F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if raise_exception:
                raise DeprecationWarning(message)
            warnings.warn(message, DeprecationWarning, stacklevel=2)
            return func(*args, **kwargs)

        note = f".. deprecated:: {deprecated_in}" + ("\n\n\t" if reasons else "")
        note += "".join(f"\n\t- {reason}" for reason in reasons)
        wrapper.__doc__ = f"**Deprecated function**.\n\n    {func.__doc__ or ''}{note}"
        return wrapper  # type: ignore[return-value]

    return decorator
