"""The notebooks in ``notebooks/``: stored clean, and executed end to end in a real Jupyter kernel.

Each notebook runs in its own kernel through nbclient, in a temporary folder (checkpoints land there),
with the widget state stored as a browser would save it. A cell that raises fails the test, and so
does any ``error`` output left in the executed notebook. Cells tagged in the notebook (cell metadata
``tags``) are then checked for exactly what they print. The executed notebooks are kept under
``test-artifacts/notebooks/`` to be looked at.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("ipywidgets")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
ARTIFACTS = ROOT / "test-artifacts" / "notebooks"
NOTEBOOKS = ("01_quickstart.ipynb", "02_step_through.ipynb", "03_replay_epoch.ipynb", "04_two_processes.ipynb")


def read_notebook(name: str):
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def execute(name: str, workdir: Path):
    notebook = read_notebook(name)
    client = nbclient.NotebookClient(
        notebook,
        timeout=120,
        startup_timeout=60,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(workdir)}},
    )
    try:
        client.execute()
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, ARTIFACTS / name)
    return notebook


def tagged(notebook, tag: str):
    cells = [cell for cell in notebook.cells if tag in cell.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


def stdout_of(cell) -> str:
    return "".join(output.text for output in cell.outputs if output.output_type == "stream" and output.name == "stdout")


def errors_in(notebook) -> list[str]:
    return [
        f"cell {index}: {output.ename}: {output.evalue}"
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]


def widget_models(notebook) -> list[dict]:
    state = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    return list(state.values())


# ---------------------------------------------------------------------------------------------- stored form


def test_the_three_notebooks_are_there():
    assert sorted(path.name for path in NOTEBOOK_DIR.glob("*.ipynb")) == list(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_without_outputs(name):
    notebook = read_notebook(name)
    nbformat.validate(notebook)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells
    assert [(cell.outputs, cell.execution_count) for cell in code_cells] == [([], None)] * len(code_cells)
    assert "widgets" not in notebook.metadata
    assert notebook.metadata["kernelspec"]["name"] == "python3"


def test_binder_installs_cpu_torch_then_nbengine_with_the_notebook_extra():
    import ast
    import os
    import tomllib

    import torch

    requirements = [
        line.strip() for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # The torch the tests run with, as PyTorch's CPU index names it.
    assert requirements == [
        "--extra-index-url https://download.pytorch.org/whl/cpu",
        f"torch=={torch.__version__.split('+')[0]}+cpu",
    ]
    post_build = ROOT / "binder" / "postBuild"
    assert os.access(post_build, os.X_OK)
    lines = post_build.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert [line for line in lines if "pip install" in line] == ['python -m pip install --no-cache-dir -e ".[notebook]"']

    # Everything the notebooks import comes from torch, nbengine, the standard library or the notebook extra.
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["notebook"]
    distributions = {requirement.split(">")[0].split("=")[0].strip() for requirement in extra}
    provided_by = {"sklearn": "scikit-learn", "matplotlib": "matplotlib", "IPython": "ipykernel", "ipywidgets": "ipywidgets"}
    imported = set()
    for name in NOTEBOOKS:
        for cell in read_notebook(name).cells:
            if cell.cell_type == "code":
                for node in ast.walk(ast.parse(cell.source)):
                    if isinstance(node, ast.Import):
                        imported.update(alias.name.split(".")[0] for alias in node.names)
                    elif isinstance(node, ast.ImportFrom):
                        imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"torch", "nbengine"}
    assert third_party <= set(provided_by), third_party
    assert {provided_by[module] for module in third_party} <= distributions


# ---------------------------------------------------------------------------------------------- executed


@pytest.mark.slow
def test_02_step_through(tmp_path):
    notebook = execute("02_step_through.ipynb", tmp_path)
    assert errors_in(notebook) == []

    assert stdout_of(tagged(notebook, "step-started")) == (
        "STARTED                   epoch 0  iteration 0  handlers: -\n"
        "paused Events.STARTED\n"
    )
    assert stdout_of(tagged(notebook, "step-epoch-started")) == (
        "EPOCH_STARTED             epoch 1  iteration 0  handlers: first_or_last_epoch\n"
    )
    assert stdout_of(tagged(notebook, "step-iteration")) == (
        "GET_BATCH_STARTED         epoch 1  iteration 0  handlers: -\n"
        "GET_BATCH_COMPLETED       epoch 1  iteration 0  handlers: -\n"
        "ITERATION_STARTED         epoch 1  iteration 1  handlers: -\n"
        "ITERATION_COMPLETED       epoch 1  iteration 1  handlers: -\n"
        "batch [1, 2] output 3\n"
    )
    assert stdout_of(tagged(notebook, "step-every-2")).splitlines()[-1] == (
        "ITERATION_COMPLETED       epoch 1  iteration 2  handlers: every_second_iteration"
    )
    assert stdout_of(tagged(notebook, "step-epoch-completed")) == (
        "log_epoch: epoch 1 done, last output 11\n"
        "GET_BATCH_STARTED         epoch 1  iteration 2  handlers: -\n"
        "GET_BATCH_COMPLETED       epoch 1  iteration 2  handlers: -\n"
        "ITERATION_STARTED         epoch 1  iteration 3  handlers: -\n"
        "BIG_BATCH                 epoch 1  iteration 3  handlers: -\n"
        "ITERATION_COMPLETED       epoch 1  iteration 3  handlers: -\n"
        "EPOCH_COMPLETED           epoch 1  iteration 3  handlers: log_epoch\n"
    )
    custom = stdout_of(tagged(notebook, "step-custom")).splitlines()
    assert custom[0] == "report_big_batch: batch [5, 6] at iteration 6"
    assert custom[-4:] == [
        "ITERATION_STARTED         epoch 2  iteration 6  handlers: -",
        "BIG_BATCH                 epoch 2  iteration 6  handlers: report_big_batch",
        "ITERATION_COMPLETED       epoch 2  iteration 6  handlers: every_second_iteration",
        "Events.ITERATION_COMPLETED",
    ]
    assert "ITERATION_STARTED         epoch 2  iteration 5  handlers: only_at_iteration_5" in custom
    assert stdout_of(tagged(notebook, "terminate-epoch")).splitlines()[-3:] == [
        "TERMINATE_SINGLE_EPOCH    epoch 3  iteration 7  handlers: -",
        "EPOCH_COMPLETED           epoch 3  iteration 7  handlers: log_epoch",
        "EPOCH_STARTED             epoch 4  iteration 7  handlers: first_or_last_epoch",
    ]
    assert stdout_of(tagged(notebook, "terminate-run")).splitlines()[-5:] == [
        "BIG_BATCH                 epoch 4  iteration 10  handlers: report_big_batch, stop_in_last_epoch",
        "ITERATION_COMPLETED       epoch 4  iteration 10  handlers: every_second_iteration",
        "TERMINATE                 epoch 4  iteration 10  handlers: -",
        "COMPLETED                 epoch 4  iteration 10  handlers: -",
        "done epoch 4 iteration 10",
    ]
    # The panel followed the cells: its saved state shows the run done, and the timeline's last events.
    models = widget_models(notebook)
    badges = [m["state"]["value"] for m in models if "nbengine-status-badge" in m["state"].get("_dom_classes", [])]
    assert len(badges) == 1
    assert "nbengine-status-done" in badges[0] and "epoch 4, iteration 10 (COMPLETED)" in badges[0]


@pytest.mark.slow
def test_01_quickstart(tmp_path):
    notebook = execute("01_quickstart.ipynb", tmp_path)
    assert errors_in(notebook) == []

    assert stdout_of(tagged(notebook, "data")) == "1437 training and 360 validation images, 45 batches per epoch\n"
    # Where the pause lands depends on timing; that it lands in epoch 3 or later, on a boundary, does not.
    paused = re.fullmatch(r"paused at epoch (\d+), iteration (\d+)\n", stdout_of(tagged(notebook, "pause")))
    assert paused, stdout_of(tagged(notebook, "pause"))
    epoch, iteration = int(paused[1]), int(paused[2])
    assert epoch >= 3 and (epoch - 1) * 45 <= iteration <= epoch * 45

    inspected = stdout_of(tagged(notebook, "inspect")).splitlines()
    assert re.fullmatch(r"validation accuracy 0\.\d{3}, loss \d+\.\d{3}", inspected[0])
    assert float(inspected[0].split()[2].rstrip(",")) > 0.8  # two epochs of this CNN reach about 0.95

    saved = stdout_of(tagged(notebook, "save")).splitlines()
    assert saved[0] == f"saved checkpoint_{iteration}.pt"
    listed = [line.split()[0] for line in saved[1:]]
    assert f"checkpoint_{iteration}.pt" in listed and len(listed) == 3
    # n_saved=3 keeps the three latest: after two more epochs, those of the last three epochs.
    kept = sorted(path.name for path in (tmp_path / "checkpoints" / "quickstart").iterdir())
    assert kept == sorted(f"checkpoint_{45 * e}.pt" for e in (epoch, epoch + 1, epoch + 2))

    done = stdout_of(tagged(notebook, "done")).splitlines()
    assert done[0] == f"done at epoch {epoch + 2}, iteration {(epoch + 2) * 45}"
    assert float(done[1].split()[-1]) > 0.9

    # The saved widget state shows the panel as it ended: status done, at the last iteration, a loss plot.
    models = widget_models(notebook)
    badges = [m["state"]["value"] for m in models if "nbengine-status-badge" in m["state"].get("_dom_classes", [])]
    assert len(badges) == 1
    assert "nbengine-status-done" in badges[0]
    assert f"epoch {epoch + 2}, iteration {(epoch + 2) * 45} (COMPLETED)" in badges[0]
    plots = [m["state"] for m in models if "nbengine-loss-plot" in m["state"].get("_dom_classes", [])]
    assert len(plots) == 1 and plots[0]["format"] == "png"


@pytest.mark.slow
def test_03_replay_epoch(tmp_path):
    notebook = execute("03_replay_epoch.ipynb", tmp_path)
    assert errors_in(notebook) == []

    assert stdout_of(tagged(notebook, "interrupted")) == (
        "paused at epoch 4, iteration 145\n"
        "checkpoint_135.pt      epoch 3  iteration 135\n"
        "checkpoint_90.pt       epoch 2  iteration 90\n"
        "checkpoint_45.pt       epoch 1  iteration 45\n"
    )
    assert stdout_of(tagged(notebook, "resume")) == (
        "loaded checkpoint_135.pt: epoch 3, iteration 135\nepochs with a snapshot to replay: [1, 2, 3]\n"
    )
    finished = stdout_of(tagged(notebook, "finished")).splitlines()
    assert finished[0] == "done at epoch 6, iteration 270"

    reproduced = "45 iterations, 45 compared; batches identical; outputs identical (max |diff| 0.0); reproduced"
    replay_2 = stdout_of(tagged(notebook, "replay-2")).splitlines()
    assert replay_2[0] == f"epoch 2 replayed: {reproduced}"
    assert [line.split()[0] for line in replay_2[2:]] == ["46", "47", "48", "49", "50"]
    assert all(line.split()[1] == line.split()[2] and line.endswith("same") for line in replay_2[2:])
    # Replay epoch 5 was clicked in the panel: its report is in the panel's saved state.
    replay_views = [m["state"]["value"] for m in widget_models(notebook) if "nbengine-replay-report" in m["state"].get("_dom_classes", [])]
    # One view per session's panel; only session 2's panel replayed anything.
    assert sorted(view == "" for view in replay_views) == [False, True]
    (shown,) = [view for view in replay_views if view]
    assert f"epoch 5 replayed: {reproduced}" in shown

    replay_lr = stdout_of(tagged(notebook, "replay-lr")).splitlines()
    assert re.fullmatch(
        r"epoch 2 replayed: 45 iterations, 45 compared; batches identical; outputs differ \(max \|diff\| 0\.\d+\); "
        r"first divergence at iteration 47",
        replay_lr[0],
    )
    assert replay_lr[2].endswith("same") and replay_lr[3].endswith("DIFFERENT")
    # The two replays also drew their plots.
    for tag in ("replay-2", "replay-lr"):
        images = [o for o in tagged(notebook, tag).outputs if "image/png" in o.get("data", {})]
        assert len(images) == 1

    replay_rng = stdout_of(tagged(notebook, "replay-rng")).splitlines()
    # Epoch 7 is iterations 271-315; the handler first draws as iteration 280 starts, after its fetch.
    assert re.fullmatch(
        r"epoch 7 replayed: 45 iterations, 45 compared; batches identical; outputs differ \(max \|diff\| 0\.\d+\); "
        r"first divergence at iteration 280",
        replay_rng[0],
    )
    assert replay_rng[1] == "handlers skipped by the replay: ('peek_at_a_random_image on ITERATION_STARTED',)"
    assert stdout_of(tagged(notebook, "replay-fixed")) == f"epoch 8 replayed: {reproduced}\n"

    checkpoints = sorted(path.name for path in (tmp_path / "checkpoints" / "replay").iterdir())
    assert checkpoints == sorted(f"checkpoint_{45 * epoch}.pt" for epoch in range(1, 9))


@pytest.mark.slow
def test_04_two_processes(tmp_path):
    """Two gloo ranks launched from the notebook: paused together, stepped by one, saved, an epoch
    replayed on both, resumed; then the same two cells run under torchrun, uninterrupted, end with the
    same weights."""
    import os
    import socket
    import subprocess

    import torch

    notebook = execute("04_two_processes.ipynb", tmp_path)
    assert errors_in(notebook) == []
    assert stdout_of(tagged(notebook, "pause")) == "both ranks paused at the same iteration: True\n"
    assert stdout_of(tagged(notebook, "step")) == "iterations advanced on each rank: [1, 1]\n"
    assert stdout_of(tagged(notebook, "save")) == "checkpoints written: 1\n"
    assert stdout_of(tagged(notebook, "resume")) == "job: completed\nfinal weights identical on both ranks: True\n"
    # The epoch replayed is the one the run was paused in: where the pause lands depends on timing.
    reproduced = r"epoch (\d+) replayed: 29 iterations, 29 compared; batches identical; outputs identical \(max \|diff\| 0\.0\); reproduced"
    replayed = re.fullmatch(f"rank 0: {reproduced}\nrank 1: {reproduced}\n", stdout_of(tagged(notebook, "replay")))
    assert replayed is not None and replayed.group(1) == replayed.group(2), stdout_of(tagged(notebook, "replay"))
    shown = [value for value in (m["state"].get("value") for m in widget_models(notebook))
             if isinstance(value, str) and "nbengine-ranks" in value]
    assert len(shown) == 1 and shown[0].count("nbengine-status-done") == 2

    script = tmp_path / "digits_two_processes.py"
    script.write_text("\n\n".join(tagged(notebook, tag).source for tag in ("setup", "train")) + (
        "\n\nif __name__ == '__main__':\n"
        "    with idist.Parallel(backend='gloo') as parallel:\n"
        "        parallel.run(train, MAX_EPOCHS, 'two_processes_torchrun')\n"
    ))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    torchrun = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}", str(script)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600, capture_output=True, text=True,
    )
    assert torchrun.returncode == 0, torchrun.stderr[-4000:]
    from_notebook = torch.load(tmp_path / "two_processes" / "final_weights.pt", weights_only=True)
    from_torchrun = torch.load(tmp_path / "two_processes_torchrun" / "final_weights.pt", weights_only=True)
    assert from_notebook.keys() == from_torchrun.keys()
    assert all(torch.equal(from_notebook[name], from_torchrun[name]) for name in from_notebook)
