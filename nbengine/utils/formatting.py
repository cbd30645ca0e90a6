"""``to_str_list``: nested results (dicts, lists, numbers, tensors) as short lines for logs and progress bars.

ignite calls it ``ignite.utils._to_str_list``; ``nbengine.utils`` exports it under that name too.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch

__all__ = ["to_str_list"]

_SHOWN_ELEMENTS = 10


def _format_value(value: Any) -> str | None:
    """One number or tensor as text (4 decimals; long vectors cut after 10 elements; matrices as their shape)."""
    if isinstance(value, numbers.Number):
        return f"{value:.4f}"
    if isinstance(value, torch.Tensor):
        if value.ndim == 0:
            return f"{value.item():.4f}"
        if value.ndim == 1:
            shown = ", ".join(f"{element.item():.4f}" for element in value[:_SHOWN_ELEMENTS])
            return f"[{shown}, ...]" if value.shape[0] > _SHOWN_ELEMENTS else f"[{shown}]"
        return f"Shape{list(value.shape)}"
    return None


def to_str_list(data: Any) -> list[str]:
    """Flatten ``data`` into lines: ``"key: value"`` per mapping item, a sequence's values joined by ``", "``.

    >>> to_str_list({"loss": 0.25, "acc": torch.tensor([1.0, 0.5]), "skipped": None})
    ['loss: 0.2500', 'acc: [1.0000, 0.5000]', 'skipped: ']
    """
    if isinstance(data, numbers.Number):
        return [f"{data:.4f}"]
    lines: list[str] = []
    _collect(data, "", lines)
    return lines


def _collect(item: Any, prefix: str, lines: list[str]) -> str | None:
    """Append the lines of ``item`` to ``lines``; return the text of a plain value instead of appending it."""
    text = _format_value(item)
    if text is not None:
        return prefix + text
    if isinstance(item, dict):
        for key, value in item.items():
            value_text = _collect(value, f"{key}: ", lines)
            if value_text is not None:
                lines.append(value_text)
    elif isinstance(item, (list, tuple)):
        values = [value_text for value in item if (value_text := _collect(value, "", lines)) is not None]
        if values:
            lines.append(prefix + ", ".join(values))
        elif not item and prefix:
            lines.append(prefix)
    elif item is None and prefix:
        lines.append(prefix)
    return None
