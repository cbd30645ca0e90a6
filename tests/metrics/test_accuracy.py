"""Accuracy against scikit-learn's accuracy_score for the binary, multiclass and multilabel cases, and its errors."""

import doctest

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score

import nbengine.metrics.accuracy
from nbengine.engine import Engine
from nbengine.metrics import Accuracy, NotComputableError


def batches(*tensors, size):
    return [tuple(t[i : i + size] for t in tensors) for i in range(0, len(tensors[0]), size)]


def feed(metric, pairs):
    metric.reset()
    for pair in pairs:
        metric.update(pair)
    return metric.compute()


def test_doctest():
    assert doctest.testmod(nbengine.metrics.accuracy).failed == 0


@pytest.mark.parametrize("y_pred_shape", ["same", "with_class_axis"])
def test_binary_matches_sklearn(y_pred_shape):
    generator = torch.Generator().manual_seed(1)
    y = torch.randint(0, 2, (103,), generator=generator)
    y_pred = torch.randint(0, 2, (103,), generator=generator)
    fed = y_pred if y_pred_shape == "same" else y_pred.unsqueeze(1)
    value = feed(Accuracy(), batches(fed, y, size=16))
    assert value == accuracy_score(y.numpy(), y_pred.numpy())


def test_binary_with_extra_dimensions_counts_every_element():
    generator = torch.Generator().manual_seed(2)
    y = torch.randint(0, 2, (20, 5, 3), generator=generator)
    y_pred = torch.randint(0, 2, (20, 5, 3), generator=generator)
    value = feed(Accuracy(), batches(y_pred, y, size=7))
    assert value == accuracy_score(y.reshape(-1).numpy(), y_pred.reshape(-1).numpy())


def test_multiclass_matches_sklearn():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(150, 7, generator=generator)
    y = torch.randint(0, 7, (150,), generator=generator)
    value = feed(Accuracy(), batches(logits, y, size=32))
    assert value == accuracy_score(y.numpy(), logits.argmax(dim=1).numpy())


def test_multiclass_with_extra_dimensions_matches_a_direct_count():
    generator = torch.Generator().manual_seed(4)
    scores = torch.randn(12, 4, 5, 6, generator=generator)  # (N, C, H, W), e.g. segmentation
    y = torch.randint(0, 4, (12, 5, 6), generator=generator)
    value = feed(Accuracy(), batches(scores, y, size=5))
    predicted = scores.numpy().argmax(axis=1)
    assert value == float(np.mean(predicted == y.numpy()))


def test_multilabel_is_subset_accuracy_as_in_sklearn():
    generator = torch.Generator().manual_seed(5)
    y = torch.randint(0, 2, (90, 4), generator=generator)
    y_pred = y.clone()
    flip = torch.rand(90, 4, generator=generator) < 0.1
    y_pred[flip] = 1 - y_pred[flip]
    value = feed(Accuracy(is_multilabel=True), batches(y_pred, y, size=25))
    assert value == accuracy_score(y.numpy(), y_pred.numpy())
    assert 0 < value < 1


def test_multilabel_with_extra_dimensions_counts_each_position_as_a_sample():
    generator = torch.Generator().manual_seed(6)
    y = torch.randint(0, 2, (10, 3, 4), generator=generator)  # (N, C, L)
    y_pred = torch.randint(0, 2, (10, 3, 4), generator=generator)
    value = feed(Accuracy(is_multilabel=True), batches(y_pred, y, size=4))
    rows_y = y.permute(0, 2, 1).reshape(-1, 3).numpy()
    rows_pred = y_pred.permute(0, 2, 1).reshape(-1, 3).numpy()
    assert value == accuracy_score(rows_y, rows_pred)


def test_on_an_evaluator_engine():
    generator = torch.Generator().manual_seed(7)
    logits = torch.randn(64, 3, generator=generator)
    y = torch.randint(0, 3, (64,), generator=generator)
    evaluator = Engine(lambda engine, batch: batch)
    Accuracy().attach(evaluator, "accuracy")
    state = evaluator.run(batches(logits, y, size=10))
    assert state.metrics["accuracy"] == accuracy_score(y.numpy(), logits.argmax(1).numpy())


def test_state_dict_keeps_the_case():
    accuracy = Accuracy()
    accuracy.update((torch.tensor([[0.1, 0.9]]), torch.tensor([1])))
    restored = Accuracy()
    restored.load_state_dict(accuracy.state_dict())
    with pytest.raises(ValueError, match=r"this update is binary \(y_pred \(1,\), y \(1,\)\), but earlier updates since the last reset were multiclass with 2 classes"):
        restored.update((torch.tensor([1]), torch.tensor([1])))
    restored.update((torch.tensor([[0.8, 0.2]]), torch.tensor([1])))
    assert restored.compute() == 0.5


@pytest.mark.parametrize(
    ("metric", "updates", "error", "message"),
    [
        (Accuracy(), [(torch.randn(4, 3), torch.randint(0, 3, (5,)))], ValueError,
         r"Accuracy: y_pred has shape \(4, 3\) and y has shape \(5,\); expected y_pred of shape \(N, C, \.\.\.\) and y "
         r"of shape \(N, \.\.\.\) with the same N and trailing dimensions, i\.e\. y of shape \(4,\)"),
        (Accuracy(), [(torch.randn(4, 3, 2), torch.randint(0, 3, (4,)))], ValueError,
         r"Accuracy: y_pred has shape \(4, 3, 2\) and y has shape \(4,\); expected y_pred \(N, C, \.\.\.\) with y "
         r"\(N, \.\.\.\) for multiclass, or both of the same shape"),
        (Accuracy(), [(torch.randn(4, 3), torch.tensor([0.0, 1.0, 2.0, 1.0]))], TypeError,
         r"Accuracy: multiclass y has dtype torch.float32; expected integer class indices"),
        (Accuracy(), [(torch.randn(4, 3), torch.tensor([0, 1, 3, -1]))], ValueError,
         r"Accuracy: multiclass y holds class indices from -1 to 3; expected indices in \[0, 2\] for y_pred of shape "
         r"\(4, 3\) \(3 classes\)"),
        (Accuracy(), [(torch.tensor([0.2, 0.7]), torch.tensor([0, 1]))], ValueError,
         r"Accuracy: binary y_pred of shape \(2,\) holds values other than 0 and 1 \(e\.g\. \[0\.2"),
        (Accuracy(), [(torch.tensor([0, 1]), torch.tensor([0, 2]))], ValueError,
         r"Accuracy: binary y of shape \(2,\) holds values other than 0 and 1 \(e\.g\. \[2\]\)"),
        (Accuracy(is_multilabel=True), [(torch.ones(4, 3), torch.ones(4, 2))], ValueError,
         r"Accuracy: multilabel y_pred has shape \(4, 3\) and y has shape \(4, 2\); expected both of the same shape "
         r"\(N, C, \.\.\.\) with C > 1"),
        (Accuracy(), [(torch.randn(2, 3), torch.tensor([0, 1])), (torch.randn(2, 4), torch.tensor([0, 1]))], ValueError,
         r"Accuracy: this update is multiclass with 4 classes \(y_pred \(2, 4\), y \(2,\)\), but earlier updates since "
         r"the last reset were multiclass with 3 classes"),
        (Accuracy(), [[torch.ones(2)]], TypeError,
         r"Accuracy: update takes \(y_pred, y\), a pair of tensors; got a list of 1 items"),
        (Accuracy(), [(torch.ones(2), [1, 0])], TypeError, r"Accuracy: y should be a torch.Tensor, got a list of 2 items"),
    ],
)
def test_bad_inputs_are_refused_naming_the_metric_and_shapes(metric, updates, error, message):
    metric.reset()
    with pytest.raises(error, match=message):
        for update in updates:
            metric.update(update)


def test_errors_name_the_attached_metric():
    evaluator = Engine(lambda engine, batch: batch)
    Accuracy().attach(evaluator, "val_acc")
    with pytest.raises(ValueError, match=r"Accuracy \('val_acc'\): y_pred has shape \(2, 3\) and y has shape \(3,\)"):
        evaluator.run([(torch.randn(2, 3), torch.tensor([0, 1, 2]))])


def test_constructor_and_compute_errors():
    with pytest.raises(TypeError, match="Accuracy: argument is_multilabel should be a bool, got 'yes'"):
        Accuracy(is_multilabel="yes")
    with pytest.raises(NotComputableError, match="Accuracy: needs at least one example"):
        Accuracy().compute()
