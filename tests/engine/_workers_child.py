"""Run in a fresh process by test_workers.py: train a small model with Dropout on data whose
``__getitem__`` draws from torch, ``random`` and numpy, with DataLoader workers; optionally stop
mid-epoch and save a checkpoint, or start from one; write the final weights.

Usage: python _workers_child.py LOADER NUM_WORKERS OUT [--save-at ITERATION CHECKPOINT] [--resume CHECKPOINT]

LOADER is ``deterministic`` (a DataLoader under create_supervised_trainer(deterministic=True)) or
``stateful`` (torchdata's StatefulDataLoader over ``SeededSamples`` under a plain trainer, which
saves no random state of its own: its model has no Dropout).
"""

from __future__ import annotations

import argparse
import random

import numpy as np
import torch
from torch.utils.data import Dataset

from nbengine.engine import create_supervised_trainer

SAMPLES = 120
FEATURES = 8
BATCH = 8
EPOCHS = 3


class NoisyPoints(Dataset):
    """Fixed points, each fetched with fresh torch, Python and numpy noise (as an augmentation is)."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(1)
        self.x = torch.randn(SAMPLES, FEATURES, generator=generator)
        self.y = torch.randint(0, 3, (SAMPLES,), generator=generator)

    def __len__(self) -> int:
        return SAMPLES

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        noise = 0.1 * torch.randn(FEATURES) + random.gauss(0.0, 0.1) + float(np.random.normal(0.0, 0.1))
        return self.x[index] + noise, self.y[index]


def build(loader_kind: str, num_workers: int, stateful_generator_seed: int = 5):
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    dropout = [torch.nn.Dropout(0.3)] if loader_kind == "deterministic" else []
    model = torch.nn.Sequential(torch.nn.Linear(FEATURES, 16), torch.nn.ReLU(), *dropout, torch.nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    if loader_kind == "deterministic":
        from torch.utils.data import DataLoader

        loader = DataLoader(NoisyPoints(), batch_size=BATCH, shuffle=True, num_workers=num_workers)
        trainer = create_supervised_trainer(model, optimizer, loss_fn, deterministic=True)
    else:
        from torchdata.stateful_dataloader import StatefulDataLoader

        from nbengine.engine.sample_seeding import SeededSamples

        loader = StatefulDataLoader(
            SeededSamples(NoisyPoints()),
            batch_size=BATCH,
            shuffle=True,
            num_workers=num_workers,
            generator=torch.Generator().manual_seed(stateful_generator_seed),
        )
        trainer = create_supervised_trainer(model, optimizer, loss_fn)
    return model, optimizer, trainer, loader


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("loader", choices=["deterministic", "stateful"])
    parser.add_argument("num_workers", type=int)
    parser.add_argument("out")
    parser.add_argument("--save-at", nargs=2)
    parser.add_argument("--resume")
    args = parser.parse_args()
    model, optimizer, trainer, loader = build(args.loader, args.num_workers)
    if args.resume:
        checkpoint = torch.load(args.resume, weights_only=True)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        trainer.load_state_dict(checkpoint["trainer"])
        trainer.run(loader)
    elif args.save_at:
        iteration, path = int(args.save_at[0]), args.save_at[1]
        trainer.step(iteration, data=loader, max_epochs=EPOCHS)
        torch.save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "trainer": trainer.state_dict()},
            path,
        )
        return
    else:
        trainer.run(loader, max_epochs=EPOCHS)
    torch.save(model.state_dict(), args.out)


if __name__ == "__main__":
    main()
