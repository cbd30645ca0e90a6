"""Metric.attach with every usage, on a real Engine: exact values, across pause/step/resume, and the errors."""

import pytest
import torch

from nbengine.engine import Engine, Events
from nbengine.metrics import (
    Accuracy,
    Average,
    BatchFiltered,
    BatchWise,
    EpochWise,
    Metric,
    MetricUsage,
    NotComputableError,
    RunningBatchWise,
    RunningEpochWise,
    SingleEpochRunningBatchWise,
)

# Two epochs of three batches; each batch's output is its value.
DATA = [1.0, 2.0, 6.0]


def run_and_record(metric, usage, event=Events.ITERATION_COMPLETED):
    engine = Engine(lambda engine, batch: batch)
    metric.attach(engine, "m", usage=usage)
    seen = []
    engine.add_event_handler(event, lambda e: seen.append(e.state.metrics.get("m")))
    engine.run(DATA, max_epochs=2)
    return engine, seen


def test_epoch_wise_is_the_default_and_resets_each_epoch():
    engine, seen = run_and_record(Average(), "epoch_wise", Events.EPOCH_COMPLETED)
    assert seen == [3.0, 3.0]
    engine2 = Engine(lambda engine, batch: batch)
    Average().attach(engine2, "m")
    assert engine2.run([2.0, 4.0]).metrics["m"] == 3.0


def test_batch_wise_holds_each_iterations_value():
    _, seen = run_and_record(Average(), BatchWise())
    assert seen == [1.0, 2.0, 6.0, 1.0, 2.0, 6.0]


def test_running_batch_wise_accumulates_over_the_run():
    _, seen = run_and_record(Average(), "running_batch_wise")
    assert seen == [1.0, 1.5, 3.0, 2.5, 2.4, 3.0]


def test_single_epoch_running_batch_wise_restarts_each_epoch():
    _, seen = run_and_record(Average(), SingleEpochRunningBatchWise())
    assert seen == [1.0, 1.5, 3.0, 1.0, 1.5, 3.0]


def test_running_epoch_wise_updates_once_per_epoch_and_never_resets():
    # The update reads the engine output at EPOCH_COMPLETED: the last batch of each epoch.
    _, seen = run_and_record(Average(), RunningEpochWise(), Events.EPOCH_COMPLETED)
    assert seen == [6.0, 6.0]


def test_batch_filtered_only_updates_on_selected_iterations():
    _, seen = run_and_record(Average(), BatchFiltered(every=2), Events.EPOCH_COMPLETED)
    # Iterations 2 (value 2) in epoch 1; iterations 4 (1) and 6 (6) in epoch 2.
    assert seen == [2.0, 3.5]


def test_custom_usage_object():
    usage = MetricUsage(Events.STARTED, Events.COMPLETED, Events.ITERATION_COMPLETED)
    _, seen = run_and_record(Average(), usage, Events.COMPLETED)
    assert seen == [3.0]


def test_metric_state_survives_pause_step_and_resume():
    data = [torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([[0.3, 0.7], [0.6, 0.4]])] * 3
    targets = [torch.tensor([0, 0]), torch.tensor([1, 0])] * 3

    def process(engine, batch):
        index = batch
        return data[index], targets[index]

    uninterrupted = Engine(process)
    Accuracy().attach(uninterrupted, "acc")
    expected = uninterrupted.run(list(range(6))).metrics["acc"]
    assert expected == 3 / 4

    stepped = Engine(process)
    Accuracy().attach(stepped, "acc")
    stepped.step(data=list(range(6)), max_epochs=1)
    stepped.step(3)
    assert stepped.status == "paused" and stepped.state.iteration == 4
    stepped.run()
    assert stepped.status == "done"
    assert stepped.state.metrics["acc"] == expected


def test_attaching_under_two_names_shares_one_accumulator():
    engine = Engine(lambda engine, batch: batch)
    average = Average()
    average.attach(engine, "a")
    average.attach(engine, "b")
    state = engine.run([1.0, 3.0])
    assert state.metrics == {"a": 2.0, "b": 2.0}


def test_detach_and_is_attached():
    engine = Engine(lambda engine, batch: batch)
    average = Average()
    average.attach(engine, "m", usage="batch_wise")
    assert average.is_attached(engine, "batch_wise")
    assert not average.is_attached(engine)
    average.detach(engine, "batch_wise")
    assert not average.is_attached(engine, "batch_wise")
    assert engine.run([1.0]).metrics == {}


def test_mapping_output_is_read_by_required_keys():
    engine = Engine(lambda engine, batch: {"y_pred": torch.tensor([[0.2, 0.8]]), "y": torch.tensor([batch]), "x": 0})
    Accuracy().attach(engine, "acc")
    assert engine.run([1, 0, 1, 1]).metrics["acc"] == 0.75


def test_lists_of_tensors_are_unrolled_pair_by_pair():
    accuracy = Accuracy()
    # Two sequence samples of lengths 3 and 1, scores of shape (C=2, length): fed one sample at a time.
    y_preds = [torch.tensor([[0.9, 0.1, 0.8], [0.1, 0.9, 0.2]]), torch.tensor([[0.3], [0.7]])]
    ys = [torch.tensor([0, 1, 1]), torch.tensor([1])]
    accuracy._feed((y_preds, ys))
    assert accuracy.compute() == 3 / 4


def test_state_dict_round_trip_continues_the_accumulation():
    average = Average()
    average.update(torch.tensor([[1.0], [3.0]]))
    saved = average.state_dict()
    restored = Average()
    restored.load_state_dict(saved)
    restored.update(torch.tensor([[5.0]]))
    assert restored.compute().item() == 3.0
    assert restored.num_examples == 3


def test_result_mappings_are_written_key_by_key():
    class Pair(Metric):
        required_output_keys = None

        def reset(self):
            self.total = 0

        def update(self, output):
            self.total += output

        def compute(self):
            return {"sum": self.total, "double": 2 * self.total}

    engine = Engine(lambda engine, batch: batch)
    Pair().attach(engine, "pair")
    assert engine.run([1, 2]).metrics == {"sum": 3, "double": 6, "pair": {"sum": 3, "double": 6}}
    clashing = Engine(lambda engine, batch: batch)
    Pair().attach(clashing, "sum")
    with pytest.raises(ValueError, match=r"Pair \('sum'\): Argument name 'sum' is conflicting with mapping keys: \['sum', 'double'\] of its result"):
        clashing.run([1])


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: Average(output_transform=3), TypeError, "Average: Argument output_transform should be callable, got 3 of type int"),
        (lambda: Average(device=0), TypeError, r"Average: Argument device should be a str or torch.device, got 0 \(int\)"),
        (lambda: Average().attach(Engine(lambda e, b: b), "m", usage="weekly"), ValueError,
         r"Argument usage should be '\(Running\)EpochWise.usage_name' or '\(\(SingleEpoch\)Running\)BatchWise.usage_name', "
         r"got 'weekly' \(one of \['epoch_wise', 'running_epoch_wise', 'batch_wise', 'running_batch_wise', "
         r"'single_epoch_running_batch_wise'\] or a MetricUsage\)"),
        (lambda: Average().attach(Engine(lambda e, b: b), "m", usage=3), TypeError,
         r"Unhandled usage type <class 'int'>: argument usage should be a usage name or a MetricUsage"),
        (lambda: Average().attach(object(), "m"), TypeError, "Average: argument engine should be an Engine"),
        (lambda: Average().attach(Engine(lambda e, b: b), 3), TypeError, "Average: argument name should be a str, got 3"),
        (lambda: Average().compute(), NotComputableError, "Average must have at least one example"),
        (lambda: Average().load_state_dict({"accumulator": 0}), ValueError,
         r"Average: Incorrect state_dict object\. Argument state_dict should be a dictionary provided by "
         r"Metric\.state_dict\(\)\. Expected single key: __metric_state_per_rank, but given \['accumulator'\]"),
        (lambda: Average().load_state_dict({"__metric_state_per_rank": [{"accumulator": 0}]}), ValueError,
         r"Required state attribute 'num_examples' is absent in provided state_dict"),
        (lambda: Average().load_state_dict(3), TypeError,
         r"Average: Argument state_dict should be a dictionary, but given <class 'int'>"),
    ],
)
def test_bad_arguments_are_refused(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_mapping_output_missing_keys_names_the_metric_and_the_keys():
    engine = Engine(lambda engine, batch: {"pred": torch.ones(1, 2)})
    Accuracy().attach(engine, "val_acc")
    with pytest.raises(ValueError, match=r"Accuracy \('val_acc'\): When transformed engine's output is a mapping, it should contain "
                       r"\('y_pred', 'y'\) keys, but given \['pred'\]"):
        engine.run([0])


def test_mapping_output_for_a_value_metric_is_refused():
    engine = Engine(lambda engine, batch: {"loss": 1.0})
    Average().attach(engine, "avg")
    with pytest.raises(TypeError, match=r"Average \('avg'\): Transformed engine output for Average metric should be a tuple/list, but "
                       r"given <class 'dict'> with keys \['loss'\]; this metric takes the value itself"):
        engine.run([0])


def test_usage_names_map_to_their_classes():
    for usage_cls in (EpochWise, RunningEpochWise, BatchWise, RunningBatchWise, SingleEpochRunningBatchWise):
        engine = Engine(lambda engine, batch: batch)
        average = Average()
        average.attach(engine, "m", usage=usage_cls.usage_name)
        assert average.is_attached(engine, usage_cls())


def test_metric_updates_do_not_record_autograd_history():
    weight = torch.ones(2, requires_grad=True)
    recorded = []

    class Recorder(Metric):
        required_output_keys = None

        def reset(self):
            pass

        def update(self, output):
            recorded.append(output.requires_grad)

        def compute(self):
            return 0

    engine = Engine(lambda engine, batch: weight * batch)
    Recorder(output_transform=lambda out: out * 2).attach(engine, "r")
    engine.run([1.0])
    assert recorded == [False]
    assert torch.is_grad_enabled()
