"""The metric protocol beyond attach: MetricsLambda arithmetic, reinit__is_reduced / sync_all_reduce on one
process, accumulation (VariableAccumulation, GeometricAverage), RunningAverage's epoch_bound, result modes."""

import doctest
import math
import pickle
import sys

import pytest
import torch

import nbengine.metrics.accumulation
import nbengine.metrics.metrics_lambda
import nbengine.utils.tree
from nbengine.engine import Engine, Events
from nbengine.metrics import (
    Accuracy,
    Average,
    GeometricAverage,
    Metric,
    MetricsLambda,
    Precision,
    Recall,
    RunningAverage,
    VariableAccumulation,
)
from nbengine.metrics.metric import reinit__is_reduced, sync_all_reduce
from nbengine.utils import _tree_map


@pytest.mark.parametrize(
    "module", [nbengine.metrics.accumulation, nbengine.metrics.metrics_lambda, nbengine.utils.tree], ids=str
)
def test_doctests(module):
    result = doctest.testmod(module, extraglobs={"torch": torch})
    assert result.attempted > 0 and result.failed == 0


class Last(Metric):
    """compute() is the last value fed."""

    required_output_keys = None

    def reset(self):
        self.value = None

    def update(self, output):
        self.value = output

    def compute(self):
        return self.value


def test_operators_build_lambdas_over_computed_values():
    a, b = Last(), Last()
    expressions = {
        "a + b": (a + b, 14), "2 + a": (2 + a, 12), "a - b": (a - b, 6), "1 - a": (1 - a, -9), "a * b": (a * b, 40),
        "3 * a": (3 * a, 30), "a / b": (a / b, 2.5), "5 / b": (5 / b, 1.25), "a // b": (a // b, 2), "a % b": (a % b, 2),
        "a ** 2": (a**2, 100), "2 ** b": (2**b, 16),
    }
    a.update(10)
    b.update(4)
    for text, (expression, expected) in expressions.items():
        assert isinstance(expression, MetricsLambda), text
        assert expression.compute() == expected, text


def test_indexing_and_result_methods():
    vector = Last()
    second, root_sum, total = vector[1], vector.sqrt().sum().item(), vector.sum(dim=0)
    vector.update(torch.tensor([1.0, 4.0, 9.0]))
    assert second.compute() == 4.0
    assert root_sum.compute() == 6.0
    assert total.compute() == 14.0


def test_a_typo_fails_at_compute_naming_where_it_was_written():
    metric = Last()
    typo = metric.meen()  # the attribute is looked up on the result, so the typo surfaces at compute()
    metric.update(torch.ones(2))
    with pytest.raises(AttributeError, match=r"(?s)Metric result of type '<class 'torch.Tensor'>' has no attribute "
                       r"'meen'\. Note: 'meen' was accessed on the metric at:\n.*test_protocol\.py"):
        typo.compute()


def test_private_names_are_plain_attribute_errors():
    with pytest.raises(AttributeError, match="'Last' object has no attribute '_missing'"):
        Last()._missing  # noqa: B018
    assert not hasattr(Last(), "__missing__")


def test_a_metric_pickles_and_keeps_working():
    metric = Average()
    metric.update(2.0)
    copy = pickle.loads(pickle.dumps(metric))
    copy.update(4.0)
    assert copy.compute().item() == 3.0


def test_lambda_attaches_its_operands_partially_and_writes_only_its_result():
    precision, recall = Precision(average=False), Recall(average=False)
    f1 = (precision * recall * 2 / (precision + recall + 1e-15)).mean()
    engine = Engine(lambda engine, batch: batch)
    f1.attach(engine, "f1")
    state = engine.run([(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 0]))])
    assert set(state.metrics) == {"f1"}
    assert state.metrics["f1"] == pytest.approx((2 / 3 + 0) / 2)
    assert f1.is_attached(engine)
    assert not precision.is_attached(engine)
    with pytest.raises(ValueError, match="MetricsLambda is already attached to an engine, and MetricsLambda can't use "
                       "update API while it's attached."):
        f1.update((torch.ones(1, 2), torch.tensor([0])))
    f1.detach(engine)
    assert not f1.is_attached(engine)


def test_a_lambda_updated_by_hand_cannot_be_attached():
    total = Last() + 1
    total.update(2)
    assert total.compute() == 3
    with pytest.raises(ValueError, match="The underlying metrics are already updated, can't attach while using "
                       "reset/update/compute API."):
        total.attach(Engine(lambda e, b: b), "total")
    total.reset()
    total.attach(Engine(lambda e, b: b), "total")


class Counter(Metric):
    required_output_keys = None

    @reinit__is_reduced
    def reset(self):
        self.count = torch.tensor(0.0)
        self.largest = 0
        self._result = "stale"

    @reinit__is_reduced
    def update(self, output):
        self.count += 1
        self.largest = max(self.largest, output)

    @sync_all_reduce("count", "largest:MAX")
    def compute(self):
        return self.count.item(), self.largest


def test_decorators_on_one_process_leave_the_accumulators_and_clear_the_cached_result():
    counter = Counter()
    assert counter._result is None
    counter._result = "stale"
    counter.update(5)
    assert counter._result is None
    count = counter.count
    assert counter.compute() == (1.0, 5)
    assert counter.count is count
    assert "nbengine.distributed" in sys.modules  # imported when first needed, not by import nbengine


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("count:sum", ValueError, r"Reduction operation is not valid \(expected : \['MIN', 'MAX', 'SUM', 'PRODUCT'\], "
         r"got: sum\) in sync_all_reduce\('count:sum'\) of Broken"),
        ("missing", ValueError, r"Metric <class '.*Broken'> has no attribute named `missing`\."),
        ("name", TypeError, r"Attribute provided to sync_all_reduce should be a number or tensor but `name` has type "
         r"<class 'str'>"),
    ],
)
def test_bad_reduction_specs_are_refused_when_called(spec, error, message):
    class Broken(Metric):
        required_output_keys = None

        def reset(self):
            self.count = 0
            self.name = "x"

        def update(self, output):
            pass

        @sync_all_reduce(spec)
        def compute(self):
            return 0

    with pytest.raises(error, match=message):
        Broken().compute()


def test_sync_all_reduce_refuses_non_metrics():
    class NotAMetric:
        @sync_all_reduce("x")
        def compute(self):
            return 0

    with pytest.raises(RuntimeError, match="Decorator sync_all_reduce should be used on ignite.metric.Metric class "
                       r"methods only \(nbengine.metrics.Metric\), got NotAMetric"):
        NotAMetric().compute()


def test_geometric_average_and_variable_accumulation():
    geometric = GeometricAverage()
    for value in (2.0, torch.tensor(8.0), torch.tensor([[1.0], [4.0]])):
        geometric.update(value)
    assert geometric.compute() == pytest.approx(math.prod([2.0, 8.0, 1.0, 4.0]) ** 0.25, rel=1e-15)
    vectors = GeometricAverage()
    vectors.update(torch.tensor([[1.0, 100.0], [4.0, 1.0]]))
    torch.testing.assert_close(vectors.compute(), torch.tensor([2.0, 10.0], dtype=torch.float64))
    product = VariableAccumulation(lambda acc, x: acc + x.sum() if isinstance(x, torch.Tensor) else acc + x)
    product.update(1)
    product.update(torch.ones(3, 2))
    assert product.compute() == (torch.tensor(7.0, dtype=torch.float64), 4)
    with pytest.raises(TypeError, match="VariableAccumulation: Argument op should be a callable, got 3 of type int"):
        VariableAccumulation(3)
    with pytest.raises(ValueError, match=r"GeometricAverage: this update's samples have shape \(3,\) but earlier samples "
                       r"had shape \(2,\)"):
        vectors.update(torch.ones(3))


@pytest.mark.parametrize(("epoch_bound", "expected"), [(True, [1.0, 1.5, 1.0, 1.5]), (False, [1.0, 1.5, 1.25, 1.625])])
def test_running_average_epoch_bound_chooses_the_usage(epoch_bound, expected):
    with pytest.warns(UserWarning, match="`epoch_bound` is deprecated and will be removed in the future"):
        smoothed = RunningAverage(output_transform=lambda x: x, alpha=0.5, epoch_bound=epoch_bound)
    engine = Engine(lambda engine, batch: batch)
    smoothed.attach(engine, "smooth", usage="running_epoch_wise")  # epoch_bound overrides the usage, as in ignite
    seen = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(e.state.metrics["smooth"]))
    engine.run([1.0, 2.0], max_epochs=2)
    assert seen == expected
    assert smoothed.is_attached(engine)
    smoothed.detach(engine)
    assert not smoothed.is_attached(engine)


def test_running_average_of_a_metric():
    smoothed = RunningAverage(Accuracy(), alpha=0.5)
    engine = Engine(lambda engine, batch: batch)
    smoothed.attach(engine, "acc")
    seen = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(e.state.metrics["acc"]))
    hit, miss = (torch.tensor([[0.0, 1.0]]), torch.tensor([1])), (torch.tensor([[0.0, 1.0]]), torch.tensor([0]))
    engine.run([hit, miss, hit])
    assert seen == [1.0, 0.5, 0.75]


class Pair(Metric):
    required_output_keys = None

    def reset(self):
        pass

    def update(self, output):
        pass

    def compute(self):
        return {"a": 1, "b": 2}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("flatten", {"a": 1, "b": 2}), ("named", {"pair": {"a": 1, "b": 2}}), ("both", {"a": 1, "b": 2, "pair": {"a": 1, "b": 2}})],
)
def test_metrics_result_modes(mode, expected):
    engine = Engine(lambda engine, batch: batch)
    Pair(metrics_result_mode=mode).attach(engine, "pair")
    assert engine.run([0]).metrics == expected


def test_bad_result_mode_is_refused():
    with pytest.raises(ValueError, match=r"Argument metrics_result_mode should be one of \('flatten', 'named', 'both'\), "
                       "got all"):
        Pair(metrics_result_mode="all")


def test_tree_map_is_exported_under_ignites_private_name():
    assert _tree_map(lambda leaf, key: (key, leaf), {"a": [1]}) == {"a": [(0, 1)]}
