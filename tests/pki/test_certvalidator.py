"""pyhanko-certvalidator validates holdca chains, with revocation from our CRLs and OCSP."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import PathValidationError, RevokedError

from holdca.keys import MemorySigner
from holdca.pki import (
    CertStatus,
    RevokedEntry,
    build_crl,
    issue_intermediate,
    issue_ocsp_responder,
    respond_ocsp,
)
from tests.pki.helpers import CA, HOLD_DID, SUBJECT, make_leaf, make_root


def asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))


def validate(
    leaf: x509.Certificate,
    chain: list[x509.Certificate],
    root: x509.Certificate,
    moment: datetime,
    *,
    crls: Sequence[bytes] = (),
    ocsps: Sequence[bytes] = (),
) -> None:
    ctx = ValidationContext(
        trust_roots=[asn1(root)],
        other_certs=[asn1(c) for c in chain],
        moment=moment,
        allow_fetching=False,
        crls=list(crls),
        ocsps=list(ocsps),
        revocation_mode="hard-fail",
    )
    validator = CertificateValidator(asn1(leaf), validation_context=ctx)
    asyncio.run(
        validator.async_validate_usage({"digital_signature"}, extended_key_usage={"code_signing"})
    )


def ocsp_for(
    leaf: x509.Certificate,
    ca: CA,
    now: datetime,
    status: CertStatus,
    *,
    responder: tuple[MemorySigner, x509.Certificate] | None = None,
) -> bytes:
    req = ocsp.OCSPRequestBuilder().add_certificate(leaf, ca.cert, hashes.SHA1()).build()
    signer, cert = responder if responder else (ca.signer, None)
    der = respond_ocsp(
        req.public_bytes(Encoding.DER),
        status_of=lambda _: status,
        issuer_cert=ca.cert,
        signer=signer,
        responder_cert=cert,
        now=now,
    )
    assert ocsp.load_der_ocsp_response(der).response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    return der


def crl_of(ca: CA, now: datetime, *serials: int, number: int = 1) -> bytes:
    crl = build_crl(
        ca.signer,
        ca.cert,
        [RevokedEntry(s, now - timedelta(minutes=1)) for s in serials],
        crl_number=number,
        this_update=now,
        next_update=now + timedelta(hours=1),
    )
    return crl.public_bytes(Encoding.DER)


def test_crl_good_and_revoked(root: CA, now: datetime) -> None:
    good = make_leaf(root, now, crl_url="http://hold.example.com/crl")
    bad = make_leaf(root, now, crl_url="http://hold.example.com/crl")
    crl = crl_of(root, now, bad.serial_number)
    moment = now + timedelta(minutes=10)
    validate(good, [], root.cert, moment, crls=[crl])
    with pytest.raises(RevokedError):
        validate(bad, [], root.cert, moment, crls=[crl])


def test_crl_is_required_in_hard_fail_mode(root: CA, now: datetime) -> None:
    leaf = make_leaf(root, now, crl_url="http://hold.example.com/crl")
    with pytest.raises(PathValidationError):
        validate(
            leaf, [], root.cert, now + timedelta(minutes=10)
        )  # no CRL supplied: the oracle says no


def test_stale_crl_is_not_accepted(root: CA, now: datetime) -> None:
    leaf = make_leaf(root, now, crl_url="http://hold.example.com/crl")
    with pytest.raises(PathValidationError):
        validate(leaf, [], root.cert, now + timedelta(hours=3), crls=[crl_of(root, now)])


def test_ocsp_good_and_revoked(root: CA, now: datetime) -> None:
    good = make_leaf(root, now, ocsp_url="http://hold.example.com/ocsp")
    bad = make_leaf(root, now, ocsp_url="http://hold.example.com/ocsp")
    moment = now + timedelta(minutes=10)
    validate(good, [], root.cert, moment, ocsps=[ocsp_for(good, root, now, CertStatus.good())])
    revoked = CertStatus.revoked(now - timedelta(minutes=1), x509.ReasonFlags.key_compromise)
    with pytest.raises(RevokedError):
        validate(bad, [], root.cert, moment, ocsps=[ocsp_for(bad, root, now, revoked)])


def test_ocsp_delegated_responder(root: CA, now: datetime) -> None:
    signer = MemorySigner.generate()
    responder = issue_ocsp_responder(
        root.signer, root.cert, signer.public_key, subject=SUBJECT, now=now
    )
    good = make_leaf(root, now, ocsp_url="http://hold.example.com/ocsp")
    bad = make_leaf(root, now, ocsp_url="http://hold.example.com/ocsp")
    moment = now + timedelta(minutes=10)
    validate(
        good,
        [],
        root.cert,
        moment,
        ocsps=[ocsp_for(good, root, now, CertStatus.good(), responder=(signer, responder))],
    )
    revoked = CertStatus.revoked(now - timedelta(minutes=1))
    with pytest.raises(RevokedError):
        validate(
            bad,
            [],
            root.cert,
            moment,
            ocsps=[ocsp_for(bad, root, now, revoked, responder=(signer, responder))],
        )


def test_ocsp_from_a_stranger_is_not_accepted(root: CA, now: datetime) -> None:
    stranger = make_root(now)
    leaf = make_leaf(root, now, ocsp_url="http://hold.example.com/ocsp")
    req = ocsp.OCSPRequestBuilder().add_certificate(leaf, root.cert, hashes.SHA1()).build()
    der = respond_ocsp(
        req.public_bytes(Encoding.DER),
        status_of=lambda _: CertStatus.good(),
        issuer_cert=root.cert,
        signer=stranger.signer,
        now=now,
    )
    with pytest.raises(PathValidationError):
        validate(leaf, [], root.cert, now + timedelta(minutes=10), ocsps=[der])


def test_intermediate_chain_with_crls(root: CA, now: datetime) -> None:
    inter_signer = MemorySigner.generate()
    inter = CA(
        inter_signer,
        issue_intermediate(
            root.signer,
            root.cert,
            inter_signer.public_key,
            hold_did=HOLD_DID,
            subject=SUBJECT,
            now=now,
        ),
    )
    leaf = make_leaf(inter, now, crl_url="http://hold.example.com/inter.crl")
    moment = now + timedelta(minutes=10)
    root_crl = crl_of(root, now)
    validate(leaf, [inter.cert], root.cert, moment, crls=[root_crl, crl_of(inter, now)])
    with pytest.raises(RevokedError):
        validate(
            leaf,
            [inter.cert],
            root.cert,
            moment,
            crls=[root_crl, crl_of(inter, now, leaf.serial_number)],
        )
