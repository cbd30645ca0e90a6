"""Cost of one metric update (``iteration_completed`` on a batch of 64 x 10 scores), nbengine beside
pytorch-ignite 0.5.5 and beside the bare tensor expression the metric boils down to.

Cases, per metric: the bare expression (e.g. ``(y_pred.argmax(1) == y).sum()`` for Accuracy), nbengine's
metric and ignite's, each fed the same engine output. Rounds are interleaved (``harness.interleave``);
medians are reported, with the ratio to ignite and to the bare expression.

    python benchmarks/bench_metrics.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace

import torch
import torch.nn.functional as F  # noqa: N812

from harness import interleave, quiet_single_thread

CALLS = 500


def per_call(function: Callable[[], object], calls: int) -> Callable[[], float]:
    def measure() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            function()
        return (time.perf_counter() - start) / calls

    return measure


def cases(calls: int) -> dict[str, dict[str, Callable[[], float]]]:
    import ignite.metrics as ignite_metrics

    import nbengine.metrics as nb_metrics

    generator = torch.Generator().manual_seed(0)
    scores, labels = torch.randn(64, 10, generator=generator), torch.randint(0, 10, (64,), generator=generator)
    targets = torch.randn(64, 10, generator=generator)
    classes = SimpleNamespace(state=SimpleNamespace(output=(scores, labels)))
    regression = SimpleNamespace(state=SimpleNamespace(output=(scores, targets)))
    metrics = {
        "Accuracy": (lambda m: m.Accuracy(), classes, lambda: (scores.argmax(1) == labels).sum()),
        "Precision": (lambda m: m.Precision(), classes, lambda: F.one_hot(scores.argmax(1), 10).sum(0)),
        "ConfusionMatrix": (lambda m: m.ConfusionMatrix(10), classes,
                            lambda: torch.bincount(labels * 10 + scores.argmax(1), minlength=100)),
        "Loss": (lambda m: m.Loss(F.cross_entropy), classes, lambda: F.cross_entropy(scores, labels)),
        "MeanSquaredError": (lambda m: m.MeanSquaredError(), regression, lambda: (scores - targets).square().sum()),
        "TopKCategoricalAccuracy": (lambda m: m.TopKCategoricalAccuracy(), classes,
                                    lambda: (scores.topk(5, 1).indices == labels[:, None]).sum()),
    }
    table = {}
    for name, (make, engine, bare) in metrics.items():
        ours, theirs = make(nb_metrics), make(ignite_metrics)
        table[name] = {
            "bare": per_call(bare, calls),
            "nbengine": per_call(lambda m=ours, e=engine: m.iteration_completed(e), calls),
            "ignite": per_call(lambda m=theirs, e=engine: m.iteration_completed(e), calls),
        }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run, not figures)")
    args = parser.parse_args()
    quiet_single_thread()
    repeats = 3 if args.quick else 15
    print(f"{'metric':26s} {'bare µs':>9s} {'nbengine µs':>12s} {'ignite µs':>10s} {'nb/ignite':>10s} {'nb/bare':>8s}")
    for name, metric_cases in cases(CALLS // 10 if args.quick else CALLS).items():
        samples = interleave(metric_cases, repeats)
        bare, ours, theirs = (statistics.median(samples[key]) * 1e6 for key in ("bare", "nbengine", "ignite"))
        print(f"{name:26s} {bare:9.1f} {ours:12.1f} {theirs:10.1f} {ours / theirs:10.2f} {ours / bare:8.2f}")


if __name__ == "__main__":
    main()
