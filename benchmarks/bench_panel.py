"""Cost of a TrainingPanel attached to a trainer, side by side with the same engine without one.

The MLP step of the engine benchmark (32-64-10, batch 64, SGD, ``torch.set_num_threads(1)``) is run
by two engines in one process, alternately: one bare, one with a ``TrainingPanel`` (its event
timeline, its loss recorder, and its refresh thread redrawing the State view, the timeline table
and the loss plot while the run goes on, as in a notebook). Each turn runs one engine for a slice of
iterations; the panel's engine keeps one long run going across its slices (``start()``/``pause()``,
the way the panel runs training), so its time-based work is measured in steady state, not its
start-up. The ratio of each pair of neighbouring slices is taken, so drift of the machine hits both
alike; the median and the minimum-based ratio are reported, and the ratio of process CPU time
(all threads, so the panel's own thread counts in full). The budget is 1.05 (DESIGN.md). On a
shared machine neighbours shift these figures by a few percent from one run to the next.

Between the slices of the panel's engine the panel is paused, and redraws everything at once
(that is what it does on a pause); the next slice starts only after that redraw has finished, so
it is not counted against the bare engine either.

    python benchmarks/bench_panel.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from nbengine.engine import Engine
from nbengine.widgets import TrainingPanel
from mlp import Mlp


def run_slice(engine: Engine, iterations: int) -> tuple[float, float]:
    """Run ``engine`` in the background for about ``iterations`` more iterations; wall seconds and
    process CPU seconds (all threads: training, panel refresh, this one) per iteration."""
    first = engine.state.iteration
    began, cpu_began = time.perf_counter(), time.process_time()
    engine.start()
    while engine.state.iteration - first < iterations:
        time.sleep(0.005)
    engine.pause()
    engine.wait()
    done = engine.state.iteration - first
    return (time.perf_counter() - began) / done, (time.process_time() - cpu_began) / done


def settle(panel: TrainingPanel) -> None:
    """Wait until the panel has shown the paused state (its redraw after a pause is done)."""
    count = panel.refresh_count
    while panel.refresh_count < count + 2:
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter slices")
    args = parser.parse_args()
    torch.set_num_threads(1)
    # Slices long enough to hold the steady-state plot redraws (one per ~6 s with the default budget).
    pairs = 8 if args.quick else 12
    slice_seconds = 1.5 if args.quick else 8.0

    bare_mlp, panel_mlp = Mlp(500), Mlp(500)
    bare = Engine(bare_mlp.step)
    with_panel = Engine(panel_mlp.step)
    panel = TrainingPanel(with_panel, data=panel_mlp.data, max_epochs=1_000_000)
    bare.step(data=bare_mlp.data, max_epochs=1_000_000)  # a run to continue, like the panel's
    with_panel.step(data=panel_mlp.data, max_epochs=1_000_000)

    # Size the slices from a first measurement; warm up both (imports, first figure draw).
    per_iteration, _ = run_slice(bare, 2000)
    iterations = max(1000, int(slice_seconds / per_iteration))
    run_slice(with_panel, 2000)
    settle(panel)

    bare_times, panel_times, ratios, cpu_ratios = [], [], [], []
    plots_before, refreshes_before = panel.plot_count, panel.refresh_count
    panel_seconds = 0.0
    for index in range(pairs):
        # Alternate which goes first, so neither always follows the other.
        order = [(bare, None), (with_panel, panel)] if index % 2 == 0 else [(with_panel, panel), (bare, None)]
        result, cpu = {}, {}
        for engine, owner in order:
            seconds, cpu[engine] = run_slice(engine, iterations)
            result[engine] = seconds
            if owner is not None:
                panel_seconds += seconds * iterations
                settle(owner)
        bare_times.append(result[bare])
        panel_times.append(result[with_panel])
        ratios.append(result[with_panel] / result[bare])
        cpu_ratios.append(cpu[with_panel] / cpu[bare])

    print(f"MLP 32-64-10, batch 64, SGD, 1 thread; {pairs} pairs of slices of {iterations} iterations")
    print(f"{'engine':<22}{'median us/iter':>16}{'min us/iter':>13}")
    print(f"{'no panel':<22}{statistics.median(bare_times) * 1e6:>16.1f}{min(bare_times) * 1e6:>13.1f}")
    print(f"{'TrainingPanel':<22}{statistics.median(panel_times) * 1e6:>16.1f}{min(panel_times) * 1e6:>13.1f}")
    print(f"ratio, median of pairs: {statistics.median(ratios):.3f}; of the minima: {min(panel_times) / min(bare_times):.3f}")
    print(f"process CPU time ratio (all threads), median of pairs: {statistics.median(cpu_ratios):.3f}")
    print(
        f"panel activity while its engine ran: {panel.refresh_count - refreshes_before} refreshes and "
        f"{panel.plot_count - plots_before} plot redraws in {panel_seconds:.0f} s (incl. those on pauses)"
    )
    with_panel.stop()
    bare.stop()
    panel.close()


if __name__ == "__main__":
    main()
