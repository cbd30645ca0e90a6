"""Cost and liveliness of a TrainingPanel attached to a trainer, side by side with the same engine
without one, measured in the same slices.

The MLP step of the engine benchmark (32-64-10, batch 64, SGD, ``torch.set_num_threads(1)``,
batches from a list) is run by two engines in one process, alternately, each in the background
(``start()``) for a slice of ``--seconds`` of wall time, then paused. One is bare; the other has a
``TrainingPanel`` (its event timeline, loss recorder, refresh thread and plot thread, drawing the
loss plot while the run goes on, as in a notebook). For each of its slices the panel's loss-plot
redraws are counted: redraws per second of running, which docs/design.md wants >= 0.5 (a redraw at
least every 2 s). The throughput ratio of each pair of neighbouring slices (panel ÷ bare, in
iterations per second) is taken, so drift of the machine hits both alike; its median is reported
(docs/design.md wants >= 0.95). Nothing is excluded: every drawing made while a slice runs counts.

``--in-process`` measures the panel drawing in the kernel's own process (``draw_in_process=True``)
instead of its helper process: the measurement behind that choice.

    python benchmarks/bench_panel.py [--quick] [--in-process] [--seconds S] [--pairs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import psutil

from harness import quiet_single_thread
from mlp import Mlp

from nbengine.engine import Engine
from nbengine.widgets import TrainingPanel


def helper_cpu(panel: TrainingPanel) -> float:
    """CPU seconds used so far by the panel's drawing process (0 when it draws in this process)."""
    process = panel._renderer._process
    if process is None:
        return 0.0
    times = psutil.Process(process.pid).cpu_times()
    return times.user + times.system


def run_slice(engine: Engine, seconds: float, panel: TrainingPanel | None) -> tuple[float, int, float]:
    """Run ``engine`` in the background for ``seconds``; iterations per second, the loss-plot
    redraws made meanwhile (0 without a panel), and the CPU seconds per iteration of this process
    (all its threads) and of the panel's drawing process."""
    first = engine.state.iteration
    drawn = panel.loss_plot_count if panel is not None else 0
    cpu = time.process_time() + (helper_cpu(panel) if panel is not None else 0.0)
    began = time.perf_counter()
    engine.start()
    time.sleep(seconds)
    engine.pause()
    engine.wait()
    elapsed = time.perf_counter() - began
    cpu = time.process_time() + (helper_cpu(panel) if panel is not None else 0.0) - cpu
    redraws = (panel.loss_plot_count - drawn) if panel is not None else 0
    done = engine.state.iteration - first
    return done / elapsed, redraws, cpu / done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter slices")
    parser.add_argument("--in-process", action="store_true", help="the panel draws in this process, not its helper")
    parser.add_argument("--seconds", type=float, default=None, help="wall seconds per slice")
    parser.add_argument("--pairs", type=int, default=None, help="pairs of slices")
    parser.add_argument("--plot-interval", type=float, default=1.0, help="the panel's plot_interval (3600: no drawing while running)")
    args = parser.parse_args()
    quiet_single_thread()
    pairs = args.pairs or (4 if args.quick else 10)
    seconds = args.seconds or (5.0 if args.quick else 10.0)

    bare_mlp, panel_mlp = Mlp(500), Mlp(500)
    bare = Engine(bare_mlp.step)
    with_panel = Engine(panel_mlp.step)
    panel = TrainingPanel(with_panel, data=panel_mlp.data, max_epochs=1_000_000, draw_in_process=args.in_process, plot_interval=args.plot_interval)
    bare.step(data=bare_mlp.data, max_epochs=1_000_000)  # a run to continue, like the panel's
    with_panel.step(data=panel_mlp.data, max_epochs=1_000_000)
    # Warm up both (imports, the drawing process, the first figures).
    run_slice(bare, 2.0, None)
    run_slice(with_panel, 2.0, panel)
    panel.wait()

    ratios, rates, bare_speeds, panel_speeds, cpu_ratios = [], [], [], [], []
    # The machine may be shared: its load, which makes the slices noisy, is reported with the figures.
    loads = [os.getloadavg()[0]]
    for index in range(pairs):
        # Alternate which goes first, so neither always follows the other.
        order = [bare, with_panel] if index % 2 == 0 else [with_panel, bare]
        speed: dict[Engine, float] = {}
        cpu: dict[Engine, float] = {}
        for engine in order:
            owner = panel if engine is with_panel else None
            speed[engine], redraws, cpu[engine] = run_slice(engine, seconds, owner)
            if owner is not None:
                rates.append(redraws / seconds)
                panel.wait()  # the drawing of the paused state is made before the next slice
        bare_speeds.append(speed[bare])
        panel_speeds.append(speed[with_panel])
        ratios.append(speed[with_panel] / speed[bare])
        cpu_ratios.append(cpu[with_panel] / cpu[bare])
        loads.append(os.getloadavg()[0])

    where = "in the kernel's process" if panel._renderer.in_process else "in its helper process"
    print(f"MLP 32-64-10, batch 64, SGD, 1 thread, batches from a list; {pairs} pairs of {seconds:.0f}-s slices")
    print(f"panel drawing {where}; load average (1 min) during the pairs: median {statistics.median(loads):.1f} (min {min(loads):.1f}, max {max(loads):.1f}) on {os.cpu_count()} CPUs")
    print(f"{'engine':<16}{'median it/s':>14}{'median us/iter':>16}")
    for name, speeds in (("no panel", bare_speeds), ("TrainingPanel", panel_speeds)):
        print(f"{name:<16}{statistics.median(speeds):>14.0f}{1e6 / statistics.median(speeds):>16.1f}")
    print(f"throughput with panel ÷ without, median of pairs: {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}); "
          f"ratio of the median speeds: {statistics.median(panel_speeds) / statistics.median(bare_speeds):.3f}")
    print(f"loss-plot redraws per second of running, median of slices: {statistics.median(rates):.2f} (min {min(rates):.2f})")
    print(
        "CPU per iteration with panel ÷ without (this process's threads and the drawing process), "
        f"median of pairs: {statistics.median(cpu_ratios):.3f}"
    )
    with_panel.stop()
    bare.stop()
    panel.close()


if __name__ == "__main__":
    main()
