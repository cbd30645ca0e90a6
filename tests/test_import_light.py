"""`import nbengine` and the non-widget layers never import ipywidgets, IPython or matplotlib."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["nbengine", "nbengine.engine", "nbengine.handlers", "nbengine.metrics", "nbengine.utils"])
def test_import_does_not_pull_the_notebook_stack(module):
    code = (
        f"import json, sys; import {module}; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('ipywidgets', 'IPython', 'matplotlib', 'ipykernel'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize("module", ["nbengine", "nbengine.engine", "nbengine.handlers", "nbengine.metrics", "nbengine.utils"])
def test_import_does_not_pull_the_distributed_helpers(module):
    code = f"import json, sys; import {module}; print(json.dumps(sorted(m for m in sys.modules if m.startswith('nbengine.distributed'))))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_the_distributed_helpers_import_without_the_notebook_stack():
    code = (
        "import json, sys; import nbengine.distributed; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('ipywidgets', 'IPython', 'matplotlib', 'ipykernel'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
