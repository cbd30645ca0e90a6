"""The benchmarks' shared workload: the 32-64-10 MLP of docs/design.md with SGD, on fixed random batches.

Every benchmark that times "the MLP step" builds it here, so their figures are comparable. The
batches come two ways: ``data``, a list of ready tensors (the step alone, about 110 µs on the
2-core machine, so every fixed cost weighs most), and ``loader()``, the same batches from a
``DataLoader`` over a ``TensorDataset`` (what a notebook's training loop reads; about 265 µs, the
≈280 µs step that the budgets of docs/design.md were set against).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset


class Mlp:
    """The model, its optimizer and loss, and ``batches`` fixed batches of ``batch_size`` samples;
    rebuilt identically for every case (same seed, same weights, same data)."""

    def __init__(self, batches: int = 0, batch_size: int = 64) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        generator = torch.Generator().manual_seed(0)
        self.batch_size = batch_size
        self.data = [
            (torch.randn(batch_size, 32, generator=generator), torch.randint(0, 10, (batch_size,), generator=generator))
            for _ in range(batches)
        ]

    def loader(self) -> DataLoader:
        """The batches of ``data``, in order, from a DataLoader over the samples (collated per batch)."""
        if not self.data:
            raise ValueError("this Mlp was built with batches=0: there is nothing to load")
        samples = TensorDataset(torch.cat([x for x, _ in self.data]), torch.cat([y for _, y in self.data]))
        return DataLoader(samples, batch_size=self.batch_size)

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
