"""Handlers to attach to an engine: checkpoints, the progress bar, and the recorders the notebook panels read.

Import paths mirror ``ignite.handlers``: ``from nbengine.handlers import Checkpoint, DiskSaver, ProgressBar``.
Nothing here imports ipywidgets, IPython or matplotlib at import time.
"""

from nbengine.handlers.checkpoint import (
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
from nbengine.handlers.history import History, HistorySnapshot, batch_fingerprint
from nbengine.handlers.progress import ProgressBar
from nbengine.handlers.replay import EpochReplay, ReplayReport
from nbengine.handlers.timeline import EventTimeline, TimelineEntry

__all__ = [
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
]
