"""Worker of test_distributed.py: two gloo ranks, each feeding its own half of the data to the metrics.

``python -m tests.metrics._two_rank_worker OUT`` starts both ranks with ``nbengine.distributed.spawn``;
each writes ``OUT/rank<r>.pt``: the computed values and its state dict.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def data(rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The batches of ``rank`` (rank r gets every second batch, starting at r)."""
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(6, 3, generator=generator), torch.randint(0, 3, (6,), generator=generator)) for _ in range(8)]
    return batches[rank::2]


def make_metrics() -> dict:
    from nbengine.metrics import (
        Accuracy,
        Average,
        ConfusionMatrix,
        EpochMetric,
        Loss,
        Precision,
        RunningAverage,
        TopKCategoricalAccuracy,
    )

    return {
        "accuracy": Accuracy(),
        "precision": Precision(average=False),
        "precision_weighted": Precision(average="weighted"),
        "confusion": ConfusionMatrix(num_classes=3),
        "loss": Loss(torch.nn.functional.cross_entropy),
        "average": Average(output_transform=lambda output: output[0]),
        "top2": TopKCategoricalAccuracy(k=2),
        "largest": EpochMetric(lambda y_pred, y: float(y_pred.max()), check_compute_fn=False),
        "smoothed": RunningAverage(output_transform=lambda output: float(output[0].sum()), alpha=0.5),
    }


def evaluate(local_rank: int, out: str) -> None:
    import nbengine.distributed as idist
    from nbengine.engine import Engine

    rank = idist.get_rank()
    engine = Engine(lambda engine, batch: batch)
    metrics = make_metrics()
    for name, metric in metrics.items():
        metric.attach(engine, name)
    values = dict(engine.run(data(rank)).metrics)
    states = {name: metric.state_dict() for name, metric in metrics.items()}
    restored = make_metrics()["confusion"]
    restored.load_state_dict(states["confusion"])
    values["restored_local_confusion"] = restored.confusion_matrix  # this rank's part, before any reduction
    torch.save({"rank": rank, "world_size": idist.get_world_size(), "values": values, "states": states},
               Path(out) / f"rank{rank}.pt")


def main(out: str) -> None:
    from nbengine.distributed import spawn

    spawn("gloo", evaluate, (out,), nproc_per_node=2, start_method="spawn")


if __name__ == "__main__":
    main(sys.argv[1])
