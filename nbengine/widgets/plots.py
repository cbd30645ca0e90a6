"""The panel's two plots, drawn off-screen: the loss plot and the event-timeline plot.

This module owns how the plots look and how they are drawn cheaply and safely from any thread:
each plot is one ``matplotlib.figure.Figure`` on an Agg canvas (never pyplot, which is not
thread-safe), built once; an update moves the data of the existing artists, draws once and
encodes a PNG for an ``ipywidgets.Image``. Long histories are decimated first (min/max per
bucket, so spikes survive) to about ``max_points`` points, so the cost of an update does not grow
with the length of the run. When to draw (the time throttle) belongs to the panel.
"""

from __future__ import annotations

import io
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Polygon

__all__ = ["LossData", "LossPlot", "TimelinePlot", "min_max_envelope", "trailing_mean"]

# Series colours, in the order metrics are first seen.
_METRIC_COLOURS = ("#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


@dataclass
class LossData:
    """What the loss plot shows: the training output per iteration and validation metrics per epoch.

    ``iterations`` and ``outputs`` have the same length; ``metrics`` maps a metric name to
    ``(iterations at which it was measured, values)``.
    """

    iterations: np.ndarray = field(default_factory=lambda: np.zeros(0))
    outputs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    metrics: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def _check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} should be an integer >= {minimum}, got {value!r}")
    return int(value)


def min_max_envelope(x: np.ndarray, y: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``(x, y)`` into ``buckets`` runs of consecutive points and return, per run, its first x,
    its lowest y and its highest y: the envelope that a plot of every point would fill, so no spike
    is lost. NaN in a run makes its bounds NaN (a gap), never hidden. Needs ``len(y) >= buckets``."""
    buckets = _check_positive_int("buckets", buckets)
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y should be 1-D arrays of the same length, got shapes {x.shape} and {y.shape}")
    if len(y) < buckets:
        raise ValueError(f"need at least buckets={buckets} points, got {len(y)}")
    starts = np.linspace(0, len(y), buckets + 1).astype(np.int64)[:-1]
    return x[starts], np.minimum.reduceat(y, starts), np.maximum.reduceat(y, starts)


def trailing_mean(y: np.ndarray, window: int, at: np.ndarray | None = None) -> np.ndarray:
    """The mean of the last ``window`` values (fewer at the start) at each index of ``at`` (all
    indices by default), from one cumulative sum: the cost of the gather is that of ``at``."""
    window = _check_positive_int("window", window)
    y = np.asarray(y, dtype=float)
    ends = np.arange(1, len(y) + 1) if at is None else np.asarray(at, dtype=np.int64) + 1
    if len(y) == 0 or len(ends) == 0:
        return np.zeros(len(ends))
    sums = np.concatenate(([0.0], np.cumsum(y)))
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


class _AggFigure:
    """One Figure on an Agg canvas, encoded to PNG on demand."""

    def __init__(self, width: int, height: int, dpi: int) -> None:
        self.width = _check_positive_int("width", width, minimum=100)
        self.height = _check_positive_int("height", height, minimum=80)
        self.dpi = _check_positive_int("dpi", dpi, minimum=20)
        self.figure = Figure(figsize=(self.width / self.dpi, self.height / self.dpi), dpi=self.dpi)
        FigureCanvasAgg(self.figure)

    def png(self) -> bytes:
        buffer = io.BytesIO()
        # Fast zlib level: the image changes every update and travels over a local socket.
        self.figure.canvas.print_png(buffer, pil_kwargs={"compress_level": 1})
        return buffer.getvalue()


class LossPlot(_AggFigure):
    """Training output per iteration (raw and smoothed) on the left axis, validation metrics per
    epoch on the right one; ``render(data, log_scale)`` returns the PNG bytes."""

    def __init__(self, width: int = 640, height: int = 300, dpi: int = 80, max_points: int = 2000) -> None:
        super().__init__(width, height, dpi)
        self.max_points = _check_positive_int("max_points", max_points, minimum=2)
        axes = self.figure.add_axes((0.09, 0.15, 0.80, 0.76))
        self.axes = axes
        self.metric_axes = axes.twinx()
        self.metric_axes.xaxis.set_visible(False)
        self.metric_axes.set_visible(False)
        self._legend_handles: list = []
        # At most max_points points are drawn in all: up to max_points outputs as a line; more, as
        # the min/max band of max_points/4 buckets (a polygon of max_points/2 vertices, cheaper to
        # fill than the zigzag line through the same points) and max_points/2 smoothed points.
        (self._raw,) = axes.plot([], [], color="#1f77b4", alpha=0.35, linewidth=0.8, label="output")
        self._band = Polygon(np.zeros((0, 2)), closed=True, facecolor="#1f77b4", alpha=0.3, linewidth=0, label="output (min–max)")
        axes.add_patch(self._band)
        (self._smooth,) = axes.plot([], [], color="#1f77b4", linewidth=1.6, label="smoothed")
        self._metric_lines: dict[str, object] = {}
        axes.set_xlabel("iteration")
        axes.set_ylabel("training output")
        axes.grid(True, alpha=0.3)
        self._message = axes.text(0.5, 0.5, "no iterations yet", transform=axes.transAxes, ha="center", va="center", color="gray")
        self._title = axes.set_title("", fontsize=9, loc="left")

    def render(self, data: LossData, log_scale: bool = False, subtitle: str = "") -> bytes:
        """Draw ``data`` and return PNG bytes. ``subtitle`` is shown above the axes."""
        iterations = np.asarray(data.iterations, dtype=float)
        outputs = np.asarray(data.outputs, dtype=float)
        if iterations.shape != outputs.shape:
            raise ValueError(
                f"data.iterations and data.outputs should have the same length, got {iterations.shape} and {outputs.shape}"
            )
        window = max(1, min(200, len(outputs) // 20))
        # The smoothed curve has no spikes worth keeping: it is computed only at evenly spaced points.
        stride = max(1, math.ceil(len(outputs) / (self.max_points // 2)))
        sampled = np.arange(len(outputs) - 1, -1, -stride)[::-1]
        smooth = trailing_mean(outputs, window, at=sampled)
        banded = len(outputs) > self.max_points
        if banded:
            starts, lows, highs = min_max_envelope(iterations, outputs, self.max_points // 4)
            self._band.set_xy(np.column_stack([np.concatenate([starts, starts[::-1]]), np.concatenate([lows, highs[::-1]])]))
            self._raw.set_data([], [])
        else:
            self._band.set_xy(np.zeros((0, 2)))
            self._raw.set_data(iterations, outputs)
        self._band.set_visible(banded)
        self._raw.set_visible(not banded)
        self._smooth.set_data(iterations[sampled], smooth)
        self._smooth.set_label(f"mean of last {window}")
        self._message.set_visible(len(outputs) == 0)

        shown_metrics = [name for name, (x, _) in data.metrics.items() if len(x)]
        for index, name in enumerate(shown_metrics):
            x, y = data.metrics[name]
            line = self._metric_lines.get(name)
            if line is None:
                colour = _METRIC_COLOURS[len(self._metric_lines) % len(_METRIC_COLOURS)]
                (line,) = self.metric_axes.plot([], [], marker="o", markersize=4, color=colour, label=f"val {name}")
                self._metric_lines[name] = line
            line.set_data(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
            line.set_visible(True)
        for name, line in self._metric_lines.items():
            if name not in shown_metrics:
                line.set_visible(False)
        self.metric_axes.set_visible(bool(shown_metrics))

        metric_values = [np.asarray(data.metrics[name][1], dtype=float) for name in shown_metrics]
        for axes, values in ((self.axes, [outputs]), (self.metric_axes, metric_values)):
            # A log axis needs a positive value to scale to; without one the axis stays linear.
            positive = any(bool(np.any(np.isfinite(v) & (v > 0))) for v in values)
            axes.set_yscale("log" if log_scale and positive else "linear")
            axes.relim(visible_only=True)
            axes.autoscale_view()
        handles = [self._band if banded else self._raw, self._smooth] + [self._metric_lines[name] for name in shown_metrics]
        labels = [handle.get_label() for handle in handles]
        if labels != self._legend_handles:
            self.axes.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.7)
            self._legend_handles = labels
        self._title.set_text(subtitle)
        return self.png()


class TimelinePlot(_AggFigure):
    """The timeline's recent events over time (one row per event type) and, below, how long the
    handlers of each event took. ``render(entries)`` returns the PNG bytes."""

    def __init__(self, width: int = 480, height: int = 300, dpi: int = 80) -> None:
        super().__init__(width, height, dpi)
        self.events_axes = self.figure.add_axes((0.34, 0.45, 0.63, 0.47))
        self.duration_axes = self.figure.add_axes((0.34, 0.12, 0.63, 0.25), sharex=self.events_axes)
        (self._events,) = self.events_axes.plot([], [], linestyle="none", marker="|", markersize=9, color="#1f77b4")
        (self._durations,) = self.duration_axes.plot([], [], linestyle="none", marker=".", markersize=4, color="#ff7f0e")
        self._title = self.events_axes.set_title("recent events", fontsize=9, loc="left")
        self.events_axes.tick_params(labelbottom=False, labelsize=7)
        self.duration_axes.tick_params(labelsize=7)
        self.duration_axes.set_ylabel("handlers (ms)", fontsize=8)
        self.duration_axes.set_xlabel("time since the timeline started (s)", fontsize=8)
        self.events_axes.grid(True, axis="x", alpha=0.3)
        self.duration_axes.grid(True, alpha=0.3)

    def render(self, entries: Sequence, event_names: Sequence[str], title: str = "recent events") -> bytes:
        """Draw the timeline ``entries`` (``TimelineEntry``) with one row per name in ``event_names``."""
        self._title.set_text(title)
        rows = {name: index for index, name in enumerate(event_names)}
        times = np.fromiter((entry.time for entry in entries), dtype=float, count=len(entries))
        positions = np.fromiter((rows.get(entry.event, -1) for entry in entries), dtype=float, count=len(entries))
        timed = [entry for entry in entries if entry.handlers]
        self._events.set_data(times, positions)
        self._durations.set_data(
            np.fromiter((entry.time for entry in timed), dtype=float, count=len(timed)),
            np.fromiter((entry.handler_seconds * 1e3 for entry in timed), dtype=float, count=len(timed)),
        )
        self.events_axes.set_yticks(range(len(event_names)), [name.lower() for name in event_names], fontsize=7)
        # The first event of a run at the top, as in a table.
        self.events_axes.set_ylim(max(len(event_names), 1) - 0.3, -0.7)
        if len(times):
            low, high = float(times.min()), float(times.max())
            pad = max((high - low) * 0.03, 1e-4)
            self.events_axes.set_xlim(low - pad, high + pad)
        self.duration_axes.relim()
        self.duration_axes.autoscale_view(scalex=False)
        return self.png()
