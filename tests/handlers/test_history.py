"""History: floats not tensors, fingerprints, epoch metrics, the cap, runs, rewind, and a reader thread."""

from __future__ import annotations

import doctest
import gc
import os
import subprocess
import sys
import threading
import weakref

import numpy as np
import pytest
import torch

import nbengine.handlers.history as history_module
from nbengine.engine import Engine, Events
from nbengine.handlers import History, batch_fingerprint


def test_module_doctests_pass():
    result = doctest.testmod(history_module)
    assert result.attempted >= 8 and result.failed == 0


def test_outputs_are_recorded_as_floats_and_no_tensor_is_kept_alive():
    model = torch.nn.Linear(3, 1)
    outputs = []

    def step(engine, batch):
        loss = model(batch).pow(2).mean()  # keeps a graph alive as long as it lives
        outputs.append(weakref.ref(loss))
        expected.append(loss.item())
        return loss

    expected: list[float] = []
    engine = Engine(step)
    history = History().attach(engine)
    engine.run([torch.full((2, 3), float(i)) for i in range(4)], max_epochs=2)
    snap = history.snapshot()
    assert snap.values.dtype == np.float64 and snap.values[:, 0].tolist() == expected
    assert snap.iterations.tolist() == list(range(1, 9)) and snap.epochs.tolist() == [1] * 4 + [2] * 4
    engine.state.output = None
    gc.collect()
    assert [ref() for ref in outputs] == [None] * 8


def test_mapping_and_list_outputs_become_named_series():
    engine = Engine(lambda engine, batch: {"loss": torch.tensor(batch * 1.0), "acc": batch / 10})
    history = History().attach(engine)
    engine.run([1, 2], max_epochs=1)
    snap = history.snapshot()
    assert snap.names == ("loss", "acc")
    assert snap.series("acc").tolist() == [0.1, 0.2] and snap.series("loss").tolist() == [1.0, 2.0]
    with pytest.raises(KeyError, match=r"no output series named 'lr'; the series are \['loss', 'acc'\]"):
        snap.series("lr")
    engine = Engine(lambda engine, batch: (batch, np.float32(batch) * 2))
    history = History().attach(engine)
    engine.run([1, 2], max_epochs=1)
    assert history.snapshot().names == ("output_0", "output_1")
    assert history.snapshot().values.tolist() == [[1.0, 2.0], [2.0, 4.0]]


def test_an_output_that_is_not_numbers_records_nan_with_one_warning():
    engine = Engine(lambda engine, batch: (torch.zeros(3), torch.ones(3)))
    history = History().attach(engine)
    with pytest.warns(RuntimeWarning, match="History cannot record an output of type tuple as numbers") as caught:
        engine.run([1, 2, 3], max_epochs=1)
    assert len(caught) == 1
    assert np.isnan(history.snapshot().values).all()


def test_output_transform_picks_what_is_recorded():
    engine = Engine(lambda engine, batch: (torch.zeros(3), torch.tensor(batch * 0.5)))
    history = History(output_transform=lambda output: {"loss": output[1]}).attach(engine)
    engine.run([1, 2], max_epochs=1)
    assert history.snapshot().names == ("loss",) and history.snapshot().values[:, 0].tolist() == [0.5, 1.0]


def test_fingerprints_tell_batches_apart_and_match_equal_ones():
    batches = [(torch.arange(6.0).reshape(2, 3) + i, torch.tensor([i, i])) for i in range(3)]
    engine = Engine(lambda engine, batch: 0.0)
    history = History(fingerprint=batch_fingerprint).attach(engine)
    engine.run(batches + [tuple(t.clone() for t in batches[0])], max_epochs=1)
    fingerprints = history.snapshot().fingerprints.tolist()
    assert len(set(fingerprints[:3])) == 3 and fingerprints[3] == fingerprints[0]
    assert fingerprints[0] == batch_fingerprint(batches[0])


def test_on_a_plain_engine_auto_records_no_fingerprint():
    engine = Engine(lambda engine, batch: 0.0)
    history = History().attach(engine)
    engine.run([torch.tensor([1]), torch.tensor([2])], max_epochs=1)
    assert history.snapshot().fingerprints.tolist() == [0, 0]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (torch.zeros(4), torch.zeros(2, 2)),  # same bytes, other shape
        (torch.zeros(4), torch.zeros(4, dtype=torch.int32)),  # same bytes, other dtype
        (torch.zeros(4, dtype=torch.bfloat16), torch.ones(4, dtype=torch.bfloat16)),  # a dtype numpy lacks
        ((1, 2), [1, 2]),
        ({"x": 1}, {"y": 1}),
        ("abc", "abd"),
        (torch.arange(12.0).reshape(3, 4).t(), torch.arange(12.0).reshape(4, 3)),  # non-contiguous
    ],
)
def test_fingerprints_of_different_batches_differ(a, b):
    assert batch_fingerprint(a) != batch_fingerprint(b)


def test_on_a_deterministic_engine_the_sample_indices_identify_the_batch():
    from torch.utils.data import DataLoader

    from nbengine.engine import DeterministicEngine

    data = torch.arange(10) * 7
    engine = DeterministicEngine(lambda engine, batch: 0.0, seed=5)
    by_indices = History().attach(engine)
    seen = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append((e.state.batch // 7).tolist()))
    engine.run(DataLoader(data, batch_size=4, shuffle=True), max_epochs=2)
    masked = [hash(tuple(indices)) & (2**63 - 1) for indices in seen]
    assert by_indices.snapshot().fingerprints.tolist() == masked

    content = DeterministicEngine(lambda engine, batch: 0.0, seed=5)
    by_content = History(fingerprint=batch_fingerprint).attach(content)
    batches = []
    content.add_event_handler(Events.ITERATION_COMPLETED, lambda e: batches.append(e.state.batch))
    content.run(DataLoader(data, batch_size=4, shuffle=True), max_epochs=2)
    assert by_content.snapshot().fingerprints.tolist() == [batch_fingerprint(b) for b in batches]

    plain = DeterministicEngine(lambda engine, batch: 0.0, seed=5)
    on_a_list = History().attach(plain)
    plain.run([torch.tensor([1]), torch.tensor([2])], max_epochs=1)
    assert on_a_list.snapshot().fingerprints.tolist() == [batch_fingerprint(torch.tensor([i])) for i in (1, 2)]


def test_large_tensors_are_fingerprinted_by_windows():
    big = torch.zeros(64, 1024)  # 256 KiB: start, middle and end windows are read
    for position in (0, 32 * 1024 - 1, 64 * 1024 - 1):
        changed = big.clone()
        changed.view(-1)[position] = 1.0
        assert batch_fingerprint(changed) != batch_fingerprint(big)
    between = big.clone()
    between.view(-1)[10_000] = 1.0  # outside every window: the documented blind spot
    assert batch_fingerprint(between) == batch_fingerprint(big)


def test_long_lists_are_sampled_and_their_length_counts():
    assert batch_fingerprint(list(range(100))) != batch_fingerprint(list(range(101)))
    assert batch_fingerprint(list(range(100))) == batch_fingerprint(list(range(100)))


def test_fingerprints_are_the_same_in_another_process():
    batch = {"image": torch.arange(24.0).reshape(2, 3, 4), "label": [3, 4], "name": "a"}
    code = (
        "import torch; from nbengine.handlers import batch_fingerprint; "
        "print(batch_fingerprint({'image': torch.arange(24.0).reshape(2, 3, 4), 'label': [3, 4], 'name': 'a'}))"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == batch_fingerprint(batch)


def test_the_cap_bounds_memory_and_keeps_the_newest_records():
    engine = Engine(lambda engine, batch: float(batch))
    history = History(capacity=5, epoch_capacity=2).attach(engine)
    engine.run(list(range(4)), max_epochs=3)
    snap = history.snapshot()
    assert (len(snap), snap.dropped, history.count) == (5, 7, 12)
    assert snap.iterations.tolist() == [8, 9, 10, 11, 12]
    assert snap.values[:, 0].tolist() == [3.0, 0.0, 1.0, 2.0, 3.0]
    assert [record[1] for record in snap.epoch_metrics] == [2, 3]


def test_epoch_metrics_keep_scalars():
    engine = Engine(lambda engine, batch: 0.0)

    @engine.on(Events.EPOCH_COMPLETED)
    def compute(engine):
        engine.state.metrics.update(
            {"accuracy": torch.tensor(0.5), "loss": 0.25 * engine.state.epoch, "confusion": torch.eye(2)}
        )

    history = History().attach(engine)
    engine.run([1], max_epochs=2)
    assert history.snapshot().epoch_metrics == [
        (1, 1, 1, {"accuracy": 0.5, "loss": 0.25}),
        (1, 2, 2, {"accuracy": 0.5, "loss": 0.5}),
    ]


def test_runs_are_numbered_and_a_resumed_run_is_the_same_run():
    engine = Engine(lambda engine, batch: 1.0)
    history = History().attach(engine)
    engine.run([1, 2], max_epochs=1)
    engine.run([1, 2], max_epochs=1)  # finished before, same max_epochs: a new run
    engine.step(1, data=[1, 2], max_epochs=2)  # a larger max_epochs continues the finished run (ignite)
    engine.run()
    engine.state.max_epochs = None  # ignite's way to start over
    engine.run([1, 2], max_epochs=1)
    assert history.snapshot().runs.tolist() == [1, 1, 2, 2, 2, 2, 3, 3]
    assert history.epoch_records(2, run=2).iterations.tolist() == [3, 4]
    assert history.epoch_records(1, run=1).iterations.tolist() == [1, 2]


def test_version_grows_with_every_change():
    engine = Engine(lambda engine, batch: 1.0)
    history = History().attach(engine)
    assert history.version == 0
    engine.run([1, 2, 3], max_epochs=1)
    after_run = history.version
    assert after_run == 1 + 3 + 1  # started, three iterations, one epoch
    history.rewind(1)
    assert history.version == after_run + 1 and history.snapshot().iterations.tolist() == [1]
    history.clear()
    assert history.version == after_run + 2 and len(history) == 0


def test_rewind_replaces_the_latest_run_after_an_iteration():
    engine = Engine(lambda engine, batch: float(batch))
    history = History(capacity=4).attach(engine)
    engine.run([1, 2, 3], max_epochs=2)
    other = Engine(lambda engine, batch: float(batch) * 10)
    replacement_history = History().attach(other)
    other.load_state_dict({"iteration": 3, "epoch_length": 3, "max_epochs": 2})
    other.run([1, 2, 3])
    history.rewind(3, replacement=replacement_history.snapshot())
    snap = history.snapshot()
    assert snap.iterations.tolist() == [3, 4, 5, 6] and snap.values[:, 0].tolist() == [3.0, 10.0, 20.0, 30.0]
    assert [record[1] for record in snap.epoch_metrics] == [1]
    assert set(snap.runs.tolist()) == {1}


def test_a_reader_thread_always_sees_a_consistent_snapshot():
    engine = Engine(lambda engine, batch: float(engine.state.iteration))
    history = History(capacity=500).attach(engine)
    problems: list[str] = []
    done = threading.Event()

    def read():
        last_version = -1
        while not done.is_set():
            snap = history.snapshot()
            if snap.version < last_version:
                problems.append(f"version went back from {last_version} to {snap.version}")
            last_version = snap.version
            # Once records come: one run started, every record held or dropped, every epoch; nothing else.
            if len(snap) and snap.version != 1 + len(snap) + snap.dropped + len(snap.epoch_metrics):
                problems.append(f"version {snap.version} does not match what the snapshot holds")
            n = len(snap.iterations)
            if not (len(snap.values) == len(snap.fingerprints) == len(snap.epochs) == n):
                problems.append("columns of different lengths")
            if n and (np.diff(snap.iterations) != 1).any():
                problems.append("iterations out of order")
            if n and not np.array_equal(snap.values[:, 0], snap.iterations.astype(float)):
                problems.append("a value landed in another iteration's row")

    reader = threading.Thread(target=read)
    reader.start()
    engine.start(list(range(1000)), max_epochs=5)
    engine.wait()
    done.set()
    reader.join()
    assert problems == []
    assert history.count == 5000 and history.snapshot().iterations[-1] == 5000


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: History(capacity=0), ValueError, r"capacity should be a positive integer, got 0"),
        (lambda: History(epoch_capacity=True), ValueError, r"epoch_capacity should be a positive integer, got True"),
        (lambda: History(output_transform=3), TypeError, r"output_transform should be callable or None, got 3"),
        (lambda: History(fingerprint="crc"), TypeError, r"fingerprint should be 'auto', a callable or None, got 'crc'"),
        (lambda: History().attach(object()), TypeError, r"engine should be an nbengine Engine, got <object object"),
        (lambda: History().rewind(-1), ValueError, r"iteration should be a non-negative integer, got -1"),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_a_fingerprint_function_that_returns_no_int_fails_the_iteration_clearly():
    engine = Engine(lambda engine, batch: 1.0)
    History(fingerprint=lambda batch: "abc").attach(engine)
    with pytest.raises(TypeError, match=r"the History's fingerprint function returned 'abc' of type str; it should return an int"):
        engine.run([1], max_epochs=1)


def test_records_cross_the_block_boundary_of_the_buffer_in_order():
    engine = Engine(lambda engine, batch: float(engine.state.iteration))
    history = History(capacity=1500).attach(engine)
    engine.run(list(range(1000)), max_epochs=3)
    snap = history.snapshot()
    assert (len(snap), snap.dropped, history.count) == (1500, 1500, 3000)
    assert snap.iterations.tolist() == list(range(1501, 3001)) and snap.values[:, 0].tolist() == list(map(float, range(1501, 3001)))
    assert snap.epochs.tolist() == [2] * 500 + [3] * 1000


def test_attaching_twice_is_refused_and_detach_stops_recording():
    engine = Engine(lambda engine, batch: 1.0)
    history = History().attach(engine)
    with pytest.raises(RuntimeError, match=r"this History already records"):
        history.attach(engine)
    history.detach()
    engine.run([1], max_epochs=1)
    assert len(history) == 0 and history.engine is None


def test_notes_left_in_the_engine_state_are_recorded_with_their_epoch_and_run():
    from nbengine.engine import Engine, Events

    engine = Engine(lambda engine, batch: 0.0)
    history = History().attach(engine)
    engine.state.rng_notes = []

    @engine.on(Events.ITERATION_COMPLETED)
    def note(engine):
        # As a CellGuard notes a cell that shared the generators with the training from iteration 6.
        if engine.state.iteration == 5:
            engine.state.rng_notes.append((engine.state.epoch, 6, "cell"))
            assert history.snapshot().notes == [(1, 2, 6, "cell")]  # seen during the epoch already

    engine.run([0] * 4, max_epochs=3)
    assert history.snapshot().notes == [(1, 2, 6, "cell")]
    assert history.epoch_records(2).notes == [(1, 2, 6, "cell")]
    assert history.epoch_records(1).notes == history.epoch_records(3).notes == []
    history.clear()
    assert history.snapshot().notes == []
