"""Counters for the reliability report: inputs tried, faults injected, outcomes.

Tests call :func:`count` (``count("fuzz.car")``, ``count("fault.pem.kill")``). When the
environment variable ``HOLDCA_TALLY_DIR`` names a directory, each test process writes its
counters there at the end of the session (``tally-<pid>.json``, see
tests/hardening/conftest.py); ``scripts/reliability.py`` adds them up. Without the
variable the counters are kept in memory only.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

__all__ = ["TALLY", "count", "dump"]

TALLY: Counter[str] = Counter()


def count(name: str, n: int = 1) -> None:
    """Add ``n`` to counter ``name``."""
    TALLY[name] += n


def dump() -> Path | None:
    """Write the counters to ``$HOLDCA_TALLY_DIR/tally-<pid>.json`` (if the variable is set)."""
    directory = os.environ.get("HOLDCA_TALLY_DIR")
    if not directory or not TALLY:
        return None
    path = Path(directory) / f"tally-{os.getpid()}.json"
    path.write_text(json.dumps(dict(TALLY), sort_keys=True))
    return path
