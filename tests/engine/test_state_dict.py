"""state_dict / load_state_dict round trips, at an epoch or at an iteration."""

from __future__ import annotations

import pytest

from nbengine.engine import Engine, Events


def test_state_dict_holds_the_ignite_keys():
    engine = Engine(lambda e, b: b)
    engine.run([1, 2, 3], max_epochs=2)
    assert dict(engine.state_dict()) == {"epoch_length": 3, "iteration": 6, "max_epochs": 2}
    engine = Engine(lambda e, b: b)
    engine.run([1, 2, 3], max_iters=4)
    assert dict(engine.state_dict()) == {"epoch_length": 3, "iteration": 4, "max_iters": 4}


def test_round_trip_with_user_keys_mid_run():
    engine = Engine(lambda e, b: b)
    engine.state_dict_user_keys.append("alpha")
    engine.add_event_handler(Events.STARTED, lambda e: setattr(e.state, "alpha", 0.5))
    engine.step(4, data=list(range(3)), max_epochs=3)
    saved = engine.state_dict()
    # Paused after the first iteration of epoch 2: the boundary says so (ignite's keys alone would put
    # the run at the start of that iteration's epoch).
    assert dict(saved) == {
        "epoch_length": 3, "iteration": 4, "max_epochs": 3, "alpha": 0.5,
        "boundary": {"event": "ITERATION_COMPLETED", "handlers_done": None, "epoch": 2, "iteration_in_epoch": 1},
    }

    restored = Engine(lambda e, b: b)
    restored.state_dict_user_keys.append("alpha")
    restored.load_state_dict(saved)
    assert (restored.state.epoch, restored.state.iteration, restored.state.alpha) == (2, 4, 0.5)
    assert restored.status == "idle"
    assert restored.state_dict() == saved


@pytest.mark.parametrize(
    "given, expected_epoch, expected_iteration",
    [({"epoch": 2}, 2, 6), ({"iteration": 7}, 2, 7), ({"iteration": 0}, 0, 0), ({"epoch": 0}, 0, 0)],
)
def test_load_from_an_epoch_or_an_iteration(given, expected_epoch, expected_iteration):
    engine = Engine(lambda e, b: b)
    engine.load_state_dict({"epoch_length": 3, "max_epochs": 4, **given})
    assert (engine.state.epoch, engine.state.iteration) == (expected_epoch, expected_iteration)


def test_resuming_a_loaded_state_runs_the_remaining_iterations():
    seen = []
    engine = Engine(lambda e, b: seen.append((e.state.epoch, e.state.iteration, b)))
    engine.load_state_dict({"epoch": 1, "epoch_length": 3, "max_epochs": 2})
    engine.run([10, 20, 30])
    assert seen == [(2, 4, 10), (2, 5, 20), (2, 6, 30)]
    seen.clear()
    # From the middle of an epoch the plain Engine, like ignite's, starts the data over and runs
    # the rest of the epoch; DeterministicEngine skips the consumed batches instead.
    engine.load_state_dict({"iteration": 4, "epoch_length": 3, "max_epochs": 2})
    engine.run([10, 20, 30])
    assert seen == [(2, 5, 10), (2, 6, 20)]


def test_loading_discards_a_paused_run_and_its_position():
    engine = Engine(lambda e, b: b)
    engine.step(5, data=[1, 2, 3], max_epochs=3)
    assert engine.status == "paused"
    engine.load_state_dict({"iteration": 1, "epoch_length": 3, "max_epochs": 3})
    assert engine.status == "idle"
    engine.run([1, 2, 3])
    assert (engine.status, engine.state.iteration) == ("done", 9)


def test_a_finished_run_continues_to_more_epochs_refuses_fewer_and_max_epochs_none_restarts():
    # ignite 0.5: run() on a finished engine continues to a larger max_epochs, refuses a smaller one,
    # starts over with the same one, and engine.state.max_epochs = None resets.
    seen = []
    engine = Engine(lambda e, b: seen.append(b))
    engine.run([1, 2], max_epochs=2)
    engine.run([1, 2], max_epochs=3)
    assert (engine.state.epoch, engine.state.iteration, seen) == (3, 6, [1, 2] * 3)
    with pytest.raises(ValueError, match=r"Argument max_epochs should be greater than or equal to the start epoch "
                       r"defined in the state: 1 vs 3\. Please, set engine.state.max_epochs = None"):
        engine.run([1, 2], max_epochs=1)
    engine.run([1, 2], max_epochs=3)
    assert (engine.state.epoch, engine.state.iteration, seen) == (3, 6, [1, 2] * 6)
    engine.state.max_epochs = None
    engine.run([1, 2, 3], max_epochs=1)
    assert (engine.state.epoch, engine.state.iteration) == (1, 3)


def test_unknown_state_dict_keys_are_named_in_a_warning():
    engine = Engine(lambda e, b: b)
    with pytest.warns(UserWarning, match=r"state_dict has keys that Engine.load_state_dict does not know and ignores: \['sed'\]"):
        engine.load_state_dict({"iteration": 2, "epoch_length": 2, "max_epochs": 3, "sed": 5})
    assert (engine.state.epoch, engine.state.iteration) == (1, 2)


def test_continuing_run_arguments_override_the_state():
    engine = Engine(lambda e, b: b)
    engine.step(2, data=[1, 2, 3], max_epochs=1)
    engine.run(max_epochs=2)
    assert (engine.state.epoch, engine.state.iteration, engine.state.max_epochs) == (2, 6, 2)
