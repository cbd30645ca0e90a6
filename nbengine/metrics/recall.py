"""``Recall``: of the samples of a class, the fraction predicted as that class (``TP / (TP + FN)``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nbengine.metrics.metric import reinit__is_reduced
from nbengine.metrics.precision import PrecisionRecallBase

__all__ = ["Recall"]


class Recall(PrecisionRecallBase):
    """Of the samples that belong to a class, the fraction predicted as it: ``TP / (TP + FN)``.

    Arguments and ``average`` as for :class:`~nbengine.metrics.Precision`.

    >>> recall = Recall(average="macro")
    >>> recall.update((torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]]), torch.tensor([0, 1, 0])))
    >>> recall.compute()
    0.75
    """

    @reinit__is_reduced
    def update(self, output: Sequence[torch.Tensor]) -> None:
        self._check_shape(output)
        self._check_type(output)
        _, y, correct = self._prepare_output(output)
        self._accumulate(y, y, correct)
