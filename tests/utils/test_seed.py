"""manual_seed, derive_seed and the RNG state helpers: exact draws, plain-type states that load with
``weights_only=True``, restoration even when the body raises, and the error table."""

from __future__ import annotations

import doctest
import random

import numpy as np
import pytest
import torch

import nbengine.utils.seed as seed_module
from nbengine.utils import (
    check_rng_states,
    derive_seed,
    get_rng_states,
    manual_seed,
    preserve_random_state,
    set_rng_states,
)


def draws() -> tuple:
    return (random.random(), float(np.random.rand()), torch.rand(3).tolist(), torch.randint(0, 10**9, (1,)).item())


def test_module_doctests_pass():
    result = doctest.testmod(seed_module)
    assert result.attempted >= 10 and result.failed == 0


def test_manual_seed_makes_python_numpy_and_torch_draw_the_same():
    manual_seed(56)
    first = draws()
    manual_seed(56)
    assert draws() == first
    manual_seed(57)
    assert draws() != first


def test_manual_seed_gives_numpy_the_seed_modulo_2_to_the_32():
    manual_seed(2**32 + 5)
    wide = float(np.random.rand())
    np.random.seed(5)
    assert float(np.random.rand()) == wide


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_manual_seed_seeds_cuda():
    manual_seed(9)
    first = torch.rand(4, device="cuda").tolist()
    manual_seed(9)
    assert torch.rand(4, device="cuda").tolist() == first


def test_get_and_set_rng_states_round_trip():
    manual_seed(3)
    states = get_rng_states()
    first = draws()
    _ = draws()
    set_rng_states(states)
    assert draws() == first


def test_rng_states_are_plain_types():
    states = get_rng_states()
    version, words, gauss_next = states["python"]
    assert isinstance(version, int) and isinstance(words, list) and len(words) == 625
    assert all(type(w) is int for w in words) and (gauss_next is None or type(gauss_next) is float)
    numpy_state = states["numpy"]
    assert set(numpy_state) == {"bit_generator", "key", "pos", "has_gauss", "cached_gaussian"}
    assert type(numpy_state["key"]) is list and all(type(k) is int for k in numpy_state["key"])
    assert type(numpy_state["pos"]) is int and type(numpy_state["cached_gaussian"]) is float
    assert states["torch"].dtype == torch.uint8
    assert ("cuda" in states) == torch.cuda.is_available()


def test_rng_states_load_with_weights_only_and_leave_the_allow_list_alone(tmp_path):
    allowed_before = list(torch.serialization.get_safe_globals())
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    random.gauss(0, 1)
    states = get_rng_states()
    expected = draws()
    path = tmp_path / "rng.pt"
    torch.save(states, path)
    loaded = torch.load(path, weights_only=True)
    assert list(torch.serialization.get_safe_globals()) == allowed_before
    manual_seed(0)
    set_rng_states(loaded)
    assert draws() == expected


def test_set_rng_states_leaves_missing_generators_alone():
    manual_seed(4)
    torch_only = {"torch": get_rng_states()["torch"]}
    expected_torch = torch.rand(2).tolist()
    manual_seed(5)
    python_before = random.getstate()
    set_rng_states(torch_only)
    assert torch.rand(2).tolist() == expected_torch
    assert random.getstate() == python_before


def test_preserve_random_state_restores_after_the_body_and_after_an_exception():
    manual_seed(11)
    expected = draws()
    manual_seed(11)
    with preserve_random_state():
        draws()
    assert draws() == expected
    manual_seed(11)
    with pytest.raises(ZeroDivisionError):
        with preserve_random_state():
            draws()
            _ = 1 / 0
    assert draws() == expected


def test_derive_seed_is_a_pure_function_in_range():
    seeds = {derive_seed(56, 4, epoch) for epoch in range(1000)}
    assert len(seeds) == 1000
    assert all(0 <= s < 2**63 for s in seeds)
    assert derive_seed(56, 4, 7) == derive_seed(56, 4, 7)
    assert derive_seed(56, 4, 7) != derive_seed(57, 4, 6)  # unlike seed + epoch
    assert derive_seed(56) != derive_seed(56, 0)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: manual_seed(-1), ValueError, r"seed should be an integer in \[0, 2\*\*64\), got -1"),
        (lambda: manual_seed(1.5), ValueError, r"seed should be an integer in \[0, 2\*\*64\), got 1.5"),
        (lambda: manual_seed(True), ValueError, r"got True"),
        (lambda: derive_seed(1, "a"), TypeError, r"keys\[0\] should be an integer, got 'a' of type str"),
        (lambda: check_rng_states([1, 2]), TypeError, r"rng_states should be a dict as returned by get_rng_states\(\), got list"),
        (lambda: check_rng_states({"jax": 1}), ValueError, r"rng_states has unknown entries \['jax'\]"),
        (lambda: check_rng_states({"python": (3, (1, 2), None)}), ValueError, r"rng_states\['python'\] should be \[version, 625 ints, gauss_next\].*a tuple of length 3"),
        (lambda: check_rng_states({"numpy": {"key": []}}), ValueError, r"rng_states\['numpy'\] should be a dict with keys"),
        (lambda: check_rng_states({"torch": torch.zeros(3)}), ValueError, r"rng_states\['torch'\] should be a 1-d uint8 tensor.*dtype torch.float32"),
        (lambda: check_rng_states({"cuda": [1]}, "state['x']"), ValueError, r"state\['x'\]\['cuda'\] should be a list of uint8 tensors"),
        (lambda: set_rng_states({"torch": "x"}), ValueError, r"rng_states\['torch'\] should be a 1-d uint8 tensor.*'x' of type str"),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
