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

Wall-clock throughput on a small shared machine drifts by several percent from one slice to the
next, so two more figures are printed, which that drift hardly moves:

- where the CPU goes, per iteration, from the kernel's threads (read from ``/proc``): the training
  thread (each slice's new ``nbengine-run`` thread) with the panel and without, the panel's other
  threads, and the drawing process; the panel's cost is their sum over the bare training thread;
- with ``--noise-floor``, the same pairs are also taken between two bare engines (an A/A test):
  the spread of those ratios is what the machine alone gives any two cases.

``--in-process`` measures the panel drawing in the kernel's own process (``draw_in_process=True``)
instead of its helper process: the measurement behind that choice.

    python benchmarks/bench_panel.py [--quick] [--in-process] [--noise-floor] [--seconds S] [--pairs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass

import psutil

from harness import quiet_single_thread, thread_cpu
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


@dataclass
class Slice:
    """One slice: iterations per second, loss-plot redraws, and CPU seconds per iteration of the
    whole process with the drawing process, of the training thread, and of the other threads."""

    speed: float
    redraws: int
    cpu: float
    training_cpu: float
    other_cpu: float
    helper_cpu: float


def run_slice(engine: Engine, seconds: float, panel: TrainingPanel | None) -> Slice:
    """Run ``engine`` in the background for ``seconds`` and measure it (see ``Slice``)."""
    first = engine.state.iteration
    drawn = panel.loss_plot_count if panel is not None else 0
    helper_before = helper_cpu(panel) if panel is not None else 0.0
    threads_before = thread_cpu()
    cpu = time.process_time()
    began = time.perf_counter()
    engine.start()  # a new nbengine-run thread: the one thread that did not exist before
    time.sleep(seconds)
    engine.pause()
    engine.wait()
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpu
    threads_after = thread_cpu()
    helper = (helper_cpu(panel) if panel is not None else 0.0) - helper_before
    # The slice's nbengine-run thread may have ended by now, and its /proc entry with it, but the
    # process's CPU time keeps what ended threads used: the training thread's share is the rest.
    others = sum(value - threads_before[task] for task, value in threads_after.items() if task in threads_before)
    training = cpu - others if threads_after else 0.0
    redraws = (panel.loss_plot_count - drawn) if panel is not None else 0
    done = engine.state.iteration - first
    return Slice(done / elapsed, redraws, (cpu + helper) / done, training / done, others / done, helper / done)


def _quartiles(values: list[float]) -> str:
    q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
    return f"{statistics.median(values):.3f} (quartiles {q1:.3f}-{q3:.3f}, min {min(values):.3f}, max {max(values):.3f})"


def _report(args: argparse.Namespace, pairs: int, seconds: float, where: str, loads: list[float],
            slices: dict[str, list[Slice]]) -> None:
    bare, panel = slices["bare"], slices["panel"]
    print(f"MLP 32-64-10, batch 64, SGD, 1 thread, batches from a list; {pairs} pairs of {seconds:g}-s slices")
    print(f"panel drawing {where}, plot_interval {args.plot_interval:g} s; load average (1 min) during the pairs: "
          f"median {statistics.median(loads):.1f} (min {min(loads):.1f}, max {max(loads):.1f}) on {os.cpu_count()} CPUs")
    print(f"{'engine':<16}{'median it/s':>14}{'median us/iter':>16}")
    for name, runs in (("no panel", bare), ("TrainingPanel", panel)):
        speed = statistics.median(run.speed for run in runs)
        print(f"{name:<16}{speed:>14.0f}{1e6 / speed:>16.1f}")
    print("throughput with panel ÷ without, per pair: " + _quartiles([p.speed / b.speed for p, b in zip(panel, bare)]))
    if "bare again" in slices:
        print("noise floor, a second bare engine ÷ the first, per pair (A/A): "
              + _quartiles([a.speed / b.speed for a, b in zip(slices["bare again"], bare)]))
    rates = [run.redraws / seconds for run in panel]
    print(f"loss-plot redraws per second of running, median of slices: {statistics.median(rates):.2f} (min {min(rates):.2f})")
    print("CPU per iteration with panel ÷ without (this process's threads and the drawing process), per pair: "
          + _quartiles([p.cpu / b.cpu for p, b in zip(panel, bare)]))
    if any(run.training_cpu for run in bare):
        base = statistics.median(run.training_cpu for run in bare)
        parts = {
            "training thread, with the panel": statistics.median(run.training_cpu for run in panel) - base,
            "the panel's other threads (refresh, plots)": statistics.median(run.other_cpu for run in panel),
            "the drawing process": statistics.median(run.helper_cpu for run in panel),
        }
        print(f"where the panel's CPU goes, median us per iteration over the bare training thread's {base * 1e6:.1f} us:")
        for name, extra in parts.items():
            print(f"  {name:<44}{extra * 1e6:+8.1f} us  {100 * extra / base:+6.1f}%")
        print(f"  {'in all':<44}{sum(parts.values()) * 1e6:+8.1f} us  {100 * sum(parts.values()) / base:+6.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter slices")
    parser.add_argument("--in-process", action="store_true", help="the panel draws in this process, not its helper")
    parser.add_argument("--noise-floor", action="store_true", help="also pair two bare engines (an A/A test)")
    parser.add_argument("--seconds", type=float, default=None, help="wall seconds per slice")
    parser.add_argument("--pairs", type=int, default=None, help="pairs of slices")
    parser.add_argument("--plot-interval", type=float, default=1.0, help="the panel's plot_interval (3600: no drawing while running)")
    args = parser.parse_args()
    quiet_single_thread()
    pairs = args.pairs or (4 if args.quick else 20)
    seconds = args.seconds or (3.0 if args.quick else 4.0)

    names = ["bare", "panel"] + (["bare again"] if args.noise_floor else [])
    mlps = {name: Mlp(500) for name in names}
    engines = {name: Engine(mlps[name].step) for name in names}
    panel = TrainingPanel(engines["panel"], data=mlps["panel"].data, max_epochs=1_000_000,
                          draw_in_process=args.in_process, plot_interval=args.plot_interval)
    for name in names:
        engines[name].step(data=mlps[name].data, max_epochs=1_000_000)  # a run to continue, like the panel's
        # Warm up (imports, the drawing process, the first figures).
        run_slice(engines[name], 2.0, panel if name == "panel" else None)
    panel.wait()

    slices: dict[str, list[Slice]] = {name: [] for name in names}
    # The machine may be shared: its load, which makes the slices noisy, is reported with the figures.
    loads = [os.getloadavg()[0]]
    for index in range(pairs):
        # Rotate which goes first, so that none always follows another.
        order = names[index % len(names):] + names[:index % len(names)]
        for name in order:
            owner = panel if name == "panel" else None
            slices[name].append(run_slice(engines[name], seconds, owner))
            if owner is not None:
                panel.wait()  # the drawing of the paused state is made before the next slice
        loads.append(os.getloadavg()[0])

    where = "in the kernel's process" if panel._renderer.in_process else "in its helper process"
    _report(args, pairs, seconds, where, loads, slices)
    for engine in engines.values():
        engine.stop()
    panel.close()


if __name__ == "__main__":
    main()
