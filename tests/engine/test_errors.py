"""Bad input is refused at call or attach time, with a message naming the argument, value and expectation."""

from __future__ import annotations

import threading

import pytest

from nbengine.engine import Engine, EventEnum, Events


class Unregistered(EventEnum):
    SOMETHING = "something"


def engine():
    return Engine(lambda e, b: b)


def paused_engine():
    e = engine()
    e.step(data=[1, 2, 3])
    return e


ERRORS = [
    ("every=0", lambda: Events.ITERATION_COMPLETED(every=0), ValueError, r"every should be an integer greater than zero, got 0"),
    ("every=1.5", lambda: Events.ITERATION_COMPLETED(every=1.5), ValueError, r"every should be .* got 1.5"),
    ("once=-1", lambda: Events.ITERATION_COMPLETED(once=-1), ValueError, r"once should be a positive integer .* got -1"),
    ("once=[]", lambda: Events.ITERATION_COMPLETED(once=[]), ValueError, r"once should be .* got \[\]"),
    ("before=-2", lambda: Events.EPOCH_STARTED(before=-2), ValueError, r"before should be .* got -2"),
    ("after='3'", lambda: Events.EPOCH_STARTED(after="3"), ValueError, r"after should be .* got '3'"),
    ("two filters", lambda: Events.STARTED(every=2, once=3), ValueError, r"STARTED\(\.\.\.\) takes exactly one of .* got \['once', 'every/before/after'\]"),
    ("no filter", lambda: Events.STARTED(), ValueError, r"takes exactly one of .* got none of them"),
    ("filter not callable", lambda: Events.STARTED(event_filter=3), TypeError, r"event_filter should be a callable taking \(engine, event\), got 3"),
    ("filter signature", lambda: Events.STARTED(event_filter=lambda x: True), ValueError, r"event_filter .*\(x\) cannot be called with \(engine, event\)"),
    ("| non-event", lambda: Events.STARTED | 5, TypeError, r"only events can be combined with \|, got 5"),
    ("process function", lambda: Engine(lambda: None), ValueError, r"process_function .*\(\) cannot be called with \(engine, batch\)"),
    ("handler signature", lambda: engine().add_event_handler(Events.STARTED, lambda a, b, c: None), ValueError,
     r"handler .*\(a, b, c\) for STARTED cannot be called with \(engine\) nor with \(\)"),
    ("handler args", lambda: engine().add_event_handler(Events.STARTED, lambda e: None, 1, k=2), ValueError,
     r"cannot be called with \(engine, 1, k=\) nor with \(1, k=\)"),
    ("exception handler", lambda: engine().add_event_handler(Events.EXCEPTION_RAISED, lambda: None), ValueError,
     r"for EXCEPTION_RAISED cannot be called with \(engine, exception\) nor with \(exception\)"),
    ("handler not callable", lambda: engine().add_event_handler(Events.STARTED, 3), TypeError, r"handler should be callable, got 3"),
    ("unregistered event", lambda: engine().add_event_handler(Unregistered.SOMETHING, lambda: None), ValueError,
     r"event_name Events.SOMETHING is not an event this Engine knows; register custom events"),
    ("unknown string event", lambda: engine().add_event_handler("nope", lambda: None), ValueError, r"event_name 'nope' is not an event"),
    ("not an event", lambda: engine().add_event_handler(42, lambda: None), TypeError, r"event_name should be an event .* got 42"),
    ("fire unknown", lambda: engine().fire_event("nope"), ValueError, r"event_name 'nope' is not an event"),
    ("register non-event", lambda: engine().register_events(3), TypeError, r"Value at 0 of event_names should be a str or EventEnum, but given 3"),
    ("register clash", lambda: engine().register_events("STARTED"), ValueError, r"event_names\[0\] 'STARTED' has the same name"),
    ("remove from event without handlers", lambda: engine().remove_event_handler(print, Events.STARTED), ValueError, r"Input event name 'Events.STARTED' does not exist: no handler is attached to it"),
    ("data not iterable", lambda: engine().run(42), TypeError, r"data should be an iterable .* got 42 of type int"),
    ("max_epochs=0", lambda: engine().run([1], max_epochs=0), ValueError, r"max_epochs should be a positive integer or None, got 0"),
    ("epoch_length=-1", lambda: engine().run([1], epoch_length=-1), ValueError, r"epoch_length should be a positive integer or None, got -1"),
    ("both limits", lambda: engine().run([1], max_epochs=2, max_iters=3), ValueError, r"Arguments max_iters and max_epochs are mutually exclusive\. Please provide only max_epochs or max_iters; got max_epochs=2 and max_iters=3"),
    ("no data no length", lambda: engine().run(), ValueError, r"epoch_length should be provided if data is None: give epoch_length, or data to run on"),
    ("empty data", lambda: engine().run([]), ValueError, r"Input data has zero size\. Please provide non-empty data: got \[\] of length 0"),
    ("max_epochs below epoch", lambda: _max_epochs_below_epoch(), ValueError,
     r"Argument max_epochs should be greater than or equal to the start epoch defined in the state: 1 vs 2"),
    ("epoch_length change", lambda: paused_engine().run(epoch_length=2), ValueError, r"Argument epoch_length should be same as in the state, but given 2 vs 3: epoch_length=2 differs"),
    ("step n=0", lambda: engine().step(0, data=[1]), ValueError, r"n \(a number of iterations\) should be a positive integer, got 0"),
    ("step two conditions", lambda: engine().step(2, events=3, data=[1]), ValueError, r"step\(\) takes one of n=, until= or events=, got n, events"),
    ("step until unknown", lambda: engine().step(until="nope", data=[1]), ValueError, r"until 'nope' is not an event"),
    ("state_dict both keys", lambda: engine().load_state_dict({"iteration": 3, "epoch": 1, "epoch_length": 3, "max_epochs": 2}), ValueError,
     r"State dictionary should contain only one of 'iteration' or 'epoch' keys\. Found both: iteration=3, epoch=1"),
    ("state_dict neither key", lambda: engine().load_state_dict({"epoch_length": 3, "max_epochs": 2}), ValueError,
     r"Required state attribute 'iteration' is absent in provided state_dict \['epoch_length', 'max_epochs'\]"),
    ("state_dict missing keys", lambda: engine().load_state_dict({"iteration": 3}), ValueError,
     r"Required state attribute 'epoch_length' is absent in provided state_dict \['iteration'\]"),
    ("state_dict user key", lambda: _missing_user_key(), ValueError, r"Required user state attribute 'alpha' is absent in provided state_dict"),
    ("state_dict negative", lambda: engine().load_state_dict({"iteration": -1, "epoch_length": 3, "max_epochs": 2}), ValueError,
     r"state_dict\['iteration'\] should be a non-negative integer, got -1"),
    ("state_dict epoch w/o length", lambda: engine().load_state_dict({"epoch": 2, "epoch_length": None, "max_epochs": 3}), ValueError,
     r"epoch_length must be a positive integer to calculate missing 'iteration' or 'epoch' key: state_dict gives epoch=2 with epoch_length=None"),
    ("state_dict not mapping", lambda: engine().load_state_dict([1]), TypeError, r"Argument state_dict should be a dictionary: state_dict should be a mapping, got list"),
    ("call_at_boundary", lambda: engine().call_at_boundary(3), TypeError, r"fn should be callable, got 3"),
    ("resume nothing", lambda: engine().resume(), RuntimeError, r"there is no run to resume \(status 'idle'\)"),
    ("resume two conditions", lambda: engine().resume(2, until=Events.EPOCH_COMPLETED), ValueError,
     r"resume\(\) takes one of n=, until= or events=, got n, until"),
    ("start n=0", lambda: engine().start([1], n=0), ValueError, r"n \(a number of iterations\) should be a positive integer, got 0"),
]


def _max_epochs_below_epoch():
    e = engine()
    e.step(until=Events.EPOCH_STARTED(once=2), data=[1, 2], max_epochs=3)
    e.run(max_epochs=1)


def _missing_user_key():
    e = engine()
    e.state_dict_user_keys.append("alpha")
    e.load_state_dict({"iteration": 3, "epoch_length": 3, "max_epochs": 2})


@pytest.mark.parametrize("case, call, error, message", ERRORS, ids=[row[0] for row in ERRORS])
def test_bad_input_is_refused_with_a_clear_message(case, call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_run_and_load_state_dict_are_refused_while_a_background_run_is_active():
    release = threading.Event()
    e = Engine(lambda engine, batch: release.wait(10))
    e.start([1, 2, 3], max_epochs=100)
    try:
        with pytest.raises(RuntimeError, match=r"run\(\) was called while a background run is active \(status 'running'"):
            e.run([1])
        with pytest.raises(RuntimeError, match=r"step\(\) was called while a background run is active"):
            e.step()
        with pytest.raises(RuntimeError, match=r"load_state_dict\(\) was called while the engine is running"):
            e.load_state_dict({"iteration": 0, "epoch_length": 3, "max_epochs": 2})
    finally:
        e.stop()
        release.set()
        e.wait(10)
    assert e.status == "done"


def test_driving_from_inside_a_boundary_call_is_refused():
    e = paused_engine()
    future = e.call_at_boundary(lambda: e.step())
    with pytest.raises(RuntimeError, match=r"cannot be run from inside a function given to call_at_boundary"):
        future.result()
