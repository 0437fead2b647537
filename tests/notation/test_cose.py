"""COSE envelopes (issue 14): what holdca signs, notation v1.3.2 verifies; what notation
refuses, holdca's parser refuses too."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import cbor2
import pytest

from holdca.demo import notation_verify
from holdca.errors import MalformedInputError, SignatureInvalidError
from holdca.keys import SignatureAlgorithm
from holdca.notation import SigningScheme
from holdca.notation.cose import (
    COSE_ALGORITHMS,
    MEDIA_TYPE_COSE,
    parse_cose_envelope,
    verify_cose_signature,
)
from holdca.notation.formats import SignatureFormat
from holdca.notation.trustpolicy import hold_trust_policy
from holdca.notation.truststore import write_trust_policy, write_trust_store
from tests.hold.conftest import World, make_world
from tests.hold.served import auth, body, serve_hold, user
from tests.tools import require_notation

URL = "/xrpc/io.atcr.hold.coSignManifest"
SCHEME_LABEL = "io.cncf.notary.signingScheme"


def _cose_world(tmp_path: Path, **options: object) -> World:
    return make_world(tmp_path, signature_format=SignatureFormat.COSE, **options)


def _notation(w: World, envelope: bytes, tmp_path: Path, scheme: SigningScheme) -> tuple[bool, str]:
    notation = require_notation()
    w.layout.attach_signature(w.image, envelope, media_type=MEDIA_TYPE_COSE)
    config = tmp_path / "notation"
    kind = "signingAuthority" if scheme is SigningScheme.SIGNING_AUTHORITY else "ca"
    write_trust_store(config, "hold", [w.ca.root_certificate], type=kind)
    write_trust_policy(config, hold_trust_policy(store="hold", scheme=scheme, revocation="skip"))
    return notation_verify(notation, config, w.layout.path, w.image.digest)


@pytest.mark.parametrize("scheme", list(SigningScheme))
def test_notation_verifies_a_cose_signature(tmp_path: Path, scheme: SigningScheme) -> None:
    w = _cose_world(tmp_path, scheme=scheme)
    now = datetime.now(UTC)
    response = w.ca.cosign(w.request(), now=now)
    assert response.signature_format is SignatureFormat.COSE
    envelope = response.envelope
    assert envelope[:2] == b"\xd2\x84"  # tag 18, array of 4
    parsed = parse_cose_envelope(envelope)
    verify_cose_signature(parsed)
    assert parsed.scheme is scheme
    assert parsed.algorithm is SignatureAlgorithm.ES256
    assert parsed.headers[1] == COSE_ALGORITHMS[SignatureAlgorithm.ES256]
    assert parsed.chain == response.chain
    assert parsed.descriptor.digest == w.image.digest
    assert parsed.signing_time == now.replace(microsecond=0)
    # the signature manifest names the COSE layer
    assert f'"mediaType":"{MEDIA_TYPE_COSE}"'.encode() in response.signature_manifest
    ok, out = _notation(w, envelope, tmp_path, scheme)
    assert ok, out


def test_notation_refuses_a_cose_envelope_whose_payload_was_changed(tmp_path: Path) -> None:
    w = _cose_world(tmp_path)
    response = w.ca.cosign(w.request(), now=datetime.now(UTC))
    outer = cbor2.loads(response.envelope)
    protected, unprotected, payload, signature = outer.value
    forged = payload.replace(b'"size":', b'"size":1')
    tampered = cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected, forged, signature]))
    with pytest.raises(SignatureInvalidError):
        verify_cose_signature(parse_cose_envelope(tampered))
    ok, out = _notation(w, tampered, tmp_path, SigningScheme.X509)
    assert not ok, out


def _rebuilt(
    envelope: bytes,
    *,
    protected: dict[object, object] | None = None,
    unprotected: dict[object, object] | None = None,
    tag: int | None = 18,
) -> bytes:
    outer = cbor2.loads(envelope)
    p, u, payload, signature = outer.value
    headers = cbor2.loads(p)
    if protected is not None:
        headers.update(protected)
        headers = {k: v for k, v in headers.items() if v is not None}
        p = cbor2.dumps(headers)
    if unprotected is not None:
        u = {**u, **unprotected}
    body_ = [p, u, payload, signature]
    return cbor2.dumps(body_ if tag is None else cbor2.CBORTag(tag, body_))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tag": None}, "tagged COSE_Sign1"),
        ({"protected": {1: -8}}, "unsupported alg"),
        ({"protected": {3: 0}}, "content type"),
        (
            {"protected": {2: ["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"]}},
            "crit label",
        ),
        ({"protected": {"io.cncf.notary.signingTime": 1700000000}}, "tag 1"),
        ({"unprotected": {33: b"\x30\x00"}}, "x5chain"),
        ({"protected": {SCHEME_LABEL: "notary.other"}}, "signingScheme"),
    ],
)
def test_the_parser_refuses_what_notation_refuses(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    w = _cose_world(tmp_path)
    envelope = w.ca.cosign(w.request(), now=datetime.now(UTC)).envelope
    bad = _rebuilt(envelope, **change)  # type: ignore[arg-type]
    with pytest.raises(MalformedInputError, match=message):
        parse_cose_envelope(bad)


def test_garbage_and_oversized_input_are_typed_errors() -> None:
    for data in (b"", b"\xd2\x84", b"\xd2\x84\xff\xff", b"\x00" * 10, b"\xd2\x84" + b"\x40" * 3):
        with pytest.raises(MalformedInputError):
            parse_cose_envelope(data)
    with pytest.raises(MalformedInputError, match="larger"):
        parse_cose_envelope(b"\xd2\x84" + b"\0" * 100, max_size=50)


def test_the_server_signs_cose_on_request_and_refuses_unknown_formats(tmp_path: Path) -> None:
    notation = require_notation()
    with serve_hold() as served:
        repo, layout, image, uri = user(served, tmp_path)
        r = served.http.post(
            URL, json=body(repo, uri, image, signatureFormat="cose"), headers=auth(repo)
        )
        assert r.status_code == 200, r.text
        assert r.json()["signatureFormat"] == MEDIA_TYPE_COSE
        envelope = base64.b64decode(r.json()["envelope"])
        verify_cose_signature(parse_cose_envelope(envelope))
        layout.attach_signature(image, envelope, media_type=MEDIA_TYPE_COSE)
        config = tmp_path / "notation"
        write_trust_store(config, "hold", [served.ca.root_certificate])
        write_trust_policy(config, hold_trust_policy(store="hold"))
        ok, out = notation_verify(notation, config, layout.path, image.digest)
        assert ok, out  # strict, with revocation from the served CRL/OCSP
        jws = served.http.post(URL, json=body(repo, uri, image), headers=auth(repo))
        assert jws.json()["signatureFormat"] == "application/jose+json"
        bad = served.http.post(
            URL, json=body(repo, uri, image, signatureFormat="pgp"), headers=auth(repo)
        )
        assert bad.status_code == 400
        assert "signatureFormat" in bad.json()["message"]


def test_signature_format_names() -> None:
    assert SignatureFormat.parse("COSE") is SignatureFormat.COSE
    assert SignatureFormat.parse("application/jose+json") is SignatureFormat.JWS
    with pytest.raises(MalformedInputError):
        SignatureFormat.parse("x509")
