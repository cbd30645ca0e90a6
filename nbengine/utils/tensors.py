"""Moving batches between devices: ``convert_tensor`` and the tree helpers it is built on.

This module owns the walk over the containers a batch is made of (tensors nested in mappings,
named tuples, tuples and lists). Everything here is pure Python plus torch and cheap enough to run
on every iteration: a lone tensor costs one ``isinstance`` check and one ``Tensor.to``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

__all__ = ["apply_to_tensor", "apply_to_type", "convert_tensor"]


def apply_to_type(x: Any, input_type: type | tuple[type, ...], func: Callable[[Any], Any]) -> Any:
    """Return ``x`` with ``func`` applied to every leaf of type ``input_type``.

    Mappings, named tuples, tuples and lists are rebuilt with the same type around the converted
    leaves; ``str`` and ``bytes`` pass through unchanged. Any other leaf is refused with a
    ``TypeError`` that says where in ``x`` it sits.

    >>> apply_to_type({"a": [1, 2], "b": (3,)}, int, lambda v: v * 10)
    {'a': [10, 20], 'b': (30,)}
    """
    if not callable(func):
        raise TypeError(f"apply_to_type: argument func should be callable, got {type(func).__name__}")
    return _apply(x, input_type, func, "x")


def _apply(x: Any, input_type: type | tuple[type, ...], func: Callable[[Any], Any], where: str) -> Any:
    if isinstance(x, input_type):
        return func(x)
    if isinstance(x, (str, bytes)):
        return x
    if isinstance(x, Mapping):
        return type(x)({key: _apply(value, input_type, func, f"{where}[{key!r}]") for key, value in x.items()})
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*(_apply(value, input_type, func, f"{where}.{name}") for name, value in zip(x._fields, x)))
    if isinstance(x, Sequence):
        return type(x)([_apply(value, input_type, func, f"{where}[{i}]") for i, value in enumerate(x)])
    expected = input_type.__name__ if isinstance(input_type, type) else " or ".join(t.__name__ for t in input_type)
    raise TypeError(
        f"{where} has type {type(x).__name__}; expected {expected}, or a mapping, tuple or list of them (str and bytes "
        "pass through)"
    )


def apply_to_tensor(x: Any, func: Callable[[torch.Tensor], Any]) -> Any:
    """Return ``x`` with ``func`` applied to every tensor in it (see :func:`apply_to_type`).

    >>> apply_to_tensor((torch.tensor([1, 2]), "label"), lambda t: t * 2)
    (tensor([2, 4]), 'label')
    """
    return apply_to_type(x, torch.Tensor, func)


def convert_tensor(x: Any, device: str | torch.device | None = None, non_blocking: bool = False) -> Any:
    """Move every tensor in ``x`` to ``device``; with ``device=None`` return ``x`` itself, untouched.

    ``x`` is a tensor, or a mapping, named tuple, tuple or list of them (nested freely; ``str`` and
    ``bytes`` leaves pass through). ``non_blocking=True`` lets a copy from pinned CPU memory to a GPU
    run asynchronously.

    >>> batch = {"image": torch.zeros(2, 3), "label": [torch.tensor(1), "cat"]}
    >>> moved = convert_tensor(batch, device="cpu")
    >>> moved["image"].device, moved["label"][1]
    (device(type='cpu'), 'cat')
    >>> convert_tensor(batch) is batch
    True
    """
    if device is None:
        return x
    if not isinstance(device, (str, torch.device)):
        raise TypeError(
            f"convert_tensor: argument device should be None, a str or a torch.device, got {device!r} "
            f"({type(device).__name__})"
        )
    if isinstance(x, torch.Tensor):
        return x.to(device=device, non_blocking=non_blocking)
    return _apply(x, torch.Tensor, lambda tensor: tensor.to(device=device, non_blocking=non_blocking), "x")
