"""A CA key on a SoftHSM token issues a leaf, a CRL and an OCSP response openssl accepts."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from holdca.pki import (
    CertStatus,
    RevokedEntry,
    build_crl,
    check_notation_profile,
    issue_root,
    respond_ocsp,
)
from tests.pki.helpers import CA, HOLD_DID, SUBJECT, epoch, make_leaf, openssl, pem


@pytest.mark.hsm
def test_softhsm_ca_issues_leaf_crl_and_ocsp(softhsm: Any, tmp_path: Path, now: datetime) -> None:
    store = softhsm.keystore()
    signer = store.generate(f"pki-ca-{secrets.token_hex(4)}")
    root = CA(signer, issue_root(signer, hold_did=HOLD_DID, subject=SUBJECT, now=now))
    leaf = make_leaf(root, now, crl_url="http://hold.example.com/crl")
    check_notation_profile([leaf, root.cert], now=now)
    crl = build_crl(
        signer,
        root.cert,
        [RevokedEntry(leaf.serial_number, now)],
        crl_number=1,
        this_update=now,
        next_update=now + timedelta(hours=1),
    )
    (tmp_path / "crl.pem").write_bytes(crl.public_bytes(Encoding.PEM))
    out = openssl(
        "verify",
        "-attime",
        epoch(now),
        "-crl_check",
        "-CAfile",
        pem(tmp_path / "root.pem", root.cert),
        "-CRLfile",
        tmp_path / "crl.pem",
        pem(tmp_path / "leaf.pem", leaf),
    )
    assert (
        "certificate revoked" in out.stdout + out.stderr
    )  # i.e. chain and CRL signatures verified
    good = openssl(
        "verify", "-attime", epoch(now), "-CAfile", tmp_path / "root.pem", tmp_path / "leaf.pem"
    )
    assert good.returncode == 0, good.stdout + good.stderr
    req = ocsp.OCSPRequestBuilder().add_certificate(leaf, root.cert, hashes.SHA1()).build()
    der = respond_ocsp(
        req.public_bytes(Encoding.DER),
        status_of=lambda _: CertStatus.good(),
        issuer_cert=root.cert,
        signer=signer,
        now=now,
    )
    (tmp_path / "resp.der").write_bytes(der)
    out = openssl(
        "ocsp",
        "-respin",
        tmp_path / "resp.der",
        "-no_nonce",
        "-issuer",
        tmp_path / "root.pem",
        "-cert",
        tmp_path / "leaf.pem",
        "-CAfile",
        tmp_path / "root.pem",
    )
    assert "Response verify OK" in out.stdout + out.stderr
    assert "leaf.pem: good" in out.stdout
