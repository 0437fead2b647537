"""Hardening tests: fuzzing, faults, concurrency, secrets (issue 7).

Counters of inputs tried and faults injected are written for the reliability report
when ``HOLDCA_TALLY_DIR`` is set (tests/hardening/tally.py).
"""

from __future__ import annotations

import pytest

from tests.hardening.tally import dump


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write this process's counters (each xdist worker writes its own file)."""
    dump()
