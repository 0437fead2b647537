"""The demo: every step as expected, with and without the notation CLI."""

from __future__ import annotations

import io
from pathlib import Path

from holdca.demo import run_demo, summarize
from holdca.hold import SQLiteLedger
from tests.tools import require_notation


def test_demo_with_notation(tmp_path: Path) -> None:
    notation = require_notation()
    out = io.StringIO()
    assert run_demo(out, notation=notation, workdir=tmp_path) == 0
    text = out.getvalue()
    assert "3. forged proof for did:plc:" in text
    assert "5. notation verify: OK" in text
    assert "7. notation verify: REJECTED" in text
    assert "revoked" in text.split("7. notation verify: REJECTED", 1)[1]
    assert "8. new certificates for the DID refused" in text
    assert "every step behaved as expected" in text
    # the demo really used the embedded defaults: a PEM key and a SQLite ledger with 1 entry
    assert (tmp_path / "keys" / "hold-root.pem").is_file()
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite3")
    assert ledger.count() == 1
    ledger.close()


def test_demo_without_notation() -> None:
    out = io.StringIO()
    assert run_demo(out, notation=False) == 0
    text = out.getvalue()
    assert "3. forged proof for did:plc:" in text
    assert "SignatureInvalidError" not in text.split("3. forged", 1)[0]
    assert "5. holdca verifier (strict, CRL #1): signature valid" in text
    assert "7. holdca verifier (strict, CRL #2): REJECTED (RevokedError" in text
    assert "8. new certificates for the DID refused" in text
    assert "skipped" in text
    assert len(text.splitlines()) <= 15
    assert "9. audit trail:" in text
    assert "1 issued" in text


def test_summarize_picks_the_reason() -> None:
    output = (
        "Warning: experimental\n"
        'level=error msg="revocation validation failed. Failure reason: signing certificate '
        'is revoked"\nError: signature verification failed'
    )
    assert summarize(output) == "signing certificate is revoked"
    assert summarize("") == ""
