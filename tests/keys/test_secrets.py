"""PINs and passphrases never show: not in logs, output, reprs or exception texts.

Each test drives a backend through its normal and failing paths with every log record
captured (DEBUG, all loggers), stdout/stderr captured at the file-descriptor level (so
SoftHSM's own output counts), and the repr, str and full traceback text of every error
and object collected; then it greps all of it for the secret.
"""

from __future__ import annotations

import logging
import pickle
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from holdca.errors import HoldCAError
from holdca.keys import SignatureAlgorithm
from holdca.keys._secret import Secret
from holdca.keys.pem import PEMKeyStore
from tests.conftest import SoftHSM

PASSPHRASE = b"pass-4f1c9e7d2b-phrase"


class Collector:
    """Everything a person or a log shipper could see."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def see(self, *objects: object) -> None:
        for obj in objects:
            self.texts.append(repr(obj))
            self.texts.append(str(obj))
            if hasattr(obj, "__dict__"):
                self.texts.append(repr(vars(obj)))

    def attempt(self, call: Callable[[], object]) -> object:
        try:
            result = call()
        except HoldCAError as exc:
            self.texts.append("".join(traceback.format_exception(exc)))
            self.see(exc)
            cause = exc.__cause__ or exc.__context__
            while cause is not None:
                self.see(cause)
                cause = cause.__cause__ or cause.__context__
            return exc
        self.see(result)
        return result

    def assert_hidden(self, secret: str, captured: str, caplog: pytest.LogCaptureFixture) -> None:
        everything = "\n".join(
            [*self.texts, captured, caplog.text, *(r.getMessage() for r in caplog.records)]
        )
        assert everything  # something was captured at all
        for form in (secret, secret.encode().hex(), repr(secret.encode())):
            assert form not in everything


def test_secret_holder() -> None:
    """Secret: repr/str redacted, not picklable, compares in constant time."""
    s = Secret(b"hunter2-abc")
    assert "hunter2" not in repr(s) + str(s) + f"{s}" + f"{s!r}"
    with pytest.raises(TypeError):
        pickle.dumps(s)
    assert s.matches(Secret(b"hunter2-abc"))
    assert not s.matches(Secret(b"hunter2-abd"))
    assert s.reveal() == b"hunter2-abc"
    with pytest.raises(TypeError):
        Secret("text")  # type: ignore[arg-type]


def test_pem_passphrase_never_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Generate/load/sign with a passphrase, plus wrong, missing and extra passphrases."""
    caplog.set_level(logging.DEBUG)
    c = Collector()
    store = PEMKeyStore(tmp_path / "k", passphrase=PASSPHRASE)
    c.see(store)
    signer = c.attempt(lambda: store.generate("a", SignatureAlgorithm.ES384))
    c.see(signer)
    c.attempt(lambda: store.load("a"))
    c.attempt(lambda: PEMKeyStore(tmp_path / "k", passphrase=PASSPHRASE + b"x").load("a"))
    c.attempt(lambda: PEMKeyStore(tmp_path / "k").load("a"))
    PEMKeyStore(tmp_path / "plain").generate("p")
    c.attempt(lambda: PEMKeyStore(tmp_path / "plain", passphrase=PASSPHRASE).load("p"))
    (tmp_path / "k" / "a.pem").write_bytes(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA==\n")
    c.attempt(lambda: store.load("a"))
    (tmp_path / "k" / "a.pem").chmod(0o644)
    c.attempt(lambda: store.load("a"))
    c.attempt(lambda: store.generate("a"))
    captured = capfd.readouterr()
    c.assert_hidden(PASSPHRASE.decode(), captured.out + captured.err, caplog)


@pytest.mark.hsm
def test_pkcs11_pin_never_shown(
    softhsm: SoftHSM,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Open, generate, sign, recover (re-login), and the error paths: the PIN stays hidden."""
    caplog.set_level(logging.DEBUG)
    c = Collector()
    store: Any = c.attempt(softhsm.keystore)
    c.see(store, store._token, store._module)
    signer: Any = c.attempt(lambda: store.generate("secrets-test"))
    try:
        c.see(signer, signer.sign(b"x"))
        store._token.close_all_sessions()
        c.attempt(lambda: signer.sign(b"after reset"))  # logs the re-login
        assert store._token.relogins >= 1
        c.attempt(lambda: type(store)(softhsm.module, softhsm.token_label, softhsm.pin + "1"))
        c.attempt(lambda: type(store)(softhsm.module, "missing-token", softhsm.pin))
        c.attempt(lambda: type(store)("/nonexistent/module.so", "t", softhsm.pin))
        c.attempt(lambda: store.load("missing-key"))
        c.attempt(lambda: store.generate("secrets-test"))
        store._token.close_all_sessions()
        monkeypatch.setattr(store._token, "pin", Secret(b"999999"))
        c.attempt(lambda: signer.sign(b"bad relogin"))
        monkeypatch.undo()
        c.attempt(lambda: signer.sign(b"good relogin"))
    finally:
        store.delete("secrets-test")
    captured = capfd.readouterr()
    c.assert_hidden(softhsm.pin, captured.out + captured.err, caplog)
    assert any("logging in" in r.getMessage() for r in caplog.records)  # logs were captured


def test_collector_catches_a_leak(caplog: pytest.LogCaptureFixture) -> None:
    """The oracle of this module can fail: a secret in a log line or a repr is found."""
    c = Collector()
    c.see("nothing to see")
    c.assert_hidden("s3cr3t-value", "", caplog)
    logging.getLogger("holdca.test").warning("pin is %s", "s3cr3t-value")
    with pytest.raises(AssertionError):
        c.assert_hidden("s3cr3t-value", "", caplog)
    c2 = Collector()
    c2.see(ValueError(b"s3cr3t-value"))
    with pytest.raises(AssertionError):
        c2.assert_hidden("s3cr3t-value", "", caplog)
