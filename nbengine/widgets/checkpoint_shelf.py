"""Which checkpoints the panel offers, which one it selects, and how its Save button saves.

This module owns those rules, apart from any widget (it imports no ipywidgets), so they are tested
headless:

- **Listed**: only this handler's checkpoints (those its rotation keeps, from its ``last_checkpoint``
  list) and those saved with the panel's Save button; not other runs' files in the same folder,
  nor checkpoints of an earlier kernel.
- **Selected**: the checkpoint just saved or loaded; otherwise the newest whenever a new one
  appears; between those, the user's choice stays while it is listed.
- **Saved with the button**: through a second ``Checkpoint`` of the same objects into the same
  folder, under the prefix ``manual``, with no rotation: the periodic handler's rotation never
  removes them. A button save never overwrites a file: at a position already saved, it says so
  and selects that file.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from nbengine.handlers.checkpoint import Checkpoint

__all__ = ["CheckpointShelf", "MANUAL_PREFIX"]

#: File-name prefix of the checkpoints saved with the panel's Save button.
MANUAL_PREFIX = "manual"


class CheckpointShelf:
    """The checkpoints of ``checkpoint`` (a ``Checkpoint`` with a ``DiskSaver``) as the panel offers them."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        saver = checkpoint.save_handler
        # Same objects, same folder; its own name prefix and no rotation.
        self.manual = Checkpoint(checkpoint.to_save, saver, filename_prefix=MANUAL_PREFIX, n_saved=None)
        self._manual_paths: list[Path] = []
        self._selected: Path | None = None
        self._newest_seen: str | None = None
        #: Grows with each save by the button and each selection to make: the listing is then re-read.
        self.version = 0

    @property
    def folder(self) -> Path:
        return Path(self.checkpoint.save_handler.dirname)

    def _ours(self) -> set[str]:
        names = {Path(str(item.filename)).name for item in getattr(self.checkpoint, "_saved", [])}
        return names | {path.name for path in self._manual_paths}

    def listing(self) -> list[Any]:
        """``CheckpointInfo`` of this handler's and this panel's checkpoints, newest first."""
        ours = self._ours()
        return [info for info in self.checkpoint.list_checkpoints() if info.path.name in ours]

    def selection(self, listed: Sequence[Any], current: str | None) -> str | None:
        """The path to select among ``listed`` (newest first): the one just saved or loaded, else the
        newest if it is new since the last call, else the user's ``current`` choice while listed."""
        paths = [str(info.path) for info in listed]
        if not paths:
            return None
        chosen = str(self._selected) if self._selected is not None else None
        self._selected = None
        newest_is_new = paths[0] != self._newest_seen
        self._newest_seen = paths[0]
        if chosen in paths:
            return chosen
        if current in paths and not newest_is_new:
            return current
        return paths[0]

    def select(self, path: str | Path) -> None:
        """Select ``path`` at the next listing (it was just saved or loaded)."""
        self._selected = Path(path)
        self.version += 1

    def existing_at(self, iteration: int) -> Path | None:
        """A listed checkpoint of this panel's button saved at ``iteration``, if any."""
        for path in self._manual_paths:
            if path.exists() and path.name == self._manual_name(iteration):
                return path
        return None

    def _manual_name(self, iteration: int) -> str:
        name = self.manual._name_for(list(self.checkpoint.to_save))
        return self.manual._format_filename(self.manual._pattern(with_global_step=True), name, None, iteration)

    def save(self, engine: Any) -> tuple[Future, bool]:
        """Save now (at the next boundary when running). Returns the Future of the path and whether
        this is a new file (False: the position was already saved with the button, nothing written)."""
        target = self.folder / self._manual_name(engine.state.iteration)
        if engine.status != "running" and target.exists():
            done: Future = Future()
            done.set_result(target)
            self.select(target)
            return done, False
        future = self.manual.request_save(engine)
        future.add_done_callback(self._on_saved)
        return future, True

    def _on_saved(self, future: Future) -> None:
        if future.exception() is None and future.result() is not None:
            path = Path(future.result())
            if path not in self._manual_paths:
                self._manual_paths.append(path)
            self.select(path)
