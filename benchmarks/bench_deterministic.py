"""Cost of deterministic mode, of resuming at epoch k, and of replaying an epoch; nbengine beside
pytorch-ignite's DeterministicEngine in the same run (`pip install -e ".[bench]"`).

Data: a DataLoader over 10,000 items (32 features, 10 classes), batch 32, shuffle=True,
num_workers=0 (313 iterations per epoch). Step: the MLP 32-64-10 with SGD, one thread; or a no-op
step, where only the data path is measured.

1. Per iteration: one epoch on Engine and on DeterministicEngine, for each library; repetitions of all
   cases interleaved so drift hits them alike. Budget: nbengine's deterministic mode <= +2% over its Engine.
2. Resuming at epoch k = 0, 10, 1000, 100000: a new engine and a new DataLoader, as after a restart;
   time from ``load_state_dict`` to the first ``ITERATION_STARTED``, minus one steady-state batch
   fetch; garbage is collected before each sample. Budget: constant in k, <= 2 ms.
3. Replaying epoch k with EpochReplay (in-memory snapshots), against an ordinary epoch of the same
   trainer; also after a resume at epoch 1000. Budget: <= 1.1x one epoch.
4. Correctness beside speed: does a mid-epoch resume fetch exactly the remaining batches?

Medians are printed, with minima (which other processes on the machine disturb less) and ratios.

    python benchmarks/bench_deterministic.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

import nbengine.engine as nb
from nbengine.engine.deterministic import DeterministicEngine as NbDeterministicEngine
from nbengine.handlers import EpochReplay
from nbengine.utils import manual_seed
from harness import interleave, quiet_single_thread
from mlp import Mlp

try:
    import ignite.engine as ig
    from ignite.engine.deterministic import DeterministicEngine as IgDeterministicEngine
except ImportError:  # the tables still show nbengine alone
    ig = None
    IgDeterministicEngine = None

ITEMS = 10_000
BATCH = 32


def make_dataset() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(ITEMS, 32, generator=generator), torch.randint(0, 10, (ITEMS,), generator=generator))


DATASET = make_dataset()


def make_loader() -> DataLoader:
    return DataLoader(DATASET, batch_size=BATCH, shuffle=True)


def noop_step(engine: Any, batch: Any) -> None:
    return None


def median_and_min(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), min(values)


# ---------------------------------------------------------------------------------------------- 1


def epoch_per_iteration(engine_cls: type, step_kind: str) -> float:
    step = Mlp().step if step_kind == "MLP" else noop_step
    engine = engine_cls(step)
    loader = make_loader()
    manual_seed(1)
    began = time.perf_counter()
    engine.run(loader, max_epochs=1)
    return (time.perf_counter() - began) / len(loader)


def per_iteration(repeats: int) -> None:
    libraries: list[tuple[str, type, type]] = [("nbengine", nb.Engine, NbDeterministicEngine)]
    if ig is not None:
        libraries.append(("ignite", ig.Engine, IgDeterministicEngine))
    cases: dict[str, Callable[[], float]] = {}
    for step_kind in ("MLP", "no-op"):
        for library, engine_cls, deterministic_cls in libraries:
            cases[f"{library}: Engine, {step_kind}"] = lambda e=engine_cls, s=step_kind: epoch_per_iteration(e, s)
            cases[f"{library}: DeterministicEngine, {step_kind}"] = lambda e=deterministic_cls, s=step_kind: (
                epoch_per_iteration(e, s)
            )
    samples = interleave(cases, repeats)
    print(f"\n1. Per iteration, one epoch of {ITEMS} items in batches of {BATCH} ({repeats} interleaved repetitions)")
    print(f"{'case':<44} {'µs/iter':>9} {'min':>9} {'vs Engine':>10} {'min ratio':>10}")
    for name, values in samples.items():
        med, low = median_and_min(values)
        base_name = name.replace("DeterministicEngine", "Engine")
        base_med, base_low = median_and_min(samples[base_name])
        print(f"{name:<44} {med * 1e6:>9.2f} {low * 1e6:>9.2f} {med / base_med:>10.4f} {low / base_low:>10.4f}")


# ---------------------------------------------------------------------------------------------- 2


def resume_setup(library: str, epoch: int, template: dict) -> float:
    """Seconds from load_state_dict to the first ITERATION_STARTED, on a new engine and DataLoader."""
    events = nb.Events if library == "nbengine" else ig.Events
    engine_cls = NbDeterministicEngine if library == "nbengine" else IgDeterministicEngine
    engine = engine_cls(noop_step)
    stamps: list[float] = []
    engine.add_event_handler(events.ITERATION_STARTED, lambda e: stamps.append(time.perf_counter()))
    engine.add_event_handler(events.ITERATION_COMPLETED, lambda e: e.terminate())
    state_dict = dict(template)
    epoch_length = state_dict["epoch_length"]
    state_dict["iteration"] = epoch * epoch_length
    state_dict["max_epochs"] = epoch + 2
    loader = make_loader()
    began = time.perf_counter()
    engine.load_state_dict(state_dict)
    engine.run(loader)
    return stamps[0] - began


def batch_fetch_time(repeats: int) -> float:
    """A steady-state batch fetch (ITERATION_COMPLETED to the next ITERATION_STARTED) of this DataLoader."""
    gaps: list[float] = []
    engine = NbDeterministicEngine(noop_step, seed=0)
    last: list[float] = []
    engine.add_event_handler(nb.Events.ITERATION_COMPLETED, lambda e: last.append(time.perf_counter()))
    engine.add_event_handler(
        nb.Events.ITERATION_STARTED, lambda e: gaps.append(time.perf_counter() - last[-1]) if last else None
    )
    for _ in range(repeats):
        last.clear()
        engine.run(make_loader(), max_epochs=1)
    return statistics.median(gaps)


def resume_costs(repeats: int) -> None:
    libraries = ["nbengine"] + (["ignite"] if ig is not None else [])
    templates = {}
    for library in libraries:
        engine = NbDeterministicEngine(noop_step, seed=5) if library == "nbengine" else IgDeterministicEngine(noop_step)
        engine.run(make_loader(), max_epochs=1)
        templates[library] = dict(engine.state_dict())
    epochs = [0, 10, 1000, 100_000]
    for library in libraries:
        for epoch in epochs:
            resume_setup(library, epoch, templates[library])
    samples = {(library, epoch): [] for library in libraries for epoch in epochs}
    for _ in range(repeats):
        for library in libraries:
            for epoch in epochs:
                # The previous sample's engine and DataLoader are freed first, so that no sample pays
                # for another's garbage (without this, every other sample is ~0.2 ms slower).
                gc.collect()
                samples[(library, epoch)].append(resume_setup(library, epoch, templates[library]))
    fetch = batch_fetch_time(3)
    print("\n2. Resume at epoch k: load_state_dict to the first ITERATION_STARTED, new engine and DataLoader")
    print(f"   minus one steady-state batch fetch ({fetch * 1e6:.1f} µs); {repeats} interleaved repetitions")
    print(f"{'library':<10} {'k':>8} {'set-up ms':>10} {'min ms':>8} {'vs k=0':>8}")
    for library in libraries:
        base = statistics.median(samples[(library, 0)]) - fetch
        for epoch in epochs:
            med, low = median_and_min(samples[(library, epoch)])
            print(f"{library:<10} {epoch:>8} {(med - fetch) * 1e3:>10.3f} {(low - fetch) * 1e3:>8.3f} {(med - fetch) / base:>8.3f}")


# ---------------------------------------------------------------------------------------------- 3


def timed_epochs(trainer: Any) -> list[float]:
    """Durations of the trainer's epochs from EPOCH_STARTED to EPOCH_COMPLETED, appended as they end."""
    durations: list[float] = []
    started: list[float] = []
    trainer.add_event_handler(nb.Events.EPOCH_STARTED, lambda e: started.append(time.perf_counter()))
    trainer.add_event_handler(nb.Events.EPOCH_COMPLETED, lambda e: durations.append(time.perf_counter() - started[-1]))
    return durations


def replay_costs(repeats: int) -> None:
    mlp = Mlp()
    trainer = NbDeterministicEngine(mlp.step, seed=11)
    replay = EpochReplay(trainer, {"model": mlp.model, "optimizer": mlp.optimizer}, keep_last=3)
    epochs = timed_epochs(trainer)
    plain = Mlp()
    plain_trainer = NbDeterministicEngine(plain.step, seed=11)
    plain_epochs = timed_epochs(plain_trainer)
    loader = make_loader()
    trainer.run(loader, max_epochs=3)
    plain_trainer.run(make_loader(), max_epochs=1)

    # A trainer resumed at epoch 1000, as from a checkpoint: its replay of epoch 1001 costs the same.
    far = Mlp()
    far_trainer = NbDeterministicEngine(far.step, seed=11)
    far_replay = EpochReplay(far_trainer, {"model": far.model, "optimizer": far.optimizer}, keep_last=3)
    state_dict = dict(trainer.state_dict())
    state_dict["iteration"] = 1000 * state_dict["epoch_length"]
    state_dict["max_epochs"] = 1001
    far_trainer.load_state_dict(state_dict)
    far_trainer.run(make_loader())

    # Ordinary epochs and replays interleaved, so that the load of the machine hits them alike.
    replays: list[tuple[int, float]] = []
    far_samples: list[float] = []
    reproduced = True
    for _ in range(repeats):
        trainer.run(loader, max_epochs=trainer.state.epoch + 1)
        plain_trainer.run(max_epochs=plain_trainer.state.epoch + 1)
        epoch = replay.epochs[0]
        began = time.perf_counter()
        report = replay.replay_epoch(epoch)
        replays.append((epoch, time.perf_counter() - began))
        reproduced &= report.reproduced
        began = time.perf_counter()
        report = far_replay.replay_epoch(1001)
        far_samples.append(time.perf_counter() - began)
        reproduced &= report.reproduced
    epoch_time, epoch_min = median_and_min(epochs[3:])
    plain_time, plain_min = median_and_min(plain_epochs[1:])
    replay_time, replay_min = median_and_min([seconds for _, seconds in replays])
    far_time, far_min = median_and_min(far_samples)
    print(f"\n3. Replay of epoch k (MLP step, EpochReplay keeping 3 snapshots in memory; {repeats} interleaved repetitions)")
    print(f"{'case':<48} {'ms':>8} {'min ms':>8} {'vs epoch':>9} {'min ratio':>10}")
    rows = [
        ("epoch of a trainer without EpochReplay", plain_time, plain_min),
        ("epoch of the trainer with EpochReplay (= 1)", epoch_time, epoch_min),
        (f"replay of epochs {replays[0][0]}..{replays[-1][0]}", replay_time, replay_min),
        ("replay of epoch 1001 (trainer resumed at 1000)", far_time, far_min),
    ]
    for name, med, low in rows:
        print(f"{name:<48} {med * 1e3:>8.1f} {low * 1e3:>8.1f} {med / epoch_time:>9.3f} {low / epoch_min:>10.3f}")
    print(f"   every replay reproduced its epoch bit-exactly: {reproduced}")


# ---------------------------------------------------------------------------------------------- 4


def mid_epoch_resume_is_exact(library: str) -> bool:
    events = nb.Events if library == "nbengine" else ig.Events
    engine_cls = NbDeterministicEngine if library == "nbengine" else IgDeterministicEngine
    seen: list[list[int]] = []
    saved: dict[str, Any] = {}
    data = DataLoader(torch.arange(64), batch_size=4, shuffle=True)

    def record(engine: Any, batch: Any) -> None:
        seen.append(batch.tolist())

    manual_seed(3)
    engine = engine_cls(record)
    engine.add_event_handler(events.ITERATION_COMPLETED(once=21), lambda e: saved.setdefault("state", e.state_dict()))
    engine.run(data, max_epochs=3)
    original = list(seen)
    seen.clear()
    resumed = engine_cls(record)
    resumed.load_state_dict(saved["state"])
    resumed.run(DataLoader(torch.arange(64), batch_size=4, shuffle=True))
    return seen == original[21:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    quiet_single_thread()
    repeats = 3 if args.quick else 11
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread; ignite: {'yes' if ig else 'not installed'}")
    per_iteration(repeats)
    resume_costs(repeats)
    replay_costs(3 if args.quick else 7)
    print("\n4. A resume from a checkpoint taken at iteration 21 (mid-epoch) fetches exactly the remaining batches:")
    for library in ["nbengine"] + (["ignite"] if ig is not None else []):
        print(f"   {library}: {mid_epoch_resume_is_exact(library)}")


if __name__ == "__main__":
    main()
