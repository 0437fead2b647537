"""Build signed ATProto repos and getRecord proofs for tests, demos and embedders.

:class:`TestRepo` holds a signing key (K-256 or P-256), a DID (fresh did:plc or did:web) and a
set of records; it builds the canonical MST, signs a v3 commit and exports:

* :meth:`TestRepo.get_record_car`: the ``com.atproto.sync.getRecord`` CAR (commit, the MST nodes
  on the key's path, the record block when present) - a proof of inclusion or of absence;
* :meth:`TestRepo.did_document`: the DID document JSON (Multikey or legacy key form);
* :meth:`TestRepo.full_car`: the whole repo (getRepo style);
* :meth:`TestRepo.service_token`: an inter-service auth JWT signed by the repo key, as the
  DID's PDS mints with ``com.atproto.server.getServiceAuth``.

The MST builder is checked against the published ``commit-proof-fixtures.json`` root CIDs, and
its CARs against MarshalX ``atproto`` (tests/atproto), so it is not only checked by holdca's own
verifier.

Example::

    repo = TestRepo.create(method="plc", curve="k256")
    uri = repo.put_manifest("sha256:" + "ab" * 32, repository="alice/app")
    car = repo.get_record_car(uri)
    doc = repo.did_document()

Not for production: keys live in memory and the DID is not registered anywhere.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import coincurve
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from holdca.atproto import dagcbor
from holdca.atproto.car import write_car
from holdca.atproto.cid import CID
from holdca.atproto.didkey import P256_ORDER, PublicKey, b58encode
from holdca.atproto.mst import common_prefix_length, key_height
from holdca.atproto.syntax import mst_key, parse_record_uri

__all__ = ["MSTBuilder", "TestRepo", "make_tid", "sign_k256", "sign_p256"]

_B32_SORTABLE = "234567abcdefghijklmnopqrstuvwxyz"
_B32 = "abcdefghijklmnopqrstuvwxyz234567"


def _b64url_json(value: Mapping[str, Any]) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def make_tid(timestamp_us: int, clock_id: int = 0) -> str:
    """A TID for ``timestamp_us`` (microseconds since the epoch) and a 10-bit clock id."""
    value = ((timestamp_us & ((1 << 53) - 1)) << 10) | (clock_id & 0x3FF)
    chars = []
    for _ in range(13):
        chars.append(_B32_SORTABLE[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def sign_k256(private_key: coincurve.PrivateKey, message: bytes) -> bytes:
    """atproto signature (64-byte r||s, low-S, RFC 6979) over ``message`` with a K-256 key."""
    return bytes(private_key.sign_recoverable(message))[:64]


def sign_p256(private_key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    """atproto signature (64-byte r||s, normalised to low-S) over ``message`` with a P-256 key."""
    der = private_key.sign(message, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    if s > P256_ORDER // 2:
        s = P256_ORDER - s
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@dataclass
class _Node:
    layer: int
    left: _Node | None
    entries: list[tuple[bytes, CID, _Node | None]]
    block: bytes = b""
    cid: CID | None = None


class MSTBuilder:
    """Builds the canonical MST for a key -> value-CID map (deterministic root CID)."""

    def __init__(self, items: Mapping[bytes, CID]) -> None:
        """Build the tree for ``items`` (keys are repo paths as bytes)."""
        self.blocks: dict[CID, bytes] = {}
        heights = {k: key_height(k) for k in items}
        ordered = sorted(items.items())
        if not ordered:
            self.root = self._emit(_Node(0, None, []))
            return
        top = max(heights.values())
        self.root = self._build([(k, v, heights[k]) for k, v in ordered], top)

    def _build(self, items: list[tuple[bytes, CID, int]], layer: int) -> _Node:
        left_group: list[tuple[bytes, CID, int]] = []
        entries: list[tuple[bytes, CID, list[tuple[bytes, CID, int]]]] = []
        for item in items:
            if item[2] == layer:
                entries.append((item[0], item[1], []))
            elif entries:
                entries[-1][2].append(item)
            else:
                left_group.append(item)
        left = self._build(left_group, layer - 1) if left_group else None
        built = [
            (k, v, self._build(group, layer - 1) if group else None) for k, v, group in entries
        ]
        return self._emit(_Node(layer, left, built))

    def _emit(self, node: _Node) -> _Node:
        prev = b""
        wire = []
        for key, value, right in node.entries:
            p = common_prefix_length(prev, key)
            wire.append(
                {"k": key[p:], "p": p, "t": right.cid if right is not None else None, "v": value}
            )
            prev = key
        left = node.left.cid if node.left is not None else None
        node.block = dagcbor.encode({"e": wire, "l": left})
        node.cid = CID.for_dag_cbor(node.block)
        self.blocks[node.cid] = node.block
        return node

    @property
    def root_cid(self) -> CID:
        """CID of the root node."""
        assert self.root.cid is not None
        return self.root.cid

    def path(self, key: bytes) -> list[tuple[CID, bytes]]:
        """The (CID, block) of every node from the root to where ``key`` is or would be."""
        out: list[tuple[CID, bytes]] = []
        node: _Node | None = self.root
        height = key_height(key)
        while node is not None:
            assert node.cid is not None
            out.append((node.cid, node.block))
            keys = [k for k, _, _ in node.entries]
            if key in keys or height >= node.layer:
                break
            idx = sum(1 for k in keys if k < key)
            node = node.left if idx == 0 else node.entries[idx - 1][2]
        return out


@dataclass
class TestRepo:
    """An in-memory signed atproto repo (see the module docstring).

    Attributes:
        did: the repo's DID.
        curve: ``"k256"`` or ``"p256"``.
        pds_endpoint: the ``#atproto_pds`` endpoint written into the DID document.
        records: repo path (``collection/rkey``) -> record (data model).
    """

    __test__ = False  # not a pytest test class

    did: str
    curve: Literal["k256", "p256"]
    _private: Any
    pds_endpoint: str = "https://pds.example.com"
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    _clock_us: int = 0
    _built: tuple[MSTBuilder, CID, bytes, dict[str, tuple[CID, bytes]]] | None = None
    _rev: str = ""

    @classmethod
    def create(
        cls,
        method: Literal["plc", "web"] = "plc",
        curve: Literal["k256", "p256"] = "k256",
        *,
        did: str | None = None,
        host: str | None = None,
        private_key: bytes | None = None,
        pds_endpoint: str = "https://pds.example.com",
        now: datetime | None = None,
    ) -> TestRepo:
        """A new empty repo with a fresh key (or ``private_key``, a 32-byte scalar).

        Args:
            method: ``"plc"`` (random did:plc) or ``"web"`` (``did:web:<host>``).
            curve: ``"k256"`` or ``"p256"``.
            did: use this DID instead of generating one.
            host: hostname for did:web (default: a random ``*.example.com`` name).
            private_key: 32-byte private scalar; random when None.
            pds_endpoint: PDS URL for the DID document.
            now: start of the repo's TID clock (default: the current time).
        """
        if did is None:
            if method == "plc":
                did = "did:plc:" + "".join(secrets.choice(_B32) for _ in range(24))
            elif method == "web":
                did = "did:web:" + (host or f"u{secrets.token_hex(6)}.example.com")
            else:
                raise ValueError(f"unknown DID method {method!r}")
        secret = private_key if private_key is not None else secrets.token_bytes(32)
        priv: Any
        if curve == "k256":
            priv = coincurve.PrivateKey(secret)
        elif curve == "p256":
            priv = ec.derive_private_key(int.from_bytes(secret, "big"), ec.SECP256R1())
        else:
            raise ValueError(f"unknown curve {curve!r}")
        start = now or datetime.now(UTC)
        return cls(
            did=did,
            curve=curve,
            _private=priv,
            pds_endpoint=pds_endpoint,
            _clock_us=int(start.timestamp() * 1_000_000),
        )

    def __repr__(self) -> str:
        return f"TestRepo(did={self.did!r}, curve={self.curve!r}, records={len(self.records)})"

    # --- keys -----------------------------------------------------------------------

    @property
    def public_key(self) -> PublicKey:
        """The current signing key."""
        if self.curve == "k256":
            return PublicKey("k256", self._private.public_key.format(compressed=True))
        point = self._private.public_key().public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
        return PublicKey("p256", point)

    @property
    def signing_key(self) -> str:
        """The current signing key as did:key."""
        return self.public_key.did_key

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` with the repo key (64-byte r||s, low-S)."""
        if self.curve == "k256":
            return sign_k256(self._private, message)
        return sign_p256(self._private, message)

    def service_token(
        self,
        aud: str,
        lxm: str | None,
        *,
        now: datetime | None = None,
        lifetime: timedelta = timedelta(seconds=60),
        jti: str | None = None,
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A service-auth JWT for ``aud`` and method ``lxm``, signed by the repo key.

        ``claims`` overrides or adds claims (a value of ``None`` removes the claim).
        """
        issued = int((now or datetime.now(UTC)).timestamp())
        payload: dict[str, Any] = {
            "iat": issued,
            "iss": self.did,
            "aud": aud,
            "exp": issued + int(lifetime.total_seconds()),
            "lxm": lxm,
            "jti": jti or secrets.token_hex(16),
        }
        payload.update(claims or {})
        payload = {k: v for k, v in payload.items() if v is not None}
        header = {"typ": "JWT", "alg": self.public_key.jwt_alg}
        signing_input = f"{_b64url_json(header)}.{_b64url_json(payload)}"
        signature = self.sign(signing_input.encode("ascii"))
        return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"

    def rotate_key(self, curve: Literal["k256", "p256"] | None = None) -> None:
        """Replace the signing key with a fresh one and re-sign the current commit."""
        fresh = TestRepo.create(curve=curve or self.curve, did=self.did)
        self.curve = fresh.curve
        self._private = fresh._private
        self._built = None

    # --- records ----------------------------------------------------------------------

    def next_tid(self) -> str:
        """A fresh TID from the repo clock (strictly increasing)."""
        self._clock_us += 1
        return make_tid(self._clock_us)

    def put_record(
        self, collection: str, record: Mapping[str, Any], rkey: str | None = None
    ) -> str:
        """Create or replace a record; return its ``at://`` URI."""
        rkey = rkey or self.next_tid()
        path = mst_key(collection, rkey).decode()
        dagcbor.encode(dict(record))  # reject what cannot be encoded, now
        self.records[path] = dict(record)
        self._built = None
        return f"at://{self.did}/{path}"

    def put_manifest(
        self,
        manifest_digest: str,
        *,
        repository: str = "example/app",
        rkey: str | None = None,
        media_type: str = "application/vnd.oci.image.manifest.v1+json",
        hold_did: str | None = "did:web:hold01.atcr.io",
        created_at: str = "2026-01-01T00:00:00.000Z",
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Commit an ``io.atcr.manifest`` record for ``manifest_digest``; return its URI."""
        record: dict[str, Any] = {
            "$type": "io.atcr.manifest",
            "repository": repository,
            "digest": manifest_digest,
            "mediaType": media_type,
            "schemaVersion": 2,
            "createdAt": created_at,
        }
        if hold_did is not None:
            record["holdDid"] = hold_did
        record.update(extra or {})
        return self.put_record("io.atcr.manifest", record, rkey)

    def put_manifests(self, digests: Iterable[str], **kwargs: Any) -> list[str]:
        """Commit many manifest records at once (one rebuild); return their URIs."""
        return [self.put_manifest(d, **kwargs) for d in digests]

    def delete_record(self, uri: str) -> None:
        """Remove a record (a later getRecord CAR proves its absence)."""
        _, collection, rkey = parse_record_uri(uri)
        del self.records[f"{collection}/{rkey}"]
        self._built = None

    # --- commit and export --------------------------------------------------------------

    def _build(self) -> tuple[MSTBuilder, CID, bytes, dict[str, tuple[CID, bytes]]]:
        if self._built is None:
            encoded: dict[str, tuple[CID, bytes]] = {}
            for path, record in self.records.items():
                block = dagcbor.encode(record)
                encoded[path] = (CID.for_dag_cbor(block), block)
            mst = MSTBuilder({p.encode(): c for p, (c, _) in encoded.items()})
            self._rev = self.next_tid()
            unsigned = {
                "did": self.did,
                "version": 3,
                "data": mst.root_cid,
                "rev": self._rev,
                "prev": None,
            }
            signed = dict(unsigned, sig=self.sign(dagcbor.encode(unsigned)))
            block = dagcbor.encode(signed)
            self._built = (mst, CID.for_dag_cbor(block), block, encoded)
        return self._built

    @property
    def commit_cid(self) -> CID:
        """CID of the current signed commit."""
        return self._build()[1]

    @property
    def rev(self) -> str:
        """Revision TID of the current commit."""
        self._build()
        return self._rev

    @property
    def commit_block(self) -> bytes:
        """DAG-CBOR bytes of the current signed commit."""
        return self._build()[2]

    def record_cid(self, uri: str) -> CID:
        """CID of the record at ``uri`` (KeyError when absent)."""
        _, collection, rkey = parse_record_uri(uri)
        return self._build()[3][f"{collection}/{rkey}"][0]

    def get_record_car(self, uri: str) -> bytes:
        """The getRecord CAR for ``uri``: commit, MST path, and the record block if present."""
        _, collection, rkey = parse_record_uri(uri)
        mst, commit_cid, commit_block, encoded = self._build()
        path = f"{collection}/{rkey}"
        blocks = [(commit_cid, commit_block), *mst.path(path.encode())]
        if path in encoded:
            blocks.append(encoded[path])
        return write_car([commit_cid], blocks)

    def full_car(self) -> bytes:
        """The whole repo as a CAR (commit, every MST node, every record)."""
        mst, commit_cid, commit_block, encoded = self._build()
        blocks = [(commit_cid, commit_block), *mst.blocks.items(), *encoded.values()]
        return write_car([commit_cid], blocks)

    def did_document(self, *, legacy: bool = False, relative_ids: bool = False) -> bytes:
        """The DID document JSON (``#atproto`` key and ``#atproto_pds`` service).

        Args:
            legacy: write the key in the legacy form (type names the curve, uncompressed point).
            relative_ids: write ``#atproto`` instead of ``<did>#atproto``.
        """
        key = self.public_key
        if legacy:
            if self.curve == "k256":
                point = coincurve.PublicKey(key.compressed).format(compressed=False)
                kind = "EcdsaSecp256k1VerificationKey2019"
            else:
                pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key.compressed)
                point = pub.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
                kind = "EcdsaSecp256r1VerificationKey2019"
            method = {"type": kind, "publicKeyMultibase": "z" + b58encode(point)}
        else:
            method = {"type": "Multikey", "publicKeyMultibase": key.multikey}
        key_id = "#atproto" if relative_ids else f"{self.did}#atproto"
        doc = {
            "@context": [
                "https://www.w3.org/ns/did/v1",
                "https://w3id.org/security/multikey/v1",
            ],
            "id": self.did,
            "alsoKnownAs": [],
            "verificationMethod": [{"id": key_id, "controller": self.did, **method}],
            "service": [
                {
                    "id": "#atproto_pds",
                    "type": "AtprotoPersonalDataServer",
                    "serviceEndpoint": self.pds_endpoint,
                }
            ],
        }
        return json.dumps(doc, indent=2).encode()
