"""The TrainingPanel in a real browser: JupyterLab on 127.0.0.1, driven by Playwright through
Debian's Chromium (recipe: shared/notes/jupyter-testing.md).

The test opens ``notebooks/training_panel.ipynb``, runs all cells (training starts in the
background with the panel) and clicks the panel's buttons the way a user does. A screenshot of
the panel at each stage, and one of the whole page at the end, are kept under
``test-artifacts/browser/`` in the repository root. Skipped, with the reason, only when
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


def test_the_panel_controls_a_live_run_in_jupyterlab(jupyterlab, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1500})
    try:
        _drive_the_panel(page, jupyterlab)
    finally:
        page.screenshot(path=str(ARTIFACTS / "last.png"), full_page=True)
        # Kernels outlive the page: shut this one down so its training thread stops.
        page.evaluate("() => window.jupyterapp?.shell.currentWidget?.sessionContext?.shutdown()")
        page.close()


def _drive_the_panel(page, base_url: str) -> None:
    page.goto(f"{base_url}/lab/tree/training_panel.ipynb?reset")
    page.wait_for_function(
        """() => { const w = window.jupyterapp?.shell.currentWidget;
                   const k = w?.sessionContext?.session?.kernel;
                   return k && k.connectionStatus === 'connected' && k.status === 'idle'; }""",
        timeout=90_000,
    )
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    panel = page.locator(".nbengine-panel")
    panel.wait_for(state="visible", timeout=90_000)
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
    panel.screenshot(path=str(ARTIFACTS / "1-running.png"))

    # Pause: the iteration shown stops changing.
    panel.locator("button.nbengine-pause").click()
    wait_text(".nbengine-status-badge .nbengine-status", "t === 'paused'")
    assert status.inner_text() == "paused"
    paused_at = shown_iteration()
    events_at_pause = timeline_count.inner_text()
    loss_src_at_pause = loss_image.get_attribute("src")
    page.wait_for_timeout(1500)  # several refresh periods of the panel: nothing may move meanwhile
    assert shown_iteration() == paused_at
    assert timeline_count.inner_text() == events_at_pause
    panel.screenshot(path=str(ARTIFACTS / "2-paused.png"))

    # Step: exactly one iteration more.
    timeline_src_before_step = timeline_image.get_attribute("src")
    panel.locator("button.nbengine-step").click()
    wait_text(".nbengine-state-view .nbengine-iteration", f"parseInt(t) === {paused_at + 1}")
    page.wait_for_timeout(1000)
    assert shown_iteration() == paused_at + 1
    # The timeline and both plots follow the step.
    assert timeline_count.inner_text() != events_at_pause
    page.wait_for_function(
        "([selector, before]) => document.querySelector(selector).getAttribute('src') !== before",
        arg=["img.nbengine-timeline-plot", timeline_src_before_step],
        timeout=30_000,
    )
    page.wait_for_function(
        "([selector, before]) => document.querySelector(selector).getAttribute('src') !== before",
        arg=["img.nbengine-loss-plot", loss_src_at_pause],
        timeout=30_000,
    )
    rows = panel.locator(".nbengine-timeline-row")
    assert rows.count() >= 4
    assert "iteration_completed" in rows.nth(rows.count() - 1).inner_text()
    panel.screenshot(path=str(ARTIFACTS / "3-stepped.png"))

    # Save: the checkpoint appears in the dropdown.
    options = panel.locator(".nbengine-checkpoints select option")
    assert options.count() == 0
    panel.locator("button.nbengine-save").click()
    page.wait_for_function(
        "() => document.querySelectorAll('.nbengine-checkpoints select option').length === 1", timeout=30_000
    )
    # The dropdown shows spaces as no-break spaces.
    assert f"iter {paused_at + 1} ·" in options.nth(0).inner_text().replace("\xa0", " ")
    panel.screenshot(path=str(ARTIFACTS / "4-saved.png"))

    # Resume: the iteration advances again, and the loss plot keeps being redrawn.
    loss_src_before_resume = loss_image.get_attribute("src")
    panel.locator("button.nbengine-resume").click()
    wait_text(".nbengine-status-badge .nbengine-status", "t === 'running'")
    wait_text(".nbengine-state-view .nbengine-iteration", f"parseInt(t) > {paused_at + 20}")
    page.wait_for_function(
        "([selector, before]) => document.querySelector(selector).getAttribute('src') !== before",
        arg=["img.nbengine-loss-plot", loss_src_before_resume],
        timeout=30_000,
    )
    page.wait_for_function(
        "(before) => document.querySelector('.nbengine-timeline-count').textContent !== before",
        arg=timeline_count.inner_text(),
        timeout=30_000,
    )
    panel.screenshot(path=str(ARTIFACTS / "5-resumed.png"))

    panel.locator("button.nbengine-stop").click()
    wait_text(".nbengine-status-badge .nbengine-status", "t === 'done'")
    message = panel.locator(".nbengine-message-text")
    assert "failed" not in message.inner_text()
