"""EventTimeline: exact event records, handler timings, the ring buffer bound, filters, threads, errors."""

from __future__ import annotations

import time

import pytest

from nbengine.engine import Engine, EventEnum, Events
from nbengine.handlers import EventTimeline, TimelineEntry


def _triples(entries):
    return [(entry.event, entry.epoch, entry.iteration) for entry in entries]


def test_records_every_event_in_order_with_epoch_and_iteration():
    engine = Engine(lambda engine, batch: batch)
    timeline = EventTimeline().attach(engine)
    engine.run([10, 20], max_epochs=2)
    # ignite's order: the batch is fetched before the iteration counter moves, and a list that runs
    # out inside epoch 2 fires DATALOADER_STOP_ITERATION before it is iterated again.
    expected = [
        ("STARTED", 0, 0), ("EPOCH_STARTED", 1, 0),
        ("GET_BATCH_STARTED", 1, 0), ("GET_BATCH_COMPLETED", 1, 0), ("ITERATION_STARTED", 1, 1), ("ITERATION_COMPLETED", 1, 1),
        ("GET_BATCH_STARTED", 1, 1), ("GET_BATCH_COMPLETED", 1, 1), ("ITERATION_STARTED", 1, 2), ("ITERATION_COMPLETED", 1, 2),
        ("EPOCH_COMPLETED", 1, 2), ("EPOCH_STARTED", 2, 2),
        ("GET_BATCH_STARTED", 2, 2), ("DATALOADER_STOP_ITERATION", 2, 2), ("GET_BATCH_COMPLETED", 2, 2),
        ("ITERATION_STARTED", 2, 3), ("ITERATION_COMPLETED", 2, 3),
        ("GET_BATCH_STARTED", 2, 3), ("GET_BATCH_COMPLETED", 2, 3), ("ITERATION_STARTED", 2, 4), ("ITERATION_COMPLETED", 2, 4),
        ("EPOCH_COMPLETED", 2, 4), ("COMPLETED", 2, 4),
    ]  # fmt: skip
    entries = timeline.snapshot()
    assert _triples(entries) == expected
    assert [entry.seq for entry in entries] == list(range(1, len(expected) + 1))
    assert timeline.count == len(expected)
    times = [entry.time for entry in entries]
    assert times == sorted(times) and times[0] >= 0.0


def test_lists_the_handlers_that_ran_with_their_durations():
    engine = Engine(lambda engine, batch: batch)

    def slow_handler(engine):
        time.sleep(0.02)

    class Logger:
        def on_epoch(self, engine):
            pass

    logger = Logger()
    engine.add_event_handler(Events.ITERATION_COMPLETED(every=2), slow_handler)
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: None)
    engine.add_event_handler(Events.EPOCH_COMPLETED, logger.on_epoch)
    timeline = EventTimeline().attach(engine)
    engine.run([1, 2, 3], max_epochs=1)

    completed = timeline.snapshot(events=[Events.ITERATION_COMPLETED])
    names = [[name for name, _ in entry.handlers] for entry in completed]
    lambda_name = "test_lists_the_handlers_that_ran_with_their_durations.<locals>.<lambda>"
    slow_name = "test_lists_the_handlers_that_ran_with_their_durations.<locals>.slow_handler"
    # every=2 runs the slow handler at iteration 2 only; the plain one runs every time.
    assert names == [[lambda_name], [slow_name, lambda_name], [lambda_name]]
    slow_seconds = dict(completed[1].handlers)[slow_name]
    assert slow_seconds >= 0.02  # the handler slept that long: the timing covers the handler call
    assert completed[1].handler_seconds == pytest.approx(sum(seconds for _, seconds in completed[1].handlers))
    (epoch_entry,) = timeline.snapshot(events=["EPOCH_COMPLETED"])
    assert [name for name, _ in epoch_entry.handlers] == ["test_lists_the_handlers_that_ran_with_their_durations.<locals>.Logger.on_epoch"]
    assert timeline.snapshot(events=["STARTED"])[0].handlers == ()


def test_the_ring_buffer_keeps_only_the_last_capacity_events():
    engine = Engine(lambda engine, batch: batch)
    timeline = EventTimeline(capacity=5).attach(engine)
    engine.run(data=None, epoch_length=10, max_epochs=3)
    # No data: per iteration only ITERATION_STARTED and ITERATION_COMPLETED.
    total = 1 + 3 * (1 + 2 * 10 + 1) + 1
    assert timeline.count == total
    entries = timeline.snapshot()
    assert [entry.seq for entry in entries] == list(range(total - 4, total + 1))
    assert _triples(entries) == [
        ("ITERATION_COMPLETED", 3, 29),
        ("ITERATION_STARTED", 3, 30),
        ("ITERATION_COMPLETED", 3, 30),
        ("EPOCH_COMPLETED", 3, 30),
        ("COMPLETED", 3, 30),
    ]
    assert len(timeline._entries) == 5


def test_filter_by_event_type_and_last():
    engine = Engine(lambda engine, batch: batch)
    timeline = EventTimeline().attach(engine)
    engine.run(data=None, epoch_length=3, max_epochs=2)
    assert _triples(timeline.snapshot(events=[Events.EPOCH_STARTED, "EPOCH_COMPLETED"])) == [
        ("EPOCH_STARTED", 1, 0),
        ("EPOCH_COMPLETED", 1, 3),
        ("EPOCH_STARTED", 2, 3),
        ("EPOCH_COMPLETED", 2, 6),
    ]
    # A filtered event means its type: the filter itself does not narrow the timeline.
    assert [e.iteration for e in timeline.snapshot(events=[Events.ITERATION_COMPLETED(every=2)], last=2)] == [5, 6]
    assert timeline.snapshot(last=0) == []
    assert _triples(timeline.snapshot(last=1)) == [("COMPLETED", 2, 6)]


def test_custom_events_fired_inside_the_process_function_are_recorded_in_place():
    class Backprop(EventEnum):
        BACKWARD_DONE = "backward_done"

    def process(engine, batch):
        engine.fire_event(Backprop.BACKWARD_DONE)
        return batch

    engine = Engine(process)
    engine.register_events(*Backprop)
    timeline = EventTimeline().attach(engine)
    engine.run(data=None, epoch_length=1, max_epochs=1)
    assert [entry.event for entry in timeline.snapshot()] == [
        "STARTED",
        "EPOCH_STARTED",
        "ITERATION_STARTED",
        "BACKWARD_DONE",
        "ITERATION_COMPLETED",
        "EPOCH_COMPLETED",
        "COMPLETED",
    ]


def test_stepping_one_event_at_a_time_adds_exactly_one_entry_each():
    engine = Engine(lambda engine, batch: batch)
    timeline = EventTimeline().attach(engine)
    engine.step(events=1, data=[1, 2], max_epochs=1)
    assert _triples(timeline.snapshot()) == [("STARTED", 0, 0)]
    engine.step(events=1)
    engine.step(events=1)
    assert _triples(timeline.snapshot()) == [("STARTED", 0, 0), ("EPOCH_STARTED", 1, 0), ("GET_BATCH_STARTED", 1, 0)]
    engine.step(until=Events.ITERATION_COMPLETED)
    assert _triples(timeline.snapshot()[3:]) == [
        ("GET_BATCH_COMPLETED", 1, 0), ("ITERATION_STARTED", 1, 1), ("ITERATION_COMPLETED", 1, 1)
    ]  # fmt: skip
    assert timeline.count == 6


def test_detach_stops_recording_and_keeps_what_was_recorded():
    engine = Engine(lambda engine, batch: batch)
    timeline = EventTimeline().attach(engine)
    engine.step(events=2, data=[1, 2], max_epochs=1)
    timeline.detach()
    assert timeline.engine is None
    engine.run()
    assert _triples(timeline.snapshot()) == [("STARTED", 0, 0), ("EPOCH_STARTED", 1, 0)]
    # Once detached it can record another engine; clear() starts the count again.
    other = Engine(lambda engine, batch: batch)
    timeline.clear()
    timeline.attach(other)
    other.run(data=None, epoch_length=1, max_epochs=1)
    assert [entry.seq for entry in timeline.snapshot()] == [1, 2, 3, 4, 5, 6]


def test_snapshots_from_another_thread_during_a_background_run_are_consistent():
    engine = Engine(lambda engine, batch: batch)
    timeline = EventTimeline(capacity=300).attach(engine)
    engine.start(data=None, epoch_length=50, max_epochs=40)
    snapshots = []
    while engine.status == "running" or not snapshots:
        entries = timeline.snapshot()
        if entries:
            snapshots.append(entries)
    engine.wait(timeout=60)
    snapshots.append(timeline.snapshot())
    for entries in snapshots:
        seqs = [entry.seq for entry in entries]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert 1 <= len(entries) <= 300
    assert snapshots[-1][-1][1:4] == ("COMPLETED", 40, 2000)
    assert timeline.count == 1 + 40 * (2 + 2 * 50) + 1


@pytest.mark.parametrize(
    ("make_call", "error", "match"),
    [
        (lambda: EventTimeline(capacity=0), ValueError, r"capacity should be a positive integer number of events, got 0"),
        (lambda: EventTimeline(capacity=2.5), ValueError, r"capacity should be a positive integer .* got 2\.5"),
        (lambda: EventTimeline(capacity=True), ValueError, r"capacity should be a positive integer .* got True"),
        (lambda: EventTimeline().attach(object()), TypeError, r"engine should be an nbengine Engine .* of type object"),
        (lambda: EventTimeline().snapshot(events="ITERATION_COMPLETED"), TypeError, r"events should be an iterable of events or event names, got 'ITERATION_COMPLETED'"),
        (lambda: EventTimeline().snapshot(events=[3]), TypeError, r"events\[0\] should be an event or an event name, got 3"),
        (lambda: EventTimeline().snapshot(last=-1), ValueError, r"last should be a non-negative integer or None, got -1"),
    ],
)
def test_bad_input_is_refused_with_a_message(make_call, error, match):
    with pytest.raises(error, match=match):
        make_call()


def test_attaching_twice_is_refused():
    engine = Engine(lambda engine, batch: batch)
    timeline = EventTimeline().attach(engine)
    with pytest.raises(RuntimeError, match=r"this EventTimeline already records .*; detach\(\) it first"):
        timeline.attach(Engine(lambda engine, batch: batch))


def test_entries_are_named_tuples():
    engine = Engine(lambda engine, batch: batch)
    timeline = EventTimeline().attach(engine)
    engine.run(data=None, epoch_length=1, max_epochs=1)
    first = timeline.snapshot()[0]
    assert isinstance(first, TimelineEntry)
    assert first._fields == ("seq", "event", "epoch", "iteration", "time", "handlers")
    assert (first.seq, first.event, first.handlers) == (1, "STARTED", ())


def test_event_names_lists_the_types_in_the_buffer_in_first_appearance_order():
    engine = Engine(lambda engine, batch: batch)
    timeline = EventTimeline(capacity=3).attach(engine)
    assert timeline.event_names() == []
    engine.step(events=2, data=[1], max_epochs=1)
    assert timeline.event_names() == ["STARTED", "EPOCH_STARTED"]
    engine.run()
    # Only the last three events are held: ITERATION_COMPLETED, EPOCH_COMPLETED, COMPLETED.
    assert timeline.event_names() == ["ITERATION_COMPLETED", "EPOCH_COMPLETED", "COMPLETED"]


def test_with_outputs_the_numeric_outputs_of_the_last_iterations_are_kept():
    import torch

    outputs = {1: 0.5, 2: torch.tensor(0.25), 3: "text", 4: True, 5: torch.tensor([1.0, 2.0]), 6: 7}
    engine = Engine(lambda engine, batch: outputs[engine.state.iteration])
    timeline = EventTimeline(outputs=3).attach(engine)
    engine.run(data=None, epoch_length=6, max_epochs=1)
    # Only numbers and one-element tensors are kept: iterations 1, 2 and 6; the buffer holds 3.
    assert timeline.outputs() == [(1, 0.5), (2, 0.25), (6, 7.0)]
    assert timeline.outputs_recorded == 3
    assert timeline.last_output == (6, 7.0)
    engine.run(data=None, epoch_length=6, max_epochs=1)
    # A second run: the buffer holds the last three numeric outputs across both runs.
    assert timeline.outputs() == [(1, 0.5), (2, 0.25), (6, 7.0)]
    assert timeline.outputs_recorded == 6
    timeline.clear()
    assert (timeline.outputs(), timeline.outputs_recorded, timeline.last_output) == ([], 0, None)


def test_a_reader_that_keeps_its_place_gets_every_new_output_once_while_the_run_goes_on():
    engine = Engine(lambda engine, batch: float(engine.state.iteration) / 2)
    timeline = EventTimeline(capacity=50, outputs=100_000).attach(engine)
    engine.start(data=None, epoch_length=1000, max_epochs=30)
    seen, taken, reads = 0, [], 0
    while engine.status == "running" or seen < timeline.outputs_recorded:
        new = timeline.outputs_after(seen)
        reads += 1
        if new:
            assert new[0][0] == seen + 1  # nothing skipped, nothing taken twice
            taken += new
            seen = new[-1][0]
    engine.wait(timeout=60)
    assert reads > 2
    assert [number for number, _, _ in taken] == list(range(1, 30_001))
    assert [(iteration, value) for _, iteration, value in taken] == timeline.outputs()
    assert taken[-1] == (30_000, 30_000, 15_000.0)


def test_outputs_after_gives_only_what_the_ring_buffer_still_holds():
    engine = Engine(lambda engine, batch: float(batch))
    timeline = EventTimeline(outputs=4).attach(engine)
    engine.run(list(range(10)), max_epochs=1)
    assert timeline.outputs_after(2) == [(7, 7, 6.0), (8, 8, 7.0), (9, 9, 8.0), (10, 10, 9.0)]
    assert timeline.outputs_after(9) == [(10, 10, 9.0)]
    assert timeline.outputs_after(10) == []
    assert timeline.outputs_capacity == 4 and EventTimeline().outputs_capacity == 0
    assert EventTimeline().outputs_after(0) == []


def test_without_outputs_none_are_kept():
    engine = Engine(lambda engine, batch: 1.0)
    timeline = EventTimeline().attach(engine)
    engine.run(data=None, epoch_length=2, max_epochs=1)
    assert (timeline.outputs(), timeline.outputs_recorded, timeline.last_output) == ([], 0, None)


@pytest.mark.parametrize("outputs", [-1, 1.5, True, "10"])
def test_bad_outputs_is_refused(outputs):
    with pytest.raises(ValueError, match=r"outputs should be a non-negative integer number of iterations, got"):
        EventTimeline(outputs=outputs)
