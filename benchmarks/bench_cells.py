"""Cost of keeping the user's cells apart from a background run (``CellGuard``): per iteration
when no cell runs, and per cell.

Training: the MLP step (``benchmarks/mlp.py``, batches from a list, one torch thread) on a
``DeterministicEngine`` started in the background (``start()``), 2000 iterations per epoch.

1. Per iteration, no cell running: epochs of a background run with a guard attached and without one,
   interleaved. Budget: 0 (the guard attaches a STARTED handler only).
2. Per cell: ``with guard: pass`` entered and left while the run trains, as a cell's pre/post_run_cell
   hooks do; the time the user's side waits (for the next boundary, then for the swap of the
   generators back and forth) and the time the training loses, measured as the drop in iterations per
   second over a stretch with a cell every 50 ms against one without.

    python benchmarks/bench_cells.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

from harness import interleave, quiet_single_thread
from mlp import Mlp
from nbengine.engine.cell_guard import CellGuard
from nbengine.engine.deterministic import DeterministicEngine

ITERATIONS = 2000


def background_epoch(guarded: bool) -> float:
    mlp = Mlp(batches=ITERATIONS)
    trainer = DeterministicEngine(mlp.step, seed=1)
    if guarded:
        CellGuard(trainer)
    began = time.perf_counter()
    trainer.start(mlp.data, max_epochs=1)
    trainer.wait()
    return (time.perf_counter() - began) / ITERATIONS


def cells(stretch: float, every: float | None) -> tuple[float, list[float]]:
    """Iterations per second of a background run over ``stretch`` seconds, with a cell every
    ``every`` seconds (or none); and how long each cell waited on entering and leaving."""
    mlp = Mlp(batches=500)
    trainer = DeterministicEngine(mlp.step, seed=1)
    guard = CellGuard(trainer)
    trainer.start(mlp.data, max_epochs=100_000)
    time.sleep(0.2)
    waits = []
    first = trainer.state.iteration
    began = time.perf_counter()
    while time.perf_counter() - began < stretch:
        if every is None:
            time.sleep(0.05)
            continue
        entered = time.perf_counter()
        with guard:
            inside = time.perf_counter()
        waits.append((inside - entered) + (time.perf_counter() - inside))
        time.sleep(every)
    done = trainer.state.iteration - first
    elapsed = time.perf_counter() - began
    trainer.stop()
    trainer.wait()
    return done / elapsed, waits


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    quiet_single_thread()
    repeats = 3 if args.quick else 11
    samples = interleave({"without guard": lambda: background_epoch(False), "with guard": lambda: background_epoch(True)}, repeats)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"\n1. Per iteration, background run of {ITERATIONS} MLP steps, no cell running ({repeats} rounds)")
    for name, value in medians.items():
        print(f"  {name:<14} {value * 1e6:7.1f} µs/iteration  ÷ without {value / medians['without guard']:.3f}")
    stretch = 2.0 if args.quick else 5.0
    rates_without, rates_with, waits = [], [], []
    for _ in range(repeats):
        rates_without.append(cells(stretch, None)[0])
        rate, cell_waits = cells(stretch, 0.05)
        rates_with.append(rate)
        waits.extend(cell_waits)
    without, with_cells = statistics.median(rates_without), statistics.median(rates_with)
    cells_per_second = 1 / (0.05 + statistics.median(waits))
    lost = (1 / with_cells - 1 / without) * with_cells / cells_per_second
    print(f"\n2. Per cell (a cell every 50 ms beside the run, {len(waits)} cells)")
    print(f"  the user's side waits: median {statistics.median(waits) * 1e3:.2f} ms, max {max(waits) * 1e3:.2f} ms")
    print(f"  iterations/s: {without:.0f} without cells, {with_cells:.0f} with; the training loses ~{lost * 1e3:.2f} ms per cell")


if __name__ == "__main__":
    main()
