"""Timer: total and per-step time between the events it is attached to, and its state_dict. Time is read
from a clock the test advances, so nothing here depends on how fast the machine is."""

from __future__ import annotations

import doctest

import pytest

import nbengine.handlers.timing
from nbengine.engine import Engine, Events
from nbengine.handlers import Timer


class Clock:
    """Stands in for time.perf_counter: time moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(nbengine.handlers.timing, "perf_counter", clock)
    return clock


def test_doctests():
    assert doctest.testmod(nbengine.handlers.timing).failed == 0


def test_total_per_batch_and_per_epoch_times(clock):
    def work(engine, batch):
        clock.advance(0.5)

    trainer = Engine(work)
    evaluator = Engine(work)
    total = Timer().attach(trainer)
    per_batch = Timer(average=True).attach(
        trainer, pause=Events.ITERATION_COMPLETED, resume=Events.ITERATION_STARTED, step=Events.ITERATION_COMPLETED
    )
    training_only = Timer().attach(trainer, pause=Events.EPOCH_COMPLETED, resume=Events.EPOCH_STARTED)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: evaluator.run(range(2)))
    trainer.run(range(3), max_epochs=2)
    assert total.value() == pytest.approx(2 * (3 + 2) * 0.5)
    assert per_batch.value() == pytest.approx(0.5)
    assert per_batch.step_count == 6.0
    assert training_only.value() == pytest.approx(2 * 3 * 0.5)
    total.reset()
    assert total.value() == 0.0


def test_pause_and_resume_only_count_the_running_stretches(clock):
    timer = Timer()
    clock.advance(2.0)
    timer.pause()
    clock.advance(5.0)
    assert timer.value() == 2.0
    timer.resume()
    clock.advance(1.0)
    assert (timer.value(), timer.running) == (3.0, True)


def test_state_dict_continues_the_count_in_a_new_timer(clock):
    timer = Timer(average=True)
    clock.advance(3.0)
    timer.step()
    timer.step()
    state = timer.state_dict()
    assert dict(state) == {"total": 3.0, "step_count": 2.0, "running": True}
    resumed = Timer(average=True)
    clock.advance(50.0)  # the time between saving and loading is not counted
    resumed.load_state_dict(state)
    clock.advance(1.0)
    resumed.step()
    assert resumed.value() == pytest.approx(4.0 / 3)


def test_bad_input_is_refused():
    with pytest.raises(TypeError, match=r"^Argument average should be True or False, got 'yes'$"):
        Timer(average="yes")
    with pytest.raises(ValueError, match=r"^Required state attribute 'step_count' is absent in provided state_dict"):
        Timer().load_state_dict({"total": 1.0, "running": False})
