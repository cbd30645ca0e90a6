"""Fetch pytorch-ignite 0.5.5's source distribution and run groups of its tests against nbengine.

The source distribution is downloaded with ``pip download --no-binary :all:`` into a cache folder
(``$NBENGINE_CONFORMANCE_CACHE``, default ``~/.cache/nbengine-conformance``) and unpacked there;
nothing of it is committed. Its tests run in a subprocess with ``ignite`` aliased to ``nbengine``
(``plugin/nbengine_ignite_alias.py``), and each test's outcome is compared with the list of known
failures (``expected_failures.txt``, one ``NODEID  # reason`` per line).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

IGNITE_VERSION = "0.5.5"
HERE = Path(__file__).resolve().parent
EXPECTED_FAILURES = HERE / "expected_failures.txt"
FLAKY_TAG = "[flaky]"

_HANDLER_FILES = [
    f"tests/ignite/handlers/{name}.py"
    for name in (
        "test_checkpoint",
        "test_tqdm_logger",
        "test_early_stopping",
        "test_terminate_on_nan",
        "test_timing",
        "test_param_scheduler",
    )
]
_METRIC_FILES = [
    f"tests/ignite/metrics/{name}.py"
    for name in (
        "test_metric",
        "test_metrics_lambda",
        "test_running_average",
        "test_loss",
        "test_accumulation",
        "test_accuracy",
        "test_average_precision",
        "test_epoch_metric",
        "test_precision",
        "test_recall",
        "test_fbeta",
        "test_confusion_matrix",
        "test_top_k_categorical_accuracy",
        "test_mean_absolute_error",
        "test_mean_squared_error",
        "test_root_mean_squared_error",
    )
]

# Each group: the test paths (relative to the source distribution) and the share that must pass.
GROUPS: dict[str, tuple[list[str], float]] = {
    "engine": (["tests/ignite/engine"], 0.95),
    "handlers_metrics": (_HANDLER_FILES + _METRIC_FILES + ["tests/ignite/test_utils.py"], 0.90),
    "distributed": (["tests/ignite/distributed"], 0.0),
}

# Tests that need several processes, several nodes or a TPU are ignite's own distributed runs.
_MARKERS = "not distributed and not multinode_distributed and not tpu"


def source_tree() -> Path:
    """The unpacked source distribution, downloaded on first use."""
    cache = Path(os.environ.get("NBENGINE_CONFORMANCE_CACHE", Path.home() / ".cache" / "nbengine-conformance"))
    tree = cache / f"pytorch_ignite-{IGNITE_VERSION}"
    if (tree / "tests" / "ignite").is_dir():
        return tree
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as download:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
             f"pytorch-ignite=={IGNITE_VERSION}", "-d", download],
            check=True,
        )
        (archive,) = Path(download).glob("*.tar.gz")
        with tarfile.open(archive) as tar:
            tar.extractall(download, filter="data")
        os.replace(Path(download) / tree.name, tree)
    return tree


@dataclasses.dataclass
class GroupResult:
    name: str
    outcomes: dict[str, str]
    expected: dict[str, str]
    required_share: float

    def count(self, *outcomes: str) -> int:
        return sum(1 for outcome in self.outcomes.values() if outcome in outcomes)

    @property
    def failing(self) -> dict[str, str]:
        bad = ("failed", "error", "collection error")
        return {node: outcome for node, outcome in self.outcomes.items() if outcome in bad}

    @property
    def unexpected_failures(self) -> dict[str, str]:
        return {node: outcome for node, outcome in self.failing.items() if node not in self.expected}

    @property
    def stale_expectations(self) -> list[str]:
        """Listed as failing, yet passed (and not marked flaky): the list must be kept true."""
        return [
            node for node, reason in self.expected.items()
            if self.outcomes.get(node) == "passed" and FLAKY_TAG not in reason
        ]

    @property
    def share_passed(self) -> float:
        ran = self.count("passed", "failed", "error")
        return self.count("passed") / ran if ran else 0.0

    def summary(self) -> str:
        return (
            f"ignite {IGNITE_VERSION} conformance, group {self.name!r}: "
            f"{self.count('passed')} passed, {self.count('failed', 'error')} failed "
            f"({len(self.failing) - len(self.unexpected_failures)} of them listed), "
            f"{self.count('collection error')} modules not importable, {self.count('skipped')} skipped, "
            f"{self.count('xfailed')} xfailed: {self.share_passed:.1%} passing "
            f"(required {self.required_share:.0%})"
        )


def read_expected_failures(path: Path = EXPECTED_FAILURES) -> dict[str, str]:
    expected: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        node, separator, reason = line.partition("  # ")
        if not separator or not reason.strip():
            raise ValueError(f"{path}:{number}: expected 'NODEID  # reason', got {line!r}")
        expected[node.strip()] = reason.strip()
    return expected


def run_group(name: str, extra_args: list[str] | None = None, timeout: float = 3600) -> GroupResult:
    """Run one group of ignite's tests against nbengine and collect every test's outcome."""
    if name not in GROUPS:
        raise ValueError(f"group should be one of {sorted(GROUPS)}, got {name!r}")
    paths, share = GROUPS[name]
    tree = source_tree()
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "outcomes.json"
        env = dict(os.environ)
        env["NBENGINE_CONFORMANCE_REPORT"] = str(report)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE / "plugin"), env.get("PYTHONPATH")]))
        command = [
            sys.executable, "-m", "pytest", *paths, "-p", "nbengine_ignite_alias", "-p", "no:cacheprovider",
            "-o", "addopts=", "-m", _MARKERS, "-q", "--no-header", "-rN", "--color=no",
            "--timeout=180", "--continue-on-collection-errors", *(extra_args or []),
        ]
        finished = subprocess.run(
            command, cwd=tree, env=env, timeout=timeout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        outcomes = json.loads(report.read_text(encoding="utf-8")) if report.exists() else {}
    if not outcomes:
        raise RuntimeError(
            f"ignite's tests for group {name!r} did not run (pytest exit {finished.returncode}):\n"
            + finished.stdout[-4000:]
        )
    expected = {node: reason for node, reason in read_expected_failures().items() if _in_group(node, paths)}
    return GroupResult(name, outcomes, expected, share)


def _in_group(node: str, paths: list[str]) -> bool:
    return any(node == path or node.startswith((path + "::", path + "/")) for path in paths)
