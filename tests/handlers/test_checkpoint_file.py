"""The checkpoint file: every flipped bit and every truncation is caught, pickles that run code are
refused, and listing reads only the trailer. All on real files written by DiskSaver."""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import pytest
import torch

from nbengine.handlers import (
    CheckpointError,
    CorruptCheckpointError,
    DiskSaver,
    UnsafeCheckpointError,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint_info,
    verify_checkpoint,
)
from nbengine.handlers import checkpoint_file


def make_state(seed: int = 0, big: int = 3000) -> dict:
    generator = torch.Generator().manual_seed(seed)
    model = {"weight": torch.randn(40, 30, generator=generator), "bias": torch.randn(40, generator=generator)}
    return {
        "model": model,
        "optimizer": {"state": {0: {"momentum_buffer": torch.randn(big, generator=generator)}}, "param_groups": []},
        "trainer": {"epoch_length": 5, "iteration": 10, "max_epochs": 4},
    }


def assert_same(loaded, expected) -> None:
    if isinstance(expected, torch.Tensor):
        assert isinstance(loaded, torch.Tensor) and torch.equal(loaded, expected)
    elif isinstance(expected, dict):
        assert isinstance(loaded, dict) and list(loaded) == list(expected)
        for key in expected:
            assert_same(loaded[key], expected[key])
    else:
        assert loaded == expected


@pytest.fixture
def saved(tmp_path):
    state = make_state()
    path = DiskSaver(tmp_path / "ckpt")(state, "checkpoint_10.pt", {"epoch": 2, "iteration": 10, "keys": ["model"]})
    return path, state


def member_span(path: Path, suffix: str) -> tuple[int, int]:
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(suffix))
        with open(path, "rb") as f:
            f.seek(info.header_offset + 26)
            name_length, extra_length = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
        return info.header_offset + 30 + name_length + extra_length, info.file_size


def flip_bit(path: Path, offset: int, bit: int = 3) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def test_roundtrip_loads_the_same_tensors_with_and_without_mmap(saved):
    path, state = saved
    assert_same(load_checkpoint(path), state)
    assert_same(load_checkpoint(path, mmap=True), state)
    verify_checkpoint(path)
    # It is an ordinary torch checkpoint too.
    assert_same(torch.load(path, weights_only=True), state)


def test_a_plain_torch_save_file_loads_checked_by_its_member_crcs(tmp_path):
    state = make_state(1)
    path = tmp_path / "plain.pt"
    torch.save(state, path)
    assert_same(load_checkpoint(path), state)
    flip_bit(path, member_span(path, "data/2")[0] + 5)
    with pytest.raises(CorruptCheckpointError, match=r"member '.*data/2' fails its CRC-32 check"):
        load_checkpoint(path)


def test_torch_load_alone_accepts_a_flipped_bit_that_load_checkpoint_refuses(saved):
    path, state = saved
    offset, size = member_span(path, "data/2")  # the momentum buffer
    flip_bit(path, offset + size // 2)
    silently_wrong = torch.load(path, weights_only=True)["optimizer"]["state"][0]["momentum_buffer"]
    assert not torch.equal(silently_wrong, state["optimizer"]["state"][0]["momentum_buffer"])
    message = rf"checkpoint file '{path}' is corrupt or truncated: member '.*data/2' fails its CRC-32 check"
    with pytest.raises(CorruptCheckpointError, match=message) as caught:
        load_checkpoint(path)
    assert caught.value.path == path
    with pytest.raises(CorruptCheckpointError, match=message):
        load_checkpoint(path, mmap=True)
    with pytest.raises(CorruptCheckpointError, match=message):
        verify_checkpoint(path)


@pytest.mark.parametrize(
    "where, detail",
    [
        ("pickle", r"member '.*data.pkl' fails its CRC-32 check"),
        ("first local header", r"local header of member .* is damaged"),
        ("padding of a local header", r"zip headers or central directory fail the CRC-32 in its trailer"),
        ("central directory", r"its zip headers or central directory fail the CRC-32 in its trailer"),
        ("trailer", r"its nbengine trailer fails its CRC-32 check"),
        ("trailer magic", r"its zip comment is not an nbengine trailer"),
    ],
)
def test_a_flipped_bit_anywhere_is_caught(saved, where, detail):
    path, _ = saved
    data = path.read_bytes()
    comment_at = data.rindex(b"NBENGINE-CHECKPOINT/1 ")
    offsets = {
        "pickle": member_span(path, "data.pkl")[0] + 7,
        "first local header": 31,
        "padding of a local header": member_span(path, "data/0")[0] - 2,
        "central directory": data.rindex(b"PK\x01\x02") + 16,  # the CRC field of the last entry
        "trailer": len(data) - 3,
        "trailer magic": comment_at + 2,
    }
    flip_bit(path, offsets[where])
    with pytest.raises(CorruptCheckpointError, match=rf"checkpoint file '{path}' is corrupt or truncated: .*{detail}"):
        load_checkpoint(path)


def test_every_single_bit_flip_of_a_small_checkpoint_is_caught(tmp_path):
    path = DiskSaver(tmp_path)({"w": torch.arange(4.0), "step": 3}, "tiny.pt", {"iteration": 3})
    original = path.read_bytes()
    damaged = tmp_path / "damaged.pt"
    missed = []
    for offset in range(len(original)):
        data = bytearray(original)
        data[offset] ^= 1 << (offset % 8)
        damaged.write_bytes(bytes(data))
        try:
            verify_checkpoint(damaged)
        except CorruptCheckpointError:
            continue
        missed.append(offset)
    assert missed == []


@pytest.mark.parametrize("cut", ["last byte", "trailer", "central directory", "half", "all but 10 bytes"])
def test_a_truncated_file_is_caught(saved, cut):
    path, _ = saved
    data = path.read_bytes()
    keep = {
        "last byte": len(data) - 1,
        "trailer": data.rindex(b"NBENGINE-CHECKPOINT/1 "),
        "central directory": data.rindex(b"PK\x01\x02"),
        "half": len(data) // 2,
        "all but 10 bytes": 10,
    }[cut]
    path.write_bytes(data[:keep])
    with pytest.raises(CorruptCheckpointError, match=rf"checkpoint file '{path}' is corrupt or truncated"):
        load_checkpoint(path)
    with pytest.raises(CorruptCheckpointError, match=rf"checkpoint file '{path}' is corrupt or truncated"):
        read_checkpoint_info(path)
    assert list_checkpoints(path.parent) == []


def test_bytes_appended_after_the_end_are_caught(saved):
    path, _ = saved
    with open(path, "ab") as f:
        f.write(b"\0" * 16)
    with pytest.raises(CorruptCheckpointError, match="no zip end-of-central-directory record at its end"):
        load_checkpoint(path)


def test_a_file_that_is_not_a_zip_archive_is_refused(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_bytes(b"just some text, long enough to look like a file\n" * 3)
    with pytest.raises(CorruptCheckpointError, match=rf"'{path}' is corrupt or truncated: no zip end-of-central"):
        load_checkpoint(path)


class _Marker:
    """Pickles as ``open(path, "w")``: unpickling it with plain pickle creates the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize("writer", ["DiskSaver", "torch.save"])
def test_a_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path, writer):
    # The same payload aimed at another file really runs code when loaded without weights_only.
    control = tmp_path / "control-marker"
    torch.save({"model": _Marker(control)}, tmp_path / "control.pt")
    torch.load(tmp_path / "control.pt", weights_only=False)
    assert control.exists()

    marker = tmp_path / "marker"
    payload = {"model": _Marker(marker), "weights": torch.ones(3)}
    if writer == "DiskSaver":
        path = DiskSaver(tmp_path / "ckpt")(payload, "evil.pt")
    else:
        path = tmp_path / "evil.pt"
        torch.save(payload, path)
    verify_checkpoint(path)  # the file is intact: refusing it is about its content
    for mmap in (False, True):
        with pytest.raises(
            UnsafeCheckpointError,
            match=rf"refusing to load checkpoint file '{path}': its pickle asks for more than tensors and plain "
            r"data \(it names io.open, which is not on torch.s weights-only allow-list\)$",
        ):
            load_checkpoint(path, mmap=mmap)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_torchscript_archive_is_refused_as_code(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    with pytest.raises(UnsafeCheckpointError, match=r"it is a TorchScript archive, which carries code"):
        load_checkpoint(path)


def test_the_error_types_share_one_base_that_is_a_value_error():
    assert issubclass(CorruptCheckpointError, CheckpointError)
    assert issubclass(UnsafeCheckpointError, CheckpointError)
    assert issubclass(CheckpointError, ValueError)


def test_listing_reads_the_trailer_only(tmp_path):
    saver = DiskSaver(tmp_path)
    first = saver(make_state(), "a.pt", {"epoch": 1, "iteration": 5, "score": 0.25, "score_name": "acc"})
    second = saver(make_state(), "b.pt", {"epoch": 2, "iteration": 10, "global_step": 2, "keys": ["model", "trainer"]})
    # Damage the tensors of the newest one: listing does not read them, loading does.
    flip_bit(second, member_span(second, "data/0")[0])
    listed = list_checkpoints(tmp_path)
    assert [info.path for info in listed] == [second, first]
    newest, oldest = listed
    assert (newest.epoch, newest.iteration, newest.score, newest.score_name, newest.global_step) == (2, 10, None, None, 2)
    assert newest.keys == ("model", "trainer")
    assert (oldest.epoch, oldest.iteration, oldest.score, oldest.score_name, oldest.keys) == (1, 5, 0.25, "acc", ())
    assert newest.size == second.stat().st_size and oldest.size == first.stat().st_size
    assert oldest.wall_time <= newest.wall_time
    with pytest.raises(AttributeError):
        newest.epoch = 3  # frozen
    with pytest.raises(CorruptCheckpointError):
        load_checkpoint(second)


def test_listing_leaves_out_temporary_foreign_and_hidden_files(tmp_path):
    saver = DiskSaver(tmp_path)
    kept = saver(make_state(), "kept.pt", {"iteration": 1})
    torch.save(make_state(), tmp_path / "foreign.pt")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    (tmp_path / f".kept.pt.{os.getpid()}-0123abcd.nbtmp").write_bytes(kept.read_bytes())
    assert [info.path for info in list_checkpoints(tmp_path)] == [kept]


def test_member_crcs_are_computed_when_torch_is_told_not_to(tmp_path):
    # Restored by hand: torch's config object serves its options through __getattr__, and
    # monkeypatch (pytest >= 9.2) deletes such an attribute on undo instead of restoring it.
    from torch.utils.serialization import config as serialization_config

    save_config = serialization_config.save
    previous = save_config.compute_crc32
    save_config.compute_crc32 = False
    try:
        state = make_state()
        path = DiskSaver(tmp_path)(state, "nocrc.pt")
    finally:
        save_config.compute_crc32 = previous
    with zipfile.ZipFile(path) as archive:
        assert {info.CRC for info in archive.infolist()} == {0}
    assert_same(load_checkpoint(path), state)
    flip_bit(path, member_span(path, "data/1")[0])
    with pytest.raises(CorruptCheckpointError, match=r"member '.*data/1' fails its CRC-32 check"):
        load_checkpoint(path)


def test_big_members_are_read_in_parallel_pieces_and_still_checked(tmp_path):
    """Above 8 MB the reads are split across threads and their CRC-32s combined."""
    big = torch.arange(5_000_000, dtype=torch.float32)  # 20 MB, split into pieces
    path = DiskSaver(tmp_path)({"big": big, "small": torch.ones(2)}, "big.pt")
    assert torch.equal(load_checkpoint(path)["big"], big)
    assert torch.equal(load_checkpoint(path, mmap=True)["big"], big)
    offset, size = member_span(path, "data/0")
    flip_bit(path, offset + size - 3)  # in the last piece
    with pytest.raises(CorruptCheckpointError, match=r"member '.*data/0' fails its CRC-32 check"):
        load_checkpoint(path)


def test_crc32_combine_matches_zlib():
    for first_length, second_length in [(0, 0), (1, 0), (0, 5), (3, 1), (1000, 4097), (5, (1 << 20) + 3)]:
        first, second = os.urandom(first_length), os.urandom(second_length)
        combined = checkpoint_file._crc32_combine(zlib.crc32(first), zlib.crc32(second), second_length)
        assert combined == zlib.crc32(first + second)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: load_checkpoint(3), TypeError, r"path should be a str or os.PathLike, got int: 3"),
        (lambda: load_checkpoint("x.pt", mmap="yes"), TypeError, r"mmap should be True or False, got 'yes'"),
        (lambda: list_checkpoints(None), TypeError, r"dirname should be a str or os.PathLike, got NoneType: None"),
    ],
)
def test_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_a_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.pt")

