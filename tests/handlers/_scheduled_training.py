"""A deterministic training set-up with parameter schedulers and early stopping attached, shared by the
exactness tests and the fresh process they start (``scheduled_training_child.py``).

The learning rate follows a warm-up then a torch StepLR (``create_lr_scheduler_with_warmup``: a
ConcatScheduler of a ParamGroupScheduler of PiecewiseLinear and an LRScheduler), the momentum a cosine
cycle, and EarlyStopping ends the run when the loss on a fixed validation batch stops improving, part
way through ``MAX_EPOCHS``. Everything that moves is in :meth:`ScheduledTraining.to_save`.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nbengine.engine import DeterministicEngine, Events
from nbengine.handlers import (
    CosineAnnealingScheduler,
    EarlyStopping,
    TerminateOnNan,
    create_lr_scheduler_with_warmup,
)

MAX_EPOCHS = 12
SEED = 11


def make_samples(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` noisy samples of one fixed linear map."""
    weights = torch.randn(6, 1, generator=torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(count, 6, generator=generator)
    return inputs, inputs @ weights + 0.5 * torch.randn(count, 1, generator=generator)


def make_loader() -> DataLoader:
    return DataLoader(TensorDataset(*make_samples(40, seed=4)), batch_size=8, shuffle=True)


class ScheduledTraining:
    """Model, optimizer, schedulers, early stopping and a DeterministicEngine, with every loss, learning rate
    and momentum the run used recorded per iteration."""

    def __init__(self) -> None:
        torch.manual_seed(5)
        self.model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 1))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.02, momentum=0.9)
        self.validation = make_samples(16, seed=9)
        self.trainer = DeterministicEngine(self._update, seed=SEED)
        step_lr = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=7, gamma=0.6)
        self.lr_scheduler = create_lr_scheduler_with_warmup(step_lr, warmup_start_value=0.005, warmup_duration=6)
        self.momentum_scheduler = CosineAnnealingScheduler(self.optimizer, "momentum", 0.95, 0.8, cycle_size=9)
        self.trainer.add_event_handler(Events.ITERATION_STARTED, self.lr_scheduler)
        self.trainer.add_event_handler(Events.ITERATION_STARTED, self.momentum_scheduler)
        self.trainer.add_event_handler(Events.ITERATION_COMPLETED, TerminateOnNan())
        self.early_stopping = EarlyStopping(
            patience=2, score_function=self._score, trainer=self.trainer, threshold=0.01, threshold_mode="rel"
        )
        self.trainer.add_event_handler(Events.EPOCH_COMPLETED, self.early_stopping)
        self.records: list[tuple[int, float, float, float]] = []
        self.trainer.add_event_handler(Events.ITERATION_COMPLETED, self._record)

    def _update(self, engine, batch):
        inputs, targets = batch
        self.optimizer.zero_grad()
        loss = nn.functional.mse_loss(self.model(inputs), targets)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def _score(self, engine) -> float:
        with torch.no_grad():
            inputs, targets = self.validation
            return -nn.functional.mse_loss(self.model(inputs), targets).item()

    def _record(self, engine) -> None:
        group = self.optimizer.param_groups[0]
        self.records.append((engine.state.iteration, engine.state.output, group["lr"], group["momentum"]))

    def to_save(self) -> dict:
        return {
            "trainer": self.trainer,
            "model": self.model,
            "optimizer": self.optimizer,
            "lr_scheduler": self.lr_scheduler,
            "momentum_scheduler": self.momentum_scheduler,
            "early_stopping": self.early_stopping,
        }

    def result(self) -> dict:
        """What must be identical between an uninterrupted run and an interrupted one."""
        return {
            "records": list(self.records),
            "weights": [parameter.detach().clone() for parameter in self.model.parameters()],
            "epoch": self.trainer.state.epoch,
            "iteration": self.trainer.state.iteration,
            "status": self.trainer.status,
            "early_stopping": dict(self.early_stopping.state_dict()),
            "lr_scheduler": copy.deepcopy(self.lr_scheduler.state_dict()),
            "momentum_scheduler": copy.deepcopy(self.momentum_scheduler.state_dict()),
        }
