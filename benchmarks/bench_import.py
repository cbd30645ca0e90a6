"""What importing costs: nbengine's public layers beside ``import torch`` and pytorch-ignite's engine.

Each case is timed in a fresh interpreter (``python -c``), from just before its import statement to
just after, so the interpreter's own start-up is left out and every case pays for what it pulls in,
torch included: nbengine imports torch, and so does ignite. The cases are run in interleaved rounds,
so that drift of the machine hits them alike, after one warm-up round that brings the files into the
page cache; medians are reported, with the minimum. The budget (``docs/design.md``) is
``import nbengine`` of the layers a script uses (engine, handlers, metrics, utils) within 0.3 s of
``import torch``.

    python benchmarks/bench_import.py [--rounds N] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys

BUDGET_OVER_TORCH = 0.3  # seconds

CASES = {
    "import torch": "import torch",
    "import nbengine": "import nbengine",
    "import nbengine.engine, .handlers, .metrics, .utils": (
        "import nbengine.engine, nbengine.handlers, nbengine.metrics, nbengine.utils"
    ),
    "import ignite.engine, ignite.handlers": "import ignite.engine, ignite.handlers",
}
LAYERS = "import nbengine.engine, .handlers, .metrics, .utils"

# The import runs as a statement of its own between two clock reads; only the difference is printed.
TIMER = "import time as _t; _start = _t.perf_counter()\n{statement}\nprint(_t.perf_counter() - _start)"


def time_import(statement: str) -> float:
    """Seconds that ``statement`` takes in a fresh interpreter (its start-up left out)."""
    result = subprocess.run(
        [sys.executable, "-c", TIMER.format(statement=statement)], capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        raise RuntimeError(f"{statement!r} failed in a fresh interpreter:\n{result.stderr[-2000:]}")
    return float(result.stdout.strip().splitlines()[-1])


def available_cases() -> dict[str, str]:
    if importlib.util.find_spec("ignite") is None:  # the table still compares nbengine with torch
        print("pytorch-ignite is not installed (python -m pip install -e \".[bench]\"): its row is left out")
        return {name: code for name, code in CASES.items() if not name.startswith("import ignite")}
    return dict(CASES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=11, help="interleaved rounds after the warm-up (default 11)")
    parser.add_argument("--quick", action="store_true", help="3 rounds: a check that it runs, not a measurement")
    arguments = parser.parse_args()
    rounds = 3 if arguments.quick else arguments.rounds
    if rounds < 1:
        parser.error(f"argument --rounds: expected a positive integer, got {rounds}")

    cases = available_cases()
    for statement in cases.values():  # warm-up: the page cache, compiled bytecode
        time_import(statement)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, statement in cases.items():
            samples[name].append(time_import(statement))

    medians = {name: statistics.median(values) for name, values in samples.items()}
    torch_median = medians["import torch"]
    print(f"{rounds} interleaved rounds, each import in a fresh interpreter (Python {sys.version.split()[0]})")
    print(f"{'case':<55} {'median':>8} {'minimum':>8} {'- torch':>8}")
    for name, values in samples.items():
        print(f"{name:<55} {medians[name]:>7.3f}s {min(values):>7.3f}s {medians[name] - torch_median:>+7.3f}s")
    over = medians[LAYERS] - torch_median
    verdict = "within" if over <= BUDGET_OVER_TORCH else "OVER"
    print(f"nbengine's layers: torch {over:+.3f} s, {verdict} the budget of torch + {BUDGET_OVER_TORCH} s")


if __name__ == "__main__":
    main()
