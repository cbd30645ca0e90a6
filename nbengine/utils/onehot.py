"""``to_onehot``: class indices to one-hot indicators, as ignite's metrics expect them."""

from __future__ import annotations

import torch

__all__ = ["to_onehot"]


def to_onehot(indices: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Turn indices of shape ``(N, ...)`` into uint8 one-hot indicators of shape
    ``(N, num_classes, ...)`` on the same device.

    >>> to_onehot(torch.tensor([0, 2]), 3).tolist()
    [[1, 0, 0], [0, 0, 1]]
    """
    # A list, not a tuple: the function stays compilable by torch.jit.script, as ignite's is.
    shape = list(indices.shape)
    shape.insert(1, num_classes)
    onehot = torch.zeros(shape, dtype=torch.uint8, device=indices.device)
    return onehot.scatter_(1, indices.unsqueeze(1), 1)
