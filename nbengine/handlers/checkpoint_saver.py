"""``BaseSaveHandler``: the protocol a :class:`~nbengine.handlers.Checkpoint` writes through.

A save handler is called as ``handler(checkpoint, filename, metadata)`` to store one checkpoint and
``handler.remove(filename)`` to delete one that fell out of the kept ``n_saved``. ``metadata`` holds
exactly pytorch-ignite's keys: ``basename`` (prefix and name, e.g. ``"best_model"``), ``score_name``
and ``priority``. :class:`~nbengine.handlers.DiskSaver` is the built-in one; subclass this class for
another store (a cloud bucket, an in-memory dict for tests, ...).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

__all__ = ["BaseSaveHandler"]


class BaseSaveHandler(ABC):
    """Store and remove checkpoints for a :class:`~nbengine.handlers.Checkpoint`.

    >>> import torch
    >>> from nbengine.engine import Engine, Events
    >>> from nbengine.handlers import Checkpoint
    >>> class InMemory(BaseSaveHandler):
    ...     def __init__(self):
    ...         self.files = {}
    ...     def __call__(self, checkpoint, filename, metadata=None):
    ...         self.files[filename] = (checkpoint, metadata)
    ...     def remove(self, filename):
    ...         del self.files[filename]
    >>> store = InMemory()
    >>> trainer = Engine(lambda engine, batch: None)
    >>> _ = trainer.add_event_handler(Events.EPOCH_COMPLETED, Checkpoint({"model": torch.nn.Linear(1, 1)}, store, n_saved=2))
    >>> _ = trainer.run([0, 0], max_epochs=3)
    >>> sorted(store.files)
    ['model_4.pt', 'model_6.pt']
    >>> store.files["model_6.pt"][1]
    {'basename': 'model', 'score_name': None, 'priority': 6}
    """

    @abstractmethod
    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> Any:
        """Store ``checkpoint`` (a mapping of ``state_dict``s, or one ``state_dict``) as ``filename``."""

    @abstractmethod
    def remove(self, filename: str) -> None:
        """Delete the checkpoint stored as ``filename``."""
