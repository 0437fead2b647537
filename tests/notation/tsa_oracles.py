"""Shared by the timestamp interop tests: a throwaway TSA, and the independent token oracles.

:func:`check_token_oracles` takes a notation envelope (JWS or COSE), pulls out the
``io.cncf.notary.timestampSignature`` token and the raw signature bytes it must cover,
and runs ``openssl ts -verify`` (on the token and on a TimeStampResp wrapping it) and
rfc3161-client against the TSA root, plus a negative check with other data.
"""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import cbor2
from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from rfc3161_client import VerifierBuilder, decode_timestamp_response

from holdca.keys import MemorySigner
from holdca.notation.timestamp_tsa import LocalTSA
from holdca.pki import issue_tsa_certificate, issue_tsa_root
from tests.hold.conftest import HOLD_DID, SUBJECT
from tests.tools import require_tool

__all__ = [
    "TIMESTAMP_LABEL",
    "check_token_oracles",
    "make_local_tsa",
    "token_and_signature",
    "wrap_token",
]

TIMESTAMP_LABEL = "io.cncf.notary.timestampSignature"


def make_local_tsa(now: datetime | None = None) -> LocalTSA:
    """A built-in TSA on fresh memory keys (its own root, as holdca issues it)."""
    now = now or datetime.now(UTC)
    root_key, key = MemorySigner.generate(), MemorySigner.generate()
    root = issue_tsa_root(root_key, hold_did=HOLD_DID, subject=SUBJECT, now=now)
    cert = issue_tsa_certificate(root_key, root, key.public_key, subject=SUBJECT, now=now)
    return LocalTSA(key, [cert, root])


def token_and_signature(envelope: bytes) -> tuple[bytes, bytes]:
    """(DER token, raw signature bytes it must cover) of a JWS or COSE envelope."""
    if envelope[:1] == b"{":
        jws = json.loads(envelope)
        token = base64.b64decode(jws["header"][TIMESTAMP_LABEL], validate=True)  # std base64
        signature = base64.urlsafe_b64decode(jws["signature"] + "=" * (-len(jws["signature"]) % 4))
        return token, signature
    outer = cbor2.loads(envelope)
    assert isinstance(outer, cbor2.CBORTag), "not a tagged COSE_Sign1"
    assert outer.tag == 18, "not a COSE_Sign1"
    _protected, unprotected, _payload, signature = outer.value
    token = unprotected[TIMESTAMP_LABEL]
    assert isinstance(token, bytes), "the COSE timestamp is not a bstr"
    return token, signature


def wrap_token(token: bytes) -> bytes:
    """A granted TimeStampResp carrying ``token`` (rfc3161-client takes only responses)."""
    response: bytes = tsp.TimeStampResp(
        {"status": {"status": "granted"}, "time_stamp_token": cms.ContentInfo.load(token)}
    ).dump()
    return response


def _openssl(directory: Path, data: bytes, der: bytes, root: Path, *, token: bool) -> bool:
    openssl = require_tool("openssl")
    (directory / "data.bin").write_bytes(data)
    (directory / "in.der").write_bytes(der)
    argv = [openssl, "ts", "-verify", "-data", str(directory / "data.bin")]
    argv += ["-in", str(directory / "in.der"), *(["-token_in"] if token else [])]
    argv += ["-CAfile", str(root)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    return proc.returncode == 0 and "Verification: OK" in proc.stdout


def _rfc3161_client(response: bytes, data: bytes, root: x509.Certificate) -> bool:
    verifier = VerifierBuilder().add_root_certificate(root).build()
    try:
        return bool(verifier.verify_message(decode_timestamp_response(response), data))
    except Exception:  # rfc3161-client raises VerificationError and parse errors of its own
        return False


def check_token_oracles(envelope: bytes, tsa_root: x509.Certificate) -> bytes:
    """Assert that the envelope's token passes openssl and rfc3161-client over the
    envelope's raw signature bytes (and fails both over other bytes). Returns the token."""
    token, signature = token_and_signature(envelope)
    response = wrap_token(token)
    with tempfile.TemporaryDirectory(prefix="holdca-tsa-oracle-") as tmp:
        directory = Path(tmp)
        root = directory / "tsa-root.pem"
        root.write_bytes(tsa_root.public_bytes(Encoding.PEM))
        assert _openssl(directory, signature, response, root, token=False), "openssl (response)"
        assert _openssl(directory, signature, token, root, token=True), "openssl (token)"
        assert not _openssl(directory, signature + b"x", token, root, token=True)
    assert _rfc3161_client(response, signature, tsa_root), "rfc3161-client"
    assert not _rfc3161_client(response, signature + b"x", tsa_root)
    return token
