"""The engine layer: Engine, events, State, and (in submodules) determinism and supervised factories.

Import paths mirror pytorch-ignite's ``ignite.engine``. This layer is pure Python + torch: it never
imports ipywidgets, IPython or matplotlib.
"""

from nbengine.engine.deterministic import (
    DeterministicEngine,
    ReproducibleBatchSampler,
    keep_random_state,
    update_dataloader,
)
from nbengine.engine.engine import DONE, FAILED, IDLE, PAUSED, RUNNING, Engine
from nbengine.engine.events import (
    CallableEventWithFilter,
    EventEnum,
    Events,
    EventsList,
    RemovableEventHandle,
    State,
)
from nbengine.engine.supervised import (
    _check_arg,
    create_supervised_evaluator,
    create_supervised_trainer,
    supervised_evaluation_step,
    supervised_evaluation_step_amp,
    supervised_training_step,
    supervised_training_step_amp,
    supervised_training_step_apex,
    supervised_training_step_tpu,
)

__all__ = [
    "Engine",
    "DeterministicEngine",
    "ReproducibleBatchSampler",
    "keep_random_state",
    "update_dataloader",
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
    "create_supervised_trainer",
    "create_supervised_evaluator",
    "supervised_training_step",
    "supervised_training_step_amp",
    "supervised_training_step_apex",
    "supervised_training_step_tpu",
    "supervised_evaluation_step",
    "supervised_evaluation_step_amp",
]
