"""Checkpoint as an engine handler: resuming is bit-exact, file names and rotation match
pytorch-ignite, saves requested from another thread happen at a boundary, loads into a running engine
are refused, and bad input gets a clear error."""

from __future__ import annotations

import doctest
import os
import threading
import time

import pytest
import torch
from torch import nn

import nbengine.handlers.checkpoint
from nbengine.engine import Engine, Events
from nbengine.handlers import (
    Checkpoint,
    CheckpointEvents,
    CorruptCheckpointError,
    DiskSaver,
    list_checkpoints,
    load_checkpoint,
)


def test_doctests():
    assert doctest.testmod(nbengine.handlers.checkpoint).failed == 0


# ---------------------------------------------------------------------------------------- resuming


def make_batches() -> list:
    generator = torch.Generator().manual_seed(7)
    return [(torch.randn(4, 8, generator=generator), torch.randn(4, 1, generator=generator)) for _ in range(6)]


def make_training(seed: int, engine_cls=Engine):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    lr_scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)

    def update(engine, batch):
        inputs, targets = batch
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
        return loss.item()

    trainer = engine_cls(update)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: lr_scheduler.step())
    return model, optimizer, lr_scheduler, trainer


class Crash(Exception):
    """The process dies here (its model has already moved past the last checkpoint)."""


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_same_training_state(model, optimizer, reference_model, reference_optimizer) -> None:
    for (name, value), (_, expected) in zip(model.state_dict().items(), reference_model.state_dict().items()):
        assert torch.equal(value, expected), name
    state, expected_state = optimizer.state_dict(), reference_optimizer.state_dict()
    assert state["param_groups"] == expected_state["param_groups"]
    for index, buffers in expected_state["state"].items():
        assert torch.equal(state["state"][index]["momentum_buffer"], buffers["momentum_buffer"])


@pytest.mark.parametrize("how", ["epoch boundary, loaded mapping", "mid-epoch, path", "mid-epoch, path, mmap"])
def test_resuming_continues_training_exactly(tmp_path, one_thread, how):
    engine_cls = Engine
    if how.startswith("mid-epoch"):
        # A plain Engine (like ignite's) restarts the data at its first batch after a mid-epoch
        # resume; the deterministic engine reopens it at the next batch.
        engine_cls = pytest.importorskip("nbengine.engine.deterministic").DeterministicEngine
    data = make_batches()
    reference_model, reference_optimizer, _, reference_trainer = make_training(0, engine_cls)
    reference_trainer.run(data, max_epochs=4)

    # The seed documentation's "Resuming the training" setup, with nbengine imports.
    model, optimizer, lr_scheduler, trainer = make_training(0, engine_cls)
    to_save = {"trainer": trainer, "model": model, "optimizer": optimizer, "lr_scheduler": lr_scheduler}
    handler = Checkpoint(to_save, DiskSaver(tmp_path, create_dir=True, require_empty=False), n_saved=None)
    if how.startswith("epoch"):
        trainer.add_event_handler(Events.EPOCH_COMPLETED, handler)
        path, crash_after = tmp_path / "checkpoint_12.pt", 13
    else:
        trainer.add_event_handler(Events.ITERATION_COMPLETED(every=4), handler)
        path, crash_after = tmp_path / "checkpoint_8.pt", 9  # epoch 2, after its second batch

    @trainer.on(Events.ITERATION_COMPLETED)
    def crash(engine):
        if engine.state.iteration == crash_after:
            raise Crash()

    with pytest.raises(Crash):
        trainer.run(data, max_epochs=4)
    assert path.exists()

    # A fresh process: other initial weights, nothing shared with the first run but the file.
    model, optimizer, lr_scheduler, trainer = make_training(123, engine_cls)
    to_load = {"trainer": trainer, "model": model, "optimizer": optimizer, "lr_scheduler": lr_scheduler}
    if how.startswith("epoch"):
        Checkpoint.load_objects(to_load=to_load, checkpoint=torch.load(path, weights_only=True))
    else:
        Checkpoint.load_objects(to_load=to_load, checkpoint=path, mmap=how.endswith("mmap"))
    resumed_at = (trainer.state.epoch, trainer.state.iteration)
    iterations = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: iterations.append(engine.state.iteration))
    trainer.run(data, max_epochs=4)

    start = 12 if how.startswith("epoch") else 8
    # Both were saved in epoch 2 (at its end, or after its second batch): the loaded state stands there.
    assert resumed_at == (2, start)
    assert iterations == list(range(start + 1, 25))
    assert_same_training_state(model, optimizer, reference_model, reference_optimizer)


def test_the_checkpoint_of_a_single_object_holds_its_state_dict(tmp_path):
    model = nn.Linear(3, 2)
    trainer = Engine(lambda engine, batch: None)
    handler = Checkpoint({"model": model}, DiskSaver(tmp_path), filename_prefix="best")
    trainer.add_event_handler(Events.COMPLETED, handler)
    trainer.run([0, 1], max_epochs=1)
    assert handler.last_checkpoint == tmp_path / "best_model_2.pt"
    assert list(load_checkpoint(handler.last_checkpoint)) == ["weight", "bias"]
    other = nn.Linear(3, 2)
    Checkpoint.load_objects({"model": other}, handler.last_checkpoint)
    assert torch.equal(other.weight, model.weight) and torch.equal(other.bias, model.bias)


def test_data_parallel_is_saved_unwrapped(tmp_path):
    model = nn.Linear(3, 2)
    trainer = Engine(lambda engine, batch: None)
    handler = Checkpoint({"model": nn.DataParallel(model), "trainer": trainer}, DiskSaver(tmp_path))
    handler(trainer)
    assert list(load_checkpoint(handler.last_checkpoint)["model"]) == ["weight", "bias"]
    wrapped = nn.DataParallel(nn.Linear(3, 2))
    Checkpoint.load_objects({"model": wrapped}, handler.last_checkpoint, strict=False)
    assert torch.equal(wrapped.module.weight, model.weight)


def test_include_self_saves_and_restores_the_kept_list(tmp_path):
    trainer = Engine(lambda engine, batch: None)
    handler = Checkpoint({"model": nn.Linear(2, 2)}, DiskSaver(tmp_path), n_saved=2, include_self=True)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, handler)
    trainer.run([0, 1, 2], max_epochs=1)
    saved = load_checkpoint(handler.last_checkpoint)
    assert saved["checkpointer"] == {"_saved": [(2, "checkpoint_2.pt"), (3, "checkpoint_3.pt")]}
    restored = Checkpoint({"model": nn.Linear(2, 2)}, DiskSaver(tmp_path, require_empty=False), n_saved=2)
    restored.load_state_dict(saved["checkpointer"])
    assert restored.last_checkpoint == tmp_path / "checkpoint_3.pt"


def test_strict_false_skips_missing_keys_and_loads_modules_leniently(tmp_path):
    model = nn.Linear(3, 2)
    path = DiskSaver(tmp_path)({"model": {"weight": model.weight.detach()}}, "partial.pt")
    target, extra = nn.Linear(3, 2), nn.Linear(1, 1)
    bias_before = target.bias.detach().clone()
    Checkpoint.load_objects({"model": target, "extra": extra}, path, strict=False)
    assert torch.equal(target.weight, model.weight) and torch.equal(target.bias, bias_before)


def test_saved_checkpoint_event_fires_after_each_commit(tmp_path):
    trainer = Engine(lambda engine, batch: None)
    handler = Checkpoint({"model": nn.Linear(2, 2)}, DiskSaver(tmp_path), n_saved=1)
    trainer.register_events(*CheckpointEvents)
    seen = []
    trainer.add_event_handler(
        Checkpoint.SAVED_CHECKPOINT, lambda engine: seen.append((engine.state.iteration, os.listdir(tmp_path)))
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED, handler)
    trainer.run([0, 1], max_epochs=1)
    assert seen == [(1, ["model_1.pt"]), (2, ["model_2.pt"])]


def test_listing_through_the_handler(tmp_path):
    trainer = Engine(lambda engine, batch: None)
    handler = Checkpoint(
        {"model": nn.Linear(2, 2), "trainer": trainer},
        DiskSaver(tmp_path),
        n_saved=2,
        score_name="acc",
        global_step_transform=lambda engine, event: engine.state.epoch,
    )
    scores = iter([0.5, 0.25, 0.75])

    @trainer.on(Events.EPOCH_COMPLETED)
    def evaluate(engine):
        engine.state.metrics["acc"] = next(scores)

    trainer.add_event_handler(Events.EPOCH_COMPLETED, handler)
    trainer.run([0, 1], max_epochs=3)
    listed = handler.list_checkpoints()
    assert [info.path.name for info in listed] == ["checkpoint_3_acc=0.7500.pt", "checkpoint_1_acc=0.5000.pt"]
    assert [(info.epoch, info.iteration, info.score, info.score_name, info.global_step) for info in listed] == [
        (3, 6, 0.75, "acc", 3),
        (1, 2, 0.5, "acc", 1),
    ]
    assert listed[0].keys == ("model", "trainer")
    with pytest.raises(TypeError, match=r"list_checkpoints\(\) needs a DiskSaver as save_handler"):
        Checkpoint({"model": nn.Linear(2, 2)}, lambda checkpoint, filename: None).list_checkpoints()


# ------------------------------------------------------------------------- parity with pytorch-ignite


PARITY_CASES = {
    "default": dict(),
    "keep all": dict(n_saved=None),
    "prefix, keep 3": dict(filename_prefix="run", n_saved=3),
    "score": dict(score_function=lambda engine: engine.state.metrics["acc"], n_saved=2),
    "score name": dict(score_name="acc", n_saved=2),
    "score name, greater or equal": dict(score_name="acc", n_saved=2, greater_or_equal=True),
    "score name, step from epoch": dict(
        score_name="acc", n_saved=2, global_step_transform=lambda engine, event: engine.state.epoch
    ),
    "step from epoch": dict(global_step_transform=lambda engine, event: engine.state.epoch, n_saved=2),
    "pattern": dict(filename_pattern="{global_step}-{name}.{ext}", n_saved=2),
    "single object": dict(single=True, n_saved=2),
}
SCORES = [0.5, 0.25, 0.5, 0.75, 0.75, 0.1]


def run_with(engine_cls, events, checkpoint_cls, saver_cls, folder, case) -> tuple[list[str], str]:
    options = dict(case)
    single = options.pop("single", False)
    trainer = engine_cls(lambda engine, batch: None)
    to_save = {"model": nn.Linear(2, 2)} if single else {"model": nn.Linear(2, 2), "trainer": trainer}
    handler = checkpoint_cls(to_save, saver_cls(folder, require_empty=False), **options)
    scores = iter(SCORES)

    @trainer.on(events.EPOCH_COMPLETED)
    def evaluate(engine):
        engine.state.metrics["acc"] = next(scores)

    trainer.add_event_handler(events.EPOCH_COMPLETED, handler)
    trainer.run([0, 1, 2], max_epochs=len(SCORES))
    return sorted(os.listdir(folder)), os.path.basename(handler.last_checkpoint)


@pytest.mark.parametrize("case", list(PARITY_CASES))
def test_file_names_and_rotation_match_pytorch_ignite(tmp_path, case):
    ignite_engine = pytest.importorskip("ignite.engine")
    ignite_handlers = pytest.importorskip("ignite.handlers")
    ours = run_with(Engine, Events, Checkpoint, DiskSaver, tmp_path / "ours", PARITY_CASES[case])
    theirs = run_with(
        ignite_engine.Engine,
        ignite_engine.Events,
        ignite_handlers.Checkpoint,
        ignite_handlers.DiskSaver,
        tmp_path / "ignite",
        PARITY_CASES[case],
    )
    assert ours == theirs


# ------------------------------------------------------------------------------------ other threads


class ThreadRecorder:
    """A to_save entry that records which thread took its state_dict."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    def state_dict(self) -> dict:
        self.threads.append(threading.get_ident())
        return {"calls": len(self.threads)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.threads.clear()


def test_a_save_requested_from_another_thread_runs_on_the_training_side_at_a_boundary(tmp_path):
    model = nn.Linear(4, 1)
    snapshots = {}
    training_threads = set()

    def update(engine, batch):
        with torch.no_grad():
            model.weight.add_(batch)
        time.sleep(0.001)
        return None

    trainer = Engine(update)

    @trainer.on(Events.ITERATION_COMPLETED)
    def snapshot(engine):
        training_threads.add(threading.get_ident())
        snapshots[engine.state.iteration] = model.weight.detach().clone()

    recorder = ThreadRecorder()
    handler = Checkpoint({"trainer": trainer, "model": model, "recorder": recorder}, DiskSaver(tmp_path), n_saved=None)
    trainer.start([torch.full((1, 4), 0.5)] * 10, max_epochs=1000)
    try:
        while trainer.state.iteration < 5:
            time.sleep(0.001)
        path = handler.request_save(trainer).result(timeout=60)
    finally:
        trainer.stop()
        trainer.wait(timeout=60)
    assert recorder.threads and set(recorder.threads) == training_threads
    assert threading.get_ident() not in training_threads
    saved = load_checkpoint(path)
    iteration = saved["trainer"]["iteration"]
    assert list_checkpoints(tmp_path)[0].iteration == iteration
    # The model in the file is the model right after that iteration: never half way through one.
    assert torch.equal(saved["model"]["weight"], snapshots[iteration])


def test_a_save_requested_while_paused_runs_at_once_in_the_calling_thread(tmp_path):
    trainer = Engine(lambda engine, batch: None)
    trainer.step(data=[0, 1, 2], max_epochs=1)
    assert trainer.status == "paused"
    recorder = ThreadRecorder()
    handler = Checkpoint({"trainer": trainer, "recorder": recorder}, DiskSaver(tmp_path))
    future = handler.request_save(trainer)
    assert future.done() and future.result() == tmp_path / "checkpoint_1.pt"
    assert recorder.threads == [threading.get_ident()]
    trainer.run()
    assert trainer.state.iteration == 3


def test_loading_into_a_running_engine_is_refused_and_loads_nothing(tmp_path):
    trainer = Engine(lambda engine, batch: time.sleep(0.001))
    model = nn.Linear(2, 2)
    path = Checkpoint({"trainer": trainer, "model": model}, DiskSaver(tmp_path)).request_save(trainer).result()
    target = nn.Linear(2, 2)
    before = target.weight.detach().clone()
    trainer.start([0] * 10, max_epochs=1000)
    try:
        while trainer.status != "running":
            time.sleep(0.001)
        with pytest.raises(
            RuntimeError,
            match=r"^cannot load into to_load\['trainer'\]: the engine is 'running'; a checkpoint loads only while "
            r"the engine is paused or not running\. Call pause\(\) \(and wait\(\) for a background run\) first$",
        ):
            Checkpoint.load_objects({"model": target, "trainer": trainer}, path)
        assert torch.equal(target.weight, before)
        trainer.pause()
        trainer.wait(timeout=60)
        assert trainer.status == "paused"
        Checkpoint.load_objects({"model": target, "trainer": trainer}, path)
    finally:
        trainer.stop()
        trainer.wait(timeout=60)
    assert torch.equal(target.weight, model.weight)


def test_a_corrupt_file_is_refused_by_load_objects_before_anything_loads(tmp_path):
    model = nn.Linear(2, 2)
    path = DiskSaver(tmp_path)({"model": model.state_dict()}, "x.pt")
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x10
    path.write_bytes(bytes(data))
    target = nn.Linear(2, 2)
    before = target.weight.detach().clone()
    with pytest.raises(CorruptCheckpointError, match=rf"checkpoint file '{path}' is corrupt or truncated"):
        Checkpoint.load_objects({"model": target}, path)
    assert torch.equal(target.weight, before)


# ------------------------------------------------------------------------------------------ errors


class NoStateDict:
    def __repr__(self) -> str:
        return "NoStateDict()"


@pytest.mark.parametrize(
    "make, error, message",
    [
        (
            lambda d: Checkpoint({"model": nn.Linear(1, 1), "data": NoStateDict()}, d),
            TypeError,
            r"^Object <class '.*NoStateDict'> should have `state_dict` method: to_save\['data'\] is NoStateDict\(\)$",
        ),
        (
            lambda d: Checkpoint([nn.Linear(1, 1)], d),
            TypeError,
            r"^Argument `to_save` should be a dictionary, but given <class 'list'>: a mapping of names to objects with "
            r"state_dict\(\) was expected, got \[Linear",
        ),
        (
            lambda d: Checkpoint({"checkpointer": nn.Linear(1, 1)}, d, include_self=True),
            ValueError,
            r"^Cannot have key 'checkpointer' if `include_self` is True: to_save has keys \['checkpointer'\]$",
        ),
        (
            lambda d: Checkpoint({"m": nn.Linear(1, 1)}, 42),
            TypeError,
            r"^Argument `save_handler` should be a string or Path object or callable or inherit from BaseSaveHandler "
            r"\(a DiskSaver, a folder path or a callable fn\(checkpoint, filename\[, metadata\]\)\), got int: 42$",
        ),
        (
            lambda d: Checkpoint({"m": nn.Linear(1, 1)}, lambda: None),
            TypeError,
            r"^save_handler .*<lambda>\(\) cannot be called as fn\(checkpoint, filename\) nor fn\(checkpoint, filename, "
            r"metadata\)$",
        ),
        (
            lambda d: Checkpoint({"m": nn.Linear(1, 1)}, d, n_saved=0),
            ValueError,
            r"^n_saved should be a positive integer or None, got 0$",
        ),
        (
            lambda d: Checkpoint({"m": nn.Linear(1, 1)}, d, score_function=0.5),
            TypeError,
            r"^score_function should be a callable fn\(engine\) -> number, got 0.5$",
        ),
        (
            lambda d: Checkpoint({"m": nn.Linear(1, 1)}, d, global_step_transform="epoch"),
            TypeError,
            r"^global_step_transform should be a function fn\(engine, event\) -> int, got <class 'str'> instead: "
            r"'epoch'$",
        ),
        (
            lambda d: Checkpoint({"m": nn.Linear(1, 1)}, d, filename_pattern="{step}.pt"),
            ValueError,
            r"^filename_pattern '\{step\}.pt' cannot be formatted with filename_prefix, name, score, score_name, "
            r"global_step and ext: KeyError\('step'\)$",
        ),
        (
            lambda d: Checkpoint({"m": nn.Linear(1, 1)}, d, greater_or_equal="yes"),
            TypeError,
            r"^greater_or_equal should be True or False, got 'yes'$",
        ),
        (
            lambda d: Checkpoint.load_objects({"m": NoStateDict()}, {"m": {}}),
            TypeError,
            r"^Object <class '.*NoStateDict'> should have `load_state_dict` method: to_load\['m'\] is NoStateDict\(\)$",
        ),
        (
            lambda d: Checkpoint.load_objects({"m": nn.Linear(1, 1)}, 3),
            TypeError,
            r"^Argument checkpoint should be a string or a dictionary, but given <class 'int'>: a file path or a "
            r"mapping of state_dicts was expected, got 3$",
        ),
        (
            lambda d: Checkpoint.load_objects({"m": nn.Linear(1, 1)}, {}, strict="no"),
            TypeError,
            r"^strict should be True or False, got 'no'$",
        ),
        (
            lambda d: Checkpoint.load_objects(
                {"model": nn.Linear(1, 1), "optimizer": torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1)},
                {"model": nn.Linear(1, 1).state_dict(), "trainer": {}},
            ),
            ValueError,
            r"^Key 'optimizer' from x is not found in y: checkpoint \(y\) has no entry for to_load \(x\) keys "
            r"\['optimizer'\]; it has keys \['model', 'trainer'\]\. Pass strict=False to load the others$",
        ),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(tmp_path, make, error, message):
    with pytest.raises(error, match=message):
        make(tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()  # refused before the DiskSaver made its folder


def test_a_missing_key_in_a_file_names_the_file(tmp_path):
    path = DiskSaver(tmp_path)({"model": nn.Linear(1, 1).state_dict(), "trainer": {}}, "c.pt")
    with pytest.raises(
        ValueError, match=rf"^Key 'optimizer' from x is not found in y: checkpoint '{path}' \(y\) has no entry for to_load \(x\) "
        r"keys \['optimizer'\]; it has keys"
    ):
        Checkpoint.load_objects(
            {"model": nn.Linear(1, 1), "optimizer": torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1)}, path
        )


def test_a_score_function_that_returns_no_number_is_reported(tmp_path):
    trainer = Engine(lambda engine, batch: None)
    handler = Checkpoint({"m": nn.Linear(1, 1)}, DiskSaver(tmp_path), score_function=lambda engine: "high")
    trainer.add_event_handler(Events.COMPLETED, handler)
    with pytest.raises(ValueError, match=r"^Output of score_function should be a number: .*<lambda>\(engine\) returned 'high'$"):
        trainer.run([0], max_epochs=1)
    assert os.listdir(tmp_path) == []
