"""Parameter schedulers: the values of each schedule match pytorch-ignite's, event by event; state_dict
resumes a schedule where it stood; simulate_values leaves the optimizer and schedulers untouched; bad
arguments are refused with ignite's wording."""

from __future__ import annotations

import doctest
import io
import sys

import pytest
import torch

import nbengine.engine
import nbengine.handlers.param_scheduler as ours
from nbengine.engine import Engine, Events


def test_doctests():
    assert doctest.testmod(ours).failed == 0


def optimizer(groups: int = 1) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        [{"params": [torch.zeros(1, requires_grad=True)], "lr": 0.1 * (index + 1)} for index in range(groups)],
        lr=0.1,
        momentum=0.9,
    )


# Each case builds a scheduler from a module (nbengine's or ignite's param_scheduler) and an optimizer.
CASES = {
    "linear": lambda m, o: m.LinearCyclicalScheduler(o, "lr", 1.0, 0.1, cycle_size=6),
    "linear-mult": lambda m, o: m.LinearCyclicalScheduler(
        o, "lr", 1.0, 0.1, cycle_size=4, cycle_mult=2.0, start_value_mult=0.5, end_value_mult=0.3
    ),
    "linear-warmup": lambda m, o: m.LinearCyclicalScheduler(
        o, "momentum", 0.9, 0.5, cycle_size=5, warmup_duration=3, monotonic=True
    ),
    "cosine": lambda m, o: m.CosineAnnealingScheduler(o, "lr", 0.5, 0.01, cycle_size=7, cycle_mult=1.5),
    "piecewise": lambda m, o: m.PiecewiseLinear(o, "lr", [(2, 0.5), (5, 1.0), (5, 0.2), (9, 0.0)]),
    "concat": lambda m, o: m.ConcatScheduler(
        [m.LinearCyclicalScheduler(o, "lr", 0.0, 1.0, 6), m.CosineAnnealingScheduler(o, "lr", 1.0, 0.1, 8)], [4]
    ),
    "param-groups": lambda m, o: m.ParamGroupScheduler(
        [m.LinearCyclicalScheduler(o, "lr", 1.0, 0.0, 4, param_group_index=0),
         m.PiecewiseLinear(o, "lr", [(0, 0.3), (6, 0.9)], param_group_index=1)],
    ),
    "step-lr": lambda m, o: m.LRScheduler(torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5)),
    "cosine-restarts": lambda m, o: m.LRScheduler(
        torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.01)
    ),
    "one-cycle": lambda m, o: m.LRScheduler(torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1.0, total_steps=40)),
    "warmup-torch": lambda m, o: m.create_lr_scheduler_with_warmup(
        torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9), warmup_start_value=0.0, warmup_duration=5
    ),
    "warmup-ignite": lambda m, o: m.create_lr_scheduler_with_warmup(
        m.CosineAnnealingScheduler(o, "lr", 0.1, 0.01, 10), warmup_start_value=0.0, warmup_end_value=0.1,
        warmup_duration=4,
    ),
}


def run_values(module, engine_module, case: str, groups: int, epochs: int = 4) -> list:
    opt = optimizer(groups)
    scheduler = CASES[case](module, opt)
    trainer = engine_module.Engine(lambda engine, batch: None)
    trainer.add_event_handler(engine_module.Events.ITERATION_STARTED, scheduler)
    values = []
    trainer.add_event_handler(
        engine_module.Events.ITERATION_COMPLETED,
        lambda engine: values.append([(group["lr"], group["momentum"]) for group in opt.param_groups]),
    )
    trainer.run(range(5), max_epochs=epochs)
    return values


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("case", CASES)
def test_same_values_as_ignite_in_a_run(case):
    ignite_engine = pytest.importorskip("ignite.engine")
    ignite_schedulers = pytest.importorskip("ignite.handlers.param_scheduler")
    groups = 2 if case == "param-groups" else 1
    assert run_values(ours, nbengine.engine, case, groups) == run_values(ignite_schedulers, ignite_engine, case, groups)


@pytest.mark.parametrize("case", CASES)
def test_state_dict_resumes_the_schedule_exactly(case):
    groups = 2 if case == "param-groups" else 1
    reference = run_values(ours, nbengine.engine, case, groups, epochs=4)

    opt = optimizer(groups)
    scheduler = CASES[case](ours, opt)
    values = []
    for _ in range(7):
        scheduler(None)
    # As in a checkpoint with both in to_save: torch's chainable schedulers read the optimizer's current lr.
    state = torch.load(_saved({"scheduler": scheduler.state_dict(), "optimizer": opt.state_dict()}), weights_only=True)
    fresh_opt = optimizer(groups)
    resumed = CASES[case](ours, fresh_opt)
    fresh_opt.load_state_dict(state["optimizer"])
    resumed.load_state_dict(state["scheduler"])
    trainer = Engine(lambda engine, batch: None)
    trainer.add_event_handler(Events.ITERATION_STARTED, resumed)
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED,
        lambda engine: values.append([(group["lr"], group["momentum"]) for group in fresh_opt.param_groups]),
    )
    trainer.run(range(13))
    assert values == reference[7:20]


def _saved(state) -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


def test_simulate_values_leaves_the_optimizer_and_the_torch_scheduler_as_they_were():
    opt = optimizer()
    step_lr = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    before = (opt.state_dict(), step_lr.state_dict())
    values = ours.LRScheduler.simulate_values(6, step_lr)
    assert [row[0] for row in values] == list(range(6))
    assert (opt.state_dict(), step_lr.state_dict()) == before


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    "simulate",
    [
        lambda m: m.LinearCyclicalScheduler.simulate_values(12, param_name="lr", start_value=1.0, end_value=0.0, cycle_size=5),
        lambda m: m.PiecewiseLinear.simulate_values(9, param_name="lr", milestones_values=[(1, 1.0), (6, 0.1)]),
        lambda m: m.ConcatScheduler.simulate_values(
            10, schedulers=[m.LinearCyclicalScheduler(o := optimizer(), "lr", 0.0, 1.0, 6),
                            m.CosineAnnealingScheduler(o, "lr", 1.0, 0.1, 8)], durations=[3],
        ),
        lambda m: m.ReduceLROnPlateauScheduler.simulate_values(
            8, [1.0, 0.9, 0.9, 0.95, 0.9, 0.8, 0.8, 0.81], 0.5, factor=0.5, patience=1, threshold=0.01
        ),
        lambda m: m.ParamGroupScheduler.simulate_values(
            6, [m.LinearCyclicalScheduler(o := optimizer(2), "lr", 1.0, 0.0, 4, param_group_index=0),
                m.CosineAnnealingScheduler(o, "lr", 0.0, 1.0, 4, param_group_index=1)],
        ),
    ],
    ids=["linear", "piecewise", "concat", "plateau", "param-groups"],
)
def test_simulate_values_match_ignites(simulate):
    ignite_schedulers = pytest.importorskip("ignite.handlers.param_scheduler")
    assert simulate(ours) == simulate(ignite_schedulers)


def test_plot_values_draws_a_figure_without_pyplot():
    figure = ours.PiecewiseLinear.plot_values(10, param_name="lr", milestones_values=[(0, 1.0), (9, 0.0)])
    assert type(figure).__name__ == "Figure"
    (line,) = figure.axes[0].get_lines()
    assert list(line.get_xdata()) == list(range(10))
    assert "matplotlib.pyplot" not in sys.modules


def test_reduce_lr_on_plateau_lowers_only_its_param_group_and_keeps_a_min_lr_without_an_index():
    opt = optimizer(2)
    evaluator = Engine(lambda engine, batch: None)
    scheduler = ours.ReduceLROnPlateauScheduler(opt, "loss", factor=0.5, patience=0, param_group_index=1, min_lr=0.06)
    for loss in (1.0, 2.0, 3.0, 4.0):
        evaluator.state.metrics["loss"] = loss
        scheduler(evaluator)
    assert [group["lr"] for group in opt.param_groups] == [0.1, 0.06]
    opt = optimizer()
    scheduler = ours.ReduceLROnPlateauScheduler(opt, "loss", factor=0.5, patience=0, min_lr=0.04)
    for loss in (1.0, 2.0, 3.0, 4.0):
        evaluator.state.metrics["loss"] = loss
        scheduler(evaluator)
    assert opt.param_groups[0]["lr"] == 0.04


def test_save_history_records_each_value_in_the_engine_state():
    opt = optimizer()
    trainer = Engine(lambda engine, batch: None)
    ours.LinearCyclicalScheduler(opt, "lr", 1.0, 0.0, 4, save_history=True).attach(trainer)
    trainer.run(range(5))
    assert trainer.state.param_history["lr"] == [[1.0], [0.5], [0.0], [0.5], [1.0]]


def test_batch_size_scheduler_sets_the_batch_size_each_epoch():
    loader = torch.utils.data.DataLoader(list(range(32)), batch_size=4)
    trainer = Engine(lambda engine, batch: len(batch))
    ours.BatchSizeScheduler(loader, lambda event: 4 * 2**event, save_history=True).attach(trainer)
    sizes = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: sizes.append(engine.state.output))
    trainer.run(loader, max_epochs=3, epoch_length=2)
    assert trainer.state.param_history["batch_size"] == [4, 8, 16]
    assert sizes == [4, 8, 16]


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: ours.LinearCyclicalScheduler({}, "lr", 1, 0, 4), TypeError,
         r"^Argument optimizer should be torch.optim.Optimizer or has attribute 'param_groups' as list/tuple"),
        (lambda: ours.LinearCyclicalScheduler(optimizer(), "lr", 1, 0, 1), ValueError,
         r"^Argument cycle_size should be positive and larger than 1, but given 1$"),
        (lambda: ours.LinearCyclicalScheduler(optimizer(), "lr", 1, 0, 4, warmup_duration=2), ValueError,
         r"^Invalid combination when warmup_duration > 0 and monotonic=False"),
        (lambda: ours.PiecewiseLinear(optimizer(), "lr", [(3, 1.0), (1, 0.0)]), ValueError,
         r"^Milestones should be increasing integers, but given 1 is smaller than the previous milestone 3$"),
        (lambda: ours.PiecewiseLinear(optimizer(), "lr", [(0.5, 1.0)]), TypeError,
         r"^Value of a milestone should be integer, but given <class 'float'>$"),
        (lambda: ours.ConcatScheduler([ours.LinearCyclicalScheduler(optimizer(), "lr", 1, 0, 4)], []), ValueError,
         r"^Argument schedulers should be of more than one parameter schedulers"),
        (lambda: ours.ConcatScheduler([ours.LinearCyclicalScheduler(optimizer(), "lr", 1, 0, 4),
                                       ours.LinearCyclicalScheduler(optimizer(), "lr", 1, 0, 4)], [2]), ValueError,
         r"^schedulers should be related to same optimizer$"),
        (lambda: ours.LRScheduler(3), TypeError,
         r"^Argument lr_scheduler should be a subclass of torch.optim.lr_scheduler.LRScheduler, but given <class 'int'>$"),
        (lambda: ours.create_lr_scheduler_with_warmup(
            torch.optim.lr_scheduler.StepLR(optimizer(), 2), 0.0, warmup_duration=1), ValueError,
         r"^Argument warmup_duration should be at least 2 events, but given 1$"),
        (lambda: ours.ReduceLROnPlateauScheduler(optimizer(2), "loss", param_group_index=0, min_lr=[0.1, 0.1]),
         TypeError, r"^When param_group_index is given, min_lr should be a float, but given <class 'list'>$"),
        (lambda: ours.ReduceLROnPlateauScheduler(optimizer(), "loss")(Engine(lambda e, b: None)), ValueError,
         r"^Argument engine should have in its 'state', attribute 'metrics' which itself has the metric loss\.$"),
        (lambda: ours.LinearCyclicalScheduler(optimizer(), "lr", 1, 0, 4).load_state_dict({}), ValueError,
         r"^Required state attribute 'event_index' is absent in provided state_dict"),
    ],
)
def test_bad_input_is_refused(make, error, message):
    with pytest.raises(error, match=message):
        make()
