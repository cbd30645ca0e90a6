"""``AveragePrecision``: scikit-learn's ``average_precision_score`` over an epoch's predictions.

scikit-learn is imported when the metric is created, never by ``import nbengine.metrics``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from nbengine.metrics.epoch_metric import EpochMetric
from nbengine.metrics.metric import _identity

__all__ = ["AveragePrecision"]


def average_precision_compute_fn(y_preds: torch.Tensor, y_targets: torch.Tensor) -> float:
    """``sklearn.metrics.average_precision_score(y_targets, y_preds)`` on CPU numpy copies."""
    from sklearn.metrics import average_precision_score

    return average_precision_score(y_targets.cpu().numpy(), y_preds.cpu().numpy())


class AveragePrecision(EpochMetric):
    """Average precision (area under the precision-recall curve) of binary or multilabel scores.

    ``update`` takes ``y_pred`` (scores or probabilities) and ``y`` (0/1 targets) of shape ``(N,)`` or
    ``(N, C)`` for multilabel (averaged over labels, ``average="macro"`` in scikit-learn).

    >>> ap = AveragePrecision()
    >>> ap.update((torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])))
    >>> round(ap.compute(), 6)
    0.833333
    """

    def __init__(
        self,
        output_transform: Callable[[Any], Any] = _identity,
        check_compute_fn: bool = False,
        device: str | torch.device = torch.device("cpu"),
        skip_unrolling: bool = False,
    ) -> None:
        try:
            import sklearn.metrics  # noqa: F401 - fail here, not at the end of the first epoch
        except ImportError as error:
            raise ModuleNotFoundError(
                "This contrib module requires scikit-learn to be installed (pip install scikit-learn)."
            ) from error
        super().__init__(
            average_precision_compute_fn,
            output_transform=output_transform,
            check_compute_fn=check_compute_fn,
            device=device,
            skip_unrolling=skip_unrolling,
        )
