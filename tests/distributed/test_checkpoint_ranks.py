"""Checkpoints in a real 2-rank gloo job (started with ``launch``): ``save_on_rank`` as in ignite 0.5.5 —
every rank calls the handler and keeps the same list of checkpoints, only the chosen rank makes the
folder, writes and removes files — and ``RankStates`` puts both ranks' engine state in the one file.
Every job has a time limit and is stopped when the test ends."""

from __future__ import annotations

import os

import pytest
import torch

from nbengine.distributed.notebook_launcher import launch

pytestmark = pytest.mark.timeout(300)

DEADLINE = 240.0


@pytest.fixture
def jobs():
    started = []
    yield started
    for job in started:
        job.stop(grace=1.0)


# ----------------------------------------------------------------------------------------- functions run by ranks


def model_checkpoint_on_rank(local_rank: int, folder: str, save_on_rank: int) -> dict:
    import torch.distributed as dist

    from nbengine.engine import Engine, Events
    from nbengine.handlers import ModelCheckpoint

    # The other rank makes its handler first: it must neither make nor check the folder.
    saving = dist.get_rank() == save_on_rank
    if not saving:
        handler = ModelCheckpoint(folder, "net", n_saved=2, save_on_rank=save_on_rank)
    made_folder = os.path.isdir(folder)
    dist.barrier()
    if saving:
        handler = ModelCheckpoint(folder, "net", n_saved=2, save_on_rank=save_on_rank)
        made_folder = os.path.isdir(folder)
    dist.barrier()
    trainer = Engine(lambda engine, batch: None)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, handler, {"model": torch.nn.Linear(2, 2)})
    trainer.run([0, 1], max_epochs=3)
    dist.barrier()
    return {"rank": dist.get_rank(), "made_folder": made_folder, "kept": [item.filename for item in handler._saved],
            "last": str(handler.last_checkpoint), "files": sorted(os.listdir(folder))}


def checkpoint_of_rank_states(local_rank: int, folder: str) -> dict:
    import torch.distributed as dist

    from nbengine.distributed import RankStates
    from nbengine.engine import DeterministicEngine, Events
    from nbengine.handlers import Checkpoint

    trainer = DeterministicEngine(lambda engine, batch: torch.rand(1).item(), seed=5)
    model = torch.nn.Linear(2, 2)
    # A folder given as a str: Checkpoint makes the DiskSaver, writing on save_on_rank=1.
    handler = Checkpoint({"model": model, "trainer": RankStates(trainer)}, folder, save_on_rank=1)
    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=3), handler)
    trainer.run(list(range(8)), max_epochs=1)
    return {"rank": dist.get_rank(), "saver_rank": handler.save_handler.save_on_rank, "last": str(handler.last_checkpoint)}


# ------------------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("save_on_rank", [0, 1])
def test_model_checkpoint_writes_and_removes_on_save_on_rank_only(jobs, tmp_path, save_on_rank):
    folder = tmp_path / "checkpoints"
    job = launch(model_checkpoint_on_rank, (str(folder), save_on_rank), nproc_per_node=2)
    jobs.append(job)
    first, second = job.wait(DEADLINE)
    # Only the saving rank made the folder.
    assert [first["made_folder"], second["made_folder"]] == [save_on_rank == 0, save_on_rank == 1]
    assert first["kept"] == second["kept"] == ["net_model_4.pt", "net_model_6.pt"]
    assert first["last"] == second["last"] == str(folder / "net_model_6.pt")
    # The oldest file was removed by the saving rank; the other touched nothing.
    assert first["files"] == second["files"] == ["net_model_4.pt", "net_model_6.pt"]


def test_checkpoint_to_a_folder_passes_save_on_rank_to_its_disk_saver_and_holds_every_ranks_state(jobs, tmp_path):
    folder = tmp_path / "checkpoints"
    job = launch(checkpoint_of_rank_states, (str(folder),), nproc_per_node=2)
    jobs.append(job)
    first, second = job.wait(DEADLINE)
    assert first["saver_rank"] == second["saver_rank"] == 1
    assert first["last"] == second["last"] == str(folder / "checkpoint_3.pt")
    assert sorted(os.listdir(folder)) == ["checkpoint_3.pt"]
    from nbengine.handlers import load_checkpoint

    saved = load_checkpoint(folder / "checkpoint_3.pt")
    assert saved["trainer"]["world_size"] == 2
    ranks = saved["trainer"]["ranks"]
    assert [state["iteration"] for state in ranks] == [3, 3]
    assert [state["seed"] for state in ranks] == [5, 5]


def test_save_on_rank_is_refused_when_it_is_not_a_rank(tmp_path):
    from nbengine.handlers import Checkpoint, ModelCheckpoint

    for make in (lambda: ModelCheckpoint(tmp_path / "a", save_on_rank=-1),
                 lambda: Checkpoint({"m": torch.nn.Linear(1, 1)}, tmp_path / "b", save_on_rank=True)):
        with pytest.raises(ValueError, match=r"^save_on_rank should be a non-negative int \(a rank of the job\), got "):
            make()
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
