"""Run by test_interrupts.py: trainings interrupted by a real SIGINT (``signal.raise_signal``) or a
``KeyboardInterrupt`` raised in the main thread, from a handler, the process function, the data
fetch or a nested evaluator, then continued with ``run()`` until done.

Usage: python _interrupt_child.py OUT SCENARIO...

Each scenario builds fresh objects and seeds, and runs in this process one after another. OUT is a
JSON-lines file, flushed as it grows: ``{"kind": "start", "name": ...}`` before a scenario and
``{"kind": "result", ...}`` after it, so a scenario that hangs (a watchdog ends the process after
WATCHDOG_S with every thread's traceback on stderr) or kills the process is known by name.

The set-up: ``create_supervised_trainer(..., deterministic=True)`` on 96 of the scikit-learn digits
(6 batches of 16, shuffled, with torch and Python noise added in ``__getitem__``), an MLP with
Dropout, SGD with momentum, 3 epochs; ``validate`` runs ``create_supervised_evaluator`` with an
Accuracy metric on 64 other digits (4 batches) at every EPOCH_COMPLETED. On every built-in event of
the trainer, in this order: ``head`` (records the call and draws from torch, random and numpy), the
interrupter ``int``, then at EPOCH_COMPLETED ``validate``, then ``tail``. The evaluator has the same
three at ITERATION_COMPLETED and COMPLETED. Every handler records its call when it ends, so a call
cut short by a KeyboardInterrupt is not recorded. A scenario's interrupter acts at one occurrence of
one event (counted over the whole run, of completed calls), or in the process function (inside the
model's forward call) or in the Dataset's ``__getitem__`` at a given call.
"""

from __future__ import annotations

import faulthandler
import hashlib
import json
import random
import signal
import sys
import traceback

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from nbengine.engine import Engine, Events, create_supervised_evaluator, create_supervised_trainer
from nbengine.metrics import Accuracy

MAX_EPOCHS = 3
BATCH = 16
WATCHDOG_S = 60
MAX_RUN_CALLS = 8  # a scenario calls run() at most this often (a pause that never ends is seen, not looped on)

TRAINER_EVENTS = [
    Events.STARTED,
    Events.EPOCH_STARTED,
    Events.GET_BATCH_STARTED,
    Events.GET_BATCH_COMPLETED,
    Events.DATALOADER_STOP_ITERATION,
    Events.ITERATION_STARTED,
    Events.ITERATION_COMPLETED,
    Events.EPOCH_COMPLETED,
    Events.COMPLETED,
]
EVALUATOR_EVENTS = [Events.ITERATION_COMPLETED, Events.COMPLETED]

# scenario -> plan: where the interruption happens and what it is.
#   ("trainer" | "evaluator", EVENT_NAME, occurrence, action) with action one of
#       "sigint" (one SIGINT), "sigint2" (two SIGINTs in a row), "raise" (raise KeyboardInterrupt on
#       the first attempt only), "always" (raise KeyboardInterrupt on every attempt);
#   ("process", None, process call, "sigint"); ("fetch", None, __getitem__ call, "sigint").
SCENARIOS = {
    "reference": None,
    "sigint-handler-STARTED": ("trainer", "STARTED", 1, "sigint"),
    "sigint-handler-EPOCH_STARTED": ("trainer", "EPOCH_STARTED", 2, "sigint"),
    "sigint-handler-GET_BATCH_STARTED": ("trainer", "GET_BATCH_STARTED", 9, "sigint"),
    "sigint-handler-GET_BATCH_COMPLETED": ("trainer", "GET_BATCH_COMPLETED", 9, "sigint"),
    "sigint-handler-DATALOADER_STOP_ITERATION": ("trainer", "DATALOADER_STOP_ITERATION", 1, "sigint"),
    "sigint-handler-ITERATION_STARTED": ("trainer", "ITERATION_STARTED", 9, "sigint"),
    "sigint-handler-ITERATION_COMPLETED-mid-epoch": ("trainer", "ITERATION_COMPLETED", 9, "sigint"),
    "sigint-handler-ITERATION_COMPLETED-last-of-epoch": ("trainer", "ITERATION_COMPLETED", 12, "sigint"),
    "sigint-handler-EPOCH_COMPLETED": ("trainer", "EPOCH_COMPLETED", 2, "sigint"),
    "sigint-handler-COMPLETED": ("trainer", "COMPLETED", 1, "sigint"),
    "sigint-process-function": ("process", None, 9, "sigint"),
    "sigint-data-fetch": ("fetch", None, 8 * BATCH + 5, "sigint"),
    "sigint-evaluator-iteration-1": ("evaluator", "ITERATION_COMPLETED", 1, "sigint"),
    "sigint-evaluator-iteration-2": ("evaluator", "ITERATION_COMPLETED", 2, "sigint"),
    "sigint-evaluator-iteration-3": ("evaluator", "ITERATION_COMPLETED", 3, "sigint"),
    "sigint-evaluator-iteration-4": ("evaluator", "ITERATION_COMPLETED", 4, "sigint"),
    "raise-handler-STARTED": ("trainer", "STARTED", 1, "raise"),
    "raise-handler-ITERATION_COMPLETED": ("trainer", "ITERATION_COMPLETED", 9, "raise"),
    "raise-handler-EPOCH_COMPLETED": ("trainer", "EPOCH_COMPLETED", 2, "raise"),
    "raise-evaluator-handler": ("evaluator", "ITERATION_COMPLETED", 2, "raise"),
    "sigint2-handler-ITERATION_COMPLETED": ("trainer", "ITERATION_COMPLETED", 9, "sigint2"),
    "sigint2-handler-EPOCH_COMPLETED": ("trainer", "EPOCH_COMPLETED", 2, "sigint2"),
    "always-raises-ITERATION_COMPLETED": ("trainer", "ITERATION_COMPLETED", 3, "always"),
}
# How often the "always" scenario calls run(): each call should raise KeyboardInterrupt once.
ALWAYS_RUN_CALLS = 3


def load_digits_split() -> tuple:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy((digits.data / 16).astype(np.float32))
    y = torch.from_numpy(digits.target.astype(np.int64))
    return (x[:96], y[:96]), (x[96:160], y[96:160])


class NoisyDigits(Dataset):
    """Digits fetched with fresh torch and Python noise; ``hook(call number)`` runs in every fetch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, hook=None) -> None:
        self.x, self.y, self.hook, self.calls = x, y, hook, 0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        if self.hook is not None:
            self.hook(self.calls)
        return self.x[index] + 0.1 * torch.randn(64) + random.gauss(0.0, 0.05), self.y[index]


def fingerprint(*tensors: torch.Tensor) -> str:
    return hashlib.sha1(b"".join(t.detach().numpy().tobytes() for t in tensors)).hexdigest()[:16]


def draws() -> list[float]:
    return [torch.rand(1).item(), random.random(), float(np.random.rand())]


class Interrupter:
    """Raises SIGINT or KeyboardInterrupt as the plan says; counts its completed calls per event."""

    def __init__(self, calls: list, plan) -> None:
        self.calls = calls
        self.plan = plan
        self.completed: dict[str, int] = {}
        self.acted = 0
        self.reached_after_second_sigint = False

    def act(self, action: str) -> None:
        self.acted += 1
        if action == "always" or (action == "raise" and self.acted == 1):
            raise KeyboardInterrupt(f"raised by a handler, attempt {self.acted}")
        if self.acted > 1:
            return
        signal.raise_signal(signal.SIGINT)
        if action == "sigint2":
            signal.raise_signal(signal.SIGINT)
            self.reached_after_second_sigint = True

    def handler(self, engine: Engine, where: str, name: str) -> None:
        key = f"{where}:{name}"
        plan = self.plan
        if plan is not None and plan[0] == where and plan[1] == name and self.completed.get(key, 0) + 1 == plan[2]:
            self.act(plan[3])
        self.completed[key] = self.completed.get(key, 0) + 1
        self.calls.append([where, "int", name, engine.state.epoch, engine.state.iteration])

    def at_call(self, where: str, number: int) -> None:
        plan = self.plan
        if plan is not None and plan[0] == where and plan[2] == number:
            self.act(plan[3])


def record(calls: list, where: str, role: str, engine: Engine, name: str, draw: bool) -> None:
    details: list = draws() if draw else []
    if name == "ITERATION_COMPLETED" and where == "trainer":
        x, y = engine.state.batch
        details += [fingerprint(x, y), engine.state.output]
    if name == "ITERATION_COMPLETED" and where == "evaluator":
        details += [fingerprint(*engine.state.output)]
    if name == "COMPLETED" and where == "evaluator":
        details += [engine.state.metrics["accuracy"]]
    calls.append([where, role, name, engine.state.epoch, engine.state.iteration, details])


def build(plan, splits) -> dict:
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    calls: list = []
    interrupter = Interrupter(calls, plan)
    (train_x, train_y), (val_x, val_y) = splits
    train = NoisyDigits(train_x, train_y, hook=lambda number: interrupter.at_call("fetch", number))
    loader = DataLoader(train, batch_size=BATCH, shuffle=True)
    val_loader = DataLoader(NoisyDigits(val_x, val_y), batch_size=BATCH)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 24), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(24, 10)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    process_calls = [0]

    def model_fn(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        if module.training:
            process_calls[0] += 1
            interrupter.at_call("process", process_calls[0])
        return module(x)

    trainer = create_supervised_trainer(
        model, optimizer, torch.nn.CrossEntropyLoss(), deterministic=True, model_fn=model_fn
    )
    evaluator = create_supervised_evaluator(model, metrics={"accuracy": Accuracy()})
    for event in EVALUATOR_EVENTS:
        evaluator.add_event_handler(event, lambda e, n: record(calls, "evaluator", "head", e, n, True), event.name)
        evaluator.add_event_handler(event, interrupter.handler, "evaluator", event.name)
    for event in TRAINER_EVENTS:
        trainer.add_event_handler(event, lambda e, n: record(calls, "trainer", "head", e, n, True), event.name)
        trainer.add_event_handler(event, interrupter.handler, "trainer", event.name)

    def validate(engine: Engine) -> None:
        state = evaluator.run(val_loader)
        calls.append(["trainer", "validate", "EPOCH_COMPLETED", engine.state.epoch, engine.state.iteration,
                      [state.metrics["accuracy"], state.iteration]])

    trainer.add_event_handler(Events.EPOCH_COMPLETED, validate)
    for event in EVALUATOR_EVENTS:
        evaluator.add_event_handler(event, lambda e, n: record(calls, "evaluator", "tail", e, n, False), event.name)
    for event in TRAINER_EVENTS:
        trainer.add_event_handler(event, lambda e, n: record(calls, "trainer", "tail", e, n, False), event.name)
    return dict(trainer=trainer, evaluator=evaluator, model=model, loader=loader, calls=calls, interrupter=interrupter)


def position(engine: Engine) -> list:
    return [engine.status, getattr(engine.last_event, "name", repr(engine.last_event)), engine.state.epoch,
            engine.state.iteration]


def run_scenario(name: str, splits) -> dict:
    plan = SCENARIOS[name]
    objects = build(plan, splits)
    trainer, evaluator = objects["trainer"], objects["evaluator"]
    result: dict = {"keyboard_interrupts": 0, "run_calls": 0, "positions": [], "evaluator_positions": []}
    limit = ALWAYS_RUN_CALLS if plan is not None and plan[3] == "always" else MAX_RUN_CALLS
    while result["run_calls"] < limit:
        result["run_calls"] += 1
        try:
            if result["run_calls"] == 1:
                trainer.run(objects["loader"], max_epochs=MAX_EPOCHS)
            else:
                trainer.run()
        except KeyboardInterrupt:
            result["keyboard_interrupts"] += 1
        result["positions"].append(position(trainer))
        result["evaluator_positions"].append(position(evaluator))
        if trainer.status != "paused":
            break
    result.update(
        calls=objects["calls"],
        weights=[p.detach().flatten().tolist() for p in objects["model"].parameters()],
        status=trainer.status,
        interrupter_acted=objects["interrupter"].acted,
        reached_after_second_sigint=objects["interrupter"].reached_after_second_sigint,
        sigint_handler_after=repr(signal.getsignal(signal.SIGINT)),
    )
    return result


def main() -> None:
    torch.set_num_threads(1)
    out, *names = sys.argv[1:]
    splits = load_digits_split()
    default_sigint = signal.getsignal(signal.SIGINT)
    with open(out, "a") as stream:
        for name in names:
            stream.write(json.dumps({"kind": "start", "name": name}) + "\n")
            stream.flush()
            faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
            try:
                entry = run_scenario(name, splits)
            except BaseException:  # noqa: BLE001  (any escape, KeyboardInterrupt included, is the scenario's result)
                entry = {"error": traceback.format_exc()}
            finally:
                faulthandler.cancel_dump_traceback_later()
            entry.update(kind="result", name=name, sigint_handler_is_default=signal.getsignal(signal.SIGINT) is default_sigint)
            signal.signal(signal.SIGINT, default_sigint)
            stream.write(json.dumps(entry) + "\n")
            stream.flush()


if __name__ == "__main__":
    main()
