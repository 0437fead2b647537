"""JWS envelope: exact encoding, independent JOSE verification, strict parsing."""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st
from jwcrypto import jwk, jws
from jwcrypto.common import JWSEHeaderParameter

from holdca.errors import JWSFormatError, MalformedInputError, ProfileError
from holdca.keys import MemorySigner, SignatureAlgorithm
from holdca.keys.encoding import der_to_raw
from holdca.notation import Descriptor, SigningScheme, parse_envelope, sign_envelope
from holdca.notation._codec import b64url_encode, go_json
from tests.notation.helpers import CA, VECTORS

MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
DESC = Descriptor.for_content("application/vnd.oci.image.manifest.v1+json", MANIFEST)
# jwcrypto rejects unknown critical headers unless registered (RFC 7515 section 4.1.11).
NOTARY_HEADERS = {
    name: JWSEHeaderParameter(name, True, True, None)
    for name in (
        "io.cncf.notary.signingScheme",
        "io.cncf.notary.authenticSigningTime",
        "io.cncf.notary.expiry",
    )
}
NOW = datetime(2026, 3, 1, 12, 30, 45, 987654, tzinfo=UTC)


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _decode(env: bytes) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    top = json.loads(env)
    return top, json.loads(_b64d(top["protected"])), json.loads(_b64d(top["payload"]))


@pytest.fixture(scope="module")
def ca_at_now() -> CA:
    return CA.create(now=NOW - timedelta(days=1))


def test_go_json_matches_notation_core_conformance_vector() -> None:
    """Our Go-style JSON reproduces notation-core-go's protected header bytes exactly."""
    vector = json.loads((VECTORS / "notation-core-go-v1.3.0/jws/conformance.json").read_text())
    header = json.loads(_b64d(vector["protected"]))
    assert b64url_encode(go_json(header)) == vector["protected"]
    payload = json.loads(_b64d(vector["payload"]))
    assert b64url_encode(go_json(payload)) == vector["payload"]


def test_go_json_escapes_like_go() -> None:
    """Go escapes <, >, & and U+2028 in JSON strings and sorts map keys."""
    assert (
        go_json({"b": "<&>", "a": "\u2028é"})
        == b'{"a":"\\u2028\xc3\xa9","b":"\\u003c\\u0026\\u003e"}'
    )


@pytest.mark.parametrize("scheme", list(SigningScheme))
def test_protected_header_and_payload_are_exactly_notations(
    ca_at_now: CA, scheme: SigningScheme
) -> None:
    key, chain = ca_at_now.leaf(now=NOW - timedelta(minutes=1))
    expiry = NOW + timedelta(days=7)
    env = sign_envelope(key, chain, DESC, now=NOW, scheme=scheme, expiry=expiry)
    top, header, payload = _decode(env)
    assert list(top) == ["payload", "protected", "header", "signature"]
    time_key = (
        "io.cncf.notary.signingTime"
        if scheme is SigningScheme.X509
        else "io.cncf.notary.authenticSigningTime"
    )
    crit = ["io.cncf.notary.signingScheme"]
    if scheme is SigningScheme.SIGNING_AUTHORITY:
        crit.append("io.cncf.notary.authenticSigningTime")
    crit.append("io.cncf.notary.expiry")
    assert header == {
        "alg": "ES256",
        "cty": "application/vnd.cncf.notary.payload.v1+json",
        "crit": crit,
        "io.cncf.notary.signingScheme": scheme.value,
        time_key: "2026-03-01T12:30:45Z",
        "io.cncf.notary.expiry": "2026-03-08T12:30:45Z",
    }
    # Sorted keys, compact: what Go's json.Marshal of a map gives.
    assert (
        _b64d(top["protected"])
        == json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    )
    assert payload == {
        "targetArtifact": {
            "mediaType": DESC.media_type,
            "digest": DESC.digest,
            "size": DESC.size,
        }
    }
    der = [base64.b64decode(c) for c in top["header"]["x5c"]]
    assert der == [c.public_bytes(serialization.Encoding.DER) for c in chain]
    assert top["header"]["io.cncf.notary.signingAgent"].startswith("holdca/")
    assert len(_b64d(top["signature"])) == 64


@pytest.mark.parametrize(
    "algorithm",
    [
        SignatureAlgorithm.ES256,
        SignatureAlgorithm.ES384,
        SignatureAlgorithm.ES512,
        SignatureAlgorithm.PS256,
    ],
)
def test_jwcrypto_verifies_holdca_signatures(ca_at_now: CA, algorithm: SignatureAlgorithm) -> None:
    """jwcrypto (an independent JOSE implementation) accepts the signature bytes."""
    key, chain = ca_at_now.leaf(now=NOW - timedelta(minutes=1), algorithm=algorithm)
    env = sign_envelope(key, chain, DESC, now=NOW)
    top, header, _ = _decode(env)
    assert header["alg"] == algorithm.value
    public = jwk.JWK.from_pem(
        chain[0]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    token = jws.JWS(header_registry=NOTARY_HEADERS)
    token.deserialize(json.dumps({k: top[k] for k in ("payload", "protected", "signature")}))
    token.allowed_algs = [algorithm.value]
    token.verify(public)  # raises on failure
    # A modified payload must fail in jwcrypto too.
    forged = dict(top, payload=b64url_encode(b'{"targetArtifact":{}}'))
    token2 = jws.JWS(header_registry=NOTARY_HEADERS)
    token2.deserialize(json.dumps({k: forged[k] for k in ("payload", "protected", "signature")}))
    token2.allowed_algs = [algorithm.value]
    with pytest.raises(jws.InvalidJWSSignature):
        token2.verify(public)


def test_round_trip_parse(ca_at_now: CA) -> None:
    key, chain = ca_at_now.leaf(now=NOW - timedelta(minutes=1))
    desc = Descriptor(DESC.media_type, DESC.digest, DESC.size, {"build": "42"})
    env = parse_envelope(sign_envelope(key, chain, desc, now=NOW, signing_agent="x/1"))
    assert env.scheme is SigningScheme.X509
    assert env.signing_time == NOW.replace(microsecond=0)
    assert env.expiry is None
    assert env.target_artifact == desc
    assert env.target_artifact.annotations == {"build": "42"}
    assert env.signing_agent == "x/1"
    assert env.certificate_chain == tuple(chain)
    assert env.critical == ("io.cncf.notary.signingScheme",)


def test_sign_refuses_misuse(ca_at_now: CA) -> None:
    key, chain = ca_at_now.leaf(now=NOW - timedelta(minutes=1))
    with pytest.raises(ValueError, match="not the leaf"):
        sign_envelope(MemorySigner.generate(), chain, DESC, now=NOW)
    with pytest.raises(ValueError, match="after the signing time"):
        sign_envelope(key, chain, DESC, now=NOW, expiry=NOW)
    with pytest.raises(ValueError, match="timezone"):
        sign_envelope(key, chain, DESC, now=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="reserved"):
        sign_envelope(
            key,
            chain,
            Descriptor(DESC.media_type, DESC.digest, 1, {"io.cncf.notary.x": "y"}),
            now=NOW,
        )
    # notation refuses to sign outside the chain's validity (leaf valid 24 h).
    with pytest.raises(ProfileError):
        sign_envelope(key, chain, DESC, now=NOW + timedelta(days=2))
    with pytest.raises(ValueError, match="empty"):
        sign_envelope(key, [], DESC, now=NOW)


def test_descriptor_grammar() -> None:
    for bad in (
        {"media_type": "nope", "digest": DESC.digest, "size": 1},
        {"media_type": DESC.media_type, "digest": "sha256:ABC", "size": 1},
        {"media_type": DESC.media_type, "digest": DESC.digest, "size": -1},
        {"media_type": DESC.media_type, "digest": DESC.digest, "size": True},
    ):
        with pytest.raises(MalformedInputError):
            Descriptor(**bad)  # type: ignore[arg-type]


# --- strict parsing ---------------------------------------------------------------


def _resign(key: MemorySigner, header: dict[str, Any], top: dict[str, Any]) -> bytes:
    """Re-encode ``header`` and sign it properly, so only the header rule is under test."""
    protected = b64url_encode(json.dumps(header).encode())
    data = f"{protected}.{top['payload']}".encode()
    sig = der_to_raw(key.sign(data), 32)
    return json.dumps(dict(top, protected=protected, signature=b64url_encode(sig))).encode()


@pytest.fixture(scope="module")
def signed(ca_at_now: CA) -> tuple[MemorySigner, dict[str, Any], dict[str, Any]]:
    key, chain = ca_at_now.leaf(now=NOW - timedelta(minutes=1))
    env = sign_envelope(
        key,
        chain,
        DESC,
        now=NOW,
        scheme=SigningScheme.SIGNING_AUTHORITY,
        expiry=NOW + timedelta(days=1),
    )
    top, header, _ = _decode(env)
    return key, top, header


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda h: h.pop("crit"), 'missing "crit"'),
        (lambda h: h.update(crit=[]), 'missing "crit"'),
        (
            lambda h: h["crit"].append("io.cncf.notary.signingScheme"),
            "marked critical but not present",
        ),
        (lambda h: h["crit"].append("alg"), "marked critical but not present"),
        (lambda h: h["crit"].append("absent"), "marked critical but not present"),
        (lambda h: h["crit"].remove("io.cncf.notary.expiry"), "not marked as critical"),
        (
            lambda h: h["crit"].remove("io.cncf.notary.authenticSigningTime"),
            "not marked as critical",
        ),
        (
            lambda h: h.update({"io.cncf.notary.signingTime": "2026-03-01T12:30:45Z"}),
            "must not be present",
        ),
        (lambda h: h.pop("io.cncf.notary.authenticSigningTime"), "must be present"),
        (
            lambda h: h.update({"io.cncf.notary.signingScheme": "notary.x509.other"}),
            "SigningScheme",
        ),
        (lambda h: h.update(alg="RS256"), "alg"),
        (lambda h: h.update(alg="none"), "alg"),
        (lambda h: h.update({"io.cncf.notary.expiry": "2026-03-01T12:30:45Z"}), "expiry cannot be"),
        (lambda h: h.update({"io.cncf.notary.expiry": "2026-03-01 12:30:45Z"}), "RFC 3339"),
        (lambda h: h.update({"ALG": "ES256"}), "case"),
    ],
)
def test_parse_rejects_header_rule_violations(
    signed: tuple[MemorySigner, dict[str, Any], dict[str, Any]], mutate: Any, message: str
) -> None:
    key, top, header = signed
    bad = json.loads(json.dumps(header))
    mutate(bad)
    with pytest.raises(JWSFormatError, match=message):
        parse_envelope(_resign(key, bad, top))


def test_parse_accepts_extended_critical_header_and_any_crit_order(
    signed: tuple[MemorySigner, dict[str, Any], dict[str, Any]],
) -> None:
    key, top, header = signed
    good = json.loads(json.dumps(header))
    good["custom"] = "v"
    good["crit"] = ["custom", *reversed(good["crit"])]
    env = parse_envelope(_resign(key, good, top))
    assert env.extended_attributes == {"custom": "v"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.update(extra=1), "unknown members"),
        (lambda t: t.update(signatures=[]), "general JWS"),
        (lambda t: t.pop("header"), "header"),
        (lambda t: t.update(signature=""), "signature missing"),
        (lambda t: t.update(signature=t["signature"] + "="), "base64url"),
        (lambda t: t.update(payload=b64url_encode(b"[1]")), "not a JSON object"),
        (lambda t: t.update(payload=b64url_encode(b'{"x":1}')), "targetArtifact"),
        (lambda t: t["header"].update(x5c=[]), "certificate chain is not present"),
        (lambda t: t["header"].update(x5c=["bm90IGEgY2VydA=="]), "not a DER"),
        (lambda t: t["header"].update(x5c=[t["header"]["x5c"][0][:-1]]), "base64"),
        (lambda t: t["header"].update(x5c=t["header"]["x5c"] * 9), "over 16"),
        (lambda t: t["header"].update({"io.cncf.notary.signingAgent": 3}), "signingAgent"),
    ],
)
def test_parse_rejects_envelope_violations(
    signed: tuple[MemorySigner, dict[str, Any], dict[str, Any]], mutate: Any, message: str
) -> None:
    _, top, _ = signed
    bad = json.loads(json.dumps(top))
    mutate(bad)
    with pytest.raises(JWSFormatError, match=message):
        parse_envelope(json.dumps(bad).encode())


def test_parse_rejects_duplicates_size_and_non_json(
    signed: tuple[MemorySigner, dict[str, Any], dict[str, Any]],
) -> None:
    _, top, _ = signed
    text = json.dumps(top)
    with pytest.raises(JWSFormatError, match="duplicate"):
        parse_envelope(text.replace('{"payload"', '{"payload": "x", "payload"', 1).encode())
    with pytest.raises(JWSFormatError, match="limit"):
        parse_envelope(text.encode(), max_size=100)
    with pytest.raises(JWSFormatError):
        parse_envelope(b"\xff\xfe")
    with pytest.raises(JWSFormatError):
        parse_envelope(b'{"payload": NaN}')


def test_unprotected_keys_match_case_insensitively_like_go(
    signed: tuple[MemorySigner, dict[str, Any], dict[str, Any]],
) -> None:
    _, top, _ = signed
    bad = json.loads(json.dumps(top))
    bad["header"] = {"X5C": top["header"]["x5c"], "io.cncf.notary.SigningAgent": "old/1"}
    env = parse_envelope(json.dumps(bad).encode())
    assert env.signing_agent == "old/1"


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_parse_random_bytes_only_raises_jwsformaterror(data: bytes) -> None:
    with pytest.raises(JWSFormatError):
        parse_envelope(data)


@settings(max_examples=150)
@given(st.data())
def test_parse_mutated_envelope_never_raises_other_errors(
    signed: tuple[MemorySigner, dict[str, Any], dict[str, Any]], data: st.DataObject
) -> None:
    _, top, _ = signed
    raw = bytearray(json.dumps(top).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    with contextlib.suppress(JWSFormatError):
        parse_envelope(bytes(raw))
