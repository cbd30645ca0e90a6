"""``_SerialModel`` (what a single process answers) and ``_torch_version_gt_112``, under the module path
ignite's own test package imports them from."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["_SerialModel", "_torch_version_gt_112"]

# nbengine requires torch >= 2.6, so this is always true; ignite's tests read it to gate MPS checks.
_torch_version_gt_112 = True


class _SerialModel:
    """The configuration of a process outside any process group: rank 0 of 1, no backend."""

    name = "serial"
    available_backends: tuple[str, ...] = ()

    def __init__(self, _backend: str | None = None, **kwargs: Any) -> None:
        pass

    def get_local_rank(self) -> int:
        return 0

    def get_rank(self) -> int:
        return 0

    def get_world_size(self) -> int:
        return 1

    def get_nproc_per_node(self) -> int:
        return 1

    def get_nnodes(self) -> int:
        return 1

    def get_node_rank(self) -> int:
        return 0

    def backend(self) -> str | None:
        return None

    def device(self) -> torch.device:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")

    def finalize(self) -> None:
        pass
