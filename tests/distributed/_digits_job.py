"""The digits MLP trained on every rank of a job under ``DistributedControl`` with a ``RankReport``,
for the launcher's panel tests; the same function runs under ``torchrun`` (``python -m`` this file).

``train(local_rank, out, max_epochs)`` checkpoints into ``out/checkpoints`` when asked to save, and
returns the final weights (rank 0 also writes them to ``out/weights.pt``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

GLOBAL_BATCH = 64


def digits() -> torch.utils.data.TensorDataset:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return torch.utils.data.TensorDataset(torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y))


def train(local_rank: int, out: str, max_epochs: int) -> dict:
    import nbengine.distributed as idist
    from nbengine.distributed import DistributedControl, RankStates
    from nbengine.distributed.remote import RankReport
    from nbengine.engine import DeterministicEngine
    from nbengine.handlers import Checkpoint, DiskSaver, EpochReplay

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ddp_model = idist.auto_model(model)
    optimizer = idist.auto_optim(optimizer)
    loader = idist.auto_dataloader(digits(), batch_size=GLOBAL_BATCH, shuffle=True)

    def update(engine, batch):
        x, y = batch
        optimizer.zero_grad()
        loss = F.cross_entropy(ddp_model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    trainer = DeterministicEngine(update, seed=7)
    to_save = {"model": model, "optimizer": optimizer, "trainer": RankStates(trainer)}
    checkpoint = Checkpoint(to_save, DiskSaver(Path(out) / "checkpoints", require_empty=False), n_saved=None)
    control = DistributedControl(trainer, checkpoint=checkpoint,
                                 replay=EpochReplay(trainer, {"model": model, "optimizer": optimizer}))
    RankReport(control)
    control.run(loader, max_epochs=max_epochs)
    weights = {name: value.clone() for name, value in model.state_dict().items()}
    if idist.get_rank() == 0:
        torch.save(weights, Path(out) / "weights.pt")
    return weights


if __name__ == "__main__":
    # Under torchrun: python -m torch.distributed.run --nproc_per_node=2 -m tests.distributed._digits_job OUT EPOCHS
    import nbengine.distributed as idist

    with idist.Parallel(backend="gloo") as parallel:
        parallel.run(train, sys.argv[1], int(sys.argv[2]))
