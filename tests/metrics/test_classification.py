"""Precision, Recall, Fbeta, ConfusionMatrix (IoU, mIoU, Dice, cm*) and TopKCategoricalAccuracy against scikit-learn."""

import doctest
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix, fbeta_score, jaccard_score, precision_score, recall_score, top_k_accuracy_score

import nbengine.metrics.confusion_matrix
import nbengine.metrics.fbeta
import nbengine.metrics.precision
import nbengine.metrics.recall
import nbengine.metrics.top_k_categorical_accuracy
from nbengine.engine import Engine
from nbengine.metrics import (
    ConfusionMatrix,
    DiceCoefficient,
    Fbeta,
    IoU,
    NotComputableError,
    Precision,
    Recall,
    TopKCategoricalAccuracy,
    cmAccuracy,
    cmPrecision,
    cmRecall,
    mIoU,
)

MODULES = [
    nbengine.metrics.confusion_matrix,
    nbengine.metrics.fbeta,
    nbengine.metrics.precision,
    nbengine.metrics.recall,
    nbengine.metrics.top_k_categorical_accuracy,
]


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__)
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def multiclass_data(seed, n=120, classes=5):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, classes, generator=generator), torch.randint(0, classes, (n,), generator=generator)


def evaluate(metrics, y_pred, y, batch=25):
    engine = Engine(lambda engine, batch: batch)
    for name, metric in metrics.items():
        metric.attach(engine, name)
    data = [(y_pred[i : i + batch], y[i : i + batch]) for i in range(0, len(y), batch)]
    return engine.run(data).metrics


@pytest.mark.parametrize("average", [False, None, "macro", "micro", "weighted"])
def test_multiclass_precision_and_recall_match_sklearn(average):
    scores, y = multiclass_data(1)
    metrics = evaluate({"p": Precision(average=average), "r": Recall(average=average)}, scores, y)
    predicted = scores.argmax(1).numpy()
    sk_average = None if average in (False, None) else average
    expected_p = precision_score(y.numpy(), predicted, average=sk_average, zero_division=0)
    expected_r = recall_score(y.numpy(), predicted, average=sk_average, zero_division=0)
    np.testing.assert_allclose(np.asarray(metrics["p"]), expected_p, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(metrics["r"]), expected_r, rtol=1e-12)


@pytest.mark.parametrize("average", [False, "macro", "micro", "weighted"])
def test_binary_precision_and_recall_match_sklearn(average):
    generator = torch.Generator().manual_seed(2)
    y_pred = torch.randint(0, 2, (90,), generator=generator)
    y = torch.randint(0, 2, (90,), generator=generator)
    metrics = evaluate({"p": Precision(average=average), "r": Recall(average=average)}, y_pred, y)
    sk_average = "binary" if average is False else average
    assert metrics["p"] == pytest.approx(precision_score(y.numpy(), y_pred.numpy(), average=sk_average), rel=1e-12)
    assert metrics["r"] == pytest.approx(recall_score(y.numpy(), y_pred.numpy(), average=sk_average), rel=1e-12)


@pytest.mark.parametrize("average", ["samples", "macro", "micro"])
def test_multilabel_precision_and_recall_match_sklearn(average):
    generator = torch.Generator().manual_seed(3)
    y_pred = torch.randint(0, 2, (60, 4), generator=generator)
    y = torch.randint(0, 2, (60, 4), generator=generator)
    metrics = evaluate(
        {"p": Precision(average=average, is_multilabel=True), "r": Recall(average=average, is_multilabel=True)}, y_pred, y
    )
    assert metrics["p"] == pytest.approx(precision_score(y.numpy(), y_pred.numpy(), average=average, zero_division=0))
    assert metrics["r"] == pytest.approx(recall_score(y.numpy(), y_pred.numpy(), average=average, zero_division=0))


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_fbeta_matches_sklearn_and_reuses_given_metrics(beta):
    scores, y = multiclass_data(4)
    precision, recall = Precision(average=False), Recall(average=False)
    metrics = evaluate(
        {"f": Fbeta(beta), "f_per_class": Fbeta(beta, average=False), "shared": Fbeta(beta, precision=precision, recall=recall)},
        scores,
        y,
    )
    predicted = scores.argmax(1).numpy()
    assert metrics["f"] == pytest.approx(fbeta_score(y.numpy(), predicted, beta=beta, average="macro"), rel=1e-9)
    np.testing.assert_allclose(metrics["f_per_class"].numpy(), fbeta_score(y.numpy(), predicted, beta=beta, average=None))
    assert metrics["shared"] == metrics["f"]


def test_confusion_matrix_and_its_measures_match_sklearn():
    scores, y = multiclass_data(5, classes=4)
    y[::17] = 255  # an ignore label: outside [0, C), not counted
    cm = ConfusionMatrix(num_classes=4)
    metrics = evaluate(
        {
            "cm": cm,
            "iou": IoU(cm),
            "miou_without_0": mIoU(cm, ignore_index=0),
            "dice": DiceCoefficient(cm),
            "accuracy": cmAccuracy(cm),
            "precision": cmPrecision(cm, average=False),
            "recall": cmRecall(cm),
        },
        scores,
        y,
    )
    kept = y != 255
    truth, predicted = y[kept].numpy(), scores.argmax(1)[kept].numpy()
    expected = confusion_matrix(truth, predicted, labels=range(4))
    assert metrics["cm"].tolist() == expected.tolist()
    iou = jaccard_score(truth, predicted, average=None)
    np.testing.assert_allclose(metrics["iou"].numpy(), iou, rtol=1e-12)
    assert metrics["miou_without_0"] == pytest.approx(iou[1:].mean(), rel=1e-12)
    np.testing.assert_allclose(metrics["dice"].numpy(), 2 * iou / (1 + iou), rtol=1e-12)
    assert metrics["accuracy"] == pytest.approx((truth == predicted).mean(), rel=1e-12)
    np.testing.assert_allclose(metrics["precision"].numpy(), precision_score(truth, predicted, average=None), rtol=1e-12)
    assert metrics["recall"] == pytest.approx(recall_score(truth, predicted, average="macro"), rel=1e-12)
    assert not cm.is_attached(Engine(lambda e, b: b))


@pytest.mark.parametrize("average", ["samples", "recall", "precision"])
def test_confusion_matrix_normalised(average):
    scores, y = multiclass_data(6, classes=3)
    matrix = evaluate({"cm": ConfusionMatrix(3, average=average)}, scores, y)["cm"]
    counts = torch.tensor(confusion_matrix(y.numpy(), scores.argmax(1).numpy()), dtype=torch.float32)
    expected = {
        "samples": counts / len(y),
        "recall": counts / (counts.sum(dim=1, keepdim=True) + 1e-15),
        "precision": counts / (counts.sum(dim=0) + 1e-15),
    }[average]
    torch.testing.assert_close(matrix, expected)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_matches_sklearn(k):
    scores, y = multiclass_data(7, classes=5)
    value = evaluate({"top": TopKCategoricalAccuracy(k=k)}, scores, y)["top"]
    assert value == pytest.approx(top_k_accuracy_score(y.numpy(), scores.numpy(), k=k, labels=range(5)), rel=1e-12)


def test_precision_warns_like_ignite_on_dtypes():
    with pytest.warns(RuntimeWarning, match="`y` should be of dtype long when entry type is multiclass"):
        Precision().update((torch.randn(3, 3), torch.tensor([0.0, 1.0, 2.0])))
    with pytest.warns(RuntimeWarning, match="`y` and `y_pred` should be of dtype long when entry type is binary"):
        Recall(average="macro").update((torch.tensor([0.0, 1.0]), torch.tensor([0, 1])))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Precision().update((torch.tensor([0.0, 1.0]), torch.tensor([0, 1])))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: Precision(average="mean"), ValueError,
         "Argument average should be None or a boolean or one of values 'macro', 'micro', 'weighted' and 'samples'. "
         "Got 'mean'"),
        (lambda: Recall(average="samples").update((torch.randn(2, 3), torch.tensor([0, 1]))), ValueError,
         r"Argument average='samples' is incompatible with binary and multiclass input data\."),
        (lambda: Precision().update((torch.randn(2, 3), torch.tensor([0, 5]))), ValueError,
         r"y_pred contains fewer classes than y\. Number of classes in the prediction is 3 and an element in y has "
         r"invalid class = 6\."),
        (lambda: Recall().compute(), NotComputableError, "^Recall must have at least one example before it can be computed"),
        (lambda: Fbeta(0), ValueError, "Beta should be a positive integer, but given 0"),
        (lambda: Fbeta(1, precision=Precision(average=True)), ValueError, "Input precision metric should have average=False"),
        (lambda: Fbeta(1, recall=Recall(), device="cpu"), ValueError, "If recall argument is provided, device should be None"),
        (lambda: ConfusionMatrix(1), ValueError, "Argument num_classes needs to be > 1, got 1"),
        (lambda: ConfusionMatrix(3, average="all"), ValueError, "Argument average can None or one of 'samples', 'recall', "
         "'precision', got 'all'"),
        (lambda: ConfusionMatrix(3).update((torch.randn(2, 4), torch.tensor([0, 1]))), ValueError,
         "y_pred does not have correct number of classes: 4 vs 3"),
        (lambda: ConfusionMatrix(3).update((torch.randn(2, 3), torch.tensor([[0], [1]]))), ValueError,
         r"y_pred must have shape \(batch_size, num_classes \(currently set to 3\), \.\.\.\) and y must have shape of "
         r"\(batch_size, \.\.\.\), but given torch.Size\(\[2, 1\]\) vs torch.Size\(\[2, 3\]\)\."),
        (lambda: ConfusionMatrix(3).compute(), NotComputableError,
         "Confusion matrix must have at least one example before it can be computed."),
        (lambda: IoU("cm"), TypeError, "Argument cm should be instance of ConfusionMatrix, but given <class 'str'>"),
        (lambda: IoU(ConfusionMatrix(3), ignore_index=3), ValueError,
         r"ignore_index should be integer and in the range of \[0, 3\), but given 3"),
        (lambda: IoU(ConfusionMatrix(3, average="recall")), ValueError,
         "ConfusionMatrix should have average attribute either None or 'samples', got 'recall'"),
        (lambda: TopKCategoricalAccuracy(k=0), ValueError, "Argument k should be a positive int, got 0"),
        (lambda: TopKCategoricalAccuracy(k=3).update((torch.randn(4, 2), torch.tensor([0, 1, 0, 1]))), ValueError,
         r"y_pred should have shape \(N, C\) with C >= k = 3, got \(4, 2\)"),
        (lambda: TopKCategoricalAccuracy().compute(), NotComputableError,
         "TopKCategoricalAccuracy must have at least one example before it can be computed."),
    ],
)
def test_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()
