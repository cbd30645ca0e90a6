"""The checkpoint file: its format, its integrity check, and how it is written and safely loaded.

A checkpoint is exactly what ``torch.save`` writes (a zip archive of stored, uncompressed members, each
with a CRC-32), plus an nbengine trailer in the zip comment at the very end of the file. The trailer is
a small JSON record (epoch, iteration, score, wall time, ...) with its own CRC-32, and it carries a
CRC-32 of every byte that is not member data (local headers, data descriptors, central directory),
so that together with the members' own CRC-32s every byte of the file is covered. Listing reads only
the trailer; loading verifies everything, because ``torch.load`` itself checks no CRC and silently
accepts a flipped bit. Files written by plain ``torch.save`` (no trailer) load too, verified by their
member CRC-32s.

Loading goes through ``torch.load(..., weights_only=True)`` and nothing else, so a checkpoint cannot
run code; a pickle that asks for anything outside torch's weights-only allow-list is refused with
:class:`UnsafeCheckpointError`. Without ``mmap`` the member data is read and checked in one pass,
straight into the tensors torch allocates, split across threads; with ``mmap`` the file is verified
first and then mapped.

Writing (:func:`write_checkpoint_file`) streams ``torch.save`` into a file, appends the trailer and
fsyncs; :class:`~nbengine.handlers.checkpoint_disk.DiskSaver` adds the temporary name, ``os.replace``
and the folder fsync around it.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import struct
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "CorruptCheckpointError",
    "UnsafeCheckpointError",
    "load_checkpoint",
    "read_checkpoint_info",
    "verify_checkpoint",
    "write_checkpoint_file",
]

MINIMUM_TORCH = "2.6"
TRAILER_FORMAT = "nbengine.checkpoint"
TRAILER_VERSION = 1
_TRAILER_MAGIC = b"NBENGINE-CHECKPOINT/1 "
_TRAILER_MAX = 0xFFFF

# Data is read and checked in chunks that stay in the CPU cache between the read and the CRC.
_CHUNK = 1 << 20
# Below this much member data, threads cost more than they save.
_PARALLEL_MIN_BYTES = 8 << 20
_MAX_WORKERS = 4

_EOCD = struct.Struct("<4s4H2LH")
_EOCD_SIG = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_LOCATOR_SIG = b"PK\x06\x07"
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_EOCD_SIG = b"PK\x06\x06"
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_CENTRAL_SIG = b"PK\x01\x02"
_LOCAL = struct.Struct("<4s2B4HL2L2H")
_LOCAL_SIG = b"PK\x03\x04"
_ZIP64_EXTRA_ID = 0x0001
_STORED = 0
_ENCRYPTED_FLAG = 0x1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be trusted. ``path`` names the file, ``detail`` says why."""

    def __init__(self, path: str | os.PathLike, detail: str) -> None:
        self.path = Path(path)
        self.detail = detail
        super().__init__(self._message(path, detail))

    @staticmethod
    def _message(path: str | os.PathLike, detail: str) -> str:
        return f"cannot trust checkpoint file '{path}': {detail}"

    def __reduce__(self) -> tuple:
        return type(self), (self.path, self.detail)


class CorruptCheckpointError(CheckpointError):
    """The file is truncated, damaged, or not a checkpoint at all."""

    @staticmethod
    def _message(path: str | os.PathLike, detail: str) -> str:
        return f"checkpoint file '{path}' is corrupt or truncated: {detail}"


class UnsafeCheckpointError(CheckpointError):
    """The file's pickle would run code or build objects outside torch's weights-only allow-list."""

    @staticmethod
    def _message(path: str | os.PathLike, detail: str) -> str:
        return f"refusing to load checkpoint file '{path}': {detail}"


@dataclass(frozen=True)
class CheckpointInfo:
    """One committed checkpoint, as listed without reading its tensors.

    ``wall_time`` is when it was saved (seconds since the Unix epoch), ``size`` its length in bytes.
    ``epoch``, ``iteration``, ``score``, ``score_name`` and ``global_step`` are None when the saver
    was not given them.
    """

    path: Path
    epoch: int | None
    iteration: int | None
    score: float | None
    score_name: str | None
    global_step: int | None
    wall_time: float
    size: int
    keys: tuple[str, ...]


@dataclass(frozen=True)
class _Member:
    name: str
    data_offset: int
    size: int
    crc32: int


@dataclass(frozen=True)
class _Layout:
    size: int
    members: tuple[_Member, ...]
    trailer: dict | None
    # Offset of the zip comment's length field. Every byte before it is covered by a CRC-32 (the
    # members' own, or the trailer's layout_crc32); the length is checked by parsing, and the
    # comment (the trailer) carries its own CRC-32.
    covered_end: int

    def gaps(self) -> list[tuple[int, int]]:
        """(offset, length) of every covered byte range that is not member data, in file order."""
        spans = sorted((m.data_offset, m.data_offset + m.size) for m in self.members)
        gaps = []
        position = 0
        for start, end in spans:
            if start > position:
                gaps.append((position, start - position))
            position = max(position, end)
        if self.covered_end > position:
            gaps.append((position, self.covered_end - position))
        return gaps


# ---------------------------------------------------------------------------------------------- CRC


def _crc32_multiply(a: int, b: int) -> int:
    """Product of two polynomials modulo the CRC-32 polynomial (reflected bit order)."""
    product = 0
    bit = 1 << 31
    while a:
        if a & bit:
            product ^= b
            a ^= bit
        bit >>= 1
        b = (b >> 1) ^ 0xEDB88320 if b & 1 else b >> 1
    return product


def _crc32_powers() -> tuple[int, ...]:
    """x**(2**k) modulo the CRC-32 polynomial, k = 0..63: the shifts by 2**k zero bits."""
    powers = [1 << 30]  # x
    for _ in range(63):
        powers.append(_crc32_multiply(powers[-1], powers[-1]))
    return tuple(powers)


_CRC32_POWERS = _crc32_powers()


def _crc32_combine(crc_first: int, crc_second: int, length_second: int) -> int:
    """CRC-32 of A + B from crc32(A), crc32(B) and len(B): shift A's CRC by 8 * len(B) zero bits."""
    shift = 1 << 31  # the polynomial 1
    remaining = length_second << 3
    k = 0
    while remaining:
        if remaining & 1:
            shift = _crc32_multiply(_CRC32_POWERS[k], shift)
        remaining >>= 1
        k += 1
    return _crc32_multiply(shift, crc_first) ^ crc_second


_POSITIONAL_READS = hasattr(os, "preadv")


def _read_into(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` from ``offset``; returns how many bytes the file had there."""
    filled = 0
    total = len(view)
    while filled < total:
        if _POSITIONAL_READS:
            got = os.preadv(fd, [view[filled:]], offset + filled)
        else:  # no positional reads here (Windows): only ever called from one thread, see _thread_pool
            os.lseek(fd, offset + filled, os.SEEK_SET)
            chunk = os.read(fd, total - filled)
            got = len(chunk)
            view[filled : filled + got] = chunk
        if got == 0:
            break
        filled += got
    return filled


def _pread(fd: int, length: int, offset: int) -> bytes:
    data = bytearray(length)
    got = _read_into(fd, memoryview(data), offset)
    return bytes(data[:got])


def _crc32_of_range(fd: int, offset: int, length: int, into: memoryview | None) -> tuple[int, int]:
    """(CRC-32, bytes read) of ``length`` bytes at ``offset``, copied into ``into`` when given."""
    crc = 0
    done = 0
    scratch = None if into is not None else memoryview(bytearray(min(_CHUNK, length)))
    while done < length:
        count = min(_CHUNK, length - done)
        view = into[done : done + count] if into is not None else scratch[:count]
        got = _read_into(fd, view, offset + done)
        crc = zlib.crc32(view[:got], crc)
        done += got
        if got < count:
            break
    return crc, done


def _crc32_of_pieces(fd: int, pieces: list[tuple[int, int, int, memoryview | None]]) -> list[tuple[int, int]]:
    return [_crc32_of_range(fd, offset, length, into) for _, offset, length, into in pieces]


def _crc32_of_ranges(
    fd: int,
    ranges: Sequence[tuple[int, int]],
    pool: _Pool | None,
    into: Sequence[memoryview] | None = None,
) -> list[tuple[int, int]]:
    """(CRC-32, bytes read) of each (offset, length), copied into ``into[i]`` when given.

    With a pool, a long range is cut into one piece per thread and small ranges are batched, so
    that every thread gets a few megabytes; the pieces' CRCs are then combined in order."""
    workers = pool.workers if pool is not None else 1
    # (range index, file offset, length, destination) of each piece, in file order within a range
    pieces: list[tuple[int, int, int, memoryview | None]] = []
    for index, (offset, length) in enumerate(ranges):
        target = into[index] if into is not None else None
        parts = workers if length >= 2 * _CHUNK else 1
        step = max(_CHUNK, -(-length // parts // _CHUNK) * _CHUNK)
        for start in range(0, length, step) if length else (0,):
            count = min(step, length - start)
            pieces.append((index, offset + start, count, target[start : start + count] if target is not None else None))
    if pool is None or len(pieces) == 1:
        batches = [pieces]
    else:
        total = sum(piece[2] for piece in pieces)
        target_batch = max(_CHUNK, total // (4 * workers))
        batches, batch, batch_bytes = [], [], 0
        for piece in pieces:
            batch.append(piece)
            batch_bytes += piece[2]
            if batch_bytes >= target_batch:
                batches.append(batch)
                batch, batch_bytes = [], 0
        if batch:
            batches.append(batch)
    if pool is None or len(batches) <= 1:
        outcomes = [_crc32_of_pieces(fd, batch) for batch in batches]
    else:
        # This thread takes the first batch itself rather than wait idle for the pool.
        jobs = [pool.executor.submit(_crc32_of_pieces, fd, batch) for batch in batches[1:]]
        outcomes = [_crc32_of_pieces(fd, batches[0]), *(job.result() for job in jobs)]
    results: list[tuple[int, int]] = [(0, 0)] * len(ranges)
    short: set[int] = set()
    for batch, outcome in zip(batches, outcomes):
        for (index, _, count, _), (crc, got) in zip(batch, outcome):
            if index in short:
                continue
            so_far_crc, so_far = results[index]
            results[index] = (_crc32_combine(so_far_crc, crc, got) if so_far else crc, so_far + got)
            if got < count:
                short.add(index)
    return results


class _Pool(NamedTuple):
    executor: ThreadPoolExecutor
    workers: int


@contextmanager
def _thread_pool(payload_bytes: int) -> Iterator[_Pool | None]:
    """Threads to read and check with, for files big enough to gain from them (zlib.crc32 and
    os.preadv release the GIL); None means: do it all in this thread."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    workers = min(_MAX_WORKERS, len(usable))
    if payload_bytes < _PARALLEL_MIN_BYTES or workers < 2 or not _POSITIONAL_READS:
        yield None
        return
    # The calling thread is one of the workers.
    with ThreadPoolExecutor(max_workers=workers - 1, thread_name_prefix="nbengine-checkpoint-crc") as executor:
        yield _Pool(executor, workers)


# ----------------------------------------------------------------------------------------- layout


def _pread_exact(fd: int, length: int, offset: int, path: str | os.PathLike, what: str) -> bytes:
    data = _pread(fd, length, offset)
    if len(data) != length:
        raise CorruptCheckpointError(path, f"the file ends inside the {what} (offset {offset})")
    return data


def _find_end_record(fd: int, size: int, path: str | os.PathLike) -> int:
    """Offset of the end-of-central-directory record: the last one whose comment reaches the end."""
    for window in (4096, _EOCD.size + _TRAILER_MAX):
        start = max(0, size - window)
        tail = _pread(fd, size - start, start)
        position = tail.rfind(_EOCD_SIG)
        while position >= 0:
            if len(tail) - position >= _EOCD.size:
                comment_length = _EOCD.unpack_from(tail, position)[-1]
                if position + _EOCD.size + comment_length == len(tail):
                    return start + position
            position = tail.rfind(_EOCD_SIG, 0, position)
        if start == 0:
            break
    raise CorruptCheckpointError(
        path, "no zip end-of-central-directory record at its end (a truncated file, or not a checkpoint)"
    )


def _zip64_values(extra: bytes, wanted: list[str], path: str | os.PathLike, name: str) -> dict[str, int]:
    position = 0
    while position + 4 <= len(extra):
        header_id, length = struct.unpack_from("<HH", extra, position)
        if header_id == _ZIP64_EXTRA_ID:
            values = extra[position + 4 : position + 4 + length]
            if len(values) < 8 * len(wanted):
                break
            return {key: struct.unpack_from("<Q", values, 8 * i)[0] for i, key in enumerate(wanted)}
        position += 4 + length
    raise CorruptCheckpointError(path, f"member {name!r} lacks the zip64 sizes its header points to")


def _read_layout(fd: int, path: str | os.PathLike) -> _Layout:
    size = os.fstat(fd).st_size
    if size < _EOCD.size:
        raise CorruptCheckpointError(path, f"it is {size} bytes long, shorter than any zip archive")
    end = _find_end_record(fd, size, path)
    (_, disk, cd_disk, _, count, cd_size, cd_offset, comment_length) = _EOCD.unpack(
        _pread_exact(fd, _EOCD.size, end, path, "end-of-central-directory record")
    )
    comment = _pread(fd, comment_length, end + _EOCD.size)
    covered_end = end + _EOCD.size - 2  # the comment length itself is checked by parsing
    if disk or cd_disk:
        raise CorruptCheckpointError(path, "it claims to be one part of a multi-disk zip archive")
    if 0xFFFFFFFF in (cd_size, cd_offset) or count == 0xFFFF:
        locator_at = end - _ZIP64_LOCATOR.size
        locator = _ZIP64_LOCATOR.unpack(_pread_exact(fd, _ZIP64_LOCATOR.size, locator_at, path, "zip64 locator"))
        if locator[0] != _ZIP64_LOCATOR_SIG:
            raise CorruptCheckpointError(path, f"the zip64 locator at offset {locator_at} is damaged")
        record = _ZIP64_EOCD.unpack(_pread_exact(fd, _ZIP64_EOCD.size, locator[2], path, "zip64 end record"))
        if record[0] != _ZIP64_EOCD_SIG:
            raise CorruptCheckpointError(path, f"the zip64 end record at offset {locator[2]} is damaged")
        count, cd_size, cd_offset = record[7], record[8], record[9]
    if cd_offset + cd_size > end:
        raise CorruptCheckpointError(
            path, f"its central directory (offset {cd_offset}, {cd_size} bytes) runs past the end record"
        )
    directory = _pread_exact(fd, cd_size, cd_offset, path, "central directory")
    entries = []
    packed = []
    position = 0
    for index in range(count):
        if position + _CENTRAL.size > len(directory):
            raise CorruptCheckpointError(path, f"its central directory stops after {index} of {count} members")
        fields = _CENTRAL.unpack_from(directory, position)
        if fields[0] != _CENTRAL_SIG:
            raise CorruptCheckpointError(path, f"central directory entry {index} has a damaged signature")
        flags, method, crc, packed_size, unpacked_size = fields[5], fields[6], fields[9], fields[10], fields[11]
        name_length, extra_length, comment_len, header_offset = fields[12], fields[13], fields[14], fields[18]
        name_start = position + _CENTRAL.size
        raw_name = directory[name_start : name_start + name_length]
        extra = directory[name_start + name_length : name_start + name_length + extra_length]
        name = raw_name.decode("utf-8", "replace")
        position = name_start + name_length + extra_length + comment_len
        wanted = [
            key
            for key, value in (("size", unpacked_size), ("packed", packed_size), ("offset", header_offset))
            if value == 0xFFFFFFFF
        ]
        if wanted:
            big = _zip64_values(extra, wanted, path, name)
            unpacked_size = big.get("size", unpacked_size)
            packed_size = big.get("packed", packed_size)
            header_offset = big.get("offset", header_offset)
        if method != _STORED or flags & _ENCRYPTED_FLAG or packed_size != unpacked_size:
            packed.append(name)
        entries.append((name, raw_name, header_offset, unpacked_size, crc))
    if position != len(directory):
        raise CorruptCheckpointError(path, "its central directory holds more bytes than its members use")
    _refuse_torchscript(path, [entry[0] for entry in entries])
    if packed:
        raise CorruptCheckpointError(
            path, f"member {packed[0]!r} is compressed or encrypted, which torch.save never writes"
        )
    members = []
    for name, raw_name, header_offset, member_size, crc in entries:
        header = _pread_exact(fd, _LOCAL.size + len(raw_name), header_offset, path, f"header of {name!r}")
        fields = _LOCAL.unpack_from(header)
        if fields[0] != _LOCAL_SIG or header[_LOCAL.size :] != raw_name:
            raise CorruptCheckpointError(path, f"the local header of member {name!r} is damaged")
        data_offset = header_offset + _LOCAL.size + fields[10] + fields[11]
        if data_offset + member_size > cd_offset:
            raise CorruptCheckpointError(path, f"member {name!r} runs past the start of the central directory")
        members.append(_Member(name, data_offset, member_size, crc))
    return _Layout(size, tuple(members), _parse_trailer(comment, path), covered_end)


# ---------------------------------------------------------------------------------------- trailer


def _encode_trailer(record: Mapping[str, Any]) -> bytes:
    body = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    comment = _TRAILER_MAGIC + f"{zlib.crc32(body):08x} ".encode() + body
    if len(comment) > _TRAILER_MAX:
        raise ValueError(
            f"checkpoint metadata takes {len(comment)} bytes once encoded; at most {_TRAILER_MAX} fit in the trailer"
        )
    return comment


def _parse_trailer(comment: bytes, path: str | os.PathLike) -> dict | None:
    if not comment:
        return None  # torch.save writes no zip comment: a plain torch checkpoint
    if not comment.startswith(_TRAILER_MAGIC):
        raise CorruptCheckpointError(path, "its zip comment is not an nbengine trailer (torch.save writes none)")
    head = len(_TRAILER_MAGIC)
    body = comment[head + 9 :]
    if comment[head : head + 9] != f"{zlib.crc32(body):08x} ".encode():
        raise CorruptCheckpointError(path, "its nbengine trailer fails its CRC-32 check")
    record = json.loads(body)
    if not isinstance(record, dict) or record.get("format") != TRAILER_FORMAT:
        raise CorruptCheckpointError(path, "its nbengine trailer is not a checkpoint record")
    if record.get("version") != TRAILER_VERSION:
        raise CorruptCheckpointError(
            path, f"its trailer has version {record.get('version')!r}; this nbengine reads version {TRAILER_VERSION}"
        )
    return record


def _info_from_trailer(path: Path, layout_size: int, record: Mapping[str, Any]) -> CheckpointInfo:
    return CheckpointInfo(
        path=path,
        epoch=record.get("epoch"),
        iteration=record.get("iteration"),
        score=record.get("score"),
        score_name=record.get("score_name"),
        global_step=record.get("global_step"),
        wall_time=float(record["wall_time"]),
        size=layout_size,
        keys=tuple(record.get("keys") or ()),
    )


def read_checkpoint_info(path: str | os.PathLike) -> CheckpointInfo:
    """What a committed checkpoint holds, from its trailer alone: a few small reads, no tensors.

    Raises :class:`CorruptCheckpointError` when the file has no valid nbengine trailer (truncated,
    damaged, or written by something else). The payload is not checked here; loading checks it.
    """
    path = Path(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        size = os.fstat(fd).st_size
        if size < _EOCD.size:
            raise CorruptCheckpointError(path, f"it is {size} bytes long, shorter than any zip archive")
        end = _find_end_record(fd, size, path)
        comment = _pread(fd, size - end - _EOCD.size, end + _EOCD.size)
    finally:
        os.close(fd)
    record = _parse_trailer(comment, path)
    if record is None:
        raise CorruptCheckpointError(path, "it has no nbengine trailer (not written by nbengine's DiskSaver)")
    return _info_from_trailer(path, size, record)


# ------------------------------------------------------------------------------------- verifying


def _member_expected_crc(layout: _Layout, member: _Member) -> int:
    own = (layout.trailer or {}).get("member_crc32")
    if own is not None:
        return own[member.name]
    return member.crc32


def _check_member(path: str | os.PathLike, layout: _Layout, member: _Member, crc: int, got: int) -> None:
    if got != member.size:
        raise CorruptCheckpointError(path, f"member {member.name!r} is cut short ({got} of {member.size} bytes)")
    expected = _member_expected_crc(layout, member)
    if crc != expected:
        raise CorruptCheckpointError(
            path, f"member {member.name!r} fails its CRC-32 check (stored {expected:08x}, computed {crc:08x})"
        )


def _verify_structure(fd: int, path: str | os.PathLike, layout: _Layout, pool: _Pool | None) -> None:
    """Check the bytes between member data against the trailer's CRC-32 (files with a trailer)."""
    if layout.trailer is None:
        return
    crc = 0
    for offset, length in layout.gaps():
        data = _pread_exact(fd, length, offset, path, "zip structure")
        crc = zlib.crc32(data, crc)
    if crc != layout.trailer.get("layout_crc32"):
        raise CorruptCheckpointError(path, "its zip headers or central directory fail the CRC-32 in its trailer")


def _verify_members(
    fd: int, path: str | os.PathLike, layout: _Layout, members: Sequence[_Member], pool: _Pool | None
) -> None:
    results = _crc32_of_ranges(fd, [(m.data_offset, m.size) for m in members], pool)
    for member, (crc, got) in zip(members, results):
        _check_member(path, layout, member, crc, got)


def _is_storage(member: _Member) -> bool:
    head, _, tail = member.name.rpartition("/")
    return head.endswith("/data") and tail.isdigit()


def _refuse_torchscript(path: str | os.PathLike, names: Sequence[str]) -> None:
    parts = [name.split("/") for name in names]
    if any(part[-1] == "constants.pkl" or part[1:2] == ["code"] for part in parts):
        raise UnsafeCheckpointError(path, "it is a TorchScript archive, which carries code")


def verify_checkpoint(path: str | os.PathLike) -> None:
    """Check every byte of a checkpoint file against its CRC-32s without unpickling anything.

    Raises :class:`CorruptCheckpointError` naming the file when anything is truncated or damaged.
    """
    path = Path(path)
    with _open_for_reading(path) as fd:
        layout = _read_layout(fd, path)
        with _thread_pool(layout.size) as pool:
            _verify_structure(fd, path, layout, pool)
            _verify_members(fd, path, layout, layout.members, pool)


@contextmanager
def _open_for_reading(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        yield fd
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------- loading


def _require_safe_torch() -> None:
    if torch.__version__ < MINIMUM_TORCH:
        raise RuntimeError(
            f"loading checkpoints safely needs torch >= {MINIMUM_TORCH} (weights_only loading, "
            f"CVE-2025-32434); this is torch {torch.__version__}"
        )


class _VerifyingReader(io.RawIOBase):
    """The file as torch.load reads it: each member torch reads whole is checked as it is copied."""

    def __init__(self, fd: int, path: Path, layout: _Layout, pool: _Pool | None) -> None:
        super().__init__()
        self._fd = fd
        self._path = path
        self._layout = layout
        self._pool = pool
        self._position = 0
        self._by_offset = {m.data_offset: m for m in layout.members if m.size}
        self.verified: set[str] = set()
        self.failure: CorruptCheckpointError | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._position = offset
        elif whence == io.SEEK_CUR:
            self._position += offset
        elif whence == io.SEEK_END:
            self._position = self._layout.size + offset
        else:
            raise ValueError(f"whence should be 0, 1 or 2, got {whence!r}")
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        member = self._by_offset.get(self._position)
        if member is not None and len(view) == member.size and member.name not in self.verified:
            ((crc, got),) = _crc32_of_ranges(self._fd, [(self._position, member.size)], self._pool, [view])
            try:
                _check_member(self._path, self._layout, member, crc, got)
            except CorruptCheckpointError as error:
                self.failure = error
                raise
            self.verified.add(member.name)
        else:
            got = _read_into(self._fd, view, self._position)
        self._position += got
        return got

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, self._layout.size - self._position)
        data = bytearray(size)
        got = self.readinto(data)
        return bytes(data[:got])


def _unsafe_reason(error: pickle.UnpicklingError) -> str:
    """torch's refusal in a few words, without its advice to allow-list what was refused."""
    text = str(error)
    named = re.search(r"GLOBAL ([\w.]+)", text)
    if named:
        return f"it names {named[1]}, which is not on torch's weights-only allow-list"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def load_checkpoint(path: str | os.PathLike, *, mmap: bool = False) -> Any:
    """Verify a checkpoint file and load it with ``torch.load(..., weights_only=True)``.

    Every member's CRC-32 is checked (and, for files nbengine wrote, every other byte too) before
    the result is returned. With ``mmap=True`` the tensors are backed by the file (copy-on-write)
    instead of being read into memory.

    Raises :class:`CorruptCheckpointError` for a damaged or truncated file and
    :class:`UnsafeCheckpointError` for a pickle that would run code; either names the file.
    """
    _require_safe_torch()
    if not isinstance(mmap, bool):
        raise TypeError(f"mmap should be True or False, got {mmap!r}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path should be a str or os.PathLike, got {type(path).__name__}: {path!r}")
    path = Path(path)
    with _open_for_reading(path) as fd:
        layout = _read_layout(fd, path)
        with _thread_pool(layout.size) as pool:
            _verify_structure(fd, path, layout, pool)
            # The pickle and the small records are checked before torch sees any of them.
            small = [m for m in layout.members if not _is_storage(m)]
            _verify_members(fd, path, layout, small, pool)
            if mmap:
                _verify_members(fd, path, layout, [m for m in layout.members if _is_storage(m)], pool)
                # Map the very file that was verified, even if the path is replaced meanwhile.
                same_file = f"/proc/self/fd/{fd}"
                source: Any = same_file if os.path.exists(same_file) else path
                reader = None
            else:
                reader = _VerifyingReader(fd, path, layout, pool)
                reader.verified.update(m.name for m in small)
                source = reader
            try:
                result = torch.load(source, weights_only=True, mmap=mmap)
            except pickle.UnpicklingError as error:
                raise UnsafeCheckpointError(
                    path, f"its pickle asks for more than tensors and plain data ({_unsafe_reason(error)})"
                ) from error
            except BaseException:
                if reader is not None and reader.failure is not None:
                    raise reader.failure from None
                raise
            if reader is not None:
                if reader.failure is not None:
                    raise reader.failure
                unread = [m for m in layout.members if m.name not in reader.verified]
                _verify_members(fd, path, layout, unread, pool)
    return result


# --------------------------------------------------------------------------------------- writing


class _FileSink(io.RawIOBase):
    """Where torch.save writes: every byte lands (os.write may write less than asked), and the first
    OSError is kept, because torch reports a failed write as its own RuntimeError."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self._position = 0
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._position = os.lseek(self._fd, offset, whence)
        return self._position

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        written = 0
        try:
            while written < len(view):
                written += _write_some(self._fd, view[written:])
        except OSError as error:
            if self.error is None:
                self.error = error
            raise
        self._position += written
        return written


def _write_some(fd: int, data: memoryview) -> int:
    """One write(2); the only place checkpoint bytes go to the disk."""
    return os.write(fd, data)


def _trailer_for(fd: int, path: str | os.PathLike, metadata: Mapping[str, Any]) -> tuple[_Layout, bytes]:
    """The trailer for the archive torch.save just wrote into ``fd``, and that archive's layout."""
    layout = _read_layout(fd, path)
    if layout.covered_end + 2 != layout.size:
        raise ValueError(f"{path} already ends in a zip comment; torch.save writes none")
    crc = 0
    for offset, length in layout.gaps():
        crc = zlib.crc32(_pread_exact(fd, length, offset, path, "zip structure"), crc)
    record = dict(metadata)
    record.update(format=TRAILER_FORMAT, version=TRAILER_VERSION, layout_crc32=crc)
    record.setdefault("wall_time", time.time())
    if not torch.serialization.get_crc32_options():
        # torch was told to skip member CRC-32s: compute them here so that the file stays checkable.
        with _thread_pool(layout.size) as pool:
            results = _crc32_of_ranges(fd, [(m.data_offset, m.size) for m in layout.members], pool)
        record["member_crc32"] = {m.name: crc for m, (crc, _) in zip(layout.members, results)}
    return layout, _encode_trailer(record)


TRAILER_KEYS = ("epoch", "iteration", "score", "score_name", "global_step", "priority", "name", "keys", "wall_time")


def write_checkpoint_file(fd: int, path: str | os.PathLike, obj: Any, metadata: Mapping[str, Any] | None) -> None:
    """``torch.save(obj)`` into the empty file open as ``fd``, append the trailer, fsync.

    ``path`` only names the file in errors; ``metadata`` holds some of :data:`TRAILER_KEYS`. An
    OSError from the disk (ENOSPC, EIO, ...) reaches the caller as itself, not as torch's
    RuntimeError.
    """
    metadata = dict(metadata or {})
    unknown = sorted(set(metadata) - set(TRAILER_KEYS))
    if unknown:
        raise ValueError(f"metadata has unknown keys {unknown}; expected some of {list(TRAILER_KEYS)}")
    sink = _FileSink(fd)
    try:
        torch.save(obj, sink)
    except BaseException:
        if sink.error is not None:
            # torch turns the failed write into "unexpected pos ..."; the disk's error is the news.
            raise sink.error from None
        raise
    if sink.error is not None:
        raise sink.error
    layout, trailer = _trailer_for(fd, path, metadata)
    os.lseek(fd, layout.covered_end, os.SEEK_SET)
    sink.write(struct.pack("<H", len(trailer)) + trailer)
    os.fsync(fd)
