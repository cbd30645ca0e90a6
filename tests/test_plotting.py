"""nbengine.plotting: decimation, the loss figure (axes, legend, marks, log scale), the timeline
figure, and the drawing process that the panel feeds."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from nbengine import plotting
from nbengine.plotting import LossFigure, Mark, TimelineFigure, decimate_outputs, min_max_envelope, trailing_mean


def png_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def test_plotting_imports_only_numpy_and_matplotlib():
    code = (
        "import sys; import nbengine.plotting; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ipywidgets', 'IPython', 'matplotlib', 'numpy'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['matplotlib', 'numpy']"


def test_decimation_keeps_every_spike_and_bounds_the_points():
    n = 1_000_000
    x = np.arange(n, dtype=float)
    y = np.zeros(n)
    y[123_457] = 50.0
    y[876_543] = -7.0
    starts, lows, highs = min_max_envelope(x, y, 500)
    assert len(starts) == 500
    assert highs.max() == 50.0 and lows.min() == -7.0
    curves = decimate_outputs(x, y, max_points=2000)
    assert curves.band is not None and len(curves.band[0]) == 500 and len(curves.raw[0]) == 0
    assert len(curves.smooth[0]) <= 1000 and curves.smooth[0][-1] == n - 1
    assert curves.count == n
    figure = LossFigure()
    assert png_size(figure.render(curves)) == (640, 320)
    band_y = figure._band.get_xy()[:, 1]
    assert band_y.max() == 50.0 and band_y.min() == -7.0
    assert len(figure._band.get_xy()) + len(figure._smooth.get_xdata()) <= 2000 + 1  # the polygon closes


def test_short_histories_are_drawn_point_by_point():
    figure = LossFigure()
    x = np.arange(1, 101, dtype=float)
    figure.render(decimate_outputs(x, np.sqrt(x)))
    assert figure._raw.get_xdata().tolist() == x.tolist() and not figure._band.get_visible()


def test_trailing_mean():
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert trailing_mean(y, 2).tolist() == [1.0, 1.5, 2.5, 3.5, 4.5]
    assert trailing_mean(y, 3, at=np.array([0, 4])).tolist() == [1.0, 4.0]


def test_validation_loss_shares_the_training_axis_and_accuracy_has_its_own_0_to_1_axis():
    figure = LossFigure()
    x = np.arange(1, 401, dtype=float)
    at = np.array([100.0, 200.0, 300.0, 400.0])
    metrics = {"loss": (at, np.array([0.9, 0.5, 0.3, 0.2])), "accuracy": (at, np.array([0.970, 0.975, 0.98, 0.984]))}
    figure.render(decimate_outputs(x, 2.0 / np.sqrt(x)), metrics, log_scale=True)
    loss_line, accuracy_line = figure._metric_lines["loss"], figure._metric_lines["accuracy"]
    assert loss_line.axes is figure.axes and accuracy_line.axes is figure.metric_axes
    assert figure.axes.get_yscale() == "log"
    assert figure.metric_axes.get_ylim() == (-0.03, 1.03)
    low, high = figure.axes.get_ylim()
    assert low <= 0.1 and high >= 2.0  # every output and validation loss is inside the axis


def test_the_legend_lies_beside_the_axes_and_covers_no_data():
    figure = LossFigure()
    x = np.arange(1, 401, dtype=float)
    figure.render(decimate_outputs(x, x), {"accuracy": (np.array([400.0]), np.array([0.5]))}, marks=[Mark(200, "saved")])
    renderer = figure.figure.canvas.get_renderer()
    legend = figure._legend.get_window_extent(renderer)
    labels = [text.get_text() for text in figure._legend.get_texts()]
    assert labels == ["output", "trailing mean", "val accuracy", "saved"]
    for axes in (figure.axes, figure.metric_axes):
        assert not legend.overlaps(axes.get_window_extent(renderer))


def test_marks_and_title_are_drawn_and_x_reaches_the_last_mark():
    figure = LossFigure()
    x = np.arange(1, 101, dtype=float)
    figure.render(decimate_outputs(x, x), title="epoch 2, iteration 100", marks=[Mark(150, "paused", "#000000", ":")])
    assert figure._title.get_text() == "epoch 2, iteration 100"
    assert list(figure._mark_lines[0].get_xdata()) == [150, 150] and figure._mark_lines[0].get_visible()
    assert figure.axes.get_xlim()[1] >= 150
    figure.render(decimate_outputs(x, x))
    assert not figure._mark_lines[0].get_visible()


def test_the_iteration_axis_grows_with_room_to_spare_and_shrinks_when_the_run_went_back():
    figure = LossFigure()
    limits = []
    for last in range(100, 4001, 100):  # a run growing by 100 iterations between two drawings
        x = np.arange(1, last + 1, dtype=float)
        figure.render(decimate_outputs(x, x))
        limits.append(figure.axes.get_xlim()[1])
        assert last * 1.02 <= limits[-1] <= last * 1.02 * 1.3 * 2  # every point shown, most of the axes used
    # The background (ticks, labels) is drawn again only when the limit moves: 10 limits in 40
    # drawings (a limit tight on the data would take 14).
    assert sorted(set(limits)) == [150.0, 300.0, 400.0, 600.0, 800.0, 1200.0, 2000.0, 3000.0, 4000.0, 6000.0]
    x = np.arange(1, 301, dtype=float)  # a checkpoint of iteration 300 loaded: the axis shrinks
    figure.render(decimate_outputs(x, x))
    assert figure.axes.get_xlim()[1] == 400.0


def test_no_iterations_yet_says_so():
    figure = LossFigure()
    figure.render(decimate_outputs(np.zeros(0), np.zeros(0)))
    assert figure._message.get_visible()


def test_bad_arrays_are_refused_with_their_shapes():
    with pytest.raises(ValueError, match=r"iterations and outputs should be 1-D arrays of the same length, got shapes \(3,\) and \(2,\)"):
        decimate_outputs(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match=r"max_points should be an integer >= 8, got 2"):
        decimate_outputs(np.zeros(3), np.zeros(3), max_points=2)


def test_timeline_figure_draws_rows_and_durations():
    figure = TimelineFigure()
    png = figure.render(np.array([0.1, 0.2, 0.3]), np.array([0, 1, 1]), ["STARTED", "ITERATION_COMPLETED"], np.array([0.2]), np.array([1.5]))
    assert png_size(png) == (480, 300)
    assert [t.get_text() for t in figure.events_axes.get_yticklabels()] == ["started", "iteration_completed"]


def test_the_drawing_process_answers_requests_and_reports_errors():
    process = subprocess.Popen([sys.executable, "-m", "nbengine.plotting"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        x = np.arange(1, 51, dtype=float)
        plotting.write_frame(process.stdin, ("loss", (640, 320, 80), (decimate_outputs(x, x), {}), {"title": "t"}))
        status, png = plotting.read_frame(process.stdout)
        assert status == "png" and png_size(png) == (640, 320)
        plotting.write_frame(process.stdin, ("loss", (640, 320, 80), ("not curves",), {}))
        status, text = plotting.read_frame(process.stdout)
        assert status == "error" and "AttributeError" in text
    finally:
        process.stdin.close()
        assert process.wait(timeout=30) == 0
