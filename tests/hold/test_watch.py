"""DID changes: a rotated key, a moved PDS, a deactivation, seen and acted on by policy.

The resolver is the in-process TestNetwork (and, for network failures, the real
HTTPResolver against a closed loopback port); tests/integration/test_did_changes.py runs
the key rotation and the tombstone against the reference PLC directory and PDS.

Each test attacks one rule: the first sight is a baseline (no event); each policy does
what it says and no more; only *live* certificates are revoked, with the reason the change
calls for; a change seen by eight threads at once is acted on once; an observation older
than the recorded change cannot undo it; a resolution failure is not a deactivation; a
ledger failure while recording refuses the issuance instead of issuing on stale knowledge.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from holdca.atproto.identity import Identity
from holdca.atproto.resolve import HTTPResolver
from holdca.cli import main
from holdca.errors import (
    AddressRefusedError,
    AuthenticationError,
    DIDDeactivatedError,
    LedgerError,
    ResolutionError,
)
from holdca.hold import (
    AuditLog,
    DIDWatch,
    HoldCA,
    MemoryLedger,
    ServiceAuth,
    SQLiteLedger,
)
from holdca.hold.ledger import DIDState
from holdca.net import AddressPolicy
from holdca.testing.atproto import TestRepo
from holdca.testing.network import TestNetwork
from tests.hold.conftest import HOLD_DID, NOW, World, make_world

T = NOW + timedelta(days=3)  # "now" of most tests: the CA (made at NOW) is valid
LXM = "io.atcr.hold.coSignManifest"


class Events(logging.Handler):
    """Collects the audit events of :attr:`audit` (the dicts it attaches to each record)."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logging.DEBUG)
        self.events: list[dict[str, Any]] = []
        self.audit = AuditLog(logger)
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            self.events.append(record.holdca_event)  # type: ignore[attr-defined]

    def of(self, event: str) -> list[dict[str, Any]]:
        with self._guard:
            return [e for e in self.events if e["event"] == event]


@pytest.fixture
def events() -> Iterator[Events]:
    logger = logging.getLogger(f"test.watch.{uuid.uuid4().hex}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = Events(logger)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def _world(tmp_path: Path, events: Events, policy: str, **options: Any) -> World:
    return make_world(tmp_path, audit=events.audit, on_did_change=policy, **options)


def _cosign(w: World, when: datetime, repo: TestRepo | None = None) -> int:
    repo = repo or w.repo
    uri = w.uri if repo is w.repo else repo.put_manifest(w.image.digest, hold_did=HOLD_DID)
    return w.ca.cosign(w.request(did=repo.did, record_uri=uri, caller=repo.did), now=when).serial


def _reason(ca: HoldCA, serial: int) -> str | None:
    status = ca.status_of(serial)
    assert status.kind == "revoked", f"{serial:x} is {status.kind}"
    return None if status.reason is None else status.reason.value


# --------------------------------------------------------------------- first sight


def test_first_sight_is_a_baseline_and_a_second_look_changes_nothing(
    tmp_path: Path, events: Events
) -> None:
    w = _world(tmp_path, events, "revoke")
    assert w.ledger.did_state(w.repo.did) is None
    first = _cosign(w, T)
    state = w.ledger.did_state(w.repo.did)
    assert state == DIDState(w.repo.did, w.repo.signing_key, "https://pds.example.com",
                             "active", T, T)  # fmt: skip
    second = _cosign(w, T + timedelta(minutes=1))
    assert w.ledger.did_state(w.repo.did) == state  # unchanged: not rewritten
    assert events.of("did_changed") == []
    assert events.of("revoked") == []
    assert {w.ca.status_of(s).kind for s in (first, second)} == {"good"}


def test_a_hold_without_a_policy_records_nothing(tmp_path: Path) -> None:
    w = make_world(tmp_path)  # HoldCA(on_did_change=None): the library default
    assert w.ca.watch is None
    assert w.ca.gate is not None
    assert w.ca.gate.observer is None
    _cosign(w, T)
    assert w.ledger.did_state(w.repo.did) is None


# --------------------------------------------------------------------- key rotation


@pytest.mark.parametrize("policy", ["revoke", "flag", "ignore"])
def test_a_rotated_key_seen_through_a_cosign(tmp_path: Path, events: Events, policy: str) -> None:
    w = _world(tmp_path, events, policy)
    old_key = w.repo.signing_key
    old = [_cosign(w, T), _cosign(w, T + timedelta(minutes=1))]
    w.repo.rotate_key()  # a new #atproto key; the PDS re-signs its commit with it
    new = _cosign(w, T + timedelta(hours=1))  # issued on the new key, never revoked
    state = w.ledger.did_state(w.repo.did)
    assert state is not None
    assert (state.signing_key, state.updated_at, state.first_seen) == (
        w.repo.signing_key,
        T + timedelta(hours=1),
        T,
    )
    changed = events.of("did_changed")
    revoked = events.of("revoked")
    if policy == "revoke":
        assert [_reason(w.ca, s) for s in old] == ["superseded", "superseded"]
        assert sorted(e["serial"] for e in revoked) == sorted(format(s, "x") for s in old)
    else:
        assert {w.ca.status_of(s).kind for s in old} == {"good"}
        assert revoked == []
    assert w.ca.status_of(new).kind == "good"
    if policy == "ignore":
        assert changed == []
    else:
        assert len(changed) == 1
        event = changed[0]
        assert (event["did"], event["change"], event["before"], event["after"]) == (
            w.repo.did,
            "key",
            old_key,
            w.repo.signing_key,
        )
        assert event["action"] == {"revoke": "revoked", "flag": "flagged"}[policy]
        assert event["time"] == (T + timedelta(hours=1)).isoformat()
    # the change is recorded: the next look sees nothing new
    _cosign(w, T + timedelta(hours=2))
    assert len(events.of("did_changed")) == len(changed)


def test_a_key_change_revokes_only_live_certificates(tmp_path: Path, events: Events) -> None:
    w = _world(tmp_path, events, "revoke")
    expired = _cosign(w, T - timedelta(days=2))  # 24 h leaves: expired at T
    earlier = _cosign(w, T - timedelta(hours=2))
    w.ca.revoke(serial=earlier, reason="affiliationChanged", now=T - timedelta(hours=1))
    live = _cosign(w, T - timedelta(minutes=10))
    # operator issuance (kind "issue") is a certificate of the DID too
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    issued = w.ca.issue(w.repo.did, key, now=T - timedelta(minutes=5))[0].serial_number
    events.events.clear()
    w.repo.rotate_key()
    report = w.ca.sweep(T)
    (observation,) = report.observations
    assert observation.outcome == "changed"
    assert sorted(observation.revoked) == sorted([live, issued])
    assert w.ledger.revocation(expired) is None  # expired: left alone, not revoked
    assert _reason(w.ca, earlier) == "affiliationChanged"  # the first revocation stays
    assert {_reason(w.ca, s) for s in (live, issued)} == {"superseded"}
    assert sorted(e["serial"] for e in events.of("revoked")) == sorted(
        format(s, "x") for s in (live, issued)
    )
    # the CRL lists exactly the revoked ones
    assert {e.serial_number for e in w.ca.crl(T)} == {earlier, live, issued}


def test_a_revocation_invalidates_the_cached_ocsp_answer(tmp_path: Path, events: Events) -> None:
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.x509 import load_der_x509_certificate, ocsp  # noqa: PLC0415

    w = _world(tmp_path, events, "revoke")
    serial = _cosign(w, T)
    leaf = load_der_x509_certificate(w.ledger.get(serial).certificate_der)  # type: ignore[union-attr]
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(leaf, w.ca.certificate, hashes.SHA1())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    good = ocsp.load_der_ocsp_response(w.ca.ocsp(request, now=T))
    assert good.certificate_status == ocsp.OCSPCertStatus.GOOD  # and now cached
    w.repo.rotate_key()
    w.ca.sweep(T)
    answer = ocsp.load_der_ocsp_response(w.ca.ocsp(request, now=T))
    assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason is not None
    assert answer.revocation_reason.value == "superseded"


# --------------------------------------------------------------------- PDS moves


@pytest.mark.parametrize("policy", ["revoke", "flag", "ignore"])
def test_a_pds_moved_to_another_host(tmp_path: Path, events: Events, policy: str) -> None:
    w = _world(tmp_path, events, policy)
    old = _cosign(w, T)
    w.repo.pds_endpoint = "https://pds.example.com:443/some/path"  # the same host: no move
    _cosign(w, T + timedelta(minutes=1))
    assert events.of("did_changed") == []
    w.repo.pds_endpoint = "https://pds2.example.net"
    new = _cosign(w, T + timedelta(minutes=2))
    state = w.ledger.did_state(w.repo.did)
    assert state is not None
    assert state.pds_host == "https://pds2.example.net"
    assert state.signing_key == w.repo.signing_key
    changed = events.of("did_changed")
    if policy == "ignore":
        assert changed == []
    else:
        assert [(e["change"], e["before"], e["after"]) for e in changed] == [
            ("pds", "https://pds.example.com", "https://pds2.example.net")
        ]
    if policy == "revoke":
        assert _reason(w.ca, old) == "superseded"
    else:
        assert w.ca.status_of(old).kind == "good"
    assert w.ca.status_of(new).kind == "good"


def test_a_key_change_and_a_pds_move_at_once(tmp_path: Path, events: Events) -> None:
    w = _world(tmp_path, events, "revoke")
    old = _cosign(w, T)
    w.repo.rotate_key()
    w.repo.pds_endpoint = "https://elsewhere.example.org"
    (observation,) = w.ca.sweep(T + timedelta(minutes=1)).observations
    assert [c.what for c in observation.changes] == ["key", "pds"]
    assert observation.revoked == (old,)
    assert len(events.of("revoked")) == 1  # revoked once, for both changes
    assert [e["change"] for e in events.of("did_changed")] == ["key", "pds"]


# --------------------------------------------------------------------- deactivation


@pytest.mark.parametrize("policy", ["revoke", "flag", "ignore"])
def test_a_deactivated_did_seen_through_a_cosign(
    tmp_path: Path, events: Events, policy: str
) -> None:
    w = _world(tmp_path, events, policy)
    old = _cosign(w, T)
    w.net.deactivate(w.repo.did)
    with pytest.raises(DIDDeactivatedError):
        _cosign(w, T + timedelta(minutes=1))
    state = w.ledger.did_state(w.repo.did)
    assert state is not None
    assert (state.status, state.signing_key, state.updated_at) == (
        "deactivated",
        None,
        T + timedelta(minutes=1),
    )
    changed = events.of("did_changed")
    if policy == "revoke":
        assert _reason(w.ca, old) == "cessationOfOperation"
    else:
        assert w.ca.status_of(old).kind == "good"
    if policy == "ignore":
        assert changed == []
    else:
        assert [(e["change"], e["before"], e["after"]) for e in changed] == [
            ("deactivated", w.repo.signing_key, None)
        ]
    # still gone: no news, no second event
    with pytest.raises(DIDDeactivatedError):
        _cosign(w, T + timedelta(minutes=2))
    swept = w.ca.sweep(T + timedelta(minutes=3)).observations
    if policy == "revoke":
        assert swept == ()  # nothing live is left to sweep
    else:
        assert [(o.outcome, o.changes) for o in swept] == [("gone", ())]
    assert len(events.of("did_changed")) == len(changed)
    assert [e["error"] for e in events.of("refused")] == ["DIDDeactivatedError"] * 2


def test_a_did_first_seen_deactivated_with_live_certificates_is_a_change(
    tmp_path: Path, events: Events
) -> None:
    """Certificates issued before the hold watched DIDs (an upgraded hold): no baseline."""
    plain = make_world(tmp_path)  # no watch: issues, records no state
    serial = _cosign(plain, T)
    ca = HoldCA(plain.ca.state(), ledger=plain.ledger, hold_did=HOLD_DID,
                subject=plain.ca.subject, resolver=plain.net, audit=events.audit,
                on_did_change="revoke")  # fmt: skip
    plain.net.deactivate(plain.repo.did)
    (observation,) = ca.sweep(T).observations
    assert observation.outcome == "gone"
    assert [c.what for c in observation.changes] == ["deactivated"]
    assert _reason(ca, serial) == "cessationOfOperation"
    # ... whereas a first sight of a deactivated DID with nothing live is just recorded
    other = TestRepo.create(now=NOW)
    plain.net.add(other)
    plain.net.deactivate(other.did)
    assert ca.watch is not None
    seen = ca.watch.gone(other.did, DIDDeactivatedError("gone"), now=T)
    assert (seen.outcome, seen.changes) == ("gone", ())
    state = plain.ledger.did_state(other.did)
    assert state is not None
    assert state.status == "deactivated"


def test_a_reactivated_did(tmp_path: Path, events: Events) -> None:
    w = _world(tmp_path, events, "flag")
    _cosign(w, T)
    w.net.deactivate(w.repo.did)
    with pytest.raises(DIDDeactivatedError):
        _cosign(w, T + timedelta(minutes=1))
    w.net.add(w.repo)  # resolvable again (a did:web document back, under some key)
    _cosign(w, T + timedelta(minutes=2))
    assert [(e["change"], e["after"]) for e in events.of("did_changed")] == [
        ("deactivated", None),
        ("reactivated", w.repo.signing_key),
    ]
    state = w.ledger.did_state(w.repo.did)
    assert state is not None
    assert (state.status, state.signing_key) == (
        "active",
        w.repo.signing_key,
    )


# --------------------------------------------------------------------- service auth


def test_service_auth_reports_its_fresh_re_resolution(events: Events) -> None:
    """(The deactivation path is run against the real PLC directory: test_did_changes.)"""
    repo = TestRepo.create(now=NOW)
    net = TestNetwork([repo])
    ledger = MemoryLedger()
    watch = DIDWatch(ledger, events.audit, on_change="flag")
    auth = ServiceAuth(net, ledger, audience=HOLD_DID, observer=watch)
    token = repo.service_token(HOLD_DID, LXM, now=T)
    assert auth.authenticate(f"Bearer {token}", lxm=LXM, now=T) == repo.did
    assert ledger.did_state(repo.did) is None  # a cached resolution is not reported
    old_key = repo.signing_key
    watch.seen(net.resolve(repo.did), now=T)  # the baseline (as an issuance would record)
    repo.rotate_key()  # the resolver's cache still holds the old key
    token = repo.service_token(HOLD_DID, LXM, now=T)
    assert auth.authenticate(f"Bearer {token}", lxm=LXM, now=T + timedelta(seconds=1))
    assert net.calls[-2:] == [("resolve", repo.did), ("resolve-fresh", repo.did)]
    assert [(e["change"], e["before"], e["after"]) for e in events.of("did_changed")] == [
        ("key", old_key, repo.signing_key)
    ]
    state = ledger.did_state(repo.did)
    assert state is not None
    assert state.signing_key == repo.signing_key
    # a forged token: the fresh re-resolution shows nothing new; no event
    forged = TestRepo.create(did=repo.did).service_token(HOLD_DID, LXM, now=T)
    with pytest.raises(AuthenticationError):
        auth.authenticate(f"Bearer {forged}", lxm=LXM, now=T + timedelta(seconds=2))
    assert len(events.of("did_changed")) == 1


# --------------------------------------------------------------------- sweep


def test_sweep_reports_each_did(tmp_path: Path, events: Events) -> None:
    w = _world(tmp_path, events, "revoke")
    rotated, moved, gone, still = (w.net.add(TestRepo.create(now=NOW)) for _ in range(4))
    serials = {repo.did: _cosign(w, T, repo) for repo in (rotated, moved, gone, still)}
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    unknown = TestRepo.create(now=NOW).did  # not on the network: resolution fails
    serials[unknown] = w.ca.issue(unknown, key, now=T)[0].serial_number
    rotated.rotate_key()
    moved.pds_endpoint = "https://pds9.example.net"
    w.net.deactivate(gone.did)
    events.events.clear()
    report = w.ca.sweep(T + timedelta(minutes=5), concurrency=3)
    by_did = {o.did: o for o in report.observations}
    assert [o.did for o in report.observations] == sorted(serials)
    assert by_did[rotated.did].outcome == "changed"
    assert [c.what for c in by_did[moved.did].changes] == ["pds"]
    assert by_did[gone.did].outcome == "gone"
    assert by_did[still.did].outcome == "unchanged"
    assert by_did[unknown].outcome == "failed"
    assert isinstance(by_did[unknown].error, ResolutionError)
    assert report.counts == {"first": 0, "unchanged": 1, "changed": 2, "gone": 1,
                             "stale": 0, "skipped": 0, "failed": 1}  # fmt: skip
    assert sorted(report.revoked) == sorted(serials[d.did] for d in (rotated, moved, gone))
    assert w.ca.status_of(serials[unknown]).kind == "good"  # a failure revokes nothing
    assert w.ca.status_of(serials[still.did]).kind == "good"
    assert _reason(w.ca, serials[gone.did]) == "cessationOfOperation"
    # the JSON and text forms
    data = json.loads(json.dumps(report.to_json()))
    assert data["dids"] == 5
    assert data["counts"]["changed"] == 2
    failed = next(o for o in data["observations"] if o["did"] == unknown)
    assert failed["error"]["type"] == "ResolutionError"
    text = report.summary()
    assert text.startswith("swept 5 DIDs with live certificates: 1 unchanged, 2 changed, 1 gone")
    assert f"{rotated.did}  changed: key" in text
    assert "revoked 1 certificate)" in text
    assert still.did not in text
    # a second sweep: the revoked DIDs have nothing live left; nothing is news
    again = w.ca.sweep(T + timedelta(minutes=6))
    assert {o.did: o.outcome for o in again.observations} == {
        still.did: "unchanged",
        unknown: "failed",
    }
    assert len(events.of("did_changed")) == 3


def test_sweep_of_a_hold_with_nothing_live(tmp_path: Path, events: Events) -> None:
    w = _world(tmp_path, events, "flag")
    report = w.ca.sweep(T)
    assert report.observations == ()
    assert report.counts["unchanged"] == 0
    with pytest.raises(ValueError, match="concurrency"):
        w.ca.sweep(T, concurrency=0)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_resolution_failure_is_not_a_deactivation(tmp_path: Path, events: Events) -> None:
    """Real network failures (HTTPResolver): a refused connection, a refused address."""
    w = _world(tmp_path, events, "revoke")
    serial = _cosign(w, T)
    assert w.ca.watch is not None
    down = HTTPResolver(
        plc_url=f"http://127.0.0.1:{_closed_port()}",
        policy=AddressPolicy.parse("127.0.0.0/8"),
        timeout=2,
    )
    refused = HTTPResolver(plc_url="http://127.0.0.1:9")  # the default policy: public only
    try:
        for resolver, error in ((down, ResolutionError), (refused, AddressRefusedError)):
            (observation,) = w.ca.watch.sweep(resolver, now=T + timedelta(minutes=1)).observations
            assert observation.outcome == "failed"
            assert isinstance(observation.error, error)
            assert not isinstance(observation.error, DIDDeactivatedError)
    finally:
        down.close()
        refused.close()
    state = w.ledger.did_state(w.repo.did)
    assert state is not None
    assert state.status == "active"
    assert w.ca.status_of(serial).kind == "good"
    assert events.of("did_changed") == []
    assert events.of("revoked") == []


# --------------------------------------------------------------------- races


def test_one_change_seen_by_eight_threads_is_acted_on_once(tmp_path: Path, events: Events) -> None:
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite3")
    try:
        w = _world(tmp_path, events, "revoke", ledger=ledger)
        old = [_cosign(w, T + timedelta(seconds=i)) for i in range(3)]
        w.repo.rotate_key()
        events.events.clear()
        barrier = threading.Barrier(8)
        results: list[object] = []

        def cosign() -> None:
            barrier.wait()
            try:
                results.append(_cosign(w, T + timedelta(minutes=1)))
            except Exception as exc:
                results.append(exc)

        threads = [threading.Thread(target=cosign) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(results) == 8
        assert all(isinstance(r, int) for r in results), results
        assert len(events.of("did_changed")) == 1
        assert sorted(e["serial"] for e in events.of("revoked")) == sorted(
            format(s, "x") for s in old
        )
        assert all(w.ca.status_of(s).kind == "good" for s in results)  # type: ignore[arg-type]
        # and eight concurrent sweeps after another rotation: one event again
        w.repo.rotate_key()
        sweeps: list[int] = []
        barrier = threading.Barrier(8)

        def sweep() -> None:
            barrier.wait()
            sweeps.append(len(w.ca.sweep(T + timedelta(minutes=2), concurrency=8).revoked))

        threads = [threading.Thread(target=sweep) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(sweeps) == [0] * 7 + [8]  # one sweep revoked the eight new ones
        assert len(events.of("did_changed")) == 2
        assert len(events.of("revoked")) == 3 + 8
    finally:
        ledger.close()


def test_an_observation_older_than_the_recorded_change_is_ignored(
    tmp_path: Path, events: Events
) -> None:
    """A sweep resolved before the rotation, the gate after: the sweep cannot undo it."""
    w = _world(tmp_path, events, "revoke")
    _cosign(w, T)
    stale: Identity = w.net.resolve(w.repo.did, fresh=True)  # resolved at T + 1 min ...
    w.repo.rotate_key()
    new = _cosign(w, T + timedelta(minutes=2))  # the gate sees the rotation at T + 2 min
    assert w.ca.watch is not None
    observation = w.ca.watch.seen(stale, now=T + timedelta(minutes=1))  # ... reported late
    assert observation.outcome == "stale"
    assert w.ca.status_of(new).kind == "good"
    state = w.ledger.did_state(w.repo.did)
    assert state is not None
    assert state.signing_key == w.repo.signing_key
    assert len(events.of("did_changed")) == 1


# --------------------------------------------------------------------- failures


class FlakyLedger(MemoryLedger):
    """A MemoryLedger whose DID-state writes fail while ``failing`` is set."""

    failing = False

    def put_did_state(self, state: DIDState) -> None:
        if self.failing:
            raise LedgerError("disk I/O error (injected)")
        super().put_did_state(state)


def test_a_ledger_failure_while_recording_refuses_the_issuance(
    tmp_path: Path, events: Events
) -> None:
    ledger = FlakyLedger()
    w = _world(tmp_path, events, "revoke", ledger=ledger)
    old = _cosign(w, T)
    w.repo.rotate_key()
    ledger.failing = True
    with pytest.raises(LedgerError):
        _cosign(w, T + timedelta(minutes=1))
    assert ledger.count() == 1  # nothing issued on knowledge the hold could not record
    assert [e["error"] for e in events.of("refused")] == ["LedgerError"]
    state = ledger.did_state(w.repo.did)
    assert state is not None
    assert state.signing_key != w.repo.signing_key
    assert _reason(w.ca, old) == "superseded"  # the revocation (done first) stands
    ledger.failing = False
    new = _cosign(w, T + timedelta(minutes=3))  # seen again, recorded, issued
    assert w.ca.status_of(new).kind == "good"
    state = ledger.did_state(w.repo.did)
    assert state is not None
    assert state.signing_key == w.repo.signing_key
    assert len(events.of("revoked")) == 1  # the old certificate was revoked once
    # the event: at least once (with the failed attempt, and with the one that recorded it)
    assert [e["action"] for e in events.of("did_changed")] == ["revoked", "revoked"]


def test_a_ledger_failure_in_a_sweep_is_reported_per_did(tmp_path: Path, events: Events) -> None:
    ledger = FlakyLedger()
    w = _world(tmp_path, events, "flag", ledger=ledger)
    other = w.net.add(TestRepo.create(now=NOW))
    _cosign(w, T)
    _cosign(w, T, other)
    other.rotate_key()
    ledger.failing = True
    report = w.ca.sweep(T + timedelta(minutes=1))
    by_did = {o.did: o for o in report.observations}
    assert by_did[w.repo.did].outcome == "unchanged"  # needed no write
    assert by_did[other.did].outcome == "failed"
    assert isinstance(by_did[other.did].error, LedgerError)
    ledger.failing = False
    (again,) = [o for o in w.ca.sweep(T + timedelta(minutes=2)).observations if o.changes]
    assert again.did == other.did
    assert again.action == "flagged"
    # at least once: the flag was raised by the failed attempt and again by the one that
    # recorded it
    assert [e["did"] for e in events.of("did_changed")] == [other.did, other.did]


def test_a_deactivation_that_cannot_be_recorded_still_refuses(
    tmp_path: Path, events: Events
) -> None:
    ledger = FlakyLedger()
    w = _world(tmp_path, events, "flag", ledger=ledger)
    _cosign(w, T)
    w.net.deactivate(w.repo.did)
    ledger.failing = True
    with pytest.raises(DIDDeactivatedError):  # the deactivation, not the ledger's trouble
        _cosign(w, T + timedelta(minutes=1))
    assert ledger.count() == 1


def test_the_watch_checks_its_arguments(events: Events) -> None:
    with pytest.raises(ValueError, match="revoke, flag or ignore"):
        DIDWatch(MemoryLedger(), events.audit, on_change="delete")
    with pytest.raises(ValueError, match="revoke="):
        DIDWatch(MemoryLedger(), events.audit, on_change="revoke")


def test_vouched_identities_are_not_knowledge(tmp_path: Path, events: Events) -> None:
    w = _world(tmp_path, events, "revoke")
    _cosign(w, T)
    assert w.ca.watch is not None
    other = TestRepo.create(did=w.repo.did)  # an operator vouches for some other document
    vouched = Identity.from_document(other.did_document(), w.repo.did, source="vouched")
    assert w.ca.watch.seen(vouched, now=T + timedelta(minutes=1)).outcome == "skipped"
    state = w.ledger.did_state(w.repo.did)
    assert state is not None
    assert state.signing_key == w.repo.signing_key


# --------------------------------------------------------------------- the CLI


def test_holdca_sweep_runs_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("HOLD")]:
        monkeypatch.delenv(name)
    home = str(tmp_path / "hold")
    args = ["--home", home]
    assert main(["init", *args, "--did", HOLD_DID, "--country", "US", "--state", "CA",
                 "--org", "Sweep Hold"]) == 0  # fmt: skip
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    did = TestRepo.create().did
    assert main(["issue", *args, "--did", did, "--public-key", str(pem)]) == 0
    capsys.readouterr()
    # the PLC directory is down: the sweep runs, reports the failure, exits 0
    monkeypatch.setenv("HOLD_PLC_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("HOLD_NETWORK_ALLOW", "127.0.0.0/8")
    monkeypatch.setenv("HOLD_ON_DID_CHANGE", "revoke")
    assert main(["sweep", *args, "--json", "--concurrency", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["dids"], data["counts"]["failed"], data["onDidChange"]) == (1, 1, "revoke")
    assert data["observations"][0]["error"]["type"] == "ResolutionError"
    assert main(["sweep", *args]) == 0
    out = capsys.readouterr().out
    assert out.startswith("swept 1 DIDs with live certificates: 0 unchanged, 1 failed")
    assert "HOLD_ON_DID_CHANGE=revoke" in out
    assert main(["sweep", *args, "--concurrency", "0"]) == 2
    # the sweep could not run: the ledger is not a ledger
    monkeypatch.setenv("HOLD_LEDGER_PATH", str(pem))
    assert main(["sweep", *args]) == 1
    assert "LedgerError" in capsys.readouterr().err


def test_open_hold_wires_the_configured_policy(tmp_path: Path) -> None:
    from holdca.hold import HoldConfig, open_hold  # noqa: PLC0415

    base = {"hold_did": HOLD_DID, "subject_country": "US", "subject_state": "CA",
            "subject_organization": "Hold", "ca_cert_path": tmp_path / "ca.crt",
            "ca_key_path": tmp_path / "keys"}  # fmt: skip
    ca = open_hold(HoldConfig(**base), now=NOW, create=True, resolver=TestNetwork())  # type: ignore[arg-type]
    assert ca.watch is not None
    assert ca.watch.on_change == "flag"
    assert ca.gate is not None
    assert ca.gate.observer is ca.watch
    config = HoldConfig(**base, on_did_change="ignore")  # type: ignore[arg-type]
    assert open_hold(config, now=NOW).watch.on_change == "ignore"  # type: ignore[union-attr]
    replaced = replace(config, on_did_change="revoke")
    assert open_hold(replaced, now=NOW, on_did_change="flag").watch.on_change == "flag"  # type: ignore[union-attr]
