"""One rank of the 2-process gloo jobs the distributed tests start (under torchrun, or through ``Parallel``).

A small MLP with dropout, trained by a ``DeterministicEngine`` on ``auto_model`` / ``auto_dataloader``,
driven by a ``DistributedControl``. Each rank writes ``rank<r>.pt`` (final weights, the status of every
stretch of driving, the indices it trained on, what it raised) into ``--out``. The ``--scenario`` says
what happens during the run:

- ``plain``: nothing;
- ``pause``: rank ``--from-rank`` requests, at iteration 5, a pause, a 2-iteration step, a step to the end
  of the epoch, and a resume;
- ``sigint``: every rank waits at iteration 5 until it got SIGINT (the test sends it); ``run()`` raises
  KeyboardInterrupt, the rank records where it stands, then either runs on (``--after-interrupt run``)
  or saves a checkpoint and exits (``--after-interrupt save``);
- ``save-kill``: rank ``--from-rank`` requests a save at iteration 10; at iteration 14 every rank announces
  it is blocked and waits to be killed;
- ``fail``: rank 1 raises at iteration 6;
- ``replay``: rank ``--from-rank`` requests, at iteration 18, a replay of epoch 2 on every rank, then a resume.

``--resume PATH`` loads a checkpoint (model, optimizer, every rank's engine state) before running.
Launch with ``--launcher parallel`` to start the 2 ranks with ``Parallel(backend="gloo", nproc_per_node=2)``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import nbengine.distributed as idist
from nbengine.distributed import DistributedControl, RankFailedError, RankStates
from nbengine.engine import DeterministicEngine, Events
from nbengine.handlers import Checkpoint, DiskSaver, EpochReplay

MAX_EPOCHS = 3
SAMPLES = 64
GLOBAL_BATCH = 8


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--scenario", default="plain", choices=["plain", "pause", "sigint", "save-kill", "fail", "replay"])
    parser.add_argument("--from-rank", type=int, default=0)
    parser.add_argument("--after-interrupt", default="run", choices=["run", "save"])
    parser.add_argument("--resume", default=None)
    parser.add_argument("--launcher", default="torchrun", choices=["torchrun", "parallel"])
    parser.add_argument("--every", type=int, default=1)
    return parser


def _data() -> torch.utils.data.TensorDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(SAMPLES, 8, generator=generator)
    y = x @ torch.randn(8, 1, generator=generator) + 0.1 * torch.randn(SAMPLES, 1, generator=generator)
    return torch.utils.data.TensorDataset(x, y)


def _wait_for(condition, what: str, limit: float = 120.0) -> None:
    """Poll ``condition`` (the test's signal, not a timing assumption); give up loudly after ``limit`` s."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {limit} s for {what}")
        time.sleep(0.01)


def train(local_rank: int, args: argparse.Namespace) -> None:
    out = Path(args.out)
    rank = idist.get_rank()
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def update(engine, batch):
        x, y = batch
        model.train()
        optimizer.zero_grad()
        loss = F.mse_loss(ddp_model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    trainer = DeterministicEngine(update, seed=7)
    to_save = {"model": model, "optimizer": optimizer, "trainer": RankStates(trainer)}
    if args.resume:
        Checkpoint.load_objects(to_load=to_save, checkpoint=args.resume)
    ddp_model = idist.auto_model(model)
    optimizer = idist.auto_optim(optimizer)
    loader = idist.auto_dataloader(_data(), batch_size=GLOBAL_BATCH, shuffle=True)

    checkpoint = Checkpoint(to_save, DiskSaver(out / "checkpoints", require_empty=False), n_saved=None)
    replay = EpochReplay(trainer, {"model": model, "optimizer": optimizer}) if args.scenario == "replay" else None
    control = DistributedControl(trainer, every=args.every, checkpoint=checkpoint, replay=replay)
    record = {"stretches": [], "batches": [], "interrupted_at": [], "error": None, "replays": control.replay_reports}
    trainer.add_status_hook(lambda engine, status: record["stretches"].append((status, engine.state.iteration)))
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: record["batches"].append(e.state.batch[0].sum().item()))
    _add_scenario(args, trainer, control, rank, out)

    try:
        _drive(args, control, loader, record, checkpoint, trainer)
    except BaseException as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        record["weights"] = {k: v.clone() for k, v in model.state_dict().items()}
        record["iteration"] = trainer.state.iteration
        torch.save(record, out / f"rank{rank}.pt")


def _drive(args, control, loader, record, checkpoint, trainer) -> None:
    while True:
        try:
            control.run(loader, max_epochs=MAX_EPOCHS)
            return
        except KeyboardInterrupt:
            record["interrupted_at"].append(trainer.state.iteration)
            if args.after_interrupt == "save":
                checkpoint(trainer)
                return


def _add_scenario(args, trainer, control, rank: int, out: Path) -> None:
    if args.scenario == "pause" and rank == args.from_rank:

        @trainer.on(Events.ITERATION_COMPLETED(once=5))
        def request(_):
            control.pause()
            control.step(2)
            control.step(until=Events.EPOCH_COMPLETED)
            control.resume()

    elif args.scenario == "sigint":

        @trainer.on(Events.ITERATION_COMPLETED(once=5))
        def wait_for_sigint(_):
            (out / f"ready{rank}").write_text(str(os.getpid()))
            _wait_for(lambda: control.interrupt_pending, "SIGINT")

    elif args.scenario == "save-kill":
        if rank == args.from_rank:
            trainer.add_event_handler(Events.ITERATION_COMPLETED(once=10), lambda _: control.save())

        @trainer.on(Events.ITERATION_COMPLETED(once=14))
        def block(_):
            (out / f"blocked{rank}").write_text(str(os.getpid()))
            _wait_for(lambda: False, "the test to kill this process", limit=600)

    elif args.scenario == "replay" and rank == args.from_rank:

        @trainer.on(Events.ITERATION_COMPLETED(once=18))
        def request_replay(_):
            control.replay(2)
            control.resume()

    elif args.scenario == "fail" and rank == 1:

        @trainer.on(Events.ITERATION_COMPLETED(once=6))
        def fail(_):
            raise ValueError("rank 1 broke on purpose")


def main(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.launcher == "parallel":
        with idist.Parallel(backend="gloo", nproc_per_node=2) as parallel:
            parallel.run(train, args)
    else:
        with idist.Parallel(backend="gloo") as parallel:
            parallel.run(train, args)


if __name__ == "__main__":
    main(sys.argv[1:])
