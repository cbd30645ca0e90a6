"""``EpochMetric``: keep every prediction and target of the epoch, then apply a function to all of them.

For measures that do not decompose over batches (ROC AUC, average precision, ...). The kept tensors
are the metric's state (``_predictions``, ``_targets``), so a checkpoint taken mid-epoch resumes with
them; the result is cached until the next update or reset.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from nbengine._checks import check_callable
from nbengine.exceptions import NotComputableError
from nbengine.metrics.metric import Metric, _identity, reinit__is_reduced, unpack_prediction_pair

__all__ = ["EpochMetric", "EpochMetricWarning"]


class EpochMetricWarning(UserWarning):
    """Warned when ``compute_fn`` fails on the first batch (it will probably fail on the epoch too)."""


class EpochMetric(Metric):
    """``compute()`` is ``compute_fn(all predictions, all targets)`` over everything since the last reset.

    Args:
        compute_fn: takes the concatenated ``y_pred`` and ``y`` tensors, returns the value.
        output_transform: see :class:`~nbengine.metrics.Metric`; ``update`` takes ``y_pred`` and ``y`` of
            shape ``(N,)`` or ``(N, T)`` (``(N, 1)`` is kept as ``(N,)``).
        check_compute_fn: try ``compute_fn`` on the first batch and warn (``EpochMetricWarning``) if it fails.
        device, skip_unrolling: as for :class:`~nbengine.metrics.Metric`.

    >>> largest_error = EpochMetric(lambda y_pred, y: (y_pred - y).abs().max().item())
    >>> largest_error.update((torch.tensor([1.0, 2.0]), torch.tensor([1.5, 2.0])))
    >>> largest_error.update((torch.tensor([0.0]), torch.tensor([2.0])))
    >>> largest_error.compute()
    2.0
    """

    _state_dict_all_req_keys = ("_predictions", "_targets")

    def __init__(
        self,
        compute_fn: Callable[[torch.Tensor, torch.Tensor], Any],
        output_transform: Callable[[Any], Any] = _identity,
        check_compute_fn: bool = True,
        device: str | torch.device = torch.device("cpu"),
        skip_unrolling: bool = False,
    ) -> None:
        self.compute_fn = check_callable("Argument compute_fn", compute_fn, prefix=type(self).__name__)
        self._check_compute_fn = check_compute_fn
        super().__init__(output_transform=output_transform, device=device, skip_unrolling=skip_unrolling)

    @reinit__is_reduced
    def reset(self) -> None:
        self._predictions: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []
        self._result: Any = None

    def _check_shape(self, output: tuple[torch.Tensor, torch.Tensor]) -> None:
        y_pred, y = output
        if y_pred.ndim not in (1, 2):
            raise ValueError(
                f"Predictions should be of shape (batch_size, n_targets) or (batch_size, ), got {tuple(y_pred.shape)}"
            )
        if y.ndim not in (1, 2):
            raise ValueError(f"Targets should be of shape (batch_size, n_targets) or (batch_size, ), got {tuple(y.shape)}")

    def _check_type(self, y_pred: torch.Tensor, y: torch.Tensor) -> None:
        if not self._predictions:
            return
        stored_pred, stored_target = self._predictions[-1].dtype, self._targets[-1].dtype
        if stored_pred != y_pred.dtype:
            raise ValueError(
                f"Incoherent types between input y_pred and stored predictions: {stored_pred} vs {y_pred.dtype}"
            )
        if stored_target != y.dtype:
            raise ValueError(f"Incoherent types between input y and stored targets: {stored_target} vs {y.dtype}")

    @reinit__is_reduced
    def update(self, output: Any) -> None:
        y_pred, y = unpack_prediction_pair(self, output)
        self._check_shape((y_pred, y))
        if y_pred.ndim == 2 and y_pred.shape[1] == 1:
            y_pred = y_pred.squeeze(dim=-1)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.squeeze(dim=-1)
        y_pred = y_pred.clone().to(self._device)
        y = y.clone().to(self._device)
        self._check_type(y_pred, y)
        self._predictions.append(y_pred)
        self._targets.append(y)
        if len(self._predictions) == 1 and self._check_compute_fn:
            self._try_compute_fn()

    def _try_compute_fn(self) -> None:
        # compute_fn is the user's (often scikit-learn's): any failure on one batch only warns here, and
        # the same failure surfaces, raised, from compute().
        try:
            self.compute_fn(self._predictions[0], self._targets[0])
        except Exception as error:  # noqa: BLE001 - a warning, by design; compute() raises it for real
            warnings.warn(f"Probably, there can be a problem with `compute_fn`:\n {error}.", EpochMetricWarning, stacklevel=4)

    def compute(self) -> Any:
        if not self._predictions or not self._targets:
            raise NotComputableError(f"{type(self).__name__} must have at least one example before it can be computed.")
        if self._result is None:
            predictions = torch.cat(self._predictions, dim=0)
            targets = torch.cat(self._targets, dim=0)
            self._result = self._compute_over_processes(predictions, targets)
        return self._result

    def _compute_over_processes(self, predictions: torch.Tensor, targets: torch.Tensor) -> Any:
        import nbengine.distributed as idist

        world_size = idist.get_world_size()
        if world_size <= 1:
            return self.compute_fn(predictions, targets)
        predictions = idist.all_gather(predictions)
        targets = idist.all_gather(targets)
        result = self.compute_fn(predictions, targets) if idist.get_rank() == 0 else 0.0
        return idist.broadcast(result, src=0)
