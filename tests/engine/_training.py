"""A small, fully deterministic torch training set-up shared by the engine tests and subprocesses."""

from __future__ import annotations

import torch

from nbengine.engine import Engine, Events


def make_batches(count: int = 7, batch_size: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        (torch.randn(batch_size, 5, generator=generator), torch.randint(0, 3, (batch_size,), generator=generator))
        for _ in range(count)
    ]


class Training:
    """A model, an optimizer with momentum (so optimizer state matters), and an engine that logs
    every batch it completes and every output."""

    def __init__(self, process_hook=None) -> None:
        torch.manual_seed(1)
        self.model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.batch_ids: list[int] = []
        self.outputs: list[float] = []
        self.process_calls: list[int] = []
        self._process_hook = process_hook
        self.engine = Engine(self._process)
        self.engine.add_event_handler(Events.ITERATION_COMPLETED, self._record)

    def _process(self, engine: Engine, batch):
        x, y = batch
        self.process_calls.append(int(x[0, 0].mul(1e6).round().item()))
        if self._process_hook is not None:
            self._process_hook(engine)
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def _record(self, engine: Engine) -> None:
        x, _ = engine.state.batch
        self.batch_ids.append(int(x[0, 0].mul(1e6).round().item()))
        self.outputs.append(engine.state.output)

    def weights(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.model.parameters()]

    def summary(self) -> dict:
        return {
            "batch_ids": self.batch_ids,
            "outputs": self.outputs,
            "weights": [w.flatten().tolist() for w in self.weights()],
            "iteration": self.engine.state.iteration,
            "epoch": self.engine.state.epoch,
            "status": self.engine.status,
        }
