"""Walking nested containers (dicts, lists, tuples, named tuples) of leaves: ``tree_map``.

Metrics keep accumulators in such containers (a dict of metrics, a list of numbers); their
``state_dict`` maps each leaf and ``load_state_dict`` writes each one back in place. ignite calls the
map ``ignite.utils._tree_map``; ``nbengine.utils`` exports it under that name too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["tree_map"]


def tree_map(func: Callable[..., Any], tree: Any, key: int | str | None = None) -> Any:
    """Rebuild ``tree`` with every leaf replaced by ``func(leaf, key=k)``, ``k`` its key or index in its parent.

    Mappings keep their type and keys, named tuples their type, other sequences (except ``str`` and
    ``bytes``, which are leaves) their type.

    >>> tree_map(lambda leaf, key: (key, leaf * 10), {"a": [1, 2], "b": 3})
    {'a': [(0, 10), (1, 20)], 'b': ('b', 30)}
    """
    if isinstance(tree, Mapping):
        return type(tree)({k: tree_map(func, value, key=k) for k, value in tree.items()})
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(tree_map(func, value) for value in tree))
    if isinstance(tree, Sequence) and not isinstance(tree, (str, bytes)):
        return type(tree)([tree_map(func, value, key=i) for i, value in enumerate(tree)])
    return func(tree, key=key)
