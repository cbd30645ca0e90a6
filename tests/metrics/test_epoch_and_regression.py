"""MeanAbsoluteError, RootMeanSquaredError, EpochMetric and AveragePrecision against numpy / scikit-learn."""

import doctest
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, mean_absolute_error, roc_auc_score

import nbengine.metrics.average_precision
import nbengine.metrics.epoch_metric
import nbengine.metrics.mean_absolute_error
import nbengine.metrics.root_mean_squared_error
from nbengine.engine import Engine
from nbengine.metrics import AveragePrecision, EpochMetric, MeanAbsoluteError, NotComputableError, RootMeanSquaredError
from nbengine.metrics.epoch_metric import EpochMetricWarning

MODULES = [
    nbengine.metrics.average_precision,
    nbengine.metrics.epoch_metric,
    nbengine.metrics.mean_absolute_error,
    nbengine.metrics.root_mean_squared_error,
]


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__)
def test_doctests(module):
    result = doctest.testmod(module, extraglobs={"torch": torch, "math": math})
    assert result.attempted > 0 and result.failed == 0


def evaluate(metric, y_pred, y, batch=16):
    engine = Engine(lambda engine, batch: batch)
    metric.attach(engine, "m")
    return engine.run([(y_pred[i : i + batch], y[i : i + batch]) for i in range(0, len(y), batch)]).metrics["m"]


def test_mae_and_rmse_match_numpy():
    generator = torch.Generator().manual_seed(0)
    y_pred, y = torch.randn(70, generator=generator), torch.randn(70, generator=generator)
    assert evaluate(MeanAbsoluteError(), y_pred, y) == pytest.approx(mean_absolute_error(y.double(), y_pred.double()), rel=1e-12)
    expected_rmse = math.sqrt(float(((y_pred.double() - y.double()) ** 2).mean()))
    assert evaluate(RootMeanSquaredError(), y_pred, y) == pytest.approx(expected_rmse, rel=1e-12)


def test_mae_sums_the_components_of_vector_samples_as_ignite():
    y_pred, y = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    mae = MeanAbsoluteError()
    mae.update((y_pred, y))
    assert mae.compute() == (3.0 + 2.0) / 2


@pytest.mark.parametrize("shape", [(40,), (40, 1)])
def test_average_precision_matches_sklearn(shape):
    generator = torch.Generator().manual_seed(1)
    scores = torch.rand(shape, generator=generator)
    targets = torch.randint(0, 2, shape, generator=generator)
    value = evaluate(AveragePrecision(), scores, targets, batch=7)
    assert value == average_precision_score(targets.reshape(-1).numpy(), scores.reshape(-1).numpy())


def test_average_precision_multilabel_matches_sklearn():
    generator = torch.Generator().manual_seed(2)
    scores = torch.rand(50, 3, generator=generator)
    targets = torch.randint(0, 2, (50, 3), generator=generator)
    assert evaluate(AveragePrecision(), scores, targets) == average_precision_score(targets.numpy(), scores.numpy())


def test_epoch_metric_sees_the_whole_epoch_and_caches_its_result():
    calls = []

    def auc(y_pred, y):
        calls.append(len(y))
        return roc_auc_score(y.numpy(), y_pred.numpy())

    generator = torch.Generator().manual_seed(3)
    scores, targets = torch.rand(45, generator=generator), torch.randint(0, 2, (45,), generator=generator)
    metric = EpochMetric(auc, check_compute_fn=False)
    assert evaluate(metric, scores, targets, batch=10) == roc_auc_score(targets.numpy(), scores.numpy())
    assert calls == [45]
    metric.compute()
    assert calls == [45]  # cached until the next update or reset
    metric.update((scores[:5], targets[:5]))
    metric.compute()
    assert calls == [45, 50]


def test_epoch_metric_warns_when_compute_fn_fails_on_the_first_batch():
    def needs_both_classes(y_pred, y):
        if len(set(y.tolist())) < 2:
            raise ValueError("only one class present")
        return 0.0

    metric = EpochMetric(needs_both_classes)
    with pytest.warns(EpochMetricWarning, match=r"Probably, there can be a problem with `compute_fn`:\n only one class"):
        metric.update((torch.tensor([0.2, 0.7]), torch.tensor([1, 1])))
    with pytest.raises(ValueError, match="only one class present"):
        metric.compute()


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: EpochMetric("auc"), TypeError, "Argument compute_fn should be callable, got 'auc'"),
        (lambda: EpochMetric(max).update((torch.zeros(2, 2, 2), torch.zeros(2))), ValueError,
         r"Predictions should be of shape \(batch_size, n_targets\) or \(batch_size, \), got \(2, 2, 2\)"),
        (lambda: EpochMetric(max).update((torch.zeros(2), torch.zeros(2, 2, 1))), ValueError,
         r"Targets should be of shape \(batch_size, n_targets\) or \(batch_size, \), got \(2, 2, 1\)"),
        (lambda: _fed(EpochMetric(max, check_compute_fn=False), torch.zeros(2), torch.zeros(2, dtype=torch.long)),
         ValueError, "Incoherent types between input y and stored targets: torch.float32 vs torch.int64"),
        (lambda: AveragePrecision().compute(), NotComputableError,
         "AveragePrecision must have at least one example before it can be computed."),
        (lambda: MeanAbsoluteError().update((torch.zeros(3), torch.zeros(2))), ValueError,
         r"MeanAbsoluteError: y_pred has shape \(3,\) and y has shape \(2,\); expected both of shape \(N, \.\.\.\)"),
        (lambda: MeanAbsoluteError().compute(), NotComputableError,
         "MeanAbsoluteError must have at least one example before it can be computed."),
        (lambda: RootMeanSquaredError().compute(), NotComputableError,
         "RootMeanSquaredError must have at least one example before it can be computed."),
    ],
)
def test_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def _fed(metric, y_pred, y):
    metric.update((y_pred, torch.zeros_like(y_pred)))
    metric.update((y_pred, y))
