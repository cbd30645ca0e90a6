"""``Fbeta``: the weighted harmonic mean of precision and recall, built from Precision and Recall metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from nbengine.metrics.metrics_lambda import MetricsLambda
from nbengine.metrics.precision import Precision
from nbengine.metrics.recall import Recall

__all__ = ["Fbeta"]


def _identity(output: Any) -> Any:
    return output


def _check_given_metric(role: str, output_transform: Any, device: Any) -> None:
    if output_transform is not None:
        raise ValueError(f"If {role} argument is provided, output_transform should be None")
    if device is not None:
        raise ValueError(f"If {role} argument is provided, device should be None")


def Fbeta(  # noqa: N802 - ignite's name
    beta: float,
    average: bool = True,
    precision: Precision | None = None,
    recall: Recall | None = None,
    output_transform: Callable[[Any], Any] | None = None,
    device: str | torch.device | None = None,
) -> MetricsLambda:
    """``(1 + beta^2) * P * R / (beta^2 * P + R)`` per class, averaged over classes when ``average``.

    Args:
        beta: weight of recall (``beta > 0``; 1 gives F1).
        average: the mean over classes (a float) if True, else one value per class.
        precision, recall: existing ``Precision``/``Recall`` metrics with ``average=False`` to reuse; by
            default new ones are made with ``output_transform`` and ``device``.

    >>> f1 = Fbeta(1.0)
    >>> f1.update((torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]]), torch.tensor([0, 1, 0])))
    >>> round(f1.compute(), 6)
    0.666667
    """
    if not beta > 0:
        raise ValueError(f"Beta should be a positive integer, but given {beta}")
    if precision is not None:
        _check_given_metric("precision", output_transform, device)
    if recall is not None:
        _check_given_metric("recall", output_transform, device)
    transform = _identity if output_transform is None else output_transform
    if precision is None:
        precision_device = recall._device if recall is not None else (device or torch.device("cpu"))
        precision = Precision(output_transform=transform, average=False, device=precision_device)
    elif precision._average:
        raise ValueError("Input precision metric should have average=False")
    if recall is None:
        recall = Recall(output_transform=transform, average=False, device=precision._device)
    elif recall._average:
        raise ValueError("Input recall metric should have average=False")
    fbeta = (1.0 + beta**2) * precision * recall / (beta**2 * precision + recall + 1e-15)
    if average:
        fbeta = fbeta.mean().item()
    return fbeta
