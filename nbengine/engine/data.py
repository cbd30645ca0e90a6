"""Where a plain Engine's batches come from.

This module owns opening the data for a run and fetching a batch again after a resume. A plain Engine
iterates the data as given, as ignite's does: a run continued from a state dict in the middle of an
epoch opens the data from its start (only ``DeterministicEngine``'s reproducible stream, in
deterministic.py, can place the data at any iteration). Without data, an epoch is ``epoch_length``
Nones. A stateful loader (torchdata's ``StatefulDataLoader``) gets back the position a loaded state
dict recorded (data_state.py).
"""

from __future__ import annotations

from collections.abc import Iterator
import weakref
from typing import Any

from nbengine.engine.data_state import restore_data_state

__all__ = ["DataStream", "none_batches"]


def none_batches(count: int) -> Iterator[None]:
    """The batches of an epoch without data: ``count`` Nones."""
    for _ in range(count):
        yield None


class DataStream:
    """Opens ``engine.state.dataloader`` and keeps the iterator in ``engine._data_iter``."""

    @property
    def engine(self) -> Any:
        return self._engine()

    def __init__(self, engine: Any) -> None:
        self._engine = weakref.ref(engine)  # owned by the engine: no reference cycle
        # A stateful loader's state from load_state_dict, put back into it when the run continues.
        self.loaded_state: Any = None

    def prepare(self, data: Any) -> Any:
        """The data the engine iterates for ``data`` given to run()."""
        return data

    def begin(self, fresh: bool) -> None:
        """A run is about to be driven; ``fresh``: it is a new one (prepare_run)."""

    def resumed(self, mid_epoch: bool = True) -> None:
        """The loop reached where a loaded run stands (random states of a reproducible stream)."""

    def open(self, position: int, resuming: bool = False) -> None:
        """Open a fresh iterator (``position``, the iterations done, matters to reproducible streams;
        ``resuming``: for a run continuing at ``position``, not for the next pass over the data)."""
        engine = self.engine
        state = engine.state
        if state.dataloader is None:
            if state.epoch_length is None:
                raise ValueError("epoch_length should be provided if data is None: give epoch_length, or data to run on")
            engine._data_iter = none_batches(state.epoch_length)
            return
        loaded, self.loaded_state = self.loaded_state, None
        if loaded is not None:
            restore_data_state(state.dataloader, loaded)
        engine._data_iter = iter(state.dataloader)

    def refetch(self, position: int) -> None:
        """Put the batch of iteration ``position + 1`` in ``state.batch`` again (a run resumed from a
        state dict saved after that batch was fetched); the iterator then continues after it."""
        self.open(position)
        self.engine.state.batch = next(self.engine._data_iter)

    def interrupted_fetch(self) -> None:
        """An interrupt escaped a fetch. A plain iterator is asked again for the batch."""
