"""README.md: its code runs, its outputs are what it says, its commands and links are real.

Every fenced block is ``python`` (run), ``text`` (the exact output of the python block just before it)
or ``bash`` (commands, not run here: the README's main-job command is run by hand in a fresh virtual
environment, the test command by ``.ci/run``). The python blocks run in order, in one namespace, in a
fresh interpreter whose current folder is a temporary one (the checkpoints they save land there).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```([A-Za-z]*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)

MAIN_JOB_COMMAND = 'python -m pip install torch==2.13.0 && python -m pip install -e ".[notebook]" && nbengine demo demo-output'
TEST_COMMAND = 'python -m pip install torch==2.13.0 && python -m pip install -e ".[dev]" && python -m pytest'

# Runs the blocks given as JSON on stdin, capturing what each prints; writes the outputs as JSON.
DRIVER = textwrap.dedent(
    """
    import contextlib, io, json, sys
    blocks = json.load(sys.stdin)
    namespace = {"__name__": "__main__"}
    outputs = []
    for index, source in blocks:
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            exec(compile(source, f"README.md python block {index}", "exec"), namespace)
        outputs.append(buffer.getvalue())
    with open(sys.argv[1], "w") as out:
        json.dump(outputs, out)
    """
)


def fenced_blocks() -> list[tuple[str, str]]:
    return [(match[1], match[2]) for match in FENCE.finditer(README.read_text())]


def test_every_block_is_python_text_or_bash_and_text_follows_python():
    blocks = fenced_blocks()
    assert blocks
    assert sorted({language for language, _ in blocks}) == ["bash", "python", "text"]
    for index, (language, _) in enumerate(blocks):
        if language == "text":
            assert index > 0 and blocks[index - 1][0] == "python", f"text block {index} does not follow a python block"


def test_the_commands_are_the_main_job_and_the_tests():
    commands = [code.strip() for language, code in fenced_blocks() if language == "bash" and "pip install" in code]
    assert commands == [MAIN_JOB_COMMAND, TEST_COMMAND]


def test_ci_extracts_exactly_the_test_command():
    # The same pipeline as .ci/run, on the README as it stands.
    pipeline = (
        "sed -n '/<!-- test-command -->/,/<!-- \\/test-command -->/p' README.md "
        "| sed -n '/^```bash$/,/^```$/p' | sed '1d;$d'"
    )
    assert pipeline in (ROOT / ".ci" / "run").read_text()
    extracted = subprocess.run(["bash", "-c", pipeline], cwd=ROOT, capture_output=True, text=True, check=True)
    assert extracted.stdout == TEST_COMMAND + "\n"


SCREENSHOT = "docs/panel.png"


def local_links() -> list[str]:
    targets = re.findall(r"\]\(([^)#\s]+)\)", README.read_text())
    return [target for target in targets if not re.match(r"[a-z]+://", target)]


def test_local_links_point_at_files_in_the_repository():
    local = local_links()
    assert {SCREENSHOT, "notebooks/01_quickstart.ipynb", "binder/", "benchmarks/"} <= set(local)
    missing = [target for target in local if not (ROOT / target).exists()]
    assert missing == []


def test_the_panel_screenshot_is_a_png():
    # Saved there by the browser test of the widgets (tests/widgets/test_browser.py).
    assert SCREENSHOT in local_links()
    assert (ROOT / SCREENSHOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_benchmark_table_is_filled_with_date_and_machine():
    section = README.read_text().split("## Benchmarks", 1)[1]
    assert "PLACEHOLDER" not in section
    assert re.search(r"Measured on \d{4}-\d{2}-\d{2} on a ", section)
    header = "| what | reference | pytorch-ignite | nbengine | budget |"
    rows = section.split(header, 1)[1].strip().splitlines()[1:]
    assert len(rows) >= 10
    # Every row has its five cells and an nbengine figure.
    assert all(row.count("|") == 6 and row.split("|")[4].strip() for row in rows)


@pytest.mark.slow
def test_python_blocks_run_and_print_what_the_text_blocks_say(tmp_path):
    blocks = fenced_blocks()
    python_blocks = [(index, code) for index, (language, code) in enumerate(blocks) if language == "python"]
    outputs_file = tmp_path / "outputs.json"
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, str(outputs_file)],
        input=json.dumps(python_blocks),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    outputs = dict(zip((index for index, _ in python_blocks), json.loads(outputs_file.read_text())))
    expected = {index - 1: code for index, (language, code) in enumerate(blocks) if language == "text"}
    assert len(expected) >= 6
    assert {index: outputs[index] for index in expected} == expected
