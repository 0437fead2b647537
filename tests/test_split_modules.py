"""The modules split along their seams keep their public names and stay small.

* :mod:`holdca.notation.timestamp` still exports every name it exported before the split
  (the list below is that contract, written down from the pre-split ``__all__``), each
  the very object its defining module (timestamp_core, timestamp_request or
  timestamp_token) holds.
* :class:`PostgresLedger` is one class, importable from :mod:`holdca.hold.ledger` and
  :mod:`holdca.hold.ledger.postgres`, and has every method of the
  :class:`IssuanceLedger` Protocol (the Protocol's own members are the oracle).
* Each module of the split is under the standards' ~500 lines (counted from the file).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from holdca.hold.ledger import IssuanceLedger, PostgresLedger, postgres

PACKAGE = Path(__file__).resolve().parent.parent / "holdca"

TIMESTAMP_NAMES = (
    "HASH_ALGORITHMS",
    "MAX_REQUEST_SIZE",
    "MAX_TOKEN_SIZE",
    "MEDIA_TYPE_QUERY",
    "MEDIA_TYPE_REPLY",
    "TimestampInfo",
    "TimestampRequest",
    "Timestamper",
    "build_request",
    "check_policy_oid",
    "check_response",
    "check_tsa_roots",
    "parse_request",
    "verify_token",
)
TIMESTAMP_PARTS = (
    "holdca.notation.timestamp_core",
    "holdca.notation.timestamp_request",
    "holdca.notation.timestamp_token",
)
SPLIT_FILES = (
    "notation/timestamp.py",
    "notation/timestamp_core.py",
    "notation/timestamp_request.py",
    "notation/timestamp_token.py",
    "hold/ledger/postgres.py",
    "hold/ledger/postgres_db.py",
    "hold/ledger/postgres_issuance.py",
)


@pytest.mark.parametrize("name", TIMESTAMP_NAMES)
def test_timestamp_reexports_every_public_name_from_its_part(name: str) -> None:
    facade = importlib.import_module("holdca.notation.timestamp")
    assert name in facade.__all__
    owners = [
        module for module in map(importlib.import_module, TIMESTAMP_PARTS) if name in module.__all__
    ]
    assert len(owners) == 1, f"{name} is exported by {[m.__name__ for m in owners]}"
    assert getattr(facade, name) is getattr(owners[0], name)
    obj = getattr(facade, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        assert obj.__module__ == owners[0].__name__


def test_timestamp_exports_nothing_new() -> None:
    facade = importlib.import_module("holdca.notation.timestamp")
    assert sorted(facade.__all__) == sorted(TIMESTAMP_NAMES)


def test_postgres_ledger_is_one_class_with_the_whole_protocol() -> None:
    assert postgres.PostgresLedger is PostgresLedger
    members = [n for n, v in vars(IssuanceLedger).items() if not n.startswith("_") and callable(v)]
    assert members
    missing = [n for n in members if not callable(getattr(PostgresLedger, n, None))]
    assert not missing


@pytest.mark.parametrize("relative", SPLIT_FILES)
def test_split_modules_stay_under_500_lines(relative: str) -> None:
    lines = (PACKAGE / relative).read_text("utf-8").count("\n")
    assert lines <= 500, f"{relative} has {lines} lines"
