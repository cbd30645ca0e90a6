"""The loss and timeline figures, drawn off-screen with matplotlib's Agg canvas (never pyplot).

This module owns how nbengine's plots look and how they are drawn cheaply: the panel's live loss
plot and event-timeline plot, and the images of ``nbengine demo``. It imports only numpy and
matplotlib (no torch, ipywidgets or IPython), so it also runs as a small drawing process
(``python -m nbengine.plotting``, see ``serve``) that the panel feeds with decimated arrays, so
that drawing never holds the training kernel's interpreter lock.

Cheap by construction: each figure is one ``Figure`` built once; a drawing moves the data of its
artists (``set_data``), sets the axis limits from the arrays (no ``relim`` over the artists) and
encodes a PNG at a fast zlib level. Long histories are decimated before drawing
(``decimate_outputs``: the min/max envelope per bucket, so spikes survive, and the trailing mean
at evenly spaced points), so a drawing costs the same at any run length.

The loss figure reads true: validation losses share the training-loss axis, other validation
metrics (accuracy) have their own axis below (0-1 when their values lie there), and the legend
sits beside the axes, so it covers no data.
"""

from __future__ import annotations

import io
import math
import numbers
import pickle
import struct
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Polygon
from matplotlib.ticker import MaxNLocator

__all__ = [
    "LossData",
    "LossCurves",
    "LossFigure",
    "Mark",
    "Points",
    "RunTimelineFigure",
    "TimelineFigure",
    "decimate_outputs",
    "is_loss_name",
    "min_max_envelope",
    "trailing_mean",
    "serve",
]

# Series colours of the validation metrics, in the order they are first seen.
_METRIC_COLOURS = ("#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
_OUTPUT_COLOUR = "#1f77b4"


def _check_int(name: str, value: object, minimum: int = 1) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} should be an integer >= {minimum}, got {value!r}")
    return int(value)


def is_loss_name(name: str) -> bool:
    """Whether a validation metric is a loss (plotted on the training-loss axis), by its name."""
    return "loss" in name.lower()


@dataclass
class LossData:
    """What the loss figure shows: the training output per iteration and validation metrics.

    ``iterations`` and ``outputs`` have the same length; ``metrics`` maps a metric name to
    ``(iterations at which it was measured, values)``.
    """

    iterations: np.ndarray = field(default_factory=lambda: np.zeros(0))
    outputs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    metrics: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


@dataclass(frozen=True)
class Mark:
    """A vertical line at iteration ``x`` (a checkpoint, a pause), with its legend ``label``."""

    x: float
    label: str
    colour: str = "#ff7f0e"
    style: str = "--"


@dataclass(frozen=True)
class Points:
    """Extra points on the training-output axes (a replayed epoch's losses), with their legend ``label``."""

    x: np.ndarray
    y: np.ndarray
    label: str
    colour: str = "#d62728"
    marker: str = "o"


@dataclass
class LossCurves:
    """Decimated training outputs, ready to draw: either every point (``raw``) or, for long runs,
    the min/max envelope (``band``); and the trailing mean at evenly spaced points."""

    raw: tuple[np.ndarray, np.ndarray]
    band: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    smooth: tuple[np.ndarray, np.ndarray]
    window: int
    count: int


def min_max_envelope(x: np.ndarray, y: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``(x, y)`` into ``buckets`` runs of consecutive points and return, per run, its first x,
    its lowest y and its highest y: the envelope that a plot of every point would fill, so no spike
    is lost. NaN in a run makes its bounds NaN (a gap), never hidden. Needs ``len(y) >= buckets``."""
    buckets = _check_int("buckets", buckets)
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
    window = _check_int("window", window)
    y = np.asarray(y, dtype=float)
    ends = np.arange(1, len(y) + 1) if at is None else np.asarray(at, dtype=np.int64) + 1
    if len(y) == 0 or len(ends) == 0:
        return np.zeros(len(ends))
    sums = np.concatenate(([0.0], np.cumsum(y)))
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def decimate_outputs(iterations: np.ndarray, outputs: np.ndarray, max_points: int = 2000) -> LossCurves:
    """At most ``max_points`` points in all: up to ``max_points`` outputs as they are; more, as the
    min/max envelope of ``max_points/4`` buckets and the trailing mean at ``max_points/2`` points."""
    max_points = _check_int("max_points", max_points, minimum=8)
    iterations = np.asarray(iterations, dtype=float)
    outputs = np.asarray(outputs, dtype=float)
    if iterations.shape != outputs.shape or iterations.ndim != 1:
        raise ValueError(
            f"iterations and outputs should be 1-D arrays of the same length, got shapes {iterations.shape} and {outputs.shape}"
        )
    count = len(outputs)
    window = max(1, min(200, count // 20))
    # The smoothed curve has no spikes worth keeping: it is computed only at evenly spaced points.
    stride = max(1, math.ceil(count / (max_points // 2)))
    sampled = np.arange(count - 1, -1, -stride)[::-1]
    smooth = (iterations[sampled], trailing_mean(outputs, window, at=sampled))
    if count > max_points:
        empty = np.zeros(0)
        return LossCurves((empty, empty), min_max_envelope(iterations, outputs, max_points // 4), smooth, window, count)
    return LossCurves((iterations, outputs), None, smooth, window, count)


def _finite_range(arrays: Sequence[np.ndarray], log: bool) -> tuple[float, float] | None:
    parts = [np.asarray(a, dtype=float).ravel() for a in arrays if len(a)]
    if not parts:
        return None
    values = np.concatenate(parts)
    values = values[np.isfinite(values) & ((values > 0) if log else True)]
    if not len(values):
        return None
    return float(values.min()), float(values.max())


def _padded(low: float, high: float, log: bool) -> tuple[float, float]:
    if log:
        if high <= low:
            return low / 2, high * 2
        span = math.log10(high) - math.log10(low)
        return low / 10 ** (0.05 * span), high * 10 ** (0.05 * span)
    if high <= low:
        pad = abs(low) * 0.05 or 0.5
        return low - pad, high + pad
    pad = (high - low) * 0.05
    return low - pad, high + pad


_NICE = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 (times a power of ten) that is >= ``value``: an axis end
    that moves seldom as a run grows, so the drawn axes can be reused."""
    if value <= 0:
        return 1.0
    scale = 10.0 ** math.floor(math.log10(value))
    return next(step * scale for step in _NICE if step * scale >= value * (1 - 1e-12))


#: Room left on the right when the iteration axis grows: each new limit lasts while the run grows by
#: a third, so the saved background (a full drawing costs ten times an update) is redrawn seldom.
_X_HEADROOM = 1.3


def _x_limit(current: float, needed: float) -> float:
    """The right end of the iteration axis: ``current`` while it shows ``needed`` without leaving
    most of the axes empty (the run went back), else a nice number ``_X_HEADROOM`` beyond ``needed``."""
    if needed <= current <= needed * _X_HEADROOM * 2:
        return current
    return _nice_ceiling(needed * _X_HEADROOM)


def _stepped(low: float, high: float, log: bool) -> tuple[float, float]:
    """``(low, high)`` widened to a coarse grid (a tenth of a power of ten of the span; a half-decade
    on a log axis), so that small changes of the data leave the axis as it is."""
    if log:
        return 10 ** (math.floor(2 * math.log10(low)) / 2), 10 ** (math.ceil(2 * math.log10(high)) / 2)
    step = 10.0 ** math.floor(math.log10(max(high - low, 1e-12))) / 2
    return math.floor(low / step) * step, math.ceil(high / step) * step


class _AggFigure:
    """One Figure on an Agg canvas, encoded to PNG on demand."""

    def __init__(self, width: int, height: int, dpi: int) -> None:
        self.width = _check_int("width", width, minimum=100)
        self.height = _check_int("height", height, minimum=80)
        self.dpi = _check_int("dpi", dpi, minimum=20)
        self.figure = Figure(figsize=(self.width / self.dpi, self.height / self.dpi), dpi=self.dpi)
        FigureCanvasAgg(self.figure)

    def png(self) -> bytes:
        self.figure.canvas.draw()
        return self.encode()

    def encode(self) -> bytes:
        """The canvas as it stands, as PNG bytes (RGB at a fast zlib level: the image changes with
        every drawing and travels over a local socket)."""
        from PIL import Image

        canvas = self.figure.canvas
        image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="png", compress_level=1)
        return buffer.getvalue()


class LossFigure(_AggFigure):
    """Training output per iteration (raw or its min/max band, and its trailing mean) with the
    validation losses on the upper axes; the other validation metrics on the lower axes; the
    legend to the right of both; vertical marks (checkpoints, a pause) across both.

    ``render(curves, metrics, ...)`` returns PNG bytes; ``curves`` come from ``decimate_outputs``.
    """

    def __init__(self, width: int = 640, height: int = 320, dpi: int = 80) -> None:
        super().__init__(width, height, dpi)
        figure = self.figure
        # A narrow figure (a notebook cell beside a side bar) keeps the axes' width: legend below.
        self._legend_below = width < 560
        if self._legend_below:
            self.axes = figure.add_axes((0.14, 0.47, 0.82, 0.46))
            self.metric_axes = figure.add_axes((0.14, 0.26, 0.82, 0.15), sharex=self.axes)
        else:
            self.axes = figure.add_axes((0.1, 0.34, 0.62, 0.58))
            self.metric_axes = figure.add_axes((0.1, 0.12, 0.62, 0.17), sharex=self.axes)
        for axes in (self.axes, self.metric_axes):
            axes.grid(True, alpha=0.3)
            axes.tick_params(labelsize=8)
            axes.xaxis.set_major_locator(MaxNLocator(6, integer=True))
        self.axes.tick_params(labelbottom=False)
        self.axes.set_ylabel("training output", fontsize=8)
        self.metric_axes.set_xlabel("iteration", fontsize=8)
        self.metric_axes.yaxis.set_major_locator(MaxNLocator(3))
        self._raw = Line2D([], [], color=_OUTPUT_COLOUR, alpha=0.35, linewidth=0.8, label="output")
        self._band = Polygon(np.zeros((0, 2)), closed=True, facecolor=_OUTPUT_COLOUR, alpha=0.3, linewidth=0, label="output (min–max)")
        self._smooth = Line2D([], [], color=_OUTPUT_COLOUR, linewidth=1.6, label="smoothed")
        self.axes.add_patch(self._band)
        self.axes.add_line(self._raw)
        self.axes.add_line(self._smooth)
        self._metric_lines: dict[str, Line2D] = {}
        self._mark_lines: list[Line2D] = []
        self._point_lines: list[Line2D] = []
        self._message = self.axes.text(
            0.5, 0.5, "no iterations yet", transform=self.axes.transAxes, ha="center", va="center", color="gray"
        )
        self._title = self.axes.set_title("", fontsize=9, loc="left")
        self._legend_key: tuple | None = None
        self._legend = None
        # What changes with every drawing is drawn over a saved image of the rest (axes, ticks,
        # labels, legend), which is redrawn only when its look changes: text is most of the cost.
        self._background = None
        self._background_key: tuple | None = None
        for artist in (self._raw, self._band, self._smooth, self._title):
            artist.set_animated(True)

    def _metric_line(self, name: str) -> Line2D:
        line = self._metric_lines.get(name)
        if line is None:
            colour = _METRIC_COLOURS[len(self._metric_lines) % len(_METRIC_COLOURS)]
            axes = self.axes if is_loss_name(name) else self.metric_axes
            line = Line2D([], [], marker="o", markersize=4, linewidth=1.0, color=colour, label=f"val {name}", animated=True)
            axes.add_line(line)
            self._metric_lines[name] = line
        return line

    def _set_marks(self, marks: Sequence[Mark]) -> list[Line2D]:
        while len(self._mark_lines) < len(marks):
            line = Line2D([], [], linewidth=1.2, animated=True)
            line.set_transform(self.axes.get_xaxis_transform())
            self.axes.add_line(line)
            twin = Line2D([], [], linewidth=1.2, animated=True)
            twin.set_transform(self.metric_axes.get_xaxis_transform())
            self.metric_axes.add_line(twin)
            line.twin = twin  # type: ignore[attr-defined]
            self._mark_lines.append(line)
        for index, line in enumerate(self._mark_lines):
            shown = index < len(marks)
            line.set_visible(shown)
            line.twin.set_visible(shown)  # type: ignore[attr-defined]
            if shown:
                mark = marks[index]
                for artist in (line, line.twin):  # type: ignore[attr-defined]
                    artist.set_data([mark.x, mark.x], [0, 1])
                    artist.set_color(mark.colour)
                    artist.set_linestyle(mark.style)
                line.set_label(mark.label)
        return self._mark_lines[: len(marks)]

    def _set_points(self, points: Sequence[Points]) -> list[Line2D]:
        while len(self._point_lines) < len(points):
            line = Line2D([], [], linestyle="none", markersize=4, markerfacecolor="none", animated=True)
            self.axes.add_line(line)
            self._point_lines.append(line)
        for index, line in enumerate(self._point_lines):
            line.set_visible(index < len(points))
            if index < len(points):
                series = points[index]
                line.set_data(np.asarray(series.x, dtype=float), np.asarray(series.y, dtype=float))
                line.set_color(series.colour)
                line.set_marker(series.marker)
                line.set_label(series.label)
        return self._point_lines[: len(points)]

    def draw(
        self,
        curves: LossCurves,
        metrics: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
        *,
        log_scale: bool = False,
        title: str = "",
        marks: Sequence[Mark] = (),
        x_max: float | None = None,
        points: Sequence[Points] = (),
    ) -> None:
        """Move the artists to show ``curves``, ``metrics``, ``marks`` and ``points`` (without rendering)."""
        metrics = dict(metrics or {})
        banded = curves.band is not None
        if banded:
            starts, lows, highs = curves.band  # type: ignore[misc]
            self._band.set_xy(np.column_stack([np.concatenate([starts, starts[::-1]]), np.concatenate([lows, highs[::-1]])]))
            self._raw.set_data([], [])
        else:
            self._band.set_xy(np.zeros((0, 2)))
            self._raw.set_data(*curves.raw)
        self._band.set_visible(banded)
        self._raw.set_visible(not banded)
        self._smooth.set_data(*curves.smooth)
        # A fixed label: a legend that changes forces the whole figure to be drawn again.
        self._smooth.set_label("trailing mean")
        self._message.set_visible(curves.count == 0)

        shown = [name for name, (x, _) in metrics.items() if len(x)]
        for name in shown:
            x, y = metrics[name]
            line = self._metric_line(name)
            line.set_data(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
            # Markers only while they can be told apart.
            line.set_markersize(4 if len(x) <= 100 else 0)
        for name, line in self._metric_lines.items():
            line.set_visible(name in shown)
        mark_lines = self._set_marks(marks)
        point_lines = self._set_points(points)

        loss_arrays = [curves.band[1], curves.band[2]] if banded else [curves.raw[1]]  # type: ignore[index]
        loss_arrays += [curves.smooth[1]] + [np.asarray(metrics[n][1], dtype=float) for n in shown if is_loss_name(n)]
        loss_arrays += [np.asarray(p.y, dtype=float) for p in points]
        other_arrays = [np.asarray(metrics[n][1], dtype=float) for n in shown if not is_loss_name(n)]
        xs = [curves.band[0] if banded else curves.raw[0], curves.smooth[0]] + [metrics[n][0] for n in shown]  # type: ignore[index]
        xs += [np.asarray(p.x, dtype=float) for p in points]
        self._set_limits(loss_arrays, other_arrays, xs, log_scale, max([x_max or 0.0, *(mark.x for mark in marks)]))

        handles = [self._band if banded else self._raw, self._smooth]
        handles += [self._metric_lines[name] for name in shown] + point_lines + mark_lines
        handles = [handle for handle in handles if not handle.get_label().startswith("_")]
        self._set_legend(handles)
        self._title.set_text(title)

    def _set_limits(self, loss_arrays: list, other_arrays: list, xs: list, log_scale: bool, x_max: float) -> None:
        """Axis scales and limits from the arrays shown (coarse steps, so the saved background lasts)."""
        log = log_scale and _finite_range(loss_arrays, log=True) is not None
        self.axes.set_yscale("log" if log else "linear")
        loss_range = _finite_range(loss_arrays, log)
        limits = _stepped(*_padded(*loss_range, log), log) if loss_range else (0.0, 1.0)
        if loss_range and not log and loss_range[0] >= 0:
            limits = (max(0.0, limits[0]), limits[1])  # no room below 0 for what is never negative
        self.axes.set_ylim(*limits)
        other_range = _finite_range(other_arrays, log=False)
        if other_range is None or (other_range[0] >= 0 and other_range[1] <= 1):
            # Accuracy-like metrics on their whole 0-1 range: noise does not look like swings.
            self.metric_axes.set_ylim(-0.03, 1.03)
        else:
            self.metric_axes.set_ylim(*_stepped(*_padded(*other_range, log=False), log=False))
        self.metric_axes.set_ylabel("validation" if other_arrays else "", fontsize=8)
        x_range = _finite_range(xs, log=False)
        needed = max(1.0, max(x_max, x_range[1] if x_range else 1.0) * 1.02)
        self.axes.set_xlim(0, _x_limit(self.axes.get_xlim()[1], needed))

    def _set_legend(self, handles: list) -> None:
        key = tuple((handle.get_label(), id(handle)) for handle in handles)
        if key != self._legend_key:
            if self._legend is not None:
                self._legend.remove()
            # Beside or below the axes, never over them.
            if self._legend_below:
                place = {"loc": "upper left", "bbox_to_anchor": (0.02, 0.115), "ncol": 3}
            else:
                place = {"loc": "upper left", "bbox_to_anchor": (0.735, 0.93)}
            self._legend = self.figure.legend(handles=handles, fontsize=7, frameon=False, borderaxespad=0, **place)
            self._legend_key = key

    def _look(self) -> tuple:
        """Everything the saved background shows."""
        return (
            self.axes.get_xlim(), self.axes.get_ylim(), self.axes.get_yscale(), self.metric_axes.get_ylim(),
            self.metric_axes.get_ylabel(), self._legend_key, self._message.get_visible(),
        )  # fmt: skip

    def png(self) -> bytes:
        look = self._look()
        canvas = self.figure.canvas
        if look != self._background_key:
            canvas.draw()  # leaves out the animated artists
            self._background = canvas.copy_from_bbox(self.figure.bbox)
            self._background_key = look
        else:
            canvas.restore_region(self._background)
        for axes in (self.axes, self.metric_axes):
            for artist in [*axes.patches, *axes.lines, *axes.texts, axes.title, axes._left_title]:
                if artist.get_animated() and artist.get_visible():
                    axes.draw_artist(artist)
        return self.encode()

    def render(self, curves: LossCurves, metrics: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None, **options: Any) -> bytes:
        """``draw(...)`` and return the PNG bytes."""
        self.draw(curves, metrics, **options)
        return self.png()


class TimelineFigure(_AggFigure):
    """Recent events over time (one row per event type) and, below, how long the handlers of each
    event took. ``render(...)`` returns the PNG bytes."""

    def __init__(self, width: int = 480, height: int = 300, dpi: int = 80) -> None:
        super().__init__(width, height, dpi)
        self.events_axes = self.figure.add_axes((0.34, 0.45, 0.63, 0.47))
        self.duration_axes = self.figure.add_axes((0.34, 0.12, 0.63, 0.25), sharex=self.events_axes)
        (self._events,) = self.events_axes.plot([], [], linestyle="none", marker="|", markersize=9, color=_OUTPUT_COLOUR)
        (self._durations,) = self.duration_axes.plot([], [], linestyle="none", marker=".", markersize=4, color="#ff7f0e")
        self._title = self.events_axes.set_title("recent events", fontsize=9, loc="left")
        self.events_axes.tick_params(labelbottom=False, labelsize=7)
        self.duration_axes.tick_params(labelsize=7)
        self.duration_axes.set_ylabel("handlers (ms)", fontsize=8)
        self.duration_axes.set_xlabel("time since the timeline started (s)", fontsize=8)
        self.events_axes.grid(True, axis="x", alpha=0.3)
        self.duration_axes.grid(True, alpha=0.3)

    def render(
        self,
        times: np.ndarray,
        rows: np.ndarray,
        names: Sequence[str],
        handler_times: np.ndarray,
        handler_ms: np.ndarray,
        title: str = "recent events",
    ) -> bytes:
        """Events at ``times`` on rows ``rows`` (indices into ``names``); handler durations in ms."""
        self._title.set_text(title)
        times = np.asarray(times, dtype=float)
        self._events.set_data(times, np.asarray(rows, dtype=float))
        self._durations.set_data(np.asarray(handler_times, dtype=float), np.asarray(handler_ms, dtype=float))
        self.events_axes.set_yticks(range(len(names)), [name.lower() for name in names], fontsize=7)
        # The first event of a run at the top, as in a table.
        self.events_axes.set_ylim(max(len(names), 1) - 0.3, -0.7)
        if len(times):
            low, high = float(times.min()), float(times.max())
            pad = max((high - low) * 0.03, 1e-4)
            self.events_axes.set_xlim(low - pad, high + pad)
        duration_range = _finite_range([np.asarray(handler_ms, dtype=float)], log=False)
        if duration_range is not None:
            self.duration_axes.set_ylim(0, max(duration_range[1] * 1.1, 1e-3))
        return self.png()


class RunTimelineFigure(_AggFigure):
    """A whole run's events (``nbengine demo``'s ``timeline.png``): above, every event against time,
    dark where handlers ran, with a paused span; below, a few events as text lines (each with its
    colour), such as those around a pause with the handlers that ran. ``render(...)`` returns PNG bytes."""

    def __init__(self, width: int = 1000, height: int = 750, dpi: int = 100) -> None:
        super().__init__(width, height, dpi)
        self.events_axes, self.text_axes = self.figure.subplots(2, 1, gridspec_kw={"height_ratios": [1, 1.15]})

    def render(
        self,
        times: np.ndarray,
        rows: np.ndarray,
        handled: np.ndarray,
        names: Sequence[str],
        paused: tuple[float, float] | None,
        lines: Sequence[tuple[str, str]],
        titles: tuple[str, str] = ("every event the trainer fired", "some events and the handlers that ran for them"),
    ) -> bytes:
        """Events at ``times`` on rows ``rows`` (indices into ``names``), ``handled`` where a handler
        ran; ``paused`` the (start, end) of a pause; ``lines`` the (text, colour) lines below."""
        whole, near = self.events_axes, self.text_axes
        times, rows, handled = np.asarray(times, dtype=float), np.asarray(rows, dtype=float), np.asarray(handled, dtype=bool)
        whole.scatter(times[~handled], rows[~handled], marker="|", s=60, color="#9ecae1", label="no handler ran")
        whole.scatter(times[handled], rows[handled], marker="|", s=90, color="#08519c", label="handlers ran")
        if paused is not None:
            whole.axvspan(*paused, color="#ff7f0e", alpha=0.3, label="paused")
        whole.set_yticks(range(len(names)), [name.lower() for name in names], fontsize=7)
        whole.invert_yaxis()
        whole.set_xlabel("seconds since the timeline was attached", fontsize=8)
        whole.set_title(titles[0], fontsize=10, loc="left")
        # Above the axes, beside the title: inside them it hid the last events of the bottom rows.
        whole.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=3, fontsize=7, frameon=False)
        whole.grid(True, axis="x", alpha=0.3)
        near.axis("off")
        near.set_title(titles[1], fontsize=10, loc="left")
        step = 1.0 / (len(lines) + 1)
        for index, (line, colour) in enumerate(lines):
            near.text(0.0, 1.0 - (index + 0.5) * step, line, family="monospace", fontsize=7.5, color=colour,
                      transform=near.transAxes, va="center")  # fmt: skip
        self.figure.tight_layout()
        return self.png()


# ------------------------------------------------------------------------------- drawing process

_FRAME = struct.Struct("<Q")


def write_frame(stream: BinaryIO, payload: Any) -> None:
    """Write one pickled message, prefixed by its length."""
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_FRAME.pack(len(data)) + data)
    stream.flush()


def read_frame(stream: BinaryIO) -> Any:
    """Read one message written by ``write_frame``; EOFError when the stream has ended."""
    head = stream.read(_FRAME.size)
    if len(head) < _FRAME.size:
        raise EOFError("the stream ended")
    (size,) = _FRAME.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the stream ended inside a message")
    return pickle.loads(data)


def serve(requests: BinaryIO | None = None, replies: BinaryIO | None = None) -> None:
    """Answer drawing requests until ``requests`` ends: each request is ``(figure, size, args,
    options)`` with ``figure`` "loss" or "timeline"; each reply is ``("png", bytes)`` or
    ``("error", traceback text)``. One figure of each kind and size is kept and reused.

    Both streams are the parent's own pipes (the panel starts this process); pickle is read only
    from it."""
    requests = requests if requests is not None else sys.stdin.buffer
    replies = replies if replies is not None else sys.stdout.buffer
    figures: dict[tuple, _AggFigure] = {}
    kinds = {"loss": LossFigure, "timeline": TimelineFigure}
    while True:
        try:
            kind, size, args, options = read_frame(requests)
        except EOFError:
            return
        try:
            figure = figures.get((kind, size))
            if figure is None:
                figure = figures[(kind, size)] = kinds[kind](*size)
            reply = ("png", figure.render(*args, **options))
        except Exception:  # sent back to the panel, which shows it; this process goes on
            reply = ("error", traceback.format_exc())
        write_frame(replies, reply)


if __name__ == "__main__":
    import signal

    # Started by the panel in the kernel's process group: "Interrupt kernel" signals the whole group,
    # and is meant for the kernel, not for its drawing process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve()
