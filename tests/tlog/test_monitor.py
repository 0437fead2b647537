"""holdca.tlog.monitor: a log of real issuances, checked against a test ATProto network."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from holdca.errors import ResolutionError
from holdca.keys import MemoryEd25519Signer
from holdca.testing.atproto import TestRepo, make_tid
from holdca.testing.plc import TestPLC
from holdca.tlog import CertificateEntry, DirectoryLog, Ed25519NoteSigner, LogWriter
from holdca.tlog.facts import FactChecker
from holdca.tlog.monitor import MonitorReport, MonitorState, run_monitor
from tests.tlog.monitor_support import HOLD_DID, NOW, ORIGIN, MonitorWorld, User


@pytest.fixture
def world(tmp_path: Path) -> MonitorWorld:
    return MonitorWorld(tmp_path)


def monitor(
    world: MonitorWorld,
    state: Path,
    *,
    log: Path | None = None,
    checker: FactChecker | None = None,
    signer: Ed25519NoteSigner | None = None,
    did: str | None = None,
) -> MonitorReport:
    return run_monitor(
        DirectoryLog(log or world.log_dir),
        (signer or world.signer).verifier(),
        MonitorState(state),
        checker or world.checker(),
        did=did,
    )


def records_fetched(world: MonitorWorld) -> list[str]:
    return [did for method, did in world.net.calls if method == "get_record"]


def test_matching_certificates_verify_and_only_new_ones_are_checked(
    world: MonitorWorld, tmp_path: Path
) -> None:
    alice, bob = world.user(), world.user()
    world.append(world.cosign(alice), world.cosign(bob))
    state = tmp_path / "state"
    hold_calls = len(records_fetched(world))
    report = monitor(world, state)
    assert report.alarms == []
    assert report.unexpected == []
    assert report.unchecked == []
    assert (report.size, report.new_entries, report.certificates, report.verified) == (2, 2, 2, 2)
    assert report.ok
    assert report.advanced
    # the state holds exactly what the log published (the filesystem is the oracle)
    assert (state / "checkpoint").read_bytes() == (world.log_dir / "checkpoint").read_bytes()
    assert sorted(records_fetched(world)[hold_calls:]) == sorted([alice.did, bob.did])

    carol = world.user()
    world.append(world.cosign(carol))
    before = len(records_fetched(world))
    again = monitor(world, state)
    assert again.ok
    assert again.previous_size == 2
    assert again.size == 3
    assert again.new_entries == 1
    assert again.verified == 1
    assert records_fetched(world)[before:] == [carol.did]


def test_a_record_that_moved_on_to_a_later_commit_still_verifies(world: MonitorWorld) -> None:
    alice = world.user()
    entry = world.cosign(alice)
    alice.repo.put_manifest(world.image().digest)  # a new commit in alice's repo
    assert str(alice.repo.commit_cid) != entry.commit_cid
    check = world.checker().check(entry)
    assert check.status == "verified", check.reason
    assert check.commit_cid == str(alice.repo.commit_cid)
    assert check.commit_rev is not None
    assert check.commit_rev > entry.commit_rev


def _made_up(entry: CertificateEntry, did: str) -> CertificateEntry:
    return dataclasses.replace(
        entry, record_uri=f"at://{did}/io.atcr.manifest/{make_tid(1_700_000_000_000_000)}"
    )


def test_operator_issuance_without_a_record_is_unexpected(
    world: MonitorWorld, tmp_path: Path
) -> None:
    alice = world.user()
    good = world.cosign(alice)
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    chain = world.ca.issue(alice.did, key, now=NOW, manifest_digest=alice.image.digest)
    forged = _made_up(
        dataclasses.replace(good, certificate=chain[0].public_bytes(Encoding.DER)), alice.did
    )
    world.append(good, forged)
    state = tmp_path / "state"
    report = monitor(world, state)
    assert report.verified == 1
    assert not report.ok
    assert report.alarms == []
    [finding] = report.unexpected
    assert finding.index == 1
    assert finding.check is not None
    assert "absent" in finding.check.reason
    assert finding.to_json()["serial"] == format(chain[0].serial_number, "x")
    assert report.advanced  # reported once; the log itself is fine


def test_a_deleted_record_is_unexpected(world: MonitorWorld) -> None:
    alice = world.user()
    entry = world.cosign(alice)
    alice.repo.delete_record(alice.uri)
    check = world.checker().check(entry)
    assert check.status == "unexpected"
    assert "absent" in check.reason


def test_a_record_of_another_digest_or_repository_is_unexpected(world: MonitorWorld) -> None:
    alice = world.user()
    entry = world.cosign(alice)
    other = world.image().digest
    wrong_digest = world.checker().check(dataclasses.replace(entry, manifest_digest=other))
    assert wrong_digest.status == "unexpected"
    assert "does not match" in wrong_digest.reason
    wrong_repo = world.checker().check(dataclasses.replace(entry, repository="mallory/app"))
    assert wrong_repo.status == "unexpected"
    assert "repository" in wrong_repo.reason


def test_a_certificate_of_another_did_is_unexpected(world: MonitorWorld) -> None:
    alice, bob = world.user(), world.user()
    a, b = world.cosign(alice), world.cosign(bob)
    swapped = dataclasses.replace(b, certificate=a.certificate)
    check = world.checker().check(swapped)
    assert check.status == "unexpected"
    assert bob.did in check.reason


def _rotate(user: User, when: str) -> None:
    """A PLC update giving the DID a new atproto key, dated ``when`` (createdAt is not signed)."""
    user.plc.update(atproto_key=TestRepo.create().signing_key)
    user.plc.entries[-1]["createdAt"] = when


def test_a_key_rotated_after_issuance_keeps_the_certificate_valid(world: MonitorWorld) -> None:
    alice = world.user()
    entry = world.cosign(alice)
    _rotate(alice, "2026-03-02T00:00:00.000Z")  # after the issuance at NOW
    check = world.checker().check(entry)
    assert check.status == "verified", check.reason
    assert "rotated since" in check.reason
    assert check.signing_key == alice.repo.signing_key


def test_a_commit_signed_by_a_key_the_did_no_longer_had_is_unexpected(
    world: MonitorWorld,
) -> None:
    alice = world.user()
    entry = world.cosign(alice)
    _rotate(alice, "2026-03-01T10:00:00.000Z")  # before the issuance: the hold used a stale key
    check = world.checker().check(entry)
    assert check.status == "unexpected"
    assert "had when the certificate was issued" in check.reason


def test_a_did_created_after_the_issuance_is_unexpected(world: MonitorWorld) -> None:
    repo = TestRepo.create(curve="k256", pds_endpoint=world.pds_endpoint, now=NOW)
    plc = TestPLC.register(
        repo.signing_key, pds_endpoint=world.pds_endpoint, now=NOW + timedelta(days=3)
    )
    repo.did = plc.did
    alice = world.user(repo, plc)
    check = world.checker().check(world.cosign(alice))
    assert check.status == "unexpected"
    assert "no atproto key" in check.reason


def test_an_unreachable_did_is_unchecked_and_the_state_waits(
    world: MonitorWorld, tmp_path: Path
) -> None:
    alice = world.user()
    world.append(world.cosign(alice))

    def down(did: str) -> bytes:
        raise ResolutionError("the PLC directory is down")

    state = tmp_path / "state"
    report = monitor(world, state, checker=FactChecker(world.net, down))
    assert [f.check.status for f in report.unchecked if f.check] == ["unchecked"]
    assert not report.ok
    assert not report.advanced
    assert not (state / "checkpoint").exists()
    report = monitor(world, state)
    assert report.ok
    assert report.verified == 1
    assert report.advanced


def test_did_lists_that_dids_certificates_only(world: MonitorWorld, tmp_path: Path) -> None:
    alice, bob = world.user(), world.user()
    first = world.cosign(alice)
    image = world.image()
    uri = alice.repo.put_manifest(image.digest, repository="alice/app", hold_did=HOLD_DID)
    second = world.cosign(User(alice.repo, alice.plc, image, uri))
    world.append(first, world.cosign(bob), second)
    hold_calls = len(records_fetched(world))
    report = monitor(world, tmp_path / "state", did=alice.did)
    assert report.ok
    assert report.checked == 2
    assert report.certificates == 3
    assert [f.index for f in report.listed] == [0, 2]
    assert {f.to_json()["recordUri"] for f in report.listed} == {alice.uri, uri}
    assert records_fetched(world)[hold_calls:] == [alice.did, alice.did]


# --- alarms: the state never advances --------------------------------------------------


@pytest.fixture
def seen(world: MonitorWorld, tmp_path: Path) -> tuple[list[CertificateEntry], Path, bytes]:
    """Two logged certificates, a first monitor run, and the state it saved."""
    entries = [world.cosign(world.user()) for _ in range(3)]
    world.append(*entries[:2])
    state = tmp_path / "state"
    assert monitor(world, state).ok
    return entries, state, (state / "checkpoint").read_bytes()


def _other_log(world: MonitorWorld, path: Path, entries: list[CertificateEntry]) -> Path:
    LogWriter.open(path, world.signer).append([e.encode() for e in entries])
    return path


def _alarmed(report: MonitorReport, kind: str, state: Path, saved: bytes) -> None:
    assert [a.kind for a in report.alarms] == [kind], report.alarms
    assert not report.ok
    assert not report.advanced
    assert (state / "checkpoint").read_bytes() == saved


def test_a_fork_is_an_alarm(
    world: MonitorWorld, tmp_path: Path, seen: tuple[list[CertificateEntry], Path, bytes]
) -> None:
    entries, state, saved = seen
    fork = _other_log(world, tmp_path / "fork", [entries[0], entries[2]])
    _alarmed(monitor(world, state, log=fork), "fork", state, saved)
    grown = _other_log(world, tmp_path / "grown", [entries[0], entries[2], entries[1]])
    _alarmed(monitor(world, state, log=grown), "inconsistent", state, saved)


def test_a_rollback_is_an_alarm(
    world: MonitorWorld, tmp_path: Path, seen: tuple[list[CertificateEntry], Path, bytes]
) -> None:
    entries, state, saved = seen
    short = _other_log(world, tmp_path / "short", entries[:1])
    _alarmed(monitor(world, state, log=short), "rollback", state, saved)


def test_a_modified_tile_or_bundle_is_an_alarm(
    world: MonitorWorld, seen: tuple[list[CertificateEntry], Path, bytes]
) -> None:
    entries, state, saved = seen
    world.append(entries[2])  # size 3: tile/0/000.p/3, tile/entries/000.p/3
    tile = world.log_dir / "tile/0/000.p/3"
    original = tile.read_bytes()
    tile.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    _alarmed(monitor(world, state), "tiles", state, saved)
    tile.write_bytes(original)
    bundle = world.log_dir / "tile/entries/000.p/3"
    data = bytearray(bundle.read_bytes())
    data[-1] ^= 1
    bundle.write_bytes(bytes(data))
    _alarmed(monitor(world, state), "entry", state, saved)


def test_a_wrong_key_is_an_alarm(
    world: MonitorWorld, seen: tuple[list[CertificateEntry], Path, bytes]
) -> None:
    _, state, saved = seen
    impostor = Ed25519NoteSigner(ORIGIN, MemoryEd25519Signer.generate())
    _alarmed(monitor(world, state, signer=impostor), "signature", state, saved)
