"""ignite-shaped names and behaviours that ignite's own code and tests rely on: the RNG helpers in
ignite's list form (``nbengine.engine._ignite_compat``, importable from ``nbengine.engine.deterministic``),
``ReproducibleBatchSampler`` used on its own (no seed: the wrapped sampler's passes, drawn from the
global generators) and ``update_dataloader``'s refusals."""

import random

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, WeightedRandomSampler

from nbengine.engine.deterministic import (
    ReproducibleBatchSampler,
    _get_rng_states,
    _repr_rng_state,
    _set_rng_states,
    update_dataloader,
)
from nbengine.utils.seed import get_rng_states, manual_seed


def draws():
    return (random.random(), torch.rand(2).tolist(), np.random.rand(2).tolist())


def test_rng_states_in_ignite_list_form_round_trip():
    manual_seed(5)
    states = _get_rng_states()
    assert len(states) == 3
    assert states[0] == random.getstate()
    assert torch.equal(states[1], torch.get_rng_state())
    assert states[2][0] == "MT19937"
    first = draws()
    draws()
    _set_rng_states(states)
    assert draws() == first


def test_set_rng_states_takes_nbengine_dicts_too():
    manual_seed(6)
    states = get_rng_states()
    first = draws()
    _set_rng_states(states)
    assert draws() == first


def test_set_rng_states_without_numpy_state_leaves_numpy_alone():
    manual_seed(7)
    states = _get_rng_states()[:2]
    first_torch = torch.rand(1).item()
    np.random.seed(1)
    expected_numpy = np.random.rand()
    np.random.seed(1)
    _set_rng_states(states)
    assert torch.rand(1).item() == first_torch
    assert np.random.rand() == expected_numpy


@pytest.mark.parametrize(
    ("states", "match"),
    [
        ("abc", r"^rng_states should be a list \[python state, torch state\(, numpy state\)\] as from "
                r"_get_rng_states\(\) or a dict as from nbengine\.utils\.seed\.get_rng_states\(\), got 'abc'$"),
        ([random.getstate()], r"rng_states should be a list .* got \[\("),
        ([random.getstate(), "torch"], r"^rng_states\[1\] should be the torch state \(a uint8 tensor from "
                                       r"torch\.get_rng_state\(\)\), got str$"),
    ],
)
def test_set_rng_states_refuses_what_is_not_a_state(states, match):
    with pytest.raises(TypeError, match=match):
        _set_rng_states(states)


def test_repr_rng_state_is_one_md5_per_generator_and_follows_the_state():
    manual_seed(8)
    text = _repr_rng_state(_get_rng_states())
    parts = text.split(" ")
    assert len(parts) == 3 and all(len(part) == 32 and int(part, 16) >= 0 for part in parts)
    assert _repr_rng_state(_get_rng_states()) == text
    torch.rand(1)
    changed = _repr_rng_state(_get_rng_states()).split(" ")
    assert changed[0] == parts[0] and changed[1] != parts[1] and changed[2] == parts[2]
    assert len(_repr_rng_state(get_rng_states()).split(" ")) == len(get_rng_states())


# ReproducibleBatchSampler on its own, as ignite's docs use it.


def shuffled_loader(**options):
    return DataLoader(torch.arange(40), batch_size=4, shuffle=True, drop_last=True, **options)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_without_a_seed_the_wrapped_loader_gives_the_original_loaders_batches(num_workers):
    loader = shuffled_loader(num_workers=num_workers)
    torch.manual_seed(12)
    original = [[b.tolist() for b in loader] for _ in range(3)]
    wrapped = update_dataloader(loader, ReproducibleBatchSampler(loader.batch_sampler))
    torch.manual_seed(12)
    assert [[b.tolist() for b in wrapped] for _ in range(3)] == original
    assert original[0] != original[1] != original[2]


def test_without_a_seed_a_pass_restarts_at_start_iteration_from_the_same_global_seed():
    loader = shuffled_loader()
    sampler = ReproducibleBatchSampler(loader.batch_sampler)
    wrapped = update_dataloader(loader, sampler)
    torch.manual_seed(3)
    full = [b.tolist() for b in wrapped]
    torch.manual_seed(3)
    sampler.start_iteration = 4
    assert [b.tolist() for b in wrapped] == full[4:]
    assert sampler.start_iteration is None
    torch.manual_seed(3)
    assert [b.tolist() for b in wrapped] == full


def test_without_a_seed_nothing_is_drawn_before_the_first_batch_is_asked_for():
    sampler = ReproducibleBatchSampler(BatchSampler(RandomSampler(range(10)), 3, False))
    torch.manual_seed(0)
    before = torch.get_rng_state()
    iterator = iter(sampler)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(0)
    expected = list(BatchSampler(RandomSampler(range(10)), 3, False))
    torch.manual_seed(0)
    assert list(iterator) == expected


def test_without_a_seed_batches_are_what_the_wrapped_sampler_yields_now():
    weighted = BatchSampler(WeightedRandomSampler(torch.ones(8), 8), 4, False)
    sampler = ReproducibleBatchSampler(weighted)
    torch.manual_seed(1)
    first = sampler.batches()
    torch.manual_seed(1)
    assert sampler.batches() == first
    assert sampler.batches() != first  # the next draw of the global generator
    torch.manual_seed(1)
    assert list(sampler) == first
    assert ReproducibleBatchSampler(BatchSampler(SequentialSampler(range(5)), 2, False)).batches() == [[0, 1], [2, 3], [4]]


def test_a_seed_set_later_makes_the_passes_pure_functions_of_seed_and_epoch():
    sampler = ReproducibleBatchSampler(BatchSampler(RandomSampler(range(12)), 4, False))
    sampler.seed = 9
    torch.manual_seed(0)
    first = list(sampler)
    torch.manual_seed(1)
    assert list(sampler) == first == ReproducibleBatchSampler(sampler, seed=9).batches(0)
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.seed = None
    torch.manual_seed(0)
    unseeded = list(sampler)
    torch.manual_seed(0)
    assert unseeded == list(BatchSampler(RandomSampler(range(12)), 4, False))


@pytest.mark.parametrize("value", ["abc", b"abc", {0: [0]}, 5])
def test_a_batch_sampler_that_is_no_batch_sampler_is_refused_with_ignites_words(value):
    with pytest.raises(
        TypeError,
        match=r"^Argument batch_sampler should be torch\.utils\.data\.sampler\.BatchSampler or another batch sampler "
        r"\(batch_sampler should be an iterable of batches of indices\), got .* of type ",
    ):
        ReproducibleBatchSampler(value)


class WrappingLoader(DataLoader):
    """A DataLoader subclass that never calls DataLoader.__init__ (so it has no dataset), as older code does."""

    def __init__(self, loader):
        self.loader = loader
        self.sampler = loader.sampler
        self.batch_sampler = loader.batch_sampler

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        return iter(self.loader)


def test_update_dataloader_refuses_a_loader_without_a_dataset():
    loader = WrappingLoader(DataLoader(torch.arange(8), batch_size=4))
    with pytest.raises(
        TypeError,
        match=r"^dataloader of type WrappingLoader has no dataset attribute, so it cannot be rebuilt with another "
        r"batch sampler; give a DataLoader made by DataLoader.__init__$",
    ):
        update_dataloader(loader, ReproducibleBatchSampler(loader.batch_sampler))
