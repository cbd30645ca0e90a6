"""Cost of the progress bar and the loss history, side by side in one run: a bare loop, nbengine's
supervised trainer and pytorch-ignite's (the reference; `pip install -e ".[bench]"`).

Cases:
- the MLP step (32-64-10, batch 64, SGD, 1 thread) on two workloads (see ``mlp.py``): batches read
  from a DataLoader, the ≈280 µs step the budgets of docs/design.md were set against, and the same batches
  as a ready list, where the step is about 110 µs and every fixed cost weighs more than twice as
  much. For each: a hand-written loop; the same step as an Engine's process function; each
  library's ``create_supervised_trainer`` alone; with its ProgressBar attached the way ignite's docs
  do (``pbar.attach(trainer, output_transform=lambda x: {"loss": x})``); for nbengine, with the loss
  history (``nbengine.handlers.History``) and with both; and, on the DataLoader, the deterministic
  trainer with both (its History records each batch's sample indices, for replay);
- a no-op step with and without the bar, to show the bar's own per-iteration cost.

Both bars write to os.devnull, so terminal speed does not enter. Repetitions of all cases are
interleaved so drift hits them alike; medians are reported, with ratios to the bare loop of the
same workload (and the ratio of the minima, which other processes on the machine disturb less).

    python benchmarks/bench_progress.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

import nbengine.engine as nb_engine
from nbengine.handlers import History
from nbengine.handlers import ProgressBar as NbProgressBar
from harness import interleave, quiet_single_thread
from mlp import Mlp

try:
    import ignite.engine as ig_engine
    from ignite.handlers.tqdm_logger import ProgressBar as IgProgressBar
except ImportError:  # the table still shows nbengine against the bare loop
    ig_engine = None
    IgProgressBar = None

#: How each workload hands the batches of an Mlp to the loop.
WORKLOADS: dict[str, Callable[[Mlp], Iterable]] = {
    "DataLoader": lambda mlp: mlp.loader(),
    "list": lambda mlp: mlp.data,
}


def bare_mlp(mlp: Mlp, data: Iterable) -> float:
    model, optimizer, loss_fn = mlp.model, mlp.optimizer, mlp.loss_fn
    began = time.perf_counter()
    model.train()
    for x, y in data:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        loss.item()
    return (time.perf_counter() - began) / len(mlp.data)


def engine_mlp(module: Any, mlp: Mlp, data: Iterable) -> float:
    """The bare loop's step as a process function: separates the engine's cost from the supervised factory's."""
    model, optimizer, loss_fn = mlp.model, mlp.optimizer, mlp.loss_fn

    def step(engine: Any, batch: Any) -> float:
        x, y = batch
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    model.train()
    engine = module.Engine(step)
    began = time.perf_counter()
    engine.run(data, max_epochs=1)
    return (time.perf_counter() - began) / len(mlp.data)


def trainer_mlp(
    module: Any, mlp: Mlp, data: Iterable, decorate: Callable[[Any], None] | None, deterministic: bool = False
) -> float:
    trainer = module.create_supervised_trainer(mlp.model, mlp.optimizer, mlp.loss_fn, deterministic=deterministic)
    if decorate is not None:
        decorate(trainer)
    began = time.perf_counter()
    trainer.run(data, max_epochs=1)
    return (time.perf_counter() - began) / len(mlp.data)


def noop(module: Any, data: list[int], decorate: Callable[[Any], None] | None) -> float:
    engine = module.Engine(lambda engine, batch: batch)
    if decorate is not None:
        decorate(engine)
    began = time.perf_counter()
    engine.run(data, max_epochs=1)
    return (time.perf_counter() - began) / len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations and repetitions")
    args = parser.parse_args()
    quiet_single_thread()
    repeats = 3 if args.quick else 11
    mlp_batches = 300 if args.quick else 1_500
    noop_iterations = 5_000 if args.quick else 50_000
    noop_data = list(range(noop_iterations))
    sink = open(os.devnull, "w")  # noqa: SIM115 - open for the whole run

    def nb_bar(trainer: Any) -> None:
        NbProgressBar(file=sink).attach(trainer, output_transform=lambda x: {"loss": x})

    def nb_history(trainer: Any) -> None:
        History().attach(trainer)

    def nb_bar_and_history(trainer: Any) -> None:
        nb_bar(trainer)
        nb_history(trainer)

    def ig_bar(trainer: Any) -> None:
        IgProgressBar(file=sink).attach(trainer, output_transform=lambda x: {"loss": x})

    def mlp_case(run: Callable[..., float], *arguments: Any, **keywords: Any) -> Callable[[str], float]:
        def measure(workload: str) -> float:
            mlp = Mlp(mlp_batches)
            return run(*arguments[:1], mlp, WORKLOADS[workload](mlp), *arguments[1:], **keywords)

        return measure

    mlp_cases: dict[str, Callable[[str], float]] = {
        "bare: MLP step": lambda workload: bare_mlp(mlp := Mlp(mlp_batches), WORKLOADS[workload](mlp)),
        "nbengine: Engine(step)": mlp_case(engine_mlp, nb_engine),
        "nbengine: trainer": mlp_case(trainer_mlp, nb_engine, None),
        "nbengine: trainer + bar": mlp_case(trainer_mlp, nb_engine, nb_bar),
        "nbengine: trainer + history": mlp_case(trainer_mlp, nb_engine, nb_history),
        "nbengine: trainer + bar + history": mlp_case(trainer_mlp, nb_engine, nb_bar_and_history),
        "nbengine: deterministic + bar + history": mlp_case(
            trainer_mlp, nb_engine, nb_bar_and_history, deterministic=True
        ),
    }
    if ig_engine is not None:
        mlp_cases["ignite: Engine(step)"] = mlp_case(engine_mlp, ig_engine)
        mlp_cases["ignite: trainer"] = mlp_case(trainer_mlp, ig_engine, None)
        mlp_cases["ignite: trainer + bar"] = mlp_case(trainer_mlp, ig_engine, ig_bar)
    cases: dict[str, Callable[[], float]] = {}
    for workload in WORKLOADS:
        for name, measure in mlp_cases.items():
            if workload == "list" and name.startswith("nbengine: deterministic"):
                continue  # over a list it fingerprints batch content, a cost the DataLoader case does not show
            cases[f"{workload} | {name}"] = lambda measure=measure, workload=workload: measure(workload)
    cases["no-op | nbengine: no-op"] = lambda: noop(nb_engine, noop_data, None)
    cases["no-op | nbengine: no-op + bar"] = lambda: noop(nb_engine, noop_data, nb_bar)
    if ig_engine is not None:
        cases["no-op | ignite: no-op"] = lambda: noop(ig_engine, noop_data, None)
        cases["no-op | ignite: no-op + bar"] = lambda: noop(ig_engine, noop_data, ig_bar)

    samples = interleave(cases, repeats)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    minima = {name: min(values) for name, values in samples.items()}

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread, {mlp_batches} MLP iterations, "
        f"{noop_iterations} no-op iterations, {repeats} interleaved repetitions; medians (and minima, which "
        "other processes on the machine disturb less)"
    )
    print(f"{'workload | case':<52} {'µs/iter':>9} {'overhead µs':>12} {'ratio':>7} {'min ratio':>10}  ratio to")
    for name, value in medians.items():
        workload, case = name.split(" | ")
        if workload == "no-op":
            reference_name = f"no-op | {case.split(':')[0]}: no-op"
        else:
            reference_name = f"{workload} | bare: MLP step"
        reference = medians[reference_name]
        print(
            f"{name:<52} {value * 1e6:>9.3f} {(value - reference) * 1e6:>12.3f} {value / reference:>7.3f} "
            f"{minima[name] / minima[reference_name]:>10.3f}  {reference_name.split(' | ')[1]}"
        )
    for library in ("nbengine", "ignite"):
        if f"no-op | {library}: no-op + bar" in medians:
            cost = medians[f"no-op | {library}: no-op + bar"] - medians[f"no-op | {library}: no-op"]
            print(f"{library}: the progress bar costs {cost * 1e6:.3f} µs per iteration")


if __name__ == "__main__":
    main()
