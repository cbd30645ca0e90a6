"""A run paused at any boundary (after any built-in event fired and all its handlers finished), saved
with ``Checkpoint`` and resumed in a fresh process ends as the uninterrupted run: bit-identical
weights, and the same handler calls, random draws, batches and outputs, in the same order. The only
difference allowed is ignite's rule that a run started from a loaded state fires STARTED again.

The set-ups and scenarios are in ``_boundary_child.py``: a DeterministicEngine trainer on the
scikit-learn digits with noise added at fetch time, Dropout, and handlers that draw from torch,
``random`` and numpy at every event; the same with epochs longer than the loader; and a plain Engine
without data whose process function draws its inputs. One child process makes the uninterrupted
runs and every scenario's first half; each scenario's resumed half is a process of its own, forked
from a process that imported the modules and did nothing else (two at a time), or, with the
environment variable NBENGINE_TEST_FRESH_INTERPRETERS set, a new interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.engine._boundary_child import SCENARIOS

CHILD = Path(__file__).with_name("_boundary_child.py")
REPO = CHILD.parents[2]
SAMPLES = 96  # 6 batches of 16

pytestmark = [pytest.mark.timeout(600)]

# Where each scenario pauses: (last event, epoch, iteration).
PAUSED_AT = {
    "STARTED": ("STARTED", 0, 0),
    "EPOCH_STARTED": ("EPOCH_STARTED", 2, 6),
    "GET_BATCH_STARTED": ("GET_BATCH_STARTED", 2, 8),  # before iteration 9's fetch
    "GET_BATCH_COMPLETED": ("GET_BATCH_COMPLETED", 2, 8),
    "ITERATION_STARTED": ("ITERATION_STARTED", 2, 9),
    "ITERATION_COMPLETED-mid-epoch": ("ITERATION_COMPLETED", 2, 9),
    "ITERATION_COMPLETED-last-of-epoch": ("ITERATION_COMPLETED", 2, 12),
    "EPOCH_COMPLETED": ("EPOCH_COMPLETED", 2, 12),
    "DATALOADER_STOP_ITERATION-mid-epoch": ("DATALOADER_STOP_ITERATION", 2, 12),
    "no-data-ITERATION_STARTED": ("ITERATION_STARTED", 2, 7),
    "no-data-ITERATION_COMPLETED-last-of-epoch": ("ITERATION_COMPLETED", 2, 10),
}


def _child(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHILD), *args], capture_output=True, text=True, timeout=300, cwd=REPO
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The folder with the uninterrupted runs and every scenario's halves, and each scenario's resume
    exit status with its error output."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("boundaries")
    digits = load_digits()
    data = folder / "digits.npz"
    np.savez(data, x=(digits.data[:SAMPLES] / 16).astype(np.float32), y=digits.target[:SAMPLES].astype(np.int64))
    if os.environ.get("NBENGINE_TEST_FRESH_INTERPRETERS"):
        # One new interpreter per resumed half (about 7 s each of imports on the 2-core machine).
        first = _child(str(data), str(folder), "first", *SCENARIOS)
        assert first.returncode == 0, first.stderr[-3000:]
        with ThreadPoolExecutor(max_workers=2) as pool:
            done = pool.map(lambda name: _child(str(data), str(folder), "resume", name), SCENARIOS)
            return folder, {name: (process.returncode, process.stderr) for name, process in zip(SCENARIOS, done)}
    # The resumed halves are forked from a process started beside the first one, which imports while
    # the first halves run and is told to go on once they are written.
    forker = subprocess.Popen(
        [sys.executable, str(CHILD), str(data), str(folder), "resume-forked", *SCENARIOS],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        first = _child(str(data), str(folder), "first", *SCENARIOS)
        assert first.returncode == 0, first.stderr[-3000:]
        _, forker_errors = forker.communicate("go\n", timeout=300)
    finally:
        forker.kill()
        forker.wait()
    assert forker.returncode == 0, forker_errors[-3000:]
    codes = _load(folder / "resume_exit_codes.json")
    errors = {name: folder / name / "resume_error.txt" for name in SCENARIOS}
    return folder, {name: (codes[name], errors[name].read_text() if errors[name].exists() else "") for name in SCENARIOS}


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_every_scenario_is_listed():
    assert set(PAUSED_AT) == set(SCENARIOS)


def test_the_uninterrupted_runs_go_through_every_boundary(runs):
    folder, _ = runs
    digits = _load(folder / "reference-digits.json")["calls"]
    long_epochs = _load(folder / "reference-digits_long_epochs.json")["calls"]
    no_data = _load(folder / "reference-no_data.json")["calls"]
    assert [call[2] for call in digits if call[0] == "ITERATION_COMPLETED"] == list(range(1, 19))
    # The loader runs out as the next epoch fetches its first batch (as in ignite) ...
    assert [call[2] for call in digits if call[0] == "DATALOADER_STOP_ITERATION"] == [6, 12]
    # ... and inside the epochs when they are longer than it.
    assert [call[2] for call in long_epochs if call[0] == "DATALOADER_STOP_ITERATION"] == [6, 12, 18]
    assert [call[2] for call in long_epochs if call[0] == "ITERATION_COMPLETED"] == list(range(1, 25))
    assert [call[0] for call in no_data[:4]] == ["STARTED", "EPOCH_STARTED", "ITERATION_STARTED", "ITERATION_COMPLETED"]
    assert not any(call[0].startswith(("GET_BATCH", "DATALOADER")) for call in no_data)
    # The augmentation really draws: no batch is fetched twice alike over the epochs, though each
    # epoch is a pass over the same 96 samples.
    fingerprints = [call[3][3] for call in digits if call[0] == "ITERATION_COMPLETED"]
    assert len(set(fingerprints)) == 18


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_paused_saved_and_resumed_in_a_fresh_process_ends_as_the_uninterrupted_run(runs, scenario):
    folder, resumed_processes = runs
    setup, _, _ = SCENARIOS[scenario]
    returncode, errors = resumed_processes[scenario]
    assert returncode == 0, errors[-3000:]
    first = _load(folder / scenario / "first.json")
    resumed = _load(folder / scenario / "resumed.json")
    reference = _load(folder / f"reference-{setup}.json")["calls"]

    assert first["status"] == "paused"
    assert (first["last_event"], first["epoch"], first["iteration"]) == PAUSED_AT[scenario]
    assert first["calls"][-1][0] == PAUSED_AT[scenario][0]
    assert resumed["status"] == "done"

    # The resumed run fires STARTED again first; everything after it continues the first half.
    assert [call[0] for call in resumed["calls"]].count("STARTED") == 1
    assert resumed["calls"][0][0] == "STARTED"
    assert first["calls"] + resumed["calls"][1:] == reference

    weights = torch.load(folder / scenario / "resumed_weights.pt", weights_only=True)
    expected = torch.load(folder / f"reference-{setup}.pt", weights_only=True)
    assert weights.keys() == expected.keys()
    different = [key for key in weights if not torch.equal(weights[key], expected[key])]
    assert different == []
