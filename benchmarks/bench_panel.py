"""Cost of a TrainingPanel attached to a trainer, side by side with the same engine without one.

The MLP step of the engine benchmark (32-64-10, batch 64, SGD, ``torch.set_num_threads(1)``), run
by a fresh Engine per repetition, without and with a ``TrainingPanel`` (its event timeline, its loss
recorder, its refresh thread redrawing the State view, the timeline and the plots as it would in
a notebook), both in the foreground (``run()``) and in the background (``start()`` + ``wait()``, the
way the panel runs training). Repetitions of all cases are interleaved so drift hits them alike;
medians per iteration are reported with the ratio to the engine without a panel. The budget is
1.05 (DESIGN.md, performance budgets).

    python benchmarks/bench_panel.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from nbengine.engine import Engine
from nbengine.widgets import TrainingPanel


class Mlp:
    def __init__(self, batches: int) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        generator = torch.Generator().manual_seed(0)
        self.data = [
            (torch.randn(64, 32, generator=generator), torch.randint(0, 10, (64,), generator=generator))
            for _ in range(batches)
        ]

    def step(self, engine: Engine, batch) -> float:
        x, y = batch
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return loss.item()


def timed_run(mlp: Mlp, with_panel: bool, background: bool) -> tuple[float, int, int]:
    """Seconds per iteration; with a panel, also how many refreshes and plot redraws it did meanwhile."""
    engine = Engine(mlp.step)
    panel = TrainingPanel(engine, data=mlp.data, max_epochs=1) if with_panel else None
    refreshes, plots = (panel.refresh_count, panel.plot_count) if panel else (0, 0)
    began = time.perf_counter()
    if background:
        engine.start(mlp.data, max_epochs=1)
        engine.wait()
    else:
        engine.run(mlp.data, max_epochs=1)
    elapsed = time.perf_counter() - began
    if panel is not None:
        refreshes, plots = panel.refresh_count - refreshes, panel.plot_count - plots
        panel.close()
    return elapsed / len(mlp.data), refreshes, plots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, fewer repetitions")
    args = parser.parse_args()
    torch.set_num_threads(1)
    batches = 3_000 if args.quick else 10_000
    repeats = 3 if args.quick else 7
    mlp = Mlp(batches)
    cases = {
        ("run()", False): [],
        ("run()", True): [],
        ("start()+wait()", False): [],
        ("start()+wait()", True): [],
    }
    timed_run(Mlp(200), True, False)  # warm-up: imports, first figure draw, font cache
    activity = []
    for _ in range(repeats):
        for (mode, with_panel), times in cases.items():
            seconds, refreshes, plots = timed_run(mlp, with_panel, mode != "run()")
            times.append(seconds)
            if with_panel:
                activity.append((refreshes, plots))

    print(f"MLP 32-64-10, batch 64, SGD, 1 thread; {batches} iterations per run, median of {repeats}")
    print(f"{'driver':<16}{'panel':<8}{'us/iter':>10}{'ratio':>8}")
    for mode in ("run()", "start()+wait()"):
        base = statistics.median(cases[(mode, False)])
        for with_panel in (False, True):
            median = statistics.median(cases[(mode, with_panel)])
            print(f"{mode:<16}{'yes' if with_panel else 'no':<8}{median * 1e6:>10.1f}{median / base:>8.3f}")
    refreshes = statistics.median(r for r, _ in activity)
    plots = statistics.median(p for _, p in activity)
    print(f"panel activity per run (median): {refreshes:.0f} refreshes, {plots:.0f} plot redraws")


if __name__ == "__main__":
    main()
