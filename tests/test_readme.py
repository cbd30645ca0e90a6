"""README.md: its code runs, its outputs are what it says, its commands, links and tables are real,
and every file that the README, the docs, docstrings and tests cite is in the repository.

Every fenced block is ``python`` (run), ``text`` (the exact output of the python block just before it)
or ``bash`` (commands, not run here: ``tests/test_fresh_install.py`` runs the "Install" section's
commands in a fresh virtual environment, and ``.ci/run`` runs the test command). The python blocks run
in order, in one namespace, in a fresh interpreter whose current folder is a temporary one (the
checkpoints they save land there).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```([A-Za-z]*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)

CPU_TORCH = "--extra-index-url https://download.pytorch.org/whl/cpu torch==2.13.0"
VENV_COMMAND = "python3 -m venv .venv && . .venv/bin/activate"
MAIN_JOB_COMMAND = f'python -m pip install {CPU_TORCH} && python -m pip install -e ".[notebook]" && nbengine demo demo-output'
TEST_COMMAND = f'python -m pip install {CPU_TORCH} && python -m pip install -e ".[dev]" && python -m pytest'
QUICK_TEST_COMMAND = 'python -m pytest -m "not browser and not slow"'

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


def test_the_commands_are_the_venv_the_main_job_the_tests_and_the_quick_tests():
    commands = [code.strip() for language, code in fenced_blocks() if language == "bash"]
    assert [c for c in commands if "pip install" in c] == [MAIN_JOB_COMMAND, TEST_COMMAND]
    install = README.read_text().split("## Install", 1)[1].split("\n## ", 1)[0]
    assert [code.strip() for _, code in FENCE.findall(install)] == [
        VENV_COMMAND, MAIN_JOB_COMMAND, TEST_COMMAND, QUICK_TEST_COMMAND, "jupyter lab notebooks/"
    ]
    # The quick command's markers are the ones the tests are marked with.
    import tomllib

    markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    assert sorted(marker.split(":")[0] for marker in markers) == ["browser", "slow"]


def readme_block_function() -> str:
    """The shell function with which .ci/run reads a marked bash block of the README."""
    ci = (ROOT / ".ci" / "run").read_text()
    match = re.search(r"^readme_block\(\) \{\n.*?^\}\n", ci, re.DOTALL | re.MULTILINE)
    assert match, ".ci/run has no readme_block function"
    return match.group(0)


@pytest.mark.parametrize(
    "name, command",
    [("venv-command", VENV_COMMAND), ("main-job-command", MAIN_JOB_COMMAND), ("test-command", TEST_COMMAND)],
)
def test_ci_reads_exactly_the_readme_commands(name, command):
    # .ci/run's own function, on the README as it stands.
    extracted = subprocess.run(
        ["bash", "-c", f"{readme_block_function()}readme_block {name}"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert extracted.stdout == command + "\n"


def test_ci_runs_the_test_command_and_makes_the_venv_only_without_a_usable_python():
    ci = (ROOT / ".ci" / "run").read_text()
    lines = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert lines[-1] == 'bash -c "$(readme_block test-command)"'
    assert 'eval "$(readme_block venv-command)"' in lines
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
    # The check that decides, run here: this interpreter may install packages (else the tests would not run).
    check = re.search(r"^python_can_install\(\) \{\n.*?^\}\n", ci, re.DOTALL | re.MULTILINE).group(0)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    managed = Path(sysconfig.get_path("stdlib")) / "EXTERNALLY-MANAGED"
    result = subprocess.run(["bash", "-c", f"{check}python_can_install"], env=env, capture_output=True, text=True)
    assert result.returncode == (1 if managed.exists() else 0), result.stderr
    result = subprocess.run(["bash", "-c", f"{check}python_can_install"], env={**env, "VIRTUAL_ENV": "/x"})
    assert result.returncode == 0


def test_binder_installs_the_readme_torch_and_extra():
    requirements = [
        line.strip() for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    index, pin = CPU_TORCH.rsplit(" ", 1)
    # Binder runs on Linux, where PyTorch's CPU index names its build with the +cpu label: pinning it
    # makes a fall back to PyPI's CUDA build impossible.
    assert requirements == [index, pin + "+cpu"]
    post_build = (ROOT / "binder" / "postBuild").read_text()
    assert 'python -m pip install --no-cache-dir -e ".[notebook]"' in post_build
    assert 'python -m pip install -e ".[notebook]"' in MAIN_JOB_COMMAND


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


# ---------------------------------------------------------------------------------------------- the panel


def panel_controls_table() -> dict[str, tuple[str, str]]:
    """The README's table of the panel's controls: label -> (what it does, when it is enabled)."""
    text = README.read_text()
    table = text.split("<!-- panel-controls -->", 1)[1].split("<!-- /panel-controls -->", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| **")]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    return {re.match(r"\*\*(.+?)\*\*", label).group(1): (does, when) for label, does, when in cells}


def test_the_panel_table_has_every_button_in_the_panel_order():
    pytest.importorskip("ipywidgets")
    from nbengine.widgets.checkpoints_view import CheckpointsView
    from nbengine.widgets.controls import CONTROL_LABELS, RUN_CONTROLS

    view = CheckpointsView(None, None)
    checkpoint_buttons = [view.save_button.description, view.load_button.description, view.replay_button.description]
    labels = [CONTROL_LABELS[name] for name in RUN_CONTROLS] + checkpoint_buttons
    assert list(panel_controls_table())[: len(labels)] == labels


def test_the_panel_table_says_when_each_run_control_is_enabled():
    pytest.importorskip("ipywidgets")
    # Compared with the panel's own rule table, for a panel that knows what to run.
    from nbengine.widgets.controls import CONTROL_LABELS, RUN_CONTROLS, control_reasons

    statuses = ("idle", "running", "paused", "done", "failed")
    enabled_in = {name: [] for name in RUN_CONTROLS}
    for status in statuses:
        for name, reason in control_reasons(status, can_start=True).items():
            if reason is None:
                enabled_in[name].append(status)
    table = panel_controls_table()
    for name, enabled in enabled_in.items():
        if set(enabled) == set(statuses) - {"running"}:
            phrase = "the engine is not running"
        else:
            phrase = "the engine is " + (", ".join(enabled[:-1]) + " or " + enabled[-1] if len(enabled) > 1 else enabled[0])
        assert table[CONTROL_LABELS[name]][1].startswith(phrase), (name, table[CONTROL_LABELS[name]][1], phrase)


# ---------------------------------------------------------------------------------------------- citations

# Where files are cited: the README, the docs, the CI script, the binder files, and every module,
# test and benchmark (docstrings, comments and messages alike).
CITING_FILES = ["README.md", "pyproject.toml", ".ci/run", "binder/*", "docs/*.md", "nbengine/**/*.py", "tests/**/*.py", "benchmarks/*.py"]
TOP_FOLDERS = (".ci", "benchmarks", "binder", "docs", "nbengine", "notebooks", "tests")
CITED_PATH = re.compile(
    r"(?<![\w./-])((?:%s)/[\w./-]*[\w/]|[\w./-]*[\w-]\.md)(?![\w-])" % "|".join(re.escape(top) for top in TOP_FOLDERS)
)
# Strings shaped like a path of the repository that name something else, each with what it is.
NOT_FILES = {
    "nbengine/current": "a key in the torch.distributed store of a job (nbengine.distributed)",
    "tests/ignite/": "a folder of pytorch-ignite's source distribution (tests/conformance runs its tests)",
}


def citing_files() -> list[Path]:
    found = {path for pattern in CITING_FILES for path in ROOT.glob(pattern) if path.is_file()}
    return sorted(path for path in found if "__pycache__" not in path.parts)


NOT_A_CITATION = "# not a citation"


def cited_text(path: Path) -> str:
    """The text of ``path`` in which citations are looked for: lines ending with NOT_A_CITATION are left out."""
    lines = path.read_text(errors="replace").splitlines()
    return "\n".join(line for line in lines if not line.rstrip().endswith(NOT_A_CITATION))


def test_every_cited_file_is_in_the_repository():
    missing = []
    for path in citing_files():
        for match in CITED_PATH.finditer(cited_text(path)):
            cited = match.group(1).rstrip(".")
            if any(cited.startswith(prefix) for prefix in NOT_FILES):
                continue
            # A path is read from the repository's root, or (as a Markdown link is) from the citing file's folder.
            if not (ROOT / cited).exists() and not (path.parent / cited).exists():
                missing.append(f"{path.relative_to(ROOT)}: {cited}")
    assert missing == []


DESIGN = ROOT / "docs/design.md"


def test_every_mention_of_the_design_points_to_docs_design_md():
    assert DESIGN.is_file()
    vague = []
    for path in citing_files():
        text = path.read_text(errors="replace")
        # Within docs/ the link to it is relative (its bare file name).
        points_there = "docs/design.md" in text or (path.parent == DESIGN.parent and f"({DESIGN.name})" in text)
        if path != DESIGN and re.search(r"\b(?:the design\b|design's)", text, re.IGNORECASE) and not points_there:
            vague.append(str(path.relative_to(ROOT)))
    assert vague == []


def test_the_citation_check_finds_a_missing_file():
    # The pattern above must see citations as they are written in prose and in docstrings.
    cited = ["tests/widgets/test_nothing.py", "shared/notes/x.md", "docs/design.md", "DESIGN.md", "tests/ignite/"]  # not a citation
    text = f"see ``{cited[0]}`` (recipe: {cited[1]}) and {cited[2]}, {cited[3]}; {cited[4]}."
    assert [m.group(1) for m in CITED_PATH.finditer(text)] == cited


# ---------------------------------------------------------------------------------------------- benchmarks

# A number: not part of a word, and with at most one decimal point (0.5.5 and 3.11.7 are versions).
FIGURE = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.]*\d)")
# What the prose gives that is not a measurement: dates, code and file names, the machine's size and
# the versions of the software measured.
NOT_FIGURES = re.compile(r"\d{4}-\d{2}-\d{2}|`[^`]*`|\b\d+-core\b|\b(?:Linux|Python|torch|pytorch-ignite) \d[\w.+]*")


def benchmark_prose_and_table() -> tuple[str, str]:
    section = README.read_text().split("## Benchmarks", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    table = "\n".join(line for line in lines if line.startswith("|"))
    prose = "\n".join(line for line in lines if not line.startswith("|") and not line.startswith("<!--"))
    return prose, table


def test_every_figure_in_the_benchmark_prose_is_in_its_table():
    prose, table = benchmark_prose_and_table()
    figures = FIGURE.findall(NOT_FIGURES.sub("", prose))
    assert [figure for figure in figures if figure not in table] == []


def test_the_figure_check_finds_a_ratio_and_a_time_but_not_a_version_or_a_date():
    text = "On 2026-11-22 (Linux 6.18, Python 3.11.7, pytorch-ignite 0.5.5), its trainer is at 1.14, its bar +43.0 µs."
    assert FIGURE.findall(NOT_FIGURES.sub("", text)) == ["1.14", "43.0"]
