"""Cost of per-sample seeding (``nbengine.engine.sample_seeding``): the global generators seeded from
(seed, pass, index) before each sample is built, against the same DataLoader without it.

Data: the digits (``sklearn.datasets.load_digits``, 1797 images of 64 pixels), a ``Dataset`` whose
``__getitem__`` adds torch noise to the image (a light augmentation), ``DataLoader(batch_size=64,
shuffle=True)``, 29 batches per epoch, ``num_workers`` 0 and 2. Cases, interleaved:

- ``plain``: the user's DataLoader;
- ``reproducible``: the same through a ``ReproducibleBatchSampler`` (the DeterministicEngine's order),
  without seeding: what the engine cost before;
- ``per batch``: the same with the generators seeded before each batch (what the DeterministicEngine
  runs by default);
- ``per sample``: seeded before each sample.

Two ways to spend an epoch: reading the batches only, and training the digits MLP (64-64-10, SGD,
one thread) on them. Budget: seeded ≤ 1.02 × reproducible (the seeding must stay within 2% of a
DataLoader epoch): seeding three generators costs ~12 µs on the 2-core machine, a few times the cost
of building a digit, so only the per-batch seeding can meet it. Medians and minima are printed, with ratios to ``reproducible`` and ``plain``.

    python benchmarks/bench_data.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
import timeit
from collections.abc import Callable

import torch
from sklearn.datasets import load_digits
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

from harness import interleave, quiet_single_thread
from nbengine.engine.deterministic import ReproducibleBatchSampler, _seeded_loader
from nbengine.engine.sample_seeding import SeededSamples, keyed_batches


class NoisyDigits(Dataset):
    def __init__(self) -> None:
        digits = load_digits()
        self.x = torch.tensor(digits.data, dtype=torch.float32) / 16
        self.y = torch.tensor(digits.target)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        return self.x[index] + 0.05 * torch.randn(64), self.y[index]


def loaders(num_workers: int) -> dict[str, DataLoader]:
    dataset = NoisyDigits()
    options = {"num_workers": num_workers, "persistent_workers": num_workers > 0}
    plain = DataLoader(dataset, batch_size=64, shuffle=True, **options)
    reproducible = DataLoader(
        dataset, batch_sampler=ReproducibleBatchSampler(BatchSampler(RandomSampler(dataset), 64, False), seed=1), **options
    )
    seeded = {
        granularity: _seeded_loader(
            DataLoader(dataset, batch_size=64, shuffle=True, **options),
            ReproducibleBatchSampler(BatchSampler(RandomSampler(dataset), 64, False), seed=1),
            granularity,
        )
        for granularity in ("batch", "sample")
    }
    return {"plain": plain, "reproducible": reproducible, "per batch": seeded["batch"], "per sample": seeded["sample"]}


def reading(loader: DataLoader) -> Callable[[], float]:
    def measure() -> float:
        began = time.perf_counter()
        for _ in loader:
            pass
        return time.perf_counter() - began

    return measure


def training(loader: DataLoader) -> Callable[[], float]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()

    def measure() -> float:
        began = time.perf_counter()
        for x, y in loader:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
        return time.perf_counter() - began

    return measure


def report(title: str, samples: dict[str, list[float]], items: int) -> None:
    print(f"\n{title}")
    medians = {name: statistics.median(values) for name, values in samples.items()}
    minima = {name: min(values) for name, values in samples.items()}
    for name in samples:
        print(
            f"  {name:<12} median {medians[name] * 1e3:8.2f} ms  min {minima[name] * 1e3:8.2f} ms"
            f"  ÷ reproducible {medians[name] / medians['reproducible']:.3f} (minima {minima[name] / minima['reproducible']:.3f})"
            f"  ÷ plain {medians[name] / medians['plain']:.3f}"
        )
    for name in ("per batch", "per sample"):
        extra = (medians[name] - medians["reproducible"]) / items * 1e6
        print(f"  seeding {name}: {extra:+.2f} µs per sample (median difference / {items} samples)")


def fetch_costs(repeats: int) -> None:
    """One batch fetch as the DataLoader's fetcher does it, plain and seeded, as minima of many
    timings (less disturbed by other processes than whole epochs): the cost of the seeding alone."""
    dataset = NoisyDigits()
    seeded = SeededSamples(dataset)
    batch = list(range(0, 64 * 7, 7))
    keyed = {granularity: next(keyed_batches([batch], 0, 12345, granularity)) for granularity in ("batch", "sample")}
    cases = {
        "plain": lambda: [dataset[index] for index in batch],
        "per batch": lambda: seeded.__getitems__(keyed["batch"]),
        "per sample": lambda: seeded.__getitems__(keyed["sample"]),
    }
    minima = {name: min(timeit.repeat(case, number=20, repeat=repeats)) / 20 for name, case in cases.items()}
    print(f"\nOne batch of 64 digits built as the fetcher builds it (minimum of {repeats} x 20)")
    for name, seconds in minima.items():
        print(f"  {name:<12} {seconds * 1e6:8.1f} µs  ÷ plain {seconds / minima['plain']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    quiet_single_thread()
    repeats = 5 if args.quick else 21
    fetch_costs(50 if args.quick else 200)
    for num_workers in (0, 2):
        built = loaders(num_workers)
        items = len(built["plain"].dataset)
        for kind, case in (("reading the batches", reading), ("training the MLP", training)):
            samples = interleave({name: case(loader) for name, loader in built.items()}, repeats)
            report(f"num_workers={num_workers}, {kind}: one epoch of {items} digits ({repeats} rounds)", samples, items)


if __name__ == "__main__":
    main()
