"""pytorch-ignite 0.5.5's own tests, run against nbengine with ``ignite`` aliased.

Each group must pass at its required share; every test of it that fails must be listed in
``expected_failures.txt`` with its reason, and a listed test that passes must leave the list.
"""

from __future__ import annotations

import pytest

from tests.conformance.suite import GROUPS, read_expected_failures, run_group

pytestmark = pytest.mark.slow


def test_the_list_of_expected_failures_is_well_formed():
    expected = read_expected_failures()
    paths = [path for group_paths, _ in GROUPS.values() for path in group_paths]
    outside = [node for node in expected if not any(node.startswith(path) for path in paths)]
    assert outside == []


@pytest.mark.parametrize("group", ["engine", "handlers_metrics"])
def test_ignite_suite_group(group, report_summary):
    result = run_group(group)
    report_summary(result.summary())
    assert result.unexpected_failures == {}, result.summary()
    assert result.stale_expectations == [], result.summary()
    assert result.share_passed >= result.required_share, result.summary()
