"""Command line: ``python -m tests.conformance.run GROUP [pytest args...]``.

Prints every failing test (marked when it is listed in ``expected_failures.txt``), stale entries of
that list, and the group's summary line. Exits 1 when the group would fail the conformance test.
"""

from __future__ import annotations

import sys

from tests.conformance.suite import GROUPS, run_group


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in GROUPS:
        print(f"usage: python -m tests.conformance.run {{{'|'.join(GROUPS)}}} [pytest args...]", file=sys.stderr)
        return 2
    result = run_group(argv[0], argv[1:])
    for node, outcome in sorted(result.failing.items()):
        listed = "listed  " if node in result.expected else "NEW     "
        print(f"{listed}{outcome:17} {node}")
    for node in result.stale_expectations:
        print(f"STALE   passed            {node}  (listed as failing: remove it)")
    print(result.summary())
    ok = not result.unexpected_failures and not result.stale_expectations
    return 0 if ok and result.share_passed >= result.required_share else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
