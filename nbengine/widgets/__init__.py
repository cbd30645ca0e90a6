"""Notebook panels for nbengine: the only part of nbengine that imports ipywidgets, IPython or matplotlib.

``TrainingPanel(trainer, data=..., evaluator=..., checkpoint=...)`` shows run controls (Run, Pause,
Step, Step event, Step epoch, Resume, Stop), the live State, the event timeline, the loss plot, and
the checkpoint and replay controls of one trainer; ``.start()`` begins training in the background
and returns the panel, so one line both starts and shows it. Standard ipywidgets 8 only: it works in
JupyterLab 4, Notebook 7 and VS Code, and a saved notebook's widget state renders in static views.
"""

from nbengine.widgets.panel import TrainingPanel

__all__ = ["TrainingPanel"]
