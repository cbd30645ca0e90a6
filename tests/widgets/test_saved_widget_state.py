"""A notebook with a TrainingPanel, executed headless with nbclient: the saved widget state holds
every model the panel is built of, with the final State and both plots, so static views (nbviewer,
nbconvert HTML, GitHub) can draw the panel as it was."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent / "notebooks" / "short_run.ipynb"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _references(value):
    if isinstance(value, str) and value.startswith("IPY_MODEL_"):
        yield value[len("IPY_MODEL_") :]
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _references(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _references(item)


def test_the_saved_widget_state_holds_the_whole_panel(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, timeout=120, startup_timeout=60, kernel_name="python3", store_widget_state=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )  # fmt: skip
    client.execute()
    outputs = [output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    assert nb.cells[2].outputs[0]["text"] == "done 60\n"

    state = nb.metadata["widgets"][WIDGET_STATE]["state"]
    (view,) = [o for o in nb.cells[1].outputs if WIDGET_VIEW in o.get("data", {})]
    root = view["data"][WIDGET_VIEW]["model_id"]
    assert state[root]["model_name"] == "VBoxModel"

    # Every model reachable from the panel is saved, so a static view can draw all of it.
    seen, stack = set(), [root]
    while stack:
        model_id = stack.pop()
        if model_id in seen:
            continue
        seen.add(model_id)
        assert model_id in state, f"model {model_id} used by the panel is missing from the saved state"
        stack.extend(_references(state[model_id]["state"]))
    models = [state[model_id] for model_id in seen]
    names = sorted(m["model_name"] for m in models)
    assert names.count("ButtonModel") == 10 and names.count("ImageModel") == 2

    html_values = [m["state"].get("value", "") for m in models if m["model_name"] == "HTMLModel"]
    (state_view,) = [v for v in html_values if "class='nbengine-state'" in v]
    assert re.search(r"class='nbengine-epoch'>3 / 3<", state_view)
    assert re.search(r"class='nbengine-iteration'>60<", state_view)
    assert "nbengine-status-done" in state_view
    (badge,) = [v for v in html_values if v.startswith("<span class='nbengine-status ")]
    assert "nbengine-status-done" in badge

    images = [m for m in models if m["model_name"] == "ImageModel"]
    for image in images:
        (buffer,) = [b for b in image["buffers"] if b["path"] == ["value"]]
        assert base64.b64decode(buffer["data"]).startswith(b"\x89PNG\r\n\x1a\n")
