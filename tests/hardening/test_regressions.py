"""Inputs the fuzzers found, kept as fixed regression cases.

Each case is rebuilt here from a valid sample (not stored as an opaque blob), so it says
what is wrong with it. The oracle is the parse-or-refuse contract: the holdca error of the
parser, never a raw exception from a dependency.
"""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization

from holdca.errors import JWSFormatError, TrustPolicyError, TrustStoreError
from holdca.notation import parse_envelope, validate_trust_policy
from holdca.notation.truststore import read_certificate_file
from tests.hardening import test_fuzz_parsers as seeds
from tests.hardening.fuzzing import hang_guard

V3 = bytes.fromhex("a003020102")  # [0] EXPLICIT INTEGER 2: X.509 v3


def bad_version(der: bytes) -> bytes:
    """``der`` with its version field set to 3 (no such X.509 version)."""
    assert der.count(V3) >= 1
    return der.replace(V3, bytes.fromhex("a003020103"), 1)


def leaf_der() -> bytes:
    env = parse_envelope(seeds.envelope_seed()[0])
    return env.leaf.public_bytes(serialization.Encoding.DER)


def test_envelope_with_an_unknown_x509_version_is_a_format_error() -> None:
    envelope = json.loads(seeds.envelope_seed()[0])
    envelope["header"]["x5c"][0] = base64.b64encode(bad_version(leaf_der())).decode()
    with pytest.raises(JWSFormatError):
        parse_envelope(json.dumps(envelope).encode())


def test_trust_store_file_with_an_unknown_x509_version_is_refused() -> None:
    with pytest.raises(TrustStoreError):
        read_certificate_file(bad_version(leaf_der()))


def test_registry_scope_validation_is_not_exponential() -> None:
    policy = json.loads(seeds.TRUST_POLICY_SEED)
    policy["trustPolicies"][0]["registryScopes"] = ["l/" + "3" * 40 + " "]
    with hang_guard(5.0), pytest.raises(TrustPolicyError):
        validate_trust_policy(json.dumps(policy).encode())


def test_envelope_with_an_unloadable_leaf_key_is_a_format_error() -> None:
    """Found by the hypothesis fuzz run (fixed in holdca.notation): a mangled EC point."""
    der = leaf_der()
    spki_point = bytes.fromhex("03420004")  # BIT STRING, 0 unused bits, uncompressed point
    assert der.count(spki_point) == 1
    broken = der.replace(spki_point, bytes.fromhex("03420024"))
    envelope = json.loads(seeds.envelope_seed()[0])
    envelope["header"]["x5c"][0] = base64.b64encode(broken).decode()
    with pytest.raises(JWSFormatError, match="public key"):
        parse_envelope(json.dumps(envelope).encode())
