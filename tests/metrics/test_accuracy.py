"""Accuracy against scikit-learn's accuracy_score for the binary, multiclass and multilabel cases, and its errors."""

import doctest
import io

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


def test_state_dict_resumes_the_counts_exactly():
    generator = torch.Generator().manual_seed(8)
    scores = torch.randn(30, 4, generator=generator)
    y = torch.randint(0, 4, (30,), generator=generator)
    uninterrupted = Accuracy()
    for y_pred_part, y_part in batches(scores, y, size=10):
        uninterrupted.update((y_pred_part, y_part))
    first = Accuracy()
    first.update((scores[:10], y[:10]))
    saved = torch.load(_saved(first.state_dict()), weights_only=True)
    resumed = Accuracy()
    resumed.load_state_dict(saved)
    for y_pred_part, y_part in batches(scores[10:], y[10:], size=10):
        resumed.update((y_pred_part, y_part))
    assert resumed.compute() == uninterrupted.compute()
    assert list(saved["__metric_state_per_rank"][0]) == ["_num_correct", "_num_examples"]


def _saved(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize(
    ("metric", "updates", "error", "message"),
    [
        (Accuracy(), [(torch.randn(4, 3), torch.randint(0, 3, (5,)))], ValueError,
         r"Accuracy: y and y_pred must have compatible shapes\. y_pred has shape \(4, 3\) and y has shape \(5,\); "
         r"expected y of shape \(4,\)"),
        (Accuracy(), [(torch.randn(4, 3, 2), torch.randint(0, 3, (4,)))], ValueError,
         r"Accuracy: y must have shape of \(batch_size, \.\.\.\) and y_pred must have shape of \(batch_size, "
         r"num_categories, \.\.\.\) or \(batch_size, \.\.\.\), but given torch.Size\(\[4\]\) vs "
         r"torch.Size\(\[4, 3, 2\]\)"),
        (Accuracy(), [(torch.tensor([0.2, 0.7]), torch.tensor([0, 1]))], ValueError,
         r"Accuracy: For binary cases, y_pred must be comprised of 0's and 1's\. y_pred of shape \(2,\) holds other "
         r"values \(e\.g\. \[0\.2"),
        (Accuracy(), [(torch.tensor([0, 1]), torch.tensor([0, 2]))], ValueError,
         r"Accuracy: For binary cases, y must be comprised of 0's and 1's\. y of shape \(2,\) holds other values "
         r"\(e\.g\. \[2\]\)"),
        (Accuracy(is_multilabel=True), [(torch.ones(4, 3), torch.ones(4, 2))], ValueError,
         r"Accuracy: y and y_pred must have compatible shapes\. y_pred has shape \(4, 3\) and y has shape \(4, 2\)"),
        (Accuracy(is_multilabel=True), [(torch.ones(4, 1), torch.ones(4, 1))], ValueError,
         r"Accuracy: y and y_pred must have same shape of \(batch_size, num_categories, \.\.\.\) and "
         r"num_categories > 1\. Given multilabel y_pred \(4, 1\) and y \(4, 1\)"),
        (Accuracy(), [(torch.randn(2, 3), torch.tensor([0, 1])), (torch.randn(2, 4), torch.tensor([0, 1]))], ValueError,
         r"Accuracy: Input data number of classes has changed from 3 to 4 \(y_pred \(2, 4\), y \(2,\)\); expected "
         r"the same number until the next reset"),
        (Accuracy(), [(torch.randn(2, 3), torch.tensor([0, 1])), (torch.tensor([1, 0]), torch.tensor([0, 1]))],
         RuntimeError,
         r"Accuracy: Input data type has changed from multiclass to binary \(y_pred \(2,\), y \(2,\)\)"),
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
    with pytest.raises(ValueError, match=r"Accuracy \('val_acc'\): y and y_pred must have compatible shapes\. y_pred has "
                       r"shape \(2, 3\) and y has shape \(3,\)"):
        evaluator.run([(torch.randn(2, 3), torch.tensor([0, 1, 2]))])


def test_constructor_and_compute_errors():
    with pytest.raises(TypeError, match="Argument is_multilabel should be a bool, got 'yes'"):
        Accuracy(is_multilabel="yes")
    with pytest.raises(NotComputableError, match="^Accuracy must have at least one example before it can be computed.$"):
        Accuracy().compute()
