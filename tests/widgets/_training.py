"""A small real training set-up for the widget tests: an MLP on fixed random batches, slow enough
(a real forward/backward per iteration) that a background run can be paused and stepped."""

from __future__ import annotations

import time

import torch

from nbengine.engine import Engine


def wait_until(condition, timeout: float = 30.0, what: str = "condition"):
    """Poll ``condition()`` until it is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


class Mlp:
    """A 32-64-10 MLP, its SGD optimizer and ``batches`` fixed batches of 16."""

    def __init__(self, batches: int = 10, fail_at: int | None = None) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        generator = torch.Generator().manual_seed(0)
        self.data = [
            (torch.randn(16, 32, generator=generator), torch.randint(0, 10, (16,), generator=generator))
            for _ in range(batches)
        ]
        self.fail_at = fail_at
        self.trainer = Engine(self.step)

    def step(self, engine: Engine, batch) -> float:
        if self.fail_at is not None and engine.state.iteration == self.fail_at:
            raise ValueError(f"bad batch at iteration {engine.state.iteration}")
        x, y = batch
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def weights(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.model.parameters()]


class DeterministicMlp(Mlp):
    """The same MLP trained by a ``DeterministicEngine`` over a shuffling DataLoader, so that its
    epochs can be replayed."""

    def __init__(self, batches: int = 10, seed: int = 7) -> None:
        from torch.utils.data import DataLoader, TensorDataset

        from nbengine.engine.deterministic import DeterministicEngine

        super().__init__(batches)
        x = torch.cat([x for x, _ in self.data])
        y = torch.cat([y for _, y in self.data])
        self.loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
        self.trainer = DeterministicEngine(self.step, seed=seed)
