"""Every issuance is logged before it is returned (holdca issue 15, the issuance path).

Oracles: the inclusion proofs are checked with holdca.tlog's RFC 6962 verifier against the
checkpoint the response carries (its signature checked with the log key) *and* by the Go
verifier (golang.org/x/mod sumdb/tlog + transparency-dev/merkle) over the published
directory; the entries are rebuilt from the certificate and the ATProto record the test
itself created; notation verifies the annotated signature manifest.
"""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from holdca.demo import notation_verify
from holdca.errors import LedgerError, SignerError
from holdca.hold import CosignResponse, SQLiteLedger
from holdca.hold.translog import IssuanceLog
from holdca.keys import MemoryEd25519Signer
from holdca.notation.trustpolicy import hold_trust_policy
from holdca.notation.truststore import write_trust_policy, write_trust_store
from holdca.tlog import (
    CertificateEntry,
    DirectoryLog,
    Ed25519NoteSigner,
    RevocationEntry,
    iter_entries,
    leaf_hash,
    open_checkpoint,
    parse_entry,
    verify_inclusion,
)
from holdca.tlog.monitor import MonitorState, run_monitor
from tests.hold.conftest import NOW, World, make_world
from tests.tlog.conftest import ORIGIN, run_goverify
from tests.tlog.monitor_support import MonitorWorld
from tests.tools import require_notation


def _log(root: Path) -> IssuanceLog:
    return IssuanceLog(root, Ed25519NoteSigner(ORIGIN, MemoryEd25519Signer.generate()))


def _world(tmp_path: Path, **options: object) -> tuple[World, IssuanceLog]:
    log = _log(tmp_path / "log")
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite3")
    return make_world(tmp_path, ledger=ledger, transparency=log, **options), log


def _expected_entry(w: World, r: CosignResponse) -> bytes:
    """The entry, from the certificate and the record this test put in the user's repo."""
    return CertificateEntry(
        r.certificate.public_bytes(serialization.Encoding.DER),
        w.repo.did,
        w.uri,
        str(r.verified.commit_cid) if r.verified else "",
        r.verified.rev if r.verified else "",
        w.image.digest,
        "alice/app",
    ).encode()


def _check_receipt(w: World, log: IssuanceLog, r: CosignResponse) -> int:
    receipt = r.log
    assert receipt is not None
    verifier = log.signer.verifier()  # type: ignore[attr-defined]
    checkpoint, _ = open_checkpoint(receipt.checkpoint, [verifier], origin=ORIGIN)
    assert checkpoint.size == receipt.size > receipt.index
    body = r.to_json()
    assert body["logIndex"] == receipt.index
    assert body["logCheckpoint"].encode() == receipt.checkpoint
    proof = [base64.b64decode(h) for h in body["logInclusionProof"]]
    leaf = leaf_hash(_expected_entry(w, r))
    verify_inclusion(leaf, receipt.index, checkpoint.size, proof, checkpoint.root)
    manifest = json.loads(r.signature_manifest)["annotations"]
    assert manifest["io.atcr.log.index"] == str(receipt.index)
    assert manifest["io.atcr.log.checkpoint"] == f"{ORIGIN} {checkpoint.size}"
    return receipt.index


def test_single_batch_and_threaded_cosigns_are_logged_and_proven(
    tmp_path: Path, goverify: str
) -> None:
    w, log = _world(tmp_path)
    indexes = [_check_receipt(w, log, w.ca.cosign(w.request(), now=NOW))]
    batch = w.ca.cosign_many([w.request() for _ in range(5)], now=NOW)
    assert all(isinstance(r, CosignResponse) for r in batch)
    indexes += [_check_receipt(w, log, r) for r in batch if isinstance(r, CosignResponse)]
    assert len({r.log.size for r in batch if isinstance(r, CosignResponse) and r.log}) == 1
    out: list[CosignResponse] = []

    def work() -> None:
        for _ in range(4):
            out.append(w.ca.cosign(w.request(), now=NOW))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    indexes += [_check_receipt(w, log, r) for r in out]
    n = 1 + 5 + 24
    assert sorted(indexes) == list(range(n))
    # fewer checkpoints than cosigns: threads shared integrations
    assert len({r.log.size for r in out if r.log}) < len(out)
    victim = out[0]
    w.ca.revoke(serial=victim.serial, now=NOW + timedelta(minutes=1), reason="superseded")
    # the published log: every issuance, then the revocation
    published = DirectoryLog(tmp_path / "log")
    verifier = log.signer.verifier()  # type: ignore[attr-defined]
    checkpoint, _ = open_checkpoint(published.read_checkpoint(), [verifier])
    assert checkpoint.size == n + 1 == w.ledger.log_size()
    entries = [parse_entry(e) for e in iter_entries(published, checkpoint)]
    serials = {e.x509.serial_number for e in entries if isinstance(e, CertificateEntry)}
    assert serials == {r.serial for r in w.ledger.issuances()}
    assert entries[-1] == RevocationEntry(
        victim.serial, w.repo.did, "superseded", int((NOW + timedelta(minutes=1)).timestamp())
    )
    done = run_goverify(
        goverify, tmp_path / "log", verifier.vkey, "-inclusion", ",".join(map(str, indexes))
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_without_a_log_responses_are_as_before(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    r = w.ca.cosign(w.request(), now=NOW)
    assert r.log is None
    assert "logIndex" not in r.to_json()
    assert "io.atcr.log.index" not in json.loads(r.signature_manifest)["annotations"]


class _FlakySigner:
    """A note signer whose key backend fails while ``broken`` is set."""

    def __init__(self, inner: Ed25519NoteSigner) -> None:
        self.inner = inner
        self.broken = False

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def key_id(self) -> bytes:
        return self.inner.key_id

    def verifier(self) -> object:
        return self.inner.verifier()

    def sign(self, text: bytes) -> bytes:
        if self.broken:
            raise SignerError("the log key is unavailable")
        return self.inner.sign(text)


def test_a_failed_publication_fails_the_cosign_and_the_next_one_publishes_it(
    tmp_path: Path,
) -> None:
    signer = _FlakySigner(Ed25519NoteSigner(ORIGIN, MemoryEd25519Signer.generate()))
    log = IssuanceLog(tmp_path / "log", signer)  # type: ignore[arg-type]
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite3")
    w = make_world(tmp_path, ledger=ledger, transparency=log)
    w.ca.cosign(w.request(), now=NOW)
    signer.broken = True
    with pytest.raises(LedgerError, match="next integration"):
        w.ca.cosign(w.request(), now=NOW)
    assert ledger.count() == 2 == ledger.log_size()  # recorded and sequenced, not handed out
    results = w.ca.cosign_many([w.request()], now=NOW)
    assert isinstance(results[0], LedgerError)
    signer.broken = False
    r = w.ca.cosign(w.request(), now=NOW)
    assert r.log is not None
    assert r.log.index == 3
    assert r.log.size == 4  # the two unpublished entries went out with it


def test_the_annotated_signature_manifest_verifies_in_notation(tmp_path: Path) -> None:
    notation = require_notation()
    w, _ = _world(tmp_path)
    now = datetime.now(UTC)
    r = w.ca.cosign(w.request(), now=now)
    assert r.log is not None
    descriptor = w.layout.attach_signature(w.image, r.envelope, annotations=r.log.annotations())
    stored = (w.layout.path / "blobs" / "sha256" / descriptor.digest.split(":")[1]).read_bytes()
    assert json.loads(stored)["annotations"]["io.atcr.log.index"] == str(r.log.index)
    config = tmp_path / "notation"
    write_trust_store(config, "hold", [w.ca.root_certificate])
    write_trust_policy(config, hold_trust_policy(store="hold", revocation="skip"))
    ok, out = notation_verify(notation, config, w.layout.path, w.image.digest)
    assert ok, out


def test_the_monitor_passes_real_records_and_reports_an_operator_issuance(
    tmp_path: Path,
) -> None:
    world = MonitorWorld(tmp_path)
    world.ca.transparency = IssuanceLog(world.log_dir, world.signer)
    users = [world.user() for _ in range(3)]
    for user in users:
        world.cosign(user)
    # an operator issuance: a certificate for a user's DID with no ATProto record
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    leaf = world.ca.issue(users[1].did, public_key, now=NOW)[0]
    report = run_monitor(
        DirectoryLog(world.log_dir),
        world.signer.verifier(),
        MonitorState(tmp_path / "state"),
        world.checker(),
    )
    assert report.alarms == []
    assert report.certificates == 4
    assert report.verified == 3
    assert [f.entry.x509.serial_number for f in report.unexpected] == [leaf.serial_number]  # type: ignore[union-attr]
    assert "without an ATProto record" in report.unexpected[0].check.reason  # type: ignore[union-attr]
