"""``nbengine demo``: the main job, run as a real console script in a real subprocess.

The full runs train for real (a few seconds each) and their files are checked: valid PNG images of
some substance, the checkpoints on disk, the replay report. The error paths check the exit status
and that the message is exactly one line. ``prepare_output_folder`` is also tested in-process.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import sysconfig
import termios
from pathlib import Path

import pytest

from nbengine.__main__ import OutputFolderError, prepare_output_folder
from nbengine.handlers import list_checkpoints

PIL_Image = pytest.importorskip("PIL.Image")

SCRIPT = shutil.which("nbengine", path=sysconfig.get_path("scripts"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHECKPOINT_ITERATIONS = [180, 135, 90, 67, 45]  # newest first: 4 epochs of 45 iterations and the pause at 67


def run_script(*arguments: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    assert SCRIPT is not None, f"the nbengine console script is not installed in {sysconfig.get_path('scripts')}"
    return subprocess.run(
        [SCRIPT, *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def imported_modules(importtime_stderr: str) -> set[str]:
    # -X importtime lines: "import time: self [us] | cumulative | imported package"
    return {
        line.rsplit("|", 1)[1].strip()
        for line in importtime_stderr.splitlines()
        if line.startswith("import time:") and "|" in line and "imported package" not in line
    }


def check_png(path: Path, width: int, height: int) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 20_000, f"{path.name} is only {len(data)} bytes"
    with PIL_Image.open(path) as image:
        image.verify()
    with PIL_Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (width, height)
        # A plot, not a blank canvas: many distinct colours (antialiased lines and text).
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
        assert len(colours) > 50


# ---------------------------------------------------------------------------------------------- full runs


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One demo in a given folder, through the console script, with every import logged."""
    workdir = tmp_path_factory.mktemp("demo")
    result = run_script("demo", "out", cwd=workdir, env={"PYTHONPROFILEIMPORTTIME": "1"})
    return result, workdir / "out"


@pytest.mark.slow
def test_demo_succeeds_and_says_the_replay_matched(demo_run):
    result, folder = demo_run
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == f"nbengine demo: writing to {folder}"
    assert "paused at epoch 2, iteration 67 (after ITERATION_COMPLETED), status 'paused'" in lines
    assert "  saved checkpoints/demo_checkpoint_67.pt while paused" in lines
    assert "training done: 180 iterations" in "\n".join(lines)
    assert (
        "epoch 2 replayed: 45 iterations, 45 compared; batches identical; outputs identical (max |diff| 0.0); "
        "reproduced" in lines
    )
    assert lines[-1] == "REPLAY MATCHED: epoch 2 reproduced exactly"
    # The handlers the replay left out are named, the pause among them, without object addresses.
    (skipped,) = [line for line in lines if line.startswith("  not run during the replay: ")]
    assert "_Training.pause_in_the_middle on ITERATION_COMPLETED" in skipped and " object at 0x" not in skipped
    # Output captured into pipes is not a terminal: no bar, so no redraws in the story or beside it.
    assert "Epoch [" not in result.stderr and "\r" not in result.stdout + result.stderr


@pytest.mark.slow
def test_demo_writes_the_plots_as_valid_pngs(demo_run):
    result, folder = demo_run
    assert result.returncode == 0
    check_png(folder / "loss.png", 900, 480)
    check_png(folder / "timeline.png", 1000, 750)


@pytest.mark.slow
def test_demo_writes_the_checkpoints_and_the_report(demo_run):
    result, folder = demo_run
    assert result.returncode == 0
    infos = list_checkpoints(folder / "checkpoints")
    assert [info.iteration for info in infos] == CHECKPOINT_ITERATIONS
    assert [info.path.name for info in infos] == [f"demo_checkpoint_{i}.pt" for i in CHECKPOINT_ITERATIONS]
    assert [info.epoch for info in infos] == [4, 3, 2, 2, 1]
    assert sorted(infos[0].keys) == ["model", "optimizer", "replay", "trainer"]

    report = (folder / "replay_report.txt").read_text().splitlines()
    assert report[0].startswith("epoch 2 replayed: 45 iterations, 45 compared; batches identical; outputs identical")
    table = report[report.index("iteration  recorded loss         replayed loss         same batch  same loss") + 1 :]
    assert [int(row.split()[0]) for row in table] == list(range(46, 91))
    for row in table:
        iteration, recorded, replayed, same_batch, same_loss = row.split()
        assert (recorded, same_batch, same_loss) == (replayed, "yes", "yes")


@pytest.mark.slow
def test_demo_imports_neither_ipywidgets_nor_pyplot(demo_run):
    result, _ = demo_run
    assert result.returncode == 0
    modules = imported_modules(result.stderr)
    assert "torch" in modules and "matplotlib.figure" in modules and "sklearn.datasets" in modules
    forbidden = sorted(m for m in modules if m.split(".")[0] in ("ipywidgets", "IPython") or m == "matplotlib.pyplot")
    assert forbidden == []


@pytest.mark.slow
def test_demo_without_a_folder_makes_a_fresh_one_and_fails_when_the_replay_diverges(tmp_path):
    # python -m nbengine, no folder: a fresh nbengine-demo-* folder in the current directory.
    result = subprocess.run(
        [sys.executable, "-m", "nbengine", "demo", "--replay-lr", "0.1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    (folder,) = tmp_path.iterdir()
    assert folder.name.startswith("nbengine-demo-")
    lines = result.stdout.splitlines()
    assert lines[0] == f"nbengine demo: writing to {folder}"
    # The first loss of the epoch is computed before any update, so the divergence shows at the second.
    assert lines[-1] == "REPLAY DIVERGED: epoch 2 did not reproduce; first divergence at iteration 47"
    assert any(line.startswith("epoch 2 replayed: 45 iterations, 45 compared; batches identical; outputs differ") for line in lines)
    table = (folder / "replay_report.txt").read_text().splitlines()
    assert re.match(r"\s+46\s+(\S+)\s+\1\s+yes\s+yes$", table[table.index(next(r for r in table if r.strip().startswith("46")))])
    assert [row.split()[-1] for row in table if row.strip().startswith("47")] == ["NO"]
    check_png(folder / "loss.png", 900, 480)
    check_png(folder / "timeline.png", 1000, 750)


@pytest.mark.slow
def test_demo_run_again_in_a_folder_replaces_its_checkpoints_and_leaves_other_files(tmp_path):
    checkpoints = tmp_path / "out" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "demo_checkpoint_999.pt").write_bytes(b"from an earlier demo run")
    (checkpoints / "notes.txt").write_text("mine")
    result = run_script("demo", "out", "--epochs", "2", "--replay-epoch", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "paused at epoch 1, iteration 22 (after ITERATION_COMPLETED), status 'paused'" in result.stdout.splitlines()
    assert result.stdout.splitlines()[-1] == "REPLAY MATCHED: epoch 1 reproduced exactly"
    assert sorted(p.name for p in checkpoints.iterdir()) == sorted(
        ["demo_checkpoint_22.pt", "demo_checkpoint_45.pt", "demo_checkpoint_90.pt", "notes.txt"]
    )


def run_in_a_terminal(arguments: list[str], cwd: Path, columns: int = 120) -> tuple[int, str]:
    """Run the console script with stdout and stderr on one pseudo-terminal; its exit status and all it wrote."""
    assert SCRIPT is not None
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    process = subprocess.Popen([SCRIPT, *arguments], cwd=cwd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed its end, the script has ended
                break
            if not data:
                break
            chunks.append(data)
        return process.wait(timeout=300), b"".join(chunks).decode()
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()


def screen_lines(written: str) -> list[str]:
    """What a terminal shows of ``written``: a carriage return goes back to the start of the line and
    what follows overwrites what was there."""
    lines = []
    for line in written.replace("\r\n", "\n").split("\n"):
        shown: list[str] = []
        for segment in line.split("\r"):
            shown[: len(segment)] = segment
        lines.append("".join(shown).rstrip())
    return lines


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_in_a_terminal_the_bar_is_live_and_the_story_stays_above_it(tmp_path):
    status, written = run_in_a_terminal(["demo", "out", "--epochs", "2", "--replay-epoch", "1"], tmp_path)
    assert status == 0, written[-3000:]
    assert "\r" in written.replace("\r\n", "\n")  # the bar was redrawn in place
    shown = [line for line in screen_lines(written) if line]
    bars = [line for line in shown if "Epoch [" in line]
    # One bar line left per epoch, at its end; the story's lines are whole, none drawn onto a bar.
    assert [line.split("|")[0] for line in bars] == ["Epoch [1/2]: [45/45] 100%", "Epoch [2/2]: [45/45] 100%"]
    assert all(line.startswith("Epoch [") for line in bars)
    story = [line for line in shown if line not in bars]
    assert story[0] == f"nbengine demo: writing to {(tmp_path / 'out').resolve()}"
    paused = story.index("paused at epoch 1, iteration 22 (after ITERATION_COMPLETED), status 'paused'")
    assert story[paused + 2 : paused + 4] == ["  saved checkpoints/demo_checkpoint_22.pt while paused", "resuming"]
    assert story[-1] == "REPLAY MATCHED: epoch 1 reproduced exactly"


@pytest.mark.slow
def test_output_into_a_file_is_the_story_alone_line_by_line(tmp_path):
    # `nbengine demo out > log 2>&1`: both streams into one file, no terminal.
    log = tmp_path / "log"
    with log.open("wb") as file:
        result = subprocess.run(
            [SCRIPT, "demo", "out", "--epochs", "2", "--replay-epoch", "1"],
            cwd=tmp_path, stdout=file, stderr=subprocess.STDOUT, timeout=300,
        )
    text = log.read_text()
    assert result.returncode == 0, text[-3000:]
    assert "\r" not in text and "Epoch [" not in text
    lines = text.splitlines()
    assert lines[0] == f"nbengine demo: writing to {(tmp_path / 'out').resolve()}"
    paused = lines.index("paused at epoch 1, iteration 22 (after ITERATION_COMPLETED), status 'paused'")
    assert lines[paused + 2 : paused + 4] == ["  saved checkpoints/demo_checkpoint_22.pt while paused", "resuming"]
    assert lines[paused + 4].startswith("epoch 1: validation accuracy ")
    assert lines[-1] == "REPLAY MATCHED: epoch 1 reproduced exactly"


# ---------------------------------------------------------------------------------------------- errors


def assert_one_line_error(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    assert re.fullmatch(expected, result.stderr.rstrip("\n")), result.stderr


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (
            ["demo", "--frobnicate"],
            re.escape("nbengine demo: error: unrecognized arguments: --frobnicate (see 'nbengine demo --help')"),
        ),
        (["demo", "a", "b"], re.escape("nbengine demo: error: unrecognized arguments: b (see 'nbengine demo --help')")),
        (
            ["train"],
            re.escape("nbengine: error: argument COMMAND: invalid choice: 'train' (choose from 'demo') (see 'nbengine --help')"),
        ),
        ([], re.escape("nbengine: error: the following arguments are required: COMMAND (see 'nbengine --help')")),
        (
            ["demo", "--epochs", "1"],
            re.escape(
                "nbengine demo: error: argument --epochs: expected at least 2 (the demo pauses in the middle of the "
                "run), got 1 (see 'nbengine demo --help')"
            ),
        ),
        (
            ["demo", "--epochs", "two"],
            re.escape("nbengine demo: error: argument --epochs: expected a positive integer, got 'two' (see 'nbengine demo --help')"),
        ),
        (
            ["demo", "--replay-epoch", "5"],
            re.escape(
                "nbengine demo: error: argument --replay-epoch: expected an epoch between 1 and --epochs=4, got 5 "
                "(see 'nbengine demo --help')"
            ),
        ),
        (
            ["demo", "--replay-lr", "-1"],
            re.escape("nbengine demo: error: argument --replay-lr: expected a positive number, got '-1' (see 'nbengine demo --help')"),
        ),
    ],
    ids=["unknown-option", "two-folders", "unknown-command", "no-command", "one-epoch", "epochs-not-a-number",
         "replay-epoch-too-late", "negative-lr"],
)
def test_bad_arguments_get_one_line_and_status_2(tmp_path, arguments, expected):
    assert_one_line_error(run_script(*arguments, cwd=tmp_path), expected)
    assert list(tmp_path.iterdir()) == []


def test_a_file_given_as_the_folder_gets_one_line_and_status_2(tmp_path):
    (tmp_path / "taken").write_text("not a folder")
    result = run_script("demo", "taken", cwd=tmp_path)
    assert_one_line_error(
        result,
        re.escape(f"nbengine demo: error: cannot use '{tmp_path / 'taken'}' as the output folder: it exists and is not a folder"),
    )


def test_a_folder_under_a_file_gets_one_line_and_status_2(tmp_path):
    (tmp_path / "taken").write_text("not a folder")
    result = run_script("demo", "taken/out", cwd=tmp_path)
    assert_one_line_error(
        result, re.escape(f"nbengine demo: error: cannot use '{tmp_path / 'taken' / 'out'}' as the output folder: Not a directory")
    )


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux's /sys, which refuses new files even to root")
def test_an_unwritable_folder_gets_one_line_and_status_2(tmp_path):
    result = run_script("demo", "/sys/kernel", cwd=tmp_path)
    assert_one_line_error(result, r"nbengine demo: error: cannot use '/sys/kernel' as the output folder: [A-Z][a-z -]+")


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux's /sys, which refuses new files even to root")
def test_an_unwritable_current_folder_without_a_folder_argument_gets_one_line_and_status_2():
    result = run_script("demo", cwd=Path("/sys/kernel"))
    assert_one_line_error(
        result,
        r"nbengine demo: error: cannot create a fresh output folder in '/sys/kernel': [A-Z][a-z -]+; give a writable FOLDER",
    )


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write in a read-only-mode folder")
def test_a_read_only_folder_gets_one_line_and_status_2(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        result = run_script("demo", "locked", cwd=tmp_path)
    finally:
        locked.chmod(0o700)
    assert_one_line_error(
        result, re.escape(f"nbengine demo: error: cannot use '{locked}' as the output folder: Permission denied")
    )


# ---------------------------------------------------------------------------------------------- in-process


def test_prepare_output_folder_creates_missing_parents_relative_to_cwd(tmp_path):
    folder = prepare_output_folder("a/b/out", cwd=tmp_path)
    assert folder == (tmp_path / "a" / "b" / "out").resolve()
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_prepare_output_folder_accepts_an_existing_folder_and_leaves_its_files(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    assert prepare_output_folder(tmp_path) == tmp_path.resolve()
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_prepare_output_folder_without_a_folder_makes_a_fresh_one_each_time(tmp_path):
    first = prepare_output_folder(None, cwd=tmp_path)
    second = prepare_output_folder(None, cwd=tmp_path)
    assert first != second
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, second.name])
    assert all(p.name.startswith("nbengine-demo-") for p in (first, second))


def test_prepare_output_folder_refuses_a_file_and_a_non_path(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputFolderError, match="as the output folder: it exists and is not a folder"):
        prepare_output_folder(tmp_path / "file")
    with pytest.raises(TypeError, match=r"folder should be a path or None, got 3 of type int"):
        prepare_output_folder(3)


def test_help_and_version_answer_with_status_0(tmp_path):
    from nbengine import __version__

    version = run_script("--version", cwd=tmp_path)
    assert (version.returncode, version.stdout, version.stderr) == (0, f"nbengine {__version__}\n", "")
    demo_help = run_script("demo", "--help", cwd=tmp_path)
    assert demo_help.returncode == 0 and demo_help.stderr == ""
    assert demo_help.stdout.startswith("usage: nbengine demo [-h] [--epochs EPOCHS] [--replay-epoch REPLAY_EPOCH]")
    for option in ("--epochs", "--replay-epoch", "--seed", "--replay-lr"):
        assert option in demo_help.stdout
    assert list(tmp_path.iterdir()) == []
