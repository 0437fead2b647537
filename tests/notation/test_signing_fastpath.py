"""The fast signing path equals the straightforward construction, byte for byte.

sign_envelope, signature_manifest and chain_thumbprints format their JSON directly and take
certificates as DER. The references here build the objects and encode them the obvious way
(json.dumps plus Go's extra escapes), as the code did before the fast path; only the ECDSA
signature is random, so it is taken from the output and verified independently (jwcrypto).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwcrypto import jwk, jws
from jwcrypto.common import JWSEHeaderParameter

from holdca.errors import MalformedInputError, ProfileError, UnsupportedAlgorithmError
from holdca.keys import MemorySigner, SignatureAlgorithm, Signer
from holdca.keys.encoding import der_to_raw
from holdca.notation import (
    Descriptor,
    ManifestForm,
    SigningScheme,
    parse_envelope,
    sign_envelope,
    signature_manifest,
)
from holdca.notation._codec import go_json
from holdca.notation.envelope import (
    DEFAULT_SIGNING_AGENT,
    _ecdsa_raw,
    _leaf_spki,
    chain_thumbprints,
)
from holdca.notation.oci import (
    ARTIFACT_TYPE_NOTATION,
    MEDIA_TYPE_EMPTY,
    MEDIA_TYPE_OCI_MANIFEST,
    THUMBPRINT_ANNOTATION,
)
from tests.notation.helpers import CA

NOW = datetime(2026, 3, 1, 12, 30, 45, 987654, tzinfo=UTC)
DER = serialization.Encoding.DER
NOTARY_HEADERS = {
    name: JWSEHeaderParameter(name, True, True, None)
    for name in (
        "io.cncf.notary.signingScheme",
        "io.cncf.notary.authenticSigningTime",
        "io.cncf.notary.expiry",
    )
}

# --- the reference construction -------------------------------------------------------

_GO_EXTRA = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def ref_go_json(value: Any) -> bytes:
    """Go's json.Marshal of a map: sorted compact json.dumps, then Go's HTML-safe escapes."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "".join(_GO_EXTRA.get(ch, ch) for ch in text).encode("utf-8")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ref_envelope(
    chain: Sequence[x509.Certificate],
    descriptor: Descriptor,
    *,
    algorithm: SignatureAlgorithm,
    now: datetime,
    scheme: SigningScheme,
    expiry: datetime | None,
    signing_agent: str,
    signature_b64: str,
) -> bytes:
    """The envelope as the pre-fast-path code built it (objects, then encoders)."""
    header: dict[str, Any] = {
        "alg": algorithm.value,
        "cty": "application/vnd.cncf.notary.payload.v1+json",
        "io.cncf.notary.signingScheme": scheme.value,
    }
    crit = ["io.cncf.notary.signingScheme"]
    if scheme is SigningScheme.X509:
        header["io.cncf.notary.signingTime"] = _rfc3339(now)
    else:
        header["io.cncf.notary.authenticSigningTime"] = _rfc3339(now)
        crit.append("io.cncf.notary.authenticSigningTime")
    if expiry is not None:
        header["io.cncf.notary.expiry"] = _rfc3339(expiry)
        crit.append("io.cncf.notary.expiry")
    header["crit"] = crit
    target: dict[str, Any] = {
        "mediaType": descriptor.media_type,
        "digest": descriptor.digest,
        "size": descriptor.size,
    }
    if descriptor.annotations:
        target["annotations"] = dict(descriptor.annotations)
    envelope = {
        "payload": _b64url(ref_go_json({"targetArtifact": target})),
        "protected": _b64url(ref_go_json(header)),
        "header": {
            "x5c": [base64.b64encode(c.public_bytes(DER)).decode("ascii") for c in chain],
            "io.cncf.notary.signingAgent": signing_agent,
        },
        "signature": signature_b64,
    }
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def ref_manifest(
    envelope: bytes,
    subject: Descriptor,
    chain: Sequence[x509.Certificate],
    created: datetime,
    form: ManifestForm,
) -> bytes:
    """The signature manifest as the pre-fast-path code built it."""

    def desc(media_type: str, content: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(content).hexdigest()
        return {"mediaType": media_type, "digest": digest, "size": len(content)}

    manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_MANIFEST}
    if form is ManifestForm.ARTIFACT_TYPE:
        manifest["artifactType"] = ARTIFACT_TYPE_NOTATION
        manifest["config"] = desc(MEDIA_TYPE_EMPTY, b"{}")
    else:
        manifest["config"] = desc(ARTIFACT_TYPE_NOTATION, b"{}")
    manifest["layers"] = [desc("application/jose+json", envelope)]
    manifest["subject"] = {
        "mediaType": subject.media_type,
        "digest": subject.digest,
        "size": subject.size,
    }
    thumbprints = [hashlib.sha256(c.public_bytes(DER)).hexdigest() for c in chain]
    manifest["annotations"] = {
        THUMBPRINT_ANNOTATION: json.dumps(thumbprints, separators=(",", ":")),
        "org.opencontainers.image.created": _rfc3339(created),
    }
    return json.dumps(manifest, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def jwcrypto_verify(envelope: bytes, leaf: x509.Certificate, algorithm: SignatureAlgorithm) -> None:
    top = json.loads(envelope)
    public = jwk.JWK.from_pem(
        leaf.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    token = jws.JWS(header_registry=NOTARY_HEADERS)
    token.deserialize(json.dumps({k: top[k] for k in ("payload", "protected", "signature")}))
    token.allowed_algs = [algorithm.value]
    token.verify(public)  # raises on failure


# --- strategies -------------------------------------------------------------------------

_MT_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$&^_.+-"
_MT_PART = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from("aZ0"),
    st.text(alphabet=_MT_CHARS, max_size=12),
)
media_types = st.builds(lambda a, b: f"{a}/{b}", _MT_PART, _MT_PART)
digests = st.one_of(
    st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex()),
    st.binary(min_size=64, max_size=64).map(lambda b: "sha512:" + b.hex()),
)
# Any text Python can write as UTF-8 (no lone surrogates), weighted to the characters the
# encoders treat specially.
_SPECIAL = st.sampled_from(list('<>&"\\\b\f\n\r\t\x00\x1f\x7f\u2028\u2029é😀/'))
texts = st.lists(st.one_of(_SPECIAL, st.characters(exclude_categories=("Cs",))), max_size=12).map(
    "".join
)
annotation_keys = texts.filter(lambda k: not k.startswith("io.cncf.notary"))
descriptors = st.builds(
    Descriptor,
    media_types,
    digests,
    st.integers(min_value=0, max_value=2**53),
    st.one_of(st.none(), st.dictionaries(annotation_keys, texts, max_size=4)),
    st.one_of(st.none(), media_types),
)
times = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2099, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
    ),
)


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create(now=NOW - timedelta(days=400))


@pytest.fixture(scope="module")
def leaves(ca: CA) -> dict[SignatureAlgorithm, tuple[MemorySigner, list[x509.Certificate]]]:
    """A long-lived leaf per algorithm (valid around every time the strategies draw)."""
    return {
        alg: ca.leaf(now=NOW - timedelta(days=365), algorithm=alg, validity=timedelta(days=40000))
        for alg in (SignatureAlgorithm.ES256, SignatureAlgorithm.ES384, SignatureAlgorithm.PS256)
    }


_FIXTURE_SETTINGS = settings(
    max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# --- envelope ---------------------------------------------------------------------------


@_FIXTURE_SETTINGS
@given(
    descriptor=descriptors,
    algorithm=st.sampled_from(
        [SignatureAlgorithm.ES256, SignatureAlgorithm.ES384, SignatureAlgorithm.PS256]
    ),
    now=times,
    scheme=st.sampled_from(list(SigningScheme)),
    expiry_after=st.one_of(st.none(), st.integers(min_value=1, max_value=10**8)),
    agent=st.one_of(st.just(DEFAULT_SIGNING_AGENT), texts),
    as_der=st.booleans(),
)
def test_envelope_equals_reference_and_verifies(
    leaves: dict[SignatureAlgorithm, tuple[MemorySigner, list[x509.Certificate]]],
    descriptor: Descriptor,
    algorithm: SignatureAlgorithm,
    now: datetime,
    scheme: SigningScheme,
    expiry_after: int | None,
    agent: str,
    as_der: bool,
) -> None:
    key, chain = leaves[algorithm]
    expiry = None if expiry_after is None else now + timedelta(seconds=expiry_after)
    given_chain: list[Any] = [c.public_bytes(DER) for c in chain] if as_der else chain
    env = sign_envelope(
        key,
        given_chain,
        descriptor,
        now=now,
        scheme=scheme,
        expiry=expiry,
        signing_agent=agent,
        check_chain=False,
    )
    signature = json.loads(env)["signature"]
    assert env == ref_envelope(
        chain,
        descriptor,
        algorithm=algorithm,
        now=now,
        scheme=scheme,
        expiry=expiry,
        signing_agent=agent,
        signature_b64=signature,
    )
    jwcrypto_verify(env, chain[0], algorithm)
    parsed = parse_envelope(env)
    assert parsed.signing_time == now.astimezone(UTC).replace(microsecond=0)
    assert parsed.target_artifact.same_content(descriptor)
    assert (parsed.target_artifact.annotations or None) == (descriptor.annotations or None)


def test_consecutive_signatures_across_seconds_and_zones(
    leaves: dict[SignatureAlgorithm, tuple[MemorySigner, list[x509.Certificate]]],
) -> None:
    """The per-second header reuse never carries a time or scheme over to the next call."""
    key, chain = leaves[SignatureAlgorithm.ES256]
    desc = Descriptor.for_content("application/vnd.oci.image.manifest.v1+json", b"{}")
    plus_one = timezone(timedelta(hours=1))
    calls = [
        (NOW, SigningScheme.X509, None),
        (NOW.replace(microsecond=1), SigningScheme.X509, None),
        (NOW + timedelta(seconds=1), SigningScheme.X509, None),
        (NOW, SigningScheme.SIGNING_AUTHORITY, None),
        (NOW, SigningScheme.X509, NOW + timedelta(days=1)),
        (NOW.astimezone(plus_one), SigningScheme.X509, None),
        (NOW.replace(microsecond=999999), SigningScheme.X509, None),
        (NOW - timedelta(seconds=1), SigningScheme.X509, None),
    ]
    for now, scheme, expiry in calls * 2:
        env = sign_envelope(key, chain, desc, now=now, scheme=scheme, expiry=expiry)
        parsed = parse_envelope(env)
        assert parsed.signing_time == now.astimezone(UTC).replace(microsecond=0)
        assert parsed.scheme is scheme
        assert parsed.expiry == (None if expiry is None else expiry.replace(microsecond=0))


def test_der_chain_keeps_every_check(
    ca: CA, leaves: dict[SignatureAlgorithm, tuple[MemorySigner, list[x509.Certificate]]]
) -> None:
    key, chain = leaves[SignatureAlgorithm.ES256]
    ders = [c.public_bytes(DER) for c in chain]
    desc = Descriptor.for_content("application/vnd.oci.image.manifest.v1+json", b"{}")
    with pytest.raises(ValueError, match="not the leaf"):
        sign_envelope(MemorySigner.generate(), ders, desc, now=NOW, check_chain=False)
    # Same curve family, other size: still not the leaf (the algorithm check comes later).
    with pytest.raises(ValueError, match="not the leaf"):
        sign_envelope(
            MemorySigner.generate(SignatureAlgorithm.ES384), ders, desc, now=NOW, check_chain=False
        )
    with pytest.raises(ValueError, match="after the signing time"):
        sign_envelope(key, ders, desc, now=NOW, expiry=NOW, check_chain=False)
    with pytest.raises(ValueError, match="timezone"):
        sign_envelope(key, ders, desc, now=NOW.replace(tzinfo=None), check_chain=False)
    with pytest.raises(ValueError, match="timezone"):
        sign_envelope(key, ders, desc, now=NOW, expiry=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="reserved"):
        sign_envelope(
            key,
            ders,
            Descriptor(desc.media_type, desc.digest, 1, {"io.cncf.notary.x": "y"}),
            now=NOW,
            check_chain=False,
        )
    with pytest.raises(ValueError, match="empty"):
        sign_envelope(key, [], desc, now=NOW)
    # check_chain parses DER elements and lints them: the root alone is not a leaf chain.
    with pytest.raises(ProfileError):
        sign_envelope(ca.signer, [ders[1]], desc, now=NOW)
    sign_envelope(key, ders, desc, now=NOW, check_chain=True)
    # Malformed DER: the leaf walk finds no key, cryptography's parser then refuses it.
    with pytest.raises(ValueError, match=r"(?i)asn1|parse"):
        sign_envelope(key, [ders[0][:-1], ders[1]], desc, now=NOW, check_chain=False)
    # A bad version field, parsed by the lint (check_chain): cryptography raises
    # InvalidVersion, which is not a ValueError; sign_envelope reports the ValueError.
    bad_version = bytearray(ders[0])
    bad_version[bad_version.index(b"\xa0\x03\x02\x01\x02") + 4] = 7
    with pytest.raises(ValueError, match="parse"):
        sign_envelope(key, [bytes(bad_version), ders[1]], desc, now=NOW, check_chain=True)
    with pytest.raises(TypeError):
        sign_envelope(key, [ders[0], "root"], desc, now=NOW, check_chain=False)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        chain_thumbprints(["leaf"])  # type: ignore[list-item]


class _WrappedSigner:
    """A Signer that is not a MemorySigner (sign_envelope encodes its key itself)."""

    def __init__(self, inner: MemorySigner, algorithm: SignatureAlgorithm | None = None) -> None:
        self.inner = inner
        self._algorithm = algorithm or inner.algorithm

    @property
    def algorithm(self) -> SignatureAlgorithm:
        return self._algorithm

    @property
    def public_key(self) -> Any:
        return self.inner.public_key

    def sign(self, data: bytes) -> bytes:
        return self.inner.sign(data)


def test_other_signers_and_algorithm_mismatch(
    leaves: dict[SignatureAlgorithm, tuple[MemorySigner, list[x509.Certificate]]],
) -> None:
    desc = Descriptor.for_content("application/vnd.oci.image.manifest.v1+json", b"{}")
    for algorithm, (key, chain) in leaves.items():
        signer: Signer = _WrappedSigner(key)
        env = sign_envelope(signer, chain, desc, now=NOW, check_chain=False)
        jwcrypto_verify(env, chain[0], algorithm)
    key, chain = leaves[SignatureAlgorithm.PS256]
    with pytest.raises(ValueError, match="notation requires PS256"):
        sign_envelope(_WrappedSigner(key, SignatureAlgorithm.PS384), chain, desc, now=NOW)


def test_unsupported_leaf_key(ca: CA) -> None:
    """A leaf key without a Notation algorithm is refused whichever path finds it."""
    key = ec.generate_private_key(ec.SECP256K1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(ca.cert.subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    desc = Descriptor.for_content("application/vnd.oci.image.manifest.v1+json", b"{}")
    # The signer holds the leaf's key: the key bytes match, the algorithm lookup refuses.
    matching = MemorySigner.generate()
    matching_signer = _WrappedSigner(matching)
    matching_signer.inner = type("K", (), {"public_key": key.public_key()})()  # type: ignore[assignment]
    with pytest.raises(UnsupportedAlgorithmError, match="secp256k1"):
        sign_envelope(matching_signer, [leaf.public_bytes(DER)], desc, now=NOW, check_chain=False)
    # Another key: the leaf's algorithm is looked up (and refused) before the comparison.
    with pytest.raises(UnsupportedAlgorithmError, match="secp256k1"):
        sign_envelope(matching, [leaf], desc, now=NOW, check_chain=False)


# --- the leaf key walk and the signature conversion -------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_leaf_spki_walk_is_exact(
    leaves: dict[SignatureAlgorithm, tuple[MemorySigner, list[x509.Certificate]]],
    data: st.DataObject,
) -> None:
    """Whenever the walk finds the signer's key bytes in a certificate cryptography
    accepts, cryptography reads that same key from it; the walk never raises."""
    algorithm = data.draw(st.sampled_from(list(leaves)))
    key, chain = leaves[algorithm]
    der = bytearray(chain[data.draw(st.integers(0, 1))].public_bytes(DER))
    for _ in range(data.draw(st.integers(0, 3))):
        der[data.draw(st.integers(0, len(der) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(der)))
        der = der[:cut]
    found = _leaf_spki(bytes(der))
    if found != key.public_key_der:
        return
    try:
        cert = x509.load_der_x509_certificate(bytes(der))
        parsed = cert.public_key()
    except (ValueError, x509.InvalidVersion):
        return  # sign_envelope x5c holds what the caller gave; nothing is claimed
    assert parsed == key.public_key


_SIGNATURES = [
    MemorySigner.generate(alg).sign(b"m")
    for alg in (SignatureAlgorithm.ES256, SignatureAlgorithm.ES384, SignatureAlgorithm.ES512)
    for _ in range(4)
]


@settings(max_examples=400)
@given(data=st.data())
def test_ecdsa_raw_equals_der_to_raw(data: st.DataObject) -> None:
    """The in-place DER decoding agrees with der_to_raw, errors included."""
    size = data.draw(st.sampled_from([32, 48, 66]))
    der = bytearray(data.draw(st.sampled_from(_SIGNATURES)))
    for _ in range(data.draw(st.integers(0, 2))):
        der[data.draw(st.integers(0, len(der) - 1))] = data.draw(
            st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, len(der) - 2, data.draw(st.integers(0, 255))])
        )
    if data.draw(st.booleans()):
        der = bytearray(data.draw(st.binary(max_size=80)))
    try:
        expected: bytes | type[MalformedInputError] = der_to_raw(bytes(der), size)
    except MalformedInputError:
        expected = MalformedInputError
    if expected is MalformedInputError:
        with pytest.raises(MalformedInputError):
            _ecdsa_raw(bytes(der), size)
    else:
        assert _ecdsa_raw(bytes(der), size) == expected


# --- signature manifest and thumbprints -------------------------------------------------


@_FIXTURE_SETTINGS
@given(
    subject=descriptors,
    envelope=st.binary(max_size=3000),
    created=times,
    form=st.sampled_from(list(ManifestForm)),
    as_der=st.lists(st.booleans(), min_size=2, max_size=2),
)
def test_manifest_equals_reference(
    leaves: dict[SignatureAlgorithm, tuple[MemorySigner, list[x509.Certificate]]],
    subject: Descriptor,
    envelope: bytes,
    created: datetime,
    form: ManifestForm,
    as_der: list[bool],
) -> None:
    _, chain = leaves[SignatureAlgorithm.ES256]
    mixed: list[Any] = [c.public_bytes(DER) if d else c for c, d in zip(chain, as_der, strict=True)]
    manifest = signature_manifest(envelope, subject, form=form, created=created, chain=mixed)
    assert manifest == ref_manifest(envelope, subject, chain, created, form)
    assert chain_thumbprints(mixed) == [
        hashlib.sha256(c.public_bytes(DER)).hexdigest() for c in chain
    ]


def test_manifest_of_a_parsed_envelope_equals_the_signers(
    leaves: dict[SignatureAlgorithm, tuple[MemorySigner, list[x509.Certificate]]],
) -> None:
    key, chain = leaves[SignatureAlgorithm.ES256]
    image = Descriptor.for_content("application/vnd.oci.image.manifest.v1+json", b"{}")
    env = sign_envelope(key, chain, image, now=NOW)
    from_signer = signature_manifest(
        env, image, chain=[c.public_bytes(DER) for c in chain], created=NOW
    )
    assert from_signer == signature_manifest(env, image)
    assert from_signer == ref_manifest(env, image, chain, NOW, ManifestForm.LEGACY)
    with pytest.raises(ValueError, match="created"):
        signature_manifest(env, image, chain=chain)
    with pytest.raises(ValueError, match="timezone"):
        signature_manifest(env, image, chain=chain, created=NOW.replace(tzinfo=None))


# --- Go's JSON escaping ------------------------------------------------------------------


def test_go_json_matches_go_marshal() -> None:
    """Bytes Go 1.26's json.Marshal (the Go of the notation binary used here) wrote for
    map[string]any{"k": "a\\bb\\fc\\\\bd<>&\\u2028\\u2029\\x01\\x7f\\"é"}."""
    value = {"k": 'a\bb\fc\\bd<>&\u2028\u2029\x01\x7f"é'}
    assert go_json(value) == (
        b'{"k":"a\\bb\\fc\\\\bd\\u003c\\u003e\\u0026\\u2028\\u2029\\u0001\x7f\\"\xc3\xa9"}'
    )


@given(st.dictionaries(texts, texts, max_size=5))
def test_go_json_equals_reference(value: dict[str, str]) -> None:
    assert go_json(value) == ref_go_json(value)
    assert json.loads(go_json(value)) == value
