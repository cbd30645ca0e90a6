"""DataLoader workers with random augmentation: a run stopped in the middle of an epoch, saved, and
resumed in a fresh process ends with the weights of the uninterrupted run, bit for bit, whatever the
number of workers before and after. Every run is a real process (``_workers_child.py``) with a
timeout. (torchvision is not installed here, so no torchvision transform is tried.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nbengine.engine.deterministic import ReproducibleBatchSampler, _seeded_loader

CHILD = Path(__file__).with_name("_workers_child.py")
REPO = CHILD.parents[2]
SAVE_AT = 20  # epoch 2 of 3, 5 iterations into it (15 per epoch)

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


def _run(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, str(CHILD), *map(str, args)], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def _same(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The uninterrupted runs, by loader kind and number of workers."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    runs = {}
    for loader, workers in (("deterministic", 0), ("deterministic", 2), ("deterministic", 1), ("stateful", 2)):
        out = folder / f"{loader}-{workers}.pt"
        _run(loader, workers, out)
        runs[loader, workers] = _weights(out)
    return runs


@pytest.mark.parametrize("saved_with, resumed_with", [(0, 0), (2, 2), (2, 1)])
def test_deterministic_trainer_resumes_mid_epoch_in_a_fresh_process_bit_exactly(
    tmp_path, uninterrupted, saved_with, resumed_with
):
    checkpoint, out = tmp_path / "mid_epoch.pt", tmp_path / "resumed.pt"
    _run("deterministic", saved_with, tmp_path / "unused.pt", "--save-at", SAVE_AT, checkpoint)
    _run("deterministic", resumed_with, out, "--resume", checkpoint)
    assert _same(_weights(out), uninterrupted["deterministic", saved_with])


@pytest.mark.parametrize("saved_with, resumed_with", [(2, 2)])
def test_plain_trainer_on_a_stateful_dataloader_resumes_mid_epoch_in_a_fresh_process_bit_exactly(
    tmp_path, uninterrupted, saved_with, resumed_with
):
    # The engine's state_dict carries the StatefulDataLoader's; SeededSamples seeds each sample in
    # the workers from the loader's base seed, which that state restores. (torchdata refuses a state
    # saved with another number of workers, so 2 saved then 1 resumed is not tried here.)
    checkpoint, out = tmp_path / "mid_epoch.pt", tmp_path / "resumed.pt"
    _run("stateful", saved_with, tmp_path / "unused.pt", "--save-at", SAVE_AT, checkpoint)
    assert "dataloader" in torch.load(checkpoint, weights_only=True)["trainer"]
    _run("stateful", resumed_with, out, "--resume", checkpoint)
    assert _same(_weights(out), uninterrupted["stateful", saved_with])


def test_the_workers_do_not_change_what_is_trained(uninterrupted):
    # The training's own draws (Dropout) are in the main process; the samples' draws are seeded per
    # batch of the pass, whichever process builds it: one worker or two give the same run.
    assert _same(uninterrupted["deterministic", 2], uninterrupted["deterministic", 1])


def test_augmentation_is_a_function_of_the_pass_and_batch_not_of_the_worker():
    from tests.engine._workers_child import NoisyPoints

    def epoch(workers: int, granularity: str, start: int = 0) -> list:
        from torch.utils.data import DataLoader

        sampler = ReproducibleBatchSampler(DataLoader(NoisyPoints(), batch_size=8, shuffle=True).batch_sampler, seed=4)
        sampler.set_epoch(1)
        sampler.start_iteration = start
        loader = _seeded_loader(DataLoader(NoisyPoints(), batch_size=8, shuffle=True, num_workers=workers), sampler, granularity)
        return [x for x, _ in loader]

    for granularity in ("batch", "sample"):
        alone = epoch(0, granularity)
        with_workers = epoch(2, granularity)
        resumed = epoch(1, granularity, start=6)
        assert all(torch.equal(a, b) for a, b in zip(alone, with_workers)) and len(alone) == len(with_workers) == 15
        assert all(torch.equal(a, b) for a, b in zip(alone[6:], resumed)) and len(resumed) == 9
    assert not torch.equal(epoch(0, "batch")[0], epoch(0, "sample")[0])


def test_granularity_is_checked():
    from torch.utils.data import DataLoader

    loader = DataLoader(list(range(4)), batch_size=2)
    with pytest.raises(ValueError, match=r"granularity should be one of \['batch', 'sample'\], got 'epoch'"):
        _seeded_loader(loader, ReproducibleBatchSampler(loader.batch_sampler), "epoch")
