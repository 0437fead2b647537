"""CA-compromise recovery (issue 18): ``recover`` and ``holdca recover``.

The main scenario compromises a hold with 300 live signatures of 30 users (SQLite ledger,
PEM keys, OCSP and CRL served on 127.0.0.1), some records deleted, one user's key rotated
away from their repo, one DID tombstoned; recovers; and checks with holdca's verifier for
every image and with ``notation verify`` for a sample that new signatures verify under the
new root only, old ones fail as revoked, and the records that no longer verify were not
re-signed. Then: crashes and resumes, the dry run, intermediate CAs, the CLI.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from holdca.atproto.cid import CID
from holdca.atproto.identity import Identity
from holdca.cli.main import main
from holdca.demo import notation_verify, revocation_server
from holdca.errors import (
    AuthenticityError,
    ConfigError,
    ResolutionError,
    RevokedError,
)
from holdca.hold import AllowAllAuthorizer, CosignRequest, HoldCA, SQLiteLedger
from holdca.hold.config import HoldConfig
from holdca.hold.ledger import IssuanceLedger, Recovery, RecoveryItem
from holdca.hold.recovery import (
    NO_REGISTRY_CLIENT,
    RecoveredSignature,
    RecoveryError,
    descriptors_from_json,
    recover,
)
from holdca.hold.setup import open_hold
from holdca.keys import KeyStore, MemoryKeyStore
from holdca.keys.pem import PEMKeyStore
from holdca.notation import Descriptor
from holdca.notation.oci import OCILayout
from holdca.notation.trustpolicy import hold_trust_policy
from holdca.notation.truststore import TrustStore, write_trust_policy, write_trust_store
from holdca.notation.verify import revocation_from_crls, verify_envelope
from holdca.testing.atproto import TestRepo
from holdca.testing.network import TestNetwork
from holdca.testing.oci import build_test_image
from tests.hold.conftest import HOLD_DID, SUBJECT
from tests.tools import require_notation

CA_COMPROMISE = "cACompromise"


class Net(TestNetwork):
    """The test network, plus what goes wrong: a DID whose key moved away from its repo,
    DIDs whose directory is unreachable, and a crash after N record fetches."""

    __test__ = False

    def __init__(self) -> None:
        super().__init__()
        self.rotated: dict[str, TestRepo] = {}
        self.down: set[str] = set()
        self.crash_after: int | None = None
        self.record_fetches = 0
        self._count = threading.Lock()

    def resolve(self, did: str, *, fresh: bool = False) -> Identity:
        if did in self.down:
            raise ResolutionError(f"the PLC directory is unreachable for {did} (test)")
        impostor = self.rotated.get(did)
        if impostor is not None:  # the DID document now names a key the repo is not signed by
            return Identity.from_document(impostor.did_document(), did, source="test")
        return super().resolve(did, fresh=fresh)

    def get_record(self, identity: Identity, collection: str, rkey: str) -> bytes:
        with self._count:
            self.record_fetches += 1
            crash = self.crash_after is not None and self.record_fetches > self.crash_after
        if crash:
            raise RuntimeError("simulated crash")
        return super().get_record(identity, collection, rkey)


@dataclass
class Image:
    repo: TestRepo
    uri: str
    descriptor: Descriptor
    content: bytes
    envelope: bytes = field(repr=False)
    serial: int


@dataclass
class Hold:
    ca: HoldCA
    ledger: IssuanceLedger
    store: KeyStore
    net: Net
    images: list[Image]
    layout: OCILayout

    def reopen(self, ledger: IssuanceLedger | None = None) -> HoldCA:
        """The hold as a new process would open it (from the ledger and the key store)."""
        return HoldCA.open(
            self.store,
            ledger or self.ledger,
            hold_did=HOLD_DID,
            subject=SUBJECT,
            now=datetime.now(UTC),
            resolver=self.net,
            authorizer=AllowAllAuthorizer(),
            crl_url=self.ca.crl_url,
            ocsp_url=self.ca.ocsp_url,
        )


def make_hold(
    tmp: Path,
    *,
    users: int,
    per_user: int,
    now: datetime,
    store: KeyStore | None = None,
    base_url: str = "http://127.0.0.1:9",
    ledger: IssuanceLedger | None = None,
    **options: Any,
) -> Hold:
    """A hold on a SQLite ledger with ``users * per_user`` live co-signatures."""
    net = Net()
    store = store if store is not None else MemoryKeyStore()
    ledger = ledger if ledger is not None else SQLiteLedger(tmp / "ledger.sqlite3")
    ca = HoldCA.open(
        store,
        ledger,
        hold_did=HOLD_DID,
        subject=SUBJECT,
        now=now,
        create=True,
        resolver=net,
        authorizer=AllowAllAuthorizer(),
        crl_url=f"{base_url}/ca.crl",
        ocsp_url=f"{base_url}/ocsp",
        **options,
    )
    layout = OCILayout.create(tmp / "images")
    pending: list[tuple[TestRepo, str, Descriptor, bytes]] = []
    for u in range(users):
        repo = net.add(TestRepo.create(curve="p256" if u % 3 == 0 else "k256", now=now))
        for i in range(per_user):
            content = f"user {u} image {i}\n".encode()
            descriptor = build_test_image(layout, tag=None, content=content)
            manifest = layout.get_blob(descriptor.digest)
            blob = {
                "$type": "blob",
                "ref": CID.for_raw(manifest),
                "mimeType": descriptor.media_type,
                "size": descriptor.size,
            }
            uri = repo.put_manifest(
                descriptor.digest,
                repository=f"user{u}/app{i % 3}",
                hold_did=HOLD_DID,
                extra={"manifestBlob": blob},
            )
            pending.append((repo, uri, descriptor, content))
    images: list[Image] = []
    for start in range(0, len(pending), 50):
        batch = pending[start : start + 50]
        requests = [
            CosignRequest(did=r.did, descriptor=d, record_uri=uri, caller=r.did)
            for r, uri, d, _ in batch
        ]
        for (repo, uri, descriptor, content), resp in zip(
            batch, ca.cosign_many(requests, now=now), strict=True
        ):
            assert not isinstance(resp, Exception), resp
            images.append(Image(repo, uri, descriptor, content, resp.envelope, resp.serial))
    return Hold(ca, ledger, store, net, images, layout)


def prebuild(hold: Hold) -> None:
    """Sign every repo's current commit once (TestRepo builds lazily, not thread-safe)."""
    for image in hold.images:
        _ = image.repo.commit_cid


def holdca_verify(
    envelope: bytes,
    descriptor: Descriptor,
    roots: list[x509.Certificate],
    crls: list[x509.CertificateRevocationList],
    when: datetime,
) -> None:
    """holdca's verifier with notation's strict semantics, revocation from ``crls``."""
    verify_envelope(
        envelope,
        statement=hold_trust_policy(store="hold").applicable("local/app"),
        trust_store=TrustStore({("ca", "hold"): roots}),
        now=when,
        descriptor=descriptor,
        revocation=revocation_from_crls(crls, now=when),
    )


def signature_files(out: Path) -> dict[str, dict[str, Any]]:
    """``item.json`` of every written signature, by old serial (hex)."""
    return {
        p.parent.name: json.loads(p.read_text()) for p in (out / "signatures").glob("*/item.json")
    }


def ocsp_status(ca: HoldCA, cert: x509.Certificate, issuer: x509.Certificate) -> Any:
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    answer = ocsp.load_der_ocsp_response(
        ca.ocsp(req.public_bytes(serialization.Encoding.DER), now=datetime.now(UTC))
    )
    assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    return answer


# ---------------------------------------------------------------------- the main scenario


@pytest.fixture
def served() -> Iterator[tuple[str, Any]]:
    with revocation_server() as (base, attach):
        yield base, attach


@pytest.mark.slow
def test_recover_300_signatures_of_30_users(tmp_path: Path, served: tuple[str, Any]) -> None:
    base, attach = served
    now = datetime.now(UTC)  # notation verifies at the real time
    hold = make_hold(
        tmp_path,
        users=30,
        per_user=10,
        now=now,
        store=PEMKeyStore(tmp_path / "keys"),
        base_url=base,
    )
    attach(hold.ca)
    ca, ledger, net = hold.ca, hold.ledger, hold.net
    old_root = ca.root_certificate
    old_id = ca.ca_id
    # one image re-signed before the compromise: two live certificates, one image
    again = hold.images[5]
    twice = ca.resign(
        CosignRequest(
            did=again.repo.did,
            descriptor=again.descriptor,
            record_uri=again.uri,
            caller=again.repo.did,
        ),
        now=now,
    )
    # meanwhile: 12 records deleted (users 1..12, their image 3), user 13's DID key moved
    # away from its repo, user 14's DID tombstoned
    deleted = [hold.images[u * 10 + 3] for u in range(1, 13)]
    for image in deleted:
        image.repo.delete_record(image.uri)
    rotated = hold.images[130].repo
    net.rotated[rotated.did] = TestRepo.create(did=rotated.did)
    tombstoned = hold.images[140].repo
    net.deactivate(tombstoned.did)
    prebuild(hold)
    issued_before = ledger.count()
    assert len(ledger.live(now, issuer_id=old_id)) == 301

    later = datetime.now(UTC)
    out = tmp_path / "out"
    clock = time.monotonic()
    report = recover(ca, now=later, out_dir=out, new_label="hold-root-r2", concurrency=4)
    took = time.monotonic() - clock
    print(
        f"\nrecovery: {report.certificates} certificates, {len(report.images)} images, "
        f"{report.resigned} re-signed, {report.refused} refused in {took:.2f} s"
    )

    # the report
    assert report.finished
    assert report.certificates == 301
    assert report.revoked == 301
    assert len(report.images) == 300
    assert (report.resigned, report.refused, report.pending) == (268, 32, 0)
    refused = {i.record_uri: i.detail or "" for i in report.images if i.status == "refused"}
    for image in deleted:
        assert refused[image.uri].startswith("RecordAbsentError")
    assert sum(d.startswith("SignatureInvalidError") for d in refused.values()) == 10
    assert sum(d.startswith("DIDDeactivatedError") for d in refused.values()) == 10
    assert report.push == NO_REGISTRY_CLIENT

    # the CA state: compromised at once, a new root that the old key never signed
    new_root = ca.root_certificate
    assert new_root != old_root
    assert [c.ca_id for c in report.compromised] == [old_id]
    states = {r.ca_id: r for r in ledger.cas()}
    assert states[old_id].state == "compromised"
    assert states[ca.ca_id].state == "active"
    assert states[ca.ca_id].cross_certificates_der == ()
    assert ca.trust_bundle(later) == [new_root]
    assert ca.cross_certificates(later) == []
    assert new_root.issuer == new_root.subject
    new_root.verify_directly_issued_by(new_root)
    assert (tmp_path / "keys" / "hold-root-r2.pem").is_file()

    # the ledger: every old certificate revoked (cACompromise), nothing live under it,
    # one new certificate per re-signed image and none for the refused ones
    assert ledger.live(later, issuer_id=old_id) == []
    crl_old = ca.crl(later, ca_id=old_id)
    assert crl_old.is_signature_valid(old_root.public_key())  # type: ignore[arg-type]
    for serial in [*(i.serial for i in hold.images), twice.serial]:
        rev = ledger.revocation(serial)
        assert rev is not None
        assert rev.reason == CA_COMPROMISE
        entry = crl_old.get_revoked_certificate_by_serial_number(serial)
        assert entry is not None
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        assert reason is x509.ReasonFlags.ca_compromise
    new_rows = [r for r in ledger.live(later, issuer_id=ca.ca_id)]
    assert len(new_rows) == 268 == ledger.count() - issued_before
    assert {r.kind for r in new_rows} == {"resign"}
    assert {r.proof_source for r in new_rows} == {"live"}
    refused_uris = set(refused)
    assert not refused_uris & {r.record_uri for r in new_rows}
    (recovery,) = ledger.recoveries()
    assert recovery.finished_at is not None
    items = ledger.recovery_items(recovery.id)
    assert len(items) == 301
    assert {i.status for i in items} == {"resigned", "refused"}

    # the files: one signature per re-signed image, none for the refused
    written = signature_files(out)
    assert len(written) == 268
    assert {w["recordUri"] for w in written.values()}.isdisjoint(refused_uris)
    by_uri = {w["recordUri"]: (key, w) for key, w in written.items()}
    bundle = x509.load_pem_x509_certificates((out / "trust-bundle.pem").read_bytes())
    assert bundle == [new_root]
    notice = json.loads((out / "notice.json").read_text())
    assert notice["counts"]["resigned"] == 268
    assert notice["compromised"][0]["caId"] == old_id
    assert notice["newCa"]["caId"] == ca.ca_id
    assert len(notice["users"]) == 30
    assert len(notice["users"][deleted[0].repo.did]["refused"]) == 1
    assert len(notice["users"][deleted[0].repo.did]["resigned"]) == 9
    text = (out / "notice.txt").read_text()
    assert old_id[:16] in text.replace(":", "").lower()
    assert "remove the compromised root" in text
    assert (out / "crl" / f"{old_id[:16]}.crl").is_file()

    # holdca's verifier, every image: new signatures verify under the new root only,
    # old ones fail as revoked
    when = datetime.now(UTC)
    crls = [ca.crl(when), ca.crl(when, ca_id=old_id)]
    for image in hold.images:
        with pytest.raises(RevokedError):
            holdca_verify(image.envelope, image.descriptor, [old_root], crls, when)
        if image.uri in refused_uris:
            assert image.uri not in by_uri
            continue
        key, meta = by_uri[image.uri]
        envelope = (out / "signatures" / key / "envelope.jws").read_bytes()
        assert Descriptor.from_json(meta["image"]) == image.descriptor
        holdca_verify(envelope, image.descriptor, [new_root], crls, when)
        with pytest.raises(AuthenticityError):
            holdca_verify(envelope, image.descriptor, [old_root], crls, when)
        manifest = json.loads((out / "signatures" / key / "signature-manifest.json").read_bytes())
        assert manifest["subject"]["digest"] == image.descriptor.digest

    # OCSP from the hold (what notation asks first): old leaves revoked, new ones good
    old_leaf = x509.load_der_x509_certificate(ledger.get(hold.images[0].serial).certificate_der)  # type: ignore[union-attr]
    answer = ocsp_status(ca, old_leaf, old_root)
    assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason is x509.ReasonFlags.ca_compromise
    new_leaf = x509.load_der_x509_certificate(new_rows[0].certificate_der)
    assert ocsp_status(ca, new_leaf, new_root).certificate_status == ocsp.OCSPCertStatus.GOOD

    # notation, a sample: two re-signed images and a deleted one
    notation = require_notation()
    configs = {}
    for name, roots in (("old", [old_root]), ("new", [new_root]), ("both", [old_root, new_root])):
        configs[name] = tmp_path / f"notation-{name}"
        write_trust_store(configs[name], "hold", roots)
        write_trust_policy(configs[name], hold_trust_policy(store="hold"))
    for n, image in enumerate([hold.images[0], hold.images[77], deleted[0]]):
        old_layout = OCILayout.create(tmp_path / f"old-{n}")
        assert build_test_image(old_layout, content=image.content) == image.descriptor
        old_layout.attach_signature(image.descriptor, image.envelope)
        for name in ("old", "both"):
            ok, output = notation_verify(
                notation, configs[name], old_layout.path, image.descriptor.digest
            )
            assert not ok, output
            assert "revoked" in output.lower(), output
        if image is deleted[0]:
            continue
        key, _ = by_uri[image.uri]
        new_layout = OCILayout.create(tmp_path / f"new-{n}")
        build_test_image(new_layout, content=image.content)
        new_layout.attach_signature(
            image.descriptor, (out / "signatures" / key / "envelope.jws").read_bytes()
        )
        ok, output = notation_verify(
            notation, configs["new"], new_layout.path, image.descriptor.digest
        )
        assert ok, output
        ok, output = notation_verify(
            notation, configs["old"], new_layout.path, image.descriptor.digest
        )
        assert not ok, output


# ---------------------------------------------------------------------- crashes, resume


class CrashingLedger(SQLiteLedger):
    """A ledger whose Nth ``resigned`` item update, or whose start_recovery, fails."""

    def __init__(self, path: Path, *, fail_item: int | None = None, fail_start: bool = False):
        super().__init__(path)
        self.fail_item = fail_item
        self.fail_start = fail_start
        self.updates = 0
        self._guard = threading.Lock()

    def set_recovery_item(self, item: RecoveryItem) -> None:
        with self._guard:
            self.updates += item.status == "resigned"
            crash = self.fail_item is not None and self.updates >= self.fail_item
        if crash:
            raise RuntimeError("simulated crash after the signature was written")
        super().set_recovery_item(item)

    def start_recovery(self, old_ca: str, new_ca: str, serials: Any, *, now: datetime) -> Recovery:
        if self.fail_start:
            raise RuntimeError("simulated crash before the recovery was recorded")
        return super().start_recovery(old_ca, new_ca, serials, now=now)


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=2)


def test_a_crash_midway_then_resume_finishes_without_duplicates(tmp_path: Path) -> None:
    hold = make_hold(tmp_path, users=8, per_user=5, now=NOW)
    hold.images[7].repo.delete_record(hold.images[7].uri)
    prebuild(hold)
    old_id = hold.ca.ca_id
    out = tmp_path / "out"

    # run 1 dies in the middle of re-signing (after the revocations)
    hold.net.record_fetches = 0
    hold.net.crash_after = 12  # two fetches an image: the pre-read and the gate's
    with pytest.raises(RuntimeError, match="simulated crash"):
        recover(hold.ca, now=LATER, out_dir=out, new_label="r2", concurrency=3)
    hold.net.crash_after = None
    (recovery,) = hold.ledger.recoveries(open_only=True)
    items = hold.ledger.recovery_items(recovery.id)
    first = {i.serial for i in items if i.status != "pending"}
    assert 0 < len(first) < 40
    assert all(hold.ledger.revocation(i.serial) is not None for i in items)
    new_id = recovery.new_ca
    # starting again instead of resuming is refused: no second new CA
    with pytest.raises(RecoveryError, match="resume"):
        recover(hold.reopen(), now=LATER, out_dir=out, new_label="r3")
    # resuming into another directory is refused (it would re-sign what is written)
    with pytest.raises(RecoveryError, match="directory"):
        recover(hold.reopen(), now=LATER, out_dir=tmp_path / "elsewhere", resume=True)

    # run 2, a new process: dies after writing a signature, before the ledger knows
    crashing = CrashingLedger(tmp_path / "ledger.sqlite3", fail_item=4)
    with pytest.raises(RuntimeError, match="after the signature"):
        recover(hold.reopen(crashing), now=LATER, out_dir=out, resume=True, concurrency=1)
    crashing.close()
    written_before = signature_files(out)
    unmarked = {i.serial for i in hold.ledger.recovery_items(recovery.id) if i.status == "pending"}
    # the crash left a written signature whose item the ledger still has pending
    assert {int(k, 16) for k in written_before} & unmarked

    # run 3 finishes
    ca = hold.reopen()
    report = recover(ca, now=LATER + timedelta(minutes=5), out_dir=out, resume=True)
    assert report.finished
    assert (report.resigned, report.refused, report.pending) == (39, 1, 0)
    assert ca.ca_id == new_id
    assert [r.state for r in hold.ledger.cas()] == ["compromised", "active"]
    assert len(hold.ledger.recoveries()) == 1
    # no duplicates: exactly one new certificate per re-signed image, and the signature
    # written by run 2 was adopted, not made again
    new_rows = hold.ledger.live(LATER, issuer_id=new_id)
    assert len(new_rows) == 39
    assert len({r.record_uri for r in new_rows}) == 39
    written = signature_files(out)
    assert len(written) == 39
    for key, meta in written_before.items():
        assert written[key]["newSerial"] == meta["newSerial"]
    final = {i.serial: i for i in hold.ledger.recovery_items(recovery.id)}
    assert {format(i.new_serial, "x") for i in final.values() if i.new_serial} == {
        w["newSerial"] for w in written.values()
    }
    assert hold.ledger.live(LATER, issuer_id=old_id) == []
    with pytest.raises(RecoveryError, match="no open recovery"):
        recover(ca, now=LATER, out_dir=out, resume=True)


def test_a_crash_between_replacing_the_ca_and_opening_the_recovery(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    crashing = CrashingLedger(path, fail_start=True)
    hold = make_hold(tmp_path, users=3, per_user=3, now=NOW, ledger=crashing)
    prebuild(hold)
    old_id = hold.ca.ca_id
    with pytest.raises(RuntimeError, match="before the recovery"):
        recover(hold.ca, now=LATER, out_dir=tmp_path / "out", new_label="r2")
    crashing.close()
    ledger = SQLiteLedger(path)
    ca = hold.reopen(ledger)
    assert ca.state().former[0].ca_id == old_id  # compromised, but no recovery yet
    assert ledger.recoveries() == []
    with pytest.raises(RecoveryError, match="never started"):
        recover(ca, now=LATER, out_dir=tmp_path / "out", new_label="r3")
    dry = recover(ca, now=LATER, out_dir=None, resume=True, dry_run=True)
    assert dry.resigned == 9
    report = recover(ca, now=LATER, out_dir=tmp_path / "out", resume=True)
    assert report.finished
    assert report.resigned == 9
    assert [r.state for r in ledger.cas()] == ["compromised", "active"]
    (recovery,) = ledger.recoveries()
    assert recovery.old_ca == old_id
    assert recovery.new_ca == ca.ca_id
    ledger.close()


def test_transient_failures_stay_pending_and_give_up_finishes(tmp_path: Path) -> None:
    hold = make_hold(tmp_path, users=4, per_user=2, now=NOW)
    prebuild(hold)
    down = hold.images[0].repo.did
    hold.net.down.add(down)
    out = tmp_path / "out"
    report = recover(hold.ca, now=LATER, out_dir=out, new_label="r2")
    assert not report.finished
    assert (report.resigned, report.pending) == (6, 2)
    assert all(down in e for e in report.errors)
    assert hold.ledger.recoveries(open_only=True)
    report = recover(hold.ca, now=LATER, out_dir=out, resume=True, give_up=True)
    assert report.finished
    assert (report.resigned, report.refused, report.pending) == (6, 2, 0)
    refused = [i for i in report.images if i.status == "refused"]
    assert all((i.detail or "").startswith("given up (") for i in refused)
    assert all("ResolutionError" in (i.detail or "") for i in refused)


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    store = PEMKeyStore(tmp_path / "keys")
    hold = make_hold(tmp_path, users=5, per_user=4, now=NOW, store=store)
    hold.images[2].repo.delete_record(hold.images[2].uri)
    prebuild(hold)
    ledger = hold.ledger
    before = (ledger.count(), ledger.cas(), ledger.recoveries(), sorted(store.labels()))
    out = tmp_path / "out"
    report = recover(hold.ca, now=LATER, out_dir=out, new_label="r2", dry_run=True)
    assert report.dry_run
    assert (report.certificates, report.resigned, report.refused) == (20, 19, 1)
    assert report.new_label == "r2"
    assert [c.ca_id for c in report.compromised] == [hold.ca.ca_id]
    after = (ledger.count(), ledger.cas(), ledger.recoveries(), sorted(store.labels()))
    assert after == before
    assert all(ledger.revocation(i.serial) is None for i in hold.images)
    assert not out.exists()
    assert len(ledger.live(LATER)) == 20


def test_descriptors_from_a_file_when_records_state_no_size(tmp_path: Path) -> None:
    hold = make_hold(tmp_path, users=2, per_user=2, now=NOW)
    # a record without manifestBlob: its size is unknown
    image = hold.images[0]
    record = image.repo.records[image.uri.split("/", 3)[3]]
    del record["manifestBlob"]
    image.repo.put_record("io.atcr.manifest", record, image.uri.rsplit("/", 1)[1])
    prebuild(hold)
    dry = recover(hold.ca, now=LATER, out_dir=None, new_label="r2", dry_run=True)
    (refused,) = [i for i in dry.images if i.status == "would-refuse"]
    assert "--descriptors" in (refused.detail or "")
    source = descriptors_from_json(json.dumps([image.descriptor.to_json()]))
    report = recover(
        hold.ca, now=LATER, out_dir=tmp_path / "out", new_label="r2", descriptors=source
    )
    assert (report.resigned, report.refused) == (4, 0)


def test_a_publisher_receives_every_signature(tmp_path: Path) -> None:
    hold = make_hold(tmp_path, users=2, per_user=3, now=NOW)
    prebuild(hold)
    got: list[RecoveredSignature] = []

    class Registry:
        def publish(self, signature: RecoveredSignature) -> str:
            got.append(signature)
            return f"registry.example.com/{signature.repository}@{signature.image.digest}"

    report = recover(
        hold.ca, now=LATER, out_dir=tmp_path / "out", new_label="r2", publisher=Registry()
    )
    assert report.pushed == 6
    assert {s.image.digest for s in got} == {i.descriptor.digest for i in hold.images}
    assert all(json.loads(s.signature_manifest)["subject"]["digest"] == s.image.digest for s in got)


# ---------------------------------------------------------------------- intermediates


def test_a_compromised_intermediate_is_replaced_under_the_kept_root(
    tmp_path: Path, served: tuple[str, Any]
) -> None:
    base, attach = served
    now = datetime.now(UTC)
    hold = make_hold(
        tmp_path,
        users=4,
        per_user=5,
        now=now,
        base_url=base,
        intermediate_label="hold-issuing",
    )
    ca = hold.ca
    attach(ca)
    root, old_inter = ca.root_certificate, ca.certificate
    old_id, root_id = ca.ca_id, ca.state().roots[0].ca_id
    hold.images[3].repo.delete_record(hold.images[3].uri)
    hold.images[9].repo.delete_record(hold.images[9].uri)
    prebuild(hold)
    later = datetime.now(UTC)
    out = tmp_path / "out"
    report = recover(ca, now=later, out_dir=out, new_label="hold-issuing-2")
    assert report.finished
    assert (report.resigned, report.refused) == (18, 2)
    # the root stays, a new intermediate is issued under it by the root key
    new_inter = ca.certificate
    assert ca.root_certificate == root
    assert new_inter != old_inter
    new_inter.verify_directly_issued_by(root)
    assert ca.state().chain_suffix == (new_inter, root)
    states = {r.ca_id: r.state for r in hold.ledger.cas()}
    assert states == {root_id: "root", old_id: "compromised", ca.ca_id: "active"}
    assert ca.trust_bundle(later) == [root]
    assert [c.role for c in report.compromised] == ["intermediate"]
    # the root's CRL revokes the old intermediate; OCSP from the root says so too
    root_crl = ca.crl(later, ca_id=root_id)
    assert root_crl.is_signature_valid(root.public_key())  # type: ignore[arg-type]
    entry = root_crl.get_revoked_certificate_by_serial_number(old_inter.serial_number)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.ca_compromise
    assert ocsp_status(ca, old_inter, root).certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert (out / "crl" / f"{root_id[:16]}.crl").is_file()
    # every old leaf revoked on the old intermediate's CRL; new ones verify under the root
    when = datetime.now(UTC)
    crls = [ca.crl(when), ca.crl(when, ca_id=old_id), root_crl]
    by_uri = {w["recordUri"]: k for k, w in signature_files(out).items()}
    for image in hold.images:
        with pytest.raises(RevokedError):
            holdca_verify(image.envelope, image.descriptor, [root], crls, when)
        if image.uri in by_uri:
            envelope = (out / "signatures" / by_uri[image.uri] / "envelope.jws").read_bytes()
            holdca_verify(envelope, image.descriptor, [root], crls, when)
    assert len(by_uri) == 18
    # reopened from the ledger, the hold keeps issuing from the new intermediate
    again = hold.reopen()
    assert again.state().chain_suffix == (new_inter, root)
    assert [ca.ca_id for ca in again.state().former] == [old_id]

    # notation, trusting the (kept) root: the old signature is revoked, the new one verifies
    notation = require_notation()
    config = tmp_path / "notation"
    write_trust_store(config, "hold", [root])
    write_trust_policy(config, hold_trust_policy(store="hold"))
    image = hold.images[0]
    for name, envelope, expect in (
        ("old", image.envelope, False),
        ("new", (out / "signatures" / by_uri[image.uri] / "envelope.jws").read_bytes(), True),
    ):
        layout = OCILayout.create(tmp_path / f"inter-{name}")
        build_test_image(layout, content=image.content)
        layout.attach_signature(image.descriptor, envelope)
        ok, output = notation_verify(notation, config, layout.path, image.descriptor.digest)
        assert ok is expect, output
        if not expect:
            assert "revoked" in output.lower(), output


def test_an_intermediate_hold_whose_root_is_compromised_too(tmp_path: Path) -> None:
    hold = make_hold(tmp_path, users=2, per_user=3, now=NOW, intermediate_label="hold-issuing")
    ca = hold.ca
    old_root, old_inter = ca.root_certificate, ca.certificate
    prebuild(hold)
    with pytest.raises(ConfigError, match="new_root_label"):
        ca.compromise(new_label="x", now=LATER, root=True)
    report = recover(
        ca,
        now=LATER,
        out_dir=tmp_path / "out",
        new_label="hold-issuing-2",
        root=True,
        new_root_label="hold-root-2",
    )
    assert report.finished
    assert report.resigned == 6
    new_root = ca.root_certificate
    assert new_root not in (old_root, old_inter)
    ca.certificate.verify_directly_issued_by(new_root)
    assert ca.trust_bundle(LATER) == [new_root]
    assert sorted(c.role for c in report.compromised) == ["intermediate", "root"]
    states = sorted(r.state for r in hold.ledger.cas())
    assert states == ["active", "compromised", "compromised", "root"]
    crls = [ca.crl(LATER), ca.crl(LATER, ca_id=report.compromised[0].ca_id)]
    for image in hold.images:
        with pytest.raises(AuthenticityError):  # the old root is no longer trusted
            holdca_verify(image.envelope, image.descriptor, [new_root], crls, LATER)


def test_a_rotation_grace_period_ends_with_the_compromise(tmp_path: Path) -> None:
    """The root still published by a rotation cross-certified the compromised one: it is
    retired too, and its live leaves are re-signed (revoked as superseded)."""
    hold = make_hold(tmp_path, users=2, per_user=2, now=NOW)
    ca = hold.ca
    first_id = ca.ca_id
    ca.rotate(new_label="hold-root-2", now=NOW + timedelta(minutes=1))
    rotated_id = ca.ca_id
    image = hold.images[0]
    after = ca.resign(
        CosignRequest(
            did=image.repo.did,
            descriptor=image.descriptor,
            record_uri=image.uri,
            caller=image.repo.did,
        ),
        now=NOW + timedelta(minutes=2),
    )
    prebuild(hold)
    report = recover(ca, now=LATER, out_dir=tmp_path / "out", new_label="hold-root-3")
    assert report.finished
    assert [c.ca_id for c in report.compromised] == [rotated_id]
    assert [c.ca_id for c in report.retired] == [first_id]
    assert (report.certificates, len(report.images), report.resigned) == (5, 4, 4)
    states = {r.ca_id: r.state for r in hold.ledger.cas()}
    assert states == {first_id: "retired", rotated_id: "compromised", ca.ca_id: "active"}
    assert ca.trust_bundle(LATER) == [ca.root_certificate]
    assert ca.state(LATER).published == ()
    assert ca.state(LATER).chain_suffix == (ca.root_certificate,)
    reasons = {i.serial: hold.ledger.revocation(i.serial).reason for i in hold.images}  # type: ignore[union-attr]
    assert set(reasons.values()) == {"superseded"}
    assert hold.ledger.revocation(after.serial).reason == CA_COMPROMISE  # type: ignore[union-attr]
    notice = (tmp_path / "out" / "notice.txt").read_text()
    assert "remove the retired root" in notice


# ---------------------------------------------------------------------- the CLI


def _init_home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    home = tmp_path / "hold"
    code = main(
        [
            "init",
            "--home",
            str(home),
            "--did",
            HOLD_DID,
            "--country",
            "US",
            "--state",
            "CA",
            "--org",
            "Example Hold",
            "--ocsp-url",
            "http://127.0.0.1:9/ocsp",
        ]
    )
    assert code == 0
    capsys.readouterr()
    return home


def test_cli_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _init_home(tmp_path, capsys)
    env = {
        "HOLD_CA_CERT_PATH": str(home / "ca.crt"),
        "HOLD_CA_KEY_PATH": str(home / "keys"),
        "HOLD_LEDGER_PATH": str(home / "ledger.sqlite3"),
        **json.loads((home / "hold.json").read_text()),
    }
    ledger = SQLiteLedger(home / "ledger.sqlite3")
    ca = open_hold(HoldConfig.from_env(env), now=datetime.now(UTC), ledger=ledger)
    hold = make_hold(
        tmp_path,
        users=3,
        per_user=4,
        now=datetime.now(UTC),
        store=PEMKeyStore(home / "keys"),
        ledger=ledger,
    )
    assert hold.ca.ca_id == ca.ca_id  # make_hold opened the CA `holdca init` made
    old_id = ca.ca_id
    hold.images[1].repo.delete_record(hold.images[1].uri)
    down = hold.images[11].repo.did  # user 2: its directory is unreachable at first
    hold.net.down.add(down)
    prebuild(hold)
    ledger.close()
    monkeypatch.setattr("holdca.hold.setup.resolver_from_config", lambda config: hold.net)
    out = tmp_path / "out"

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["recover", "--home", str(home), *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    # usage errors: exit 2
    assert run("--out", str(out))[0] == 2  # neither --compromised nor --resume
    assert run("--compromised", "--resume", "--out", str(out))[0] == 2
    code, _, err = run("--compromised")
    assert code == 2
    assert "--out" in err
    assert run("--compromised", "--out", str(out), "--concurrency", "0")[0] == 2
    # nothing to resume: exit 1
    code, _, err = run("--resume", "--out", str(out))
    assert code == 1
    assert "no open recovery" in err

    # the dry run
    code, stdout, _ = run("--compromised", "--dry-run", "--json")
    assert code == 0
    plan = json.loads(stdout)
    assert plan["dryRun"] is True
    assert plan["counts"] == {
        "certificates": 12,
        "revoked": 0,
        "images": 12,
        "resigned": 7,
        "refused": 1,
        "pending": 4,
        "late": 0,
    }
    assert not out.exists()

    # the recovery: user 2 pending (transient), so not finished: exit 1
    code, stdout, _ = run(
        "--compromised", "--out", str(out), "--new-label", "hold-root-2", "--json"
    )
    assert code == 1, stdout
    report = json.loads(stdout)
    assert report["finished"] is False
    assert report["counts"]["resigned"] == 8 - 1
    assert report["counts"]["pending"] == 4
    assert report["compromised"][0]["caId"] == old_id
    assert report["push"] == NO_REGISTRY_CLIENT
    new_id = report["newCa"]["caId"]
    assert (home / "keys" / "hold-root-2.pem").is_file()
    new_root = x509.load_pem_x509_certificates((home / "ca.crt").read_bytes())
    assert [c.fingerprint(hashes.SHA256()).hex() for c in new_root] == [new_id]
    bundle = x509.load_pem_x509_certificates((home / "ca-bundle.crt").read_bytes())
    assert bundle == new_root
    # starting again is refused while the recovery is open
    code, _, err = run("--compromised", "--out", str(tmp_path / "other"))
    assert code == 1
    assert "resume" in err

    # the directory is back: --resume finishes (text output), exit 0
    hold.net.down.clear()
    code, stdout, _ = run("--resume", "--out", str(out))
    assert code == 0, stdout
    assert "finished" in stdout
    assert "restart every `holdca serve`" in stdout
    assert "issue 14" in stdout
    notice = json.loads((out / "notice.json").read_text())
    assert notice["finished"] is True
    assert notice["counts"]["resigned"] == 11
    assert notice["counts"]["refused"] == 1
    assert notice["newCa"]["caId"] == new_id
    assert len(signature_files(out)) == 11
    ledger = SQLiteLedger(home / "ledger.sqlite3")
    assert sorted(r.state for r in ledger.cas()) == ["active", "compromised"]
    assert len(ledger.live(datetime.now(UTC), issuer_id=new_id)) == 11
    ledger.close()
