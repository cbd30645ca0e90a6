"""The panel guards the user's cells while its background run is active, in a real Jupyter kernel
(ipykernel over the protocol): ``TrainingPanel(...).start()`` installs the cell hooks (no
``install_cell_hooks`` call by the user), cells draw random numbers and read the weights while a
run with Dropout trains, every epoch then replays exactly and the final weights are those of a run
with no cells; the hooks are gone once the run has ended, and when the panel is closed."""

from __future__ import annotations

from pathlib import Path

import pytest

from ._kernel import Kernel

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

SETUP = """
import time
import torch
from torch.utils.data import DataLoader, TensorDataset
from nbengine.engine.deterministic import DeterministicEngine
from nbengine.handlers import EpochReplay
from nbengine.widgets import TrainingPanel

torch.set_num_threads(1)
mid_step = []
events = get_ipython().events

def hooks():
    return len(events.callbacks["pre_run_cell"]), len(events.callbacks["post_run_cell"])

def build():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(32, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(240, 8, generator=generator), torch.randint(0, 3, (240,), generator=generator))

    def step(engine, batch):
        # Slow enough for cells to run between steps; the flag shows a cell a half-done update.
        x, y = batch
        mid_step.append(True)
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        time.sleep(0.01)
        optimizer.step()
        mid_step.pop()
        return loss.item()

    return model, optimizer, DeterministicEngine(step, seed=5), DataLoader(data, batch_size=8, shuffle=True)

model, optimizer, trainer, loader = build()
replay = EpochReplay(trainer, {"model": model, "optimizer": optimizer}, keep_last=3)
before = hooks()
"""

CELL = """
seen = (trainer.status, trainer.state.iteration, torch.rand(3).tolist(), [p.sum().item() for p in model.parameters()])
assert not mid_step
draws.append(seen)
"""


def test_the_panel_guards_cells_while_its_run_is_active():
    kernel = Kernel(cwd=str(REPO))
    try:
        kernel.execute(SETUP)
        kernel.execute("draws = []\npanel = TrainingPanel(trainer, data=loader, max_epochs=3, replay=replay).start()")
        # The guard's pre- and post-cell hooks, beside the panel's own after-cell refresh.
        assert kernel.value("(hooks()[0] - before[0], hooks()[1] - before[1])") == (1, 2)
        for _ in range(12):
            kernel.execute(CELL)
        # A cell that polls the training until it ends: it outlasts the patience, so the training goes on.
        kernel.execute("while trainer.status == 'running':\n    time.sleep(0.02)\npanel.wait()", timeout=300)
        assert kernel.value("sum(status == 'running' for status, *_ in draws)") >= 3, "the cells should have run while the training ran"
        assert kernel.value("len({tuple(d[2]) for d in draws}) == len(draws)")
        # The run has ended: only the panel's own after-cell hook is left.
        assert kernel.value("(hooks()[0] - before[0], hooks()[1] - before[1])") == (0, 1)
        reports = kernel.value("[(r.iterations, r.iterations_compared, r.reproduced, str(r)) for r in map(replay.replay_epoch, (1, 2, 3))]")
        for iterations, compared, reproduced, text in reports:
            assert (iterations, compared, reproduced) == (30, 30, True), text
        kernel.execute("other, _, reference, reference_loader = build()\nreference.run(reference_loader, max_epochs=3)")
        assert kernel.value("all(torch.equal(p, q) for p, q in zip(model.parameters(), other.parameters()))") is True

        # Run again from the panel: guarded again while it runs; closing the panel removes the hooks.
        kernel.execute("panel.controller.set_run_arguments(max_epochs=1000)\npanel.buttons['run'].click()")
        assert kernel.value("(hooks()[0] - before[0], trainer.status)") == (1, "running")
        kernel.execute("panel.close()\ntrainer.stop()\ntrainer.wait()")
        assert kernel.value("(hooks()[0] - before[0], hooks()[1] - before[1])") == (0, 0)
        assert kernel.value("list(panel.errors)") == []
    finally:
        kernel.close()
