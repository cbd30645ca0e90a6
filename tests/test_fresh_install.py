"""A fresh machine: the README's "Install" commands, run as written, and what the extras install.

The slow test makes a fresh virtual environment with the README's own commands (read from README.md
as ``.ci/run`` reads them) in a copy of the repository, installs as the test command does, runs the
main-job command, and checks what it got: CPU PyTorch, the demo's files, JupyterLab. pip uses this
machine's configuration (its indexes, local wheels and cache), as a reader's pip would use theirs.

The other test checks, from the installed packages' metadata, that ``pip install -e ".[bench]"``
installs every package that the benchmarks import, directly or through nbengine.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"

# Left out of the copy: what a fresh checkout does not have.
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache", "test-artifacts", "demo-output"
)


def readme_block(name: str) -> str:
    """The bash block between ``<!-- name -->`` and ``<!-- /name -->`` in README.md, read by .ci/run's own function."""
    ci = (ROOT / ".ci" / "run").read_text()
    function = re.search(r"^readme_block\(\) \{\n.*?^\}\n", ci, re.DOTALL | re.MULTILINE).group(0)
    result = subprocess.run(["bash", "-c", f"{function}readme_block {name}"], cwd=ROOT, capture_output=True, text=True, check=True)
    command = result.stdout.strip()
    assert command and "\n" not in command, f"README block {name!r}: {result.stdout!r}"
    return command


# Run inside the new environment: what was installed, as JSON.
REPORT = (
    "import json, shutil, sys, torch; from importlib import metadata; "
    "print(json.dumps({'prefix': sys.prefix, 'torch': torch.__version__, 'cuda': torch.version.cuda, "
    "'nbengine': shutil.which('nbengine'), 'jupyter': shutil.which('jupyter'), "
    "'distributions': sorted(d.metadata['Name'].lower() for d in metadata.distributions())}))"
)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_readme_commands_install_cpu_torch_and_run_the_demo_in_a_fresh_venv(tmp_path):
    venv_command = readme_block("venv-command")
    test_command = readme_block("test-command")
    main_job_command = readme_block("main-job-command")
    test_run = " && python -m pytest"
    assert test_command.endswith(test_run)
    install = test_command[: -len(test_run)]
    checkout = tmp_path / "nbengine"
    shutil.copytree(ROOT, checkout, ignore=NOT_COPIED)
    # One shell, as a reader's terminal: the activation holds for the commands after it. Each line
    # stops the script at its first failure (set -e does not look inside && lists).
    script = "\n".join(
        f"{{ {line}; }} || exit $?"
        for line in (venv_command, install, main_job_command, f'python -c "{REPORT}" > report.json', "jupyter lab --version")
    )
    env = {name: value for name, value in os.environ.items() if name not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    log = tmp_path / "install.log"
    with log.open("w") as output:
        result = subprocess.run(["bash", "-c", script], cwd=checkout, env=env, stdout=output, stderr=subprocess.STDOUT, timeout=3300)
    text = log.read_text()
    assert result.returncode == 0, text[-6000:]

    report = json.loads((checkout / "report.json").read_text())
    venv = checkout / ".venv"
    assert Path(report["prefix"]) == venv
    # PyTorch's CPU build, and nothing of CUDA's.
    assert report["torch"].startswith("2.13.0") and report["cuda"] is None
    assert [d for d in report["distributions"] if d.startswith(("nvidia-", "triton"))] == []
    assert {"pytest", "playwright", "jupyterlab", "ipywidgets", "pytorch-ignite", "scikit-learn"} <= set(report["distributions"])
    assert Path(report["nbengine"]).parent == venv / "bin" and Path(report["jupyter"]).parent == venv / "bin"
    # The demo ran from that environment, and its replay matched.
    assert "REPLAY MATCHED: epoch 2 reproduced exactly" in text.splitlines()
    for name in ("loss.png", "timeline.png", "replay_report.txt"):
        assert (checkout / "demo-output" / name).stat().st_size > 0
    assert re.search(r"^4\.\d+\.\d+$", text, re.MULTILINE), "jupyter lab --version printed no version"


# ---------------------------------------------------------------------------------------------- the bench extra


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_closure(requirements: list[str]) -> set[str]:
    """The distributions that pip installs for ``requirements``: them and, from the installed
    packages' metadata, everything they require (markers evaluated here; extras only where asked)."""
    from packaging.requirements import Requirement

    wanted = [(Requirement(text), "") for text in requirements]
    closure: set[str] = set()
    while wanted:
        requirement, extra = wanted.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = normalized(requirement.name)
        if name in closure:
            continue
        closure.add(name)
        for text in metadata.requires(requirement.name) or []:
            required = Requirement(text)
            for chosen in requirement.extras or {""}:
                wanted.append((required, chosen))
    return closure


def local_modules() -> set[str]:
    return {path.stem for path in BENCHMARKS.glob("*.py")}


def is_optional(node: ast.Try) -> bool:
    """A ``try:`` whose handler catches ImportError: what it imports may be missing."""
    caught = [ast.unparse(handler.type) if handler.type else "" for handler in node.handlers]
    return any(name in ("ImportError", "ModuleNotFoundError") for text in caught for name in re.findall(r"\w+", text))


def imports_in(source: str, *, in_functions: bool) -> set[str]:
    """Top-level names of the modules ``source`` imports: everywhere, or (``in_functions=False``)
    only those run when the module is imported and not guarded by a ``try`` for ImportError."""
    modules: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
        elif not in_functions and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        elif not in_functions and isinstance(node, ast.Try) and is_optional(node):
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return modules


def nbengine_modules_loaded_by_benchmarks() -> list[Path]:
    """The files of the nbengine modules that importing every benchmark loads."""
    code = (
        "import importlib, json, sys; "
        f"[importlib.import_module(name) for name in {sorted(local_modules())!r}]; "
        "print(json.dumps(sorted(m.__file__ for n, m in list(sys.modules.items()) "
        "if n.split('.')[0] == 'nbengine' and getattr(m, '__file__', None))))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=BENCHMARKS, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return [Path(file) for file in json.loads(result.stdout)]


def test_the_bench_extra_installs_what_every_benchmark_imports():
    # pip installs what the packages require; what must be declared is what our own code imports:
    # the benchmarks (anywhere in them) and the nbengine modules they load (when loaded).
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    closure = requirement_closure(project["dependencies"] + project["optional-dependencies"]["bench"])
    imported = set()
    for path in BENCHMARKS.glob("*.py"):
        imported |= imports_in(path.read_text(), in_functions=True)
    loaded = nbengine_modules_loaded_by_benchmarks()
    assert ROOT / "nbengine" / "widgets" / "panel.py" in loaded
    for path in loaded:
        imported |= imports_in(path.read_text(), in_functions=False)
    third_party = imported - local_modules() - set(sys.stdlib_module_names) - {"nbengine"}
    assert {"torch", "ignite", "sklearn", "ipywidgets", "matplotlib"} <= third_party
    providers = metadata.packages_distributions()
    missing = {
        module: providers.get(module, [])
        for module in sorted(third_party)
        if not {normalized(name) for name in providers.get(module, [])} & closure
    }
    assert missing == {}


def test_the_import_scan_sees_guarded_and_deferred_imports_as_optional():
    source = (
        "import torch\nfrom ipywidgets import Button\ntry:\n    import apex\nexcept ImportError:\n    apex = None\n"
        "def f():\n    import sklearn\n"
    )
    assert imports_in(source, in_functions=False) == {"torch", "ipywidgets"}
    assert imports_in(source, in_functions=True) == {"torch", "ipywidgets", "apex", "sklearn"}
