"""Real, signed did:plc operation logs for tests: a DID whose identity a resolver can verify.

:class:`TestPLC` keeps the rotation key of a did:plc and its audit log: a signed genesis
operation (the DID is the hash of it, as on the real directory), then key rotations, PDS
moves and a tombstone, each signed by a rotation key. :meth:`TestPLC.audit_log` is what
``GET {plc}/{did}/log/audit`` answers, so a test can serve it to
:class:`~holdca.atproto.resolve.HTTPResolver` and watch the hold verify it.

Example::

    repo, plc = plc_repo(pds_endpoint="http://localhost:2583")
    log = plc.audit_log()          # JSON bytes
    repo.rotate_key(); plc.update(atproto_key=repo.signing_key)

Not for production: keys live in memory.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import coincurve

from holdca.atproto import dagcbor
from holdca.atproto.cid import CID
from holdca.atproto.didkey import PublicKey
from holdca.testing.atproto import TestRepo, sign_k256

__all__ = ["TestPLC", "plc_repo"]

_B32 = "abcdefghijklmnopqrstuvwxyz234567"


def _b32(data: bytes) -> str:
    bits = "".join(f"{b:08b}" for b in data)
    bits += "0" * (-len(bits) % 5)
    return "".join(_B32[int(bits[i : i + 5], 2)] for i in range(0, len(bits), 5))


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


@dataclass
class TestPLC:
    """A did:plc with its rotation key and signed audit log (see the module docstring).

    Attributes:
        did: the DID (``did:plc:`` + the hash of the signed genesis operation).
        entries: the audit log entries (``{did, operation, cid, nullified, createdAt}``).
    """

    __test__ = False  # not a pytest test class

    rotation_key: coincurve.PrivateKey = field(repr=False)
    did: str = ""
    entries: list[dict[str, Any]] = field(default_factory=list)
    _clock: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def rotation_did_key(self) -> str:
        """The rotation key as did:key."""
        return PublicKey("k256", self.rotation_key.public_key.format(compressed=True)).did_key

    @classmethod
    def register(
        cls,
        atproto_key: str,
        *,
        pds_endpoint: str,
        handle: str = "alice.test",
        now: datetime | None = None,
    ) -> TestPLC:
        """A new DID with ``atproto_key`` (did:key) and a PDS, by a signed genesis op."""
        plc = cls(coincurve.PrivateKey(secrets.token_bytes(32)))
        plc._clock = (now or datetime.now(UTC)) - timedelta(days=1)
        genesis = plc._signed(
            {
                "type": "plc_operation",
                "rotationKeys": [plc.rotation_did_key],
                "verificationMethods": {"atproto": atproto_key},
                "alsoKnownAs": [f"at://{handle}"],
                "services": {
                    "atproto_pds": {"type": "AtprotoPersonalDataServer", "endpoint": pds_endpoint}
                },
                "prev": None,
            }
        )
        digest = CID.for_dag_cbor(dagcbor.encode(genesis)).digest
        plc.did = "did:plc:" + _b32(digest)[:24]
        plc._append(genesis)
        return plc

    def _signed(self, op: dict[str, Any]) -> dict[str, Any]:
        return {**op, "sig": _b64url(sign_k256(self.rotation_key, dagcbor.encode(op)))}

    def _append(self, op: dict[str, Any]) -> str:
        cid = str(CID.for_dag_cbor(dagcbor.encode(op)))
        self._clock += timedelta(seconds=1)
        self.entries.append(
            {
                "did": self.did,
                "operation": op,
                "cid": cid,
                "nullified": False,
                "createdAt": _stamp(self._clock),
            }
        )
        return cid

    def _last(self) -> dict[str, Any]:
        return [e for e in self.entries if not e["nullified"]][-1]

    def update(self, *, atproto_key: str | None = None, pds_endpoint: str | None = None) -> str:
        """Sign and append an update (a new atproto key and/or PDS); returns its CID."""
        last = self._last()
        op = {k: v for k, v in last["operation"].items() if k != "sig"}
        if atproto_key is not None:
            op["verificationMethods"] = {**op["verificationMethods"], "atproto": atproto_key}
        if pds_endpoint is not None:
            op["services"] = {
                **op["services"],
                "atproto_pds": {"type": "AtprotoPersonalDataServer", "endpoint": pds_endpoint},
            }
        op["prev"] = last["cid"]
        return self._append(self._signed(op))

    def tombstone(self) -> str:
        """Sign and append a tombstone (the DID is deactivated); returns its CID."""
        return self._append(self._signed({"type": "plc_tombstone", "prev": self._last()["cid"]}))

    def audit_log(self) -> bytes:
        """The JSON the directory serves at ``/{did}/log/audit``."""
        return json.dumps(self.entries).encode()


def plc_repo(
    *,
    pds_endpoint: str = "https://pds.example.com",
    curve: Literal["k256", "p256"] = "k256",
    now: datetime | None = None,
) -> tuple[TestRepo, TestPLC]:
    """A :class:`TestRepo` whose DID is a real did:plc registered by a signed genesis op."""
    repo = TestRepo.create(curve=curve, pds_endpoint=pds_endpoint, now=now)
    plc = TestPLC.register(repo.signing_key, pds_endpoint=pds_endpoint, now=now)
    repo.did = plc.did
    return repo, plc
