"""Fuzz every parser that takes outside input: parse or raise a HoldCAError, never anything else.

Targets: JWS envelopes, OCI manifests and image layouts, trust policies, CAR files,
DAG-CBOR, MST nodes, commits (through the whole getRecord proof), DID documents, did:key
and Multikey, OCSP requests (DER and GET paths, and ``respond_ocsp``, which must answer
rather than raise), and the ``HOLD_*`` configuration.

Inputs: random bytes/text, and valid samples made by holdca's own builders with 1-8
random mutations (tests/hardening/fuzzing.py). Every input is counted
(tests/hardening/tally.py); ``scripts/reliability.py`` runs this file with
``HYPOTHESIS_PROFILE=fuzz`` (5000 examples per test) and reports the counts.

The oracle is the parse-or-refuse contract itself, plus, where a valid input is mutated,
that an accepted envelope still re-verifies only if its bytes are intact.
"""

from __future__ import annotations

import base64
import json
import tempfile
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from holdca.atproto import dagcbor
from holdca.atproto.car import read_car
from holdca.atproto.cid import CID
from holdca.atproto.diddoc import parse_did_document
from holdca.atproto.didkey import parse_did_key, parse_multikey
from holdca.atproto.mst import lookup
from holdca.atproto.verify import verify_record_proof
from holdca.hold.config import HoldConfig
from holdca.keys import MemorySigner, raw_to_der
from holdca.notation import (
    Descriptor,
    OCILayout,
    hold_trust_policy,
    parse_envelope,
    sign_envelope,
    signature_manifest,
    validate_trust_policy,
)
from holdca.pki import (
    CertStatus,
    SubjectInfo,
    issue_leaf,
    issue_root,
    parse_ocsp_get,
    parse_ocsp_request,
    respond_ocsp,
)
from holdca.testing.atproto import TestRepo
from holdca.testing.oci import build_test_image
from tests.hardening.fuzzing import fuzz_bytes, fuzz_text, parse_or_refuse
from tests.hardening.tally import count

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SUBJECT = SubjectInfo("US", "CA", "Fuzz Hold")
DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


# --- seeds: valid inputs made by holdca's builders ------------------------------------------


@cache
def ca() -> tuple[MemorySigner, Any]:
    signer = MemorySigner.generate()
    return signer, issue_root(
        signer, hold_did="did:web:hold.fuzz.example.com", subject=SUBJECT, now=NOW
    )


@cache
def envelope_seed() -> tuple[bytes, Descriptor]:
    signer, root = ca()
    key = MemorySigner.generate()
    leaf = issue_leaf(signer, root, did=DID, public_key=key.public_key, subject=SUBJECT, now=NOW)
    image = Descriptor(MANIFEST, "sha256:" + "ab" * 32, 1234)
    return sign_envelope(key, [leaf, root], image, now=NOW), image


@cache
def repo_seed() -> tuple[TestRepo, str, str, bytes, bytes]:
    repo = TestRepo.create("plc", "k256", now=NOW)
    digests = [f"sha256:{i:064x}" for i in range(300)]
    uris = repo.put_manifests(digests)
    uri, digest = uris[123], digests[123]
    return repo, uri, digest, repo.get_record_car(uri), repo.did_document()


@cache
def blocks_seed() -> dict[str, list[bytes]]:
    _, _, _, car, _ = repo_seed()
    parsed = read_car(car)
    root = parsed.roots[0]
    others = [b for c, b in parsed.blocks.items() if c != root]
    return {"commit": [parsed.blocks[root]], "other": others}


@cache
def ocsp_seed() -> bytes:
    signer, root = ca()
    key = MemorySigner.generate()
    leaf = issue_leaf(signer, root, did=DID, public_key=key.public_key, subject=SUBJECT, now=NOW)
    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, root, hashes.SHA1()).build()
    return request.public_bytes(serialization.Encoding.DER)


TRUST_POLICY_SEED = hold_trust_policy(store="hold").to_json()
TRUST_POLICY_WORDS = [
    "version",
    "1.0",
    "trustPolicies",
    "name",
    "registryScopes",
    "*",
    "signatureVerification",
    "level",
    "strict",
    "permissive",
    "audit",
    "skip",
    "override",
    "integrity",
    "authenticity",
    "revocation",
    "expiry",
    "authenticTimestamp",
    "log",
    "enforce",
    "trustStores",
    "ca:hold",
    "signingAuthority:hold",
    "tsa:t",
    "trustedIdentities",
    "x509.subject: C=US, ST=CA, O=H, CN=x",
    "local/holdca",
    "",
    "verifyTimestamp",
    "always",
    "afterCertExpiry",
]

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.sampled_from(TRUST_POLICY_WORDS) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(TRUST_POLICY_WORDS) | st.text(max_size=8), inner, max_size=5
        )
    ),
    max_leaves=20,
)


# --- notation ---------------------------------------------------------------------------------


@given(fuzz_bytes([envelope_seed()[0]], max_size=4096))
def test_fuzz_jws_envelope(data: bytes) -> None:
    """Independent check of what parses: cryptography verifies the ES256 signature."""
    env = parse_or_refuse("jws_envelope", parse_envelope, data)
    if env is None:
        return
    seed = parse_envelope(envelope_seed()[0])
    key = env.leaf.public_key()
    try:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(raw_to_der(env.signature), env.signing_input, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, AssertionError, ValueError):
        return
    # a signature that still verifies must cover exactly the seed's signed bytes
    assert (env.signing_input, env.signature) == (seed.signing_input, seed.signature)


@given(
    fuzz_bytes([signature_manifest(envelope_seed()[0], envelope_seed()[1])], max_size=2048),
    st.sampled_from(["blob", "index"]),
)
@settings(
    suppress_health_check=[HealthCheck.too_slow],
    max_examples=min(settings().max_examples, 1000),  # file I/O per input: cap it
)
def test_fuzz_oci_layout(data: bytes, where: str) -> None:
    """A hostile manifest (or index.json) in an OCI layout: listing signatures parses or refuses."""
    envelope, image = envelope_seed()
    with tempfile.TemporaryDirectory() as tmp:
        layout = OCILayout.create(Path(tmp) / "layout")
        real = build_test_image(layout)
        layout.attach_signature(real, envelope)
        if where == "index":
            (layout.path / "index.json").write_bytes(data)
        else:
            digest = layout.put_blob(data)
            index = json.loads((layout.path / "index.json").read_bytes())
            index["manifests"].append({"mediaType": MANIFEST, "digest": digest, "size": len(data)})
            (layout.path / "index.json").write_bytes(json.dumps(index).encode())

        def list_signatures(_: bytes) -> Any:
            for manifest in layout.manifests():
                layout.read_manifest(manifest)
            return layout.signatures_of(real)

        parse_or_refuse(f"oci_{where}", list_signatures, data)
    _ = image


@given(fuzz_bytes([TRUST_POLICY_SEED], max_size=2048))
def test_fuzz_trust_policy_bytes(data: bytes) -> None:
    parse_or_refuse("trust_policy", validate_trust_policy, data)


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value (dict keys and list indexes)."""
    out = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _nodes(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += _nodes(child, (*path, index))
    return out


@given(st.data())
def test_fuzz_trust_policy_structure(data: st.DataObject) -> None:
    """A valid policy with 1-4 subtrees replaced, deleted or added (structure-aware)."""
    doc: Any = json.loads(TRUST_POLICY_SEED)
    doc["trustPolicies"][0]["trustedIdentities"] = [
        "x509.subject: C=US, ST=CA, O=Fuzz Hold, CN=did:plc:ewvi7nxzyoun6zhxrhs64oiz"
    ]
    doc["trustPolicies"].append(
        {**doc["trustPolicies"][0], "name": "second", "registryScopes": ["local/holdca"]}
    )
    for _ in range(data.draw(st.integers(1, 4))):
        paths = _nodes(doc)[1:]
        if not paths:  # everything was deleted
            break
        path = data.draw(st.sampled_from(paths))
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[data.draw(st.sampled_from(TRUST_POLICY_WORDS))] = data.draw(JSON_VALUES)
        elif action == "add" and isinstance(parent, list):
            parent.append(data.draw(JSON_VALUES))
        else:
            parent[path[-1]] = data.draw(JSON_VALUES)
    parse_or_refuse("trust_policy_json", validate_trust_policy, json.dumps(doc).encode())


# --- atproto ----------------------------------------------------------------------------------


@given(fuzz_bytes([repo_seed()[3]], max_size=4096))
def test_fuzz_car(data: bytes) -> None:
    parse_or_refuse("car", read_car, data)


@given(fuzz_bytes(blocks_seed()["commit"] + blocks_seed()["other"][:8], max_size=1024))
def test_fuzz_dag_cbor(data: bytes) -> None:
    parse_or_refuse("dag_cbor", dagcbor.decode, data)


@given(fuzz_bytes(blocks_seed()["other"][:16], max_size=2048), st.binary(min_size=1, max_size=40))
def test_fuzz_mst_node(block: bytes, key: bytes) -> None:
    """A hostile (but hash-consistent) MST node as the root of a lookup."""
    cid = CID.for_dag_cbor(block)
    parse_or_refuse("mst_node", lambda b: lookup({cid: b}, cid, key), block)


@given(fuzz_bytes([repo_seed()[3]], max_size=4096))
def test_fuzz_record_proof(car: bytes) -> None:
    """The whole getRecord verification on a mutated CAR (commit, MST, record, signature)."""
    _, uri, digest, _, doc = repo_seed()
    result = parse_or_refuse(
        "record_proof", lambda c: verify_record_proof(c, doc, uri, digest), car
    )
    if result is not None:  # only an intact proof may verify
        assert result.record["digest"] == digest


@given(fuzz_bytes([repo_seed()[4]], max_size=2048))
def test_fuzz_did_document(data: bytes) -> None:
    repo = repo_seed()[0]

    def parse(d: bytes) -> Any:
        doc = parse_did_document(d, repo.did)
        return doc.atproto_key(), doc.pds_endpoint

    parse_or_refuse("did_document", parse, data)


@given(fuzz_text([repo_seed()[0].public_key.did_key], max_size=120))
def test_fuzz_did_key(text: str) -> None:
    parse_or_refuse("did_key", parse_did_key, text)
    parse_or_refuse("multikey", parse_multikey, text.removeprefix("did:key:"))


# --- pki: OCSP --------------------------------------------------------------------------------


@given(fuzz_bytes([ocsp_seed()], max_size=1024))
def test_fuzz_ocsp_request(data: bytes) -> None:
    parse_or_refuse("ocsp_request", parse_ocsp_request, data)
    signer, root = ca()
    response = respond_ocsp(
        data, status_of=lambda _: CertStatus.good(), issuer_cert=root, signer=signer, now=NOW
    )
    count("fuzz.ocsp_respond")
    assert ocsp.load_der_ocsp_response(response) is not None  # always a parsable answer


@given(fuzz_text([base64.b64encode(ocsp_seed()).decode()], max_size=512))
def test_fuzz_ocsp_get(text: str) -> None:
    parse_or_refuse("ocsp_get", parse_ocsp_get, text)


# --- hold configuration -----------------------------------------------------------------------

BASE_ENV = {
    "HOLD_DID": "did:web:hold01.example.com",
    "HOLD_SUBJECT_C": "US",
    "HOLD_SUBJECT_ST": "CA",
    "HOLD_SUBJECT_O": "Fuzz Hold",
}
CONFIG_VARS = [
    "HOLD_DID",
    "HOLD_SUBJECT_C",
    "HOLD_SUBJECT_ST",
    "HOLD_SUBJECT_O",
    "HOLD_COSIGN_ENABLED",
    "HOLD_CA_KEY_LABEL",
    "HOLD_KEY_BACKEND",
    "HOLD_CERT_VALIDITY_HOURS",
    "HOLD_SIGNING_SCHEME",
    "HOLD_OCSP_ENABLED",
    "HOLD_OCSP_URL",
    "HOLD_CRL_ENABLED",
    "HOLD_CRL_URL",
    "HOLD_RATE_LIMIT_PER_HOUR",
    "HOLD_ALLOWED_DID_METHODS",
    "HOLD_ROTATION_GRACE_DAYS",
    "HOLD_PKCS11_TOKEN_LABEL",
]
CONFIG_WORDS = [
    "",
    "0",
    "1",
    "-1",
    "24",
    "1e9",
    "nan",
    "true",
    "false",
    "plc,web",
    "pkcs11",
    "pem",
    "memory",
    "x509",
    "signingAuthority",
    "http://h.example/c",
    "did:plc:x",
]


@given(
    st.dictionaries(
        st.sampled_from(CONFIG_VARS),
        st.sampled_from(CONFIG_WORDS) | st.text(max_size=40),
        max_size=8,
    ),
    st.booleans(),
)
def test_fuzz_config(overrides: dict[str, str], base: bool) -> None:
    env = {**(BASE_ENV if base else {}), **overrides}
    env = {k: v.replace("\x00", "") if "PATH" in k else v for k, v in env.items()}
    parse_or_refuse("config", HoldConfig.from_env, env)
