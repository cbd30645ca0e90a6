"""BasicTimeProfiler: data, process-function and per-event handler times, measured through the engine's
trace hook. ``time.perf_counter`` is replaced by a clock that only the work in the test advances, so the
measured values are exact and independent of the machine's speed."""

from __future__ import annotations

import csv
import doctest
import time

import pytest

import nbengine.handlers.time_profilers
from nbengine.engine import Engine, Events
from nbengine.handlers import BasicTimeProfiler


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SlowData:
    """Three batches, each taking 0.5 s (on the test's clock) to fetch."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def __len__(self) -> int:
        return 3

    def __iter__(self):
        for batch in range(3):
            self.clock.advance(0.5)
            yield batch


def test_doctests():
    assert doctest.testmod(nbengine.handlers.time_profilers).failed == 0


def profiled_run(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(time, "perf_counter", clock)
    trainer = Engine(lambda engine, batch: clock.advance(2.0))

    def validate(engine):
        clock.advance(4.0)

    trainer.add_event_handler(Events.EPOCH_COMPLETED, validate)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: clock.advance(0.25))
    profiler = BasicTimeProfiler()
    profiler.attach(trainer)
    trainer.run(SlowData(clock), max_epochs=2)
    return profiler


def test_each_part_of_an_iteration_is_measured_exactly(monkeypatch):
    profiler = profiled_run(monkeypatch)
    assert profiler.processing_times.tolist() == [2.0] * 6
    assert profiler.dataflow_times.tolist() == [0.5] * 6
    handlers = profiler.event_handlers_times
    assert handlers["ITERATION_COMPLETED"].tolist() == [0.25] * 6
    assert handlers["EPOCH_COMPLETED"].tolist() == [4.0, 4.0]
    assert handlers["STARTED"].tolist() == [0.0]


def test_results_have_ignites_layout(monkeypatch):
    results = profiled_run(monkeypatch).get_results()
    assert list(results) == ["processing_stats", "dataflow_stats", "event_handlers_stats", "event_handlers_names"]
    assert dict(results["processing_stats"]) == {
        "total": 12.0, "min/index": (2.0, 0), "max/index": (2.0, 0), "mean": 2.0, "std": 0.0,
    }
    assert results["event_handlers_stats"]["total_time"].item() == pytest.approx(6 * 0.25 + 2 * 4.0)
    assert results["event_handlers_stats"]["STARTED"] == {"total": "not yet triggered"}
    names = results["event_handlers_names"]
    assert names["EPOCH_COMPLETED_names"] == ["profiled_run.<locals>.validate"]
    assert names["ITERATION_COMPLETED_names"] == ["profiled_run.<locals>.<lambda>"]
    printed = BasicTimeProfiler.print_results(results)
    assert "Processing function:\n12.00000 | 2.00000/0 | 2.00000/0 | 2.00000 | 0.00000" in printed
    assert "- Events.EPOCH_COMPLETED: ['profiled_run.<locals>.validate']\n8.00000 | 4.00000/0" in printed


def test_write_results_gives_one_row_per_iteration(monkeypatch, tmp_path):
    profiled_run(monkeypatch).write_results(tmp_path / "profile.csv")
    with open(tmp_path / "profile.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(row["epoch"], row["iteration"]) for row in rows] == [
        ("1.0", "1.0"), ("1.0", "2.0"), ("1.0", "3.0"), ("2.0", "4.0"), ("2.0", "5.0"), ("2.0", "6.0"),
    ]
    assert {row["processing_stats"] for row in rows} == {"2.0"}
    assert {row["Event_EPOCH_COMPLETED"] for row in rows} == {"4.0"}


def test_detach_stops_profiling_and_bad_input_is_refused():
    trainer = Engine(lambda engine, batch: None)
    profiler = BasicTimeProfiler()
    with pytest.raises(RuntimeError, match="has no results yet"):
        profiler.get_results()
    profiler.attach(trainer)
    profiler.detach()
    trainer.run(range(2))
    with pytest.raises(RuntimeError, match="has no results yet"):
        profiler.get_results()
    with pytest.raises(TypeError, match=r"^Argument engine should be nbengine.engine.Engine, but given <class 'str'>$"):
        profiler.attach("trainer")


def test_data_without_a_length_needs_epoch_length():
    trainer = Engine(lambda engine, batch: None)
    BasicTimeProfiler().attach(trainer)
    with pytest.raises(ValueError, match="As epoch_length is not set, we can not use BasicTimeProfiler"):
        trainer.run(iter(range(3)))
