"""Run in a fresh process by test_replay.py: train with an EpochReplay and save a checkpoint in the
middle of epoch 2 (``save``), or load it, run to the end and replay epoch 2 (``resume``), printing
the report's figures as one line of JSON.

Usage: python _replay_child.py save|resume CHECKPOINT
"""

from __future__ import annotations

import json
import sys

import torch
from torch.utils.data import DataLoader, Dataset

from nbengine.engine.deterministic import DeterministicEngine
from nbengine.handlers import EpochReplay

SAVE_AT = 12  # epoch 2 of 3, iteration 12 of 5 x 3


class Noisy(Dataset):
    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(20, 4, generator=generator)
        self.y = torch.randint(0, 3, (20,), generator=generator)

    def __len__(self) -> int:
        return 20

    def __getitem__(self, index: int):
        return self.x[index] + 0.1 * torch.randn(4), self.y[index]


def main(mode: str, path: str) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step(engine, batch):
        x, y = batch
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    trainer = DeterministicEngine(step, seed=3)
    replay = EpochReplay(trainer, {"model": model, "optimizer": optimizer})
    loader = DataLoader(Noisy(), batch_size=4, shuffle=True)
    objects = {"model": model, "optimizer": optimizer, "trainer": trainer, "replay": replay}
    if mode == "save":
        trainer.step(SAVE_AT, data=loader, max_epochs=3)
        torch.save({name: obj.state_dict() for name, obj in objects.items()}, path)
        return
    checkpoint = torch.load(path, weights_only=True)
    for name, obj in objects.items():
        obj.load_state_dict(checkpoint[name])
    trainer.run(loader)
    report = replay.replay_epoch(2)
    print(json.dumps({
        "iterations": report.iterations,
        "compared": report.iterations_compared,
        "reproduced": report.reproduced,
        "text": str(report),
    }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
