"""The 2-process gloo MLP step (DDP on 127.0.0.1): plain DDP loop, nbengine's Engine, nbengine with its
collective control (agreeing every iteration, every 8, and adaptively about every 50 ms, the default), and pytorch-ignite's Engine with its idist,
all in one run (`pip install -e ".[bench]"` for ignite).

Both ranks run the same cases in the same order; each sample is one pass over ``--iterations`` batches
of the benchmarks' MLP (32-64-10, SGD, batch 64 per rank, one torch thread per rank), timed on rank 0
between two barriers. Cases are interleaved over ``--repeats`` rounds so that drift of the machine hits
them alike. Budget (design): the collective control costs <= 2% per iteration over nbengine's Engine.

    python benchmarks/bench_distributed.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))

from harness import interleave, quiet_single_thread  # noqa: E402
from mlp import Mlp  # noqa: E402

import nbengine.distributed as idist  # noqa: E402
from nbengine.distributed import DistributedControl  # noqa: E402
from nbengine.engine import Engine  # noqa: E402


def _timed(body: Callable[[], None], iterations: int) -> Callable[[], float]:
    def measure() -> float:
        dist.barrier()
        start = time.perf_counter()
        body()
        dist.barrier()
        return (time.perf_counter() - start) / iterations

    return measure


def _cases(work: Mlp, iterations: int) -> dict[str, Callable[[], float]]:
    model = idist.auto_model(work.model)
    work.model = model

    def plain() -> None:
        for batch in work.data:
            work.update(batch)

    engine = Engine(work.step)
    controlled = {every: Engine(work.step) for every in (1, 8, None)}
    controls = {every: DistributedControl(trainer, every=every) for every, trainer in controlled.items()}
    cases = {
        "plain DDP loop": _timed(plain, iterations),
        "nbengine Engine": _timed(lambda: engine.run(work.data, max_epochs=1), iterations),
        "nbengine + control (every=1)": _timed(lambda: controls[1].run(work.data, max_epochs=1), iterations),
        "nbengine + control (every=8)": _timed(lambda: controls[8].run(work.data, max_epochs=1), iterations),
        "nbengine + control (default)": _timed(lambda: controls[None].run(work.data, max_epochs=1), iterations),
    }
    try:
        import ignite.distributed as ignite_idist
        from ignite.engine import Engine as IgniteEngine
    except ImportError:
        return cases
    ignite_idist.sync()
    ignite_engine = IgniteEngine(work.step)
    cases["ignite Engine + idist"] = _timed(lambda: ignite_engine.run(work.data, max_epochs=1), iterations)
    return cases


def bench(local_rank: int, iterations: int, repeats: int) -> None:
    quiet_single_thread()
    work = Mlp(batches=iterations)
    samples = interleave(_cases(work, iterations), repeats)
    if idist.get_rank() != 0:
        return
    base = statistics.median(samples["plain DDP loop"])
    engine = statistics.median(samples["nbengine Engine"])
    print(f"2 ranks, gloo, {iterations} iterations per sample, {repeats} rounds; per iteration:")
    print(f"{'case':32} {'median':>10} {'min':>10} {'x plain DDP':>12} {'x nbengine Engine':>18}")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:32} {median * 1e6:8.1f}us {min(values) * 1e6:8.1f}us {median / base:12.3f} {median / engine:18.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations and rounds (a smoke run)")
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    iterations, repeats = (40, 2) if args.quick else (args.iterations, args.repeats)
    with idist.Parallel(backend="gloo", nproc_per_node=2) as parallel:
        parallel.run(bench, iterations, repeats)


if __name__ == "__main__":
    main()
