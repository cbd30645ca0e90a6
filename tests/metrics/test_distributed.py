"""Metrics on two real gloo processes: sync_all_reduce and EpochMetric's gather make each rank's result that of
one process fed both halves; state_dict holds every rank's state, and each rank loads its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.metrics._two_rank_worker import data, make_metrics

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("two_ranks")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "tests.metrics._two_rank_worker", str(out)], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        log, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, log
    return [torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]


def one_process_values() -> dict:
    metrics = make_metrics()
    for batch in data(0) + data(1):
        for metric in metrics.values():
            metric.update(metric._output_transform(batch))
    return {name: metric.compute() for name, metric in metrics.items() if name != "smoothed"}


def close(ours, theirs) -> bool:
    if isinstance(theirs, torch.Tensor):
        return torch.allclose(torch.as_tensor(ours).double(), theirs.double(), rtol=1e-12, atol=1e-12)
    return ours == pytest.approx(theirs, rel=1e-12, abs=1e-12)


def test_every_rank_computes_the_value_over_both_ranks_data(ranks):
    expected = one_process_values()
    for result in ranks:
        assert result["world_size"] == 2
        for name, value in expected.items():
            assert close(result["values"][name], value), (result["rank"], name, result["values"][name], value)


def test_running_average_averages_the_new_value_over_ranks(ranks):
    smoothed = None
    for batch_0, batch_1 in zip(data(0), data(1)):
        new = (float(batch_0[0].sum()) + float(batch_1[0].sum())) / 2
        smoothed = new if smoothed is None else smoothed * 0.5 + new * 0.5
    for result in ranks:
        assert result["values"]["smoothed"] == pytest.approx(smoothed, rel=1e-6)


def test_state_dict_holds_every_ranks_state_in_rank_order(ranks):
    for result in ranks:
        per_rank = result["states"]["accuracy"]["__metric_state_per_rank"]
        assert [state["_num_examples"] for state in per_rank] == [24, 24]
    first, second = (result["states"]["confusion"]["__metric_state_per_rank"] for result in ranks)
    for ours, theirs in zip(first, second):
        assert torch.equal(ours["confusion_matrix"], theirs["confusion_matrix"])
    for rank, result in enumerate(ranks):
        single = make_metrics()["confusion"]
        for batch in data(rank):
            single.update(batch)
        assert torch.equal(first[rank]["confusion_matrix"], single.confusion_matrix)
        assert torch.equal(result["values"]["restored_local_confusion"], single.confusion_matrix)
