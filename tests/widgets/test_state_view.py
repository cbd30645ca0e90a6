"""The State view's text, read from a real engine: the learning rate a scheduler set."""

from __future__ import annotations

import pytest
import torch

from nbengine.engine import Engine, Events
from nbengine.handlers import CosineAnnealingScheduler, LRScheduler
from nbengine.widgets.state_view import read_state, state_html


def _trained(scheduler_for, iterations: int) -> tuple[Engine, torch.optim.Optimizer]:
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    trainer = Engine(lambda engine, batch: None)
    trainer.add_event_handler(Events.ITERATION_STARTED, scheduler_for(optimizer))
    trainer.run([0] * iterations, max_epochs=1)
    return trainer, optimizer


def test_state_shows_the_learning_rate_that_a_torch_scheduler_set():
    # StepLR(step_size=2, gamma=0.5) from 0.1 gives 0.1, 0.1, 0.05, 0.05, 0.025 to iterations 1..5.
    trainer, optimizer = _trained(
        lambda optimizer: LRScheduler(torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)), 5
    )
    snapshot = read_state(trainer, optimizer=optimizer)
    assert snapshot.learning_rate == "0.025"
    assert "<code class='nbengine-lr'>0.025</code>" in state_html(snapshot)


def test_state_shows_the_learning_rate_of_the_first_parameter_group_of_a_cyclical_schedule():
    # Cosine from 1.0 to 0.0 over a cycle of 4 iterations: iteration 3 gets 1/2 * (1 + cos(pi * 2/4)) = 0.5.
    trainer, optimizer = _trained(
        lambda optimizer: CosineAnnealingScheduler(optimizer, "lr", start_value=1.0, end_value=0.0, cycle_size=4), 3
    )
    assert read_state(trainer, optimizer=optimizer).learning_rate == "0.5"


def test_state_without_an_optimizer_shows_no_learning_rate():
    trainer = Engine(lambda engine, batch: None)
    trainer.run([0], max_epochs=1)
    snapshot = read_state(trainer)
    assert snapshot.learning_rate is None
    assert "learning rate" not in state_html(snapshot)


@pytest.mark.parametrize("bad", [object(), "sgd"])
def test_the_panel_refuses_an_optimizer_without_param_groups(bad):
    from nbengine.widgets import TrainingPanel

    with pytest.raises(TypeError, match="optimizer should be a torch optimizer"):
        TrainingPanel(Engine(lambda engine, batch: None), optimizer=bad)
