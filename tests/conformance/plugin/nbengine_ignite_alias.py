"""A pytest plugin that makes ``import ignite...`` import ``nbengine...`` instead.

Loaded with ``-p nbengine_ignite_alias`` in the subprocess that runs pytorch-ignite's own tests, so
that those tests exercise nbengine unchanged. The finder sits first on ``sys.meta_path``: the real
pytorch-ignite, installed beside nbengine for the side-by-side benchmarks, is never reached. An
``ignite.x`` module is the very ``nbengine.x`` module object (identity, not a copy), so classes,
``isinstance`` checks and monkeypatching see one module under both names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

ALIASED = "ignite"
TARGET = "nbengine"


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, module: ModuleType) -> None:
        self._module = module
        self._own_spec = module.__spec__

    def create_module(self, spec):
        return self._module

    def exec_module(self, module: ModuleType) -> None:
        # The import machinery stamps the alias spec on the module; nbengine's own spec must stay.
        module.__spec__ = self._own_spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != ALIASED and not fullname.startswith(ALIASED + "."):
            return None
        target_name = TARGET + fullname[len(ALIASED):]
        try:
            module = importlib.import_module(target_name)
        except ModuleNotFoundError as error:
            if error.name is not None and target_name.startswith(error.name):
                raise ModuleNotFoundError(
                    f"No module named {fullname!r} (aliased to {target_name!r}, which nbengine lacks)",
                    name=fullname,
                ) from None
            raise
        return importlib.util.spec_from_loader(fullname, _AliasLoader(module))


def _install() -> None:
    for name in [n for n in sys.modules if n == ALIASED or n.startswith(ALIASED + ".")]:
        del sys.modules[name]
    sys.meta_path.insert(0, _AliasFinder())


_install()


# --- outcome report --------------------------------------------------------------------------------
# When NBENGINE_CONFORMANCE_REPORT names a file, every test's outcome (and every module that failed to
# import) is written there as JSON when the session ends; the runner reads it.

import json
import os

_outcomes: dict[str, str] = {}


def pytest_collectreport(report):
    if report.failed:
        _outcomes[report.nodeid] = "collection error"


def pytest_runtest_logreport(report):
    previous = _outcomes.get(report.nodeid)
    if report.when == "setup":
        if report.failed:
            _outcomes[report.nodeid] = "error"
        elif report.skipped:
            _outcomes[report.nodeid] = "xfailed" if hasattr(report, "wasxfail") else "skipped"
    elif report.when == "call":
        if report.failed:
            _outcomes[report.nodeid] = "failed"
        elif report.skipped:
            _outcomes[report.nodeid] = "xfailed" if hasattr(report, "wasxfail") else "skipped"
        else:
            _outcomes[report.nodeid] = "passed"
    elif report.when == "teardown" and report.failed and previous in (None, "passed"):
        _outcomes[report.nodeid] = "error"


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("NBENGINE_CONFORMANCE_REPORT")
    if path:
        with open(path, "w", encoding="utf-8") as stream:
            json.dump(_outcomes, stream, indent=0, sort_keys=True)
