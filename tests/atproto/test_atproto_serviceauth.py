"""Service-auth tokens: structure, claims and signature (holdca.atproto.serviceauth).

Tokens are minted here with holdca.testing's repo keys (K-256 and P-256) and then bent one
field at a time; jwcrypto, an implementation holdca did not write, checks that the
well-formed ones are valid JWS in the first place. The real PDS's tokens are accepted in
tests/integration/test_trust_gate.py.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jwcrypto import jwk, jws

from holdca.atproto.didkey import K256_ORDER, P256_ORDER
from holdca.atproto.serviceauth import (
    MAX_TOKEN_LENGTH,
    check_claims,
    parse_service_token,
    verify_token_signature,
)
from holdca.errors import AuthenticationError
from holdca.testing.atproto import TestRepo

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
AUD = "did:web:hold.example.com"
LXM = "io.atcr.hold.coSignManifest"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    head, payload, sig = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(head))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
        base64.urlsafe_b64decode(pad(sig)),
    )


def _join(header: dict[str, Any], payload: dict[str, Any], sig: bytes) -> str:
    enc = lambda v: _b64(json.dumps(v).encode())  # noqa: E731
    return f"{enc(header)}.{enc(payload)}.{_b64(sig)}"


def accepted(repo: TestRepo, token: str) -> str:
    parsed = parse_service_token(token)
    iss = check_claims(parsed, audience=AUD, lxm=LXM, now=NOW)
    verify_token_signature(parsed, repo.public_key)
    return iss


def refused(repo: TestRepo, token: str) -> str:
    with pytest.raises(AuthenticationError) as caught:
        accepted(repo, token)
    return caught.value.error


@pytest.mark.parametrize("curve", ["k256", "p256"])
def test_a_well_formed_token_is_accepted(curve: str) -> None:
    repo = TestRepo.create(curve=curve)  # type: ignore[arg-type]
    token = repo.service_token(AUD, LXM, now=NOW)
    assert accepted(repo, token) == repo.did
    if curve == "p256":  # jwcrypto: a valid ES256 JWS with the repo's key
        key = jwk.JWK.from_pyca(repo._private.public_key())
        checker = jws.JWS()
        checker.deserialize(token)
        checker.verify(key, alg="ES256")


@pytest.mark.parametrize(
    ("claims", "lifetime", "error"),
    [
        ({}, timedelta(seconds=-1), "JwtExpired"),
        ({}, timedelta(minutes=30), "BadJwt"),  # lives too long
        ({"aud": "did:web:other.example.com"}, None, "BadJwtAudience"),
        ({"lxm": "io.atcr.hold.reSignManifest"}, None, "BadJwtLexiconMethod"),
        ({"lxm": None}, None, "BadJwtLexiconMethod"),
        ({"jti": None}, None, "BadJwt"),
        ({"iat": None}, None, "BadJwt"),
        ({"iss": "did:web:hold.example.com#bsky_appview"}, None, "BadJwtIss"),
        ({"iss": "did:key:zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF"}, None, "BadJwtIss"),
        ({"exp": "soon"}, None, "BadJwt"),
        ({"exp": 2**39}, None, "BadJwt"),  # past year 9999 (old code: ValueError, a 500)
        ({"iat": 2**39}, None, "BadJwt"),
        ({"exp": 1e300}, None, "BadJwt"),
        ({"jti": "x" * 500}, None, "BadJwt"),
    ],
)
def test_bad_claims_are_refused(
    claims: dict[str, Any], lifetime: timedelta | None, error: str
) -> None:
    repo = TestRepo.create()
    token = repo.service_token(
        AUD, LXM, now=NOW, lifetime=lifetime or timedelta(seconds=60), claims=claims
    )
    assert refused(repo, token) == error


def test_iat_in_the_future_is_refused() -> None:
    repo = TestRepo.create()
    ahead = repo.service_token(AUD, LXM, now=NOW + timedelta(minutes=2))
    assert refused(repo, ahead) == "BadJwt"
    slightly = repo.service_token(AUD, LXM, now=NOW + timedelta(seconds=10))  # clock skew
    assert accepted(repo, slightly) == repo.did


@pytest.mark.parametrize("curve", ["k256", "p256"])
def test_signature_attacks(curve: str) -> None:
    repo = TestRepo.create(curve=curve)  # type: ignore[arg-type]
    header, payload, sig = _parts(repo.service_token(AUD, LXM, now=NOW))
    order = K256_ORDER if curve == "k256" else P256_ORDER
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    high_s = sig[:32] + (order - s).to_bytes(32, "big")  # valid ECDSA, but malleable
    assert refused(repo, _join(header, payload, high_s)) == "BadJwtSignature"
    assert refused(repo, _join(header, payload, encode_dss_signature(r, s))) == "BadJwtSignature"
    other = TestRepo.create(did=repo.did, curve=curve)  # type: ignore[arg-type]
    assert refused(repo, other.service_token(AUD, LXM, now=NOW)) == "BadJwtSignature"
    tampered = dict(payload, aud=AUD, lxm=LXM, exp=payload["exp"] + 1)
    assert refused(repo, _join(header, tampered, sig)) == "BadJwtSignature"
    wrong_alg = dict(header, alg="ES256" if curve == "k256" else "ES256K")
    assert refused(repo, _join(wrong_alg, payload, sig)) == "BadJwtSignature"


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "none", "typ": "JWT"},
        {"alg": "HS256", "typ": "JWT"},
        {"alg": "RS256"},
        {"typ": "JWT"},
        {"alg": "ES256K", "crit": ["exp"]},
    ],
)
def test_algorithms_other_than_es256k_and_es256_are_refused(header: dict[str, Any]) -> None:
    repo = TestRepo.create()
    _, payload, sig = _parts(repo.service_token(AUD, LXM, now=NOW))
    assert refused(repo, _join(header, payload, sig)) == "BadJwt"


@pytest.mark.parametrize("typ", ["at+jwt", "refresh+jwt", "dpop+jwt", "DPoP+JWT"])
def test_access_refresh_and_dpop_tokens_are_not_service_tokens(typ: str) -> None:
    repo = TestRepo.create()
    _, payload, sig = _parts(repo.service_token(AUD, LXM, now=NOW))
    assert refused(repo, _join({"alg": "ES256K", "typ": typ}, payload, sig)) == "BadJwtType"


def test_malformed_tokens() -> None:
    repo = TestRepo.create()
    token = repo.service_token(AUD, LXM, now=NOW)
    head, payload, sig = token.split(".")
    dup = _b64(b'{"alg":"ES256K","alg":"none"}')
    cases = [
        "",
        "a.b",
        "a.b.c.d",
        f"{head}.{payload}.{sig}=",  # padding
        f"{head}.{payload}.{sig[:-1]}" + ("A" if sig[-1] != "A" else "B"),  # bits or sig
        f"{dup}.{payload}.{sig}",
        f"{_b64(b'[1]')}.{payload}.{sig}",
        f"{_b64(b'[' * 5000 + b']' * 5000)}.{payload}.{sig}",
        "x" * (MAX_TOKEN_LENGTH + 1),
        f"{head}.{payload}.{sig}\n",
    ]
    for bad in cases:
        with pytest.raises(AuthenticationError):
            accepted(repo, bad)
    with pytest.raises(AuthenticationError) as caught:
        parse_service_token("")
    assert caught.value.error == "MissingJwt"
