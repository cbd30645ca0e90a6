"""Fixtures for the widget tests: panels that are closed, and runs that are stopped, after each test."""

from __future__ import annotations

import pytest

from nbengine.widgets import TrainingPanel


@pytest.fixture
def make_panel():
    panels: list[TrainingPanel] = []

    def make(trainer, **kwargs) -> TrainingPanel:
        panel = TrainingPanel(trainer, **kwargs)
        panels.append(panel)
        return panel

    yield make
    for panel in panels:
        trainer = panel.trainer
        if trainer.status in ("running", "paused"):
            trainer.stop()
        try:
            trainer.wait(timeout=30)
        except Exception:  # noqa: BLE001 - a test that expects a failed run has already checked it
            pass
        panel.close()
