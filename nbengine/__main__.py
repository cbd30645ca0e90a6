"""The ``nbengine`` console script (also ``python -m nbengine``).

This module owns the command line: the arguments, the output folder (created and checked for
writing before anything heavy is imported), the one-line error for bad input and the exit statuses.
What ``nbengine demo`` does lives in :mod:`nbengine.demo`.

Exit statuses:

- 0: the demo ran and its replay reproduced the chosen epoch exactly;
- 1: the replay diverged (the report says where), or the demo failed (a traceback says why);
- 2: bad arguments, or an output folder that cannot be created or written.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nbengine import __version__

EXIT_OK = 0
EXIT_REPLAY_DIVERGED = 1
EXIT_USAGE = 2


class OutputFolderError(ValueError):
    """The output folder cannot be created or written."""


def _describe_os_error(error: OSError) -> str:
    return error.strerror or type(error).__name__


def prepare_output_folder(folder: str | os.PathLike | None, cwd: str | os.PathLike | None = None) -> Path:
    """Create (if needed) and check the folder the demo writes to; return its absolute path.

    ``folder=None`` makes a fresh ``nbengine-demo-*`` folder in ``cwd`` (default: the current
    directory). Raises OutputFolderError, naming the folder and the reason, when the folder is not a
    directory, cannot be created, or refuses a file.
    """
    if folder is not None and not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder should be a path or None, got {folder!r} of type {type(folder).__name__}")
    if folder is None:
        parent = Path.cwd() if cwd is None else Path(cwd)
        try:
            return Path(tempfile.mkdtemp(prefix="nbengine-demo-", dir=parent)).resolve()
        except OSError as error:
            raise OutputFolderError(
                f"cannot create a fresh output folder in {str(parent)!r}: {_describe_os_error(error)}; "
                "give a writable FOLDER"
            ) from error
    path = Path(folder).expanduser()
    if not path.is_absolute():
        path = (Path.cwd() if cwd is None else Path(cwd)) / path
    if path.exists() and not path.is_dir():
        raise OutputFolderError(f"cannot use {str(path)!r} as the output folder: it exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        # Creating the folder is not enough: a read-only mount or a folder of another user refuses files.
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise OutputFolderError(
            f"cannot use {str(path)!r} as the output folder: {_describe_os_error(error)}"
        ) from error
    return path.resolve()


class _OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but an error is a single line on stderr (argparse prints the whole usage first,
    which buries the message when a script runs us)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _number_argument(convert: Callable[[str], Any], accepts: Callable[[Any], bool], expected: str) -> Callable[[str], Any]:
    """An argparse ``type`` that converts with ``convert`` and refuses values ``accepts`` rejects."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive_int = _number_argument(int, lambda value: value >= 1, "a positive integer")
_non_negative_int = _number_argument(int, lambda value: value >= 0, "a non-negative integer")
_positive_float = _number_argument(float, lambda value: 0 < value < float("inf"), "a positive number")


def build_parser() -> argparse.ArgumentParser:
    """The ``nbengine`` argument parser with its ``demo`` command."""
    parser = _OneLineArgumentParser(
        prog="nbengine",
        description="nbengine: an ignite-compatible PyTorch training engine whose runs pause, step, resume and replay.",
    )
    parser.add_argument("--version", action="version", version=f"nbengine {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    demo = commands.add_parser(
        "demo",
        help="train on scikit-learn's bundled digits, pause and resume, replay an epoch, write the plots",
        description=(
            "Train a small MLP on scikit-learn's bundled digits in the background, with a progress bar and a "
            "checkpoint per epoch; pause in the middle of the --replay-epoch epoch, inspect, checkpoint and resume; "
            "then replay that epoch from its snapshot and print the report proving it reproduced; write loss.png, "
            "timeline.png and replay_report.txt. Exit status: 0 when the replay reproduced the epoch, 1 when it "
            "diverged, 2 on bad arguments or an unwritable folder."
        ),
    )
    demo.add_argument(
        "folder",
        nargs="?",
        default=None,
        help="where to write the checkpoints, the report and the plots (created if missing; default: a fresh "
        "folder nbengine-demo-* in the current directory)",
    )
    demo.add_argument("--epochs", type=_positive_int, default=4, help="epochs to train (default 4, at least 2)")
    demo.add_argument(
        "--replay-epoch", type=_positive_int, default=2, help="the epoch to replay (default 2, at most --epochs)"
    )
    demo.add_argument("--seed", type=_non_negative_int, default=0, help="the run's seed (default 0)")
    demo.add_argument(
        "--replay-lr",
        type=_positive_float,
        default=None,
        metavar="LR",
        help="replay with this learning rate instead of the one trained with, to see where the replay diverges "
        "(the demo then exits with status 1)",
    )
    demo.set_defaults(command_parser=demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    parser = build_parser()
    arguments, unrecognized = parser.parse_known_args(argv)
    demo_parser = arguments.command_parser
    if unrecognized:
        # Left over by the demo's parser: its own help is the one that lists what it takes.
        demo_parser.error(f"unrecognized arguments: {' '.join(unrecognized)}")
    if arguments.epochs < 2:
        demo_parser.error(
            f"argument --epochs: expected at least 2 (the demo pauses in the middle of the run), got {arguments.epochs}"
        )
    if arguments.replay_epoch > arguments.epochs:
        demo_parser.error(
            f"argument --replay-epoch: expected an epoch between 1 and --epochs={arguments.epochs}, "
            f"got {arguments.replay_epoch}"
        )

    try:
        folder = prepare_output_folder(arguments.folder)
    except OutputFolderError as error:
        print(f"nbengine demo: error: {error}", file=sys.stderr)
        return EXIT_USAGE

    # Imported here so that --help and the errors above answer without importing torch.
    from nbengine.demo import run_demo

    result = run_demo(
        folder,
        epochs=arguments.epochs,
        replay_epoch=arguments.replay_epoch,
        seed=arguments.seed,
        replay_lr=arguments.replay_lr,
    )
    return EXIT_OK if result.replay_matched else EXIT_REPLAY_DIVERGED


if __name__ == "__main__":
    sys.exit(main())
