"""The rest of ignite's checkpoint API for ported code: global_step_from_engine, Checkpoint.reload_objects
and ModelCheckpoint. Real engines and real files; file names are compared with pytorch-ignite 0.5.5 on the
same runs, reloads are bit-exact, and bad input gets a clear error."""

from __future__ import annotations

import copy
import doctest
import os
import re

import pytest
import torch
from torch import nn

import nbengine.handlers.checkpoint
from nbengine.engine import Engine, EventEnum, Events
from nbengine.handlers import (
    Checkpoint,
    CheckpointEvents,
    DiskSaver,
    ModelCheckpoint,
    global_step_from_engine,
    load_checkpoint,
)

SCORES = [0.5, 0.25, 0.75, 0.75]


@pytest.mark.parametrize("name", ["global_step_from_engine", "Checkpoint.reload_objects", "ModelCheckpoint"])
def test_the_docstring_examples_run(name):
    (test,) = [
        test
        for test in doctest.DocTestFinder().find(nbengine.handlers.checkpoint)
        if test.name == f"nbengine.handlers.checkpoint.{name}"
    ]
    runner = doctest.DocTestRunner()
    runner.run(test)
    assert runner.summarize(verbose=False) == doctest.TestResults(failed=0, attempted=len(test.examples))
    assert len(test.examples) >= 8


def ignite_modules():
    return pytest.importorskip("ignite.engine"), pytest.importorskip("ignite.handlers")


# ------------------------------------------------------------------------------ global_step_from_engine


def save_from_evaluator(engine_cls, events, checkpoint_cls, saver_cls, folder, custom_event, options):
    """A trainer runs an evaluator after each epoch; a Checkpoint on the evaluator's COMPLETED is
    named by the trainer's counter."""
    trainer = engine_cls(lambda engine, batch: None)
    evaluator = engine_cls(lambda engine, batch: None)
    scores = iter(SCORES)

    @evaluator.on(events.COMPLETED)
    def compute_metrics(engine):
        engine.state.metrics["acc"] = next(scores)

    custom = None if custom_event is None else getattr(events, custom_event)
    handler = checkpoint_cls(
        {"model": nn.Linear(2, 2)},
        saver_cls(folder, require_empty=False),
        global_step_transform=global_step_from_engine_of(engine_cls)(trainer, custom),
        **options,
    )
    evaluator.add_event_handler(events.COMPLETED, handler)
    trainer.add_event_handler(events.EPOCH_COMPLETED, lambda engine: evaluator.run([0, 1]))
    trainer.run([0, 1, 2], max_epochs=len(SCORES))
    return sorted(os.listdir(folder)), os.path.basename(handler.last_checkpoint)


def global_step_from_engine_of(engine_cls):
    if engine_cls is Engine:
        return global_step_from_engine
    return pytest.importorskip("ignite.handlers").global_step_from_engine


EVALUATOR_CASES = {
    "trainer epoch": (None, dict(n_saved=2), (["model_3.pt", "model_4.pt"], "model_4.pt")),
    "trainer epoch, keep all": (
        None,
        dict(n_saved=None),
        (["model_1.pt", "model_2.pt", "model_3.pt", "model_4.pt"], "model_4.pt"),
    ),
    "trainer epoch, score name": (
        None,
        dict(n_saved=2, score_name="acc"),
        (["model_3_acc=0.7500.pt", "model_4_acc=0.7500.pt"], "model_4_acc=0.7500.pt"),
    ),
    "trainer epoch, prefix": (
        None,
        dict(n_saved=1, filename_prefix="best"),
        (["best_model_4.pt"], "best_model_4.pt"),
    ),
    "trainer iteration": ("ITERATION_COMPLETED", dict(n_saved=2), (["model_12.pt", "model_9.pt"], "model_12.pt")),
}


@pytest.mark.parametrize("case", list(EVALUATOR_CASES))
def test_a_checkpoint_on_the_evaluator_is_named_by_the_trainer_counter_as_in_ignite(tmp_path, case):
    custom_event, options, expected = EVALUATOR_CASES[case]
    ours = save_from_evaluator(Engine, Events, Checkpoint, DiskSaver, tmp_path / "ours", custom_event, options)
    assert ours == expected
    ignite_engine, ignite_handlers = ignite_modules()
    theirs = save_from_evaluator(
        ignite_engine.Engine,
        ignite_engine.Events,
        ignite_handlers.Checkpoint,
        ignite_handlers.DiskSaver,
        tmp_path / "ignite",
        custom_event,
        options,
    )
    assert theirs == expected


class TrainerEvents(EventEnum):
    VALIDATED = "validated"
    LOGGED = "logged"


def test_the_step_is_the_engine_counter_for_the_event():
    trainer = Engine(lambda engine, batch: None)
    trainer.register_events(*TrainerEvents, event_to_attr={TrainerEvents.VALIDATED: "validations"})
    trainer.run([0, 1, 2], max_epochs=2)
    trainer.state.validations = 5
    evaluator = Engine(lambda engine, batch: None)
    by_event = global_step_from_engine(trainer)
    assert [
        by_event(evaluator, event)
        for event in (
            Events.STARTED,
            Events.EPOCH_COMPLETED,
            Events.EPOCH_COMPLETED(every=2),
            Events.COMPLETED,
            Events.ITERATION_COMPLETED,
            Events.GET_BATCH_STARTED,
            TrainerEvents.VALIDATED,
        )
    ] == [2, 2, 2, 2, 6, 6, 5]
    assert global_step_from_engine(trainer, Events.ITERATION_STARTED)(evaluator, Events.COMPLETED) == 6
    assert global_step_from_engine(trainer, TrainerEvents.VALIDATED)(evaluator, Events.COMPLETED) == 5
    # Read when called, not when made.
    step = global_step_from_engine(trainer, "ITERATION_COMPLETED")
    trainer.state.iteration = 40
    assert step(None, None) == 40


# -------------------------------------------------------------------------------------- reload_objects


def make_training(seed: int):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def update(engine, batch):
        inputs, targets = batch
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
        return loss.item()

    return model, optimizer, Engine(update)


def make_batches() -> list:
    generator = torch.Generator().manual_seed(3)
    return [(torch.randn(5, 4, generator=generator), torch.randn(5, 1, generator=generator)) for _ in range(3)]


def assert_same_state(model, optimizer, expected) -> None:
    expected_model, expected_optimizer = expected
    assert list(model.state_dict()) == list(expected_model)
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected_model[name]), name
    state = optimizer.state_dict()
    assert state["param_groups"] == expected_optimizer["param_groups"]
    assert sorted(state["state"]) == sorted(expected_optimizer["state"])
    for index, buffers in expected_optimizer["state"].items():
        assert torch.equal(state["state"][index]["momentum_buffer"], buffers["momentum_buffer"])


@pytest.fixture
def trained(tmp_path):
    """Three epochs of real training, a checkpoint per epoch, and the exact states after each epoch."""
    model, optimizer, trainer = make_training(0)
    handler = Checkpoint(
        {"model": model, "optimizer": optimizer}, DiskSaver(tmp_path), n_saved=None, filename_prefix="run"
    )
    trainer.add_event_handler(Events.EPOCH_COMPLETED, handler)
    snapshots = {}

    @trainer.on(Events.EPOCH_COMPLETED)
    def snapshot(engine):
        snapshots[engine.state.iteration] = (
            copy.deepcopy(model.state_dict()),
            copy.deepcopy(optimizer.state_dict()),
        )

    trainer.run(make_batches(), max_epochs=3)
    assert sorted(os.listdir(tmp_path)) == ["run_checkpoint_3.pt", "run_checkpoint_6.pt", "run_checkpoint_9.pt"]
    return handler, snapshots


def test_reload_objects_restores_the_last_save_bit_exactly(trained):
    handler, snapshots = trained
    model, optimizer, _ = make_training(123)
    handler.reload_objects({"model": model, "optimizer": optimizer})
    assert_same_state(model, optimizer, snapshots[9])


@pytest.mark.parametrize("step", [3, 6])
def test_reload_objects_restores_a_named_earlier_save_bit_exactly(trained, step):
    handler, snapshots = trained
    model, optimizer, _ = make_training(123)
    handler.reload_objects({"model": model, "optimizer": optimizer}, global_step=step)
    assert_same_state(model, optimizer, snapshots[step])


def test_reload_objects_passes_strict_on(trained):
    handler, snapshots = trained
    model, _, _ = make_training(123)
    extra = nn.Linear(1, 1)
    extra_before = copy.deepcopy(extra.state_dict())
    handler.reload_objects({"model": model, "extra": extra}, load_kwargs={"strict": False}, global_step=6)
    for name, value in model.state_dict().items():
        assert torch.equal(value, snapshots[6][0][name]), name
    assert all(torch.equal(value, extra_before[name]) for name, value in extra.state_dict().items())
    with pytest.raises(ValueError, match=r"has no entry for to_load \(x\) keys \['extra'\]"):
        handler.reload_objects({"model": model, "extra": extra}, load_kwargs={"strict": True})


def test_reload_objects_names_files_with_a_score_as_saves_do(tmp_path):
    model = nn.Linear(2, 1)
    trainer = Engine(lambda engine, batch: model.weight.data.add_(1.0))
    handler = Checkpoint(
        {"model": model},
        DiskSaver(tmp_path),
        n_saved=2,
        score_name="acc",
        global_step_transform=lambda engine, event: engine.state.epoch,
    )
    scores = iter(SCORES)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: engine.state.metrics.update(acc=next(scores)))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, handler)
    weights = {}
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: weights.update({e.state.epoch: model.weight.clone()}))
    trainer.run([0], max_epochs=4)
    assert sorted(os.listdir(tmp_path)) == ["model_3_acc=0.7500.pt", "model_4_acc=0.7500.pt"]
    target = nn.Linear(2, 1)
    handler.reload_objects({"model": target}, global_step=3, score=0.75)
    assert torch.equal(target.weight, weights[3])
    handler.reload_objects({"model": target}, global_step=4, score="0.7500", name="model")
    assert torch.equal(target.weight, weights[4])
    with pytest.raises(ValueError, match=r"^this handler's file names \('\{name\}_\{global_step\}_\{score_name\}="):
        handler.reload_objects({"model": target}, score=0.75)


def test_a_model_checkpoint_not_called_yet_names_files_after_to_load(tmp_path):
    model = nn.Linear(3, 2)
    trainer = Engine(lambda engine, batch: None)
    saver = ModelCheckpoint(tmp_path, "net", n_saved=None)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, saver, {"model": model})
    trainer.run([0, 1], max_epochs=2)
    # A new process: a fresh handler on the same folder knows nothing of the earlier saves.
    fresh = ModelCheckpoint(tmp_path, "net", require_empty=False)
    target = nn.Linear(3, 2)
    fresh.reload_objects({"model": target}, global_step=4)
    assert torch.equal(target.weight, model.weight) and torch.equal(target.bias, model.bias)
    with pytest.raises(RuntimeError, match=r"^reload_objects\(\) has no checkpoint to load"):
        fresh.reload_objects({"model": target})


def test_reload_objects_into_a_running_engine_is_refused(tmp_path):
    trainer = Engine(lambda engine, batch: None)
    handler = Checkpoint({"trainer": trainer}, DiskSaver(tmp_path))
    trainer.add_event_handler(Events.EPOCH_COMPLETED(once=1), handler)

    @trainer.on(Events.EPOCH_COMPLETED(once=2))
    def reload(engine):
        handler.reload_objects({"trainer": engine})

    with pytest.raises(RuntimeError, match=r"^cannot load into to_load\['trainer'\]: the engine is 'running'"):
        trainer.run([0, 1], max_epochs=3)


def saved_once(folder) -> Checkpoint:
    trainer = Engine(lambda engine, batch: None)
    handler = Checkpoint({"model": nn.Linear(2, 2)}, DiskSaver(folder))
    handler(trainer)
    return handler


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda d: Checkpoint({"model": nn.Linear(2, 2)}, DiskSaver(d)).reload_objects({"model": nn.Linear(2, 2)}),
            RuntimeError,
            r"^reload_objects\(\) has no checkpoint to load: this handler has saved none into '{dir}' yet\. "
            r"Pass global_step=\.\.\. \(and score=\.\.\. or name=\.\.\.\) to load a file saved earlier$",
        ),
        (
            lambda d: Checkpoint({"model": nn.Linear(2, 2)}, lambda checkpoint, filename: None).reload_objects(
                {"model": nn.Linear(2, 2)}
            ),
            TypeError,
            r"^Checkpoint's `save_handler` should be of type `DiskSaver`, given <class 'function'>: reload_objects\(\) "
            r"reads the files back from a DiskSaver's folder, this handler has <function ",
        ),
        (
            lambda d: saved_once(d).reload_objects({"model": nn.Linear(2, 2)}, load_kwargs={"map_location": "cpu"}),
            ValueError,
            r"^load_kwargs should hold only 'strict' and 'mmap' \(the options of Checkpoint\.load_objects\), "
            r"got \['map_location'\]$",
        ),
        (
            lambda d: saved_once(d).reload_objects({"model": nn.Linear(2, 2)}, load_kwargs=[("strict", False)]),
            TypeError,
            r"^load_kwargs should be a mapping of load_objects\(\) options or None, got list: \[\('strict', False\)\]$",
        ),
        (
            lambda d: saved_once(d).reload_objects({"model": nn.Linear(2, 2)}, global_state=0),
            TypeError,
            r"^reload_objects\(\) got unexpected filename_components \['global_state'\]; the parts of a file name "
            r"are name, global_step and score$",
        ),
        (
            lambda d: saved_once(d).reload_objects({"model": nn.Linear(2, 2)}, global_step=0, score=0.5),
            ValueError,
            r"^filename_components\['score'\] is not part of this handler's file names, whose pattern is "
            r"'\{name\}_\{global_step\}\.\{ext\}'$",
        ),
        (
            lambda d: saved_once(d).reload_objects({"model": nn.Linear(2, 2)}, name="model"),
            ValueError,
            r"^this handler's file names \('\{name\}_\{global_step\}\.\{ext\}'\) have a global_step; "
            r"pass global_step=\.\.\. to reload_objects\(\)$",
        ),
        (
            lambda d: saved_once(d).reload_objects({"model": nn.Linear(2, 2)}, global_step="0"),
            TypeError,
            r"^global_step should be an int, got str: '0'$",
        ),
        (
            lambda d: saved_once(d).reload_objects({"model": nn.Linear(2, 2)}, global_step=0, name=3),
            TypeError,
            r"^name should be a non-empty str, got int: 3$",
        ),
        (
            lambda d: saved_once(d).reload_objects({"model": nn.Linear(2, 2)}, global_step=99),
            FileNotFoundError,
            r"^reload_objects\(\) found no checkpoint file '{dir}/model_99\.pt' for filename_components "
            r"\{'global_step': 99\}; this handler keeps \['model_0\.pt'\]$",
        ),
    ],
)
def test_reload_objects_refuses_with_a_clear_message(tmp_path, call, error, message):
    with pytest.raises(error, match=message.replace("{dir}", re.escape(str(tmp_path)))):
        call(tmp_path)


def test_reload_objects_by_score_needs_a_number_or_the_text(tmp_path):
    trainer = Engine(lambda engine, batch: None)
    handler = Checkpoint({"model": nn.Linear(2, 2)}, DiskSaver(tmp_path), score_function=lambda engine: 2)
    handler(trainer)
    assert os.listdir(tmp_path) == ["model_2.pt"]
    handler.reload_objects({"model": nn.Linear(2, 2)}, score=2)
    message = r"^score should be a number or the score as written in the file name, got bool: True$"
    with pytest.raises(TypeError, match=message):
        handler.reload_objects({"model": nn.Linear(2, 2)}, score=True)


# ------------------------------------------------------------------------------------- ModelCheckpoint


MODEL_CHECKPOINT_CASES = {
    "ignite's example": dict(
        args=("myprefix",),
        options=dict(n_saved=2),
        every=2,
        single=True,
        expected=(["myprefix_mymodel_20.pt", "myprefix_mymodel_30.pt"], "myprefix_mymodel_30.pt"),
    ),
    "default": dict(args=(), options=dict(), expected=(["checkpoint_18.pt"], "checkpoint_18.pt")),
    "keep all": dict(
        args=("run",),
        options=dict(n_saved=None),
        every=3,
        expected=(["run_checkpoint_18.pt", "run_checkpoint_9.pt"], "run_checkpoint_18.pt"),
    ),
    "score name, step from epoch": dict(
        args=("best",),
        options=dict(n_saved=2, score_name="acc", global_step_transform=lambda engine, event: engine.state.epoch),
        expected=(
            ["best_checkpoint_4_acc=0.7500.pt", "best_checkpoint_5_acc=0.7500.pt"],
            "best_checkpoint_5_acc=0.7500.pt",
        ),
    ),
    "score function, greater or equal": dict(
        args=(),
        options=dict(n_saved=2, score_function=lambda engine: engine.state.metrics["acc"], greater_or_equal=True),
        single=True,
        expected=(["mymodel_0.5000.pt", "mymodel_0.7500.pt"], "mymodel_0.7500.pt"),
    ),
    "score function, step from epoch": dict(
        args=(),
        options=dict(
            n_saved=3,
            score_function=lambda engine: engine.state.metrics["acc"],
            global_step_transform=lambda engine, event: engine.state.epoch,
        ),
        single=True,
        expected=(["mymodel_3_0.5000.pt", "mymodel_4_0.7500.pt", "mymodel_5_0.7500.pt"], "mymodel_5_0.7500.pt"),
    ),
    "pattern": dict(
        args=("p",),
        options=dict(n_saved=2, filename_pattern="{filename_prefix}-{global_step}-{name}.{ext}"),
        expected=(["p-15-checkpoint.pt", "p-18-checkpoint.pt"], "p-18-checkpoint.pt"),
    ),
    "not atomic": dict(
        args=("plain",),
        options=dict(atomic=False, n_saved=1),
        single=True,
        expected=(["plain_mymodel_18.pt"], "plain_mymodel_18.pt"),
    ),
}
MODEL_SCORES = [0.5, 0.25, 0.5, 0.75, 0.75, 0.1]


def run_model_checkpoint(engine_cls, events, model_checkpoint_cls, folder, case) -> tuple[list[str], str]:
    trainer = engine_cls(lambda engine, batch: None)
    model = nn.Linear(3, 3)
    to_save = {"mymodel": model} if case.get("single") else {"mymodel": model, "trainer": trainer}
    handler = model_checkpoint_cls(folder, *case["args"], **case["options"])
    scores = iter(MODEL_SCORES)

    @trainer.on(events.EPOCH_COMPLETED)
    def evaluate(engine):
        engine.state.metrics["acc"] = next(scores)

    every = case.get("every", 1)
    event = events.EPOCH_COMPLETED(every=every) if every > 1 else events.EPOCH_COMPLETED
    trainer.add_event_handler(event, handler, to_save)
    trainer.run([0, 1, 2] if every != 2 else [0, 1, 2, 3, 4], max_epochs=len(MODEL_SCORES))
    return sorted(os.listdir(folder)), os.path.basename(handler.last_checkpoint)


@pytest.mark.parametrize("case", list(MODEL_CHECKPOINT_CASES))
def test_model_checkpoint_keeps_the_files_ignite_keeps(tmp_path, case):
    options = MODEL_CHECKPOINT_CASES[case]
    ours = run_model_checkpoint(Engine, Events, ModelCheckpoint, tmp_path / "ours", options)
    assert ours == options["expected"]
    ignite_engine, ignite_handlers = ignite_modules()
    theirs = run_model_checkpoint(
        ignite_engine.Engine, ignite_engine.Events, ignite_handlers.ModelCheckpoint, tmp_path / "ignite", options
    )
    assert theirs == options["expected"]


def test_model_checkpoint_saves_what_it_is_called_with(tmp_path):
    model, optimizer, trainer = make_training(0)
    handler = ModelCheckpoint(tmp_path, "train", n_saved=2, atomic=False, create_dir=False)
    assert repr(handler.save_handler) == f"DiskSaver({str(tmp_path)!r}, atomic=False)"
    trainer.add_event_handler(Events.EPOCH_COMPLETED, handler, {"model": model, "optimizer": optimizer})
    trainer.register_events(*CheckpointEvents)
    saved = []
    trainer.add_event_handler(Checkpoint.SAVED_CHECKPOINT, lambda engine: saved.append(handler.last_checkpoint.name))
    trainer.run(make_batches(), max_epochs=3)
    assert saved == ["train_checkpoint_3.pt", "train_checkpoint_6.pt", "train_checkpoint_9.pt"]
    assert sorted(os.listdir(tmp_path)) == ["train_checkpoint_6.pt", "train_checkpoint_9.pt"]
    assert handler.last_checkpoint == tmp_path / "train_checkpoint_9.pt"
    assert handler.to_save == {"model": model, "optimizer": optimizer}
    expected = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()))
    assert sorted(load_checkpoint(handler.last_checkpoint)) == ["model", "optimizer"]
    fresh_model, fresh_optimizer, _ = make_training(5)
    handler.reload_objects({"model": fresh_model, "optimizer": fresh_optimizer})
    assert_same_state(fresh_model, fresh_optimizer, expected)


def test_model_checkpoint_with_include_self_keeps_its_list_beside_the_objects(tmp_path):
    # ignite 0.5.5 names these files after the single object and writes its list into that object's
    # state_dict; nbengine keeps the two apart, under the name "checkpoint", as Checkpoint does.
    trainer = Engine(lambda engine, batch: None)
    handler = ModelCheckpoint(tmp_path, "p", n_saved=2, include_self=True)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, handler, {"model": nn.Linear(2, 2)})
    trainer.run([0, 1], max_epochs=3)
    assert sorted(os.listdir(tmp_path)) == ["p_checkpoint_4.pt", "p_checkpoint_6.pt"]
    saved = load_checkpoint(handler.last_checkpoint)
    assert sorted(saved) == ["checkpointer", "model"]
    assert saved["checkpointer"] == {"_saved": [(4, "p_checkpoint_4.pt"), (6, "p_checkpoint_6.pt")]}


def test_model_checkpoint_request_save(tmp_path):
    trainer = Engine(lambda engine, batch: None)
    handler = ModelCheckpoint(tmp_path)
    with pytest.raises(RuntimeError, match=r"^this ModelCheckpoint has no objects to save yet: it is given them when"):
        handler.request_save(trainer)
    model = nn.Linear(2, 2)
    assert handler.request_save(trainer, {"model": model}).result() == tmp_path / "model_0.pt"
    trainer.run([0, 1], max_epochs=1)
    assert handler.request_save(trainer).result() == tmp_path / "model_2.pt"
    assert os.listdir(tmp_path) == ["model_2.pt"]


def test_model_checkpoint_refuses_a_folder_with_checkpoint_files_unless_told(tmp_path):
    (tmp_path / "old.pt").write_bytes(b"")
    with pytest.raises(
        ValueError,
        match=rf"^Files \['old\.pt'\] with extension '\.pt' are already present in the directory "
        rf"{re.escape(str(tmp_path))}: dirname should hold no checkpoint yet\. Pass require_empty=False to save there "
        r"anyway$",
    ):
        ModelCheckpoint(tmp_path, "net")
    handler = ModelCheckpoint(tmp_path, "net", require_empty=False)
    trainer = Engine(lambda engine, batch: None)
    trainer.add_event_handler(Events.COMPLETED, handler, {"model": nn.Linear(2, 2)})
    trainer.run([0], max_epochs=1)
    assert sorted(os.listdir(tmp_path)) == ["net_model_1.pt", "old.pt"]


class NoStateDict:
    def __repr__(self) -> str:
        return "NoStateDict()"


def attach_model_checkpoint(folder, to_save, **options):
    trainer = Engine(lambda engine, batch: None)
    trainer.add_event_handler(Events.COMPLETED, ModelCheckpoint(folder, **options), to_save)
    trainer.run([0], max_epochs=1)


def custom_event_without_counter():
    trainer = Engine(lambda engine, batch: None)
    trainer.register_events(*TrainerEvents)
    return global_step_from_engine(trainer, TrainerEvents.LOGGED)


def step_for(event):
    return global_step_from_engine(Engine(lambda engine, batch: None))(None, event)


@pytest.mark.parametrize(
    "make, error, message",
    [
        # global_step_from_engine
        (
            lambda d: global_step_from_engine("trainer"),
            TypeError,
            r"^engine should be an nbengine Engine, got str: 'trainer'$",
        ),
        (
            lambda d: global_step_from_engine(Engine(lambda engine, batch: None), 3),
            TypeError,
            r"^custom_event_name should be one event \(Events\.X or a registered custom event\), got int: 3$",
        ),
        (
            lambda d: global_step_from_engine(
                Engine(lambda engine, batch: None), Events.EPOCH_COMPLETED | Events.COMPLETED
            ),
            TypeError,
            r"^custom_event_name should be one event \(Events\.X or a registered custom event\), got EventsList: "
            r"Events\.EPOCH_COMPLETED \| Events\.COMPLETED$",
        ),
        (
            lambda d: global_step_from_engine(Engine(lambda engine, batch: None), "epoch"),
            ValueError,
            r"^custom_event_name 'epoch' is not an event this Engine knows; register custom events with "
            r"register_events\(\) first$",
        ),
        (
            lambda d: custom_event_without_counter(),
            ValueError,
            r"^custom_event_name Events\.LOGGED has no State counter on this Engine; register it with "
            r"event_to_attr=\{event: 'attribute'\} or pass custom_event_name=Events\.EPOCH_COMPLETED$",
        ),
        (
            lambda d: step_for(None),
            ValueError,
            r"^event_name is None: the engine that saves has fired no event yet, so there is no event to read the "
            r"step for; pass custom_event_name=\.\.\. to global_step_from_engine\(\)$",
        ),
        (
            lambda d: step_for(CheckpointEvents.SAVED_CHECKPOINT),
            ValueError,
            r"^event_name Events\.SAVED_CHECKPOINT is not an event this Engine knows; register custom events with "
            r"register_events\(\) first$",
        ),
        # ModelCheckpoint: refused before the folder is made
        (
            lambda d: ModelCheckpoint(d, "p", pickle_protocol=4, _use_new_zipfile_serialization=False),
            TypeError,
            r"^ModelCheckpoint got keyword arguments \['_use_new_zipfile_serialization', 'pickle_protocol'\], which "
            r"ignite passes to torch\.save; nbengine's DiskSaver writes its own CRC-checked format and takes no "
            r"torch\.save options$",
        ),
        (
            lambda d: ModelCheckpoint(d, save_on_rank=-1),
            ValueError,
            r"^save_on_rank should be a non-negative int \(a rank of the job\), got -1$",
        ),
        (
            lambda d: ModelCheckpoint(d, n_saved=0),
            ValueError,
            r"^n_saved should be a positive integer or None, got 0$",
        ),
        (
            lambda d: ModelCheckpoint(d, score_function=0.5),
            TypeError,
            r"^score_function should be a callable fn\(engine\) -> number, got 0\.5$",
        ),
        (
            lambda d: ModelCheckpoint(d, filename_prefix=3),
            TypeError,
            r"^filename_prefix should be a str, got 3$",
        ),
        (
            lambda d: ModelCheckpoint(d, atomic="yes"),
            TypeError,
            r"^atomic should be True or False, got 'yes'$",
        ),
        (
            lambda d: ModelCheckpoint(d, create_dir=False),
            ValueError,
            r"^Directory path '{dir}' is not found: dirname should be an existing directory; pass create_dir=True to "
            r"create it$",
        ),
        (
            lambda d: ModelCheckpoint(3),
            TypeError,
            r"^dirname should be a str or os\.PathLike, got int: 3$",
        ),
        # ModelCheckpoint: the objects given at call time
        (
            lambda d: attach_model_checkpoint(d, {}),
            RuntimeError,
            r"^No objects to checkpoint found: to_save should map names to objects to save, got \{\}$",
        ),
        (
            lambda d: attach_model_checkpoint(d, {"model": nn.Linear(1, 1), "data": NoStateDict()}),
            TypeError,
            r"^Object <class '.*NoStateDict'> should have `state_dict` method: to_save\['data'\] is NoStateDict\(\)$",
        ),
        (
            lambda d: attach_model_checkpoint(d, [nn.Linear(1, 1)]),
            TypeError,
            r"^Argument `to_save` should be a dictionary, but given <class 'list'>: a mapping of names to objects with "
            r"state_dict\(\) was expected, got \[Linear",
        ),
        (
            lambda d: attach_model_checkpoint(d, {"checkpointer": nn.Linear(1, 1)}, include_self=True),
            ValueError,
            r"^to_save has the key 'checkpointer', which include_self=True reserves; got keys \['checkpointer'\]$",
        ),
        (
            lambda d: Engine(lambda engine, batch: None).add_event_handler(Events.COMPLETED, ModelCheckpoint(d)),
            ValueError,
            r"^handler ModelCheckpoint\(engine: 'Engine', to_save: 'Mapping', \*exception_then_to_save: 'Any'\) -> "
            r"'None' for COMPLETED cannot be "
            r"called with \(engine\) nor with \(\)$",
        ),
        (
            lambda d: ModelCheckpoint(d).request_save("trainer"),
            TypeError,
            r"^engine should be an nbengine Engine, got str: 'trainer'$",
        ),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(tmp_path, make, error, message):
    folder = tmp_path / "ckpt"
    with pytest.raises(error, match=message.replace("{dir}", re.escape(str(folder)))):
        make(folder)
    assert not folder.exists() or os.listdir(folder) == []
