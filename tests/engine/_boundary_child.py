"""Run by test_boundaries_fresh_process.py: a training paused at one boundary, saved with
``Checkpoint``, and resumed in a fresh process.

Usage:
    python _boundary_child.py DATA OUT first SCENARIO...   the uninterrupted runs (one per set-up) and,
        for each scenario, its first half: run to the pause point, save a checkpoint under
        OUT/SCENARIO/, write OUT/SCENARIO/first.json. Every run has fresh objects and fresh seeds.
    python _boundary_child.py DATA OUT resume SCENARIO     build fresh objects, load OUT/SCENARIO's
        checkpoint, ``run()`` to the end, write OUT/SCENARIO/resumed.json and resumed_weights.pt.
    python _boundary_child.py DATA OUT resume-forked SCENARIO...   the same for each scenario, each in
        a process forked from this one after a line is read from stdin. This process imports what
        the resume needs (3-7 s of torch imports here, which a fresh interpreter per scenario would
        pay again each time) and builds, runs and loads nothing itself: each fork holds nothing of any
        run but what it loads from its checkpoint.

DATA is an ``.npz`` of digits (``x`` float32 ``(n, 64)``, ``y`` int64), written by the test so that
the children do not import scikit-learn. Every ``.json`` holds ``calls``: one entry per handler call,
``[event, epoch, iteration, details]``, where details are the random draws the handler made, and at
ITERATION_COMPLETED the batch fingerprint and the output too.

Set-ups:
    ``digits``: ``create_supervised_trainer(..., deterministic=True)`` on a DataLoader (shuffle,
        6 batches a pass) of a Dataset that adds torch and Python noise in ``__getitem__``; an MLP with
        Dropout; SGD with momentum; 3 epochs of one pass each.
    ``digits_long_epochs``: the same with ``epoch_length=8`` > 6 batches, so the loader runs out
        inside epochs (DATALOADER_STOP_ITERATION) and epochs end mid-pass.
    ``no_data``: a plain ``Engine`` run with ``data=None, epoch_length=5``; the process function draws
        its inputs from torch. The user saves the generators' states with the checkpoint (the plain
        Engine does not), as an object in ``to_save``; its handlers draw at every event but STARTED.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import traceback
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from nbengine.engine import Engine, Events, create_supervised_trainer
from nbengine.handlers import Checkpoint, DiskSaver

MAX_EPOCHS = 3
BATCH = 16

EVENTS = [
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

# scenario -> (set-up, the event to pause after, how many times to step(until=that event))
SCENARIOS = {
    "STARTED": ("digits", Events.STARTED, 1),
    "EPOCH_STARTED": ("digits", Events.EPOCH_STARTED(once=2), 1),
    "GET_BATCH_STARTED": ("digits", Events.GET_BATCH_STARTED(once=8), 1),
    "GET_BATCH_COMPLETED": ("digits", Events.GET_BATCH_COMPLETED(once=8), 1),
    "ITERATION_STARTED": ("digits", Events.ITERATION_STARTED(once=9), 1),
    "ITERATION_COMPLETED-mid-epoch": ("digits", Events.ITERATION_COMPLETED(once=9), 1),
    "ITERATION_COMPLETED-last-of-epoch": ("digits", Events.ITERATION_COMPLETED(once=12), 1),
    "EPOCH_COMPLETED": ("digits", Events.EPOCH_COMPLETED(once=2), 1),
    "DATALOADER_STOP_ITERATION-mid-epoch": ("digits_long_epochs", Events.DATALOADER_STOP_ITERATION, 2),
    "no-data-ITERATION_STARTED": ("no_data", Events.ITERATION_STARTED(once=7), 1),
    "no-data-ITERATION_COMPLETED-last-of-epoch": ("no_data", Events.ITERATION_COMPLETED(once=10), 1),
}
SETUPS = ("digits", "digits_long_epochs", "no_data")


class NoisyDigits(Dataset):
    """The digits, each fetched with fresh torch and Python noise (an augmentation at fetch time)."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x = torch.from_numpy(x)
        self.y = torch.from_numpy(y)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index] + 0.1 * torch.randn(64) + random.gauss(0.0, 0.05), self.y[index]


class GlobalRandomState:
    """What a user of a plain Engine puts in ``to_save`` to carry the generators across processes."""

    def state_dict(self) -> dict:
        return {
            "torch": torch.get_rng_state(),
            "python": list(random.getstate()[1]),
            "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
            "numpy_pos": np.random.get_state()[2],
        }

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        random.setstate((3, tuple(state["python"]), None))
        np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), int(state["numpy_pos"])))


def fingerprint(batch) -> str:
    x, y = batch
    return hashlib.sha1(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()[:16]


def draws() -> list[float]:
    return [torch.rand(1).item(), random.random(), float(np.random.rand())]


class Recorder:
    """One handler per built-in event; each records its call and draws from torch, random and numpy."""

    def __init__(self, engine: Engine, draw_at_started: bool) -> None:
        self.calls: list = []
        self.draw_at_started = draw_at_started
        for event in EVENTS:
            engine.add_event_handler(event, self.record, event.name)

    def record(self, engine: Engine, name: str) -> None:
        details: list = draws() if name != "STARTED" or self.draw_at_started else []
        if name == "ITERATION_COMPLETED":
            batch = engine.state.batch
            details += [fingerprint(batch) if batch is not None else None, engine.state.output]
        self.calls.append([name, engine.state.epoch, engine.state.iteration, details])


def seed_everything() -> None:
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)


def build(setup: str, data_path: str) -> dict:
    """Fresh objects for a set-up: trainer, model, optimizer, recorder, run arguments, to_save."""
    seed_everything()
    if setup == "no_data":
        model = torch.nn.Linear(3, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

        def update(engine: Engine, batch: None) -> float:
            x = torch.randn(4, 3)
            optimizer.zero_grad()
            loss = (model(x) - x.sum(dim=1, keepdim=True)).pow(2).mean()
            loss.backward()
            optimizer.step()
            return loss.item()

        trainer = Engine(update)
        recorder = Recorder(trainer, draw_at_started=False)
        to_save = {"trainer": trainer, "model": model, "optimizer": optimizer, "random": GlobalRandomState()}
        run_args = {"data": None, "max_epochs": MAX_EPOCHS, "epoch_length": 5}
        return dict(trainer=trainer, model=model, recorder=recorder, to_save=to_save, run_args=run_args)
    arrays = np.load(data_path)
    loader = DataLoader(NoisyDigits(arrays["x"], arrays["y"]), batch_size=BATCH, shuffle=True)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 24), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(24, 10)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    trainer = create_supervised_trainer(model, optimizer, torch.nn.CrossEntropyLoss(), deterministic=True)
    recorder = Recorder(trainer, draw_at_started=True)
    to_save = {"trainer": trainer, "model": model, "optimizer": optimizer}
    epoch_length = 8 if setup == "digits_long_epochs" else None
    run_args = {"data": loader, "max_epochs": MAX_EPOCHS, "epoch_length": epoch_length}
    return dict(trainer=trainer, model=model, recorder=recorder, to_save=to_save, run_args=run_args)


def save_weights(model: torch.nn.Module, path: Path) -> None:
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, path)


def write(path: Path, record: dict) -> None:
    path.write_text(json.dumps(record))


def first(data_path: str, out: Path, scenarios: list[str]) -> None:
    for setup in SETUPS:
        objects = build(setup, data_path)
        objects["trainer"].run(**objects["run_args"])
        write(out / f"reference-{setup}.json", {"calls": objects["recorder"].calls})
        save_weights(objects["model"], out / f"reference-{setup}.pt")
    for name in scenarios:
        setup, until, times = SCENARIOS[name]
        objects = build(setup, data_path)
        trainer = objects["trainer"]
        trainer.step(until=until, **objects["run_args"])
        for _ in range(times - 1):
            trainer.step(until=until)
        folder = out / name
        folder.mkdir()
        checkpoint = Checkpoint(objects["to_save"], DiskSaver(folder / "checkpoints", create_dir=True), n_saved=None)
        checkpoint(trainer)
        record = {
            "calls": objects["recorder"].calls,
            "status": trainer.status,
            "last_event": getattr(trainer.last_event, "name", repr(trainer.last_event)),
            "epoch": trainer.state.epoch,
            "iteration": trainer.state.iteration,
            "checkpoint": str(checkpoint.last_checkpoint),
        }
        write(folder / "first.json", record)


def resume(data_path: str, out: Path, name: str) -> None:
    setup, _, _ = SCENARIOS[name]
    folder = out / name
    checkpoint_path = json.loads((folder / "first.json").read_text())["checkpoint"]
    objects = build(setup, data_path)
    Checkpoint.load_objects(to_load=objects["to_save"], checkpoint=checkpoint_path)
    trainer = objects["trainer"]
    data = objects["run_args"]["data"]
    if data is None:
        trainer.run()
    else:
        trainer.run(data)
    write(folder / "resumed.json", {"calls": objects["recorder"].calls, "status": trainer.status})
    save_weights(objects["model"], folder / "resumed_weights.pt")


def resume_forked(data_path: str, out: Path, names: list[str]) -> None:
    """Wait for a line on stdin (the first halves are written by then), then resume each scenario in
    a process of its own, forked from this one, which has imported everything and run nothing, two
    at a time. Each fork's exit status goes to OUT/resume_exit_codes.json; a failure's traceback to
    OUT/SCENARIO/resume_error.txt."""
    import torch._dynamo  # noqa: F401  (what the first optimizer step would import, in every fork)

    sys.stdin.readline()
    codes: dict[str, int] = {}
    running: dict[int, str] = {}
    pending = list(names)
    while pending or running:
        while pending and len(running) < 2:
            name = pending.pop(0)
            pid = os.fork()
            if pid == 0:
                _resume_in_fork(data_path, out, name)
            running[pid] = name
        pid, status = os.wait()
        codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
    write(out / "resume_exit_codes.json", codes)


def _resume_in_fork(data_path: str, out: Path, name: str) -> None:
    code = 0
    try:
        resume(data_path, out, name)
    except BaseException:  # noqa: BLE001  (reported to the test through the file and the exit status)
        (out / name / "resume_error.txt").write_text(traceback.format_exc())
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    torch.set_num_threads(1)
    data_path, out, mode, *names = sys.argv[1:]
    if mode == "first":
        first(data_path, Path(out), names)
    elif mode == "resume" and len(names) == 1:
        resume(data_path, Path(out), names[0])
    elif mode == "resume-forked":
        resume_forked(data_path, Path(out), names)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
