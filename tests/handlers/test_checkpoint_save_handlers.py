"""Checkpoint with custom save handlers (BaseSaveHandler), on any event including EXCEPTION_RAISED,
nested objects in to_save, and request_save reporting the file that save wrote."""

from __future__ import annotations

import doctest

import pytest
import torch
from torch import nn

import nbengine.handlers.checkpoint_saver
from nbengine.engine import Engine, Events
from nbengine.handlers import BaseSaveHandler, Checkpoint, DiskSaver, EarlyStopping, ModelCheckpoint, load_checkpoint


def test_doctests():
    assert doctest.testmod(nbengine.handlers.checkpoint_saver).failed == 0


class RecordingSaver(BaseSaveHandler):
    """Keeps what it is given, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object, str, object]] = []

    def __call__(self, checkpoint, filename, metadata=None):
        self.calls.append(("save", checkpoint, filename, metadata))

    def remove(self, filename):
        self.calls.append(("remove", None, filename, None))


def test_base_save_handler_is_abstract_and_disk_saver_is_one(tmp_path):
    with pytest.raises(TypeError, match="abstract"):
        BaseSaveHandler()
    assert isinstance(DiskSaver(tmp_path), BaseSaveHandler)


def test_a_custom_saver_gets_exactly_ignites_metadata_and_removes_after_the_new_save():
    saver = RecordingSaver()
    trainer = Engine(lambda engine, batch: None)
    trainer.state.metrics["acc"] = 0.0
    accuracies = iter([0.5, 0.25, 0.75])

    @trainer.on(Events.EPOCH_COMPLETED)
    def evaluate(engine):
        engine.state.metrics["acc"] = next(accuracies)

    handler = Checkpoint({"model": nn.Linear(1, 1)}, saver, filename_prefix="best", score_name="acc", n_saved=1)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, handler)
    trainer.run([0, 1], max_epochs=3)
    assert [(kind, filename, metadata) for kind, _, filename, metadata in saver.calls] == [
        ("save", "best_model_acc=0.5000.pt", {"basename": "best_model", "score_name": "acc", "priority": 0.5}),
        ("save", "best_model_acc=0.7500.pt", {"basename": "best_model", "score_name": "acc", "priority": 0.75}),
        ("remove", "best_model_acc=0.5000.pt", None),
    ]


def test_a_saver_without_metadata_is_called_with_two_arguments():
    received = []
    handler = Checkpoint({"model": nn.Linear(1, 1)}, lambda checkpoint, filename: received.append(filename))
    trainer = Engine(lambda engine, batch: None)
    trainer.add_event_handler(Events.COMPLETED, handler)
    trainer.run([0, 1, 2])
    assert received == ["model_3.pt"]


def test_a_save_handler_replaced_after_construction_is_checked_again():
    handler = Checkpoint({"model": nn.Linear(1, 1)}, RecordingSaver())
    handler.save_handler = lambda: None
    with pytest.raises(TypeError, match=r"cannot be called as fn\(checkpoint, filename\) nor fn\(checkpoint, filename, metadata\)"):
        handler(Engine(lambda engine, batch: None))


def run_to_failure(trainer: Engine, data: list, error: type) -> BaseException:
    """Run ``trainer`` until its process function fails; the failure, whether ``run()`` re-raised it or
    (ignite's way, an EXCEPTION_RAISED handler being attached) kept it in ``trainer.error``."""
    try:
        trainer.run(data, max_epochs=1)
    except error as raised:
        return raised
    assert trainer.status == "failed"
    return trainer.error


def test_checkpoint_on_exception_raised_saves_the_engine_state():
    saver = RecordingSaver()
    model = nn.Linear(1, 1)

    def update(engine, batch):
        if engine.state.iteration == 2:
            raise RuntimeError("training crash")

    trainer = Engine(update)
    trainer.add_event_handler(Events.EXCEPTION_RAISED, Checkpoint({"model": model, "trainer": trainer}, saver))
    assert str(run_to_failure(trainer, [0, 0, 0], RuntimeError)) == "training crash"
    ((kind, checkpoint, filename, metadata),) = saver.calls
    assert (kind, filename, metadata) == ("save", "checkpoint_2.pt", {"basename": "checkpoint", "score_name": None, "priority": 2})
    assert checkpoint["trainer"]["iteration"] == 2
    assert torch.equal(checkpoint["model"]["weight"], model.weight)


def test_checkpoint_on_exception_raised_writes_a_loadable_file(tmp_path):
    def update(engine, batch):
        if engine.state.iteration == 3:
            raise ValueError("bad batch")

    trainer = Engine(update)
    handler = Checkpoint({"trainer": trainer}, DiskSaver(tmp_path))
    trainer.add_event_handler(Events.EXCEPTION_RAISED, handler)
    assert str(run_to_failure(trainer, [0] * 5, ValueError)) == "bad batch"
    assert load_checkpoint(tmp_path / "trainer_3.pt")["iteration"] == 3


def test_request_save_reports_the_file_it_wrote_not_the_best_one(tmp_path):
    trainer = Engine(lambda engine, batch: None)
    scores = iter([0.9, 0.1])
    handler = Checkpoint({"trainer": trainer}, DiskSaver(tmp_path), score_function=lambda engine: next(scores), n_saved=2)
    trainer.step(data=[0, 1, 2], max_epochs=1)
    best = handler.request_save(trainer).result()
    trainer.step()
    second = handler.request_save(trainer).result()
    assert (best.name, second.name) == ("trainer_0.9000.pt", "trainer_0.1000.pt")
    assert handler.last_checkpoint == best  # the best-scored one, as in ignite
    assert second.exists()


def test_request_save_without_a_disk_saver_reports_the_file_name():
    trainer = Engine(lambda engine, batch: None)
    trainer.step(data=[0, 1], max_epochs=1)
    assert Checkpoint({"trainer": trainer}, RecordingSaver()).request_save(trainer).result() == "trainer_1.pt"


def test_nested_objects_in_to_save_are_saved_and_loaded_in_the_same_structure(tmp_path):
    torch.manual_seed(0)
    models = [nn.Linear(2, 2), nn.Linear(2, 1)]
    heads = {"a": {"b": nn.Linear(1, 1)}}
    trainer = Engine(lambda engine, batch: None)
    handler = Checkpoint({"models": models, "heads": heads}, DiskSaver(tmp_path))
    trainer.add_event_handler(Events.COMPLETED, handler)
    trainer.run([0])
    saved = load_checkpoint(handler.last_checkpoint)
    assert torch.equal(saved["models"][1]["weight"], models[1].weight)
    assert torch.equal(saved["heads"]["a"]["b"]["bias"], heads["a"]["b"].bias)

    fresh_models, fresh_heads = [nn.Linear(2, 2), nn.Linear(2, 1)], {"a": {"b": nn.Linear(1, 1)}}
    Checkpoint.load_objects({"models": fresh_models, "heads": fresh_heads}, handler.last_checkpoint)
    assert torch.equal(fresh_models[0].weight, models[0].weight)
    assert torch.equal(fresh_heads["a"]["b"].weight, heads["a"]["b"].weight)


@pytest.mark.parametrize(
    "to_load, checkpoint, error, message",
    [
        (
            {"m": {"a": object()}},
            {"m": {"a": {}}},
            TypeError,
            r"^Object <class 'object'> should have `load_state_dict` method: to_load\['m'\]\['a'\] is <object",
        ),
        (
            {"m": {"a": nn.Linear(1, 1)}, "n": nn.Linear(1, 1)},
            {"m": {"b": {}}, "n": {}},
            ValueError,
            r"^Key 'a' from x is not found in y: to_load\['m'\] \(x\) has it, the checkpoint's entry \(y\) has only "
            r"keys \['b'\]$",
        ),
        (
            {"m": [nn.Linear(1, 1), nn.Linear(1, 1)], "n": nn.Linear(1, 1)},
            {"m": [{}], "n": {}},
            ValueError,
            r"^Size of y: 1 does not match the size of x: '2': to_load\['m'\] \(x\) and its entry in the checkpoint "
            r"\(y\) differ$",
        ),
    ],
)
def test_nested_loads_refuse_a_mismatch_with_a_clear_message(to_load, checkpoint, error, message):
    with pytest.raises(error, match=message):
        Checkpoint.load_objects(to_load, checkpoint)


def test_early_stopping_in_to_save_resumes_its_counter(tmp_path):
    trainer = Engine(lambda engine, batch: None)
    scores = iter([0.5, 0.4, 0.3, 0.2])
    stopper = EarlyStopping(patience=3, score_function=lambda engine: next(scores), trainer=trainer)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, stopper)
    handler = Checkpoint({"trainer": trainer, "stopper": stopper}, DiskSaver(tmp_path))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, handler)
    # As if the process were killed after epoch 2 of 10.
    trainer.add_event_handler(Events.EPOCH_COMPLETED(once=2), lambda engine: engine.terminate())
    trainer.run([0], max_epochs=10)
    assert (stopper.counter, stopper.best_score) == (1, 0.5)

    resumed_trainer = Engine(lambda engine, batch: None)
    resumed_scores = iter([0.3, 0.2])
    resumed = EarlyStopping(patience=3, score_function=lambda engine: next(resumed_scores), trainer=resumed_trainer)
    resumed_trainer.add_event_handler(Events.EPOCH_COMPLETED, resumed)
    Checkpoint.load_objects({"trainer": resumed_trainer, "stopper": resumed}, handler.last_checkpoint)
    assert (resumed.counter, resumed.best_score) == (1, 0.5)
    state = resumed_trainer.run([0], max_epochs=10)
    assert (state.epoch, resumed.counter) == (4, 3)


def test_model_checkpoint_on_exception_raised_saves_the_objects_it_was_attached_with(tmp_path):
    def update(engine, batch):
        if engine.state.iteration == 2:
            raise RuntimeError("training crash")

    model = nn.Linear(1, 1)
    trainer = Engine(update)
    handler = ModelCheckpoint(tmp_path, "crash")
    trainer.add_event_handler(Events.EXCEPTION_RAISED, handler, {"model": model})
    assert str(run_to_failure(trainer, [0, 0, 0], RuntimeError)) == "training crash"
    assert handler.last_checkpoint == tmp_path / "crash_model_2.pt"
    assert torch.equal(load_checkpoint(handler.last_checkpoint)["weight"], model.weight)
    with pytest.raises(TypeError, match=r"missing 1 required positional argument: 'to_save'"):
        handler(trainer)
