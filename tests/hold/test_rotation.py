"""Root rotation: cross-signing, chains during and after the grace period, persistence."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from holdca.errors import AuthenticityError, ConfigError
from holdca.hold import HoldCA
from holdca.notation.trustpolicy import hold_trust_policy
from holdca.notation.truststore import TrustStore
from holdca.notation.verify import verify_envelope
from holdca.pki import check_notation_profile
from tests.hold.conftest import HOLD_DID, NOW, SUBJECT, World


def _verify(
    world: World, envelope: bytes, roots: list[x509.Certificate], when: datetime = NOW
) -> None:
    verify_envelope(
        envelope,
        statement=hold_trust_policy(store="hold", revocation="skip").applicable("local/x"),
        trust_store=TrustStore({("ca", "hold"): roots}),
        now=when + timedelta(minutes=1),
        descriptor=world.image,
    )


def test_rotation_grace_period_and_retirement(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    old_root = world.ca.certificate
    before = world.ca.cosign(world.request(), now=NOW)
    with caplog.at_level(logging.INFO, logger="holdca.audit"):
        result = world.ca.rotate(new_label="hold-root-2", now=NOW + timedelta(hours=1))
    assert result.old_root == old_root
    assert world.ca.certificate == result.new_root
    assert result.retire_at == NOW + timedelta(hours=1, days=30)
    # cryptography as oracle: the cross-certificates are signed by the other root
    result.new_by_old.verify_directly_issued_by(old_root)
    result.old_by_new.verify_directly_issued_by(result.new_root)
    assert result.new_by_old.public_key() == result.new_root.public_key()

    during = world.ca.cosign(world.request(), now=NOW + timedelta(hours=2))
    assert during.chain[1:] == (result.new_by_old, old_root)
    during.chain[0].verify_directly_issued_by(result.new_root)
    check_notation_profile(list(during.chain), now=NOW + timedelta(hours=2))
    # relying parties that trust only the old root, or the bundle, still verify
    _verify(world, during.envelope, [old_root], NOW + timedelta(hours=2))
    bundle = world.ca.trust_bundle(NOW + timedelta(hours=2))
    assert bundle == [result.new_root, old_root]
    _verify(world, during.envelope, bundle, NOW + timedelta(hours=2))
    # a certificate issued before the rotation is still answered by the old CA
    req = ocsp.OCSPRequestBuilder().add_certificate(before.certificate, old_root, hashes.SHA1())
    resp = ocsp.load_der_ocsp_response(
        world.ca.ocsp(req.build().public_bytes(serialization.Encoding.DER), now=NOW)
    )
    assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert resp.signature_hash_algorithm is not None
    old_crl = world.ca.crl(NOW + timedelta(hours=2), ca_id=world.ca.state().published[0].ca_id)
    assert old_crl.is_signature_valid(old_root.public_key())  # type: ignore[arg-type]
    # no second rotation during the grace period
    with pytest.raises(ConfigError, match="grace period"):
        world.ca.rotate(new_label="hold-root-3", now=NOW + timedelta(hours=3))

    # after the grace period: the old root is retired, leaves chain to the new root
    later = result.retire_at + timedelta(seconds=1)
    after = world.ca.cosign(world.request(), now=later)
    assert after.chain[1:] == (result.new_root,)
    assert world.ca.trust_bundle(later) == [result.new_root]
    _verify(world, after.envelope, [result.new_root], later)
    with pytest.raises(AuthenticityError):
        _verify(world, after.envelope, [old_root], later)
    events = [json.loads(r.getMessage())["event"] for r in caplog.records]
    assert "rotated" in events


def test_rotation_survives_a_restart(world: World, tmp_path: Path) -> None:
    result = world.ca.rotate(new_label="hold-root-2", now=NOW)
    reopened = HoldCA.open(world.store, world.ledger, hold_did=HOLD_DID, subject=SUBJECT, now=NOW)
    assert reopened.certificate == result.new_root
    state = reopened.state(NOW)
    assert [ca.certificate for ca in state.published] == [result.old_root]
    assert state.chain_suffix == (result.new_by_old, result.old_root)
    reopened.retire(NOW + timedelta(days=1))
    again = HoldCA.open(world.store, world.ledger, hold_did=HOLD_DID, subject=SUBJECT, now=NOW)
    assert again.state().published == ()
    # rotation again is now allowed, and the new root gets a distinct name
    second = again.rotate(new_label="hold-root-3", now=NOW + timedelta(days=2))
    names = {second.new_root.subject, result.new_root.subject, result.old_root.subject}
    assert len(names) == 3


def test_a_retirement_due_while_the_ledger_is_locked_does_not_fail_readers(
    tmp_path: Path,
) -> None:
    """The first request after the grace period retires the old root (a ledger write);
    with another process holding the write lock, OCSP and CRL still answer."""
    import sqlite3  # noqa: PLC0415

    from holdca.hold import SQLiteLedger  # noqa: PLC0415
    from tests.hold.conftest import make_world  # noqa: PLC0415

    w = make_world(tmp_path, ledger=SQLiteLedger(tmp_path / "l.sqlite3", busy_timeout=0.2))
    leaf = w.ca.cosign(w.request(), now=NOW).certificate
    w.ca.rotate(new_label="hold-root-2", now=NOW + timedelta(hours=1), grace=timedelta(days=1))
    issuer = w.ca.state().published[0].certificate
    req = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
    der = req.public_bytes(serialization.Encoding.DER)
    assert w.ca.crl_der(NOW + timedelta(hours=2))
    path = w.ledger.path  # type: ignore[attr-defined]
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        later = NOW + timedelta(days=2)  # the grace period is over
        answer = ocsp.load_der_ocsp_response(w.ca.ocsp(der, now=later))
        assert answer.response_status in (
            ocsp.OCSPResponseStatus.SUCCESSFUL,
            ocsp.OCSPResponseStatus.UNAUTHORIZED,  # once retired, the old CA is not served
        )
        assert w.ca.state(later).published  # not retired yet: the write could not happen
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not w.ca.state(NOW + timedelta(days=2)).published  # retired on the next call


def test_a_retired_ca_still_answers_for_its_certificates(world: World) -> None:
    """Revoking a pre-rotation leaf after retirement: OCSP says revoked, the old root's
    CRL lists it (issue 17: revocation data stays answerable)."""
    old_root = world.ca.certificate
    before = world.ca.cosign(world.request(), now=NOW).certificate
    world.ca.rotate(new_label="hold-root-2", now=NOW + timedelta(hours=1), grace=timedelta(days=1))
    later = NOW + timedelta(days=2)
    state = world.ca.state(later)
    assert not state.published  # retired
    assert [ca.certificate for ca in state.former] == [old_root]
    assert old_root not in world.ca.trust_bundle(later)
    world.ca.revoke(serial=before.serial_number, reason="keyCompromise", now=later)
    req = ocsp.OCSPRequestBuilder().add_certificate(before, old_root, hashes.SHA1()).build()
    answer = ocsp.load_der_ocsp_response(
        world.ca.ocsp(req.public_bytes(serialization.Encoding.DER), now=later)
    )
    assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert answer.signature_hash_algorithm is not None
    old_root.public_key().verify(  # type: ignore[union-attr,call-arg]
        answer.signature, answer.tbs_response_bytes, ec.ECDSA(answer.signature_hash_algorithm)
    )
    crl = world.ca.crl(later, ca_id=state.former[0].ca_id)
    assert crl.is_signature_valid(old_root.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(before.serial_number) is not None
