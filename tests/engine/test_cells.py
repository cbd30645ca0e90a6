"""CellGuard: user code run beside a background training (``with guard:``) draws from its own random
stream, never sees a half-done step, and never hangs when it waits for the training."""

from __future__ import annotations

import time

import pytest
import torch

from nbengine.engine import Events
from nbengine.engine.cell_guard import CellGuard
from nbengine.engine.deterministic import DeterministicEngine

pytestmark = pytest.mark.timeout(240)


def _training(iterations_per_epoch: int = 40, epochs: int = 3):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.Dropout(0.5), torch.nn.Linear(32, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    data = [torch.randn(16, 6, generator=torch.Generator().manual_seed(i)) for i in range(iterations_per_epoch)]
    mid_step = []

    def step(engine, batch):
        optimizer.zero_grad()
        loss = model(batch).pow(2).mean()
        loss.backward()
        mid_step.append(True)
        optimizer.step()
        time.sleep(0.002)  # long enough that user code overlaps many steps
        mid_step.pop()
        return loss.item()

    trainer = DeterministicEngine(step, seed=7)
    return model, trainer, data, epochs, mid_step


def _reference_weights():
    model, trainer, data, epochs, _ = _training()
    trainer.run(data, max_epochs=epochs)
    return [p.detach().clone() for p in model.parameters()]


def test_user_draws_and_reads_beside_a_background_run_leave_the_training_exact():
    expected = _reference_weights()
    model, trainer, data, epochs, mid_step = _training()
    guard = CellGuard(trainer)
    trainer.start(data, max_epochs=epochs)
    draws = []
    while trainer.status == "running":
        with guard:
            if trainer.status == "running":
                draws.append(torch.rand(2))
                assert not mid_step, "user code ran in the middle of a step"
                _ = [p.sum().item() for p in model.parameters()]
        time.sleep(0.003)
    trainer.wait()
    assert len(draws) >= 3
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), expected))
    assert trainer.state.rng_notes == []
    # The user's draws are their own stream: not the same numbers twice.
    assert len({tuple(d.tolist()) for d in draws}) == len(draws)


def test_without_the_guard_the_same_draws_change_the_training():
    expected = _reference_weights()
    model, trainer, data, epochs, _ = _training()
    trainer.start(data, max_epochs=epochs)
    while trainer.status == "running":
        torch.rand(2)
        time.sleep(0.003)
    trainer.wait()
    assert not all(torch.equal(p, q) for p, q in zip(model.parameters(), expected))


def test_waiting_for_the_training_inside_guarded_code_does_not_hang_and_stays_exact():
    expected = _reference_weights()
    model, trainer, data, epochs, _ = _training()
    guard = CellGuard(trainer, patience=30.0)
    trainer.start(data, max_epochs=epochs)
    with guard:
        trainer.wait()  # released by the wait itself, long before the patience
    assert trainer.status == "done"
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), expected))
    assert [note[2] for note in trainer.state.rng_notes] == ["cell"]


def test_pause_from_guarded_code_releases_the_park():
    model, trainer, data, epochs, _ = _training()
    guard = CellGuard(trainer, patience=30.0)
    trainer.start(data, max_epochs=epochs)
    with guard:
        trainer.pause()
        trainer.wait(timeout=20)
    assert trainer.status == "paused"
    trainer.stop()


def test_a_polling_loop_lets_the_training_go_on_after_the_patience_and_is_noted():
    model, trainer, data, epochs, _ = _training()
    guard = CellGuard(trainer, patience=0.2)
    trainer.start(data, max_epochs=epochs)
    with guard:
        deadline = time.monotonic() + 60
        while trainer.status == "running" and time.monotonic() < deadline:
            time.sleep(0.01)
    assert trainer.status == "done"
    (epoch, iteration, kind), *_ = trainer.state.rng_notes
    assert kind == "cell" and 1 <= iteration <= epochs * len(data) and epoch == (iteration - 1) // len(data) + 1


def test_guard_outside_a_background_run_does_nothing():
    model, trainer, data, epochs, _ = _training()
    guard = CellGuard(trainer)
    with guard:
        trainer.run(data, max_epochs=1)
    assert trainer.state.rng_notes == []


@pytest.mark.parametrize(
    "kwargs, message",
    [({"patience": 0}, "patience should be a positive number of seconds, got 0"),
     ({"patience": True}, "patience should be a positive number of seconds, got True")],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CellGuard(DeterministicEngine(lambda e, b: None), **kwargs)


def test_engine_argument_is_checked():
    with pytest.raises(TypeError, match="engine should be an nbengine Engine, got 3"):
        CellGuard(3)


def test_process_wide_settings_changed_by_the_user_during_a_run_are_not_overwritten():
    cudnn = torch.backends.cudnn
    before = (cudnn.deterministic, cudnn.benchmark, torch.get_num_threads())
    try:
        cudnn.deterministic, cudnn.benchmark = False, True
        model, trainer, data, epochs, _ = _training()

        def user_changes(engine):
            if engine.state.iteration == 3:
                assert (cudnn.deterministic, cudnn.benchmark) == (True, False)  # set for the run
                cudnn.benchmark = True  # as a user's cell might, meanwhile

        trainer.add_event_handler(Events.ITERATION_COMPLETED, user_changes)
        trainer.run(data, max_epochs=1)
        # deterministic is put back as it was; benchmark keeps the user's change.
        assert (cudnn.deterministic, cudnn.benchmark) == (False, True)
    finally:
        cudnn.deterministic, cudnn.benchmark = before[0], before[1]
        torch.set_num_threads(before[2])
