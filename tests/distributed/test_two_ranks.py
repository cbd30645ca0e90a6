"""Two real processes on gloo (127.0.0.1), started by torchrun and by ``Parallel``: collective pause, step,
Ctrl-C, checkpoint / kill / resume and a failing rank, each compared with the uninterrupted run.

The worker (``_worker.py``) trains 3 epochs of 8 iterations per rank. Every job has a time limit and is
killed, with all its processes, when the test ends (``_jobs.Job``).
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.distributed._jobs import Job, kill_tree, run_job, same_weights

pytestmark = pytest.mark.timeout(900)

FULL_RUN = [("done", 24)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run under torchrun: what every other run must end with, bit for bit."""
    code, job = run_job(tmp_path_factory.mktemp("reference") / "job", "torchrun")
    assert code == 0, job.log()
    return job.ranks()


def test_uninterrupted_run_under_torchrun_trains_both_ranks_on_their_own_shards(reference):
    first, second = reference
    assert first["stretches"] == second["stretches"] == FULL_RUN
    assert first["error"] is None and second["error"] is None
    assert same_weights(first["weights"], second["weights"])
    assert len(first["batches"]) == len(second["batches"]) == 24
    assert first["batches"] != second["batches"]


def test_uninterrupted_run_under_parallel_equals_torchrun(reference, tmp_path):
    code, job = run_job(tmp_path / "job", "parallel")
    assert code == 0, job.log()
    for ours, theirs in zip(job.ranks(), reference):
        assert ours["stretches"] == FULL_RUN
        assert ours["batches"] == theirs["batches"]
        assert same_weights(ours["weights"], theirs["weights"])


@pytest.mark.parametrize("launcher, from_rank", [("torchrun", 1), ("parallel", 0)])
def test_pause_and_steps_requested_on_one_rank_act_on_both_at_the_same_boundaries(reference, tmp_path, launcher,
                                                                                    from_rank):
    # Requested at iteration 5 on one rank: agreed at 7 (the all-reduce launched at 6 carries it), or at 6
    # when rank 0's main thread, which reads the log's length while its engine runs (for a controller's
    # requests), saw the request before launching its all-reduce of iteration 5. Both ranks agree on it.
    code, job = run_job(tmp_path / "job", launcher, "--scenario", "pause", "--from-rank", str(from_rank))
    assert code == 0, job.log()
    first, second = job.ranks()
    paused_at = first["stretches"][0][1]
    assert paused_at in (6, 7) and second["stretches"] == first["stretches"]
    for ours, theirs in zip(job.ranks(), reference):
        assert ours["stretches"] == [("paused", paused_at), ("paused", paused_at + 2), ("paused", 16), ("done", 24)]
        assert ours["batches"] == theirs["batches"]
        assert same_weights(ours["weights"], theirs["weights"])


def test_sigint_to_both_ranks_is_a_lossless_pause_of_the_job(reference, tmp_path):
    job = Job(tmp_path / "job", "parallel", "--scenario", "sigint")
    try:
        pids = job.wait_for_files("ready0", "ready1")
        for pid in pids:
            os.kill(int(pid), signal.SIGINT)
        assert job.wait() == 0, job.log()
    finally:
        job.kill()
    for ours, theirs in zip(job.ranks(), reference):
        # Both ranks wait at iteration 5 for their SIGINT; the all-reduce launched at 6 carries it.
        assert ours["interrupted_at"] == [7]
        assert ours["stretches"] == [("paused", 7), ("done", 24)]
        assert ours["batches"] == theirs["batches"]
        assert same_weights(ours["weights"], theirs["weights"])


def test_ctrl_c_in_the_torchrun_terminal_saves_every_rank_and_a_new_job_resumes_exactly(reference, tmp_path):
    # torchrun runs the ranks in sessions of their own and forwards the SIGINT it gets to each of them.
    job = Job(tmp_path / "first", "torchrun", "--scenario", "sigint", "--after-interrupt", "save")
    try:
        job.wait_for_files("ready0", "ready1")
        job.signal_job(signal.SIGINT)
        job.wait()
    finally:
        job.kill()
    interrupted = job.ranks()
    assert [rank["interrupted_at"] for rank in interrupted] == [[7], [7]], job.log()
    saved = sorted((tmp_path / "first" / "checkpoints").glob("*.pt"))
    assert [path.name for path in saved] == ["checkpoint_7.pt"]

    code, resumed = run_job(tmp_path / "resumed", "torchrun", "--resume", str(saved[0]))
    assert code == 0, resumed.log()
    for ours, theirs in zip(resumed.ranks(), reference):
        assert ours["batches"] == theirs["batches"][7:]
        assert same_weights(ours["weights"], theirs["weights"])


@pytest.mark.parametrize("first_launcher, second_launcher", [("torchrun", "parallel")])
def test_checkpoint_mid_epoch_then_every_process_killed_then_new_processes_resume_exactly(
    reference, tmp_path, first_launcher, second_launcher
):
    # Rank 1 asks for a save at iteration 10 (agreed at 12, or at 11 as in the pause test, mid-epoch 2);
    # both ranks are killed at 14.
    job = Job(tmp_path / "first", first_launcher, "--scenario", "save-kill", "--from-rank", "1")
    try:
        job.wait_for_files("blocked0", "blocked1")
    finally:
        job.kill()
    saved = sorted((tmp_path / "first" / "checkpoints").glob("*.pt"))
    assert [path.name for path in saved] in (["checkpoint_11.pt"], ["checkpoint_12.pt"])
    saved_at = int(saved[0].stem.split("_")[1])

    code, resumed = run_job(tmp_path / "resumed", second_launcher, "--resume", str(saved[0]))
    assert code == 0, resumed.log()
    for ours, theirs in zip(resumed.ranks(), reference):
        assert ours["stretches"] == FULL_RUN
        assert ours["batches"] == theirs["batches"][saved_at:]
        assert same_weights(ours["weights"], theirs["weights"])


def test_a_rank_failing_mid_epoch_stops_the_other_with_an_error_naming_it(tmp_path):
    code, job = run_job(tmp_path / "job", "torchrun", "--scenario", "fail")
    assert code != 0
    first, second = job.ranks()
    assert second["error"] == "ValueError: rank 1 broke on purpose"
    assert first["error"].startswith("RankFailedError: rank 0 stopped because another rank of the job failed (")
    assert "rank 1 failed: ValueError('rank 1 broke on purpose') at epoch 1, iteration 6" in first["error"]


def test_replay_requested_on_one_rank_replays_the_epoch_on_both_and_reports_per_rank(reference, tmp_path):
    code, job = run_job(tmp_path / "job", "torchrun", "--scenario", "replay", "--from-rank", "1")
    assert code == 0, job.log()
    # Requested at 18: agreed at 20, or 19 (see the pause test); the same on both ranks.
    paused_at = job.ranks()[0]["stretches"][0][1]
    assert paused_at in (19, 20)
    for ours, theirs in zip(job.ranks(), reference):
        assert ours["stretches"] == [("paused", paused_at), ("done", 24)]
        ((seq, reports),) = ours["replays"].items()
        assert seq == 1
        assert [(r["rank"], r["epoch"], r["iterations"], r["reproduced"]) for r in reports] == [
            (0, 2, 8, True), (1, 2, 8, True)
        ]
        assert reports[0]["text"].startswith("epoch 2 replayed: 8 iterations, 8 compared")
        assert same_weights(ours["weights"], theirs["weights"])


def test_the_readme_digits_command_trains_on_two_ranks_with_reduced_accuracy(tmp_path):
    import subprocess
    import sys

    from nbengine.distributed.launcher import free_port
    from tests.distributed._jobs import ROOT

    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
               f"--master_port={free_port()}", "-m", "nbengine.distributed.digits", "--epochs", "2",
               "--out", str(tmp_path / "digits-ddp")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=400)
    finally:
        kill_tree(process.pid)
    assert process.returncode == 0, output
    lines = [line for line in output.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1", "epoch 2"]
    assert float(lines[-1].rsplit(" ", 1)[1]) > 0.9


def test_accuracy_over_two_ranks_equals_accuracy_over_the_whole_data(tmp_path):
    import subprocess
    import sys

    import torch

    from tests.distributed._accuracy_worker import predictions
    from tests.distributed._jobs import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, str(ROOT / "tests/distributed/_accuracy_worker.py"), str(tmp_path)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=300)
    finally:
        kill_tree(process.pid)
    assert process.returncode == 0, output
    logits, labels = predictions()
    whole = (logits.argmax(dim=1) == labels).sum().item() / len(labels)
    ranks = [torch.load(tmp_path / f"accuracy{rank}.pt") for rank in range(2)]
    assert [rank["accuracy"] for rank in ranks] == [whole, whole]
    # Each rank saw its own half of the data, and the halves make up the whole.
    assert [len(rank["seen"]) for rank in ranks] == [32, 32]
    assert sorted(torch.cat([rank["seen"] for rank in ranks]).tolist()) == sorted(labels.tolist())
