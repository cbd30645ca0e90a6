"""DiskSaver: durable checkpoint files in one folder, and the listing the checkpoint dropdown reads.

A save writes a temporary file in the target folder (a hidden name ending in ``.nbtmp`` that holds the
writer's process id), fsyncs it, ``os.replace``-s it over the final name and fsyncs the folder, so a
process killed at any point leaves either the old file or the new one, whole. Temporary files are never
listed; those left by dead processes are removed when a DiskSaver is created and after each save.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from nbengine.handlers.checkpoint_saver import BaseSaveHandler
from nbengine.handlers.checkpoint_file import (
    CheckpointError,
    CheckpointInfo,
    read_checkpoint_info,
    write_checkpoint_file,
)

__all__ = ["DiskSaver", "list_checkpoints"]

_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)-(?P<token>[0-9a-f]{8})\.nbtmp$")
# A writer touches its temporary file continuously; one untouched this long belongs to nobody.
_ABANDONED_AFTER_S = 3600.0
_FILE_MODE = 0o666


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is a DiskSaver temporary file (never a committed checkpoint)."""
    return _TEMPORARY.match(name) is not None


def _temporary_name(filename: str) -> str:
    return f".{filename}.{os.getpid()}-{secrets.token_hex(4)}.nbtmp"


def _process_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there; rely on the age rule
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_directory(dirname: Path) -> None:
    if not hasattr(os, "O_DIRECTORY"):  # Windows cannot open a folder; NTFS journals the rename
        return
    fd = os.open(dirname, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(dirname: str | os.PathLike) -> list[Path]:
    """Remove temporary files left in ``dirname`` by writers that died; returns what was removed.

    A temporary file is stale when the process named in it is gone, or when nobody has written to it
    for an hour. Files being written by live processes are left alone.
    """
    removed = []
    now = time.time()
    with os.scandir(dirname) as entries:
        for entry in entries:
            match = _TEMPORARY.match(entry.name)
            if match is None or not entry.is_file(follow_symlinks=False):
                continue
            try:
                age = now - entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:  # its writer committed or removed it meanwhile
                continue
            if _process_alive(int(match["pid"])) and age < _ABANDONED_AFTER_S:
                continue
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            removed.append(Path(entry.path))
    return removed


def list_checkpoints(dirname: str | os.PathLike) -> list[CheckpointInfo]:
    """Committed nbengine checkpoints in ``dirname``, newest first.

    Reads only each file's trailer (a few kilobytes), never the tensors. Temporary files, files that
    nbengine did not write and files whose trailer is damaged are left out; loading such a file says
    what is wrong with it.
    """
    if not isinstance(dirname, (str, os.PathLike)):
        raise TypeError(f"dirname should be a str or os.PathLike, got {type(dirname).__name__}: {dirname!r}")
    found = []
    with os.scandir(dirname) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file():
                continue
            try:
                found.append(read_checkpoint_info(entry.path))
            except (CheckpointError, FileNotFoundError):
                continue
    found.sort(key=lambda info: (info.wall_time, info.iteration or 0, info.path.name), reverse=True)
    return found


class DiskSaver(BaseSaveHandler):
    """Save handler that writes each checkpoint durably into the folder ``dirname``.

    Args:
        dirname: the folder for the checkpoint files.
        atomic: write a temporary file, fsync it and ``os.replace`` it over the final name (the
            default). With False the final file is written in place, and a crash can leave it torn.
        create_dir: create ``dirname`` (and its parents) when missing.
        require_empty: refuse a folder that already holds ``.pt`` files.
        save_on_rank: in a ``torch.distributed`` job, the rank that checks the folder, writes and
            removes files (0 by default, as in ignite); on the other ranks calls do nothing.

    Called as ``saver(checkpoint, filename, metadata=None)`` by
    :class:`~nbengine.handlers.Checkpoint`; ``remove(filename)`` deletes a file it saved.
    """

    def __init__(
        self,
        dirname: str | os.PathLike,
        atomic: bool = True,
        create_dir: bool = True,
        require_empty: bool = True,
        save_on_rank: int = 0,
    ) -> None:
        if not isinstance(save_on_rank, int) or isinstance(save_on_rank, bool) or save_on_rank < 0:
            raise ValueError(f"save_on_rank should be a non-negative int, got {save_on_rank!r}")
        self.save_on_rank = save_on_rank
        if not isinstance(dirname, (str, os.PathLike)):
            raise TypeError(f"dirname should be a str or os.PathLike, got {type(dirname).__name__}: {dirname!r}")
        for name, value in (("atomic", atomic), ("create_dir", create_dir), ("require_empty", require_empty)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} should be True or False, got {value!r}")
        self.dirname = Path(dirname).expanduser()
        self._atomic = atomic
        if not self._on_save_rank():
            return
        if create_dir:
            self.dirname.mkdir(parents=True, exist_ok=True)
        if not self.dirname.is_dir():
            raise ValueError(
                f"Directory path '{self.dirname}' is not found: dirname should be an existing directory; pass "
                "create_dir=True to create it"
            )
        remove_stale_temporaries(self.dirname)
        if require_empty:
            present = sorted(
                entry.name
                for entry in os.scandir(self.dirname)
                if entry.name.endswith(".pt") and not entry.name.startswith(".")
            )
            if present:
                raise ValueError(
                    f"Files {present} with extension '.pt' are already present in the directory {self.dirname}: "
                    "dirname should hold no checkpoint yet. Pass require_empty=False to save there anyway"
                )

    def __repr__(self) -> str:
        return f"DiskSaver({str(self.dirname)!r}, atomic={self._atomic})"

    def _path_of(self, filename: Any) -> Path:
        if (
            not isinstance(filename, str)
            or not filename
            or filename in (".", "..")
            or filename.startswith(".")
            or "/" in filename
            or (os.altsep and os.altsep in filename)
            or os.sep in filename
        ):
            raise ValueError(
                f"filename should be a plain file name, not hidden and without a folder, got {filename!r}"
            )
        return self.dirname / filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> Path:
        """Write ``checkpoint`` to ``dirname/filename`` durably; returns the path.

        ``metadata`` may hold epoch, iteration, score, score_name, global_step, priority, name and
        keys; they go into the trailer that :func:`list_checkpoints` reads. An OSError while writing
        (a full disk, ...) leaves every earlier file as it was, removes the temporary file and
        reaches the caller unchanged.
        """
        path = self._path_of(filename)
        if not self._on_save_rank():
            return path
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata should be a mapping or None, got {type(metadata).__name__}: {metadata!r}")
        trailer = {key: _plain(key, value) for key, value in (metadata or {}).items() if key in _TRAILER_FIELDS}
        trailer["wall_time"] = time.time()
        if not self._atomic:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), _FILE_MODE)
            try:
                write_checkpoint_file(fd, path, checkpoint, trailer)
            finally:
                os.close(fd)
            _fsync_directory(self.dirname)
            return path
        temporary = self.dirname / _temporary_name(filename)
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), _FILE_MODE)
        committed = False
        try:
            try:
                write_checkpoint_file(fd, path, checkpoint, trailer)
            finally:
                os.close(fd)
            os.replace(temporary, path)
            committed = True
        finally:
            if not committed:
                temporary.unlink(missing_ok=True)
        _fsync_directory(self.dirname)
        remove_stale_temporaries(self.dirname)
        return path

    def remove(self, filename: str) -> None:
        """Delete ``dirname/filename``; one already gone is not an error."""
        path = self._path_of(filename)
        if self._on_save_rank():
            path.unlink(missing_ok=True)

    def _on_save_rank(self) -> bool:
        distributed = torch.distributed
        rank = distributed.get_rank() if distributed.is_available() and distributed.is_initialized() else 0
        return rank == self.save_on_rank

    def list_checkpoints(self) -> list[CheckpointInfo]:
        """Committed checkpoints in ``dirname``, newest first (see :func:`list_checkpoints`)."""
        return list_checkpoints(self.dirname)


def _plain(key: str, value: Any) -> Any:
    """A metadata value as JSON: numbers, strings, None, or (for keys) a list of strings."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if key == "keys" and isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return list(value)
    raise TypeError(
        f"metadata[{key!r}] should be a number, a string or None, got {type(value).__name__}: {value!r}"
    )


_TRAILER_FIELDS = ("epoch", "iteration", "score", "score_name", "global_step", "priority", "name", "keys")
