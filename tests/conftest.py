"""Shared fixtures: a recording engine that logs ``(epoch, iteration, event)`` in a compact form."""

from __future__ import annotations

import pytest

from nbengine.engine import Engine, Events

ABBREVIATIONS = {
    "STARTED": "S",
    "EPOCH_STARTED": "ES",
    "GET_BATCH_STARTED": "GS",
    "GET_BATCH_COMPLETED": "GC",
    "ITERATION_STARTED": "IS",
    "ITERATION_COMPLETED": "IC",
    "DATALOADER_STOP_ITERATION": "DSI",
    "TERMINATE_SINGLE_EPOCH": "TSE",
    "TERMINATE": "T",
    "EPOCH_COMPLETED": "EC",
    "COMPLETED": "C",
    "INTERRUPT": "INT",
}


class Recorder:
    """Attaches to every built-in event (but EXCEPTION_RAISED) and records ``<abbr><epoch>.<iteration>``."""

    def __init__(self, engine: Engine) -> None:
        self.log: list[str] = []
        self.batches: list = []
        for name, abbr in ABBREVIATIONS.items():
            engine.add_event_handler(getattr(Events, name), self._record, abbr)
        engine.add_event_handler(Events.ITERATION_STARTED, lambda e: self.batches.append(e.state.batch))

    def _record(self, engine: Engine, abbr: str) -> None:
        self.log.append(f"{abbr}{engine.state.epoch}.{engine.state.iteration}")

    @property
    def text(self) -> str:
        return " ".join(self.log)


@pytest.fixture
def make_recorded_engine():
    def make(process_function=lambda engine, batch: batch):
        engine = Engine(process_function)
        return engine, Recorder(engine)

    return make
