"""``BasicTimeProfiler``: where a run's time goes (data loading, the process function, each event's handlers).

This module owns the measurement and its summary. It reads the engine's public trace hook
(:meth:`Engine.add_trace_hook`), which reports after every event the time each handler took, and
derives the rest from when the hook is called: the process function's time is the stretch between
the ITERATION_STARTED and ITERATION_COMPLETED boundaries less the ITERATION_COMPLETED handlers, and the
data's the stretch between GET_BATCH_STARTED and GET_BATCH_COMPLETED less the GET_BATCH_COMPLETED
handlers. So unlike pytorch-ignite's it never rewrites the engine's handler lists; the results have
the layout of ignite 0.5.5's ``BasicTimeProfiler`` (``get_results``, ``print_results``,
``write_results``).

Time a run spends paused between two ``run()``/``step()`` calls falls inside whichever stretch it
paused in; profile a run that is not paused midway.
"""

from __future__ import annotations

import csv
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import torch

from nbengine.engine import Engine, Events

__all__ = ["BasicTimeProfiler"]

# The events whose handlers are timed, in the order ignite reports them.
_PROFILED_EVENTS = (
    Events.STARTED,
    Events.EPOCH_STARTED,
    Events.ITERATION_STARTED,
    Events.ITERATION_COMPLETED,
    Events.EPOCH_COMPLETED,
    Events.COMPLETED,
    Events.GET_BATCH_STARTED,
    Events.GET_BATCH_COMPLETED,
)
_PER_RUN = ("STARTED", "COMPLETED")
_PER_EPOCH = ("EPOCH_STARTED", "EPOCH_COMPLETED")


def _basic_stats(data: torch.Tensor) -> OrderedDict:
    """total, and with two or more measurements min/index, max/index, mean and std (zeros are not yet measured)."""
    data = data[data > 0]
    stats: OrderedDict = OrderedDict(total=data.sum().item() if len(data) > 0 else "not yet triggered")
    if len(data) > 1:
        stats["min/index"] = (data.min().item(), data.argmin().item())
        stats["max/index"] = (data.max().item(), data.argmax().item())
        stats["mean"] = data.mean().item()
        stats["std"] = data.std().item()
    return stats


class BasicTimeProfiler:
    """Measures the data, process-function and per-event handler time of each iteration and epoch.

    >>> from nbengine.engine import Engine, Events
    >>> trainer = Engine(lambda engine, batch: batch * 2)
    >>> _ = trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: None)
    >>> profiler = BasicTimeProfiler()
    >>> profiler.attach(trainer)
    >>> state = trainer.run([1, 2, 3], max_epochs=2)
    >>> results = profiler.get_results()
    >>> list(results)
    ['processing_stats', 'dataflow_stats', 'event_handlers_stats', 'event_handlers_names']
    >>> tuple(profiler.processing_times.shape), results["event_handlers_names"]["EPOCH_COMPLETED_names"]
    ((6,), ['<lambda>'])
    """

    def __init__(self) -> None:
        self.dataflow_times = torch.zeros(1)
        self.processing_times = torch.zeros(1)
        self.event_handlers_times: dict[str, torch.Tensor] = {}
        self.event_handlers_names: dict[str, list[str]] = {}
        self.max_epochs = 0
        self.total_num_iters = 0
        self._marks: dict[str, float] = {}
        self._remove_hook: Callable[[], None] | None = None

    def attach(self, engine: Engine) -> None:
        """Profile every run of ``engine`` from its next ``STARTED`` on."""
        if not isinstance(engine, Engine):
            raise TypeError(f"Argument engine should be nbengine.engine.Engine, but given {type(engine)}")
        if self._remove_hook is None:
            self._remove_hook = engine.add_trace_hook(self._on_event)

    def detach(self) -> None:
        """Stop profiling (the results so far stay)."""
        if self._remove_hook is not None:
            self._remove_hook()
            self._remove_hook = None

    def _start(self, state: Any) -> None:
        if state.epoch_length is None:
            raise ValueError(
                "As epoch_length is not set, we can not use BasicTimeProfiler in this case. "
                "Please, set trainer.run(..., epoch_length=epoch_length) in order to fix this."
            )
        self.max_epochs = int(state.max_epochs)
        self.total_num_iters = self.max_epochs * int(state.epoch_length)
        self.dataflow_times = torch.zeros(self.total_num_iters)
        self.processing_times = torch.zeros(self.total_num_iters)
        sizes = {"STARTED": 1, "COMPLETED": 1, "EPOCH_STARTED": self.max_epochs, "EPOCH_COMPLETED": self.max_epochs}
        self.event_handlers_times = {
            event.name: torch.zeros(sizes.get(event.name, self.total_num_iters)) for event in _PROFILED_EVENTS
        }
        self.event_handlers_names = {event.name: [] for event in _PROFILED_EVENTS}
        self._marks = {}

    def _on_event(self, event: Any, state: Any, timings: list[tuple[str, float]]) -> None:
        now = time.perf_counter()
        name = getattr(event, "name", None)
        if name == "STARTED":
            self._start(state)
        if name not in self.event_handlers_times:
            return
        spent = sum(seconds for _, seconds in timings)
        names = self.event_handlers_names[name]
        for handler_name, _ in timings:
            if handler_name not in names:
                names.append(handler_name)
        if name in _PER_RUN:
            index = 0
        elif name in _PER_EPOCH:
            index = state.epoch - 1
        elif name in ("GET_BATCH_STARTED", "GET_BATCH_COMPLETED"):
            # A batch is fetched before the iteration counter moves on: it is the next iteration's.
            index = state.iteration
        else:
            index = state.iteration - 1
        times = self.event_handlers_times[name]
        if not 0 <= index < len(times):
            return
        times[index] = spent
        if name in ("GET_BATCH_STARTED", "ITERATION_STARTED"):
            self._marks[name] = now
        elif name == "GET_BATCH_COMPLETED" and "GET_BATCH_STARTED" in self._marks:
            self.dataflow_times[index] = now - self._marks.pop("GET_BATCH_STARTED") - spent
        elif name == "ITERATION_COMPLETED" and "ITERATION_STARTED" in self._marks:
            self.processing_times[index] = now - self._marks.pop("ITERATION_STARTED") - spent

    def get_results(self) -> OrderedDict:
        """Statistics of the last run: ``processing_stats``, ``dataflow_stats``, ``event_handlers_stats``
        (per event, and ``total_time``) and ``event_handlers_names`` (the handlers that ran, per event)."""
        if not self.event_handlers_times:
            raise RuntimeError("BasicTimeProfiler has no results yet: attach it and run the engine first")
        total = sum(times.sum() for times in self.event_handlers_times.values())
        handler_stats: dict[str, Any] = {
            name: _basic_stats(times) for name, times in self.event_handlers_times.items()
        }
        handler_stats["total_time"] = total
        return OrderedDict(
            processing_stats=_basic_stats(self.processing_times),
            dataflow_stats=_basic_stats(self.dataflow_times),
            event_handlers_stats=handler_stats,
            event_handlers_names={f"{name}_names": list(names) for name, names in self.event_handlers_names.items()},
        )

    def write_results(self, output_path: str | os.PathLike) -> None:
        """Write one CSV row per iteration: epoch, iteration, processing and data time, and each event's
        handler time (per-run and per-epoch values repeated on the rows they cover)."""
        if not self.event_handlers_times:
            raise RuntimeError("BasicTimeProfiler has no results yet: attach it and run the engine first")
        per_epoch = self.total_num_iters // max(self.max_epochs, 1)
        columns = {
            "epoch": torch.arange(self.max_epochs, dtype=torch.float32).repeat_interleave(per_epoch) + 1,
            "iteration": torch.arange(self.total_num_iters, dtype=torch.float32) + 1,
            "processing_stats": self.processing_times,
            "dataflow_stats": self.dataflow_times,
        }
        for name in ("STARTED", "COMPLETED", "EPOCH_STARTED", "EPOCH_COMPLETED", "ITERATION_STARTED",
                     "ITERATION_COMPLETED", "GET_BATCH_STARTED", "GET_BATCH_COMPLETED"):
            times = self.event_handlers_times[name]
            repeat = self.total_num_iters if name in _PER_RUN else per_epoch if name in _PER_EPOCH else 1
            columns[f"Event_{name}"] = times.repeat_interleave(repeat)
        with open(output_path, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(columns)
            writer.writerows(zip(*(column.tolist() for column in columns.values())))

    @staticmethod
    def print_results(results: Mapping) -> str:
        """Print (and return) a table of :meth:`get_results`."""

        def text(value: Any) -> str:
            if isinstance(value, str):
                return value
            if isinstance(value, tuple):
                return f"{value[0]:.5f}/{value[1]}"
            return f"{float(value):.5f}"

        def row(stats: Any) -> str:
            return " | ".join(text(value) for value in stats.values()) if isinstance(stats, Mapping) else text(stats)

        handlers = results["event_handlers_stats"]
        names = results["event_handlers_names"]
        lines = [
            "",
            " ----------------------------------------------------",
            "| Time profiling stats (in seconds):                 |",
            " ----------------------------------------------------",
            "total  |  min/index  |  max/index  |  mean  |  std",
            "",
            "Processing function:",
            row(results["processing_stats"]),
            "",
            "Dataflow:",
            row(results["dataflow_stats"]),
            "",
            "Event handlers:",
            text(handlers["total_time"]),
        ]
        for name in ("STARTED", "EPOCH_STARTED", "ITERATION_STARTED", "ITERATION_COMPLETED", "EPOCH_COMPLETED", "COMPLETED"):
            lines += ["", f"- Events.{name}: {names[f'{name}_names']}", row(handlers[name])]
        message = "\n".join(lines) + "\n"
        print(message)
        return message
