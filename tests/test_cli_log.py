"""``holdca init --log``, ``holdca log vkey`` and the ``HOLD_LOG_*`` settings (issue 15).

Oracles: openssl reads the log key file (an Ed25519 key whose public half the verifier key
must carry), hashlib gives the empty tree's root, the checkpoint is opened with the
verifier key the command printed, and the file system shows what was (not) created.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from holdca.errors import ConfigError
from holdca.hold.config import KNOWN_VARIABLES, HoldConfig
from holdca.tlog import Ed25519NoteVerifier, open_checkpoint
from tests.cli_helpers import clean_environment, run, run_json
from tests.tools import require_tool

HOLD_DID = "did:web:hold.log-test.example.com"
HOLD = ["--did", HOLD_DID, "--country", "US", "--state", "CA", "--org", "Log Test Hold"]
ORIGIN = "hold.log-test.example.com/log"


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_environment(monkeypatch)


def _init(capsys: pytest.CaptureFixture[str], home: Path, *extra: str) -> dict[str, object]:
    return run_json(capsys, "init", "--home", str(home), *HOLD, "--log", *extra)


def _pub(tmp_path: Path) -> Path:
    path = tmp_path / "pub.pem"
    require_tool("openssl")
    key = tmp_path / "k.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", str(key)], check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def _issued(home: Path) -> int:
    """Certificates in the ledger, read with sqlite3 itself."""
    with contextlib.closing(sqlite3.connect(home / "ledger.sqlite3")) as db:
        (count,) = db.execute("SELECT count(*) FROM issuance").fetchone()
    return int(count)


def test_init_log_creates_the_key_the_directory_and_an_empty_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_tool("openssl")
    home = tmp_path / "hold"
    data = _init(capsys, home)
    vkey = str(data["logVkey"])
    assert data["logOrigin"] == ORIGIN
    stored = json.loads((home / "hold.json").read_text(encoding="utf-8"))
    assert Path(stored["HOLD_LOG_DIR"]) == (home / "log").absolute()
    assert data["logDir"] == stored["HOLD_LOG_DIR"]
    # the key file is an Ed25519 key (openssl), and the vkey carries its public half
    der = subprocess.run(
        ["openssl", "pkey", "-in", str(home / "keys" / "hold-log.pem"), "-pubout",
         "-outform", "DER"], check=True, capture_output=True,
    ).stdout  # fmt: skip
    text = subprocess.run(
        ["openssl", "pkey", "-in", str(home / "keys" / "hold-log.pem"), "-noout", "-text_pub"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "ED25519" in text.upper()
    name, _, blob = vkey.split("+", 2)
    assert name == ORIGIN
    assert base64.b64decode(blob) == b"\x01" + der[-32:]
    # the checkpoint: size 0, root SHA-256(""), signed by that key
    note = (home / "log" / "checkpoint").read_bytes()
    checkpoint, _ = open_checkpoint(note, [Ed25519NoteVerifier.from_vkey(vkey)], origin=ORIGIN)
    assert checkpoint.size == 0
    assert checkpoint.root == hashlib.sha256(b"").digest()
    # the text output shows the key too; `holdca log vkey` prints the same one later
    code, out, _ = run(capsys, "init", "--home", str(home))
    assert code == 0
    assert vkey in out
    code, out, err = run(capsys, "log", "vkey", "--home", str(home))
    assert code == 0, err
    assert out.strip() == vkey
    shown = run_json(capsys, "log", "vkey", "--home", str(home))
    assert shown == {"vkey": vkey, "origin": ORIGIN, "logDir": stored["HOLD_LOG_DIR"]}
    # init again: idempotent, the same key and checkpoint
    assert _init(capsys, home)["logVkey"] == vkey
    assert (home / "log" / "checkpoint").read_bytes() == note


def test_an_issuance_is_published_before_the_command_returns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "hold"
    vkey = str(_init(capsys, home)["logVkey"])
    code, _, err = run(
        capsys, "issue", "--home", str(home), "--did", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa",
        "--public-key", str(_pub(tmp_path)),
    )  # fmt: skip
    assert code == 0, err
    note = (home / "log" / "checkpoint").read_bytes()
    checkpoint, _ = open_checkpoint(note, [Ed25519NoteVerifier.from_vkey(vkey)], origin=ORIGIN)
    assert checkpoint.size == 1
    assert (home / "log" / "tile" / "entries" / "000.p" / "1").is_file()


def test_without_init_a_missing_log_directory_or_key_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "hold"
    _init(capsys, home)
    pub = str(_pub(tmp_path))
    issue = ["issue", "--home", str(home), "--did", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"]
    stored = json.loads((home / "hold.json").read_text(encoding="utf-8"))
    assert _issued(home) == 0

    # a mistyped log directory: refused, and not created
    typo = tmp_path / "lgo"
    stored_typo = {**stored, "HOLD_LOG_DIR": str(typo)}
    (home / "hold.json").write_text(json.dumps(stored_typo), encoding="utf-8")
    code, _, err = run(capsys, *issue, "--public-key", pub)
    assert code == 2
    assert "HOLD_LOG_DIR" in err
    assert str(typo) in err
    assert not typo.exists()
    assert len(err.strip().splitlines()) == 1
    # a directory without a checkpoint
    typo.mkdir()
    code, _, err = run(capsys, *issue, "--public-key", pub)
    assert code == 2
    assert "HOLD_LOG_DIR" in err
    assert not (typo / "checkpoint").exists()

    # the key is gone: refused, nothing is generated
    (home / "hold.json").write_text(json.dumps(stored), encoding="utf-8")
    (home / "keys" / "hold-log.pem").unlink()
    for argv in ([*issue, "--public-key", pub], ["log", "vkey", "--home", str(home)]):
        code, _, err = run(capsys, *argv)
        assert code == 2, argv
        assert "HOLD_LOG_KEY_LABEL" in err
        assert "Traceback" not in err
        assert not (home / "keys" / "hold-log.pem").exists()
    assert _issued(home) == 0  # nothing was issued


def test_a_changed_origin_or_a_foreign_checkpoint_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "hold"
    _init(capsys, home)
    monkeypatch.setenv("HOLD_LOG_ORIGIN", "other.example.com/log")
    pub = str(_pub(tmp_path))
    code, _, err = run(
        capsys, "issue", "--home", str(home), "--did", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa",
        "--public-key", pub,
    )  # fmt: skip
    assert code == 2
    assert "HOLD_LOG_ORIGIN" in err
    monkeypatch.delenv("HOLD_LOG_ORIGIN")
    other = tmp_path / "other"
    _init(capsys, other)
    (home / "log" / "checkpoint").write_bytes((other / "log" / "checkpoint").read_bytes())
    code, _, err = run(capsys, "crl", "--home", str(home))
    assert code == 2
    assert "HOLD_LOG_DIR" in err


def test_a_did_plc_hold_needs_an_origin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "plc"
    plc = ["--did", "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb", "--country", "US", "--state", "CA",
           "--org", "Plc Hold"]  # fmt: skip
    code, _, err = run(capsys, "init", "--home", str(home), *plc, "--log")
    assert code == 2
    assert "HOLD_LOG_ORIGIN" in err
    assert not home.exists()  # validated before anything was written
    data = run_json(
        capsys, "init", "--home", str(home), *plc, "--log", "--log-origin", "logs.example.org/h1"
    )
    assert data["logOrigin"] == "logs.example.org/h1"
    note = (home / "log" / "checkpoint").read_text(encoding="utf-8")
    assert note.splitlines()[0] == "logs.example.org/h1"


@pytest.mark.parametrize(
    "origin", ["https://hold.example.com/log", "hold example/log", "a+b/log", "h\u00e9/log"]
)
def test_a_bad_origin_is_refused_before_anything_is_written(
    origin: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "hold"
    code, _, err = run(capsys, "init", "--home", str(home), *HOLD, "--log", "--log-origin", origin)
    assert code == 2
    assert "HOLD_LOG_ORIGIN" in err
    assert not home.exists()


def test_log_without_a_place_for_it_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "init", "--log")
    assert code == 2
    assert "--log" in err


def test_the_log_settings(tmp_path: Path) -> None:
    base = {
        "HOLD_DID": HOLD_DID,
        "HOLD_SUBJECT_C": "US",
        "HOLD_SUBJECT_ST": "CA",
        "HOLD_SUBJECT_O": "Test",
    }
    assert {"HOLD_LOG_DIR", "HOLD_LOG_KEY_LABEL", "HOLD_LOG_ORIGIN"} <= KNOWN_VARIABLES
    config = HoldConfig.from_env({**base, "HOLD_LOG_DIR": str(tmp_path)})
    assert (config.log_dir, config.log_key_label) == (tmp_path, "hold-log")
    assert config.effective_log_origin == ORIGIN
    assert HoldConfig.from_env(base).log_dir is None
    with pytest.raises(ConfigError, match="HOLD_LOG_KEY_LABEL"):
        HoldConfig.from_env({**base, "HOLD_LOG_KEY_LABEL": "hold-root"})
    with pytest.raises(ConfigError, match="HOLD_LOG_KEY_LABEL"):
        HoldConfig.from_env({**base, "HOLD_LOG_KEY_LABEL": "../x"})
    pkcs11 = {
        "HOLD_KEY_BACKEND": "pkcs11",
        "HOLD_PKCS11_MODULE": "/usr/lib/softhsm/libsofthsm2.so",
        "HOLD_PKCS11_TOKEN_LABEL": "t",
        "HOLD_PKCS11_PIN": "1234",
    }
    HoldConfig.from_env({**base, **pkcs11})  # no log: fine
    # A pkcs11 hold keeps its log key on the token (holdca.keys.pkcs11_ed25519).
    on_token = HoldConfig.from_env({**base, **pkcs11, "HOLD_LOG_DIR": str(tmp_path)})
    assert (on_token.key_backend, on_token.log_dir) == ("pkcs11", tmp_path)
