"""Notebook panels for nbengine: the only part of nbengine that imports ipywidgets, IPython or matplotlib.

``TrainingPanel(trainer, data=..., evaluator=..., checkpoint=...)`` shows run controls (Run, Pause,
Step, Step event, Step epoch, Resume, Stop), the live State, the event timeline, the loss plot, and
the checkpoint and replay controls of one trainer; ``.start()`` begins training in the background
and returns the panel, so one line both starts and shows it. Standard ipywidgets 8 only: it works in
JupyterLab 4, Notebook 7 and VS Code, and a saved notebook's widget state renders in static views.

``TrainingPanel`` is imported on first use, so the headless parts (``panel_controller``,
``checkpoint_shelf``, ``controls``, ``loss_source``, ``refresh``) import without ipywidgets.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainingPanel"]


def __getattr__(name: str) -> Any:
    if name == "TrainingPanel":
        from nbengine.widgets.panel import TrainingPanel

        return TrainingPanel
    raise AttributeError(f"module 'nbengine.widgets' has no attribute {name!r}")
