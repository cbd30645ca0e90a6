"""The README's digits example on every rank of a torch.distributed job: run it with ``torchrun``.

    torchrun --nproc_per_node=2 -m nbengine.distributed.digits --epochs 5 --out digits-ddp

Each rank trains the same MLP (DDP, gloo on CPU, NCCL on GPU) on its shard of scikit-learn's digits,
under a :class:`~nbengine.distributed.DistributedControl`. Ctrl-C in the torchrun terminal pauses every
rank at the same boundary; the job then saves a checkpoint (rank 0 writes it) and exits, and
``--resume <checkpoint>`` with the same number of processes continues exactly where it stood. Rank 0
prints the accuracy over the whole data set after each epoch (the metric is reduced over the ranks).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import nbengine.distributed as idist
from nbengine.distributed.checkpoint import RankStates
from nbengine.distributed.control import DistributedControl
from nbengine.engine import Events, create_supervised_evaluator, create_supervised_trainer
from nbengine.handlers import Checkpoint, DiskSaver
from nbengine.metrics import Accuracy
from nbengine.utils import manual_seed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torchrun --nproc_per_node=N -m nbengine.distributed.digits",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs to train (default 5)")
    parser.add_argument("--out", default="digits-ddp", help="folder for the checkpoints (default digits-ddp)")
    parser.add_argument("--resume", default=None, help="a checkpoint written by an earlier job of this size")
    parser.add_argument("--backend", default=None, help="gloo or nccl (default: nccl with CUDA, else gloo)")
    return parser


def train(local_rank: int, args: argparse.Namespace) -> float:
    """Train on this rank; returns the accuracy over the whole data after the last epoch."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    data = torch.utils.data.TensorDataset(torch.tensor(digits.data, dtype=torch.float32) / 16,
                                          torch.tensor(digits.target))
    manual_seed(0)
    model = idist.auto_model(torch.nn.Sequential(
        torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(64, 10)
    ))
    optimizer = idist.auto_optim(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    trainer = create_supervised_trainer(model, optimizer, torch.nn.CrossEntropyLoss(), device=idist.device(),
                                        deterministic=True)
    # The checkpoint holds the bare model (Checkpoint unwraps DDP) and every rank's engine state.
    to_save = {"model": model, "optimizer": optimizer, "trainer": RankStates(trainer)}
    if args.resume:
        Checkpoint.load_objects(to_load=to_save, checkpoint=args.resume)
    loader = idist.auto_dataloader(data, batch_size=64, shuffle=True)
    evaluator = create_supervised_evaluator(model, metrics={"accuracy": Accuracy()}, device=idist.device())
    whole = idist.auto_dataloader(data, batch_size=256, shuffle=False)

    @trainer.on(Events.EPOCH_COMPLETED)
    def validate(engine):
        evaluator.run(whole)
        if idist.get_rank() == 0:
            print(f"epoch {engine.state.epoch}: accuracy {evaluator.state.metrics['accuracy']:.4f}", flush=True)

    checkpoint = Checkpoint(to_save, DiskSaver(args.out, require_empty=False), n_saved=2)
    control = DistributedControl(trainer, checkpoint=checkpoint)
    try:
        control.run(loader, max_epochs=args.epochs)
    except KeyboardInterrupt:
        checkpoint(trainer)
        if idist.get_rank() == 0:
            print(f"paused at iteration {trainer.state.iteration}; saved {checkpoint.last_checkpoint}", flush=True)
        return float("nan")
    return evaluator.state.metrics["accuracy"]


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    backend = args.backend or ("nccl" if torch.cuda.is_available() else "gloo")
    with idist.Parallel(backend=backend) as parallel:
        parallel.run(train, args)


if __name__ == "__main__":
    main(sys.argv[1:])
