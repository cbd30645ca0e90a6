"""EarlyStopping: the improvement rule matches pytorch-ignite's on the same scores, its counter and best
score go through state_dict, and bad arguments are refused with ignite's wording."""

from __future__ import annotations

import doctest
import random

import pytest

import nbengine.engine
import nbengine.handlers.early_stopping
from nbengine.engine import Engine, Events
from nbengine.handlers import EarlyStopping


def test_doctests():
    assert doctest.testmod(nbengine.handlers.early_stopping).failed == 0


def stopping_epochs(engine_module, handler_class, scores, **kwargs):
    """The epoch a run stopped at, and the handler's (counter, best_score) after each epoch."""
    trainer = engine_module.Engine(lambda engine, batch: None)
    values = iter(scores)
    handler = handler_class(score_function=lambda engine: next(values), trainer=trainer, **kwargs)
    trace = []
    trainer.add_event_handler(engine_module.Events.EPOCH_COMPLETED, handler)
    trainer.add_event_handler(
        engine_module.Events.EPOCH_COMPLETED, lambda engine: trace.append((handler.counter, handler.best_score))
    )
    state = trainer.run([0], max_epochs=len(scores))
    return state.epoch, trace


@pytest.mark.parametrize("mode", ["max", "min"])
@pytest.mark.parametrize("threshold_mode", ["abs", "rel"])
@pytest.mark.parametrize("cumulative", [False, True])
@pytest.mark.parametrize("threshold", [0.0, 0.05])
def test_same_decisions_as_ignite(mode, threshold_mode, cumulative, threshold):
    ignite_engine = pytest.importorskip("ignite.engine")
    ignite_handlers = pytest.importorskip("ignite.handlers")
    generator = random.Random(f"{mode}{threshold_mode}{cumulative}{threshold}")
    scores = [1.0 + generator.uniform(-0.1, 0.1) + 0.02 * step for step in range(40)]
    kwargs = dict(patience=3, mode=mode, threshold_mode=threshold_mode, cumulative=cumulative, threshold=threshold)
    ours = stopping_epochs(nbengine.engine, EarlyStopping, scores, **kwargs)
    theirs = stopping_epochs(ignite_engine, ignite_handlers.EarlyStopping, scores, **kwargs)
    assert ours == theirs


def test_state_dict_carries_counter_and_best_score_to_a_new_handler():
    trainer = Engine(lambda engine, batch: None)
    scores = iter([1.0, 0.8, 0.7, 0.6])
    first = EarlyStopping(patience=3, score_function=lambda engine: next(scores), trainer=trainer)
    first(None)
    first(None)
    state = first.state_dict()
    assert dict(state) == {"counter": 1, "best_score": 1.0, "threshold_mode": "abs"}
    second = EarlyStopping(patience=3, score_function=lambda engine: next(scores), trainer=trainer)
    second.load_state_dict(state)
    second(None)
    assert second.counter == 2
    second(None)
    assert second.counter == 3


def test_reset_and_attach():
    trainer = Engine(lambda engine, batch: None)
    evaluator = Engine(lambda engine, batch: None)
    handler = EarlyStopping(patience=2, score_function=lambda engine: 1.0, trainer=trainer)
    handler.counter, handler.best_score = 1, 2.0
    handler.reset()
    assert (handler.counter, handler.best_score) == (0, None)
    handler.attach(evaluator, event=Events.COMPLETED, reset_engine=trainer)
    assert evaluator.has_event_handler(handler, Events.COMPLETED)
    assert trainer.has_event_handler(handler.reset, Events.STARTED)


def test_deprecated_names_warn_and_win():
    trainer = Engine(lambda engine, batch: None)
    with pytest.warns(DeprecationWarning, match="'min_delta' is deprecated"):
        handler = EarlyStopping(2, lambda engine: 1.0, trainer, threshold=0.5, min_delta=0.1)
    assert handler.threshold == 0.1
    with pytest.warns(DeprecationWarning, match="'cumulative_delta' is deprecated"):
        handler.cumulative_delta = True
    assert handler.cumulative is True


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"patience": 0}, ValueError, r"^Argument patience should be positive integer: patience should be a positive integer, got 0$"),
        ({"threshold": -1.0}, ValueError, r"^Argument threshold should not be a negative number\. Got -1\.0$"),
        ({"score_function": 3}, TypeError, r"^Argument score_function should be a function: score_function should be fn\(engine\) -> float, "
         r"got 3 of type int$"),
        ({"trainer": "trainer"}, TypeError, r"^Argument trainer should be an instance of Engine\. Got str$"),
        ({"threshold_mode": "x"}, ValueError, r"^Argument threshold_mode should be either 'abs' or 'rel'\. Got 'x'$"),
        ({"mode": "x"}, ValueError, r"^Argument mode should be either 'min' or 'max'\. Got 'x'$"),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, message):
    arguments = {"patience": 2, "score_function": lambda engine: 0.0, "trainer": Engine(lambda engine, batch: None)}
    with pytest.raises(error, match=message):
        EarlyStopping(**{**arguments, **kwargs})


@pytest.mark.parametrize(
    "state, error, message",
    [
        (None, TypeError, r"^Argument state_dict should be a dictionary, but given <class 'NoneType'>: state_dict should be a "
         r"mapping, got NoneType$"),
        ({"counter": 1}, ValueError, r"^Required state attribute 'best_score' is absent in provided state_dict"),
    ],
)
def test_bad_state_dicts_are_refused(state, error, message):
    handler = EarlyStopping(2, lambda engine: 0.0, Engine(lambda engine, batch: None))
    with pytest.raises(error, match=message):
        handler.load_state_dict(state)
