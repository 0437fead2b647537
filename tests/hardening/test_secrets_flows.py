"""Secrets never leave: whole hold flows, with every log, output, repr and error captured.

The backends' own secret tests (tests/keys/test_secrets.py) drive one key store; these
drive the *hold*: ``HoldConfig.from_env`` -> ``open_hold`` -> cosign, issue, revoke, CRL,
OCSP, rotation, and the failure paths (wrong passphrase or PIN, refused requests), with

* every log record of every logger at DEBUG, the ``holdca.audit`` stream included;
* stdout/stderr at the file-descriptor level (SoftHSM writes there);
* ``repr``/``str`` of the config, the hold, the key store, the signers, the responses, and
  the full traceback text of every error with its causes.

All of it is grepped for the passphrase, the PIN and the CA private key (its scalar in
hex and decimal, its PKCS#8 DER in hex and base64, its PEM body lines).
"""

from __future__ import annotations

import base64
import logging
import traceback
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from holdca.errors import HoldCAError
from holdca.hold import CosignRequest, HoldConfig, open_hold
from holdca.notation import Descriptor
from holdca.testing.atproto import TestRepo
from holdca.testing.network import TestNetwork
from tests.conftest import SoftHSM
from tests.hardening.tally import count

NOW = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
PASSPHRASE = "pp-7d3f0a9c61-hardening"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
BASE_ENV = {
    "HOLD_DID": "did:web:hold-secrets.example.com",
    "HOLD_SUBJECT_C": "US",
    "HOLD_SUBJECT_ST": "CA",
    "HOLD_SUBJECT_O": "Secret Hold",
}


class Seen:
    """Everything a person or a log shipper could see."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def see(self, *objects: object) -> None:
        for obj in objects:
            self.texts += [repr(obj), str(obj)]
            if hasattr(obj, "__dict__"):
                self.texts.append(repr(vars(obj)))

    def attempt(self, call: Callable[[], Any]) -> Any:
        try:
            result = call()
        except HoldCAError as exc:
            self.texts.append("".join(traceback.format_exception(exc)))
            cause: BaseException | None = exc
            while cause is not None:
                self.see(cause)
                cause = cause.__cause__ or cause.__context__
            return exc
        self.see(result)
        return result

    def grep(self, forms: Iterable[str], *extra: str) -> list[str]:
        everything = "\n".join([*self.texts, *extra])
        assert len(everything) > 1000  # something substantial was captured
        return [form for form in forms if form and form in everything]


def key_forms(private_key: Any) -> list[str]:
    """Textual forms of a private key a leak could take."""
    scalar = private_key.private_numbers().private_value
    der = private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return [f"{scalar:x}", str(scalar), der.hex(), base64.b64encode(der).decode()[:40], *body]


def request_for(repo: TestRepo, n: int) -> CosignRequest:
    digest = f"sha256:{n:064x}"
    uri = repo.put_manifest(digest, hold_did=BASE_ENV["HOLD_DID"])
    return CosignRequest(
        did=repo.did,
        descriptor=Descriptor(MANIFEST, digest, 100),
        record_uri=uri,
        proof_hint=repo.get_record_car(uri),
        caller=repo.did,
    )


def drive(seen: Seen, env: dict[str, str], repo: TestRepo) -> Any:
    """Open the hold from ``env`` and run every operation, good and bad."""
    config = seen.attempt(lambda: HoldConfig.from_env(env))
    network = TestNetwork([repo])
    ca = seen.attempt(lambda: open_hold(config, now=NOW, create=True, resolver=network))
    assert not isinstance(ca, HoldCAError), ca
    seen.see(ca, ca.key_store, ca.state().active, ca.state().active.signer, ca.ledger, ca.audit)
    good = request_for(repo, 1)
    response = seen.attempt(lambda: ca.cosign(good, now=NOW))
    assert not isinstance(response, HoldCAError), response
    seen.see(response.record, response.to_json())
    # refused requests: wrong caller, wrong digest, tampered CAR
    seen.attempt(lambda: ca.cosign(CosignRequest(**{**vars(good), "caller": "did:plc:x"}), now=NOW))
    bad_digest = Descriptor(MANIFEST, "sha256:" + "ee" * 32, 100)
    seen.attempt(
        lambda: ca.cosign(CosignRequest(**{**vars(good), "descriptor": bad_digest}), now=NOW)
    )
    assert good.proof_hint is not None
    car = bytearray(good.proof_hint)
    car[-5] ^= 1
    seen.attempt(
        lambda: ca.cosign(CosignRequest(**{**vars(good), "proof_hint": bytes(car)}), now=NOW)
    )
    seen.attempt(lambda: ca.revoke(serial=response.serial, now=NOW, reason="keyCompromise"))
    seen.attempt(lambda: ca.revoke(serial=12345, now=NOW))
    seen.attempt(lambda: ca.crl(NOW + timedelta(minutes=1)))
    req = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(response.certificate, ca.certificate, hashes.SHA1())
        .build()
    )
    seen.attempt(lambda: ca.ocsp(req.public_bytes(serialization.Encoding.DER), now=NOW))
    seen.attempt(lambda: ca.ocsp(b"\x30\x03garbage", now=NOW))
    seen.attempt(lambda: ca.rotate(new_label="hold-root-2", now=NOW + timedelta(hours=1)))
    seen.attempt(lambda: ca.cosign(request_for(repo, 2), now=NOW + timedelta(hours=2)))
    count("secrets.flows")
    return config, ca


def test_pem_passphrase_and_ca_key_never_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    seen = Seen()
    repo = TestRepo.create("plc", "k256", now=NOW)
    env = {
        **BASE_ENV,
        "HOLD_CA_CERT_PATH": str(tmp_path / "ca.crt"),
        "HOLD_CA_KEY_PATH": str(tmp_path / "keys"),
        "HOLD_CA_KEY_PASSPHRASE": PASSPHRASE,
        "HOLD_LEDGER_PATH": str(tmp_path / "ledger.sqlite3"),
    }
    _, ca = drive(seen, env, repo)
    secret_key = ca.key_store.load("hold-root").private_key
    # failure paths: wrong passphrase, passphrase missing, passphrase from a file
    seen.attempt(
        lambda: open_hold(
            HoldConfig.from_env({**env, "HOLD_CA_KEY_PASSPHRASE": PASSPHRASE + "x"}), now=NOW
        )
    )
    no_pass = {k: v for k, v in env.items() if k != "HOLD_CA_KEY_PASSPHRASE"}
    seen.attempt(lambda: open_hold(HoldConfig.from_env(no_pass), now=NOW))
    (tmp_path / "pass.txt").write_text(PASSPHRASE + "\n")
    seen.attempt(
        lambda: HoldConfig.from_env(
            {**env, "HOLD_CA_KEY_PASSPHRASE_FILE": str(tmp_path / "pass.txt")}
        )
    )
    captured = capfd.readouterr()
    audit = [r.getMessage() for r in caplog.records if r.name.startswith("holdca.audit")]
    assert audit, "the audit stream was captured"
    leaks = seen.grep(
        [PASSPHRASE, PASSPHRASE.encode().hex(), *key_forms(secret_key)],
        captured.out,
        captured.err,
        caplog.text,
        *(r.getMessage() for r in caplog.records),
        *audit,
    )
    assert leaks == []


@pytest.mark.hsm
def test_pkcs11_pin_never_shown_in_hold_flows(
    softhsm: SoftHSM,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    seen = Seen()
    repo = TestRepo.create("plc", "p256", now=NOW)
    label = f"secrets-{tmp_path.name[-12:]}".replace("_", "-")
    env = {
        **BASE_ENV,
        "HOLD_CA_CERT_PATH": str(tmp_path / "ca.crt"),
        "HOLD_KEY_BACKEND": "pkcs11",
        "HOLD_PKCS11_MODULE": softhsm.module,
        "HOLD_PKCS11_TOKEN_LABEL": softhsm.token_label,
        "HOLD_PKCS11_PIN": softhsm.pin,
        "HOLD_CA_KEY_LABEL": label,
        "HOLD_LEDGER_PATH": str(tmp_path / "ledger.sqlite3"),
    }
    drive(seen, env, repo)
    seen.attempt(lambda: HoldConfig.from_env({**env, "HOLD_PKCS11_PIN": ""}))
    seen.attempt(
        lambda: open_hold(
            HoldConfig.from_env({**env, "HOLD_PKCS11_TOKEN_LABEL": "no-such-token"}), now=NOW
        )
    )
    captured = capfd.readouterr()
    leaks = seen.grep(
        [softhsm.pin, softhsm.pin.encode().hex()],
        captured.out,
        captured.err,
        caplog.text,
        *(r.getMessage() for r in caplog.records),
    )
    assert leaks == []


def test_grep_finds_a_planted_leak(caplog: pytest.LogCaptureFixture) -> None:
    """The oracle can fail: a secret in a log record or an error text is found."""
    caplog.set_level(logging.DEBUG)
    seen = Seen()
    seen.see("x" * 2000)
    logging.getLogger("holdca.audit").info("passphrase=%s", PASSPHRASE)
    seen.attempt(lambda: (_ for _ in ()).throw(HoldCAError(f"pin {PASSPHRASE[::-1]}")))
    assert seen.grep([PASSPHRASE], caplog.text) == [PASSPHRASE]
    assert seen.grep([PASSPHRASE[::-1]]) == [PASSPHRASE[::-1]]
