"""Which run controls make sense in which engine status, and why the others do not.

This module owns the rule table behind the panel's buttons, as a pure function so it is tested on
its own: ``control_reasons(status, ...)`` returns, for each control, None when it is enabled or
the sentence shown (as the button's tooltip) saying why it is disabled.
"""

from __future__ import annotations

__all__ = ["RUN_CONTROLS", "CONTROL_LABELS", "CONTROL_HELP", "control_reasons"]

#: The run controls, in the order the panel shows them.
RUN_CONTROLS = ("run", "pause", "step", "step_event", "step_epoch", "resume", "stop")

#: Button label of each control.
CONTROL_LABELS = {
    "run": "Run",
    "pause": "Pause",
    "step": "Step",
    "step_event": "Step event",
    "step_epoch": "Step epoch",
    "resume": "Resume",
    "stop": "Stop",
}

#: What each control does, shown as the tooltip when it is enabled.
CONTROL_HELP = {
    "run": "Start the run in the background (a finished run starts again; a loaded state continues)",
    "pause": "Pause at the next event boundary",
    "step": "Advance by one iteration, then pause",
    "step_event": "Advance to the next event of any kind, then pause",
    "step_epoch": "Advance to the end of the epoch (EPOCH_COMPLETED), then pause",
    "resume": "Continue the paused run in the background",
    "stop": "End the run (TERMINATE, then COMPLETED handlers run)",
}

_KNOWN_STATUSES = ("idle", "running", "paused", "done", "failed")


def control_reasons(status: str, *, can_start: bool, cannot_start_reason: str = "") -> dict[str, str | None]:
    """For each of ``RUN_CONTROLS``: None if it is enabled in ``status``, else why it is not.

    ``can_start`` says whether the panel knows what to run (data, or an epoch length for data-less
    runs); ``cannot_start_reason`` says what is missing when it does not.
    """
    if status not in _KNOWN_STATUSES:
        raise ValueError(f"status should be one of {_KNOWN_STATUSES}, got {status!r}")
    running = status == "running"
    paused = status == "paused"
    missing = cannot_start_reason or "the panel does not know what to run: give it data="

    def start_reason() -> str | None:
        if running:
            return "the engine is running: Pause or Stop it first"
        if paused:
            return "the run is paused: Resume, Step or Stop it"
        return None if can_start else missing

    def step_reason() -> str | None:
        if running:
            return "the engine is running: Pause it first"
        if paused:
            return None
        return None if can_start else missing

    return {
        "run": start_reason(),
        "pause": None if running else f"nothing to pause: the engine is {status}",
        "step": step_reason(),
        "step_event": step_reason(),
        "step_epoch": step_reason(),
        "resume": None if paused else f"nothing to resume: the engine is {status}",
        "stop": None if running or paused else f"nothing to stop: the engine is {status}",
    }
