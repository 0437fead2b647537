"""The trust gate against the ATProto reference implementation, end to end.

The PLC directory (@did-plc/server) and the PDS (@atproto/pds) run on 127.0.0.1 (the
``atproto_net`` fixture); ``holdca serve`` runs as the CLI starts it, as a subprocess,
with ``HOLD_PLC_URL`` pointing at that directory and ``HOLD_NETWORK_ALLOW`` opening the
loopback addresses (and nothing else). A user creates an account and an
``io.atcr.manifest`` record through the PDS, gets a service-auth token from it, and asks
the hold to co-sign with only DID, record URI and descriptor in the body; ``notation
verify`` then checks the result, fetching OCSP and CRL from the hold.

Then the attacks: tokens that are replayed, expired, for another method or audience,
re-signed with high-S, ``alg`` none or HS256, for another DID; a deleted record; an
atproto key rotated by a PLC operation (signed with the account's recovery key) after
which the old proof is refused; and the forged-document attack against a hold that
authenticates nobody.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import coincurve
import httpx
import pytest

from holdca.atproto.didkey import K256_ORDER
from holdca.atproto.resolve import HTTPResolver
from holdca.demo import notation_verify
from holdca.errors import RecordAbsentError, SignatureInvalidError
from holdca.hold import CosignRequest, HoldCA, MemoryLedger
from holdca.hold.service import ANNOTATION_REPOSITORY
from holdca.keys import MemoryKeyStore
from holdca.net import AddressPolicy
from holdca.notation import Descriptor, parse_envelope
from holdca.notation.trustpolicy import hold_trust_policy
from holdca.notation.truststore import write_trust_policy, write_trust_store
from holdca.pki import SubjectInfo
from holdca.testing.atproto import TestRepo
from tests.integration.conftest import ATProtoNet
from tests.integration.pds_client import b64url_decode, did_key_of
from tests.integration.users import MANIFEST, User, manifest_record, new_user
from tests.tools import require_notation

HOLD_DID = "did:web:hold.test"
COSIGN = "io.atcr.hold.coSignManifest"
RESIGN = "io.atcr.hold.reSignManifest"
ALLOW = "127.0.0.0/8,::1/128"

pytestmark = pytest.mark.interop


@dataclass
class Hold:
    url: str
    home: Path
    audit: Path
    process: subprocess.Popen[bytes]
    http: httpx.Client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(home: Path, env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "holdca", *args, "--home", str(home)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def holds(
    atproto_net: ATProtoNet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Hold]]:
    """``holdca serve`` twice: with service auth (the default) and with --insecure-no-auth."""
    started: dict[str, Hold] = {}
    try:
        for name, extra in (("auth", []), ("noauth", ["--insecure-no-auth"])):
            home = tmp_path_factory.mktemp(f"hold-{name}")
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("HOLD")},
                "HOLD_PLC_URL": atproto_net.plc_url,
                "HOLD_NETWORK_ALLOW": ALLOW,
                "HOLD_AUDIT_LOG": str(home / "audit.jsonl"),
            }
            _cli(
                home, env, "init", "--did", HOLD_DID, "--country", "US", "--state", "CA",
                "--org", "Integration Hold", "--crl-url", f"{url}/ca.crl",
                "--ocsp-url", f"{url}/ocsp",
            )  # fmt: skip
            process = subprocess.Popen(
                [sys.executable, "-m", "holdca", "serve", "--home", str(home), "--port", str(port),
                 *extra],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(home / "serve.err").open("wb"),
                start_new_session=True,
            )  # fmt: skip
            client = httpx.Client(base_url=url, timeout=60)
            for _ in range(300):
                try:
                    if client.get("/ca.crt").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None:
                    pytest.fail((home / "serve.err").read_text())
                time.sleep(0.1)
            started[name] = Hold(url, home, home / "audit.jsonl", process, client)
        yield started
    finally:
        for hold in started.values():
            hold.http.close()
            hold.process.send_signal(signal.SIGTERM)
            try:
                hold.process.wait(20)
            except subprocess.TimeoutExpired:
                hold.process.kill()


def _user(net: ATProtoNet, tmp: Path, repository: str = "alice/app") -> User:
    return new_user(net, tmp, hold_did=HOLD_DID, repository=repository)


def _record(image: Descriptor, repository: str) -> dict[str, Any]:
    return manifest_record(image, repository, HOLD_DID)


def _body(user: User, **extra: Any) -> dict[str, Any]:
    return {
        "userDid": user.account.did,
        "recordUri": user.uri,
        "manifest": user.image.to_json(),
        **extra,
    }


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _rkey(uri: str) -> str:
    return uri.rsplit("/", 1)[1]


def _reshape(token: str, *, header: dict[str, Any] | None = None, flip_s: bool = False) -> str:
    """The token with another header (and the same signature), or with s replaced by n - s."""
    head, payload, sig = token.split(".")
    if header is not None:
        head = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    if flip_s:
        raw = b64url_decode(sig)
        s = int.from_bytes(raw[32:], "big")
        raw = raw[:32] + (K256_ORDER - s).to_bytes(32, "big")
        sig = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return f"{head}.{payload}.{sig}"


def test_cosign_through_holdca_serve_and_notation_verify(
    atproto_net: ATProtoNet, holds: dict[str, Hold], tmp_path: Path
) -> None:
    hold = holds["auth"]
    user = _user(atproto_net, tmp_path)
    token = atproto_net.client.get_service_auth(user.account, HOLD_DID, COSIGN)
    r = hold.http.post(f"/xrpc/{COSIGN}", json=_body(user), headers=_bearer(token))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["proofSource"] == "live"  # the hold fetched the proof from the PDS itself
    assert answer["commitCid"] == atproto_net.client.get_latest_commit(user.account.did)[0]
    envelope = base64.b64decode(answer["envelope"])
    signed = parse_envelope(envelope).target_artifact
    assert (signed.annotations or {})[ANNOTATION_REPOSITORY] == "alice/app"
    user.layout.attach_signature(user.image, envelope)
    notation = require_notation()
    config = tmp_path / "notation"
    root = hold.http.get("/ca.crt").content
    (tmp_path / "root.pem").write_bytes(root)
    from cryptography import x509  # noqa: PLC0415

    write_trust_store(config, "hold", [x509.load_pem_x509_certificate(root)])
    write_trust_policy(config, hold_trust_policy(store="hold"))  # strict: OCSP/CRL from the hold
    ok, out = notation_verify(notation, config, user.layout.path, user.image.digest)
    assert ok, out
    # the same token again: refused, the jti was used
    again = hold.http.post(f"/xrpc/{COSIGN}", json=_body(user), headers=_bearer(token))
    assert (again.status_code, again.json()["error"]) == (401, "TokenReplayed")
    # a re-signature with a reSign token
    resign_token = atproto_net.client.get_service_auth(user.account, HOLD_DID, RESIGN)
    r = hold.http.post(f"/xrpc/{RESIGN}", json=_body(user), headers=_bearer(resign_token))
    assert r.status_code == 200, r.text


def test_bad_tokens_are_refused(
    atproto_net: ATProtoNet, holds: dict[str, Hold], tmp_path: Path
) -> None:
    hold = holds["auth"]
    user = _user(atproto_net, tmp_path)
    other = _user(atproto_net, tmp_path, repository="bob/app")
    client = atproto_net.client
    url = f"/xrpc/{COSIGN}"

    def refused(token: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
        r = hold.http.post(url, json=body or _body(user), headers=_bearer(token))
        return r.status_code, r.json()["error"]

    fresh = client.get_service_auth(user.account, HOLD_DID, COSIGN)
    header = json.loads(b64url_decode(fresh.split(".")[0]))
    assert header["alg"] == "ES256K"
    assert refused(client.get_service_auth(user.account, HOLD_DID, RESIGN)) == (
        401,
        "BadJwtLexiconMethod",
    )
    assert refused(client.get_service_auth(user.account, "did:web:other-hold.test", COSIGN)) == (
        401,
        "BadJwtAudience",
    )
    assert refused(_reshape(fresh, flip_s=True)) == (401, "BadJwtSignature")
    assert refused(_reshape(fresh, header={"alg": "none", "typ": "JWT"})) == (401, "BadJwt")
    assert refused(_reshape(fresh, header={"alg": "HS256", "typ": "JWT"})) == (401, "BadJwt")
    # a token the attacker signs for the user's DID with a key of their own
    forger = TestRepo.create(did=user.account.did)
    assert refused(forger.service_token(HOLD_DID, COSIGN)) == (401, "BadJwtSignature")
    # bob's real token, asking for alice's DID: authenticated, not authorised
    bobs = client.get_service_auth(other.account, HOLD_DID, COSIGN)
    assert refused(bobs) == (403, "Forbidden")
    short = client.get_service_auth(user.account, HOLD_DID, COSIGN, exp=int(time.time()) + 2)
    time.sleep(3)
    assert refused(short) == (401, "JwtExpired")
    # none of these left a certificate behind; the valid token still works
    assert hold.http.post(url, json=_body(user), headers=_bearer(fresh)).status_code == 200


def test_deleted_record_and_rotated_key_are_refused(
    atproto_net: ATProtoNet, holds: dict[str, Hold], tmp_path: Path
) -> None:
    hold = holds["auth"]
    client = atproto_net.client
    user = _user(atproto_net, tmp_path)
    url = f"/xrpc/{COSIGN}"
    token = client.get_service_auth(user.account, HOLD_DID, COSIGN)
    assert hold.http.post(url, json=_body(user), headers=_bearer(token)).status_code == 200
    # deleted: a fresh token, the same request -> refused (the PDS proves the absence)
    client.delete_record(user.account, user.uri)
    token = client.get_service_auth(user.account, HOLD_DID, COSIGN)
    r = hold.http.post(url, json=_body(user), headers=_bearer(token))
    assert (r.status_code, r.json()["error"]) == (400, "InvalidProof"), r.text
    assert "no record" in r.json()["message"]
    # a second record, proven and kept as a hint; then the account's key is rotated by a
    # PLC operation signed with the recovery key, to a key the test holds
    uri, _ = client.create_record(user.account, MANIFEST, _record(user.image, "alice/app"))
    user.uri = uri
    old_proof = client.get_record_car(user.account.did, MANIFEST, _rkey(uri))
    new_key = coincurve.PrivateKey()
    client.update_atproto_key(user.account.did, user.recovery, did_key_of(new_key))
    assert client.plc_data(user.account.did)["verificationMethods"]["atproto"] == did_key_of(
        new_key
    )
    # the PDS still signs with the old key. Its token authenticates against the identity
    # the hold cached for authentication (HOLD_IDENTITY_TTL), but issuance resolves the
    # DID anew: the PDS's proof, signed by the old key, is refused
    stale = client.get_service_auth(user.account, HOLD_DID, COSIGN)
    r = hold.http.post(url, json=_body(user), headers=_bearer(stale))
    assert (r.status_code, r.json()["error"]) == (400, "InvalidProof"), r.text
    # a token signed with the new key authenticates; the old proof (and the PDS's live
    # proof, still signed by the old key) do not verify against the DID's key any more
    holder = TestRepo.create(did=user.account.did, private_key=new_key.secret)
    for body in (_body(user, proof=base64.b64encode(old_proof).decode()), _body(user)):
        r = hold.http.post(url, json=body, headers=_bearer(holder.service_token(HOLD_DID, COSIGN)))
        assert (r.status_code, r.json()["error"]) == (400, "InvalidProof"), r.text
        assert "signature" in r.json()["message"]


def test_the_forged_document_attack_fails_against_a_hold_without_auth(
    atproto_net: ATProtoNet, holds: dict[str, Hold], tmp_path: Path
) -> None:
    """Nobody is authenticated, and still: the key is the one the hold resolved."""
    hold = holds["noauth"]
    victim = _user(atproto_net, tmp_path)
    attacker = TestRepo.create(did=victim.account.did)
    forged_uri = attacker.put_manifest(victim.image.digest, hold_did=HOLD_DID)
    body = {
        "userDid": victim.account.did,
        "recordUri": forged_uri,
        "manifest": victim.image.to_json(),
        "proof": base64.b64encode(attacker.get_record_car(forged_uri)).decode(),
        "didDocument": json.loads(attacker.did_document()),
    }
    r = hold.http.post(f"/xrpc/{COSIGN}", json=body)
    assert (r.status_code, r.json()["error"]) == (400, "InvalidProof"), r.text
    # the victim's real record co-signs fine on the same hold
    r = hold.http.post(f"/xrpc/{COSIGN}", json=_body(victim))
    assert r.status_code == 200, r.text
    events = [json.loads(line) for line in hold.audit.read_text().splitlines()]
    assert events
    assert all(e.get("insecure_no_auth") is True for e in events)


def test_a_user_revokes_their_own_certificate_through_holdca_serve(
    atproto_net: ATProtoNet, holds: dict[str, Hold], tmp_path: Path
) -> None:
    """Issue 18: the real PDS's token for revokeCertificates; notation then says revoked;
    another user's token cannot revoke it."""
    from cryptography import x509  # noqa: PLC0415

    hold = holds["auth"]
    client = atproto_net.client
    alice = _user(atproto_net, tmp_path)
    bob = _user(atproto_net, tmp_path / "bob", repository="bob/app")
    token = client.get_service_auth(alice.account, HOLD_DID, COSIGN)
    r = hold.http.post(f"/xrpc/{COSIGN}", json=_body(alice), headers=_bearer(token))
    assert r.status_code == 200, r.text
    serial = r.json()["serial"]
    alice.layout.attach_signature(alice.image, base64.b64decode(r.json()["envelope"]))
    notation = require_notation()
    config = tmp_path / "notation"
    root = x509.load_pem_x509_certificate(hold.http.get("/ca.crt").content)
    write_trust_store(config, "hold", [root])
    write_trust_policy(config, hold_trust_policy(store="hold"))
    ok, out = notation_verify(notation, config, alice.layout.path, alice.image.digest)
    assert ok, out
    revoke = "io.atcr.hold.revokeCertificates"
    bobs = client.get_service_auth(bob.account, HOLD_DID, revoke)
    r = hold.http.post(
        f"/xrpc/{revoke}",
        json={"serials": [serial], "reason": "keyCompromise"},
        headers=_bearer(bobs),
    )
    assert (r.status_code, r.json()["error"]) == (403, "Forbidden"), r.text
    ok, out = notation_verify(notation, config, alice.layout.path, alice.image.digest)
    assert ok, out  # still good
    alices = client.get_service_auth(alice.account, HOLD_DID, revoke)
    r = hold.http.post(
        f"/xrpc/{revoke}",
        json={"serials": [serial], "reason": "keyCompromise"},
        headers=_bearer(alices),
    )
    assert r.status_code == 200, r.text
    assert [e["serial"] for e in r.json()["revoked"]] == [serial]
    ok, out = notation_verify(notation, config, alice.layout.path, alice.image.digest)
    assert not ok
    assert "revoked" in out
    # keyCompromise by the user: denied until the user lifts it
    token = client.get_service_auth(alice.account, HOLD_DID, COSIGN)
    r = hold.http.post(f"/xrpc/{COSIGN}", json=_body(alice), headers=_bearer(token))
    assert (r.status_code, r.json()["error"]) == (403, "Forbidden")
    allow = "io.atcr.hold.allowIssuance"
    lift = client.get_service_auth(alice.account, HOLD_DID, allow)
    r = hold.http.post(f"/xrpc/{allow}", json={}, headers=_bearer(lift))
    assert r.json() == {"lifted": True}


def test_every_issuance_reaches_the_audit_log(
    atproto_net: ATProtoNet, holds: dict[str, Hold], tmp_path: Path
) -> None:
    """Issued events counted against the ledger rows of each hold (after one issuance and
    one refusal of this test's own: under xdist the other tests may run elsewhere)."""
    import sqlite3  # noqa: PLC0415

    user = _user(atproto_net, tmp_path)
    for name, hold in holds.items():
        token = atproto_net.client.get_service_auth(user.account, HOLD_DID, COSIGN)
        headers = _bearer(token) if name == "auth" else {}
        assert hold.http.post(f"/xrpc/{COSIGN}", json=_body(user), headers=headers).is_success
        hold.http.post(f"/xrpc/{COSIGN}", json={"userDid": user.account.did}, headers=headers)
        events = [json.loads(line) for line in hold.audit.read_text().splitlines()]
        issued = [e for e in events if e["event"] == "issued"]
        conn = sqlite3.connect(f"file:{hold.home / 'ledger.sqlite3'}?mode=ro", uri=True)
        try:
            rows = [r[0] for r in conn.execute("SELECT serial FROM issuance")]
        finally:
            conn.close()
        assert sorted(e["serial"] for e in issued) == sorted(rows)
        assert any(e["event"] == "refused" for e in events)
        assert all(e.get("pds_host") == atproto_net.pds_url for e in issued)
        # /metrics of holdca serve, read with prometheus-client's own parser
        from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

        families = {
            f.name: f for f in text_string_to_metric_families(hold.http.get("/metrics").text)
        }
        issued_total = sum(
            s.value for s in families["holdca_issuances"].samples if s.name.endswith("_total")
        )
        assert issued_total == len(rows)


def test_the_library_against_the_reference_network(atproto_net: ATProtoNet, tmp_path: Path) -> None:
    """HoldCA with the HTTP resolver: the real directory's signed log is verified."""
    client = atproto_net.client
    user = _user(atproto_net, tmp_path)
    resolver = HTTPResolver(plc_url=atproto_net.plc_url, policy=AddressPolicy.parse(ALLOW))
    now = datetime.now(UTC)
    ca = HoldCA.open(
        MemoryKeyStore(),
        MemoryLedger(),
        hold_did=HOLD_DID,
        subject=SubjectInfo("US", "CA", "Library Hold"),
        now=now,
        create=True,
        resolver=resolver,
    )
    identity = resolver.resolve(user.account.did)
    assert identity.source == "plc"
    assert identity.pds_endpoint == atproto_net.pds_url
    request = CosignRequest(
        did=user.account.did, descriptor=user.image, record_uri=user.uri, caller=user.account.did
    )
    assert ca.cosign(request, now=now).record.proof_source == "live"
    hint = client.get_record_car(user.account.did, MANIFEST, _rkey(user.uri))
    assert (
        ca.cosign(
            CosignRequest(**{**vars(request), "proof_hint": hint}), now=now
        ).record.proof_source
        == "hint"
    )
    client.delete_record(user.account, user.uri)
    with pytest.raises(RecordAbsentError):
        ca.resign(CosignRequest(**{**vars(request), "proof_hint": hint}), now=now)
    uri, _ = client.create_record(user.account, MANIFEST, _record(user.image, "alice/app"))
    fresh_request = CosignRequest(**{**vars(request), "record_uri": uri})
    assert ca.cosign(fresh_request, now=now).record.record_uri == uri
    client.update_atproto_key(user.account.did, user.recovery, did_key_of(coincurve.PrivateKey()))
    with pytest.raises(SignatureInvalidError):
        ca.cosign(fresh_request, now=now)  # cached key fails, re-resolved key fails too
    resolver.close()
