"""Both ranks evaluate Accuracy on their shard of 64 fixed predictions (``Parallel``, gloo, 2 processes)
and write what ``compute()`` gave them, and what they saw, to ``<out>/accuracy<rank>.pt``."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import nbengine.distributed as idist
from nbengine.engine import Engine
from nbengine.metrics import Accuracy


def predictions() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return torch.randn(64, 5, generator=generator), torch.randint(0, 5, (64,), generator=generator)


def evaluate(local_rank: int, out: str) -> None:
    logits, labels = predictions()
    loader = idist.auto_dataloader(torch.utils.data.TensorDataset(logits, labels), batch_size=16, shuffle=False)
    seen = []
    evaluator = Engine(lambda engine, batch: seen.append(batch[1]) or batch)
    Accuracy().attach(evaluator, "accuracy")
    evaluator.run(loader)
    torch.save({"accuracy": evaluator.state.metrics["accuracy"], "seen": torch.cat(seen)},
               Path(out) / f"accuracy{idist.get_rank()}.pt")


if __name__ == "__main__":
    with idist.Parallel(backend="gloo", nproc_per_node=2) as parallel:
        parallel.run(evaluate, sys.argv[1])
