"""Prints each conformance group's summary at the end of the pytest run, whatever its outcome."""

from __future__ import annotations

import pytest

_SUMMARIES = pytest.StashKey[list]()


@pytest.fixture
def report_summary(request):
    return request.config.stash.setdefault(_SUMMARIES, []).append


def pytest_terminal_summary(terminalreporter, config):
    for line in config.stash.get(_SUMMARIES, []):
        terminalreporter.write_line(line)
