"""``hash_checkpoint``: rename a checkpoint to ``<name>-<first 8 hex digits of its SHA-256>.pt``.

That is the name ``torch.hub.load_state_dict_from_url(check_hash=True)`` verifies. Same name and
behaviour as ``ignite.utils.hash_checkpoint``.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

__all__ = ["hash_checkpoint"]

_BLOCK = 1 << 20


def hash_checkpoint(checkpoint_path: str | Path, output_dir: str | Path) -> tuple[Path, str]:
    """Move ``checkpoint_path`` into ``output_dir`` (created if needed) under its hashed name.

    Returns the new path and the full SHA-256 hex digest.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "model.pt").write_bytes(b"weights")
    >>> path, digest = hash_checkpoint(folder / "model.pt", folder / "hashed")
    >>> path.name == f"model-{digest[:8]}.pt", path.exists(), (folder / "model.pt").exists()
    (True, True, False)
    """
    checkpoint_path = Path(checkpoint_path)
    if not checkpoint_path.exists():
        raise FileNotFoundError(f"{checkpoint_path.name} does not exist in {checkpoint_path.parent}.")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with checkpoint_path.open("rb") as file:
        for block in iter(lambda: file.read(_BLOCK), b""):
            digest.update(block)
    sha_hash = digest.hexdigest()
    hashed_path = output_dir / f"{checkpoint_path.stem}-{sha_hash[:8]}.pt"
    shutil.move(str(checkpoint_path), hashed_path)
    return hashed_path, sha_hash
