"""pyhanko-certvalidator (an independent validator) on what a HoldCA issues and publishes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import RevokedError

from tests.hold.conftest import NOW, World, make_world

URLS = {"crl_url": "http://hold.example.com/ca.crl", "ocsp_url": "http://hold.example.com/ocsp"}


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))


def _validate(
    chain: Sequence[x509.Certificate],
    root: x509.Certificate,
    moment: datetime,
    *,
    crls: Sequence[bytes] = (),
    ocsps: Sequence[bytes] = (),
) -> None:
    ctx = ValidationContext(
        trust_roots=[_asn1(root)],
        other_certs=[_asn1(c) for c in chain[1:]],
        moment=moment,
        allow_fetching=False,
        crls=list(crls),
        ocsps=list(ocsps),
        revocation_mode="hard-fail",
    )
    validator = CertificateValidator(_asn1(chain[0]), validation_context=ctx)
    asyncio.run(
        validator.async_validate_usage({"digital_signature"}, extended_key_usage={"code_signing"})
    )


def _ocsp(world: World, leaf: x509.Certificate, issuer: x509.Certificate, now: datetime) -> bytes:
    req = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
    return world.ca.ocsp(req.public_bytes(Encoding.DER), now=now)


@pytest.mark.parametrize("source", ["crl", "ocsp"])
def test_hold_revocation_seen_by_certvalidator(tmp_path: Path, source: str) -> None:
    w = make_world(tmp_path, **URLS)
    resp = w.ca.cosign(w.request(), now=NOW)
    root = w.ca.root_certificate
    at = NOW + timedelta(minutes=1)

    def evidence() -> dict[str, list[bytes]]:
        if source == "crl":
            return {"crls": [w.ca.crl(at).public_bytes(Encoding.DER)]}
        return {"ocsps": [_ocsp(w, resp.certificate, resp.chain[1], at)]}

    _validate(resp.chain, root, at, **evidence())
    w.ca.revoke(serial=resp.serial, reason="keyCompromise", now=NOW)
    with pytest.raises(RevokedError):
        _validate(resp.chain, root, at, **evidence())


def test_rotation_chain_validates_against_the_old_root(tmp_path: Path) -> None:
    w = make_world(tmp_path, **URLS)
    old_root = w.ca.certificate
    w.ca.rotate(new_label="hold-root-2", now=NOW)
    resp = w.ca.cosign(w.request(), now=NOW + timedelta(minutes=1))
    assert len(resp.chain) == 3
    at = NOW + timedelta(minutes=2)
    # leaf -> cross(new by old) -> old root; the new key signs the leaf's CRL and OCSP,
    # and the cross-certificate (it names the old root's CRL) is checked on that CRL
    old_id = w.ca.state(at).published[0].ca_id
    old_crl = w.ca.crl(at, ca_id=old_id).public_bytes(Encoding.DER)
    _validate(
        resp.chain,
        old_root,
        at,
        ocsps=[_ocsp(w, resp.certificate, resp.chain[1], at)],
        crls=[old_crl],
    )
    # and the new root alone validates the same leaf through the bundle
    _validate(
        [resp.certificate, w.ca.certificate],
        w.ca.certificate,
        at,
        crls=[w.ca.crl(at).public_bytes(Encoding.DER)],
    )
