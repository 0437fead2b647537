"""HoldCA: cosign end to end, failures issue nothing, revocation, CRL, OCSP, set-up checks."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from jwcrypto import jwk, jws
from jwcrypto.common import JWSEHeaderParameter

from holdca.demo import notation_verify
from holdca.errors import (
    AuthorizationError,
    ConfigError,
    DuplicateSerialError,
    HoldCAError,
    IssuancePolicyError,
    LedgerError,
    PolicyError,
    RecordMismatchError,
    VerificationError,
)
from holdca.hold import HoldCA, IssuancePolicy, MemoryLedger, RateLimiter, SQLiteLedger
from holdca.hold.ledger import IssuanceRecord
from holdca.keys import MemoryKeyStore
from holdca.keys.pem import PEMKeyStore
from holdca.notation import Descriptor, SigningScheme, parse_envelope
from holdca.notation.trustpolicy import hold_trust_policy
from holdca.notation.truststore import TrustStore, write_trust_policy, write_trust_store
from holdca.notation.verify import verify_envelope
from holdca.pki import SubjectInfo, issue_root
from tests.hold.conftest import HOLD_DID, NOW, SUBJECT, World, make_world
from tests.tools import require_notation, require_tool


def _verify_with_holdca(
    world: World, envelope: bytes, roots: list[x509.Certificate], when: datetime = NOW
) -> None:
    policy = hold_trust_policy(store="hold", revocation="skip")
    verify_envelope(
        envelope,
        statement=policy.applicable("local/holdca"),
        trust_store=TrustStore({("ca", "hold"): roots}),
        now=when + timedelta(minutes=1),
        descriptor=world.image,
    )


def test_cosign_issues_verifies_and_records(world: World) -> None:
    resp = world.ca.cosign(world.request(), now=NOW)
    leaf, root = resp.chain
    # the ledger row was committed before the response existed
    row = world.ledger.get(resp.serial)
    assert row == resp.record
    assert row.certificate_der == leaf.public_bytes(serialization.Encoding.DER)
    assert row.commit_cid == str(world.repo.commit_cid)
    assert row.rev == world.repo.rev
    assert row.manifest_digest == world.image.digest
    assert row.did == world.repo.did
    # cryptography as oracle: the leaf is signed by the root; SAN is the DID
    leaf.verify_directly_issued_by(root)
    assert root == world.ca.certificate
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [world.repo.did]
    assert leaf.not_valid_after_utc - NOW == timedelta(hours=24)
    # jwcrypto as oracle: the flattened JWS verifies with the leaf's key
    crit = {
        name: JWSEHeaderParameter("notation", False, True, None)
        for name in ("io.cncf.notary.signingScheme", "io.cncf.notary.expiry")
    }
    token = jws.JWS(header_registry=crit)
    token.deserialize(resp.envelope.decode())
    key = jwk.JWK.from_pyca(leaf.public_key())
    token.verify(key)
    payload = json.loads(token.payload)
    assert payload["targetArtifact"]["digest"] == world.image.digest
    # notation semantics (holdca's verifier)
    _verify_with_holdca(world, resp.envelope, [root])
    # the signature manifest names the image as subject and carries the envelope
    manifest = json.loads(resp.signature_manifest)
    assert manifest["subject"]["digest"] == world.image.digest
    assert manifest["layers"][0]["mediaType"] == "application/jose+json"


def test_cosign_json_response_shape(world: World) -> None:
    resp = world.ca.cosign(world.request(), now=NOW)
    body = resp.to_json()
    assert base64.b64decode(body["envelope"]) == resp.envelope
    assert x509.load_pem_x509_certificate(body["certificate"].encode()) == resp.certificate
    assert int(body["serial"], 16) == resp.serial


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"caller": "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"}, AuthorizationError),
        ({"caller": None}, AuthorizationError),
        ({"did": "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "caller": None}, AuthorizationError),
        ({"validity": timedelta(hours=48)}, IssuancePolicyError),
        ({"proof_hint": b"not a car"}, HoldCAError),
    ],
)
def test_failed_cosign_issues_nothing(
    world: World,
    change: dict[str, object],
    error: type[Exception],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="holdca.audit"), pytest.raises(error):
        world.ca.cosign(world.request(**change), now=NOW)
    assert world.ledger.count() == 0
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "holdca.audit"]
    assert [e["event"] for e in events] == ["refused"]


def test_wrong_digest_is_a_record_mismatch(world: World) -> None:
    other = Descriptor(world.image.media_type, "sha256:" + "0" * 64, world.image.size)
    with pytest.raises(RecordMismatchError):
        world.ca.cosign(world.request(descriptor=other), now=NOW)
    assert world.ledger.count() == 0


def test_proof_of_another_did_is_refused(tmp_path: Path, world: World) -> None:
    other = make_world(tmp_path / "other")
    world.net.add(other.repo)
    # alice's record and proof, but claimed for bob (caller = bob)
    req = world.request(
        did=other.repo.did, caller=other.repo.did, proof_hint=world.repo.get_record_car(world.uri)
    )
    with pytest.raises(VerificationError):
        world.ca.cosign(req, now=NOW)
    with pytest.raises(VerificationError):
        world.ca.cosign(world.request(did=other.repo.did, caller=other.repo.did), now=NOW)
    assert world.ledger.count() == 0


def test_cosign_disabled(tmp_path: Path) -> None:
    w = make_world(tmp_path, cosign_enabled=False)
    with pytest.raises(PolicyError, match="disabled"):
        w.ca.cosign(w.request(), now=NOW)


def test_rate_limit(tmp_path: Path) -> None:
    policy = IssuancePolicy(rate_limit=RateLimiter(2, timedelta(hours=1)))
    w = make_world(tmp_path, policy=policy)
    w.ca.cosign(w.request(), now=NOW)
    w.ca.resign(w.request(), now=NOW + timedelta(minutes=1))
    with pytest.raises(IssuancePolicyError, match="rate limit"):
        w.ca.cosign(w.request(), now=NOW + timedelta(minutes=2))
    assert w.ledger.count() == 2
    assert [r.kind for r in w.ledger.by_did(w.repo.did)] == ["cosign", "resign"]


class FailingLedger(MemoryLedger):
    def record_issuance(self, record: IssuanceRecord) -> None:
        raise LedgerError("disk full")


class CollidingLedger(MemoryLedger):
    """Refuses the first serial as a duplicate: the hold retries with a fresh one."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[int] = []

    def record_issuance(self, record: IssuanceRecord) -> None:
        if not self.refused:
            self.refused.append(record.serial)
            raise DuplicateSerialError("duplicate")
        super().record_issuance(record)


def test_ledger_failure_means_no_response(tmp_path: Path) -> None:
    w = make_world(tmp_path, ledger=FailingLedger())
    with pytest.raises(LedgerError, match="disk full"):
        w.ca.cosign(w.request(), now=NOW)


def test_serial_collision_is_retried(tmp_path: Path) -> None:
    led = CollidingLedger()
    w = make_world(tmp_path, ledger=led)
    resp = w.ca.cosign(w.request(), now=NOW)
    assert led.refused
    assert resp.serial != led.refused[0]
    assert led.count() == 1


def test_sixteen_threads_leave_a_consistent_ledger(sqlite_world: World) -> None:
    w = sqlite_world
    per_thread = 6
    results: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    req = w.request(caller=None)

    def worker() -> None:
        try:
            for _ in range(per_thread):
                resp = w.ca.cosign(req, now=NOW)
                with lock:
                    results.append(resp.serial)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 16 * per_thread == len(set(results))
    assert w.ledger.count() == len(results)
    for serial in results:
        row = w.ledger.get(serial)
        assert row is not None
        assert x509.load_der_x509_certificate(row.certificate_der).serial_number == serial


def test_revoke_then_crl_and_ocsp(world: World, tmp_path: Path) -> None:
    a = world.ca.cosign(world.request(), now=NOW)
    b = world.ca.cosign(world.request(), now=NOW + timedelta(seconds=1))
    root = world.ca.certificate
    crl1 = world.ca.crl(NOW)
    assert crl1.is_signature_valid(root.public_key())  # type: ignore[arg-type]
    assert len(crl1) == 0
    revs = world.ca.revoke(
        serial=a.serial, reason="keyCompromise", invalidity_date=NOW, now=NOW + timedelta(minutes=5)
    )
    assert [r.serial for r in revs] == [a.serial]
    crl2 = world.ca.crl(NOW + timedelta(minutes=6))
    number = lambda c: c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number  # noqa: E731
    assert number(crl2) == number(crl1) + 1
    entry = crl2.get_revoked_certificate_by_serial_number(a.serial)
    assert entry is not None
    assert crl2.get_revoked_certificate_by_serial_number(b.serial) is None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.key_compromise
    # cached until something changes
    assert world.ca.crl(NOW + timedelta(minutes=7)) is crl2
    # openssl as oracle for the CRL signature
    openssl = require_tool("openssl")
    (tmp_path / "ca.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "crl.der").write_bytes(crl2.public_bytes(serialization.Encoding.DER))
    out = subprocess.run(
        [
            openssl,
            "crl",
            "-inform",
            "DER",
            "-in",
            str(tmp_path / "crl.der"),
            "-CAfile",
            str(tmp_path / "ca.pem"),
            "-noout",
            "-text",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "verify OK" in out.stderr + out.stdout
    assert format(a.serial, "X") in out.stdout.replace(":", "").upper()
    # OCSP, SHA-1 CertID like notation sends
    for resp, expected in ((a, ocsp.OCSPCertStatus.REVOKED), (b, ocsp.OCSPCertStatus.GOOD)):
        req = (
            ocsp.OCSPRequestBuilder().add_certificate(resp.certificate, root, hashes.SHA1()).build()
        )
        der = world.ca.ocsp(
            req.public_bytes(serialization.Encoding.DER), now=NOW + timedelta(minutes=8)
        )
        parsed = ocsp.load_der_ocsp_response(der)
        assert parsed.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
        assert parsed.certificate_status == expected
        assert parsed.serial_number == resp.serial
        assert parsed.next_update_utc is not None
    assert (
        ocsp.load_der_ocsp_response(world.ca.ocsp(b"garbage", now=NOW)).response_status
        == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    )


def test_revoke_by_did_since(world: World) -> None:
    old = world.ca.cosign(world.request(), now=NOW)
    new = world.ca.cosign(world.request(), now=NOW + timedelta(hours=2))
    revs = world.ca.revoke(
        did=world.repo.did, since=NOW + timedelta(hours=1), now=NOW + timedelta(hours=3)
    )
    assert [r.serial for r in revs] == [new.serial]
    assert world.ledger.revocation(old.serial) is None
    with pytest.raises(ValueError, match="exactly one"):
        world.ca.revoke(now=NOW)
    with pytest.raises(LedgerError, match="no certificate"):
        world.ca.revoke(serial=12345, now=NOW)


def test_crl_numbers_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    store = MemoryKeyStore()
    led = SQLiteLedger(path)
    ca = HoldCA.open(store, led, hold_did=HOLD_DID, subject=SUBJECT, now=NOW, create=True)
    first = ca.crl(NOW)
    led.close()
    led2 = SQLiteLedger(path)
    ca2 = HoldCA.open(store, led2, hold_did=HOLD_DID, subject=SUBJECT, now=NOW)
    assert ca2.certificate == ca.certificate
    # clock went back an hour: the number still grows and thisUpdate does not go back
    second = ca2.crl(NOW - timedelta(hours=1))
    n = lambda c: c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number  # noqa: E731
    assert n(second) == n(first) + 1
    assert second.last_update_utc >= first.last_update_utc
    led2.close()


def test_open_refuses_missing_or_mismatched_ca() -> None:
    store = MemoryKeyStore()
    with pytest.raises(ConfigError, match="holdca init"):
        HoldCA.open(store, MemoryLedger(), hold_did=HOLD_DID, subject=SUBJECT, now=NOW)
    store.generate("hold-root")
    other = MemoryKeyStore().generate("x")
    foreign = issue_root(other, hold_did=HOLD_DID, subject=SUBJECT, now=NOW)
    with pytest.raises(ConfigError, match="does not match"):
        HoldCA.open(
            store, MemoryLedger(), hold_did=HOLD_DID, subject=SUBJECT, now=NOW, certificate=foreign
        )
    # a ledger that knows another CA refuses an unrelated certificate file
    led = MemoryLedger()
    HoldCA.open(store, led, hold_did=HOLD_DID, subject=SUBJECT, now=NOW, create=True)
    with pytest.raises(ConfigError, match="none of this hold"):
        HoldCA.open(store, led, hold_did=HOLD_DID, subject=SUBJECT, now=NOW, certificate=foreign)


def test_operator_issue(world: World) -> None:
    key = MemoryKeyStore().generate("k")
    chain = world.ca.issue("did:web:alice.example.com", key.public_key, now=NOW)
    assert chain[0].public_key() == key.public_key
    row = world.ledger.get(chain[0].serial_number)
    assert row is not None
    assert row.kind == "issue"


def test_audit_never_contains_secrets(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    passphrase = b"correct horse battery staple 9931"
    store = PEMKeyStore(tmp_path / "keys", passphrase=passphrase)
    with caplog.at_level(logging.DEBUG):
        w = make_world(tmp_path / "w")
        ca = HoldCA.open(
            store,
            MemoryLedger(),
            hold_did=HOLD_DID,
            subject=SUBJECT,
            now=NOW,
            create=True,
            resolver=w.net,
        )
        w.ca = ca
        resp = ca.cosign(w.request(), now=NOW)
        ca.revoke(serial=resp.serial, now=NOW)
        ca.crl(NOW)
        with pytest.raises(AuthorizationError):
            ca.cosign(w.request(caller=None), now=NOW)
    text = "\n".join(r.getMessage() for r in caplog.records) + repr(ca) + repr(store)
    key_pem = (tmp_path / "keys" / "hold-root.pem").read_bytes()
    assert passphrase.decode() not in text
    assert "PRIVATE KEY" not in text
    assert key_pem.decode().splitlines()[1] not in text
    assert "issued" in text
    assert "refused" in text


def test_subject_is_used_for_leaves(world: World) -> None:
    resp = world.ca.cosign(world.request(), now=NOW)
    names = {a.oid: a.value for a in resp.certificate.subject}
    assert names[x509.NameOID.ORGANIZATION_NAME] == SUBJECT.organization
    assert names[x509.NameOID.COMMON_NAME] == world.repo.did
    assert isinstance(SUBJECT, SubjectInfo)
    env = parse_envelope(resp.envelope)
    assert env.target_artifact.digest == world.image.digest


def test_signing_authority_scheme_verifies_in_notation(tmp_path: Path) -> None:
    w = make_world(tmp_path, scheme=SigningScheme.SIGNING_AUTHORITY)
    resp = w.ca.cosign(w.request(), now=NOW)
    assert parse_envelope(resp.envelope).scheme is SigningScheme.SIGNING_AUTHORITY
    policy = hold_trust_policy(store="hold", scheme=SigningScheme.SIGNING_AUTHORITY)
    # signingAuthority: the chain is checked at the signing time, so a later "now" passes
    verify_envelope(
        resp.envelope,
        statement=policy.applicable("local/x"),
        trust_store=TrustStore({("signingAuthority", "hold"): [w.ca.certificate]}),
        now=NOW + timedelta(days=3),
        descriptor=w.image,
    )
    notation = require_notation()
    w.layout.attach_signature(w.image, resp.envelope)
    config = tmp_path / "notation"
    write_trust_store(config, "hold", [w.ca.certificate], type="signingAuthority")
    write_trust_policy(config, policy)
    ok, out = notation_verify(notation, config, w.layout.path, w.image.digest)
    assert ok, out


def test_intermediate_issuing_ca(tmp_path: Path) -> None:
    w = make_world(tmp_path, intermediate_label="hold-issuing")
    now = datetime.now(UTC)  # notation verifies at the real time
    resp = w.ca.cosign(w.request(), now=now)
    leaf, inter, root = resp.chain
    # cryptography as oracle: leaf <- intermediate <- self-signed root
    leaf.verify_directly_issued_by(inter)
    inter.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)
    assert w.ca.certificate == inter
    assert w.ca.root_certificate == root
    assert w.ca.trust_bundle(now) == [root]
    _verify_with_holdca(w, resp.envelope, [root], now)
    # the CRL of the issuing CA is signed by the intermediate key
    w.ca.revoke(serial=resp.serial, now=now)
    crl = w.ca.crl(now)
    assert crl.is_signature_valid(inter.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(resp.serial) is not None
    # reopening from the ledger restores the same chain
    again = HoldCA.open(w.store, w.ledger, hold_did=HOLD_DID, subject=SUBJECT, now=NOW)
    assert again.state().chain_suffix == (inter, root)
    notation = require_notation()
    w.layout.attach_signature(w.image, resp.envelope)
    config = tmp_path / "notation"
    write_trust_store(config, "hold", [root])
    write_trust_policy(config, hold_trust_policy(store="hold", revocation="skip"))
    ok, out = notation_verify(notation, config, w.layout.path, w.image.digest)
    assert ok, out
