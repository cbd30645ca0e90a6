"""Cost of the progress bar (and loss history, when present), side by side in one run: a bare loop,
nbengine's supervised trainer and pytorch-ignite's (the reference; `pip install -e ".[bench]"`).

Cases:
- the MLP step (32-64-10, batch 64, SGD, 1 thread): a hand-written loop; the same step as an
  Engine's process function; each library's ``create_supervised_trainer`` alone; and with its
  ProgressBar attached the way ignite's docs do (``pbar.attach(trainer, output_transform=lambda x:
  {"loss": x})``), plus, for nbengine, the loss history recorder of ``nbengine.handlers.history``
  when that module exists (also without its batch fingerprints, "no fp", to show what they cost);
- a no-op step with and without the bar, to show the bar's own per-iteration cost.

Both bars write to os.devnull, so terminal speed does not enter. Repetitions of all cases are
interleaved so drift hits them alike; medians are reported, with ratios to the bare loop.

    python benchmarks/bench_progress.py [--quick]
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

import nbengine.engine as nb_engine
from nbengine.handlers import ProgressBar as NbProgressBar
from mlp import Mlp

try:
    import ignite.engine as ig_engine
    from ignite.handlers.tqdm_logger import ProgressBar as IgProgressBar
except ImportError:  # the table still shows nbengine against the bare loop
    ig_engine = None
    IgProgressBar = None


def find_loss_history() -> tuple[type | None, str]:
    """Return (nbengine's loss history recorder class, or None if it does not exist yet; a line saying which)."""
    try:
        history = importlib.import_module("nbengine.handlers.history")
    except ModuleNotFoundError:
        return None, "nbengine.handlers.history does not exist yet: the nbengine bar case is the bar alone"
    recorder_cls = getattr(history, "History", None)
    if recorder_cls is None:
        raise RuntimeError(
            f"nbengine.handlers.history has no History class (it has {sorted(vars(history))}); "
            "update find_loss_history() in this benchmark"
        )
    return recorder_cls, "loss history: nbengine.handlers.history.History (per-iteration outputs and batch fingerprints)"


def bare_mlp(mlp: Mlp) -> float:
    model, optimizer, loss_fn = mlp.model, mlp.optimizer, mlp.loss_fn
    began = time.perf_counter()
    model.train()
    for x, y in mlp.data:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        loss.item()
    return (time.perf_counter() - began) / len(mlp.data)


def engine_mlp(module: Any, mlp: Mlp) -> float:
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
    engine.run(mlp.data, max_epochs=1)
    return (time.perf_counter() - began) / len(mlp.data)


def trainer_mlp(module: Any, mlp: Mlp, decorate: Callable[[Any], None] | None) -> float:
    trainer = module.create_supervised_trainer(mlp.model, mlp.optimizer, mlp.loss_fn)
    if decorate is not None:
        decorate(trainer)
    began = time.perf_counter()
    trainer.run(mlp.data, max_epochs=1)
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
    torch.set_num_threads(1)
    logging.getLogger("ignite").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    repeats = 3 if args.quick else 11
    mlp_batches = 300 if args.quick else 2_000
    noop_iterations = 5_000 if args.quick else 50_000
    noop_data = list(range(noop_iterations))
    sink = open(os.devnull, "w")  # noqa: SIM115 - open for the whole run
    history_cls, history_note = find_loss_history()

    def nb_bar(trainer: Any) -> None:
        NbProgressBar(file=sink).attach(trainer, output_transform=lambda x: {"loss": x})

    def nb_history(trainer: Any) -> None:
        history_cls().attach(trainer)

    def nb_history_without_fingerprints(trainer: Any) -> None:
        history_cls(fingerprint=None).attach(trainer)

    def nb_bar_and_history(trainer: Any) -> None:
        nb_bar(trainer)
        nb_history(trainer)

    def ig_bar(trainer: Any) -> None:
        IgProgressBar(file=sink).attach(trainer, output_transform=lambda x: {"loss": x})

    cases: dict[str, Callable[[], float]] = {
        "bare: MLP step": lambda: bare_mlp(Mlp(mlp_batches)),
        "nbengine: Engine(step)": lambda: engine_mlp(nb_engine, Mlp(mlp_batches)),
        "nbengine: trainer": lambda: trainer_mlp(nb_engine, Mlp(mlp_batches), None),
        "nbengine: trainer + bar": lambda: trainer_mlp(nb_engine, Mlp(mlp_batches), nb_bar),
    }
    if history_cls is not None:
        cases["nbengine: trainer + history"] = lambda: trainer_mlp(nb_engine, Mlp(mlp_batches), nb_history)
        cases["nbengine: trainer + history, no fp"] = lambda: trainer_mlp(
            nb_engine, Mlp(mlp_batches), nb_history_without_fingerprints
        )
        cases["nbengine: trainer + bar + history"] = lambda: trainer_mlp(nb_engine, Mlp(mlp_batches), nb_bar_and_history)
    if ig_engine is not None:
        cases["ignite: Engine(step)"] = lambda: engine_mlp(ig_engine, Mlp(mlp_batches))
        cases["ignite: trainer"] = lambda: trainer_mlp(ig_engine, Mlp(mlp_batches), None)
        cases["ignite: trainer + bar"] = lambda: trainer_mlp(ig_engine, Mlp(mlp_batches), ig_bar)
    cases["nbengine: no-op"] = lambda: noop(nb_engine, noop_data, None)
    cases["nbengine: no-op + bar"] = lambda: noop(nb_engine, noop_data, nb_bar)
    if ig_engine is not None:
        cases["ignite: no-op"] = lambda: noop(ig_engine, noop_data, None)
        cases["ignite: no-op + bar"] = lambda: noop(ig_engine, noop_data, ig_bar)

    for fn in cases.values():  # warm-up
        fn()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            samples[name].append(fn())
    medians = {name: statistics.median(values) for name, values in samples.items()}
    minima = {name: min(values) for name, values in samples.items()}

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread, {mlp_batches} MLP iterations, "
        f"{noop_iterations} no-op iterations, {repeats} interleaved repetitions; medians (and minima, which "
        "other processes on the machine disturb less)"
    )
    print(history_note)
    print(f"{'case':<36} {'µs/iter':>9} {'overhead µs':>12} {'ratio':>7} {'min ratio':>10}  ratio to")
    for name, value in medians.items():
        if "MLP" in name or "trainer" in name or "step" in name:
            reference_name = "bare: MLP step"
        else:
            reference_name = name.split(":")[0] + ": no-op"
        reference = medians[reference_name]
        print(
            f"{name:<36} {value * 1e6:>9.3f} {(value - reference) * 1e6:>12.3f} {value / reference:>7.3f} "
            f"{minima[name] / minima[reference_name]:>10.3f}  {reference_name}"
        )
    for library in ("nbengine", "ignite"):
        if f"{library}: no-op + bar" in medians:
            cost = medians[f"{library}: no-op + bar"] - medians[f"{library}: no-op"]
            print(f"{library}: the progress bar costs {cost * 1e6:.3f} µs per iteration")


if __name__ == "__main__":
    main()
