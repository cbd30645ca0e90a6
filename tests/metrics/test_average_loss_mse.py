"""Average, Loss and MeanSquaredError against direct numpy / torch / scikit-learn computations."""

import doctest

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss, mean_squared_error

import nbengine.metrics.accumulation
import nbengine.metrics.loss
import nbengine.metrics.mean_squared_error
from nbengine.engine import Engine
from nbengine.metrics import Average, Loss, MeanSquaredError, NotComputableError


@pytest.mark.parametrize("module", [nbengine.metrics.accumulation, nbengine.metrics.loss, nbengine.metrics.mean_squared_error])
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


# Average


def test_average_of_numbers_matches_numpy():
    values = [0.5, 2.25, -1.0, 7.0, 3.125]
    average = Average()
    for value in values:
        average.update(value)
    assert average.compute().item() == pytest.approx(np.mean(values), abs=0, rel=1e-15)


def test_average_of_batches_counts_rows_and_is_element_wise():
    generator = torch.Generator().manual_seed(0)
    data = torch.randn(50, 3, generator=generator, dtype=torch.float64)
    average = Average()
    for start in range(0, 50, 8):
        average.update(data[start : start + 8])
    np.testing.assert_allclose(average.compute().numpy(), data.numpy().mean(axis=0), rtol=1e-13, atol=1e-15)
    assert average.num_examples == 50


def test_average_counts_a_1d_tensor_as_one_vector_sample():
    average = Average()
    average.update(torch.tensor([1.0, 2.0]))
    average.update(torch.tensor([3.0, 6.0]))
    assert average.num_examples == 2
    assert average.compute().tolist() == [2.0, 4.0]


def test_average_attached_writes_a_float_for_scalars():
    engine = Engine(lambda engine, batch: batch)
    Average(output_transform=lambda loss: loss * 2).attach(engine, "avg")
    assert engine.run([1.0, 2.0, 3.0]).metrics["avg"] == 4.0


@pytest.mark.parametrize(
    ("updates", "error", "message"),
    [
        (["high"], TypeError, r"Average: Output should be a number or torch.Tensor, but given <class 'str'> \('high' \(str\)\)"),
        ([[1.0, 2.0]], TypeError, r"Average: Output should be a number or torch.Tensor, but given <class 'list'> \(a list of 2 items\)"),
        ([True], TypeError, r"Average: Output should be a number or torch.Tensor, but given <class 'bool'> \(True \(bool\)\)"),
        ([torch.ones(4, 3), torch.ones(4, 2)], ValueError,
         r"Average: this update's samples have shape \(2,\) but earlier samples had shape \(3,\)"),
        ([1.0, torch.ones(2)], ValueError, r"Average: this update's samples have shape \(2,\) but earlier samples had shape \(\)"),
    ],
)
def test_average_bad_updates(updates, error, message):
    average = Average()
    with pytest.raises(error, match=message):
        for update in updates:
            average.update(update)


def test_average_not_computable_when_empty():
    with pytest.raises(NotComputableError, match="^Average must have at least one example before it can be computed.$"):
        Average().compute()


# Loss


def test_loss_matches_sklearn_log_loss_over_uneven_batches():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(77, 5, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 5, (77,), generator=generator)
    loss = Loss(torch.nn.CrossEntropyLoss())
    for start in range(0, 77, 20):  # batches of 20, 20, 20, 17
        loss.update((logits[start : start + 20], y[start : start + 20]))
    expected = log_loss(y.numpy(), torch.softmax(logits, dim=1).numpy(), labels=list(range(5)))
    assert loss.compute() == pytest.approx(expected, rel=1e-12)


def test_loss_passes_criterion_kwargs_and_reads_them_from_a_mapping():
    def weighted(y_pred, y, weight):
        return ((y_pred - y) ** 2 * weight).mean()

    engine = Engine(lambda engine, batch: {"y_pred": batch[0], "y": batch[1], "criterion_kwargs": {"weight": 2.0}})
    Loss(weighted).attach(engine, "loss")
    data = [(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0])), (torch.tensor([3.0]), torch.tensor([1.0]))]
    # Batch averages 2 * (1 + 4) / 2 = 5 over 2 samples and 2 * 4 = 8 over 1 sample.
    assert engine.run(data).metrics["loss"] == pytest.approx((5 * 2 + 8 * 1) / 3, rel=1e-15)


def test_loss_with_a_custom_batch_size():
    loss = Loss(torch.nn.MSELoss(), batch_size=lambda y: y.shape[0] * y.shape[1])
    loss.update((torch.zeros(2, 3), torch.ones(2, 3)))
    loss.update((torch.zeros(1, 3), torch.full((1, 3), 2.0)))
    assert loss.compute() == pytest.approx((1.0 * 6 + 4.0 * 3) / 9, rel=1e-15)


@pytest.mark.parametrize(
    ("make", "update", "error", "message"),
    [
        (lambda: Loss(torch.nn.MSELoss(reduction="none")), (torch.zeros(3), torch.ones(3)), ValueError,
         r"Loss: loss_fn returned a tensor of shape \(3,\); expected the batch average as a 0-d tensor \(use reduction='mean'\)"),
        (lambda: Loss(torch.nn.MSELoss()), torch.zeros(3), TypeError,
         r"Loss: update takes \(y_pred, y\) or \(y_pred, y, loss_fn_kwargs\), got a tensor of shape \(3,\)"),
        (lambda: Loss(torch.nn.MSELoss()), (torch.zeros(1), torch.ones(1), [1]), TypeError,
         r"Loss: the third item should be a dict of loss_fn kwargs, got a list of 1 items"),
        (lambda: Loss(torch.nn.MSELoss(), batch_size=lambda y: 1.5), (torch.zeros(1), torch.ones(1)), ValueError,
         r"Loss: batch_size\(y\) returned 1.5; expected a non-negative int"),
    ],
)
def test_loss_bad_updates(make, update, error, message):
    with pytest.raises(error, match=message):
        make().update(update)


def test_loss_bad_constructor_arguments():
    with pytest.raises(TypeError, match="Loss: argument loss_fn should be callable, got 'mse'"):
        Loss("mse")
    with pytest.raises(TypeError, match="Loss: argument batch_size should be callable, got 3"):
        Loss(torch.nn.MSELoss(), batch_size=3)


# MeanSquaredError


def test_mse_matches_sklearn_for_one_value_per_sample():
    generator = torch.Generator().manual_seed(2)
    y = torch.randn(101, generator=generator)
    y_pred = y + 0.3 * torch.randn(101, generator=generator)
    mse = MeanSquaredError()
    for start in range(0, 101, 16):
        mse.update((y_pred[start : start + 16], y[start : start + 16]))
    expected = mean_squared_error(y.double().numpy(), y_pred.double().numpy())
    assert mse.compute() == pytest.approx(expected, rel=1e-12)


def test_mse_sums_the_components_of_vector_samples():
    generator = torch.Generator().manual_seed(3)
    y = torch.randn(40, 3, generator=generator, dtype=torch.float64)
    y_pred = torch.randn(40, 3, generator=generator, dtype=torch.float64)
    mse = MeanSquaredError()
    for start in range(0, 40, 9):
        mse.update((y_pred[start : start + 9], y[start : start + 9]))
    expected = np.sum((y_pred.numpy() - y.numpy()) ** 2) / 40
    assert mse.compute() == pytest.approx(expected, rel=1e-13)


def test_mse_accepts_a_target_viewed_as_the_prediction():
    mse = MeanSquaredError()
    mse.update((torch.tensor([[1.0], [2.0]]), torch.tensor([0.0, 4.0])))
    assert mse.compute() == 2.5


@pytest.mark.parametrize(
    ("update", "error", "message"),
    [
        ((torch.zeros(4, 2), torch.zeros(4, 3)), ValueError,
         r"MeanSquaredError: y_pred has shape \(4, 2\) and y has shape \(4, 3\); expected both of shape \(N, \.\.\.\) "
         r"with the same N and the same number of elements"),
        ((torch.zeros(2, 3), torch.zeros(3, 2)), ValueError, r"MeanSquaredError: y_pred has shape \(2, 3\) and y has shape \(3, 2\)"),
        ((torch.zeros(2), [0.0, 1.0]), TypeError, r"MeanSquaredError: y should be a torch.Tensor, got a list of 2 items"),
    ],
)
def test_mse_bad_updates(update, error, message):
    with pytest.raises(error, match=message):
        MeanSquaredError().update(update)


def test_mse_not_computable_when_empty():
    with pytest.raises(NotComputableError, match="^MeanSquaredError must have at least one example before it can be computed.$"):
        MeanSquaredError().compute()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metrics_accumulate_on_the_device_they_are_given():
    from nbengine.metrics import Accuracy

    generator = torch.Generator().manual_seed(4)
    logits = torch.randn(40, 5, generator=generator)
    y = torch.randint(0, 5, (40,), generator=generator)
    values = torch.randn(40, 3, generator=generator)
    for inputs_device in ("cpu", "cuda"):
        on_cuda = {
            "acc": Accuracy(device="cuda"),
            "avg": Average(device="cuda"),
            "loss": Loss(torch.nn.CrossEntropyLoss(), device="cuda"),
            "mse": MeanSquaredError(device="cuda"),
        }
        on_cpu = {
            "acc": Accuracy(),
            "avg": Average(),
            "loss": Loss(torch.nn.CrossEntropyLoss()),
            "mse": MeanSquaredError(),
        }
        for metrics, device in ((on_cuda, inputs_device), (on_cpu, "cpu")):
            for start in range(0, 40, 16):
                part = slice(start, start + 16)
                metrics["acc"].update((logits[part].to(device), y[part].to(device)))
                metrics["avg"].update(values[part].to(device))
                metrics["loss"].update((logits[part].to(device), y[part].to(device)))
                metrics["mse"].update((values[part, 0].to(device), values[part, 1].to(device)))
        assert on_cuda["acc"]._num_correct.is_cuda and on_cuda["avg"].accumulator.is_cuda
        assert on_cuda["acc"].compute() == on_cpu["acc"].compute()
        torch.testing.assert_close(on_cuda["avg"].compute().cpu(), on_cpu["avg"].compute())
        assert on_cuda["loss"].compute() == pytest.approx(on_cpu["loss"].compute(), rel=1e-5)
        assert on_cuda["mse"].compute() == pytest.approx(on_cpu["mse"].compute(), rel=1e-6)
