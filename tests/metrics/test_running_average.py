"""RunningAverage: the exponential moving average of the output or of a metric, checked against the recurrence."""

import doctest

import pytest
import torch

import nbengine.metrics.running_average
from nbengine.engine import Engine, Events
from nbengine.metrics import Accuracy, NotComputableError, RunningAverage


def ema(values, alpha):
    result = None
    history = []
    for value in values:
        result = value if result is None else result * alpha + (1 - alpha) * value
        history.append(result)
    return history


def test_doctest():
    assert doctest.testmod(nbengine.metrics.running_average).failed == 0


def test_smoothed_output_over_the_whole_run():
    losses = [4.0, 2.0, 1.0, 3.0, 0.5, 0.25]
    engine = Engine(lambda engine, batch: batch)
    RunningAverage(output_transform=lambda loss: loss, alpha=0.9).attach(engine, "loss")
    seen = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(e.state.metrics["loss"]))
    engine.run(losses[:3], max_epochs=2)
    assert seen == pytest.approx(ema(losses[:3] * 2, 0.9), rel=1e-15)


def test_single_epoch_usage_restarts_every_epoch():
    engine = Engine(lambda engine, batch: batch)
    RunningAverage(output_transform=lambda loss: loss, alpha=0.5).attach(engine, "loss", "single_epoch_running_batch_wise")
    seen = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(e.state.metrics["loss"]))
    engine.run([4.0, 2.0], max_epochs=2)
    assert seen == [4.0, 3.0, 4.0, 3.0]


def test_running_average_of_a_metric_uses_one_value_per_iteration():
    batches = [
        (torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 1])),  # accuracy 1
        (torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([1, 1])),  # 0.5
        (torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([1, 0])),  # 0
    ]
    engine = Engine(lambda engine, batch: batch)
    RunningAverage(Accuracy(), alpha=0.8).attach(engine, "running_acc")
    seen = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(e.state.metrics["running_acc"]))
    engine.run(batches)
    assert seen == pytest.approx(ema([1.0, 0.5, 0.0], 0.8), rel=1e-15)


def test_tensor_values_are_averaged_element_wise():
    running = RunningAverage(output_transform=lambda out: out, alpha=0.5)
    running.update(torch.tensor([2.0, 4.0]))
    running.update(torch.tensor([0.0, 8.0]))
    assert running.compute().tolist() == [1.0, 6.0]


def test_detach_removes_the_source_handler_too():
    engine = Engine(lambda engine, batch: batch)
    source = Accuracy()
    running = RunningAverage(source)
    running.attach(engine, "acc")
    assert engine.has_event_handler(source.iteration_completed, Events.ITERATION_COMPLETED)
    running.detach(engine)
    assert not engine.has_event_handler(source.iteration_completed, Events.ITERATION_COMPLETED)
    assert not running.is_attached(engine)


def test_state_dict_round_trip_with_a_source_metric():
    running = RunningAverage(Accuracy(), alpha=0.5)
    running.src.update((torch.tensor([[0.1, 0.9]]), torch.tensor([1])))
    running.update(None)
    restored = RunningAverage(Accuracy(), alpha=0.5)
    restored.load_state_dict(running.state_dict())
    assert restored.compute() == 1.0


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: RunningAverage(src="acc"), TypeError, r"RunningAverage: Argument src should be a Metric or None\. Got 'acc' \(str\)"),
        (lambda: RunningAverage(output_transform=lambda x: x, alpha=0.0), ValueError,
         r"RunningAverage: Argument alpha should be a float between 0\.0 and 1\.0 \(0 excluded\)\. Got 0\.0"),
        (lambda: RunningAverage(output_transform=lambda x: x, alpha=1.5), ValueError, "Got 1.5"),
        (lambda: RunningAverage(Accuracy(), output_transform=lambda x: x), ValueError,
         "RunningAverage: Argument output_transform should be None if src is a Metric"),
        (lambda: RunningAverage(Accuracy(), device="cpu"), ValueError,
         "RunningAverage: Argument device should be None if src is a Metric"),
        (lambda: RunningAverage(), ValueError, "RunningAverage: Argument output_transform should not be None if src corresponds to the output of process function: give either src"),
        (lambda: RunningAverage(output_transform=lambda x: x).compute(), NotComputableError,
         "RunningAverage: needs at least one update"),
        (lambda: RunningAverage(output_transform=lambda x: x).update("high"), TypeError,
         r"RunningAverage: output_transform should give a number or a tensor, got 'high' \(str\)"),
    ],
)
def test_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()
