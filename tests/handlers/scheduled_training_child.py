"""Run in a fresh process by test_exactness_with_schedulers.py: build the scheduled training from scratch,
load a checkpoint into it, run it to its end and save what it did.

Usage: python -m tests.handlers.scheduled_training_child CHECKPOINT OUTPUT
"""

from __future__ import annotations

import sys

import torch

from nbengine.handlers import Checkpoint
from tests.handlers._scheduled_training import MAX_EPOCHS, ScheduledTraining, make_loader


def main(checkpoint: str, output: str) -> None:
    training = ScheduledTraining()
    Checkpoint.load_objects(training.to_save(), checkpoint)
    training.trainer.run(make_loader(), max_epochs=MAX_EPOCHS)
    torch.save(training.result(), output)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
