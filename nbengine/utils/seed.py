"""Seeding and the global random number generators: ``manual_seed``, ``derive_seed``, and capturing,
checking and restoring the RNG states of Python, numpy, torch (CPU) and CUDA.

This module owns the one place that knows which global generators a training run draws from and how
their states are written down. States are kept as plain types (ints, lists, tuples, byte tensors),
so a state dict holding them loads with ``torch.load(weights_only=True)`` without touching torch's
allow-list of globals:

- ``"python"``: ``random.getstate()`` as ``[version, [625 ints], gauss_next]``;
- ``"numpy"``: numpy's legacy MT19937 state as a dict of ints, a list of 624 ints and a float;
- ``"torch"``: ``torch.get_rng_state()``, a uint8 tensor;
- ``"cuda"``: ``torch.cuda.get_rng_state_all()``, one uint8 tensor per device, only when CUDA is
  available.

>>> manual_seed(7)
>>> states = get_rng_states()
>>> first = (random.random(), torch.rand(1).item())
>>> set_rng_states(states)
>>> (random.random(), torch.rand(1).item()) == first
True
"""

from __future__ import annotations

import numbers
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

__all__ = [
    "check_rng_states",
    "derive_seed",
    "get_rng_states",
    "manual_seed",
    "preserve_random_state",
    "set_rng_states",
]

_MASK64 = (1 << 64) - 1
_NUMPY_SEED_MODULUS = 1 << 32
_PYTHON_STATE_WORDS = 625
_NUMPY_KEY_WORDS = 624


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:  # numpy is optional for the engine: without it there is no numpy RNG to keep
        return None
    return numpy


def _check_seed(seed: Any, name: str) -> int:
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or not 0 <= seed < (1 << 64):
        raise ValueError(f"{name} should be an integer in [0, 2**64), got {seed!r}")
    return int(seed)


def manual_seed(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator, torch (CPU) and every CUDA device (and
    MPS or XPU when present).

    numpy only takes 32-bit seeds, so it receives ``seed % 2**32``; the others take ``seed`` as is.
    The accelerators are seeded only when available: ``torch.manual_seed`` queues a lazy seeding of
    each backend even on a machine without it, which costs about 0.1-0.3 ms, and the
    DeterministicEngine seeds every epoch.

    >>> manual_seed(56)
    >>> a = (random.random(), torch.rand(1).item())
    >>> manual_seed(56)
    >>> (random.random(), torch.rand(1).item()) == a
    True
    """
    seed = _check_seed(seed, "seed")
    random.seed(seed)
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_available():
        # Lazy: an uninitialised CUDA is seeded when it initialises, not initialised by this.
        torch.cuda.manual_seed_all(seed)
    if torch.backends.mps.is_available():
        torch.mps.manual_seed(seed)
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        torch.xpu.manual_seed_all(seed)
    numpy = _numpy()
    if numpy is not None:
        numpy.random.seed(seed % _NUMPY_SEED_MODULUS)


def _splitmix64(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def derive_seed(seed: int, *keys: int) -> int:
    """A seed in ``[0, 2**63)`` that is a pure function of ``seed`` and the integer ``keys``.

    Seeds derived from neighbouring keys (epoch 4 and epoch 5) are unrelated, unlike ``seed + epoch``,
    which makes epoch 5 of seed 1 the epoch 4 of seed 2. Used to give each epoch and each stream
    (sampler, loader workers, global generators) its own seed.

    >>> derive_seed(56, 1, 3) == derive_seed(56, 1, 3)
    True
    >>> derive_seed(56, 1, 3) != derive_seed(56, 1, 4)
    True
    """
    value = _splitmix64(_check_seed(seed, "seed"))
    for index, key in enumerate(keys):
        if not isinstance(key, numbers.Integral) or isinstance(key, bool):
            raise TypeError(f"keys[{index}] should be an integer, got {key!r} of type {type(key).__name__}")
        value = _splitmix64(value ^ (int(key) & _MASK64))
    return value >> 1


def get_rng_states() -> dict[str, Any]:
    """The states of the global generators, as plain types (see the module docstring)."""
    version, words, gauss_next = random.getstate()
    states: dict[str, Any] = {"python": [version, list(words), gauss_next], "torch": torch.get_rng_state()}
    numpy = _numpy()
    if numpy is not None:
        state = numpy.random.get_state(legacy=False)
        states["numpy"] = {
            "bit_generator": state["bit_generator"],
            "key": state["state"]["key"].tolist(),
            "pos": int(state["state"]["pos"]),
            "has_gauss": int(state["has_gauss"]),
            "cached_gaussian": float(state["gauss"]),
        }
    if torch.cuda.is_available():
        states["cuda"] = list(torch.cuda.get_rng_state_all())
    return states


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_rng_states(states: Any, name: str = "rng_states") -> None:
    """Raise a ``TypeError``/``ValueError`` naming ``name`` unless ``states`` is what
    ``get_rng_states`` returns (entries may be missing; unknown entries are refused)."""
    if not isinstance(states, Mapping):
        raise TypeError(
            f"{name} should be a dict as returned by get_rng_states(), got {type(states).__name__}"
        )
    unknown = sorted(set(states) - {"python", "numpy", "torch", "cuda"})
    if unknown:
        raise ValueError(f"{name} has unknown entries {unknown}; expected some of 'python', 'numpy', 'torch', 'cuda'")
    if "python" in states:
        value = states["python"]
        if (
            not isinstance(value, (list, tuple))
            or len(value) != 3
            or not _is_int(value[0])
            or not isinstance(value[1], (list, tuple))
            or len(value[1]) != _PYTHON_STATE_WORDS
            or not (value[2] is None or isinstance(value[2], float))
        ):
            raise ValueError(
                f"{name}['python'] should be [version, {_PYTHON_STATE_WORDS} ints, gauss_next] as from "
                f"random.getstate(), got {_describe(value)}"
            )
    if "numpy" in states:
        value = states["numpy"]
        expected = {"bit_generator", "key", "pos", "has_gauss", "cached_gaussian"}
        if (
            not isinstance(value, Mapping)
            or set(value) != expected
            or value["bit_generator"] != "MT19937"
            or not isinstance(value["key"], (list, tuple))
            or len(value["key"]) != _NUMPY_KEY_WORDS
            or not _is_int(value["pos"])
        ):
            raise ValueError(
                f"{name}['numpy'] should be a dict with keys {sorted(expected)} describing an MT19937 "
                f"state with {_NUMPY_KEY_WORDS} key words, got {_describe(value)}"
            )
    if "torch" in states:
        value = states["torch"]
        if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8 or value.dim() != 1:
            raise ValueError(
                f"{name}['torch'] should be a 1-d uint8 tensor as from torch.get_rng_state(), got {_describe(value)}"
            )
    if "cuda" in states:
        value = states["cuda"]
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(t, torch.Tensor) and t.dtype == torch.uint8 for t in value
        ):
            raise ValueError(
                f"{name}['cuda'] should be a list of uint8 tensors as from torch.cuda.get_rng_state_all(), "
                f"got {_describe(value)}"
            )


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of dtype {value.dtype} and shape {tuple(value.shape)}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of length {len(value)}"
    if isinstance(value, Mapping):
        return f"a dict with keys {sorted(map(str, value))}"
    return f"{value!r} of type {type(value).__name__}"


def set_rng_states(states: Mapping[str, Any]) -> None:
    """Restore what ``get_rng_states`` captured. Entries that are missing leave their generator as is;
    a ``"cuda"`` entry is ignored when CUDA is not available (a checkpoint from a GPU machine loads on
    a CPU one)."""
    check_rng_states(states)
    numpy = _numpy()
    if "numpy" in states and numpy is None:
        raise ValueError("rng_states holds a numpy state but numpy cannot be imported here")
    if "python" in states:
        version, words, gauss_next = states["python"]
        random.setstate((int(version), tuple(int(w) for w in words), gauss_next))
    if "torch" in states:
        torch.set_rng_state(states["torch"].cpu())
    if "numpy" in states:
        value = states["numpy"]
        numpy.random.set_state(
            (
                "MT19937",
                numpy.asarray(value["key"], dtype=numpy.uint32),
                int(value["pos"]),
                int(value["has_gauss"]),
                float(value["cached_gaussian"]),
            )
        )
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in states["cuda"]])


@contextmanager
def preserve_random_state() -> Iterator[None]:
    """Run the ``with`` body, then put every global generator back as it was, even if the body raised.

    >>> manual_seed(3)
    >>> with preserve_random_state():
    ...     _ = torch.rand(100)
    >>> after = torch.rand(1).item()
    >>> manual_seed(3)
    >>> torch.rand(1).item() == after
    True
    """
    states = get_rng_states()
    try:
        yield
    finally:
        set_rng_states(states)
