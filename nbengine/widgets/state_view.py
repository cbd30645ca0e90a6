"""What the panel shows about the engine's State, taken as a snapshot and formatted as HTML.

This module owns the snapshot (``read_state``: the status, position, last event, output, metrics,
times and error of an engine, read without stopping it) and its HTML (``state_html`` and
``status_badge_html``). Reading happens on the panel's refresh thread while the training thread
may be mid-iteration, so the values are copied once and each is formatted defensively: an output
can be a float, a tensor, a tuple or a dict.

The HTML carries stable class names (``nbengine-status``, ``nbengine-iteration`` ...) so tests and
users can find the values; only standard HTML, so it renders in static views of a saved notebook.
"""

from __future__ import annotations

import html
import numbers
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["StateSnapshot", "read_state", "state_html", "status_badge_html", "format_value", "STATUS_COLOURS"]

#: Background colour of the status badge for each engine status.
STATUS_COLOURS = {
    "idle": "#757575",
    "running": "#2e7d32",
    "paused": "#ef6c00",
    "done": "#1565c0",
    "failed": "#c62828",
}

_MAX_TEXT = 160


@dataclass(frozen=True)
class StateSnapshot:
    """The engine as the State view shows it."""

    status: str
    epoch: int
    max_epochs: int | None
    iteration: int
    iteration_in_epoch: int
    epoch_length: int | None
    max_iters: int | None
    last_event: str | None
    output: str
    metrics: dict[str, str] = field(default_factory=dict)
    #: The evaluator's metrics from its last run, when the panel has an evaluator.
    validation: dict[str, str] = field(default_factory=dict)
    #: Learning rate of the optimizer's first parameter group, when the panel knows the optimizer.
    learning_rate: str | None = None
    times: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None


def format_value(value: Any) -> str:
    """A short text for an output or metric value: numbers to 5 significant digits, one-element
    tensors as their number, bigger tensors by shape, containers element by element."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f"{float(value):.5g}"
    if isinstance(value, torch.Tensor):
        if value.numel() == 1:
            return format_value(value.detach().reshape(()).item())
        return f"tensor{tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, Mapping):
        text = ", ".join(f"{key}: {format_value(item)}" for key, item in value.items())
        return _clip("{" + text + "}")
    if isinstance(value, (tuple, list)):
        text = ", ".join(format_value(item) for item in value)
        return _clip(("(" + text + ")") if isinstance(value, tuple) else ("[" + text + "]"))
    return _clip(repr(value))


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def _event_name(event: Any) -> str | None:
    if event is None:
        return None
    return event if isinstance(event, str) else getattr(event, "name", repr(event))


def read_state(
    engine: Any,
    last_output: tuple[int, float] | None = None,
    *,
    status: str | None = None,
    epoch_started_at: tuple[int, int] | None = None,
    evaluator: Any = None,
    optimizer: Any = None,
) -> StateSnapshot:
    """Copy what the State view shows from ``engine`` (any thread). Between the fetch of a batch
    and the end of its iteration the engine's output is None; ``last_output``, the
    ``(iteration, value)`` of the last recorded output, is shown then. ``status`` replaces the
    engine's (a loaded run shows as paused); ``epoch_started_at`` is ``(epoch, iteration)`` at the
    last EPOCH_STARTED, which says where in its epoch the run stands even when an epoch was cut
    short or a run started again; ``evaluator`` and ``optimizer`` add the validation metrics and
    the learning rate."""
    state = engine.state
    epoch = int(state.epoch or 0)
    iteration = int(state.iteration or 0)
    epoch_length = state.epoch_length
    if epoch_started_at is not None and epoch_started_at[0] == epoch and epoch_started_at[1] <= iteration:
        in_epoch = iteration - epoch_started_at[1]
    elif epoch_length and epoch >= 1:
        in_epoch = max(0, min(epoch_length, iteration - (epoch - 1) * epoch_length))
    else:
        in_epoch = iteration
    # dict() copies in one step, so a metric added meanwhile by the training thread cannot break it.
    metrics = {str(name): format_value(value) for name, value in dict(state.metrics or {}).items()}
    times = {str(name): (f"{value:.3f} s" if isinstance(value, numbers.Real) else "—") for name, value in dict(state.times or {}).items()}
    validation = {}
    if evaluator is not None:
        validation = {str(name): format_value(value) for name, value in dict(evaluator.state.metrics or {}).items()}
    learning_rate = None
    groups = getattr(optimizer, "param_groups", None)
    if groups:
        learning_rate = format_value(groups[0].get("lr"))
    status = status if status is not None else engine.status
    error = engine.error if status == "failed" else None
    return StateSnapshot(
        status=status,
        epoch=epoch,
        max_epochs=state.max_epochs,
        iteration=iteration,
        iteration_in_epoch=in_epoch,
        epoch_length=epoch_length,
        max_iters=state.max_iters,
        last_event=_event_name(engine.last_event),
        output=_output_text(state.output, last_output),
        metrics=metrics,
        validation=validation,
        learning_rate=learning_rate,
        times=times,
        error=None if error is None else f"{type(error).__name__}: {error}",
        traceback=None if error is None else "".join(traceback.format_exception(error)),
    )


def _output_text(output: Any, last_output: tuple[int, float] | None) -> str:
    if output is None and last_output is not None:
        iteration, value = last_output
        return f"{format_value(value)} (iteration {iteration})"
    return format_value(output)


def status_badge_html(status: str, detail: str = "") -> str:
    """The coloured status label, e.g. a green "running"."""
    colour = STATUS_COLOURS.get(status, "#424242")
    detail_html = f" <span style='color:#424242'>{html.escape(detail)}</span>" if detail else ""
    return (
        f"<span class='nbengine-status nbengine-status-{html.escape(status)}' "
        f"style='background:{colour};color:white;padding:2px 10px;border-radius:10px;font-weight:bold'>"
        f"{html.escape(status)}</span>{detail_html}"
    )


def _row(label: str, value_html: str) -> str:
    return f"<tr><th style='text-align:left;padding-right:12px;color:#555'>{html.escape(label)}</th><td>{value_html}</td></tr>"


def _of(value: int, limit: int | None) -> str:
    return f"{value} / {limit}" if limit is not None else f"{value}"


def state_html(snapshot: StateSnapshot) -> str:
    """The State view: status, position, last event, output, metrics, times and, when failed, the
    error with its traceback."""
    s = snapshot
    rows = [
        _row("status", status_badge_html(s.status)),
        _row("epoch", f"<span class='nbengine-epoch'>{_of(s.epoch, s.max_epochs)}</span>"),
        _row(
            "iteration",
            f"<span class='nbengine-iteration-in-epoch'>{_of(s.iteration_in_epoch, s.epoch_length)}</span>"
            f" in the epoch; <span class='nbengine-iteration'>{s.iteration}</span> in all"
            + (f" / {s.max_iters}" if s.max_iters is not None else ""),
        ),
        _row("last event", f"<code class='nbengine-last-event'>{html.escape(s.last_event or '—')}</code>"),
        _row("output", f"<code class='nbengine-output'>{html.escape(s.output)}</code>"),
    ]
    if s.metrics:
        metrics = "<br>".join(f"{html.escape(k)}: <code>{html.escape(v)}</code>" for k, v in s.metrics.items())
        rows.append(_row("metrics", f"<span class='nbengine-metrics'>{metrics}</span>"))
    elif not s.validation:
        rows.append(_row("metrics", "<span class='nbengine-metrics' style='color:#999'>none</span>"))
    if s.validation:
        validation = "<br>".join(f"{html.escape(k)}: <code>{html.escape(v)}</code>" for k, v in s.validation.items())
        rows.append(_row("validation", f"<span class='nbengine-validation'>{validation}</span>"))
    if s.learning_rate is not None:
        rows.append(_row("learning rate", f"<code class='nbengine-lr'>{html.escape(s.learning_rate)}</code>"))
    times = "<br>".join(f"{html.escape(k.lower())}: {html.escape(v)}" for k, v in s.times.items())
    rows.append(_row("times", f"<span class='nbengine-times'>{times}</span>"))
    table = "<table class='nbengine-state' style='border-collapse:collapse;font-size:13px'>" + "".join(rows) + "</table>"
    if s.error is not None:
        table += (
            "<div class='nbengine-error' style='margin-top:6px;border-left:4px solid #c62828;padding:4px 8px;"
            "background:#ffebee'>"
            f"<b style='color:#c62828'>{html.escape(s.error)}</b>"
            f"<pre style='font-size:11px;white-space:pre-wrap;max-height:240px;overflow:auto;margin:4px 0 0 0'>"
            f"{html.escape(s.traceback or '')}</pre></div>"
        )
    return table
