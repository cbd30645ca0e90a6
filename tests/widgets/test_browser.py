"""The TrainingPanel in a real browser: JupyterLab on 127.0.0.1, driven by Playwright through
Debian's Chromium (how it is set up: docs/testing-notebooks.md).

The test opens ``notebooks/training_panel.ipynb``, runs all cells (training starts in the
background with the panel) and clicks the panel's buttons the way a user does, in a window 1280
and 800 px wide with the file browser open: the loss plot must change at least 8 times in 20 s of
running and within 5 s of Pause, Step, Save and Resume, and every button must lie inside the
viewport, wide enough to read and reachable by a click. A screenshot of the panel at each stage,
and one of the whole page at the end, are kept under ``test-artifacts/browser/<width>px/`` in the
repository root. Skipped, with the reason, only when
``/usr/bin/chromium`` is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """A JupyterLab server on a free 127.0.0.1 port, with its own config folders and a copy of the
    test notebooks as its root (so autosave never writes into the repository)."""
    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "notebooks"
    shutil.copytree(NOTEBOOKS, root)
    settings = base / "settings"
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(base / "config"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
    )
    port = _free_port()
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.token=", "--ServerApp.password=", f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True", "--LabApp.extension_manager=readonly",
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = open(base / "server.log", "w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not start; log:\n{(base / 'server.log').read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.mark.parametrize("width", [1280, 800])
def test_the_panel_controls_a_live_run_in_jupyterlab(jupyterlab, browser, width):
    artifacts = ARTIFACTS / f"{width}px"
    artifacts.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": width, "height": 1000})
    try:
        _drive_the_panel(page, jupyterlab, artifacts)
    finally:
        page.screenshot(path=str(artifacts / "last.png"), full_page=True)
        # Kernels outlive the page: shut this one down so its training thread stops.
        page.evaluate("() => window.jupyterapp?.shell.currentWidget?.sessionContext?.shutdown()")
        page.close()


def _loss_changes(page, seconds: float) -> int:
    """How many times the loss image changed during ``seconds`` (sampled every 50 ms in the page)."""
    return page.evaluate(
        """(ms) => new Promise(resolve => {
               let last = document.querySelector('img.nbengine-loss-plot').getAttribute('src'), changes = 0;
               const timer = setInterval(() => {
                   const now = document.querySelector('img.nbengine-loss-plot').getAttribute('src');
                   if (now !== last) { changes += 1; last = now; }
               }, 50);
               setTimeout(() => { clearInterval(timer); resolve(changes); }, ms);
           })""",
        seconds * 1000,
    )


def _wait_loss_change(page, before: str, what: str) -> None:
    """The loss image changes within 5 s."""
    try:
        page.wait_for_function(
            "([selector, before]) => document.querySelector(selector).getAttribute('src') !== before",
            arg=["img.nbengine-loss-plot", before],
            timeout=5_000,
        )
    except Exception as error:
        raise AssertionError(f"the loss plot did not change within 5 s after {what}") from error


def _buttons_inside_the_viewport(page, panel, width: int) -> None:
    """Every button of the panel lies inside the viewport, is wide enough to read, and is what a
    click at its centre reaches."""
    buttons = panel.locator("button")
    assert buttons.count() == 10
    for index in range(buttons.count()):
        button = buttons.nth(index)
        button.scroll_into_view_if_needed()
        box = button.bounding_box()
        name = button.inner_text().strip()
        assert box is not None, f"button {name!r} is not shown"
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, f"button {name!r} at {box} leaves the {width}-px viewport"
        assert box["y"] >= 0 and box["y"] + box["height"] <= page.viewport_size["height"], f"button {name!r} at {box} is not in view"
        assert box["width"] >= 40, f"button {name!r} is {box['width']} px wide"
        reached = page.evaluate(
            "([x, y]) => { const e = document.elementFromPoint(x, y); return e && e.closest('button')?.innerText.trim(); }",
            [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
        )
        assert reached == name, f"a click at the centre of {name!r} reaches {reached!r}"


def _shot(page, panel, path: Path) -> None:
    """A screenshot of the whole panel. JupyterLab scrolls the notebook inside a page that never
    scrolls, so a panel taller than the window would be captured cut, with the rest of the picture
    grey: the window is made tall enough for a moment, then given back its size."""
    size = dict(page.viewport_size)
    box = panel.bounding_box()
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], int(box["height"]) + 400)})
    page.wait_for_timeout(300)  # JupyterLab lays the notebook out again
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=str(path))
    page.set_viewport_size(size)
    page.wait_for_timeout(300)


def _drive_the_panel(page, base_url: str, artifacts: Path) -> None:
    width = page.viewport_size["width"]
    page.goto(f"{base_url}/lab/tree/training_panel.ipynb?reset")
    page.wait_for_function(
        """() => { const w = window.jupyterapp?.shell.currentWidget;
                   const k = w?.sessionContext?.session?.kernel;
                   return k && k.connectionStatus === 'connected' && k.status === 'idle'; }""",
        timeout=90_000,
    )
    # As a user has it: the file browser open beside the notebook.
    page.evaluate("() => { window.jupyterapp.shell.activateById('filebrowser'); }")
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    panel = page.locator(".nbengine-panel")
    panel.wait_for(state="visible", timeout=90_000)
    assert page.locator(".nbengine-panel").count() == 1
    status = panel.locator(".nbengine-status-badge .nbengine-status")
    iteration = panel.locator(".nbengine-state-view .nbengine-iteration")

    def shown_iteration() -> int:
        return int(iteration.inner_text())

    def wait_text(locator_selector: str, predicate_js: str, timeout: int = 30_000) -> None:
        page.wait_for_function(
            f"""() => {{ const e = document.querySelector({json.dumps(locator_selector)});
                        if (!e) return false; const t = e.textContent; return {predicate_js}; }}""",
            timeout=timeout,
        )

    wait_text(".nbengine-status-badge .nbengine-status", "t === 'running'", timeout=60_000)
    wait_text(".nbengine-state-view .nbengine-iteration", "parseInt(t) > 50")
    loss_image = panel.locator("img.nbengine-loss-plot")
    timeline_count = panel.locator(".nbengine-timeline-count")
    timeline_image = panel.locator("img.nbengine-timeline-plot")
    loss_box = loss_image.bounding_box()
    assert loss_box is not None and loss_box["width"] >= 300, f"the loss plot is {loss_box} at {width} px"

    # Live while running: at least 8 new pictures in 20 s (docs/design.md: one at least every 2 s).
    changes = _loss_changes(page, 20)
    assert changes >= 8, f"the loss plot changed {changes} times in 20 s of running"
    assert status.inner_text() == "running"
    _shot(page, panel, artifacts / "1-running.png")
    _buttons_inside_the_viewport(page, panel, width)

    # Pause: the iteration shown stops changing; the plot shows the paused position.
    loss_src = loss_image.get_attribute("src")
    panel.locator("button.nbengine-pause").click()
    wait_text(".nbengine-status-badge .nbengine-status", "t === 'paused'")
    _wait_loss_change(page, loss_src, "Pause")
    paused_at = shown_iteration()
    events_at_pause = timeline_count.inner_text()
    page.wait_for_timeout(1500)  # several refresh periods of the panel: nothing may move meanwhile
    assert shown_iteration() == paused_at
    assert timeline_count.inner_text() == events_at_pause
    _shot(page, panel, artifacts / "2-paused.png")

    # Step: exactly one iteration more; the timeline and both plots follow.
    timeline_src_before_step = timeline_image.get_attribute("src")
    loss_src = loss_image.get_attribute("src")
    panel.locator("button.nbengine-step").click()
    wait_text(".nbengine-state-view .nbengine-iteration", f"parseInt(t) === {paused_at + 1}")
    _wait_loss_change(page, loss_src, "Step")
    page.wait_for_timeout(1000)
    assert shown_iteration() == paused_at + 1
    assert timeline_count.inner_text() != events_at_pause
    page.wait_for_function(
        "([selector, before]) => document.querySelector(selector).getAttribute('src') !== before",
        arg=["img.nbengine-timeline-plot", timeline_src_before_step],
        timeout=30_000,
    )
    # The timeline picture is shown at the width it is drawn (480 px), or as wide as the panel allows:
    # it wraps below the table rather than shrinking beside it.
    timeline_box, panel_box = timeline_image.bounding_box(), panel.bounding_box()
    assert timeline_box is not None and timeline_box["width"] >= min(478, panel_box["width"] - 40), (
        f"the timeline plot is {timeline_box} in a panel of {panel_box} at {width} px"
    )
    rows = panel.locator(".nbengine-timeline-row")
    assert rows.count() >= 4
    # The newest event at the top.
    assert "iteration_completed" in rows.nth(0).inner_text()
    _shot(page, panel, artifacts / "3-stepped.png")

    # Save: the checkpoint appears in the dropdown, selected, and is marked on the plot.
    options = panel.locator(".nbengine-checkpoints select option")
    before_save = options.count()
    loss_src = loss_image.get_attribute("src")
    panel.locator("button.nbengine-save").click()
    page.wait_for_function(
        f"() => document.querySelectorAll('.nbengine-checkpoints select option').length === {before_save + 1}", timeout=30_000
    )
    _wait_loss_change(page, loss_src, "Save")
    selected = page.evaluate("() => { const s = document.querySelector('.nbengine-checkpoints select'); return s.options[s.selectedIndex].text; }")
    # The dropdown shows spaces as no-break spaces.
    assert f"iter {paused_at + 1} ·" in selected.replace("\xa0", " ")
    _shot(page, panel, artifacts / "4-saved.png")

    # Resume: the iteration advances again, and the loss plot keeps being redrawn.
    loss_src = loss_image.get_attribute("src")
    panel.locator("button.nbengine-resume").click()
    wait_text(".nbengine-status-badge .nbengine-status", "t === 'running'")
    _wait_loss_change(page, loss_src, "Resume")
    wait_text(".nbengine-state-view .nbengine-iteration", f"parseInt(t) > {paused_at + 20}")
    page.wait_for_function(
        "(before) => document.querySelector('.nbengine-timeline-count').textContent !== before",
        arg=timeline_count.inner_text(),
        timeout=30_000,
    )
    _shot(page, panel, artifacts / "5-resumed.png")
    _buttons_inside_the_viewport(page, panel, width)

    panel.locator("button.nbengine-stop").click()
    wait_text(".nbengine-status-badge .nbengine-status", "t === 'done'")
    message = panel.locator(".nbengine-message-text")
    assert "failed" not in message.inner_text()
