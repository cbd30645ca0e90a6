"""DiskSaver on a real disk: a process killed mid-save and a full disk both leave the previous
checkpoints byte for byte, temporary files are cleaned up, and bad input is refused."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nbengine.engine import Engine, Events
from nbengine.handlers import Checkpoint, DiskSaver, list_checkpoints, load_checkpoint
from nbengine.handlers import checkpoint_file

CHILD = Path(__file__).with_name("checkpoint_child.py")


def temporaries(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".nbtmp"))


@pytest.mark.parametrize("n_saved", [1, 2])
def test_a_process_killed_mid_save_leaves_the_previous_checkpoint_intact(tmp_path, n_saved):
    folder = tmp_path / "ckpt"
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(folder), str(n_saved)], stdout=subprocess.PIPE, text=True
    )
    try:
        announced = child.stdout.readline().strip()
        previous = folder / "checkpoint_1.pt"
        assert announced == f"saved {previous}"
        before = previous.read_bytes()
        # Kill it once the large save is under way: its temporary file holds 32 MB (of 512) or more.
        deadline = time.monotonic() + 120
        while True:
            assert child.poll() is None, "the child finished its save before it could be killed"
            assert time.monotonic() < deadline, "the child never started its large save"
            sizes = [entry.stat().st_size for entry in os.scandir(folder) if entry.name.endswith(".nbtmp")]
            if sizes and sizes[0] >= 32 << 20:
                break
            time.sleep(0.001)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    assert previous.read_bytes() == before
    left = temporaries(folder)
    assert len(left) == 1 and left[0].startswith(f".checkpoint_2.pt.{child.pid}-")
    assert sorted(os.listdir(folder)) == sorted(["checkpoint_1.pt", *left])
    assert [info.path for info in list_checkpoints(folder)] == [previous]
    loaded = load_checkpoint(previous)
    assert torch.equal(loaded["blob"]["values"], torch.arange(10.0))
    assert loaded["trainer"]["iteration"] == 1

    # The stray temporary file of the dead process is removed by the next DiskSaver on the folder.
    DiskSaver(folder, require_empty=False)
    assert os.listdir(folder) == ["checkpoint_1.pt"]
    assert previous.read_bytes() == before


class Growing:
    """A state whose size is set by the test: small first, then too big for the disk."""

    def __init__(self) -> None:
        self.numel = 1000

    def state_dict(self) -> dict:
        return {"values": torch.arange(self.numel, dtype=torch.float32)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.numel = state_dict["values"].numel()


@pytest.fixture(params=["tmpfs", "injected"])
def small_disk(request, tmp_path, monkeypatch):
    """A folder that holds about 1 MB: a real 1 MB tmpfs (skipped where this process may not mount
    one), or a folder whose writes fail with ENOSPC past 1 MB, injected at the one place checkpoint
    bytes are written."""
    folder = tmp_path / "small"
    folder.mkdir()
    if request.param == "tmpfs":
        mounting = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True, text=True
        )
        if mounting.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {mounting.stderr.strip()}")
        yield folder
        subprocess.run(["umount", str(folder)], check=True)
        return
    written = {}
    real_write = checkpoint_file._write_some

    def write_until_full(fd: int, data) -> int:
        total = written.get(fd, 0) + len(data)
        if total > 1 << 20:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written[fd] = total
        return real_write(fd, data)

    monkeypatch.setattr(checkpoint_file, "_write_some", write_until_full)
    yield folder


def test_a_full_disk_keeps_every_old_checkpoint_and_leaves_no_temporary_file(small_disk):
    state = Growing()
    trainer = Engine(lambda engine, batch: None)
    handler = Checkpoint({"state": state, "trainer": trainer}, DiskSaver(small_disk), n_saved=2)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, handler)
    trainer.run([0, 1], max_epochs=2)
    assert sorted(os.listdir(small_disk)) == ["checkpoint_2.pt", "checkpoint_4.pt"]
    before = {name: (small_disk / name).read_bytes() for name in os.listdir(small_disk)}
    kept_before = handler.state_dict()

    state.numel = 400_000  # 1.6 MB: more than the disk holds
    with pytest.raises(OSError) as caught:
        trainer.run([0, 1], max_epochs=3)
    assert caught.value.errno == errno.ENOSPC
    assert {name: (small_disk / name).read_bytes() for name in os.listdir(small_disk)} == before
    assert temporaries(small_disk) == []
    assert handler.state_dict() == kept_before
    assert handler.last_checkpoint == small_disk / "checkpoint_4.pt"
    assert load_checkpoint(small_disk / "checkpoint_4.pt")["trainer"]["iteration"] == 4

    # Once the state fits again, saving goes on and rotates as usual.
    state.numel = 1000
    trainer.run([0, 1], max_epochs=3)
    assert sorted(os.listdir(small_disk)) == ["checkpoint_4.pt", "checkpoint_6.pt"]


class RecordingSaver:
    """A save handler that records what happens to the folder, to check the order of events."""

    def __init__(self, folder: Path, fail_on: str | None = None) -> None:
        self.saver = DiskSaver(folder, require_empty=False)
        self.events: list[tuple[str, str]] = []
        self.fail_on = fail_on

    def __call__(self, checkpoint, filename, metadata=None):
        if filename == self.fail_on:
            self.events.append(("failed", filename))
            raise OSError(errno.EIO, "disk on fire")
        self.saver(checkpoint, filename, metadata)
        self.events.append(("committed", filename))

    def remove(self, filename):
        self.events.append(("removed", filename))
        self.saver.remove(filename)


def test_old_checkpoints_are_removed_only_after_the_new_one_is_committed(tmp_path):
    saver = RecordingSaver(tmp_path, fail_on="checkpoint_3.pt")
    trainer = Engine(lambda engine, batch: None)
    handler = Checkpoint({"model": torch.nn.Linear(2, 2), "trainer": trainer}, saver, n_saved=1)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, handler)
    with pytest.raises(OSError, match="disk on fire"):
        trainer.run([0, 1, 2], max_epochs=1)
    assert saver.events == [
        ("committed", "checkpoint_1.pt"),
        ("committed", "checkpoint_2.pt"),
        ("removed", "checkpoint_1.pt"),
        ("failed", "checkpoint_3.pt"),
    ]
    assert os.listdir(tmp_path) == ["checkpoint_2.pt"]
    assert handler.last_checkpoint == "checkpoint_2.pt"


def test_a_save_replaces_a_file_of_the_same_name_atomically(tmp_path):
    saver = DiskSaver(tmp_path)
    path = saver({"x": torch.zeros(3)}, "same.pt")
    first_inode = path.stat().st_ino
    saver({"x": torch.ones(3)}, "same.pt")
    assert path.stat().st_ino != first_inode
    assert torch.equal(load_checkpoint(path)["x"], torch.ones(3))
    assert os.listdir(tmp_path) == ["same.pt"]


def test_a_filename_collision_keeps_one_file_and_one_entry(tmp_path):
    trainer = Engine(lambda engine, batch: None)
    handler = Checkpoint(
        {"model": torch.nn.Linear(2, 2)}, DiskSaver(tmp_path), n_saved=2, filename_pattern="latest.{ext}"
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED, handler)
    trainer.run([0, 1, 2], max_epochs=1)
    assert os.listdir(tmp_path) == ["latest.pt"]
    assert handler.state_dict()["_saved"] == [(3, "latest.pt")]


def test_non_atomic_mode_writes_in_place(tmp_path):
    saver = DiskSaver(tmp_path, atomic=False)
    path = saver({"x": torch.arange(5)}, "direct.pt", {"iteration": 7})
    assert os.listdir(tmp_path) == ["direct.pt"]
    assert torch.equal(load_checkpoint(path)["x"], torch.arange(5))
    assert list_checkpoints(tmp_path)[0].iteration == 7


def test_files_are_created_readable_and_not_executable(tmp_path):
    old_umask = os.umask(0o022)
    try:
        path = DiskSaver(tmp_path)({"x": torch.zeros(1)}, "mode.pt")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_temporary_files_of_dead_or_silent_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = tmp_path / f".a.pt.{dead_pid()}-00000000.nbtmp"
    live = tmp_path / f".b.pt.{os.getpid()}-11111111.nbtmp"
    silent = tmp_path / f".c.pt.{os.getpid()}-22222222.nbtmp"
    unrelated = tmp_path / ".keep-me.nbtmp"
    for path in (dead, live, silent, unrelated):
        path.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(silent, (two_hours_ago, two_hours_ago))
    DiskSaver(tmp_path)
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, unrelated.name])


def test_require_empty_refuses_a_folder_with_checkpoints(tmp_path):
    (tmp_path / "old.pt").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(
        ValueError,
        match=rf"^Files \['old.pt'\] with extension '.pt' are already present in the directory {tmp_path}: dirname "
        r"should hold no checkpoint yet\. Pass require_empty=False to save there anyway$",
    ):
        DiskSaver(tmp_path)
    DiskSaver(tmp_path, require_empty=False)


def test_create_dir(tmp_path):
    missing = tmp_path / "a" / "b"
    with pytest.raises(
        ValueError,
        match=rf"^Directory path '{missing}' is not found: dirname should be an existing directory; pass create_dir=True "
        r"to create it$",
    ):
        DiskSaver(missing, create_dir=False)
    DiskSaver(missing)
    assert missing.is_dir()


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda d: DiskSaver(3), TypeError, r"^dirname should be a str or os.PathLike, got int: 3$"),
        (lambda d: DiskSaver(d, atomic=1), TypeError, r"^atomic should be True or False, got 1$"),
        (lambda d: DiskSaver(d, create_dir="y"), TypeError, r"^create_dir should be True or False, got 'y'$"),
        (lambda d: DiskSaver(d, require_empty=None), TypeError, r"^require_empty should be True or False, got None$"),
        (
            lambda d: DiskSaver(d)({}, "sub/x.pt"),
            ValueError,
            r"^filename should be a plain file name, not hidden and without a folder, got 'sub/x.pt'$",
        ),
        (
            lambda d: DiskSaver(d)({}, ".hidden.pt"),
            ValueError,
            r"^filename should be a plain file name, not hidden and without a folder, got '.hidden.pt'$",
        ),
        (
            lambda d: DiskSaver(d)({}, "x.pt", {"score": torch.tensor(1.0)}),
            TypeError,
            r"^metadata\['score'\] should be a number, a string or None, got Tensor: tensor\(1.\)$",
        ),
        (lambda d: DiskSaver(d)({}, "x.pt", [1]), TypeError, r"^metadata should be a mapping or None, got list: \[1\]$"),
    ],
)
def test_bad_arguments(tmp_path, call, error, message):
    with pytest.raises(error, match=message):
        call(tmp_path)
    assert temporaries(tmp_path) == []
