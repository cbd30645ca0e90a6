"""``ProgressBar``: a tqdm bar for an engine that costs next to nothing per iteration.

This module owns the bar: which tqdm it uses (a widget in a Jupyter kernel, text elsewhere), when
it redraws, and what it shows (position, loss, metrics, state attributes). pytorch-ignite's bar
formats and pushes its postfix on every iteration (about +36 us each); this one only reads a clock
per event and redraws when ``mininterval`` (100 ms by default) has passed, so the per-iteration
cost is one handler call and one ``time.monotonic()``. The closing event always draws the final
values before the bar closes; a bar that is not kept (``persist=False``) first draws the line
ignite's leaves last (the latest values at the step before the last, e.g. ``Validation: [4/5]``).
A failed run closes the bar where it stopped (red in a notebook), seen through the engine's status
hook: an ``EXCEPTION_RAISED`` handler would take the exception from the caller.

Handlers that write while a text bar is shown should use :meth:`ProgressBar.log_message`, not ``print``.

tqdm is imported when the first bar is created, and its notebook flavour (which imports IPython and
ipywidgets) only inside a Jupyter kernel, so ``import nbengine.handlers`` imports neither.
"""

from __future__ import annotations

import inspect
import numbers
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from nbengine.engine.events import CallableEventWithFilter, Events

__all__ = ["ProgressBar"]

DEFAULT_BAR_FORMAT = "{desc}[{n_fmt}/{total_fmt}] {percentage:3.0f}%|{bar}{postfix} [{elapsed}<{remaining}]"

# tqdm arguments the bar sets itself, each with the ProgressBar argument (or attach argument) that controls it.
_MANAGED_TQDM_ARGUMENTS = (
    ("iterable", "the engine's events"),
    ("total", "epoch_length or max_epochs"),
    ("initial", "the engine's position"),
    ("leave", "persist"),
    ("bar_format", "bar_format"),
    ("miniters", "mininterval"),
)

# Events a bar may be drawn on, in the order they occur; the closing event must come later.
_EVENT_ORDER = ("STARTED", "EPOCH_STARTED", "ITERATION_STARTED", "ITERATION_COMPLETED", "EPOCH_COMPLETED", "COMPLETED")
_ITERATION_EVENTS = ("ITERATION_STARTED", "ITERATION_COMPLETED")
_EPOCH_EVENTS = ("EPOCH_STARTED", "EPOCH_COMPLETED")


def _tqdm_class() -> type:
    # Outside a Jupyter kernel tqdm.auto would fall back to the text bar anyway, after importing IPython to find out.
    if "ipykernel" in sys.modules:
        from tqdm.auto import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm


def _tqdm_parameters() -> set[str]:
    try:
        from tqdm.std import tqdm
    except ImportError as error:
        raise ModuleNotFoundError(
            "This submodule requires tqdm to be installed. Please install it with the command: \n pip install tqdm"
        ) from error

    return set(inspect.signature(tqdm.__init__).parameters) - {"self", "kwargs"}


def _event_name(event: Any, argument: str) -> str:
    if not isinstance(event, CallableEventWithFilter) or event.name not in _EVENT_ORDER:
        allowed = ", ".join(f"Events.{name}" for name in _EVENT_ORDER)
        raise ValueError(
            f"Logging event {getattr(event, 'name', event)} is not in allowed events for this engine: "
            f"ProgressBar.attach: argument {argument} should be one of {allowed}, got {event!r}"
        )
    return event.name


def _flatten(prefix: str, value: Any, into: dict[str, Any]) -> None:
    """Add ``value`` to the postfix under ``prefix``: numbers and strings as they are, tensors element-wise."""
    if isinstance(value, torch.Tensor):
        if value.ndim == 0:
            into[prefix] = value.item()
        elif value.ndim == 1:
            for index, item in enumerate(value.tolist()):
                into[f"{prefix}_{index}"] = item
        else:
            warnings.warn(
                f"ProgressBar: {prefix!r} is a tensor of shape {tuple(value.shape)}; only numbers, strings and 0-d or "
                "1-d tensors are shown",
                stacklevel=4,
            )
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}_{key}", item, into)
    elif isinstance(value, (numbers.Number, str)):
        into[prefix] = value
    elif isinstance(value, Sequence):
        for index, item in enumerate(value):
            _flatten(f"{prefix}_{index}", item, into)
    else:
        warnings.warn(
            f"ProgressBar: {prefix!r} is a {type(value).__name__}; only numbers, strings and 0-d or 1-d tensors are "
            "shown",
            stacklevel=4,
        )


def _format_postfix(values: dict[str, Any]) -> str:
    """``name=value, ...`` with numbers shortened the way tqdm's own ``set_postfix`` does."""
    from tqdm.std import tqdm

    return ", ".join(
        f"{name}={tqdm.format_num(value) if isinstance(value, numbers.Number) else str(value).strip()}"
        for name, value in values.items()
    )


class _Attachment:
    """What one ``attach`` call shows on one engine."""

    def __init__(
        self,
        bar: ProgressBar,
        metric_names: str | list[str] | None,
        output_transform: Callable[[Any], Any] | None,
        state_attributes: list[str] | None,
        event_name: str,
        closing_event_name: str,
    ) -> None:
        self.bar = bar
        self.metric_names = metric_names
        self.output_transform = output_transform
        self.state_attributes = state_attributes
        self.per_iteration = event_name in _ITERATION_EVENTS
        self.closing_event_name = closing_event_name
        self.event_filter: Callable[[Any, int], bool] | None = None

    def total(self, engine: Any) -> int | None:
        state = engine.state
        return state.epoch_length if self.per_iteration else state.max_epochs

    def position(self, engine: Any, total: int | None) -> int:
        state = engine.state
        if not self.per_iteration:
            return state.epoch
        if total:
            return (state.iteration - 1) % total + 1
        return state.iteration

    def previous_position(self, engine: Any, total: int | None) -> int:
        """Where the bar stood before the latest occurrence of its event: the position of the one before in
        this bar's span, or 1 (where ignite's bar starts) when there was none."""
        state = engine.state
        count = state.iteration if self.per_iteration else state.epoch
        position = self.position(engine, total)
        event_filter = self.event_filter
        for earlier in range(count - 1, count - position, -1):
            if event_filter is None or event_filter(engine, earlier):
                return position - (count - earlier)
        return 1

    def description(self, engine: Any) -> str:
        state = engine.state
        description = self.bar._desc or ("Iteration" if state.max_epochs == 1 else "Epoch")
        if self.closing_event_name in _EPOCH_EVENTS and state.max_epochs and state.max_epochs > 1:
            description += f" [{state.epoch}/{state.max_epochs}]"
        return description

    def postfix(self, engine: Any) -> dict[str, Any]:
        state = engine.state
        shown: dict[str, Any] = {}
        if self.metric_names == "all":
            for name, value in state.metrics.items():
                _flatten(name, value, shown)
        elif self.metric_names:
            for name in self.metric_names:
                if name in state.metrics:
                    _flatten(name, state.metrics[name], shown)
                else:
                    warnings.warn(
                        f"ProgressBar: metric {name!r} is not in engine.state.metrics (which has {list(state.metrics)})",
                        stacklevel=3,
                    )
        if self.output_transform is not None:
            output = self.output_transform(state.output)
            if isinstance(output, Mapping):
                for name, value in output.items():
                    _flatten(str(name), value, shown)
            else:
                _flatten("output", output, shown)
        if self.state_attributes:
            for name in self.state_attributes:
                _flatten(name, getattr(state, name, None), shown)
        return shown


class ProgressBar:
    r"""A tqdm progress bar for an Engine, attached like pytorch-ignite's.

    Args:
        persist: keep the bar shown after it closes.
        bar_format: tqdm's ``bar_format``.
        mininterval: least time between two redraws, in seconds (default 0.1). The bar never redraws
            more often, whatever the iteration rate.
        **tqdm_kwargs: passed to tqdm (e.g. ``desc``, ``file``, ``ncols``, ``disable``).

    Attached the way pytorch-ignite's is (here writing to a buffer instead of the terminal):

    >>> import io
    >>> from nbengine.engine import Engine
    >>> trainer = Engine(lambda engine, batch: batch / 2)
    >>> terminal = io.StringIO()
    >>> pbar = ProgressBar(persist=True, file=terminal)
    >>> pbar.attach(trainer, output_transform=lambda loss: {"loss": loss})
    >>> state = trainer.run([1.0, 2.0, 3.0])
    >>> print(terminal.getvalue().split("\r")[-1].strip())
    Iteration: [3/3] 100%|##########, loss=1.5 [00:00<00:00]
    >>> pbar.log_message("validation accuracy: 0.97")
    >>> terminal.getvalue().endswith("validation accuracy: 0.97\n")
    True

    The bar covers one epoch (``closing_event_name=Events.EPOCH_COMPLETED``) or the whole run
    (``Events.COMPLETED``), counting iterations (``event_name=Events.ITERATION_COMPLETED``) or
    epochs (``Events.EPOCH_COMPLETED``).
    """

    def __init__(
        self,
        persist: bool = False,
        bar_format: str | None = DEFAULT_BAR_FORMAT,
        mininterval: float = 0.1,
        **tqdm_kwargs: Any,
    ) -> None:
        if not isinstance(persist, bool):
            raise TypeError(f"ProgressBar: argument persist should be a bool, got {persist!r}")
        if bar_format is not None and not isinstance(bar_format, str):
            raise TypeError(f"ProgressBar: argument bar_format should be a str or None, got {bar_format!r}")
        if isinstance(mininterval, bool) or not isinstance(mininterval, numbers.Real) or mininterval < 0:
            raise ValueError(f"ProgressBar: argument mininterval should be a number of seconds >= 0, got {mininterval!r}")
        for name, controlled_by in _MANAGED_TQDM_ARGUMENTS:
            if name in tqdm_kwargs:
                raise ValueError(f"ProgressBar: tqdm argument {name!r} is set by the bar itself (from {controlled_by})")
        unknown = sorted(set(tqdm_kwargs) - _tqdm_parameters())
        if unknown:
            raise TypeError(f"ProgressBar: unknown tqdm arguments {unknown}")
        desc = tqdm_kwargs.pop("desc", None)
        if desc is not None and not isinstance(desc, str):
            raise TypeError(f"ProgressBar: argument desc should be a str, got {desc!r}")

        self.persist = persist
        self.bar_format = bar_format
        self.mininterval = float(mininterval)
        self.tqdm_kwargs = tqdm_kwargs
        self._desc = desc
        self.pbar: Any = None
        self._next_draw = 0.0

    def attach(
        self,
        engine: Any,
        metric_names: str | list[str] | None = None,
        output_transform: Callable[[Any], Any] | None = None,
        event_name: CallableEventWithFilter = Events.ITERATION_COMPLETED,
        closing_event_name: CallableEventWithFilter = Events.EPOCH_COMPLETED,
        state_attributes: list[str] | None = None,
    ) -> None:
        """Show progress of ``engine`` with ``metric_names`` (a list, or ``"all"``) from ``engine.state.metrics``,
        ``output_transform(engine.state.output)`` (a dict of name to value, or one value shown as ``output``) and
        ``state_attributes`` of ``engine.state``.

        The bar advances on ``event_name`` (which may carry a filter, e.g. ``every=10``) and closes on
        ``closing_event_name`` (unfiltered, and later in a run than ``event_name``).
        """
        if not all(callable(getattr(engine, method, None)) for method in ("add_event_handler", "has_event_handler")):
            raise TypeError(f"ProgressBar.attach: argument engine should be an Engine, got {type(engine).__name__}")
        if metric_names is not None and metric_names != "all":
            if not isinstance(metric_names, (list, tuple)) or not all(isinstance(n, str) for n in metric_names):
                raise TypeError(
                    f"ProgressBar.attach: argument metric_names should be a list of str or 'all', got {metric_names!r}"
                )
            metric_names = list(metric_names)
        if output_transform is not None and not callable(output_transform):
            raise TypeError(f"ProgressBar.attach: argument output_transform should be callable, got {output_transform!r}")
        if state_attributes is not None and (
            not isinstance(state_attributes, (list, tuple)) or not all(isinstance(n, str) for n in state_attributes)
        ):
            raise TypeError(
                f"ProgressBar.attach: argument state_attributes should be a list of str, got {state_attributes!r}"
            )
        event = _event_name(event_name, "event_name")
        closing = _event_name(closing_event_name, "closing_event_name")
        if closing_event_name.filter is not None:
            raise ValueError(
                f"Closing Event should not be a filtered event: ProgressBar.attach: argument closing_event_name got "
                f"{closing_event_name!r}"
            )
        if _EVENT_ORDER.index(event) >= _EVENT_ORDER.index(closing):
            raise ValueError(
                f"Logging event {event_name!r} should be called before closing event {closing_event_name!r}: "
                "ProgressBar.attach: event_name should come before closing_event_name in a run"
            )

        attachment = _Attachment(
            self,
            metric_names,
            output_transform,
            None if state_attributes is None else list(state_attributes),
            event,
            closing,
        )
        attachment.event_filter = event_name.filter
        bar = self
        clock = time.monotonic

        # Runs on every occurrence of the event, so it is a plain function (a callable object costs more)
        # that does as little as it can: one clock read and one comparison.
        def advance(engine: Any) -> None:
            if clock() >= bar._next_draw:
                bar._draw(engine, attachment)

        engine.add_event_handler(event_name, advance)
        engine.add_event_handler(closing_event_name, self._close, attachment)
        # Not an EXCEPTION_RAISED handler: as in ignite, attaching one means taking the exception, and a
        # progress bar must not change whether a failure reaches the caller.
        add_status_hook = getattr(engine, "add_status_hook", None)
        if add_status_hook is not None:
            add_status_hook(lambda engine, status: self._on_status(engine, status, attachment))

    def log_message(self, message: str) -> None:
        """Print ``message`` above the bar without breaking it.

        Use this, not ``print()``, in handlers that run while a text bar is shown (a terminal, a log
        file): ``print`` writes after the bar's text on its line, while this clears the bar, writes the
        line and draws the bar again below it. The bar never swaps ``sys.stdout`` to do this for
        ``print`` itself, since that would change every thread's output, the kernel's included.
        In a notebook the bar is a widget, and ``print`` and this method are equally safe.
        """
        from tqdm.std import tqdm

        tqdm.write(str(message), file=self.tqdm_kwargs.get("file"))

    def _draw(self, engine: Any, attachment: _Attachment) -> None:
        total = attachment.total(engine)
        position = attachment.position(engine, total)
        description = attachment.description(engine)
        postfix = _format_postfix(attachment.postfix(engine))
        pbar = self.pbar
        if pbar is None:
            self.pbar = _tqdm_class()(
                total=total,
                initial=position,
                # set_description() appends the separator itself; the constructor does not.
                desc=f"{description}: ",
                # A str postfix is shown as it is, so the bar is complete from its first display.
                postfix=postfix,
                leave=self.persist,
                bar_format=self.bar_format,
                # This class decides when to redraw; tqdm redraws whenever it is told to.
                mininterval=0,
                miniters=1,
                **self.tqdm_kwargs,
            )
        else:
            pbar.set_description(description, refresh=False)
            pbar.postfix = postfix
            advance = position - pbar.n
            if advance > 0:
                pbar.update(advance)
            else:
                if advance < 0:
                    # A bar that spans the run but counts iterations within the epoch starts over each epoch.
                    pbar.reset(total=total)
                    pbar.update(position)
                pbar.refresh()
        self._next_draw = time.monotonic() + self.mininterval

    def _on_status(self, engine: Any, status: str, attachment: _Attachment) -> None:
        if self.pbar is None:
            return
        if status == "paused":
            # Between two redraws the bar lags the run by up to mininterval; a paused run should show
            # exactly where it stands, since that is what the user looks at next.
            self._draw(engine, attachment)
        elif status == "failed":
            self._fail(engine, attachment)

    def _fail(self, engine: Any, attachment: _Attachment) -> None:
        # The exception goes on to the caller; the bar closes where the run stopped, short of its total, so the
        # notebook widget turns red and a terminal's next line (the traceback) starts below the bar.
        pbar = self.pbar
        if pbar is None:
            return
        pbar.n = attachment.position(engine, attachment.total(engine))
        pbar.close()
        self.pbar = None
        self._next_draw = 0.0

    def _close(self, engine: Any, attachment: _Attachment) -> None:
        total = attachment.total(engine)
        final = total if total is not None else attachment.position(engine, total)
        pbar = self.pbar
        if pbar is None:
            self._draw(engine, attachment)
            pbar = self.pbar
        pbar.set_description(attachment.description(engine), refresh=False)
        pbar.postfix = _format_postfix(attachment.postfix(engine))
        if not self.persist:
            # A bar that is not kept shows ignite's last line before it is erased: the latest values at the
            # position of the event before the last one (ignite draws before it advances).
            pbar.n = attachment.previous_position(engine, total)
            pbar.refresh()
        # Closing draws the bar one last time. tqdm's notebook widget turns red when closed short of its total
        # (tqdm#1115), but a closed epoch is finished even when it was ended early on purpose.
        pbar.n = final
        pbar.close()
        self.pbar = None
        self._next_draw = 0.0
