"""``RanksPanel`` in a real browser: JupyterLab on 127.0.0.1 driven by Playwright through Debian's
Chromium (the server and browser fixtures of ``test_browser.py``). A notebook launches a 2-process
gloo job from a cell and shows the panel; the test clicks Pause (both ranks show the same iteration),
Step (both advance by exactly one), Save (one checkpoint file), Load (both go back to it), Resume
(both go on, rank 1's timeline shown) and Stop (both end, and no rank process is left). Screenshots are kept under ``test-artifacts/browser/ranks/``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from tests.widgets.test_browser import ARTIFACTS, CHROMIUM, browser, jupyterlab  # noqa: F401 - fixtures

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)"),
]

REPO = Path(__file__).resolve().parents[2]


def _upload(page, base_url: str, name: str, notebook) -> None:
    """Put the notebook in the server's root through the page (the server wants the page's XSRF
    cookie for writes)."""
    page.goto(f"{base_url}/lab?reset")
    page.wait_for_function("() => window.jupyterapp?.serviceManager?.contents !== undefined", timeout=90_000)
    page.evaluate("([name, content]) => window.jupyterapp.serviceManager.contents.save(name, "
                  "{type: 'notebook', format: 'json', content})", [name, notebook])


def _notebook(out: Path):
    cells = [
        f"import sys\nsys.path.insert(0, {str(REPO)!r})\n"
        "from nbengine.distributed.notebook_launcher import launch\n"
        "from nbengine.widgets.ranks_panel import RanksPanel\n"
        "from tests.distributed._digits_job import train",
        f"job = launch(train, ({str(out)!r}, 1000), nproc_per_node=2)\n"
        f"open({str(out / 'pids.txt')!r}, 'w').write(' '.join(map(str, job.pids)))\n"
        "panel = RanksPanel(job, interval=0.2)\npanel",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    notebook.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    return json.loads(nbformat.writes(notebook))


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_one_panel_controls_both_ranks_in_jupyterlab(jupyterlab, browser, tmp_path):  # noqa: F811 - fixtures
    artifacts = ARTIFACTS / "ranks"
    artifacts.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        _upload(page, jupyterlab, "ranks_panel.ipynb", _notebook(tmp_path))
        _drive(page, jupyterlab, tmp_path, artifacts)
    finally:
        page.screenshot(path=str(artifacts / "last.png"), full_page=True)
        page.evaluate("() => window.jupyterapp?.shell.currentWidget?.sessionContext?.shutdown()")
        page.close()
    # Stop ended both ranks; shutting the kernel down leaves nothing behind either way.
    pids = [int(pid) for pid in (tmp_path / "pids.txt").read_text().split()]
    deadline = time.monotonic() + 60
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in pids if _alive(pid)] == []


def _drive(page, base_url: str, out: Path, artifacts: Path) -> None:
    page.goto(f"{base_url}/lab/tree/ranks_panel.ipynb?reset")
    page.wait_for_function(
        """() => { const w = window.jupyterapp?.shell.currentWidget;
                   const k = w?.sessionContext?.session?.kernel;
                   return k && k.connectionStatus === 'connected' && k.status === 'idle'; }""",
        timeout=90_000,
    )
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    panel = page.locator(".nbengine-ranks-panel")
    panel.wait_for(state="visible", timeout=300_000)

    def ranks() -> list[tuple[str, int]]:
        return page.evaluate("""() => Array.from(document.querySelectorAll('.nbengine-ranks .nbengine-rank')).map(row => [
            row.querySelector('.nbengine-status')?.textContent ?? '',
            parseInt(row.querySelector('.nbengine-iteration')?.textContent ?? '-1')])""")

    def wait_ranks(condition: str, what: str) -> list[tuple[str, int]]:
        # ``condition`` is JavaScript over ``rows``: [[status, iteration], ...] as the page shows them.
        try:
            page.wait_for_function(
                f"""() => {{ const rows = Array.from(document.querySelectorAll('.nbengine-ranks .nbengine-rank')).map(
                    row => [row.querySelector('.nbengine-status')?.textContent ?? '',
                            parseInt(row.querySelector('.nbengine-iteration')?.textContent ?? '-1')]);
                    return rows.length === 2 && ({condition}); }}""",
                timeout=240_000,
            )
        except Exception as error:
            raise AssertionError(f"waited for {what}; the page shows {ranks()}") from error
        return ranks()

    wait_ranks("rows.every(([s, i]) => s === 'running' && i > 0)", "both ranks running")
    panel.screenshot(path=str(artifacts / "1-running.png"))

    panel.locator("button.nbengine-pause").click()
    paused = wait_ranks("rows.every(([s]) => s === 'paused')", "both ranks paused")
    assert paused[0][1] == paused[1][1]
    at = paused[0][1]
    page.wait_for_timeout(1000)  # several refreshes: a paused job does not move
    assert ranks() == paused
    panel.screenshot(path=str(artifacts / "2-paused.png"))

    panel.locator("button.nbengine-step").click()
    stepped = wait_ranks(f"rows.every(([s, i]) => s === 'paused' && i === {at + 1})", "one step on both ranks")
    page.wait_for_timeout(1000)
    assert ranks() == stepped
    panel.screenshot(path=str(artifacts / "3-stepped.png"))

    panel.locator("button.nbengine-save").click()
    deadline = time.monotonic() + 120
    while not list((out / "checkpoints").glob("*.pt")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [path.name for path in (out / "checkpoints").glob("*.pt")] == [f"checkpoint_{at + 1}.pt"]

    # Two more steps, then Load the checkpoint the list chose: both ranks are back at it.
    panel.locator("button.nbengine-step").click()
    wait_ranks(f"rows.every(([s, i]) => s === 'paused' && i === {at + 2})", "a second step on both ranks")
    # (The page's select shows the chosen option's label: "checkpoint_<n>.pt · epoch e · iteration n".)
    page.wait_for_function("() => (document.querySelector('.nbengine-checkpoints select')?.selectedOptions[0]"
                           f"?.textContent ?? '').startsWith('checkpoint_{at + 1}.pt')", timeout=60_000)
    panel.locator("button.nbengine-load").click()
    wait_ranks(f"rows.every(([s, i]) => s === 'paused' && i === {at + 1})", "both ranks back at the checkpoint")
    page.wait_for_function("() => (document.querySelector('.nbengine-load-report')?.textContent ?? '')"
                           ".includes('rank 1: loaded')", timeout=60_000)
    panel.screenshot(path=str(artifacts / "3b-loaded.png"))

    # Rank 1's timeline, on demand.
    panel.locator(".nbengine-timeline-rank select").select_option(label="rank 1")
    panel.locator("button.nbengine-resume").click()
    wait_ranks(f"rows.every(([s, i]) => s === 'running' && i > {at + 1})", "both ranks running on")
    panel.screenshot(path=str(artifacts / "4-resumed.png"))

    panel.locator("button.nbengine-stop").click()
    done = wait_ranks("rows.every(([s]) => s === 'done')", "both ranks done")
    assert done[0] == done[1]
    page.wait_for_function("() => document.querySelector('button.nbengine-pause').disabled", timeout=60_000)
    panel.screenshot(path=str(artifacts / "5-stopped.png"))
