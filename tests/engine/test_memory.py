"""An engine and its handlers are collected after a run, and long runs keep memory flat."""

from __future__ import annotations

import gc
import tracemalloc
import weakref

from nbengine.engine import Engine, Events


class Handler:
    def __call__(self, engine):
        engine.state.seen = getattr(engine.state, "seen", 0) + 1


def test_engine_and_handlers_are_garbage_collected_after_runs():
    handler = Handler()
    engine = Engine(lambda e, b: b)
    engine.add_event_handler(Events.ITERATION_COMPLETED(every=2), handler)
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: e.state.epoch)
    engine.run([1, 2, 3], max_epochs=2)
    engine.step(data=[1, 2, 3])  # a paused run holds a suspended generator
    engine.start([1, 2, 3])
    engine.wait(10)
    engine_ref, handler_ref = weakref.ref(engine), weakref.ref(handler)
    del engine, handler
    gc.collect()
    assert engine_ref() is None
    assert handler_ref() is None


def test_100k_iterations_keep_memory_flat():
    engine = Engine(lambda e, b: b * 2)
    engine.add_event_handler(Events.ITERATION_COMPLETED(every=100), lambda e: None)
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: None)
    engine.run(range(1000), max_epochs=2)  # warm up caches
    tracemalloc.start()
    try:
        engine.run(range(1000), max_epochs=10)
        small, _ = tracemalloc.get_traced_memory()
        engine.run(range(1000), max_epochs=100)
        large, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert engine.state.iteration == 100_000
    # Ten times more iterations may not grow memory by more than a few kilobytes.
    assert large - small < 16 * 1024
