"""Every stateful metric resumes exactly from its state_dict (saved and loaded with weights_only=True).

For each metric: feed the first batches, save, load into a fresh metric (and into one that has seen
other data), feed the rest; ``compute()`` equals that of an uninterrupted metric, bit for bit.
"""

import io

import pytest
import torch

from nbengine.metrics import (
    Accuracy,
    Average,
    AveragePrecision,
    ConfusionMatrix,
    EpochMetric,
    GeometricAverage,
    Loss,
    MeanAbsoluteError,
    MeanSquaredError,
    Metric,
    Precision,
    Recall,
    RootMeanSquaredError,
    RunningAverage,
    TopKCategoricalAccuracy,
    VariableAccumulation,
    mIoU,
)

generator = torch.Generator().manual_seed(0)
SCORES = [torch.randn(8, 4, generator=generator) for _ in range(5)]
CLASSES = [torch.randint(0, 4, (8,), generator=generator) for _ in range(5)]
VALUES = [torch.rand(8, 3, generator=generator) + 0.1 for _ in range(5)]
BINARY_SCORES = [torch.rand(8, generator=generator) for _ in range(5)]
BINARY_TARGETS = [torch.tensor([0, 1, 0, 1, 1, 0, 1, 0]) for _ in range(5)]


def classes():
    return list(zip(SCORES, CLASSES))


def values():
    return list(VALUES)


def regression():
    return list(zip(VALUES, [v.flip(0) for v in VALUES]))


def binary_scores():
    return list(zip(BINARY_SCORES, BINARY_TARGETS))


CASES = {
    "Accuracy": (Accuracy, classes),
    "Precision(average=False)": (lambda: Precision(average=False), classes),
    "Precision(weighted)": (lambda: Precision(average="weighted"), classes),
    "Recall(micro)": (lambda: Recall(average="micro"), classes),
    "Recall(samples, multilabel)": (
        lambda: Recall(average="samples", is_multilabel=True),
        lambda: [((s > 0).long(), (s > 0.5).long()) for s in SCORES],
    ),
    "ConfusionMatrix": (lambda: ConfusionMatrix(num_classes=4), classes),
    "mIoU": (lambda: mIoU(ConfusionMatrix(num_classes=4)), classes),
    "TopKCategoricalAccuracy": (lambda: TopKCategoricalAccuracy(k=2), classes),
    "Loss": (lambda: Loss(torch.nn.functional.cross_entropy), classes),
    "MeanSquaredError": (MeanSquaredError, regression),
    "RootMeanSquaredError": (RootMeanSquaredError, regression),
    "MeanAbsoluteError": (MeanAbsoluteError, regression),
    "Average": (Average, values),
    "GeometricAverage": (GeometricAverage, values),
    "VariableAccumulation": (lambda: VariableAccumulation(torch.maximum), values),
    "RunningAverage(output)": (lambda: RunningAverage(output_transform=lambda x: x, alpha=0.7), values),
    "RunningAverage(Accuracy)": (lambda: RunningAverage(Accuracy(), alpha=0.7), classes),
    "EpochMetric": (lambda: EpochMetric(lambda p, y: float((p - y).abs().sum())), binary_scores),
    "AveragePrecision": (AveragePrecision, binary_scores),
}


def feed(metric: Metric, outputs) -> None:
    for output in outputs:
        if isinstance(metric, RunningAverage) and metric.src is not None:
            metric.src.update(output)
            metric.update(None)
        else:
            metric.update(output)


def through_a_file(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def same(a, b) -> bool:
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("name", list(CASES))
def test_a_checkpointed_metric_resumes_exactly(name):
    make, data = CASES[name]
    outputs = data()
    uninterrupted = make()
    feed(uninterrupted, outputs)

    first = make()
    feed(first, outputs[:2])
    saved = through_a_file(first.state_dict())

    for resumed in (make(), make()):
        feed(resumed, outputs[3:])  # data the saved state must replace
        resumed.load_state_dict(saved)
        feed(resumed, outputs[2:])
        assert same(resumed.compute(), uninterrupted.compute()), name


@pytest.mark.parametrize("name", list(CASES))
def test_the_saved_state_is_a_copy(name):
    make, data = CASES[name]
    outputs = data()
    metric = make()
    feed(metric, outputs[:2])
    saved = metric.state_dict()
    expected = make()
    expected.load_state_dict(through_a_file(saved))
    feed(metric, outputs[2:])  # in-place updates of the live accumulators must not reach `saved`
    restored = make()
    restored.load_state_dict(saved)
    assert same(restored.compute(), expected.compute()), name


def test_a_metric_holding_metrics_restores_them_in_place():
    class Holder(Metric):
        _state_dict_all_req_keys = ("inner", "parts", "count")

        def __init__(self):
            self.inner = Accuracy()
            self.parts = {"recall": Recall(), "n": 0}
            super().__init__()

        def reset(self):
            self.inner.reset()
            self.parts["recall"].reset()
            self.parts["n"] = 0
            self.count = 0

        def update(self, output):
            self.inner.update(output)
            self.parts["recall"].update(output)
            self.parts["n"] += 1
            self.count += len(output[1])

        def compute(self):
            return self.inner.compute(), self.parts["recall"].compute(), self.parts["n"], self.count

    holder = Holder()
    feed(holder, classes()[:3])
    inner, recall = holder.inner, holder.parts["recall"]
    state = through_a_file(holder.state_dict())
    fresh = Holder()
    kept_inner, kept_recall = fresh.inner, fresh.parts["recall"]
    fresh.load_state_dict(state)
    assert fresh.inner is kept_inner and fresh.parts["recall"] is kept_recall
    assert fresh.compute()[0] == holder.compute()[0]
    assert torch.equal(fresh.compute()[1], holder.compute()[1])
    assert fresh.compute()[2:] == (3, 24)
    assert inner is holder.inner and recall is holder.parts["recall"]


def test_state_dict_layout_is_ignites():
    accuracy = Accuracy()
    accuracy.update((SCORES[0], CLASSES[0]))
    state = accuracy.state_dict()
    assert list(state) == ["__metric_state_per_rank"]
    (rank0,) = state["__metric_state_per_rank"]
    assert list(rank0) == ["_num_correct", "_num_examples"]
    assert rank0["_num_examples"] == 8


@pytest.mark.parametrize(
    ("state", "error", "message"),
    [
        ([], TypeError, r"Accuracy: Argument state_dict should be a dictionary, but given <class 'list'>"),
        ({"_num_correct": 1}, ValueError, r"Accuracy: Incorrect state_dict object\. .* Expected single key: "
         r"__metric_state_per_rank, but given \['_num_correct'\]"),
        ({"__metric_state_per_rank": []}, ValueError,
         r"Expected a list of state_dicts of size equal world_size: 1, but got 0"),
        ({"__metric_state_per_rank": [{"_num_correct": torch.tensor(1)}]}, ValueError,
         r"Required state attribute '_num_examples' is absent in provided state_dict"),
        ({"__metric_state_per_rank": [{"_num_correct": object(), "_num_examples": 1}]}, ValueError,
         r"Unsupported type for provided state_dict data: <class 'object'> under '_num_correct'"),
    ],
)
def test_bad_state_dicts_are_refused(state, error, message):
    with pytest.raises(error, match=message):
        Accuracy().load_state_dict(state)


def test_unsupported_attribute_types_are_refused_when_saving():
    class Holder(Metric):
        _state_dict_all_req_keys = ("thing",)

        def reset(self):
            self.thing = object()

        def update(self, output):
            pass

        def compute(self):
            return 0

    with pytest.raises(TypeError, match=r"Found attribute of unsupported type\. .* got object under 'thing'"):
        Holder().state_dict()
    holder = Holder()
    del holder.thing
    with pytest.raises(ValueError, match=r"Found a value in _state_dict_all_req_keys that is not among metric "
                       r"attributes: thing \(Holder\)"):
        holder.state_dict()
