"""Run in a subprocess by test_checkpoint_disk.py: a trainer saves a small checkpoint after epoch 1,
announces it on stdout, then starts a large (512 MB) save after epoch 2 that the test kills.

Usage: python checkpoint_child.py DIRNAME N_SAVED
"""

from __future__ import annotations

import sys

import torch

from nbengine.engine import Engine, Events
from nbengine.handlers import Checkpoint, CheckpointEvents, DiskSaver


class Blob:
    """A state that is small after epoch 1 and large after epoch 2, to make the second save slow."""

    def __init__(self, trainer: Engine) -> None:
        self.trainer = trainer

    def state_dict(self) -> dict:
        if self.trainer.state.epoch == 1:
            return {"values": torch.arange(10.0)}
        return {f"part{i}": torch.full((1 << 20,), float(i)) for i in range(128)}

    def load_state_dict(self, state_dict: dict) -> None:
        raise NotImplementedError("the child only saves")


def main(dirname: str, n_saved: int) -> None:
    trainer = Engine(lambda engine, batch: None)
    handler = Checkpoint(
        {"blob": Blob(trainer), "trainer": trainer}, DiskSaver(dirname, require_empty=False), n_saved=n_saved
    )
    trainer.add_event_handler(Events.EPOCH_COMPLETED, handler)
    trainer.register_events(*CheckpointEvents)

    @trainer.on(Checkpoint.SAVED_CHECKPOINT)
    def announce(engine: Engine) -> None:
        print(f"saved {handler.last_checkpoint}", flush=True)

    trainer.run([0], max_epochs=2)
    print("finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
