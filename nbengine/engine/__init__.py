"""The engine layer: Engine, events, State, and (in submodules) determinism and supervised factories.

Import paths mirror pytorch-ignite's ``ignite.engine``. This layer is pure Python + torch: it never
imports ipywidgets, IPython or matplotlib.
"""

from nbengine.engine.engine import DONE, FAILED, IDLE, PAUSED, RUNNING, Engine
from nbengine.engine.events import (
    CallableEventWithFilter,
    EventEnum,
    Events,
    EventsList,
    RemovableEventHandle,
    State,
)

__all__ = [
    "Engine",
    "Events",
    "EventEnum",
    "EventsList",
    "CallableEventWithFilter",
    "State",
    "RemovableEventHandle",
    "IDLE",
    "RUNNING",
    "PAUSED",
    "DONE",
    "FAILED",
]
