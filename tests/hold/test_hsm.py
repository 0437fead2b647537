"""A hold whose CA key lives on a PKCS#11 token (SoftHSM), configured from HOLD_* variables."""

from __future__ import annotations

import logging
import secrets
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from holdca.hold import AllowAllAuthorizer, HoldConfig, open_hold
from tests.hold.conftest import HOLD_DID, NOW, make_world

pytestmark = pytest.mark.hsm


def test_hold_on_softhsm_from_env(
    softhsm: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text(softhsm.pin + "\n")
    label = f"hold-root-{secrets.token_hex(4)}"
    config = HoldConfig.from_env(
        {
            "HOLD_DID": HOLD_DID,
            "HOLD_SUBJECT_C": "US",
            "HOLD_SUBJECT_ST": "CA",
            "HOLD_SUBJECT_O": "HSM Hold",
            "HOLD_KEY_BACKEND": "pkcs11",
            "HOLD_PKCS11_MODULE": softhsm.module,
            "HOLD_PKCS11_TOKEN_LABEL": softhsm.token_label,
            "HOLD_PKCS11_PIN_FILE": str(pin_file),
            "HOLD_CA_KEY_LABEL": label,
            "HOLD_CA_CERT_PATH": str(tmp_path / "ca.crt"),
            "HOLD_CRL_ENABLED": "true",
            "HOLD_CRL_URL": "http://hold.example.com/ca.crl",
        }
    )
    world = make_world(tmp_path / "w")
    with caplog.at_level(logging.DEBUG):
        ca = open_hold(
            config, now=NOW, create=True, authorizer=AllowAllAuthorizer(), resolver=world.net
        )
        root = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
        assert root == ca.certificate
        root.verify_directly_issued_by(root)  # self-signed by the key on the token
        serials: list[int] = []
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                for _ in range(3):
                    serials.append(ca.cosign(world.request(caller=None), now=NOW).serial)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(set(serials)) == 24 == ca.ledger.count()
        for serial in serials:
            row = ca.ledger.get(serial)
            assert row is not None
            x509.load_der_x509_certificate(row.certificate_der).verify_directly_issued_by(root)
        ca.revoke(serial=serials[0], now=NOW)
        crl = ca.crl(NOW)
        assert crl.is_signature_valid(root.public_key())  # type: ignore[arg-type]
        # a second start loads the same key from the token and the same certificate
        again = open_hold(config, now=NOW)
        assert again.certificate == root
    text = "\n".join(r.getMessage() for r in caplog.records) + repr(config) + repr(ca)
    assert softhsm.pin not in text
    ca.ledger.close()
