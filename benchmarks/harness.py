"""What every side-by-side benchmark does the same way: the process set-up and the interleaved timing.

Each benchmark builds its own cases (name -> function returning seconds per iteration) and reads the
samples; running them here keeps the method, and so the figures, comparable across the scripts.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable

import torch


def quiet_single_thread() -> None:
    """One torch thread (as the figures of docs/design.md), and no ignite log lines or warnings in the tables."""
    torch.set_num_threads(1)
    logging.getLogger("ignite").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")


def interleave(cases: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run every case once to warm up, then ``repeats`` rounds of all cases in turn, so that drift of
    the machine hits them alike; the samples of each case, in round order."""
    for measure in cases.values():
        measure()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, measure in cases.items():
            samples[name].append(measure())
    return samples


def thread_cpu() -> dict[str, float]:
    """CPU seconds run so far by each thread of this process, by thread id, to the nanosecond
    (``/proc/self/task/*/schedstat``; empty where there is no such file)."""
    seconds = {}
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return {}
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/schedstat") as stat:
                seconds[task] = int(stat.read().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return seconds
