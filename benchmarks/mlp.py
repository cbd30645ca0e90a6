"""The benchmarks' shared workload: the design's 32-64-10 MLP with SGD, on fixed random batches.

Every benchmark that times "the MLP step" builds it here, so their figures are comparable.
"""

from __future__ import annotations

from typing import Any

import torch


class Mlp:
    """The model, its optimizer and loss, and ``batches`` fixed batches of ``batch_size`` samples;
    rebuilt identically for every case (same seed, same weights, same data)."""

    def __init__(self, batches: int = 0, batch_size: int = 64) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        generator = torch.Generator().manual_seed(0)
        self.data = [
            (torch.randn(batch_size, 32, generator=generator), torch.randint(0, 10, (batch_size,), generator=generator))
            for _ in range(batches)
        ]

    def update(self, batch: Any) -> float:
        """One SGD step on ``batch``; returns the loss as a float."""
        x, y = batch
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def step(self, engine: Any, batch: Any) -> float:
        """``update`` as an engine's process function."""
        return self.update(batch)
