"""Status, stepping, background control, boundary calls, trace hooks and times."""

from __future__ import annotations

import threading
import time

import pytest

from nbengine.engine import Engine, Events


def test_status_moves_through_idle_paused_running_done():
    statuses = []
    engine = Engine(lambda e, b: statuses.append(e.status))
    assert engine.status == "idle"
    engine.step(data=[1, 2])
    assert engine.status == "paused"
    engine.run()
    assert statuses == ["running", "running"]
    assert engine.status == "done"


def test_set_data_switches_the_next_batch():
    seen = []
    engine = Engine(lambda e, b: seen.append(b))
    engine.step(2, data=[1, 2, 3, 4])
    engine.set_data([10, 20, 30, 40])
    engine.run()
    assert seen == [1, 2, 10, 20]


def test_run_with_new_data_while_paused_switches_the_data():
    seen = []
    engine = Engine(lambda e, b: seen.append(b))
    engine.step(data=[1, 2, 3])
    engine.run(["a", "b", "c"])
    assert seen == [1, "a", "b"]


def test_until_a_custom_event_stops_at_the_next_boundary():
    def process(engine, batch):
        if batch == 3:
            engine.fire_event("spike")
        return batch

    engine = Engine(process)
    engine.register_events("spike")
    engine.step(until="spike", data=[1, 2, 3, 4, 5])
    assert (engine.state.iteration, engine.last_event) == (3, Events.ITERATION_COMPLETED)


def test_an_event_fired_while_paused_runs_its_handlers_but_leaves_the_position():
    engine = Engine(lambda e, b: b)
    engine.register_events("saved")
    heard = []
    engine.add_event_handler("saved", lambda e: heard.append((e.state.iteration, e.last_event)))
    engine.step(2, data=[1, 2, 3])
    engine.fire_event("saved")
    assert heard == [(2, Events.ITERATION_COMPLETED)]
    assert engine.last_event == Events.ITERATION_COMPLETED
    engine.step(events=1)
    assert engine.last_event == Events.GET_BATCH_STARTED


def test_call_at_boundary_runs_on_the_training_thread_between_events():
    release = threading.Event()
    log = []

    def process(engine, batch):
        log.append(("process", threading.current_thread().name))
        release.wait(10)
        return batch

    engine = Engine(process)
    engine.start([1, 2, 3])
    future = engine.call_at_boundary(lambda: log.append(("call", threading.current_thread().name, engine.last_event)) or 42)
    release.set()
    assert future.result(10) == 42
    engine.wait(10)
    call = next(entry for entry in log if entry[0] == "call")
    assert call[1] == "nbengine-run"
    assert call[2] in (Events.ITERATION_COMPLETED, Events.GET_BATCH_STARTED, Events.ITERATION_STARTED)


def test_call_at_boundary_runs_at_once_when_not_running_and_passes_exceptions_on():
    engine = Engine(lambda e, b: b)
    engine.step(data=[1, 2])
    assert engine.call_at_boundary(lambda: engine.state.iteration).result(0) == 1
    failing = engine.call_at_boundary(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(0)


def test_trace_hook_sees_every_event_with_its_handlers_and_timings():
    engine = Engine(lambda e, b: b)

    def slow_handler(engine):
        time.sleep(0.002)

    engine.add_event_handler(Events.ITERATION_COMPLETED(every=2), slow_handler)
    trace = []
    remove = engine.add_trace_hook(lambda event, state, timings: trace.append((event.name, state.iteration, timings)))
    engine.run([1, 2])
    names = [name for name, _, _ in trace]
    assert names == [
        "STARTED", "EPOCH_STARTED", "GET_BATCH_STARTED", "GET_BATCH_COMPLETED", "ITERATION_STARTED",
        "ITERATION_COMPLETED", "GET_BATCH_STARTED", "GET_BATCH_COMPLETED", "ITERATION_STARTED",
        "ITERATION_COMPLETED", "EPOCH_COMPLETED", "COMPLETED",
    ]
    assert trace[5][2] == []
    (handler_name, seconds), = trace[9][2]
    assert handler_name.endswith("slow_handler") and seconds >= 0.002
    remove()
    trace.clear()
    engine.run([1, 2])
    assert trace == []


def test_times_leave_paused_time_out():
    engine = Engine(lambda e, b: time.sleep(0.01))
    engine.step(data=[1, 2, 3])
    time.sleep(0.3)
    engine.run()
    assert 0.03 <= engine.state.times["COMPLETED"] < 0.25
    assert 0.03 <= engine.state.times["EPOCH_COMPLETED"] < 0.25


def test_start_again_stops_the_earlier_background_run():
    release = threading.Event()
    completed = []
    engine = Engine(lambda e, b: release.wait(0.01))
    engine.add_event_handler(Events.TERMINATE, lambda e: completed.append("terminated"))
    engine.start(range(1000), max_epochs=100)
    first = engine._driver.thread
    engine.start()
    assert not first.is_alive()
    assert completed == ["terminated"]
    engine.stop()
    engine.wait(10)
    assert engine.status == "done"


def test_stop_while_paused_ends_the_run_in_the_caller():
    events = []
    engine = Engine(lambda e, b: b)
    engine.add_event_handler(Events.TERMINATE | Events.COMPLETED, lambda e: events.append(e.last_event.name))
    engine.step(data=[1, 2, 3])
    engine.stop()
    assert events == ["TERMINATE", "COMPLETED"]
    assert engine.status == "done"


def test_background_failure_is_kept_and_reraised_by_wait():
    engine = Engine(lambda e, b: 1 / 0 if b == 3 else b)
    engine.start([1, 2, 3, 4])
    with pytest.raises(ZeroDivisionError) as first:
        engine.wait(10)
    assert engine.status == "failed"
    assert isinstance(engine.error, ZeroDivisionError)
    assert engine.state.iteration == 3
    # Every caller of wait() hears of the failure, not only the first, until the engine is driven again.
    with pytest.raises(ZeroDivisionError) as second:
        engine.wait(10)
    assert second.value is first.value is engine.error
    engine.run([1, 2], max_epochs=1)
    assert engine.wait(10) is engine.state


def test_pause_does_nothing_when_not_running():
    engine = Engine(lambda e, b: b)
    engine.pause()
    engine.run([1, 2])
    assert engine.status == "done"


def test_status_hooks_hear_every_end_of_driving():
    heard = []
    engine = Engine(lambda e, b: 1 / 0 if b == "boom" else b)
    remove = engine.add_status_hook(lambda eng, status: heard.append((status, eng.state.iteration)))
    engine.step(2, data=[1, 2, 3])
    engine.run()
    engine.start(["x", "boom"])
    with pytest.raises(ZeroDivisionError):
        engine.wait(10)
    remove()
    engine.run([1])
    assert heard == [("paused", 2), ("done", 3), ("failed", 2)]


def test_background_steps_pause_where_asked():
    engine = Engine(lambda e, b: b)
    engine.start(range(10), max_epochs=3, until=Events.EPOCH_COMPLETED)
    engine.wait(10)
    assert (engine.status, engine.state.iteration, engine.last_event) == ("paused", 10, Events.EPOCH_COMPLETED)
    engine.resume(5)
    engine.wait(10)
    assert (engine.status, engine.state.iteration, engine.last_event) == ("paused", 15, Events.ITERATION_COMPLETED)
    engine.resume(events=1)
    engine.wait(10)
    assert (engine.status, engine.state.iteration, engine.last_event) == ("paused", 15, Events.GET_BATCH_STARTED)
    engine.resume(until=Events.ITERATION_COMPLETED(every=7))
    engine.wait(10)
    assert (engine.status, engine.state.iteration) == ("paused", 21)
    engine.resume()
    engine.wait(10)
    assert (engine.status, engine.state.iteration) == ("done", 30)


def test_a_background_step_can_be_paused_before_it_arrives():
    release = threading.Event()
    engine = Engine(lambda e, b: release.wait(10))
    engine.start(range(100), until=Events.EPOCH_COMPLETED)
    engine.pause()
    release.set()
    engine.wait(10)
    assert engine.status == "paused"
    assert engine.state.iteration < 100
