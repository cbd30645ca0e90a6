"""``RanksPanel``: one panel in the notebook over every rank of a multi-process job started with
``nbengine.distributed.notebook_launcher.launch``.

This module owns the panel's three parts and nothing of the job itself:

- **controls**: Pause, Step, Step event, Step epoch, Resume, Stop, Save, Load (of the checkpoint
  chosen in the list beside it: the job's checkpoint folder, newest first) and Replay (of the epoch in
  the box beside it) post requests to the job's command log through a ``RemoteRun``;
  ``DistributedControl`` applies each at one boundary on every rank, so every rank pauses, steps,
  saves, loads, replays and stops at the same place (a Load on a running job pauses it first; the job
  then stands at the loaded position until Resume or Step). A replay's report and a load's outcome,
  one line per rank, are shown when the ranks have published them. A click never waits on a rank.
  "Interrupt kernel" (■) is a Pause of the job while the panel is open (``RankJob.on_interrupt``).
- **views** (standard ipywidgets, HTML and PNG only, so a saved notebook renders them): a State table
  with each rank's status, epoch and iteration; rank 0's training output (the loss) and the metrics
  it reports (reduced over the ranks), drawn with ``nbengine.plotting.LossFigure``; and the recent
  events of one rank with their handler times (``TimelineFigure``): rank 0's, or, chosen in the list
  above it, another rank's, which that rank traces and publishes only while it is shown.
- **refresh**: a daemon thread in the kernel reads the ranks' reports every ``interval`` seconds and
  updates the views (plots only when rank 0 reported something new); it ends with a last refresh
  when the job has ended, or on ``close()``.

The ranks publish what the panel shows with ``nbengine.distributed.remote.RankReport``.
"""

from __future__ import annotations

import html
import threading
import traceback
from typing import Any

import ipywidgets as widgets
import numpy as np

from nbengine.distributed.remote import RemoteRun
from nbengine.plotting import LossFigure, TimelineFigure, decimate_outputs
from nbengine.widgets.state_view import status_badge_html

__all__ = ["RanksPanel"]

def ranks_table_html(ranks: list[dict | None]) -> str:
    """Each rank's status, epoch and iteration, one row per rank."""
    rows = []
    for rank, report in enumerate(ranks):
        if report is None:
            cells = f"<td>{status_badge_html('starting')}</td><td></td><td></td>"
        else:
            cells = (f"<td>{status_badge_html(str(report['status']))}</td>"
                     f"<td class='nbengine-epoch'>{int(report['epoch'])}</td>"
                     f"<td class='nbengine-iteration'>{int(report['iteration'])}</td>")
        rows.append(f"<tr class='nbengine-rank' data-rank='{rank}'><th>rank {rank}</th>{cells}</tr>")
    header = "<tr><th></th><th>status</th><th>epoch</th><th>iteration</th></tr>"
    return f"<table class='nbengine-ranks' style='border-spacing:10px 2px'>{header}{''.join(rows)}</table>"


def _button_class(label: str) -> str:
    """The button's CSS class, e.g. ``nbengine-step-epoch`` (stable selectors for tests and users)."""
    return "nbengine-" + label.lower().replace(" ", "-")


class RanksPanel:
    """Controls and views over every rank of ``job`` (a ``RankJob``); display it as a cell's last
    expression (or ``panel.widget``). Creating it waits until rank 0 has announced its run."""

    def __init__(self, job: Any, run: RemoteRun | None = None, interval: float = 0.5) -> None:
        if not isinstance(interval, (int, float)) or isinstance(interval, bool) or not interval > 0:
            raise ValueError(f"Argument interval should be a positive number of seconds, but given {interval!r}")
        self.job = job
        self.run = run if run is not None else RemoteRun.of(job)
        self.interval = float(interval)
        self.buttons = self._make_buttons()
        self.status = widgets.HTML()
        self.state = widgets.HTML(ranks_table_html([None] * self.run.world_size))
        self.loss = widgets.Image(format="png")
        self.timeline = widgets.Image(format="png")
        self.error = widgets.HTML()
        self._loss_figure = LossFigure()
        self._timeline_figure = TimelineFigure()
        self._drawn_outputs: Any = None
        self._drawn_events: Any = None
        self._closed = threading.Event()
        self._ranks: list[dict | None] = [None] * self.run.world_size
        self._last_request = ""
        self._pending_replay: int | None = None
        self._abilities: dict[str, bool] | None = None
        self.replay_epoch = widgets.BoundedIntText(value=1, min=1, max=10**9, description="epoch",
                                                   layout=widgets.Layout(width="140px"))
        self.replay_report = widgets.HTML()
        self.replay_report.add_class("nbengine-replay-report")
        self.checkpoints = widgets.Dropdown(options=[], description="checkpoint",
                                            layout=widgets.Layout(width="auto", min_width="220px"))
        self.checkpoints.add_class("nbengine-checkpoints")
        self.load_report = widgets.HTML()
        self.load_report.add_class("nbengine-load-report")
        self._pending_load: int | None = None
        self._listed: list[tuple[str, str]] = []
        self.timeline_rank = widgets.Dropdown(options=[(f"rank {r}", r) for r in range(self.run.world_size)],
                                              value=0, description="timeline of", layout=widgets.Layout(width="220px"))
        self.timeline_rank.add_class("nbengine-timeline-rank")
        self.timeline_rank.observe(self._on_timeline_rank, names="value")
        controls = widgets.HBox([*self.buttons.values(), self.replay_epoch, self.checkpoints],
                                layout=widgets.Layout(flex_flow="row wrap"))
        plots = widgets.HBox([self.loss, widgets.VBox([self.timeline_rank, self.timeline])],
                             layout=widgets.Layout(flex_flow="row wrap"))
        self.loss.add_class("nbengine-loss-plot")
        self.timeline.add_class("nbengine-timeline-plot")
        self.widget = widgets.VBox([controls, self.status, self.state, self.replay_report, self.load_report, plots,
                                    self.error])
        self.widget.add_class("nbengine-ranks-panel")
        # ■ pauses the job (at one boundary on every rank, and Resume continues) while the panel is open.
        job.on_interrupt = self.run.pause
        self.refresh()
        self._thread = threading.Thread(target=self._refresh_loop, name="nbengine-ranks-panel", daemon=True)
        self._thread.start()

    def _make_buttons(self) -> dict[str, widgets.Button]:
        actions = {
            "Pause": self.run.pause,
            "Step": lambda: self.run.step(1),
            "Step event": lambda: self.run.step(events=1),
            "Step epoch": lambda: self.run.step(until="EPOCH_COMPLETED"),
            "Resume": self.run.resume,
            "Stop": self.run.stop,
            "Save": self.run.save,
            "Load": self._load,
            "Replay": self._replay,
        }
        buttons = {}
        for label, action in actions.items():
            button = widgets.Button(description=label, layout=widgets.Layout(width="auto"))
            button.add_class(_button_class(label))
            button.on_click(lambda _, label=label, action=action: self._request(label, action))
            buttons[label] = button
        return buttons

    def _load(self) -> int:
        path = self.checkpoints.value
        if not path:
            raise ValueError("no checkpoint is chosen: Save one first, then choose it in the list")
        number = self.run.load(path)
        self._pending_load = number
        self.load_report.value = f"<i>load of {html.escape(path)} requested (request {number})</i>"
        return number

    def _show_load(self) -> None:
        """Show a load's outcome on every rank once rank 0 has published it."""
        if self._pending_load is None:
            return
        outcomes = self.run.result_if_ready(self._pending_load)
        if outcomes is None:
            return
        self._pending_load = None
        lines = "".join(
            f"<li>rank {o['rank']}: " + (f"loaded {html.escape(o['path'])}: paused at epoch {o['epoch']}, iteration "
                                         f"{o['iteration']}" if o["loaded"] else
                                         f"not loaded ({html.escape(str(o['error']))}); still at iteration {o['iteration']}")
            + "</li>" for o in outcomes)
        self.load_report.value = f"<ul style='margin:0'>{lines}</ul>"

    def _list_checkpoints(self) -> None:
        listed = [(f"{info.path.name} · epoch {info.epoch} · iteration {info.iteration}", str(info.path))
                  for info in self.run.checkpoints()]
        if listed != self._listed:
            chosen = self.checkpoints.value
            self._listed = listed
            self.checkpoints.options = listed
            paths = [path for _, path in listed]
            # The choice stays; a new checkpoint (newest first) is chosen when nothing was.
            self.checkpoints.value = chosen if chosen in paths else (paths[0] if paths else None)

    def _on_timeline_rank(self, change: dict) -> None:
        rank = change["new"]
        self.run.trace([rank] if rank else [])
        # No other rank's events under this rank's name: blank until the chosen rank has reported.
        self.timeline.value = b""
        self._drawn_events = None

    def _replay(self) -> int:
        number = self.run.replay(int(self.replay_epoch.value))
        self._pending_replay = number
        self.replay_report.value = f"<i>replay of epoch {int(self.replay_epoch.value)} requested (request {number})</i>"
        return number

    def _show_replay(self) -> None:
        """Show a replay's per-rank report once rank 0 has published it."""
        if self._pending_replay is None:
            return
        reports = self.run.result_if_ready(self._pending_replay)
        if reports is None:
            return
        self._pending_replay = None
        lines = "".join(f"<li>rank {report['rank']}: {html.escape(report['text'])}</li>" for report in reports)
        self.replay_report.value = f"<ul style='margin:0'>{lines}</ul>"

    def _request(self, label: str, action: Any) -> None:
        try:
            number = action()
        except Exception as error:
            # A refused request is shown in the panel, never lost in a callback.
            self.error.value = f"<pre class='nbengine-error'>{html.escape(f'{label}: {error}')}</pre>"
            return
        self._last_request = f"{label} sent to every rank (request {number})"
        self.status.value = self._status_html(self._last_request)

    def _status_html(self, detail: str) -> str:
        return status_badge_html(self._job_status(), detail)

    def _job_status(self) -> str:
        """The job's processes' status once it has ended; before, the ranks' own when they all agree
        (they pause and step together), else running."""
        if self.job.done:
            return self.job.status
        statuses = {report["status"] for report in self._ranks if report is not None}
        return statuses.pop() if len(statuses) == 1 and None not in self._ranks else "running"

    # ------------------------------------------------------------------ refresh

    def refresh(self) -> None:
        """Read the ranks' reports now and update the views."""
        ranks = self._ranks = self.run.ranks()
        self.state.value = ranks_table_html(ranks)
        done = self.job.done
        for button in self.buttons.values():
            button.disabled = done
        if self._abilities is None and None not in ranks:
            self._abilities = self.run.abilities()
        if self._abilities is not None and self._abilities.get("load"):
            self._list_checkpoints()
        for label, kind, argument in (("Save", "save", "checkpoint="), ("Replay", "replay", "replay=EpochReplay(...)"),
                                      ("Load", "load", "a Checkpoint as checkpoint= or load=")):
            if self._abilities is not None and not self._abilities.get(kind, False):
                self.buttons[label].disabled = True
                self.buttons[label].tooltip = f"this job's DistributedControl was made without {argument}"
        if done:
            self.status.value = self._status_html("the job has ended")
        else:
            self.status.value = self._status_html(self._last_request)
        self._show_replay()
        self._show_load()
        self._draw_loss()
        self._draw_timeline()

    def _draw_loss(self) -> None:
        iterations, outputs = self.run.outputs()
        metrics = self.run.metrics()
        drawn = (len(iterations), tuple(len(points[0]) for points in metrics.values()))
        if drawn == self._drawn_outputs:
            return
        curves = decimate_outputs(np.asarray(iterations, dtype=float), np.asarray(outputs, dtype=float))
        series = {name: (np.asarray(x, dtype=float), np.asarray(y, dtype=float)) for name, (x, y) in metrics.items()}
        self.loss.value = self._loss_figure.render(curves, series, title="rank 0")
        self._drawn_outputs = drawn

    def _draw_timeline(self) -> None:
        rank = int(self.timeline_rank.value or 0)
        events = self.run.events(rank)
        if not events or (rank, events[-1]) == self._drawn_events:
            return
        names = sorted({event[1] for event in events})
        times = np.array([event[0] for event in events])
        rows = np.array([names.index(event[1]) for event in events])
        handler_times = np.array([event[0] for event in events for _ in event[4]])
        handler_ms = np.array([seconds * 1000 for event in events for _, seconds in event[4]])
        self.timeline.value = self._timeline_figure.render(times, rows, names, handler_times, handler_ms,
                                                           title=f"rank {rank}: recent events")
        self._drawn_events = (rank, events[-1])

    def _refresh_loop(self) -> None:
        while not self._closed.wait(self.interval):
            try:
                ended = self.job.done
                self.refresh()
            except Exception:
                self.error.value = f"<pre class='nbengine-error'>{html.escape(traceback.format_exc())}</pre>"
                return
            if ended:
                return

    def close(self) -> None:
        """Stop refreshing and close the widgets (the job goes on)."""
        self._closed.set()
        self._thread.join(timeout=10)
        if self.job.on_interrupt == self.run.pause:
            self.job.on_interrupt = None
        self.widget.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
