"""Smoke tests of the harness: the reference PDS and PLC directory, driven over HTTP, checked
with holdca's verifier.

Each test proves one thing the integration tests rely on: accounts, io.atcr.manifest records
and their getRecord proofs, deletion, service-auth tokens, and rotating an account's #atproto
key through the PLC directory with a recovery key the test holds.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import coincurve
import pytest

from holdca.atproto import parse_did_document, read_car, verify_record_proof
from holdca.atproto.cid import CID
from holdca.errors import RecordAbsentError, SignatureInvalidError
from tests.integration.conftest import ATProtoNet, install_dir, run_network
from tests.integration.pds_client import (
    MANIFEST_MEDIA_TYPE,
    Account,
    ATProtoClient,
    XRPCError,
    did_key_of,
    jwt_claims,
)

MANIFEST = "io.atcr.manifest"
HOLD_DID = "did:web:hold.test"
LXM = "io.atcr.hold.coSignManifest"


def manifest_record(digest: str) -> dict[str, Any]:
    return {
        "$type": MANIFEST,
        "repository": "myapp",
        "digest": digest,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "schemaVersion": 2,
        "holdDid": HOLD_DID,
        "createdAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
    }


def random_digest() -> str:
    return "sha256:" + hashlib.sha256(secrets.token_bytes(16)).hexdigest()


def rkey_of(uri: str) -> str:
    return uri.rsplit("/", 1)[1]


def doc_bytes(client: ATProtoClient, did: str) -> bytes:
    return json.dumps(client.did_document(did)).encode()


def _listening_sockets(pid: int) -> list[tuple[str, str]]:
    """(file, local address hex) of the TCP sockets process ``pid`` listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink()
        except OSError:
            continue
        if str(target).startswith("socket:["):
            inodes.add(str(target)[len("socket:[") : -1])
    found = []
    for table in ("tcp", "tcp6"):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A = LISTEN
                found.append((table, cols[1]))
    return found


@pytest.fixture
def account(atproto_net: ATProtoNet) -> Account:
    return atproto_net.client.create_account()


def test_network_runs_the_pinned_reference_versions(atproto_net: ATProtoNet) -> None:
    assert atproto_net.versions["pds"] == "0.5.35"
    assert atproto_net.versions["plc"] == "0.0.1"
    assert atproto_net.versions["node"].startswith("v22.")
    assert atproto_net.pds_did == "did:web:localhost"
    assert atproto_net.pds_url.startswith("http://localhost:")
    assert atproto_net.plc_url.startswith("http://127.0.0.1:")


def test_servers_listen_on_loopback_only(atproto_net: ATProtoNet) -> None:
    sockets = _listening_sockets(atproto_net.process.pid)
    plc_port = int(atproto_net.plc_url.rsplit(":", 1)[1])
    pds_port = int(atproto_net.pds_url.rsplit(":", 1)[1])
    expected = {("tcp", f"0100007F:{port:04X}") for port in (plc_port, pds_port)}
    assert set(sockets) == expected, sockets


def test_create_account_registers_a_did_plc(atproto_net: ATProtoNet, account: Account) -> None:
    assert account.did.startswith("did:plc:")
    assert account.handle.startswith("u")
    assert account.handle.endswith(".test")
    doc = atproto_net.client.did_document(account.did)
    assert doc["id"] == account.did
    assert doc["alsoKnownAs"] == [f"at://{account.handle}"]
    parsed = parse_did_document(doc, account.did)
    assert parsed.pds_endpoint() == atproto_net.pds_url
    data = atproto_net.client.plc_data(account.did)
    assert data["verificationMethods"]["atproto"] == parsed.atproto_key().did_key


def test_create_account_errors_carry_the_xrpc_body(atproto_net: ATProtoNet) -> None:
    with pytest.raises(XRPCError) as info:
        atproto_net.client.create_account("someone.example.com")  # not a .test handle
    assert info.value.status == 400
    assert info.value.error in {"UnsupportedDomain", "InvalidHandle"}
    assert info.value.message


def test_manifest_record_proof_verifies(atproto_net: ATProtoNet, account: Account) -> None:
    client = atproto_net.client
    digest = random_digest()
    uri, cid = client.create_record(account, MANIFEST, manifest_record(digest))
    assert uri == f"at://{account.did}/{MANIFEST}/{rkey_of(uri)}"
    car = client.get_record_car(account.did, MANIFEST, rkey_of(uri))
    commit_cid, rev = client.get_latest_commit(account.did)

    verified = verify_record_proof(car, doc_bytes(client, account.did), uri, digest)
    assert verified.did == account.did
    assert str(verified.record_cid) == cid
    assert str(verified.commit_cid) == commit_cid
    assert verified.rev == rev
    assert verified.record["digest"] == digest
    assert verified.signing_key == client.plc_data(account.did)["verificationMethods"]["atproto"]
    assert [str(root) for root in read_car(car).roots] == [commit_cid]


def test_put_record_replaces_the_manifest(atproto_net: ATProtoNet, account: Account) -> None:
    client = atproto_net.client
    rkey = "3kputrecord22"
    first, second = random_digest(), random_digest()
    client.put_record(account, MANIFEST, rkey, manifest_record(first))
    uri, cid = client.put_record(account, MANIFEST, rkey, manifest_record(second))
    car = client.get_record_car(account.did, MANIFEST, rkey)
    verified = verify_record_proof(car, doc_bytes(client, account.did), uri, second)
    assert str(verified.record_cid) == cid
    assert verified.record["digest"] == second


def test_deleted_record_is_absent(atproto_net: ATProtoNet, account: Account) -> None:
    client = atproto_net.client
    kept_digest, digest = random_digest(), random_digest()
    kept_uri, _ = client.create_record(account, MANIFEST, manifest_record(kept_digest))
    uri, _ = client.create_record(account, MANIFEST, manifest_record(digest))
    client.delete_record(account, uri)
    doc = doc_bytes(client, account.did)
    # the PDS answers either RecordNotFound or a CAR proving the record's absence
    refusal: XRPCError | None = None
    try:
        car = client.get_record_car(account.did, MANIFEST, rkey_of(uri))
    except XRPCError as exc:
        refusal = exc
    if refusal is not None:
        assert refusal.error == "RecordNotFound", refusal
    else:
        with pytest.raises(RecordAbsentError):
            verify_record_proof(car, doc, uri, digest)
    # the same repo still proves the record that was kept
    kept = client.get_record_car(account.did, MANIFEST, rkey_of(kept_uri))
    assert verify_record_proof(kept, doc, kept_uri, kept_digest).record["digest"] == kept_digest


def test_service_auth_token_claims(atproto_net: ATProtoNet, account: Account) -> None:
    client = atproto_net.client
    token = client.get_service_auth(account, HOLD_DID, LXM)
    claims = jwt_claims(token)
    assert claims["iss"] == account.did
    assert claims["aud"] == HOLD_DID
    assert claims["lxm"] == LXM
    assert 0 < claims["exp"] - claims["iat"] <= 60 * 5

    exp = int(time.time()) + 120
    assert jwt_claims(client.get_service_auth(account, HOLD_DID, LXM, exp=exp))["exp"] == exp


def test_update_atproto_key_rotates_the_did_document(atproto_net: ATProtoNet) -> None:
    client = atproto_net.client
    recovery = coincurve.PrivateKey()
    account = client.create_account(recovery_key=did_key_of(recovery))
    assert client.plc_data(account.did)["rotationKeys"][0] == did_key_of(recovery)

    digest = random_digest()
    uri, _ = client.create_record(account, MANIFEST, manifest_record(digest))
    car = client.get_record_car(account.did, MANIFEST, rkey_of(uri))
    old_doc = doc_bytes(client, account.did)
    verify_record_proof(car, old_doc, uri, digest)
    old_key = parse_did_document(old_doc, account.did).atproto_key().did_key

    new_key = did_key_of(coincurve.PrivateKey())
    op_cid = client.update_atproto_key(account.did, recovery, new_key)
    assert op_cid.startswith("b")
    assert str(CID.decode(op_cid)) == op_cid

    log = client.plc_audit_log(account.did)
    assert len(log) == 2
    assert log[-1]["cid"] == op_cid
    assert log[-1]["operation"]["prev"] == log[0]["cid"]
    new_doc = doc_bytes(client, account.did)
    assert parse_did_document(new_doc, account.did).atproto_key().did_key == new_key != old_key
    assert client.plc_data(account.did)["verificationMethods"]["atproto"] == new_key

    with pytest.raises(SignatureInvalidError):
        verify_record_proof(car, new_doc, uri, digest)


def test_update_atproto_key_needs_a_rotation_key(atproto_net: ATProtoNet, account: Account) -> None:
    stranger = coincurve.PrivateKey()
    with pytest.raises(ValueError, match="not a rotation key"):
        atproto_net.client.update_atproto_key(account.did, stranger, did_key_of(stranger))
    assert len(atproto_net.client.plc_audit_log(account.did)) == 1


@pytest.mark.slow
def test_network_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    with run_network(install_dir(), tmp_path / "net") as net:
        process = net.process
        assert net.client.create_account().did.startswith("did:plc:")
        assert net.startup_seconds < 90
    assert process.returncode == 0, net.stderr_path.read_text()
    assert "stopped (SIGTERM)" in net.stderr_path.read_text()
