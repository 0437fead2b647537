"""HOLD_LEDGER_URL: configuration, ``open_hold`` and the CLI on a PostgreSQL ledger.

Oracles: the database read with its own connection, the CLI's exit codes and streams,
and the password (random per test) searched for in everything that is shown.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import psycopg
import pytest

from holdca.errors import ConfigError
from holdca.hold.config import HoldConfig, Secret
from holdca.hold.ledger import PostgresLedger
from holdca.hold.setup import open_hold
from holdca.testing.network import TestNetwork
from tests.cli_helpers import clean_environment, run, run_json
from tests.postgres import PostgresServer

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOLD = ["--did", "did:web:hold.pg-test.example.com", "--country", "US", "--state", "CA",
        "--org", "PG Test Hold"]  # fmt: skip
BASE = {
    "HOLD_DID": "did:web:hold.pg-test.example.com",
    "HOLD_SUBJECT_C": "US",
    "HOLD_SUBJECT_ST": "CA",
    "HOLD_SUBJECT_O": "PG Test Hold",
}


@pytest.fixture
def secret() -> str:
    return "pw-" + os.urandom(6).hex()


@pytest.fixture
def url(postgres_server: PostgresServer, secret: str) -> str:
    """A fresh schema, reached with a password in the URL (trust auth ignores it)."""
    schema = postgres_server.fresh_schema().split("options=")[1]
    return postgres_server.url(password=secret) + f"&options={schema}"


def _tables(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_config_keeps_the_url_secret(url: str, secret: str, tmp_path: Path) -> None:
    config = HoldConfig.from_env({**BASE, "HOLD_LEDGER_URL": url})
    assert isinstance(config.ledger_url, Secret)
    assert config.ledger_url.reveal() == url
    assert secret not in repr(config)
    assert config.effective_ledger_path is None  # no SQLite file with a URL
    with pytest.raises(ConfigError, match="HOLD_LEDGER_PATH and HOLD_LEDGER_URL"):
        HoldConfig.from_env(
            {**BASE, "HOLD_LEDGER_URL": url, "HOLD_LEDGER_PATH": str(tmp_path / "l.db")}
        )
    for bad in (f"mysql://holdca:{secret}@db/x", f"postgresql://holdca:{secret}@db:port/x"):
        with pytest.raises(ConfigError, match="HOLD_LEDGER_URL") as caught:
            HoldConfig.from_env({**BASE, "HOLD_LEDGER_URL": bad})
        assert secret not in str(caught.value)


def test_open_hold_creates_the_schema_only_with_create(url: str, tmp_path: Path) -> None:
    config = HoldConfig.from_env(
        {**BASE, "HOLD_LEDGER_URL": url, "HOLD_CA_CERT_PATH": str(tmp_path / "ca.pem")}
    )
    ca = open_hold(config, now=NOW, create=True, resolver=TestNetwork())
    assert _tables(url) > 5
    assert not list(tmp_path.glob("*.sqlite3*"))
    led = PostgresLedger(url, create=False)
    assert [c.state for c in led.cas()] == ["active"]
    led.close()
    ca.ledger.close()
    again = open_hold(config, now=NOW, resolver=TestNetwork())  # the hold, reopened
    assert again.root_certificate == ca.root_certificate
    again.ledger.close()


def test_open_hold_refuses_a_database_without_the_schema(url: str, tmp_path: Path) -> None:
    first = HoldConfig.from_env(
        {**BASE, "HOLD_CA_CERT_PATH": str(tmp_path / "a" / "ca.pem")}
    )  # a CA on SQLite, so that only the ledger is missing below
    open_hold(first, now=NOW, create=True, resolver=TestNetwork())
    config = HoldConfig.from_env(
        {**BASE, "HOLD_LEDGER_URL": url, "HOLD_CA_CERT_PATH": str(tmp_path / "a" / "ca.pem")}
    )
    with pytest.raises(ConfigError, match=r"HOLD_LEDGER_URL.*only holdca init"):
        open_hold(config, now=NOW, resolver=TestNetwork())
    assert _tables(url) == 0  # nothing was created


def test_cli_on_a_postgres_ledger(
    postgres_server: PostgresServer,
    url: str,
    secret: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clean_environment(monkeypatch)
    monkeypatch.setenv("HOLD_LEDGER_URL", url)
    home = tmp_path / "hold"
    data = run_json(capsys, "init", "--home", str(home), *HOLD)
    assert data["created"] is True
    assert _tables(url) > 5
    assert not list(home.glob("*.sqlite3*"))  # the ledger is in PostgreSQL, not a file
    listed = run_json(capsys, "certs", "--home", str(home))
    assert listed["certificates"] == []
    # a database without the holdca schema: exit 2, one line naming the variable
    empty = postgres_server.fresh_schema().split("options=")[1]
    monkeypatch.setenv(
        "HOLD_LEDGER_URL", postgres_server.url(password=secret) + f"&options={empty}"
    )
    code, out, err = run(capsys, "certs", "--home", str(home))
    assert code == 2
    assert "HOLD_LEDGER_URL" in err
    assert len(err.strip().splitlines()) == 1
    assert _tables(postgres_server.url(options=unquote(empty))) == 0
    # an unreachable database: exit 1, one line, no password
    port = f"port={postgres_server.port}"
    monkeypatch.setenv("HOLD_LEDGER_URL", url.replace(port, "port=1"))
    code, out, err = run(capsys, "certs", "--home", str(home))
    assert code == 1
    assert "Traceback" not in err
    assert "ledger" in err
    for text in (out, err, json.dumps(listed), (home / "hold.json").read_text()):
        assert secret not in text
