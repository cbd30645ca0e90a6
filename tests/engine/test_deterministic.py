"""DeterministicEngine, ReproducibleBatchSampler, keep_random_state, update_dataloader.

The central property: a run resumed from a checkpoint taken at any iteration (epoch boundary or
mid-epoch) fetches exactly the remaining batches of the uninterrupted run, and no others, and ends
with bit-exact weights (CPU, the thread count the checkpoint recorded). The model has dropout, so the
global RNG matters too.
"""

from __future__ import annotations

import copy
import doctest
import random

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, WeightedRandomSampler

import nbengine.engine.deterministic as deterministic_module
from nbengine.engine import Events
from nbengine.engine.deterministic import (
    DeterministicEngine,
    ReproducibleBatchSampler,
    keep_random_state,
    update_dataloader,
)
from nbengine.utils import manual_seed


@pytest.fixture(autouse=True)
def one_thread():
    """Bit-exactness needs a fixed thread count; one thread also keeps these tiny models fast on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Indexed(Dataset):
    """Sample i is (features, label, i); every fetch is logged. With ``noise`` each fetch adds
    torch.rand noise, drawn wherever the fetch runs (a worker, or the main process)."""

    def __init__(self, size: int, noise: bool = False) -> None:
        generator = torch.Generator().manual_seed(0)
        self.features = torch.randn(size, 4, generator=generator)
        self.labels = torch.randint(0, 3, (size,), generator=generator)
        self.noise = noise
        self.fetched: list[int] = []

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int):
        self.fetched.append(index)
        x = self.features[index]
        if self.noise:
            x = x + 0.01 * torch.rand(4)
        return x, self.labels[index], index


class Training:
    """A model with dropout and momentum SGD on a DeterministicEngine; logs (iteration, indices)."""

    def __init__(self, seed: int = 123) -> None:
        torch.manual_seed(1)
        self.model = torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(8, 3)
        )
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        self.seen: list[tuple[int, list[int]]] = []
        self.engine = DeterministicEngine(self._step, seed=seed)

    def _step(self, engine, batch):
        x, y, index = batch
        self.seen.append((engine.state.iteration, index.tolist()))
        self.model.train()
        self.optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def checkpoint(self) -> dict:
        return {
            "engine": self.engine.state_dict(),
            "model": copy.deepcopy(self.model.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
        }

    def load(self, checkpoint: dict) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(copy.deepcopy(checkpoint["optimizer"]))
        self.engine.load_state_dict(checkpoint["engine"])

    def weights(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.model.parameters()]


def run_with_checkpoints(make_loader, max_epochs: int = 3) -> tuple[Training, dict[int, dict]]:
    training = Training()
    checkpoints: dict[int, dict] = {}
    training.engine.add_event_handler(Events.STARTED, lambda e: checkpoints.setdefault(0, training.checkpoint()))
    training.engine.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: checkpoints.__setitem__(e.state.iteration, training.checkpoint())
    )
    training.engine.run(make_loader(), max_epochs=max_epochs)
    return training, checkpoints


def resume(checkpoint: dict, make_loader) -> Training:
    training = Training(seed=999)  # the checkpoint's seed wins over the constructor's
    training.load(checkpoint)
    training.engine.run(make_loader())
    return training


def assert_same_weights(a: Training, b: Training) -> None:
    for wa, wb in zip(a.weights(), b.weights()):
        assert torch.equal(wa, wb)


# ---------------------------------------------------------------------------------------------- docs


def test_module_doctests_pass():
    result = doctest.testmod(deterministic_module)
    assert result.attempted >= 10 and result.failed == 0


def test_the_seed_documentation_example_resumes_epoch_2_with_the_same_batches():
    """pytorch-ignite's "Dataflow synchronization" example: manual_seed(56), 40 shuffled items,
    2 epochs of 5 iterations, then load_state_dict({"epoch": 1, ...}) and run again."""

    def random_train_data_loader(size):
        data = torch.arange(0, size)
        return DataLoader(data, batch_size=4, shuffle=True)

    printed = []

    def print_train_data(engine, batch):
        printed.append(("train", engine.state.epoch, engine.state.iteration, batch.tolist()))

    trainer = DeterministicEngine(print_train_data)

    manual_seed(56)
    trainer.run(random_train_data_loader(40), max_epochs=2, epoch_length=5)
    original = list(printed)
    printed.clear()

    trainer.load_state_dict({"epoch": 1, "epoch_length": 5, "max_epochs": 2, "rng_states": None})
    manual_seed(56)
    trainer.run(random_train_data_loader(40))

    assert [line[1:3] for line in original] == [(1, 1), (1, 2), (1, 3), (1, 4), (1, 5), (2, 6), (2, 7), (2, 8), (2, 9), (2, 10)]
    assert printed == original[5:]
    # Two epochs of 5 batches of 4 are the 40 items, each once: epoch 2 continues the same pass.
    assert sorted(i for line in original for i in line[3]) == list(range(40))


# ---------------------------------------------------------------------------------------------- resume


def test_resuming_at_every_iteration_reproduces_the_remaining_batches_and_bit_exact_weights():
    dataset = Indexed(18)  # 5 batches of 4, 4, 4, 4, 2 per epoch

    def make_loader():
        return DataLoader(dataset, batch_size=4, shuffle=True)

    original, checkpoints = run_with_checkpoints(make_loader)
    assert sorted(checkpoints) == list(range(16))
    assert len(original.seen) == 15
    # Each epoch is a permutation of the dataset, and the three epochs differ.
    epochs = [sorted(i for _, batch in original.seen[e * 5 : e * 5 + 5] for i in batch) for e in range(3)]
    assert epochs == [list(range(18))] * 3
    assert len({tuple(i for _, b in original.seen[e * 5 : e * 5 + 5] for i in b) for e in range(3)}) == 3
    for iteration in range(15):  # the checkpoint at 15 is of a finished run: run() would start anew
        resumed = resume(checkpoints[iteration], make_loader)
        assert resumed.seen == original.seen[iteration:], f"resumed at iteration {iteration}"
        assert_same_weights(resumed, original)
        assert resumed.engine.state.iteration == 15 and resumed.engine.state.epoch == 3


def test_skipped_batches_are_not_fetched():
    dataset = Indexed(18)

    def make_loader():
        return DataLoader(dataset, batch_size=4, shuffle=True)

    original, checkpoints = run_with_checkpoints(make_loader)
    dataset.fetched.clear()
    resumed = resume(checkpoints[7], make_loader)
    assert dataset.fetched == [i for _, batch in original.seen[7:] for i in batch]
    assert resumed.seen == original.seen[7:]


def test_a_checkpoint_loads_back_with_weights_only_from_a_real_file(tmp_path):
    allowed_before = list(torch.serialization.get_safe_globals())
    dataset = Indexed(18)

    def make_loader():
        return DataLoader(dataset, batch_size=4, shuffle=True)

    original, checkpoints = run_with_checkpoints(make_loader)
    for iteration in (3, 5, 12):
        path = tmp_path / f"checkpoint_{iteration}.pt"
        torch.save(checkpoints[iteration], path)
        loaded = torch.load(path, weights_only=True)
        assert loaded["engine"]["seed"] == 123
        resumed = resume(loaded, make_loader)
        assert resumed.seen == original.seen[iteration:]
        assert_same_weights(resumed, original)
    assert list(torch.serialization.get_safe_globals()) == allowed_before


def test_state_dict_holds_seed_rng_states_thread_count_and_data_length():
    training = Training()
    loader = DataLoader(Indexed(18), batch_size=4, shuffle=True)
    training.engine.run(loader, max_epochs=1)
    state_dict = training.engine.state_dict()
    assert list(state_dict) == [
        "epoch_length", "iteration", "max_epochs", "seed", "rng_states", "num_threads", "data_length", "dataset_length"
    ]
    assert (state_dict["seed"], state_dict["num_threads"], state_dict["data_length"], state_dict["dataset_length"]) == (
        123, torch.get_num_threads(), 5, 18
    )
    assert set(state_dict["rng_states"]) >= {"python", "numpy", "torch"}


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_with_a_shuffling_dataloader_and_workers(num_workers):
    dataset = Indexed(10)

    def make_loader():
        return DataLoader(dataset, batch_size=4, shuffle=True, num_workers=num_workers)

    original, checkpoints = run_with_checkpoints(make_loader, max_epochs=2)  # 3 batches per epoch
    for iteration in (2, 3, 4):
        resumed = resume(checkpoints[iteration], make_loader)
        assert resumed.seen == original.seen[iteration:]
        assert_same_weights(resumed, original)


def test_worker_randomness_is_reproduced_at_epoch_boundaries():
    dataset = Indexed(10, noise=True)

    def make_loader():
        return DataLoader(dataset, batch_size=4, shuffle=True, num_workers=2)

    original, checkpoints = run_with_checkpoints(make_loader, max_epochs=2)
    resumed = resume(checkpoints[3], make_loader)  # the end of epoch 1
    assert resumed.seen == original.seen[3:]
    assert_same_weights(resumed, original)


def test_resume_with_a_weighted_random_sampler():
    dataset = Indexed(12)
    weights = torch.linspace(0.1, 1.0, 12)

    def make_loader():
        sampler = WeightedRandomSampler(weights, num_samples=10, replacement=True)
        return DataLoader(dataset, sampler=sampler, batch_size=3)

    original, checkpoints = run_with_checkpoints(make_loader)  # 4 batches per epoch
    assert [len(batch) for _, batch in original.seen[:4]] == [3, 3, 3, 1]
    for iteration in range(12):
        resumed = resume(checkpoints[iteration], make_loader)
        assert resumed.seen == original.seen[iteration:]
        assert_same_weights(resumed, original)


class GlobalShuffle(Sampler):
    """Draws its order from the global torch generator, as many hand-written samplers do."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __iter__(self):
        return iter(torch.randperm(self.size).tolist())

    def __len__(self) -> int:
        return self.size


class OwnRandomState(Sampler):
    """Keeps a random.Random of its own: no seed from outside reaches it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.rng = random.Random(0)

    def __iter__(self):
        order = list(range(self.size))
        self.rng.shuffle(order)
        return iter(order)

    def __len__(self) -> int:
        return self.size


def test_resume_with_a_sampler_that_draws_from_the_global_generator():
    dataset = Indexed(10)

    def make_loader():
        return DataLoader(dataset, sampler=GlobalShuffle(10), batch_size=4)

    original, checkpoints = run_with_checkpoints(make_loader)
    assert original.seen[0][1] != [0, 1, 2, 3]
    for iteration in (1, 3, 5):
        resumed = resume(checkpoints[iteration], make_loader)
        assert resumed.seen == original.seen[iteration:]


def test_a_sampler_that_cannot_be_made_reproducible_is_refused_when_the_run_is_called():
    engine = DeterministicEngine(lambda engine, batch: None, seed=1)
    loader = DataLoader(Indexed(10), sampler=OwnRandomState(10), batch_size=4)
    with pytest.raises(ValueError, match=r"batch_sampler \(BatchSampler -> OwnRandomState\) cannot be made reproducible"):
        engine.run(loader)
    assert engine.status == "idle" and engine.state.iteration == 0


def test_epoch_length_shorter_than_the_data_continues_the_pass_and_resumes_exactly():
    dataset = Indexed(16)  # 4 batches per pass, 2 iterations per epoch

    def make_loader():
        return DataLoader(dataset, batch_size=4, shuffle=True)

    training = Training()
    checkpoints = {}
    training.engine.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: checkpoints.__setitem__(e.state.iteration, training.checkpoint())
    )
    training.engine.run(make_loader(), max_epochs=4, epoch_length=2)
    passes = [sorted(i for _, b in training.seen[p * 4 : p * 4 + 4] for i in b) for p in range(2)]
    assert passes == [list(range(16))] * 2
    for iteration in (1, 2, 3, 5):
        resumed = resume(checkpoints[iteration], make_loader)
        assert resumed.seen == training.seen[iteration:]
        assert_same_weights(resumed, training)


def test_terminate_epoch_continues_the_data_stream_without_repeating_a_batch():
    seen = []
    engine = DeterministicEngine(lambda engine, batch: seen.append(batch.tolist()), seed=4)
    engine.add_event_handler(Events.ITERATION_COMPLETED(once=2), lambda e: e.terminate_epoch())
    engine.run(DataLoader(torch.arange(12), batch_size=3, shuffle=True), max_epochs=2)
    stream = []
    reference = DeterministicEngine(lambda engine, batch: stream.append(batch.tolist()), seed=4)
    reference.run(DataLoader(torch.arange(12), batch_size=3, shuffle=True), max_epochs=2)
    assert seen == stream[:6]


def test_batch_indices_name_the_samples_of_the_current_batch():
    dataset = Indexed(10)
    checks = []

    def check(engine):
        checks.append(engine.batch_indices() == engine.state.batch[2].tolist())

    engine = DeterministicEngine(lambda engine, batch: None, seed=6)
    engine.add_event_handler(Events.ITERATION_COMPLETED, check)
    engine.run(DataLoader(dataset, batch_size=4, shuffle=True), max_epochs=3, epoch_length=2)
    resumed = DeterministicEngine(lambda engine, batch: None, seed=6)
    resumed.add_event_handler(Events.ITERATION_COMPLETED, check)
    resumed.load_state_dict({"iteration": 3, "epoch_length": 2, "max_epochs": 3, "seed": 6})
    resumed.run(DataLoader(dataset, batch_size=4, shuffle=True))
    assert checks == [True] * 9
    listed = DeterministicEngine(lambda engine, batch: None, seed=6)
    listed.run([1, 2], max_epochs=1)
    assert listed.batch_indices() is None and DeterministicEngine(lambda e, b: None).batch_indices() is None


# ---------------------------------------------------------------------------------------------- other data


class SelfShuffling:
    """A sized iterable (not a DataLoader) that shuffles itself with the global generator when opened."""

    def __init__(self, size: int) -> None:
        self.items = torch.arange(size)

    def __iter__(self):
        return iter(self.items[torch.randperm(len(self.items))].split(3))

    def __len__(self) -> int:
        return (len(self.items) + 2) // 3


def epoch_granularity_run(data_factory, epoch_length=None, resume_at_epoch=None):
    seen = []

    def step(engine, batch):
        # Draws from the global generator, like dropout would.
        seen.append((engine.state.iteration, batch.tolist(), torch.rand(1).item()))

    engine = DeterministicEngine(step, seed=21)
    if resume_at_epoch is not None:
        engine.load_state_dict({"epoch": resume_at_epoch, "epoch_length": epoch_length, "max_epochs": 3, "seed": 21})
        engine.run(data_factory())
    else:
        engine.run(data_factory(), max_epochs=3, epoch_length=epoch_length)
    return seen


def test_a_plain_iterable_that_shuffles_itself_is_reproduced_at_epoch_boundaries():
    original = epoch_granularity_run(lambda: SelfShuffling(9), epoch_length=3)
    assert len({tuple(i for _, b, _ in original[e * 3 : e * 3 + 3] for i in b) for e in range(3)}) == 3
    for epoch in (1, 2):
        assert epoch_granularity_run(lambda: SelfShuffling(9), 3, resume_at_epoch=epoch) == original[epoch * 3 :]


def test_a_generator_is_reproduced_at_epoch_boundaries():
    def stream():
        while True:
            yield torch.randint(0, 1000, (2,))

    original = epoch_granularity_run(stream, epoch_length=4)
    assert len(original) == 12
    for epoch in (1, 2):
        assert epoch_granularity_run(stream, 4, resume_at_epoch=epoch) == original[epoch * 4 :]


def test_a_list_resumes_mid_epoch_exactly():
    data = [torch.tensor([i]) for i in range(5)]
    seen = []
    engine = DeterministicEngine(lambda engine, batch: seen.append(batch.item()), seed=2)
    engine.load_state_dict({"iteration": 7, "epoch_length": 5, "max_epochs": 2, "seed": 2})
    engine.run(data)
    assert seen == [2, 3, 4]


def test_data_none_runs_with_epoch_seeding():
    draws = []
    engine = DeterministicEngine(lambda engine, batch: draws.append(torch.rand(1).item()), seed=8)
    engine.run(None, max_epochs=2, epoch_length=2)
    resumed = []
    engine2 = DeterministicEngine(lambda engine, batch: resumed.append(torch.rand(1).item()), seed=8)
    engine2.load_state_dict({"epoch": 1, "epoch_length": 2, "max_epochs": 2, "seed": 8})
    engine2.run(None)
    assert resumed == draws[2:]


# ---------------------------------------------------------------------------------------------- seeds


def test_without_a_fixed_seed_each_new_run_draws_one_from_the_global_generator():
    engine = DeterministicEngine(lambda engine, batch: None)
    manual_seed(56)
    engine.run([1, 2], max_epochs=1)
    first = engine.state.seed
    engine.run([1, 2], max_epochs=1)
    second = engine.state.seed
    manual_seed(56)
    engine.run([1, 2], max_epochs=1)
    assert first != second and engine.state.seed == first


def test_a_paused_run_keeps_its_seed():
    engine = DeterministicEngine(lambda engine, batch: None)
    engine.step(2, data=[1, 2, 3], max_epochs=2)
    seed = engine.state.seed
    torch.rand(5)
    engine.run()
    assert engine.state.seed == seed


# ---------------------------------------------------------------------------------------------- flags


def test_cudnn_flags_and_thread_count_are_set_for_the_run_only():
    cudnn = torch.backends.cudnn
    threads = torch.get_num_threads()
    other = 1 if threads != 1 else 2
    inside = []

    def step(engine, batch):
        inside.append((cudnn.deterministic, cudnn.benchmark, torch.get_num_threads()))
        if batch == 3:
            raise RuntimeError("boom")

    engine = DeterministicEngine(step, seed=1)
    cudnn.deterministic, cudnn.benchmark = False, True
    try:
        engine.load_state_dict({"iteration": 0, "epoch_length": 3, "max_epochs": 1, "num_threads": other})
        engine.step(1, data=[1, 2, 3])
        assert (cudnn.deterministic, cudnn.benchmark, torch.get_num_threads()) == (False, True, threads)
        with pytest.raises(RuntimeError, match="boom"):
            engine.run()
        assert (cudnn.deterministic, cudnn.benchmark, torch.get_num_threads()) == (False, True, threads)
        assert inside == [(True, False, other)] * 3
    finally:
        cudnn.deterministic, cudnn.benchmark = False, False
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------- helpers


def test_keep_random_state_returns_the_value_and_restores_even_when_raising():
    @keep_random_state
    def draw_and_return():
        return torch.rand(1).item(), random.random(), float(np.random.rand())

    @keep_random_state
    def draw_and_raise():
        torch.rand(10)
        random.random()
        np.random.rand()
        raise KeyError("boom")

    manual_seed(5)
    value = draw_and_return()
    assert draw_and_return() == value
    with pytest.raises(KeyError, match="boom"):
        draw_and_raise()
    assert (torch.rand(1).item(), random.random(), float(np.random.rand())) == value
    assert draw_and_return.__name__ == "draw_and_return"


def test_reproducible_batch_sampler_orders_are_pure_functions_of_seed_and_epoch():
    def make(seed):
        return ReproducibleBatchSampler(BatchSampler(RandomSampler(range(20)), 6, False), seed=seed)

    a, b = make(3), make(3)
    torch.rand(10)  # the global generator does not matter
    assert list(a) == list(b)
    a.set_epoch(7)
    b.set_epoch(7)
    assert list(a) == list(b) and a.batches() != make(3).batches(0)
    assert make(3).batches(0) != make(4).batches(0)
    a.start_iteration = 2
    assert list(a) == b.batches()[2:] and a.start_iteration is None
    assert len(a) == 4


def test_reproducible_batch_sampler_lends_its_generator_and_gives_it_back():
    own = torch.Generator().manual_seed(0)
    inner = RandomSampler(range(8), replacement=True, generator=own)
    sampler = ReproducibleBatchSampler(BatchSampler(inner, 4, False), seed=1)
    state = own.get_state()
    first = list(sampler)
    assert inner.generator is own and torch.equal(own.get_state(), state)
    assert ReproducibleBatchSampler(BatchSampler(inner, 4, False), seed=1).batches() == first


def test_a_plain_shuffled_loader_gets_one_permutation_per_pass():
    loader = DataLoader(range(10), batch_size=4, shuffle=True, drop_last=True)
    sampler = ReproducibleBatchSampler(loader.batch_sampler, seed=3)
    passes = [sampler.batches(epoch) for epoch in range(3)]
    assert [len(batches) for batches in passes] == [2, 2, 2]
    assert all(len(set(i for batch in batches for i in batch)) == 8 for batches in passes)
    assert passes[0] != passes[1] != passes[2]
    assert ReproducibleBatchSampler(DataLoader(range(5), batch_size=2).batch_sampler).batches() == [[0, 1], [2, 3], [4]]


def test_update_dataloader_keeps_the_loader_settings():
    def collate(items):
        return torch.stack([x for x, _, _ in items])

    loader = DataLoader(Indexed(8), batch_size=4, shuffle=True, num_workers=0, collate_fn=collate, drop_last=True)
    sampler = ReproducibleBatchSampler(loader.batch_sampler, seed=0)
    updated = update_dataloader(loader, sampler)
    assert updated.batch_sampler is sampler and updated.collate_fn is collate and updated.dataset is loader.dataset
    unbatched = DataLoader(Indexed(8), batch_size=None, shuffle=True)
    updated = update_dataloader(unbatched, ReproducibleBatchSampler(unbatched.sampler, seed=0))
    assert updated.batch_sampler is None and isinstance(updated.sampler, ReproducibleBatchSampler)


def test_a_loader_without_automatic_batching_resumes_exactly():
    dataset = Indexed(6)

    def make_loader():
        return DataLoader(dataset, batch_size=None, shuffle=True)

    seen = []

    def step(engine, sample):
        seen.append(sample[2])

    engine = DeterministicEngine(step, seed=3)
    engine.run(make_loader(), max_epochs=2)
    original = list(seen)
    seen.clear()
    engine.load_state_dict({"iteration": 8, "epoch_length": 6, "max_epochs": 2, "seed": 3})
    engine.run(make_loader())
    assert seen == original[8:]


# ---------------------------------------------------------------------------------------------- errors


class Unsized:
    def __iter__(self):
        return iter([[0, 1]])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: DeterministicEngine(lambda e, b: None, seed=-3), ValueError, r"seed should be an integer in \[0, 2\*\*64\), got -3"),
        (lambda: ReproducibleBatchSampler(5), TypeError, r"batch_sampler should be an iterable of batches of indices.*got 5 of type int"),
        (lambda: ReproducibleBatchSampler(iter([[0]])), ValueError, r"batch_sampler of type list_iterator cannot be made reproducible: it is an iterator"),
        (lambda: ReproducibleBatchSampler(Unsized()), ValueError, r"batch_sampler of type Unsized cannot be made reproducible: it has no length"),
        (lambda: ReproducibleBatchSampler([[0]], start_iteration=-1), ValueError, r"start_iteration should be None or a non-negative integer, got -1"),
        (lambda: ReproducibleBatchSampler([[0]]).set_epoch("1"), ValueError, r"epoch should be a non-negative integer, got '1'"),
        (lambda: update_dataloader([1], [[0]]), TypeError, r"dataloader should be a torch.utils.data.DataLoader, got list"),
        (lambda: keep_random_state(3), TypeError, r"keep_random_state should decorate a callable, got 3"),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    ("state_dict", "error", "match"),
    [
        ({"epoch": 1, "epoch_length": 3, "max_epochs": 2, "seed": "x"}, ValueError, r"state_dict\['seed'\] should be None or an integer in \[0, 2\*\*64\), got 'x'"),
        ({"epoch": 1, "epoch_length": 3, "max_epochs": 2, "rng_states": [1]}, TypeError, r"state_dict\['rng_states'\] should be a dict as returned by get_rng_states\(\), got list"),
        ({"epoch": 1, "epoch_length": 3, "max_epochs": 2, "num_threads": 0}, ValueError, r"state_dict\['num_threads'\] should be a positive integer or None, got 0"),
        ({"epoch": 1, "epoch_length": 3, "max_epochs": 2, "data_length": -2}, ValueError, r"state_dict\['data_length'\] should be a positive integer or None, got -2"),
        ({"epoch": 1, "epoch_length": 3, "max_epochs": 2, "dataset_length": 1.5}, ValueError, r"state_dict\['dataset_length'\] should be None or a non-negative integer, got 1.5"),
        ([("epoch", 1)], TypeError, r"state_dict should be a mapping, got list"),
    ],
)
def test_load_state_dict_errors(state_dict, error, match):
    engine = DeterministicEngine(lambda e, b: None)
    with pytest.raises(error, match=match):
        engine.load_state_dict(state_dict)


def test_a_state_dict_from_data_of_another_length_is_refused_when_the_run_continues():
    training = Training()
    training.engine.run(DataLoader(Indexed(18), batch_size=4, shuffle=True), max_epochs=2)
    state_dict = training.engine.state_dict()
    state_dict["iteration"] = 7
    other = Training()
    other.engine.load_state_dict(state_dict)
    with pytest.raises(
        ValueError,
        match=r"the state_dict was saved for data of length 5 \(dataset length 18\), but the data given has length 5 \(dataset length 17\)",
    ):
        other.engine.run(DataLoader(Indexed(17), batch_size=4, shuffle=True))
    assert other.seen == []
    other.engine.run(DataLoader(Indexed(18), batch_size=4, shuffle=True))
    assert other.engine.state.iteration == 10


def _noisy_trainer(outputs: list) -> DeterministicEngine:
    def step(engine, batch):
        noise = torch.rand(2)  # the training's own draw, like a Dropout mask
        outputs.append((batch * 10 + noise).tolist())
        return outputs[-1]

    return DeterministicEngine(step, seed=5)


def test_a_callers_draws_between_steps_neither_move_the_run_nor_see_its_streams():
    reference: list = []
    _noisy_trainer(reference).run(list(range(6)), max_epochs=2)

    outputs: list = []
    trainer = _noisy_trainer(outputs)
    torch.manual_seed(0)
    callers = [torch.rand(3)]
    trainer.step(2, data=list(range(6)), max_epochs=2)
    callers.append(torch.rand(3))  # a cell between two steps
    trainer.step(until=Events.EPOCH_COMPLETED)
    callers.append(torch.rand(3))
    trainer.run()
    callers.append(torch.rand(3))

    assert outputs == reference
    # The caller's stream goes on as if no training had run in between.
    torch.manual_seed(0)
    assert all(torch.equal(drawn, torch.rand(3)) for drawn in callers)


def test_draws_while_a_background_run_is_paused_do_not_move_it():
    reference: list = []
    _noisy_trainer(reference).run(list(range(6)), max_epochs=2)

    outputs: list = []
    trainer = _noisy_trainer(outputs)
    trainer.start(list(range(6)), max_epochs=2, n=4)
    trainer.wait(timeout=60)
    assert trainer.status == "paused"
    torch.rand(100)  # a cell drawing while the run stands still
    trainer.resume()
    trainer.wait(timeout=60)
    assert trainer.status == "done"
    assert outputs == reference
