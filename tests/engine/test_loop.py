"""Positions of the run loop (nbengine/engine/loop.py): a state dict taken at every boundary, or inside
a handler, loads into a new engine that goes on exactly from there; an interrupt inside a handler
continues from that handler."""

from __future__ import annotations

import pytest

from nbengine.engine import DeterministicEngine, Engine, Events

EVENTS = [event for event in Events if event is not Events.EXCEPTION_RAISED]


def recorded(engine_cls, log: list, data_log: list):
    engine = engine_cls(lambda engine, batch: data_log.append(batch) or batch * 2)
    for event in EVENTS:
        engine.add_event_handler(event, lambda e, name=event.name: log.append((name, e.state.epoch, e.state.iteration)))
    return engine


def uninterrupted(engine_cls, run_kwargs) -> tuple[list, list]:
    log, batches = [], []
    recorded(engine_cls, log, batches).run(**run_kwargs)
    return log, batches


RUNS = {
    # 4 batches, epochs of 6: the data restarts inside each epoch (DATALOADER_STOP_ITERATION).
    "data restarts inside epochs": dict(data=[1, 2, 3, 4], max_epochs=3, epoch_length=6),
    "data of the epoch's length": dict(data=[1, 2, 3], max_epochs=2),
}


@pytest.mark.parametrize("run_name", list(RUNS))
def test_a_state_dict_from_every_boundary_loads_and_goes_on_exactly(run_name):
    run_kwargs = RUNS[run_name]
    reference_log, reference_batches = uninterrupted(DeterministicEngine, run_kwargs)
    for boundary in range(1, len(reference_log)):
        log, batches = [], []
        first = recorded(DeterministicEngine, log, batches)
        first.step(events=boundary, **run_kwargs)
        assert log == reference_log[:boundary]
        saved = first.state_dict()

        resumed_log, resumed_batches = [], []
        second = recorded(DeterministicEngine, resumed_log, resumed_batches)
        second.load_state_dict(saved)
        second.run(run_kwargs["data"])
        # A run loaded from a state dict fires STARTED again (ignite's rule), then goes on from the boundary.
        assert resumed_log[0][0] == "STARTED", boundary
        assert resumed_log[1:] == reference_log[boundary:], (boundary, reference_log[boundary - 1], saved)
        # Every batch reaches the process function once, the one in flight included.
        assert batches + resumed_batches == reference_batches, boundary


def test_a_state_dict_taken_inside_a_handler_resumes_after_that_handler():
    calls = []
    saved = {}

    def make():
        engine = Engine(lambda e, b: b)
        engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: calls.append(("before", e.state.epoch)))
        engine.add_event_handler(
            Events.EPOCH_COMPLETED, lambda e: saved.setdefault(e.state.epoch, e.state_dict()) and calls.append(("save", e.state.epoch))
        )
        engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: calls.append(("after", e.state.epoch)))
        return engine

    make().run([1, 2], max_epochs=3)
    reference = list(calls)
    assert saved[2]["boundary"] == {"event": "EPOCH_COMPLETED", "handlers_done": 2, "epoch": 2, "iteration_in_epoch": 2}

    calls.clear()
    engine = make()
    engine.load_state_dict(saved[2])
    engine.run([1, 2])
    # Epoch 2's handlers after the one that saved run, then epoch 3 as in the uninterrupted run.
    assert calls == [("after", 2)] + reference[reference.index(("after", 2)) + 1:]


def test_an_interrupt_in_a_handler_continues_from_that_handler_and_not_before():
    calls = []
    raised = []

    engine = Engine(lambda e, b: None)
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: calls.append(("a", e.state.iteration)))

    def interrupting(e):
        if e.state.iteration == 2 and not raised:
            raised.append(True)
            raise KeyboardInterrupt
        calls.append(("b", e.state.iteration))

    engine.add_event_handler(Events.ITERATION_COMPLETED, interrupting)
    with pytest.raises(KeyboardInterrupt, match=r"run paused by interrupt at epoch 1, iteration 2"):
        engine.run([1, 2, 3], max_epochs=1)
    assert engine.status == "paused"
    # Where it stands, for a checkpoint taken now: inside ITERATION_COMPLETED, one handler done.
    assert engine.state_dict()["boundary"] == {
        "event": "ITERATION_COMPLETED", "handlers_done": 1, "epoch": 1, "iteration_in_epoch": 2, "output": None,
    }
    engine.run()
    assert calls == [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3), ("b", 3)]


def test_a_state_dict_in_ignites_form_resumes_as_ignite_does():
    log, batches = [], []
    engine = recorded(Engine, log, batches)
    engine.load_state_dict({"iteration": 4, "epoch_length": 3, "max_epochs": 2})
    assert (engine.state.epoch, engine.state.iteration) == (1, 4)
    engine.run([10, 20, 30])
    # ignite: EPOCH_STARTED of epoch 2 fires again, the data opens from its start, the epoch's count goes on.
    assert [name for name, *_ in log][:3] == ["STARTED", "EPOCH_STARTED", "GET_BATCH_STARTED"]
    assert batches == [10, 20]
    assert engine.state.iteration == 6


@pytest.mark.parametrize(
    "boundary, message",
    [
        ({"event": "INTERRUPT", "handlers_done": None, "epoch": 1, "iteration_in_epoch": 0}, r"\['event'\] should be the name of a built-in event"),
        ({"event": "ITERATION_COMPLETED", "handlers_done": -1, "epoch": 1, "iteration_in_epoch": 0}, r"\['handlers_done'\] should be a non-negative integer, got -1"),
        ({"event": "ITERATION_COMPLETED", "handlers_done": None, "epoch": "1", "iteration_in_epoch": 0}, r"\['epoch'\] should be a non-negative integer, got '1'"),
        ("EPOCH_COMPLETED", r"state_dict\['boundary'\] should be a mapping, got str"),
    ],
)
def test_a_bad_boundary_is_refused_naming_it(boundary, message):
    engine = Engine(lambda e, b: b)
    with pytest.raises((ValueError, TypeError), match=message):
        engine.load_state_dict({"iteration": 1, "epoch_length": 3, "max_epochs": 2, "boundary": boundary})
    assert engine.state.iteration == 0


def test_stop_ends_a_loaded_run_where_it_stands():
    calls = []
    first = Engine(lambda e, b: b)
    first.step(4, data=[1, 2, 3], max_epochs=3)
    saved = first.state_dict()

    engine = Engine(lambda e, b: b)
    for event in (Events.STARTED, Events.ITERATION_COMPLETED, Events.TERMINATE, Events.COMPLETED):
        engine.add_event_handler(event, lambda e, name=event.name: calls.append((name, e.state.iteration)))
    engine.load_state_dict(saved)
    engine.set_data([1, 2, 3])
    engine.stop()
    assert calls == [("STARTED", 4), ("TERMINATE", 4), ("COMPLETED", 4)]
    assert engine.status == "done"
