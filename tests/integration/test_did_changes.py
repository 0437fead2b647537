"""DID changes against the ATProto reference implementation: a rotated key, a tombstone.

The PLC directory (@did-plc/server) and the PDS (@atproto/pds) run on 127.0.0.1 (the
``atproto_net`` fixture). A user creates an account with a recovery key the test holds
(first in the DID's PLC rotationKeys), gets certificates from the hold, and then changes
the DID with a PLC operation signed by that key: a new ``#atproto`` key, or a
``plc_tombstone``. The hold resolves the directory's signed operation log itself, through
its address policy (loopback opened, nothing else), and:

* ``holdca sweep`` (the CLI, as an operator runs it) under ``HOLD_ON_DID_CHANGE=revoke``
  revokes the rotated DID's live certificates (superseded) and leaves the others good;
* under ``flag`` the change is only audited, and a cosign attempt records it too (before
  it is refused: the PDS still signs with the key the DID no longer has);
* a tombstone revokes the DID's live certificates with reason cessationOfOperation
  (checked by OCSP and the CRL), leaves the expired one alone, and is also noticed by
  service auth's fresh re-resolution of a forged token's issuer.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import coincurve
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from holdca.atproto.resolve import HTTPResolver
from holdca.errors import AuthenticationError, DIDDeactivatedError, SignatureInvalidError
from holdca.hold import AuditLog, HoldCA, ServiceAuth, SQLiteLedger
from holdca.keys import MemoryKeyStore
from holdca.net import AddressPolicy
from holdca.pki import SubjectInfo
from holdca.testing.atproto import TestRepo
from tests.integration.conftest import ATProtoNet
from tests.integration.pds_client import did_key_of
from tests.integration.users import User, new_user

HOLD_DID = "did:web:hold-watch.test"
COSIGN = "io.atcr.hold.coSignManifest"
ALLOW = "127.0.0.0/8,::1/128"

pytestmark = pytest.mark.interop


def _user(net: ATProtoNet, tmp: Path) -> User:
    return new_user(net, tmp, hold_did=HOLD_DID)


class Events(logging.Handler):
    """The audit events of :attr:`audit`."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.logger = logging.getLogger(f"test.did_changes.{uuid.uuid4().hex}")
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.logger.addHandler(self)
        self.audit = AuditLog(self.logger)
        self.events: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append(record.holdca_event)  # type: ignore[attr-defined]

    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]


@dataclass
class Hold:
    ca: HoldCA
    resolver: HTTPResolver
    ledger: SQLiteLedger
    events: Events


@pytest.fixture
def make_hold(atproto_net: ATProtoNet, tmp_path: Path) -> Iterator[Any]:
    """An in-process hold on the real directory: ``make_hold(policy) -> Hold``."""
    made: list[Hold] = []

    def make(policy: str) -> Hold:
        resolver = HTTPResolver(plc_url=atproto_net.plc_url, policy=AddressPolicy.parse(ALLOW))
        ledger = SQLiteLedger(tmp_path / f"ledger-{len(made)}.sqlite3")
        events = Events()
        ca = HoldCA.open(
            MemoryKeyStore(),
            ledger,
            hold_did=HOLD_DID,
            subject=SubjectInfo("US", "CA", "Watching Hold"),
            now=datetime.now(UTC) - timedelta(days=3),  # so that a leaf can be expired
            create=True,
            resolver=resolver,
            audit=events.audit,
            on_did_change=policy,
        )
        made.append(Hold(ca, resolver, ledger, events))
        return made[-1]

    yield make
    for hold in made:
        hold.resolver.close()
        hold.ledger.close()


def _ocsp(ca: HoldCA, serial: int, now: datetime) -> ocsp.OCSPResponse:
    record = ca.ledger.get(serial)
    assert record is not None
    leaf = x509.load_der_x509_certificate(record.certificate_der)
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(leaf, ca.certificate, hashes.SHA1())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    return ocsp.load_der_ocsp_response(ca.ocsp(request, now=now))


# ------------------------------------------------------------------ holdca sweep (CLI)


def _holdca(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "holdca", *args, "--home", str(home)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_holdca_sweep_revokes_the_certificates_of_a_rotated_key(
    atproto_net: ATProtoNet, tmp_path: Path
) -> None:
    home = tmp_path / "hold"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOLD")},
        "HOLD_PLC_URL": atproto_net.plc_url,
        "HOLD_NETWORK_ALLOW": ALLOW,
        "HOLD_ON_DID_CHANGE": "revoke",
        "HOLD_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
    }
    init = _holdca(home, env, "init", "--did", HOLD_DID, "--country", "US", "--state", "CA",
                   "--org", "Sweep Hold")  # fmt: skip
    assert init.returncode == 0, init.stderr
    rotated, still = _user(atproto_net, tmp_path), _user(atproto_net, tmp_path)
    serials: dict[str, list[str]] = {rotated.account.did: [], still.account.did: []}
    for user, times in ((rotated, 2), (still, 1)):
        for _ in range(times):
            r = _holdca(home, env, "cosign", "--uri", user.uri, "--layout",
                        str(user.layout.path), "--image", "v1", "--json")  # fmt: skip
            assert r.returncode == 0, r.stderr
            serials[user.account.did].append(json.loads(r.stdout)["serial"])
    # the cosigns recorded each DID's baseline: nothing to report yet
    r = _holdca(home, env, "sweep", "--json")
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    assert (first["dids"], first["counts"]["unchanged"], first["revoked"]) == (2, 2, [])
    # the account's key is rotated by a PLC operation signed with its recovery key
    old_key = atproto_net.client.plc_data(rotated.account.did)["verificationMethods"]["atproto"]
    new_key = did_key_of(coincurve.PrivateKey())
    atproto_net.client.update_atproto_key(rotated.account.did, rotated.recovery, new_key)
    r = _holdca(home, env, "sweep", "--json", "--concurrency", "4")
    assert r.returncode == 0, r.stderr  # the sweep ran: changes found are not a failure
    report = json.loads(r.stdout)
    by_did = {o["did"]: o for o in report["observations"]}
    change = by_did[rotated.account.did]
    assert change["outcome"] == "changed"
    assert change["changes"] == [{"what": "key", "before": old_key, "after": new_key}]
    assert (change["action"], sorted(change["revoked"])) == (
        "revoked",
        sorted(serials[rotated.account.did]),
    )
    assert by_did[still.account.did]["outcome"] == "unchanged"
    for did, expected in ((rotated.account.did, "revoked"), (still.account.did, "good")):
        for serial in serials[did]:
            r = _holdca(home, env, "ocsp", "--serial", serial, "--json")
            status = json.loads(r.stdout)
            assert status["status"] == expected, (did, status)
            if expected == "revoked":
                assert status["reason"] == "superseded"
    events = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    changed = [e for e in events if e["event"] == "did_changed"]
    assert [(e["did"], e["change"], e["action"]) for e in changed] == [
        (rotated.account.did, "key", "revoked")
    ]
    assert sorted(e["serial"] for e in events if e["event"] == "revoked") == sorted(
        serials[rotated.account.did]
    )
    # the text summary; a third sweep finds nothing new (the revoked DID has nothing live)
    r = _holdca(home, env, "sweep")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("swept 1 DIDs with live certificates: 1 unchanged, 0 failed")


# ------------------------------------------------------------------ flag


def test_a_rotated_key_is_flagged_by_a_cosign_attempt_and_a_sweep(
    atproto_net: ATProtoNet, make_hold: Any, tmp_path: Path
) -> None:
    hold: Hold = make_hold("flag")
    seen_by_cosign, seen_by_sweep = _user(atproto_net, tmp_path), _user(atproto_net, tmp_path)
    now = datetime.now(UTC)
    serials = {u.account.did: hold.ca.cosign(u.request(), now=now).serial
               for u in (seen_by_cosign, seen_by_sweep)}  # fmt: skip
    for user in (seen_by_cosign, seen_by_sweep):
        key = did_key_of(coincurve.PrivateKey())
        atproto_net.client.update_atproto_key(user.account.did, user.recovery, key)
    later = datetime.now(UTC)
    # the PDS still signs its commits with the old key: the cosign is refused, but the
    # gate's fresh resolution has seen (and flagged) the new key first
    with pytest.raises(SignatureInvalidError):
        hold.ca.cosign(seen_by_cosign.request(), now=later)
    assert [e["did"] for e in hold.events.of("did_changed")] == [seen_by_cosign.account.did]
    report = hold.ca.sweep(later)
    by_did = {o.did: o for o in report.observations}
    assert by_did[seen_by_cosign.account.did].outcome == "unchanged"  # already recorded
    assert by_did[seen_by_sweep.account.did].outcome == "changed"
    assert by_did[seen_by_sweep.account.did].action == "flagged"
    assert report.revoked == ()
    changed = hold.events.of("did_changed")
    assert [(e["did"], e["change"], e["action"]) for e in changed] == [
        (seen_by_cosign.account.did, "key", "flagged"),
        (seen_by_sweep.account.did, "key", "flagged"),
    ]
    for did, serial in serials.items():
        assert hold.ca.status_of(serial).kind == "good", did  # flag revokes nothing
        state = hold.ledger.did_state(did)
        assert state is not None
        assert (
            state.signing_key == atproto_net.client.plc_data(did)["verificationMethods"]["atproto"]
        )


# ------------------------------------------------------------------ tombstone


def test_a_tombstone_revokes_the_live_certificates(
    atproto_net: ATProtoNet, make_hold: Any, tmp_path: Path
) -> None:
    hold: Hold = make_hold("revoke")
    user, other = _user(atproto_net, tmp_path), _user(atproto_net, tmp_path)
    now = datetime.now(UTC)
    expired = hold.ca.cosign(user.request(), now=now - timedelta(days=2)).serial  # 24 h leaf
    live = [hold.ca.cosign(user.request(), now=now).serial for _ in range(2)]
    others = hold.ca.cosign(other.request(), now=now).serial
    assert _ocsp(hold.ca, live[0], now).certificate_status == ocsp.OCSPCertStatus.GOOD  # cached
    tombstone = atproto_net.client.tombstone(user.account.did, user.recovery)
    log = atproto_net.client.plc_audit_log(user.account.did)
    assert (log[-1]["cid"], log[-1]["operation"]["type"]) == (tombstone, "plc_tombstone")
    later = datetime.now(UTC)
    report = hold.ca.sweep(later)
    by_did = {o.did: o for o in report.observations}
    gone = by_did[user.account.did]
    assert gone.outcome == "gone"
    assert isinstance(gone.error, DIDDeactivatedError)
    assert [c.what for c in gone.changes] == ["deactivated"]
    assert sorted(gone.revoked) == sorted(live)
    assert by_did[other.account.did].outcome == "unchanged"
    # OCSP (the answer cached while it was good was dropped) and the CRL agree
    for serial in live:
        answer = _ocsp(hold.ca, serial, later)
        assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
        assert answer.revocation_reason == x509.ReasonFlags.cessation_of_operation
    assert _ocsp(hold.ca, others, later).certificate_status == ocsp.OCSPCertStatus.GOOD
    crl = hold.ca.crl(later)
    assert {e.serial_number for e in crl} == set(live)  # not the expired one
    for entry in crl:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        assert reason == x509.ReasonFlags.cessation_of_operation
    assert hold.ledger.revocation(expired) is None
    state = hold.ledger.did_state(user.account.did)
    assert state is not None
    assert (state.status, state.signing_key) == ("deactivated", None)
    # the hold refuses the DID now, and does not report the tombstone twice
    with pytest.raises(DIDDeactivatedError):
        hold.ca.cosign(user.request(), now=datetime.now(UTC))
    assert [(e["did"], e["change"], e["action"]) for e in hold.events.of("did_changed")] == [
        (user.account.did, "deactivated", "revoked")
    ]


def test_service_auth_notices_a_tombstone_when_it_re_resolves(
    atproto_net: ATProtoNet, make_hold: Any, tmp_path: Path
) -> None:
    hold: Hold = make_hold("revoke")
    user = _user(atproto_net, tmp_path)
    now = datetime.now(UTC)
    serial = hold.ca.cosign(user.request(), now=now).serial
    auth = ServiceAuth(hold.resolver, hold.ledger, audience=HOLD_DID, observer=hold.ca.watch)
    token = atproto_net.client.get_service_auth(user.account, HOLD_DID, COSIGN)
    assert auth.authenticate(f"Bearer {token}", lxm=COSIGN, now=now) == user.account.did
    # the resolver now caches the DID's identity (HOLD_IDENTITY_TTL); the DID is tombstoned
    atproto_net.client.tombstone(user.account.did, user.recovery)
    forged = TestRepo.create(did=user.account.did).service_token(HOLD_DID, COSIGN)
    later = datetime.now(UTC)
    with pytest.raises(AuthenticationError) as refused:
        auth.authenticate(f"Bearer {forged}", lxm=COSIGN, now=later)
    assert refused.value.error == "BadJwtIss"  # the fresh re-resolution: tombstoned
    assert hold.ca.status_of(serial).reason == x509.ReasonFlags.cessation_of_operation
    state = hold.ledger.did_state(user.account.did)
    assert state is not None
    assert state.status == "deactivated"
    assert [e["change"] for e in hold.events.of("did_changed")] == ["deactivated"]
