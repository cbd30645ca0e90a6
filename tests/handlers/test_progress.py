"""ProgressBar: what it shows, how often it redraws, how it attaches, and that importing it stays light."""

import doctest
import io
import json
import subprocess
import sys
import textwrap

import pytest
import torch

import nbengine.engine
import nbengine.handlers.progress
from nbengine.engine import Engine, Events
from nbengine.handlers import ProgressBar
from nbengine.metrics import Average


def draws(text):
    """Each tqdm redraw of a text bar starts with a carriage return."""
    return text.count("\r")


def halving_engine():
    return Engine(lambda engine, batch: batch * 0.5)


def test_importing_the_package_imports_no_notebook_or_plotting_library():
    code = textwrap.dedent(
        """
        import json, sys
        import nbengine, nbengine.engine, nbengine.handlers, nbengine.metrics, nbengine.utils
        from nbengine.handlers import ProgressBar
        ProgressBar()
        print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & {"ipywidgets", "IPython", "matplotlib"})))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


def test_shows_the_loss_and_the_position_and_closes_each_epoch():
    stream = io.StringIO()
    engine = halving_engine()
    ProgressBar(persist=True, file=stream).attach(engine, output_transform=lambda loss: {"loss": loss})
    engine.run(range(10), max_epochs=2)
    lines = stream.getvalue().split("\n")
    assert lines[0].endswith("\rEpoch [1/2]: [10/10] 100%|##########, loss=4.5 [00:00<00:00]")
    assert lines[1].endswith("\rEpoch [2/2]: [10/10] 100%|##########, loss=4.5 [00:00<00:00]")
    assert lines[2] == ""


def test_redraws_at_most_once_per_mininterval():
    stream = io.StringIO()
    engine = halving_engine()
    ProgressBar(persist=True, file=stream, mininterval=3600).attach(engine, output_transform=lambda loss: {"loss": loss})
    engine.run(range(500), max_epochs=2)
    # Per epoch: the first draw (when the bar is created) and the final one when it closes; nothing in between.
    assert draws(stream.getvalue()) == 4
    assert "\rEpoch [1/2]: [1/500]   0%|          , loss=0 [00:00<?]\r" in stream.getvalue()


def test_a_paused_run_shows_where_it_stands():
    stream = io.StringIO()
    engine = halving_engine()
    ProgressBar(persist=True, file=stream, mininterval=3600).attach(engine, output_transform=lambda loss: {"loss": loss})
    engine.step(37, data=range(100))
    # Created at iteration 1; without the pause the bar would still show it until the epoch closes.
    assert stream.getvalue().endswith("\rIteration: [37/100]  37%|###7      , loss=18 [00:00<00:00]")
    engine.step(3)
    assert stream.getvalue().endswith("\rIteration: [40/100]  40%|####      , loss=19.5 [00:00<00:00]")
    before = draws(stream.getvalue())
    engine.run()
    # Running on draws only the close: nothing per iteration.
    assert draws(stream.getvalue()) == before + 1


def test_with_no_interval_every_iteration_is_drawn():
    stream = io.StringIO()
    engine = halving_engine()
    ProgressBar(persist=True, file=stream, mininterval=0).attach(engine)
    engine.run(range(7))
    # Created at iteration 1, redrawn at iterations 2..7, drawn again when closing.
    assert draws(stream.getvalue()) == 1 + 6 + 1
    assert "\rIteration: [4/7]" in stream.getvalue()


def test_docstring_example():
    result = doctest.testmod(nbengine.handlers.progress)
    assert result.attempted > 0 and result.failed == 0


def test_default_redraw_interval_is_100_ms():
    assert ProgressBar().mininterval == 0.1


def test_shows_metrics_state_attributes_and_flattens_tensors():
    stream = io.StringIO()
    engine = Engine(lambda engine, batch: {"loss": batch, "parts": torch.tensor([batch, 2 * batch])})
    Average(output_transform=lambda out: out["loss"]).attach(engine, "avg", usage="running_batch_wise")
    engine.state.note = "warmup"
    ProgressBar(persist=True, file=stream, desc="Train").attach(
        engine,
        metric_names=["avg"],
        output_transform=lambda out: {"parts": out["parts"]},
        state_attributes=["note"],
    )
    engine.run([1.0, 3.0])
    assert stream.getvalue().endswith("\rTrain: [2/2] 100%|##########, avg=2, parts_0=3, parts_1=6, note=warmup [00:00<00:00]\n")


def test_metric_names_all_and_a_single_output_value():
    stream = io.StringIO()
    engine = halving_engine()
    Average().attach(engine, "a", usage="running_batch_wise")
    Average(output_transform=lambda out: out * 4).attach(engine, "b", usage="running_batch_wise")
    ProgressBar(persist=True, file=stream).attach(engine, metric_names="all", output_transform=lambda out: out)
    engine.run([2.0, 4.0])
    assert stream.getvalue().endswith(", a=1.5, b=6, output=2 [00:00<00:00]\n")


def test_a_missing_metric_is_warned_about():
    engine = halving_engine()
    ProgressBar(file=io.StringIO()).attach(engine, metric_names=["accuracy"])
    with pytest.warns(UserWarning, match=r"ProgressBar: metric 'accuracy' is not in engine.state.metrics \(which has \[\]\)"):
        engine.run([1.0])


def test_a_bar_over_epochs_for_the_whole_run():
    stream = io.StringIO()
    engine = halving_engine()
    ProgressBar(persist=True, file=stream).attach(
        engine, event_name=Events.EPOCH_COMPLETED, closing_event_name=Events.COMPLETED
    )
    engine.run(range(3), max_epochs=4)
    assert stream.getvalue().endswith("\rEpoch: [4/4] 100%|########## [00:00<00:00]\n")
    assert stream.getvalue().count("\n") == 1


def test_a_run_long_bar_counting_iterations_restarts_each_epoch():
    stream = io.StringIO()
    engine = halving_engine()
    ProgressBar(persist=True, file=stream, mininterval=0).attach(engine, closing_event_name=Events.COMPLETED)
    engine.run(range(3), max_epochs=2)
    text = stream.getvalue()
    assert text.count("\n") == 1
    assert text.index("\rEpoch: [3/3]") < text.index("\rEpoch: [1/3]", text.index("\rEpoch: [3/3]"))


def test_a_filtered_event_advances_the_bar_only_on_selected_iterations():
    stream = io.StringIO()
    engine = halving_engine()
    ProgressBar(persist=True, file=stream, mininterval=0).attach(engine, event_name=Events.ITERATION_COMPLETED(every=5))
    engine.run(range(20))
    shown = [part.split("]")[0] for part in stream.getvalue().split("\rIteration: [")[1:]]
    assert shown == ["5/20", "10/20", "15/20", "20/20", "20/20"]


def test_data_without_a_length_shows_a_count():
    stream = io.StringIO()
    engine = halving_engine()
    ProgressBar(persist=True, file=stream).attach(engine)
    engine.run(iter(range(6)))
    assert "\rIteration: [6/?]" in stream.getvalue()


def test_stepping_and_resuming_draws_where_the_engine_is():
    stream = io.StringIO()
    engine = halving_engine()
    ProgressBar(persist=True, file=stream, mininterval=0).attach(engine, output_transform=lambda loss: {"loss": loss})
    engine.step(data=range(10), max_epochs=1)
    engine.step(3)
    assert stream.getvalue().endswith("\rIteration: [4/10]  40%|####      , loss=1.5 [00:00<00:00]")
    engine.run()
    assert stream.getvalue().endswith("\rIteration: [10/10] 100%|##########, loss=4.5 [00:00<00:00]\n")


def test_a_failed_run_closes_the_bar_where_it_stopped_and_the_error_propagates():
    stream = io.StringIO()

    def process(engine, batch):
        if batch == 3:
            raise ZeroDivisionError("batch 3 is bad")
        return float(batch)

    engine = Engine(process)
    ProgressBar(persist=True, file=stream, mininterval=0).attach(engine, output_transform=lambda loss: {"loss": loss})
    with pytest.raises(ZeroDivisionError, match="batch 3 is bad"):
        engine.run(range(10))
    assert engine.status == "failed"
    assert stream.getvalue().endswith("\rIteration: [4/10]  40%|####      , loss=2 [00:00<00:00]\n")
    # A new run starts a new bar.
    engine.run(range(3))
    assert stream.getvalue().endswith("\rIteration: [3/3] 100%|##########, loss=2 [00:00<00:00]\n")


def test_log_message_writes_a_line():
    stream = io.StringIO()
    bar = ProgressBar(file=stream)
    bar.log_message("validation accuracy: 0.97")
    assert stream.getvalue() == "validation accuracy: 0.97\n"


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: ProgressBar(persist=1), TypeError, "ProgressBar: argument persist should be a bool, got 1"),
        (lambda: ProgressBar(mininterval=-1), ValueError,
         "ProgressBar: argument mininterval should be a number of seconds >= 0, got -1"),
        (lambda: ProgressBar(bar_format=3), TypeError, "ProgressBar: argument bar_format should be a str or None, got 3"),
        (lambda: ProgressBar(total=5), ValueError,
         r"ProgressBar: tqdm argument 'total' is set by the bar itself \(from epoch_length or max_epochs\)"),
        (lambda: ProgressBar(leave=True), ValueError, r"tqdm argument 'leave' is set by the bar itself \(from persist\)"),
        (lambda: ProgressBar(colour_name="red"), TypeError, r"ProgressBar: unknown tqdm arguments \['colour_name'\]"),
        (lambda: ProgressBar(desc=3), TypeError, "ProgressBar: argument desc should be a str, got 3"),
        (lambda: ProgressBar().attach("engine"), TypeError, "ProgressBar.attach: argument engine should be an Engine, got str"),
        (lambda: ProgressBar().attach(halving_engine(), metric_names="loss"), TypeError,
         "ProgressBar.attach: argument metric_names should be a list of str or 'all', got 'loss'"),
        (lambda: ProgressBar().attach(halving_engine(), output_transform="loss"), TypeError,
         "ProgressBar.attach: argument output_transform should be callable, got 'loss'"),
        (lambda: ProgressBar().attach(halving_engine(), state_attributes="lr"), TypeError,
         "ProgressBar.attach: argument state_attributes should be a list of str, got 'lr'"),
        (lambda: ProgressBar().attach(halving_engine(), event_name=Events.EXCEPTION_RAISED), ValueError,
         r"^Logging event EXCEPTION_RAISED is not in allowed events for this engine: ProgressBar.attach: argument "
         r"event_name should be one of Events.STARTED, .*, got Events.EXCEPTION_RAISED"),
        (lambda: ProgressBar().attach(halving_engine(), closing_event_name=Events.EPOCH_COMPLETED(every=2)), ValueError,
         r"^Closing Event should not be a filtered event: ProgressBar.attach: argument closing_event_name got "
         r"Events.EPOCH_COMPLETED\(every=2\)"),
        (lambda: ProgressBar().attach(halving_engine(), event_name=Events.EPOCH_COMPLETED), ValueError,
         r"Logging event Events.EPOCH_COMPLETED should be called before closing event Events.EPOCH_COMPLETED: "
         r"ProgressBar.attach: event_name should come before closing_event_name in a run"),
    ],
)
def test_bad_arguments_are_refused(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.slow
def test_in_a_jupyter_kernel_the_bar_is_a_widget(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipywidgets")
    source = textwrap.dedent(
        """
        import sys
        from nbengine.engine import Engine
        from nbengine.handlers import ProgressBar
        engine = Engine(lambda engine, batch: batch)
        ProgressBar(persist=True).attach(engine, output_transform=lambda loss: {"loss": loss})
        engine.run([1.0, 2.0, 3.0])
        print("ipywidgets" in sys.modules)
        """
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    client = nbclient.NotebookClient(
        notebook,
        timeout=120,
        startup_timeout=60,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    outputs = notebook.cells[0].outputs
    assert [o for o in outputs if o.output_type == "error"] == []
    widget_views = [o for o in outputs if o.output_type == "display_data" and "application/vnd.jupyter.widget-view+json" in o.data]
    assert len(widget_views) == 1
    streams = [o for o in outputs if o.output_type == "stream"]
    assert [(o.name, o.text) for o in streams] == [("stdout", "True\n")]
    widgets = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"].values()
    progress = [w["state"] for w in widgets if w["model_name"] == "FloatProgressModel"]
    texts = [w["state"]["value"].replace("\u2007", " ") for w in widgets if w["model_name"] == "HTMLModel"]
    assert [(p["value"], p["max"], p["bar_style"]) for p in progress] == [(3.0, 3.0, "success")]
    assert "Iteration: [3/3] 100%" in texts
    assert ", loss=3 [00:00&lt;00:00]" in texts


def last_line(text):
    """The last non-empty line a text bar left, as ignite's own tests read it."""
    return [segment.strip() for segment in text.split("\r") if segment.strip()][-1]


def bar_output(engine_module, handlers_module, attach, data, max_epochs):
    """What a bar that is not kept writes over a run, with ``engine_module``'s Engine and ``handlers_module``'s
    ProgressBar (nbengine's, or pytorch-ignite's for comparison)."""
    stream = io.StringIO()
    events = engine_module.Events
    engine = engine_module.Engine(lambda engine, batch: batch * 0.5)
    engine.add_event_handler(events.ITERATION_COMPLETED, lambda engine: engine.state.metrics.update(half=engine.state.output))
    handlers_module.ProgressBar(file=stream, ncols=80, desc="Validation").attach(engine, **attach(events))
    engine.run(data, max_epochs=max_epochs)
    return stream.getvalue()


@pytest.mark.parametrize(
    "attach, data, max_epochs",
    [
        (lambda events: {}, [1, 2, 3, 4, 5], 1),
        (lambda events: {"output_transform": lambda loss: {"loss": loss}}, list(range(7)), 1),
        (lambda events: {"event_name": events.ITERATION_STARTED(every=10)}, list(range(100)), 1),
        (lambda events: {"event_name": events.EPOCH_COMPLETED, "closing_event_name": events.COMPLETED}, [1, 2], 9),
        (lambda events: {"metric_names": "all"}, [1.0, 2.0, 3.0], 2),
    ],
)
def test_the_closing_line_of_a_bar_that_is_not_kept_is_ignites(attach, data, max_epochs):
    ignite_engine = pytest.importorskip("ignite.engine")
    ignite_handlers = pytest.importorskip("ignite.handlers")
    ours = bar_output(nbengine.engine, nbengine.handlers, attach, data, max_epochs)
    theirs = bar_output(ignite_engine, ignite_handlers, attach, data, max_epochs)
    assert last_line(ours) == last_line(theirs)


def test_a_bar_that_is_not_kept_still_redraws_at_most_once_per_mininterval():
    stream = io.StringIO()
    engine = halving_engine()
    ProgressBar(file=stream, mininterval=3600).attach(engine, output_transform=lambda loss: {"loss": loss})
    engine.run(range(500), max_epochs=2)
    # Per epoch: the first draw, ignite's closing line, and the erasing of the bar when it closes (two).
    assert draws(stream.getvalue()) == 8
    assert last_line(stream.getvalue()) == "Epoch [2/2]: [499/500] 100%|#########9, loss=250 [00:00<00:00]"


def test_a_handler_writes_through_log_message_on_its_own_line_and_the_bar_goes_on_below():
    stream = io.StringIO()
    engine = halving_engine()
    bar = ProgressBar(persist=True, file=stream, mininterval=0)
    bar.attach(engine, output_transform=lambda loss: {"loss": loss})
    engine.add_event_handler(Events.ITERATION_COMPLETED(once=2), lambda engine: bar.log_message("[val] accuracy 0.9"))
    engine.run(range(4))
    lines = stream.getvalue().split("\n")
    # The message has a line of its own (the bar's text was cleared from it first) ...
    message_line = next(line for line in lines if "[val]" in line)
    assert message_line.split("\r")[-1] == "[val] accuracy 0.9"
    assert "Iteration" not in message_line.split("\r")[-1]
    # ... and the bar is drawn again below it and ends there.
    after = lines[lines.index(message_line) + 1 :]
    assert after[0].endswith("\rIteration: [4/4] 100%|##########, loss=1.5 [00:00<00:00]")
