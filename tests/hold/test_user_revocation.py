"""A user revokes their own certificates over HTTP, and only their own (issue 18).

Service-auth tokens are minted by the users' own keys (TestRepo.service_token); the
reference PDS's tokens do the same in tests/integration/test_user_revocation.py.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from holdca.hold import AllowAllAuthorizer
from holdca.server import COSIGN_NSID
from holdca.server.app import ALLOW_NSID, REVOKE_NSID
from holdca.testing.atproto import TestRepo
from tests.hold.served import Served, auth, body, serve_hold, user

REVOKE = f"/xrpc/{REVOKE_NSID}"
ALLOW = f"/xrpc/{ALLOW_NSID}"


@pytest.fixture
def served() -> Iterator[Served]:
    with serve_hold() as s:
        yield s


def _cosign(served: Served, repo: TestRepo, uri: str, image: object) -> x509.Certificate:
    r = served.http.post(f"/xrpc/{COSIGN_NSID}", json=body(repo, uri, image), headers=auth(repo))  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    return x509.load_pem_x509_certificate(r.json()["certificate"].encode())


def _status(served: Served, leaf: x509.Certificate) -> ocsp.OCSPCertStatus:
    issuer = served.ca.certificate
    req = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
    der = req.public_bytes(serialization.Encoding.DER)
    encoded = base64.urlsafe_b64encode(der).decode()
    answer = ocsp.load_der_ocsp_response(served.http.get(f"/ocsp/{encoded}").content)
    return answer.certificate_status


def _revoke(served: Served, repo: TestRepo, **payload: object) -> tuple[int, dict[str, object]]:
    r = served.http.post(REVOKE, json=payload, headers=auth(repo, REVOKE_NSID))
    return r.status_code, r.json()


def test_a_user_revokes_their_own_certificate(served: Served, tmp_path: Path) -> None:
    repo, _, image, uri = user(served, tmp_path)
    first, second = _cosign(served, repo, uri, image), _cosign(served, repo, uri, image)
    assert _status(served, first) == ocsp.OCSPCertStatus.GOOD  # (cached by the hold now)
    status, answer = _revoke(
        served, repo, serials=[format(first.serial_number, "x")], reason="superseded"
    )
    assert status == 200, answer
    assert answer["revoked"] == [
        {
            "serial": format(first.serial_number, "x"),
            "revokedAt": answer["revoked"][0]["revokedAt"],  # type: ignore[index]
            "reason": "superseded",
        }
    ]
    assert _status(served, first) == ocsp.OCSPCertStatus.REVOKED  # the cache dropped it
    assert _status(served, second) == ocsp.OCSPCertStatus.GOOD
    crl = x509.load_der_x509_crl(served.http.get("/ca.crl").content)
    assert crl.get_revoked_certificate_by_serial_number(first.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(second.serial_number) is None
    # superseded does not deny: issuance goes on
    _cosign(served, repo, uri, image)


def test_nobody_else_can_revoke_it(served: Served, tmp_path: Path) -> None:
    alice, _, image, uri = user(served, tmp_path)
    bob, _, bob_image, bob_uri = user(served, tmp_path / "bob")
    leaf = _cosign(served, alice, uri, image)
    _cosign(served, bob, bob_uri, bob_image)
    theirs = format(leaf.serial_number, "x")
    status, answer = _revoke(served, bob, serials=[theirs], reason="keyCompromise")
    unknown_status, unknown = _revoke(served, bob, serials=["abcdef"], reason="keyCompromise")
    assert (status, answer["error"]) == (403, "Forbidden")
    assert (unknown_status, unknown["error"]) == (403, "Forbidden")
    # the same words for another user's serial and for one that does not exist
    assert str(answer["message"]).replace(theirs, "X") == str(unknown["message"]).replace(
        "abcdef", "X"
    )
    # mixing one's own serial with another's revokes nothing
    bobs = served.ca.ledger.by_did(bob.did)[0].serial
    status, _ = _revoke(served, bob, serials=[format(bobs, "x"), theirs], reason="superseded")
    assert status == 403
    assert served.ca.ledger.revocation(bobs) is None
    # "everything since T" covers only the caller's own certificates
    status, answer = _revoke(served, bob, reason="cessationOfOperation")
    assert status == 200
    assert [r["serial"] for r in answer["revoked"]] == [format(bobs, "x")]  # type: ignore[union-attr,index]
    assert _status(served, leaf) == ocsp.OCSPCertStatus.GOOD
    assert served.ca.ledger.revocation(leaf.serial_number) is None


def test_key_compromise_denies_until_the_user_lifts_it(served: Served, tmp_path: Path) -> None:
    repo, _, image, uri = user(served, tmp_path)
    _cosign(served, repo, uri, image)
    status, _ = _revoke(served, repo, reason="keyCompromise")
    assert status == 200
    refused = served.http.post(
        f"/xrpc/{COSIGN_NSID}", json=body(repo, uri, image), headers=auth(repo)
    )
    assert (refused.status_code, refused.json()["error"]) == (403, "Forbidden")
    assert served.ca.ledger.denial(repo.did).source == "user"  # type: ignore[union-attr]
    lift = served.http.post(ALLOW, json={}, headers=auth(repo, ALLOW_NSID))
    assert (lift.status_code, lift.json()) == (200, {"lifted": True})
    _cosign(served, repo, uri, image)
    again = served.http.post(ALLOW, json={}, headers=auth(repo, ALLOW_NSID))
    assert again.json() == {"lifted": False}
    # a denial by the operator is not the user's to lift
    served.ca.deny(repo.did, reason="abuse", now=datetime.now(UTC))
    lift = served.http.post(ALLOW, json={}, headers=auth(repo, ALLOW_NSID))
    assert (lift.status_code, lift.json()["error"]) == (403, "Forbidden")
    assert served.ca.ledger.denial(repo.did) is not None


def test_since_and_bad_requests(served: Served, tmp_path: Path) -> None:
    repo, _, image, uri = user(served, tmp_path)
    old = _cosign(served, repo, uri, image)
    cut = datetime.now(UTC) + timedelta(milliseconds=5)
    time.sleep(0.02)
    new = _cosign(served, repo, uri, image)
    status, answer = _revoke(served, repo, since=cut.isoformat(), reason="superseded")
    assert status == 200
    assert [r["serial"] for r in answer["revoked"]] == [format(new.serial_number, "x")]  # type: ignore[union-attr,index]
    assert served.ca.ledger.revocation(old.serial_number) is None
    for payload in (
        {"reason": "cACompromise"},  # not a user's reason
        {"reason": "superseded", "serials": []},
        {"reason": "superseded", "serials": ["xyz"]},
        {"reason": "superseded", "serials": ["ab"] * 1001},
        {"reason": "superseded", "since": "yesterday"},
        {"reason": "superseded", "since": "2026-01-01T00:00:00"},  # no zone
        {"reason": "superseded", "serials": ["ab"], "since": cut.isoformat()},
        {"serials": ["ab"]},
    ):
        status, answer = _revoke(served, repo, **payload)
        assert (status, answer["error"]) == (400, "InvalidRequest"), payload
    # a token for another method is refused
    r = served.http.post(REVOKE, json={"reason": "superseded"}, headers=auth(repo))
    assert (r.status_code, r.json()["error"]) == (401, "BadJwtLexiconMethod")


def test_revocation_needs_an_authenticated_caller(tmp_path: Path) -> None:
    with serve_hold(
        app_options={"insecure_no_auth": True}, ca_options={"authorizer": AllowAllAuthorizer()}
    ) as s:
        r = s.http.post(REVOKE, json={"reason": "superseded"})
        assert (r.status_code, r.json()["error"]) == (401, "AuthenticationRequired")
        r = s.http.post(ALLOW, json={})
        assert r.status_code == 401
