"""Per-iteration overhead of the engine, side by side in one run: a bare loop, nbengine's Engine and
pytorch-ignite's Engine (the reference; `pip install -e ".[bench]"`).

Cases: a no-op step with no handlers, with 5 plain handlers, with 5 handlers filtered by
``every=100``, and a tiny MLP step (32-64-10, batch 64, SGD, 1 thread) on the two workloads of
``mlp.py``: batches from a DataLoader (the ≈280 µs step of docs/design.md) and the same batches as a list
(about 110 µs, where fixed costs weigh more than twice as much). The bare loop calls the same step
function the engines call. Repetitions of all cases are
interleaved so drift hits them alike; medians are reported, with ratios.

    python benchmarks/bench_engine.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterable

import torch

import nbengine.engine as nb
from harness import interleave, quiet_single_thread
from mlp import Mlp

try:
    import ignite.engine as ig
except ImportError:  # the table still shows nbengine against the bare loop
    ig = None


def noop_data(count: int) -> list[int]:
    return list(range(count))


def bare_noop(data: list[int]) -> float:
    def step(batch):
        return batch

    began = time.perf_counter()
    for batch in data:
        step(batch)
    return (time.perf_counter() - began) / len(data)


def engine_noop(module, data: list[int], handlers: int, every: int | None) -> float:
    engine = module.Engine(lambda engine, batch: batch)
    for _ in range(handlers):
        event = module.Events.ITERATION_COMPLETED if every is None else module.Events.ITERATION_COMPLETED(every=every)
        engine.add_event_handler(event, lambda engine: None)
    began = time.perf_counter()
    engine.run(data, max_epochs=1)
    return (time.perf_counter() - began) / len(data)


def bare_mlp(mlp: Mlp, data: Iterable) -> float:
    began = time.perf_counter()
    for batch in data:
        mlp.update(batch)
    return (time.perf_counter() - began) / len(mlp.data)


def engine_mlp(module, mlp: Mlp, data: Iterable) -> float:
    engine = module.Engine(mlp.step)
    began = time.perf_counter()
    engine.run(data, max_epochs=1)
    return (time.perf_counter() - began) / len(mlp.data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations and repetitions")
    args = parser.parse_args()
    quiet_single_thread()
    iterations = 20_000 if args.quick else 200_000
    repeats = 3 if args.quick else 7
    mlp_batches = 300 if args.quick else 2_000
    data = noop_data(iterations)
    mlp = Mlp(mlp_batches)

    engines = [("nbengine", nb)] + ([("ignite", ig)] if ig is not None else [])
    cases: dict[str, callable] = {"bare: no-op": lambda: bare_noop(data)}
    for name, module in engines:
        cases[f"{name}: no handlers"] = lambda m=module: engine_noop(m, data, 0, None)
        cases[f"{name}: 5 handlers"] = lambda m=module: engine_noop(m, data, 5, None)
        cases[f"{name}: 5 handlers every=100"] = lambda m=module: engine_noop(m, data, 5, 100)
    for workload, data_of in (("DataLoader", Mlp.loader), ("list", lambda mlp: mlp.data)):
        cases[f"bare: MLP step, {workload}"] = lambda d=data_of: bare_mlp(mlp, d(mlp))
        for name, module in engines:
            cases[f"{name}: MLP step, {workload}"] = lambda m=module, d=data_of: engine_mlp(m, mlp, d(mlp))

    samples = interleave(cases, repeats)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    minima = {name: min(values) for name, values in samples.items()}

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, {iterations} no-op iterations, "
          f"{mlp_batches} MLP iterations, {repeats} interleaved repetitions, medians")
    # The minimum is the repetition least disturbed by other processes; both are shown.
    print(f"{'case':<36} {'µs/iter':>10} {'overhead µs':>12} {'ratio to bare':>14} {'ratio of minima':>16}")
    for name, value in medians.items():
        bare_name = "bare: MLP step, " + name.split(", ")[1] if "MLP" in name else "bare: no-op"
        bare = medians[bare_name]
        print(
            f"{name:<36} {value * 1e6:>10.3f} {(value - bare) * 1e6:>12.3f} {value / bare:>14.3f} "
            f"{minima[name] / minima[bare_name]:>16.3f}"
        )
    for name, _ in engines:
        plain = medians[f"{name}: 5 handlers"] - medians[f"{name}: no handlers"]
        filtered = medians[f"{name}: 5 handlers every=100"] - medians[f"{name}: no handlers"]
        print(f"{name}: per plain handler {plain / 5 * 1e6:.3f} µs, per filtered handler {filtered / 5 * 1e6:.3f} µs "
              f"(filtered/plain {filtered / plain:.2f})")


if __name__ == "__main__":
    main()
