"""No state created by a typo, and the files a hold creates (holdca issue 17).

Only ``holdca init`` creates a hold; every other command refuses a missing ledger, CA
certificate or key path (exit 2, one line naming the variable) and creates nothing. A
failed init leaves nothing behind. The ledger is created 0600. Unknown ``HOLD_*`` names
are warned about; an init without CRL or OCSP URL warns that revocation cannot reach
verifiers.

The oracles are the file system (``os.stat``, a snapshot of every file's bytes), openssl
for the certificate files, and the source tree (``grep``-like scan of every ``HOLD_*``
name the code reads).
"""

from __future__ import annotations

import ast
import gc
import hashlib
import json
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from holdca.cli import main
from holdca.errors import ConfigError
from holdca.hold import HoldConfig, open_hold
from holdca.hold.config import unknown_settings
from holdca.hold.ledger import SQLiteLedger
from holdca.hold.setup import key_store_from_config
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parent.parent
HOLD = ["--did", "did:web:hold.state-test.example.com", "--country", "US", "--state", "CA",
        "--org", "State Test Hold"]  # fmt: skip
CRL_URL = ["--crl-url", "http://127.0.0.1:9/ca.crl"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("HOLD_") or name == "HOLDCA_HOME":
            monkeypatch.delenv(name)
    old = os.umask(0o022)  # the usual umask: SQLite would create the ledger 0644
    yield
    os.umask(old)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every path under ``root`` -> (mode, SHA-256 of the content; "" for directories)."""
    found = {}
    for path in sorted(root.rglob("*")):
        info = os.lstat(path)
        data = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else ""
        found[str(path.relative_to(root))] = (info.st_mode, data)
    return found


def openssl_fingerprint(pem: Path) -> str:
    openssl = require_tool("openssl")
    done = subprocess.run(
        [openssl, "x509", "-in", str(pem), "-noout", "-fingerprint", "-sha256"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().split("=", 1)[1]


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    h = tmp_path / "hold"
    code, _, err = run(capsys, "init", "--home", str(h), *HOLD, *CRL_URL)
    assert code == 0, err
    gc.collect()  # init's ledger connections close (SQLite folds the -wal file back in)
    return h


# --- only init creates state ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["crl", "denied"])
@pytest.mark.parametrize(
    ("variable", "value", "created"),
    [
        ("HOLD_LEDGER_PATH", "{tmp}/nonexistent/dir/l.sqlite3", "{tmp}/nonexistent"),
        ("HOLD_CA_CERT_PATH", "{tmp}/x.crt", "{tmp}/x.crt"),
        ("HOLD_CA_KEY_PATH", "{tmp}/nokeys", "{tmp}/nokeys"),
        ("HOLD_CA_KEY_PATH", "{home}/keys/typo.pem", "{home}/keys/typo.pem"),
    ],
)
def test_a_mistyped_path_is_refused_and_creates_nothing(
    command: str,
    variable: str,
    value: str,
    created: str,
    home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Old code: the ledger typo made a new directory and an empty ledger and signed
    "CRL #1 with 0 entries"; the certificate typo wrote a certificate there; the key
    directory typo made an empty key directory."""
    path = value.format(tmp=tmp_path, home=home)
    before = snapshot(tmp_path)
    monkeypatch.setenv(variable, path)
    code, out, err = run(capsys, command, "--home", str(home))
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"holdca {command}: configuration error: {variable}: ")
    assert path in lines[0]
    assert "holdca init" in lines[0]  # says what creates a hold
    assert "Traceback" not in err
    assert out == ""
    assert not os.path.lexists(created.format(tmp=tmp_path, home=home))
    assert snapshot(tmp_path) == before  # nothing created, nothing changed


def test_the_defaults_beside_a_mistyped_certificate_path_are_not_created(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --home: HOLD_CA_CERT_PATH alone names the hold; keys/ and the ledger default to
    its directory. A wrong directory creates neither (old code: created both)."""
    settings = json.loads((home / "hold.json").read_text())
    os.environ.update(settings)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "ca.crt").write_bytes((home / "ca.crt").read_bytes())
    os.environ["HOLD_CA_CERT_PATH"] = str(elsewhere / "ca.crt")
    try:
        code, _, err = run(capsys, "crl")
    finally:
        for name in [*settings, "HOLD_CA_CERT_PATH"]:
            os.environ.pop(name, None)
    assert code == 2, err
    assert "HOLD_CA_KEY_PATH" in err or "HOLD_LEDGER_PATH" in err
    assert sorted(p.name for p in elsewhere.iterdir()) == ["ca.crt"]


def test_open_hold_and_key_store_from_config_create_nothing_without_create(
    tmp_path: Path,
) -> None:
    hold = tmp_path / "hold"
    config = HoldConfig(
        hold_did="did:web:hold.state-test.example.com",
        subject_country="US",
        subject_state="CA",
        subject_organization="State Test Hold",
        ca_cert_path=hold / "ca.crt",
        ledger_path=hold / "ledger.sqlite3",
    )
    with pytest.raises(ConfigError, match=r"HOLD_CA_CERT_PATH: .* does not exist"):
        open_hold(config, now=datetime.now(UTC))
    with pytest.raises(ConfigError, match=r"HOLD_CA_KEY_PATH: unset, and the default .*keys"):
        key_store_from_config(config)
    assert not hold.exists()  # old code: keys/, the ledger and ca.crt
    ca = open_hold(config, now=datetime.now(UTC), create=True)
    ca.ledger.close()
    assert sorted(p.name for p in hold.iterdir())[:3] == ["ca.crt", "keys", "ledger.sqlite3"]
    (hold / "ledger.sqlite3").rename(hold / "moved.sqlite3")
    with pytest.raises(ConfigError, match=r"HOLD_LEDGER_PATH: .*ledger\.sqlite3 does not exist"):
        open_hold(config, now=datetime.now(UTC))
    assert not (hold / "ledger.sqlite3").exists()
    # an embedder's own ledger: HOLD_LEDGER_PATH is not looked at
    ledger = SQLiteLedger(hold / "moved.sqlite3")
    assert open_hold(config, now=datetime.now(UTC), ledger=ledger).ledger is ledger
    ledger.close()


def test_commands_do_not_rewrite_the_certificate_file(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``rotate`` writes ca.crt; later commands leave it as it is (old code: every command
    rewrote it whenever it differed from ``ca.root_certificate``, which during the grace
    period is the old root at the end of the cross-signed chain: a ``crl`` after a
    ``rotate`` put the old root back)."""
    old_fingerprint = openssl_fingerprint(home / "ca.crt")
    code, _, err = run(capsys, "rotate", "--home", str(home), "--new-label", "root-2")
    assert code == 0, err
    written = (home / "ca.crt").read_bytes()
    fingerprint = openssl_fingerprint(home / "ca.crt")
    assert fingerprint != old_fingerprint  # rotate wrote the new root
    inode = os.stat(home / "ca.crt").st_ino
    for command in ("crl", "denied"):
        code, _, err = run(capsys, command, "--home", str(home))
        assert code == 0, err
        assert (home / "ca.crt").read_bytes() == written, command
        assert os.stat(home / "ca.crt").st_ino == inode, command
    assert openssl_fingerprint(home / "ca.crt") == fingerprint


# --- a failed init leaves nothing behind ---------------------------------------------------


def test_init_refused_before_writing_leaves_no_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Old code: the home directory (and its parents) were created before validation. An
    existing (empty) home stays as it was."""
    no_country = [a for a in HOLD if a not in ("--country", "US")]
    existing = tmp_path / "existing"
    existing.mkdir()
    for h in (tmp_path / "a" / "hold", existing):
        code, _, err = run(capsys, "init", "--home", str(h), *no_country)
        assert code == 2
        assert "HOLD_SUBJECT_C" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]
    assert list(existing.iterdir()) == []


def test_init_failing_half_way_removes_what_it_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The certificate cannot be written (its directory is a file) after the key and the
    ledger were made. Old code: left hold.json, keys/ and the ledger behind."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    monkeypatch.setenv("HOLD_CA_CERT_PATH", str(blocker / "ca.crt"))
    h = tmp_path / "hold"
    code, _, err = run(capsys, "init", "--home", str(h), *HOLD, *CRL_URL)
    assert code == 1
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_a_failed_re_init_changes_nothing(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-running init with a new setting and a certificate path that cannot be written:
    hold.json keeps its old content (old code: the new settings stayed), the hold its
    files."""
    (home / "ca.crt").rename(tmp_path / "saved.crt")  # init will try to write it again
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    before = snapshot(home)
    ledger = SQLiteLedger(home / "ledger.sqlite3")
    cas = [ca.ca_id for ca in ledger.cas()]
    ledger.close()
    monkeypatch.setenv("HOLD_CA_CERT_PATH", str(blocker / "ca.crt"))
    code, _, err = run(capsys, "init", "--home", str(home), "--ocsp-url", "http://127.0.0.1:9/ocsp")
    assert code == 1, err
    after = snapshot(home)
    for changing in ("audit.log", "ledger.sqlite3", "ledger.sqlite3-wal", "ledger.sqlite3-shm"):
        before.pop(changing, None)  # the audit trail of the attempt; SQLite's own pages
        after.pop(changing, None)
    assert after == before
    ledger = SQLiteLedger(home / "ledger.sqlite3")
    try:
        assert [ca.ca_id for ca in ledger.cas()] == cas  # the same CA, no new one
    finally:
        ledger.close()
    assert "HOLD_OCSP_URL" not in (home / "hold.json").read_text()


# --- the ledger is private ------------------------------------------------------------------


def test_the_ledger_and_its_wal_files_are_created_0600(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Old code: ledger.sqlite3 (every DID and certificate issued) was 0644."""
    ledger_path = home / "ledger.sqlite3"
    assert stat.S_IMODE(os.stat(ledger_path).st_mode) == 0o600
    ledger = SQLiteLedger(ledger_path)
    try:
        assert ledger.cas()  # a read: the -wal and -shm files exist while it is open
        for suffix in ("-wal", "-shm"):
            sidecar = ledger_path.with_name(ledger_path.name + suffix)
            assert stat.S_IMODE(os.stat(sidecar).st_mode) == 0o600, suffix
    finally:
        ledger.close()
    fresh = home.parent / "fresh.sqlite3"
    SQLiteLedger(fresh).close()
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o600


# --- warnings ----------------------------------------------------------------------------


def test_a_misspelled_variable_is_warned_about_once(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOLD_LEDGR_PATH", "/somewhere/l.sqlite3")
    monkeypatch.setenv("HOLD_PKCS11_PINN", "s3cret-value-9f2c")
    settings = json.loads((home / "hold.json").read_text())
    settings["HOLD_SUBJET_O"] = "typo in hold.json"
    (home / "hold.json").write_text(json.dumps(settings))
    code, _, err = run(capsys, "crl", "--home", str(home))
    assert code == 0, err  # a warning, not an error
    warnings = [line for line in err.splitlines() if line.startswith("holdca: warning: ")]
    assert sorted(warnings) == [
        "holdca: warning: HOLD_LEDGR_PATH is not a holdca setting (did you mean HOLD_LEDGER_PATH?)",
        "holdca: warning: HOLD_PKCS11_PINN is not a holdca setting (did you mean HOLD_PKCS11_PIN?)",
        "holdca: warning: HOLD_SUBJET_O is not a holdca setting (did you mean HOLD_SUBJECT_O?)",
    ]
    assert "s3cret-value-9f2c" not in err  # values are never shown
    # init gathers the settings several times: still one line per name
    code, _, err = run(capsys, "init", "--home", str(home))
    assert code == 0, err
    assert err.count("HOLD_LEDGR_PATH is not a holdca setting") == 1


def _names_read_by_the_code() -> set[str]:
    """Every string constant ``HOLD_*`` in holdca/ and examples/ (the code is the oracle:
    a name the code reads is such a literal; prose in docstrings is not)."""
    names: set[str] = set()
    for directory in ("holdca", "examples"):
        for path in (ROOT / directory).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and re.fullmatch(r"HOLD_[A-Z0-9]+(?:_[A-Z0-9]+)*", node.value)
                ):
                    names.add(node.value)
    return names


def test_no_name_the_code_reads_is_warned_about() -> None:
    names = _names_read_by_the_code()
    assert {"HOLD_AUDIT_LOG", "HOLD_PKCS11_PIN_FILE", "HOLD_CA_KEY_PASSPHRASE_FILE"} <= names
    assert unknown_settings(dict.fromkeys(names, "")) == []
    assert unknown_settings({"PATH": "/bin", "HOLDCA_HOME": "/x"}) == []  # not HOLD_*


def test_init_without_crl_or_ocsp_url_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "init", "--home", str(tmp_path / "a"), *HOLD)
    assert code == 0, err
    warning = [line for line in err.splitlines() if line.startswith("holdca: warning: ")]
    assert len(warning) == 1, err
    assert "revoked" in warning[0]
    assert "--crl-url" in warning[0]
    assert "--ocsp-url" in warning[0]
    code, _, err = run(capsys, "init", "--home", str(tmp_path / "b"), *HOLD, *CRL_URL)
    assert code == 0, err
    assert "warning" not in err
    code, _, err = run(
        capsys, "init", "--home", str(tmp_path / "c"), *HOLD, "--ocsp-url", "http://h/ocsp"
    )
    assert code == 0, err
    assert "warning" not in err
