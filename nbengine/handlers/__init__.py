"""Handlers to attach to an engine: checkpoints, the progress bar, early stopping, parameter schedulers,
timers, and the recorders the notebook panels read.

Import paths mirror ``ignite.handlers``: ``from nbengine.handlers import Checkpoint, DiskSaver, ProgressBar``.
Nothing here imports ipywidgets, IPython or matplotlib at import time.
"""

from nbengine.handlers.checkpoint import (
    BaseSaveHandler,
    Checkpoint,
    CheckpointError,
    CheckpointEvents,
    CheckpointInfo,
    CorruptCheckpointError,
    DiskSaver,
    ModelCheckpoint,
    UnsafeCheckpointError,
    global_step_from_engine,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint_info,
    verify_checkpoint,
)
from nbengine.handlers.early_stopping import EarlyStopping
from nbengine.handlers.history import History, HistorySnapshot, batch_fingerprint
from nbengine.handlers.param_scheduler import (
    BaseParamScheduler,
    BatchSizeScheduler,
    ConcatScheduler,
    CosineAnnealingScheduler,
    CyclicalScheduler,
    LinearCyclicalScheduler,
    LRScheduler,
    ParamGroupScheduler,
    ParamScheduler,
    PiecewiseLinear,
    ReduceLROnPlateauScheduler,
    create_lr_scheduler_with_warmup,
)
from nbengine.handlers.progress import ProgressBar
from nbengine.handlers.replay import EpochReplay, ReplayReport
from nbengine.handlers.terminate_on_nan import TerminateOnNan
from nbengine.handlers.time_profilers import BasicTimeProfiler
from nbengine.handlers.timeline import EventTimeline, TimelineEntry
from nbengine.handlers.timing import Timer

__all__ = [
    "BaseSaveHandler",
    "Checkpoint",
    "CheckpointError",
    "CheckpointEvents",
    "CheckpointInfo",
    "CorruptCheckpointError",
    "DiskSaver",
    "ModelCheckpoint",
    "UnsafeCheckpointError",
    "global_step_from_engine",
    "list_checkpoints",
    "load_checkpoint",
    "read_checkpoint_info",
    "verify_checkpoint",
    "History",
    "HistorySnapshot",
    "batch_fingerprint",
    "ProgressBar",
    "EpochReplay",
    "ReplayReport",
    "EventTimeline",
    "TimelineEntry",
    "EarlyStopping",
    "TerminateOnNan",
    "Timer",
    "BasicTimeProfiler",
    "BaseParamScheduler",
    "BatchSizeScheduler",
    "ConcatScheduler",
    "CosineAnnealingScheduler",
    "CyclicalScheduler",
    "LinearCyclicalScheduler",
    "LRScheduler",
    "ParamGroupScheduler",
    "ParamScheduler",
    "PiecewiseLinear",
    "ReduceLROnPlateauScheduler",
    "create_lr_scheduler_with_warmup",
]
