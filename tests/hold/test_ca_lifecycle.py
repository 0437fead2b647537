"""CA lifecycle (issue 17): rotation near expiry, per-CA CRL URLs, intermediate rotation,
an offline root, another process's rotation, keyCompromise entries that stay listed."""

from __future__ import annotations

import base64
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from holdca.demo import notation_verify
from holdca.errors import KeyNotFoundError
from holdca.hold import AllowAllAuthorizer, HoldCA, SQLiteLedger
from holdca.hold.castate import ca_id_of, crl_url_for
from holdca.keys.pem import PEMKeyStore
from holdca.notation.trustpolicy import hold_trust_policy
from holdca.notation.truststore import write_trust_policy, write_trust_store
from holdca.pki import check_notation_profile
from tests.hold.conftest import HOLD_DID, NOW, SUBJECT, make_world
from tests.hold.served import auth, body, serve_hold, user
from tests.tools import require_notation

CRL = "http://hold.example.com/ca.crl"
OCSP = "http://hold.example.com/ocsp"
URL = "/xrpc/io.atcr.hold.coSignManifest"


def _cdp(cert: x509.Certificate) -> list[str]:
    points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    return [str(name.value) for point in points for name in point.full_name or []]


def _ocsp_status(ca: HoldCA, leaf: x509.Certificate, issuer: x509.Certificate) -> object:
    req = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
    answer = ocsp.load_der_ocsp_response(
        ca.ocsp(req.public_bytes(serialization.Encoding.DER), now=datetime.now(UTC))
    )
    assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.signature_hash_algorithm is not None
    issuer.public_key().verify(  # type: ignore[union-attr,call-arg]
        answer.signature, answer.tbs_response_bytes, ec.ECDSA(answer.signature_hash_algorithm)
    )
    return answer.certificate_status


# ------------------------------------------------------------------ rotation near expiry


def test_rotating_close_to_the_old_roots_expiry_keeps_every_chain_valid(tmp_path: Path) -> None:
    """Rotating 6 h before the old root expires, with the default 30-day grace: the grace
    is capped, so a leaf never outlives its x5c chain and cosigns keep working."""
    w = make_world(tmp_path)
    old_root = w.ca.certificate
    at = old_root.not_valid_after_utc - timedelta(hours=6)
    result = w.ca.rotate(new_label="hold-root-2", now=at)
    assert result.retire_at == at  # less than a leaf lifetime left: no grace period
    for when in (at, at + timedelta(hours=7), at + timedelta(days=2)):
        response = w.ca.cosign(w.request(), now=when)
        leaf = response.chain[0]
        assert all(leaf.not_valid_after_utc <= c.not_valid_after_utc for c in response.chain)
        check_notation_profile(list(response.chain), now=leaf.not_valid_after_utc)


def test_a_leaf_is_clamped_to_a_cross_certificate_that_expires_first(tmp_path: Path) -> None:
    """During a grace period the chain runs through the cross-certificate, whose notAfter
    is the old root's: leaves issued then expire with it, not after it."""
    w = make_world(tmp_path)
    old_root = w.ca.certificate
    at = old_root.not_valid_after_utc - timedelta(days=3)
    result = w.ca.rotate(new_label="hold-root-2", now=at, grace=timedelta(days=30))
    assert result.retire_at == old_root.not_valid_after_utc - w.ca.leaf_validity
    late = result.retire_at - timedelta(minutes=30)
    chain = w.ca.cosign(w.request(), now=late).chain
    assert chain[1] == result.new_by_old
    assert chain[0].not_valid_after_utc <= old_root.not_valid_after_utc
    check_notation_profile(list(chain), now=chain[0].not_valid_after_utc - timedelta(seconds=1))


# ------------------------------------------------------------------ revocation locations


def test_every_certificate_names_its_own_issuers_crl(tmp_path: Path) -> None:
    w = make_world(tmp_path, crl_url=CRL, ocsp_url=OCSP)
    old_id = w.ca.ca_id
    before = w.ca.cosign(w.request(), now=NOW).certificate
    # a leaf names its CA's CRL partition: the UTC day of its notBefore
    day = before.not_valid_before_utc.strftime("%Y-%m-%d")
    assert _cdp(before) == [f"{CRL}?ca={old_id[:16]}&p={day}"]
    result = w.ca.rotate(new_label="hold-root-2", now=NOW + timedelta(hours=1))
    assert result.new_by_old is not None
    assert result.old_by_new is not None
    new_id = ca_id_of(result.new_root)
    # the cross-certificates carry a revocation method (notation checks every non-root)
    assert _cdp(result.new_by_old) == [f"{CRL}?ca={old_id[:16]}"]
    assert _cdp(result.old_by_new) == [f"{CRL}?ca={new_id[:16]}"]
    after = w.ca.cosign(w.request(), now=NOW + timedelta(hours=2)).certificate
    day = after.not_valid_before_utc.strftime("%Y-%m-%d")
    assert _cdp(after) == [f"{CRL}?ca={new_id[:16]}&p={day}"]
    # each key names a CRL signed by that CA
    state = w.ca.state(NOW + timedelta(hours=2))
    for cert, issuer in ((before, result.old_root), (after, result.new_root)):
        key = parse_qs(urlsplit(_cdp(cert)[0]).query)["ca"][0]
        named = state.by_key(key)
        assert named is not None
        assert named.certificate == issuer
        crl = w.ca.crl(NOW + timedelta(hours=2), ca_id=named.ca_id)
        assert crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    assert state.by_key("0" * 16) is None
    assert state.by_key(old_id[:8]) is None  # too short to name a CA
    assert crl_url_for("http://h/crl/{ca}.crl", old_id) == f"http://h/crl/{old_id[:16]}.crl"
    assert crl_url_for("http://h/ca.crl?x=1", old_id) == f"http://h/ca.crl?x=1&ca={old_id[:16]}"


def test_key_compromise_entries_stay_on_the_crl_after_retention(tmp_path: Path) -> None:
    w = make_world(tmp_path, crl_retention=timedelta(days=30))
    stolen = w.ca.cosign(w.request(), now=NOW).certificate
    replaced = w.ca.cosign(w.request(), now=NOW).certificate
    w.ca.revoke(serial=stolen.serial_number, reason="keyCompromise", now=NOW)
    w.ca.revoke(serial=replaced.serial_number, reason="superseded", now=NOW)
    later = NOW + timedelta(days=400)
    crl = w.ca.crl(later)
    assert crl.get_revoked_certificate_by_serial_number(stolen.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(replaced.serial_number) is None
    assert w.ca.status_of(stolen.serial_number).kind == "revoked"  # OCSP says the same


# ------------------------------------------------------------------ intermediates


def test_rotating_an_intermediate_hold_issues_a_new_intermediate(tmp_path: Path) -> None:
    w = make_world(tmp_path, intermediate_label="hold-issuing", crl_url=CRL)
    now = datetime.now(UTC)
    old_leaf, old_inter, root = w.ca.cosign(w.request(), now=now).chain
    result = w.ca.rotate(new_label="hold-issuing-2", now=now)
    assert result.intermediate
    assert result.old_root == old_inter
    assert result.new_by_old is None
    assert result.old_by_new is None
    result.new_root.verify_directly_issued_by(root)
    assert _cdp(result.new_root) == [f"{CRL}?ca={ca_id_of(root)[:16]}"]
    assert w.ca.trust_bundle(now) == [root]  # relying parties change nothing
    leaf, inter, again = w.ca.cosign(w.request(), now=now).chain
    assert (inter, again) == (result.new_root, root)
    leaf.verify_directly_issued_by(inter)
    # the old intermediate keeps answering for what it issued
    state = w.ca.state(now)
    assert [ca.certificate for ca in state.former] == [old_inter]
    assert _ocsp_status(w.ca, old_leaf, old_inter) == ocsp.OCSPCertStatus.GOOD
    w.ca.revoke(serial=old_leaf.serial_number, reason="keyCompromise", now=now)
    assert _ocsp_status(w.ca, old_leaf, old_inter) == ocsp.OCSPCertStatus.REVOKED
    old_crl = w.ca.crl(now, ca_id=state.former[0].ca_id)
    assert old_crl.is_signature_valid(old_inter.public_key())  # type: ignore[arg-type]
    assert old_crl.get_revoked_certificate_by_serial_number(old_leaf.serial_number) is not None


def test_a_hold_issues_with_its_root_key_offline(tmp_path: Path) -> None:
    """With an intermediate, the root key is needed only for intermediates, root CRLs and
    rotations: the hold opens and issues without it, and serves the root CRL it stored."""
    keys = tmp_path / "keys"
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite3")
    now = datetime.now(UTC)
    created = HoldCA.open(
        PEMKeyStore(keys),
        ledger,
        hold_did=HOLD_DID,
        subject=SUBJECT,
        now=now,
        create=True,
        intermediate_label="hold-issuing",
        crl_url=CRL,
    )
    inter, root = created.state().chain_suffix
    root_id = ca_id_of(root)
    assert _cdp(inter) == [f"{CRL}?ca={root_id[:16]}"]
    stored = ledger.stored_crl(root_id)
    assert stored is not None
    root_crl = x509.load_der_x509_crl(stored[0])
    assert root_crl.is_signature_valid(root.public_key())  # type: ignore[arg-type]
    assert root_crl.next_update_utc is not None
    assert root_crl.next_update_utc - now >= timedelta(days=29)

    offline = tmp_path / "offline"
    offline.mkdir()
    shutil.move(keys / "hold-root.pem", offline / "hold-root.pem")
    w = make_world(tmp_path / "w")  # a user, a record and an image; the hold is below
    hold = HoldCA.open(
        PEMKeyStore(keys),
        ledger,
        hold_did=HOLD_DID,
        subject=SUBJECT,
        now=now,
        crl_url=CRL,
        resolver=w.net,
        authorizer=AllowAllAuthorizer(),
    )
    uri = w.repo.put_manifest(w.image.digest, repository="alice/app", hold_did=HOLD_DID)
    response = hold.cosign(w.request(record_uri=uri), now=now)
    assert response.chain[1:] == (inter, root)
    assert hold.crl_der(now, ca_id=root_id) == stored[0]  # the stored root CRL
    assert hold.crl(now).is_signature_valid(inter.public_key())  # type: ignore[arg-type]
    with pytest.raises(KeyNotFoundError, match="offline"):
        hold.rotate(new_label="hold-issuing-2", now=now)

    shutil.move(offline / "hold-root.pem", keys / "hold-root.pem")  # the ceremony
    with_root = HoldCA.open(PEMKeyStore(keys), ledger, hold_did=HOLD_DID, subject=SUBJECT, now=now)
    rotated = with_root.rotate(new_label="hold-issuing-2", now=now)
    rotated.new_root.verify_directly_issued_by(root)
    ledger.close()


# ------------------------------------------------------------------ another process


def test_a_running_hold_sees_another_processs_rotation_and_retirement(tmp_path: Path) -> None:
    keys, path = tmp_path / "keys", tmp_path / "ledger.sqlite3"
    w = make_world(tmp_path / "w")
    serving_ledger = SQLiteLedger(path)
    serving = HoldCA.open(
        PEMKeyStore(keys),
        serving_ledger,
        hold_did=HOLD_DID,
        subject=SUBJECT,
        now=NOW,
        create=True,
        resolver=w.net,
        authorizer=AllowAllAuthorizer(),
    )
    old_root = serving.certificate
    assert serving.cosign(w.request(), now=NOW).chain[1:] == (old_root,)
    operator_ledger = SQLiteLedger(path)  # `holdca rotate` in another process
    operator = HoldCA.open(
        PEMKeyStore(keys), operator_ledger, hold_did=HOLD_DID, subject=SUBJECT, now=NOW
    )
    result = operator.rotate(new_label="hold-root-2", now=NOW + timedelta(minutes=1))
    chain = serving.cosign(w.request(), now=NOW + timedelta(minutes=2)).chain
    assert chain[1:] == (result.new_by_old, old_root)
    chain[0].verify_directly_issued_by(result.new_root)
    assert serving.trust_bundle(NOW + timedelta(minutes=2)) == [result.new_root, old_root]
    operator.retire(NOW + timedelta(minutes=3))  # `holdca retire`
    chain = serving.cosign(w.request(), now=NOW + timedelta(minutes=4)).chain
    assert chain[1:] == (result.new_root,)
    assert serving.trust_bundle(NOW + timedelta(minutes=4)) == [result.new_root]
    operator_ledger.close()
    serving_ledger.close()


# ------------------------------------------------------------------ notation, end to end


def test_notation_checks_every_certificate_of_a_post_rotation_chain(tmp_path: Path) -> None:
    """notation (strict revocation) after a rotation: the cross-certificate has a CRL, no
    'neither has an OCSP nor a CRL' warning; a pre-rotation leaf revoked afterwards is
    found revoked on its own CA's CRL."""
    notation = require_notation()
    with serve_hold(ocsp=False) as served:
        repo, layout, image, uri = user(served, tmp_path)
        first = served.http.post(URL, json=body(repo, uri, image), headers=auth(repo))
        assert first.status_code == 200, first.text
        old_root = served.ca.certificate
        served.ca.rotate(new_label="hold-root-2", now=datetime.now(UTC))
        repo2, layout2, image2, uri2 = user(served, tmp_path / "second")
        second = served.http.post(URL, json=body(repo2, uri2, image2), headers=auth(repo2))
        assert second.status_code == 200, second.text
        config = tmp_path / "notation"
        write_trust_store(config, "hold", [old_root])
        write_trust_policy(config, hold_trust_policy(store="hold"))
        layout.attach_signature(image, base64.b64decode(first.json()["envelope"]))
        layout2.attach_signature(image2, base64.b64decode(second.json()["envelope"]))
        ok, out = notation_verify(notation, config, layout2.path, image2.digest)
        assert ok, out
        assert "revocation method" not in out, out
        ok, out = notation_verify(notation, config, layout.path, image.digest)
        assert ok, out
        leaf = x509.load_pem_x509_certificate(first.json()["certificate"].encode())
        served.ca.revoke(serial=leaf.serial_number, reason="superseded", now=datetime.now(UTC))
        ok, out = notation_verify(notation, config, layout.path, image.digest)
        assert not ok
        assert "revoked" in out
