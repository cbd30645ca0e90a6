"""TerminateOnNan: a NaN or infinity anywhere in the output ends the run after that iteration."""

from __future__ import annotations

import doctest

import pytest
import torch

import nbengine.handlers.terminate_on_nan
from nbengine.engine import Engine, Events
from nbengine.handlers import TerminateOnNan


def test_doctests():
    assert doctest.testmod(nbengine.handlers.terminate_on_nan).failed == 0


@pytest.mark.parametrize(
    "bad_output",
    [
        float("nan"),
        float("-inf"),
        torch.tensor([1.0, float("nan")]),
        (1.0, {"loss": torch.tensor(float("inf"))}),
        [2.0, [3.0, float("nan")]],
        complex(1.0, float("inf")),
    ],
    ids=["nan", "-inf", "tensor", "nested-dict", "nested-list", "complex"],
)
def test_stops_after_the_iteration_whose_output_is_not_finite(bad_output, caplog):
    outputs = [1.0, 2.0, bad_output, 4.0, 5.0]
    trainer = Engine(lambda engine, batch: outputs[engine.state.iteration - 1])
    trainer.add_event_handler(Events.ITERATION_COMPLETED, TerminateOnNan())
    completed = []
    trainer.add_event_handler(Events.COMPLETED, lambda engine: completed.append(engine.state.iteration))
    state = trainer.run(range(5), max_epochs=3)
    assert (state.iteration, state.epoch, completed) == (3, 1, [3])
    assert "TerminateOnNan: Output" in caplog.text and "contains NaN or Inf. Stop training" in caplog.text


@pytest.mark.parametrize(
    "output", [1.0, 10**400, torch.tensor([1.0, 2.0]), ("text", None, [1, 2.5]), {"a": torch.ones(2, 2)}]
)
def test_finite_outputs_and_other_values_let_the_run_go_on(output):
    trainer = Engine(lambda engine, batch: output)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, TerminateOnNan())
    assert trainer.run(range(4), max_epochs=2).iteration == 8


def test_output_transform_picks_what_is_checked():
    trainer = Engine(lambda engine, batch: {"loss": 1.0, "debug": float("nan")})
    trainer.add_event_handler(Events.ITERATION_COMPLETED, TerminateOnNan(output_transform=lambda output: output["loss"]))
    assert trainer.run(range(3)).iteration == 3


def test_a_non_callable_output_transform_is_refused():
    with pytest.raises(TypeError, match=r"^output_transform should be fn\(output\) -> what to check, got 'loss' of type str$"):
        TerminateOnNan(output_transform="loss")
