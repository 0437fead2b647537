"""OCSP responder core: parse requests, answer from a status callback, never raise.

notation's OCSP client (notation-core-go ``revocation/internal/ocsp/ocsp.go``) sends a SHA-1
CertID without a nonce, by GET (``<url>/<url-escaped base64 DER>``) when short, else by POST;
it needs HTTP 200, a body of at most 20,480 bytes, a signature by the issuer or by a responder
certificate the issuer signed, and **a nextUpdate** (a response without one counts as expired).
This module:

* :func:`parse_ocsp_request` / :func:`parse_ocsp_get` turn a POST body / GET path segment
  into an :class:`OCSPRequestInfo` (SHA-1/256/384/512 CertIDs, one or several, optional
  nonce), raising :class:`~holdca.errors.OCSPRequestError`;
* :func:`respond_ocsp` / :func:`respond_ocsp_get` answer with DER: ``malformedRequest`` for
  input that does not parse, ``unauthorized`` when a CertID names another issuer,
  ``internalError`` when the status callback or the signer fails; otherwise a signed basic
  response with thisUpdate = ``now``, nextUpdate = ``now + validity`` and the nonce echoed.
  They never raise.

Single requests (notation's and most clients') are answered with cryptography's
``OCSPResponseBuilder``. It writes exactly one SingleResponse and sets producedAt from the
system clock (the only clock reading in holdca.pki; producedAt is informational and neither
notation nor openssl checks it). A request for several certificates (openssl can send one) is
answered with one SingleResponse each, encoded with asn1crypto because cryptography has no
builder for that; producedAt is then ``now``. At most :data:`MAX_SINGLE_REQUESTS` CertIDs
are answered (more is ``malformedRequest``) so a response stays far below 20 KB.

OCSP responses are signed with ECDSA CA or responder keys (cryptography's OCSP builder has
no RSA-PSS option; an RSA signer yields ``internalError``).

:class:`OCSPResponseCache` keeps pre-signed "good" responses per serial until a refresh point
before their nextUpdate; requests with a nonce bypass it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Literal
from urllib.parse import unquote

from asn1crypto import core as a_core
from asn1crypto import keys as a_keys
from asn1crypto import ocsp as a_ocsp
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from holdca.errors import OCSPRequestError
from holdca.keys import Signer, as_private_key
from holdca.keys.adapter import SignerECKey

__all__ = [
    "MAX_NONCE_BYTES",
    "MAX_OCSP_RESPONSE_BYTES",
    "MAX_REQUEST_BYTES",
    "MAX_SINGLE_REQUESTS",
    "CertID",
    "CertStatus",
    "OCSPRequestInfo",
    "OCSPResponseCache",
    "decode_ocsp_get",
    "issuer_hashes",
    "ocsp_error_response",
    "parse_ocsp_get",
    "parse_ocsp_request",
    "respond_ocsp",
    "respond_ocsp_get",
]

MAX_OCSP_RESPONSE_BYTES = 20480
"""The largest OCSP response notation reads (``revocation/internal/ocsp/ocsp.go``)."""

MAX_REQUEST_BYTES = 16384
"""Requests longer than this are malformed (a single SHA-512 CertID is about 200 bytes)."""

MAX_SINGLE_REQUESTS = 32
"""The most CertIDs answered in one response (each SingleResponse is about 100 bytes)."""

MAX_NONCE_BYTES = 32
"""RFC 8954: a nonce is 1 to 32 octets."""

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_B64 = re.compile(r"[A-Za-z0-9+/]*")


@dataclass(frozen=True, slots=True)
class CertStatus:
    """What the responder says about one serial: good, revoked (time, reason) or unknown.

    Build with :meth:`good`, :meth:`revoked` or :meth:`unknown`.
    """

    kind: Literal["good", "revoked", "unknown"]
    revoked_at: datetime | None = None
    reason: x509.ReasonFlags | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("good", "revoked", "unknown"):
            raise ValueError(f"unknown certificate status {self.kind!r}")
        if (self.kind == "revoked") != (self.revoked_at is not None):
            raise ValueError("revoked_at is required for, and only for, a revoked status")
        if self.revoked_at is not None and self.revoked_at.tzinfo is None:
            raise ValueError("revoked_at must be timezone-aware")
        if self.reason is not None and self.kind != "revoked":
            raise ValueError("a reason is only meaningful for a revoked status")

    @classmethod
    def good(cls) -> CertStatus:
        """The certificate is not revoked."""
        return _GOOD

    @classmethod
    def unknown(cls) -> CertStatus:
        """The responder does not know the serial (not issued by this CA)."""
        return _UNKNOWN

    @classmethod
    def revoked(cls, revoked_at: datetime, reason: x509.ReasonFlags | None = None) -> CertStatus:
        """The certificate was revoked at ``revoked_at`` (timezone-aware) for ``reason``."""
        return cls("revoked", revoked_at, reason)


_GOOD = CertStatus("good")
_UNKNOWN = CertStatus("unknown")


@dataclass(frozen=True, slots=True)
class CertID:
    """One requested certificate: hash algorithm, issuer name/key hashes and serial."""

    hash_algorithm: str
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial_number: int


@dataclass(frozen=True, slots=True)
class OCSPRequestInfo:
    """A parsed OCSP request: one or more :class:`CertID` and an optional nonce."""

    cert_ids: tuple[CertID, ...]
    nonce: bytes | None = None

    @property
    def serial_numbers(self) -> list[int]:
        """The requested serial numbers, in request order."""
        return [c.serial_number for c in self.cert_ids]


def _hash_name(name: str) -> str:
    if name not in _HASHES:
        raise OCSPRequestError(f"unsupported CertID hash algorithm {name!r}")
    return name


def _parse_one(der: bytes) -> OCSPRequestInfo | None:
    """cryptography's fast parser; None when the request holds several CertIDs."""
    try:
        req = ocsp.load_der_ocsp_request(der)
    except NotImplementedError:
        return None
    except ValueError as exc:
        raise OCSPRequestError(f"OCSP request is not valid DER: {exc}") from None
    try:
        hash_name = _hash_name(req.hash_algorithm.name)
        nonce = None
        for ext in req.extensions:
            if isinstance(ext.value, x509.OCSPNonce):
                nonce = ext.value.nonce
            elif ext.critical:
                raise OCSPRequestError(f"unsupported critical extension {ext.oid.dotted_string}")
        cert_id = CertID(hash_name, req.issuer_name_hash, req.issuer_key_hash, req.serial_number)
    except UnsupportedAlgorithm:
        raise OCSPRequestError("unsupported CertID hash algorithm") from None
    except ValueError as exc:  # extension parsing
        raise OCSPRequestError(f"OCSP request extensions do not parse: {exc}") from None
    return OCSPRequestInfo((cert_id,), nonce)


def _parse_many(der: bytes) -> OCSPRequestInfo:
    """asn1crypto parser for requests with several CertIDs."""
    try:
        req = a_ocsp.OCSPRequest.load(der, strict=True)
        tbs = req["tbs_request"]
        ids = []
        for item in tbs["request_list"]:
            cid = item["req_cert"]
            ids.append(
                CertID(
                    _hash_name(cid["hash_algorithm"]["algorithm"].native),
                    cid["issuer_name_hash"].native,
                    cid["issuer_key_hash"].native,
                    cid["serial_number"].native,
                )
            )
        nonce = None
        for ext in tbs["request_extensions"]:
            name = ext["extn_id"].native
            if name == "nonce":
                nonce = ext["extn_value"].parsed.native
            elif ext["critical"].native:
                raise OCSPRequestError(f"unsupported critical extension {name}")
    except OCSPRequestError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise OCSPRequestError(f"OCSP request is not valid DER: {exc}") from None
    return OCSPRequestInfo(tuple(ids), nonce)


def parse_ocsp_request(der: bytes) -> OCSPRequestInfo:
    """Parse a DER OCSP request (the body of a POST ``application/ocsp-request``).

    Raises:
        OCSPRequestError: not bytes, too long, not DER, no or too many CertIDs, an
            unsupported hash algorithm, a nonce outside 1..32 octets, an unknown critical
            extension, or a non-positive serial.
    """
    if not isinstance(der, bytes | bytearray | memoryview):
        raise OCSPRequestError(f"OCSP request must be bytes, not {type(der).__name__}")
    der = bytes(der)
    if not der or len(der) > MAX_REQUEST_BYTES:
        raise OCSPRequestError(f"OCSP request length {len(der)} outside 1..{MAX_REQUEST_BYTES}")
    info = _parse_one(der) or _parse_many(der)
    if not info.cert_ids:
        raise OCSPRequestError("OCSP request names no certificate")
    if len(info.cert_ids) > MAX_SINGLE_REQUESTS:
        raise OCSPRequestError(f"more than {MAX_SINGLE_REQUESTS} certificates in one request")
    if info.nonce is not None and not 1 <= len(info.nonce) <= MAX_NONCE_BYTES:
        raise OCSPRequestError(f"nonce of {len(info.nonce)} octets (RFC 8954 allows 1..32)")
    for cid in info.cert_ids:
        if cid.serial_number <= 0 or cid.serial_number.bit_length() > 159:
            raise OCSPRequestError("requested serial number is not a positive 20-octet integer")
    return info


def decode_ocsp_get(path_or_b64: str) -> bytes:
    """The DER request carried by an OCSP GET path segment (RFC 6960 appendix A.1).

    Accepts the segment after the responder's base URL, with or without a leading ``/``,
    URL-encoded or not (``%2B``, ``%2F``, ``%3D`` in any case), with or without ``=``
    padding, a ``+`` turned into a space by form decoding, and the URL-safe alphabet.

    Raises:
        OCSPRequestError: not text, or not base64 after decoding.
    """
    value: object = path_or_b64
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise OCSPRequestError("OCSP GET path is not ASCII") from None
    if not isinstance(value, str):
        raise OCSPRequestError(f"OCSP GET path must be text, not {type(value).__name__}")
    if len(value) > 4 * MAX_REQUEST_BYTES:
        raise OCSPRequestError("OCSP GET path too long")
    try:
        text = unquote(value, errors="strict") if "%" in value else value
    except UnicodeDecodeError:
        raise OCSPRequestError("OCSP GET path has an invalid percent-escape") from None
    text = text.strip().removeprefix("/").replace(" ", "+").translate(_URLSAFE).rstrip("=")
    if not _B64.fullmatch(text) or len(text) % 4 == 1:
        raise OCSPRequestError("OCSP GET path is not base64")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise OCSPRequestError("OCSP GET path is not base64") from None


_URLSAFE = str.maketrans("-_", "+/")


def parse_ocsp_get(path_or_b64: str) -> OCSPRequestInfo:
    """Parse the request of an OCSP GET (see :func:`decode_ocsp_get` for the accepted forms).

    Raises:
        OCSPRequestError: the segment is not base64 or the request does not parse.
    """
    return parse_ocsp_request(decode_ocsp_get(path_or_b64))


_ERROR_STATUS = {
    "malformedRequest": ocsp.OCSPResponseStatus.MALFORMED_REQUEST,
    "internalError": ocsp.OCSPResponseStatus.INTERNAL_ERROR,
    "tryLater": ocsp.OCSPResponseStatus.TRY_LATER,
    "sigRequired": ocsp.OCSPResponseStatus.SIG_REQUIRED,
    "unauthorized": ocsp.OCSPResponseStatus.UNAUTHORIZED,
}
_ERROR_DER = {
    name: ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER
    )
    for name, status in _ERROR_STATUS.items()
}


def ocsp_error_response(
    status: Literal["malformedRequest", "internalError", "tryLater", "sigRequired", "unauthorized"],
) -> bytes:
    """The DER of an unsuccessful OCSP response with ``status`` (RFC 6960 section 2.3)."""
    return _ERROR_DER[status]


@lru_cache(maxsize=32)
def issuer_hashes(issuer_cert: x509.Certificate) -> dict[str, tuple[bytes, bytes]]:
    """``{hash algorithm: (issuerNameHash, issuerKeyHash)}`` of ``issuer_cert``: what a
    CertID naming it carries, for every algorithm a request may use (computed once per
    certificate, for the 32 most recent)."""
    tbs = a_x509.Certificate.load(issuer_cert.public_bytes(serialization.Encoding.DER))[
        "tbs_certificate"
    ]
    name = tbs["subject"].dump()
    key = a_keys.PublicKeyInfo.load(tbs["subject_public_key_info"].dump())["public_key"]
    key_bits = bytes(key.contents[1:])  # BIT STRING contents without the unused-bits octet
    return {
        alg: (hashlib.new(alg, name).digest(), hashlib.new(alg, key_bits).digest())
        for alg in _HASHES
    }


def _authorized(info: OCSPRequestInfo, issuer_cert: x509.Certificate) -> bool:
    table = issuer_hashes(issuer_cert)
    return all(
        (c.issuer_name_hash, c.issuer_key_hash) == table[c.hash_algorithm] for c in info.cert_ids
    )


def _aware(now: object) -> datetime:
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now.replace(microsecond=0)


_CRYPTO_STATUS = {
    "good": ocsp.OCSPCertStatus.GOOD,
    "revoked": ocsp.OCSPCertStatus.REVOKED,
    "unknown": ocsp.OCSPCertStatus.UNKNOWN,
}


def _build_single_list(
    info: OCSPRequestInfo,
    statuses: list[CertStatus],
    *,
    issuer_cert: x509.Certificate,
    signer: Signer,
    responder_cert: x509.Certificate | None,
    this_update: datetime,
    next_update: datetime,
) -> bytes:
    cid = info.cert_ids[0]
    status = statuses[0]
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        cid.issuer_name_hash,
        cid.issuer_key_hash,
        cid.serial_number,
        _HASHES[cid.hash_algorithm](),
        _CRYPTO_STATUS[status.kind],
        this_update,
        next_update,
        None if status.revoked_at is None else status.revoked_at.replace(microsecond=0),
        status.reason,
    )
    if responder_cert is None:
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, issuer_cert)
    else:
        builder = builder.responder_id(
            ocsp.OCSPResponderEncoding.HASH, responder_cert
        ).certificates([responder_cert])
    if info.nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(info.nonce), critical=False)
    response = builder.sign(as_private_key(signer), signer.algorithm.hash)
    return response.public_bytes(serialization.Encoding.DER)


_REASON_CODES = {
    x509.ReasonFlags.unspecified: 0,
    x509.ReasonFlags.key_compromise: 1,
    x509.ReasonFlags.ca_compromise: 2,
    x509.ReasonFlags.affiliation_changed: 3,
    x509.ReasonFlags.superseded: 4,
    x509.ReasonFlags.cessation_of_operation: 5,
    x509.ReasonFlags.certificate_hold: 6,
    x509.ReasonFlags.remove_from_crl: 8,
    x509.ReasonFlags.privilege_withdrawn: 9,
    x509.ReasonFlags.aa_compromise: 10,
}
_ECDSA_OIDS = {"sha256": "sha256_ecdsa", "sha384": "sha384_ecdsa", "sha512": "sha512_ecdsa"}


def _asn1_status(status: CertStatus) -> a_ocsp.CertStatus:
    if status.kind == "good":
        return a_ocsp.CertStatus(name="good", value=a_core.Null())
    if status.kind == "unknown":
        return a_ocsp.CertStatus(name="unknown", value=a_core.Null())
    assert status.revoked_at is not None
    when = status.revoked_at.astimezone(UTC).replace(microsecond=0)
    info: dict[str, object] = {"revocation_time": when}
    if status.reason is not None:
        info["revocation_reason"] = _REASON_CODES[status.reason]
    return a_ocsp.CertStatus(name="revoked", value=info)


def _build_many(
    info: OCSPRequestInfo,
    statuses: list[CertStatus],
    *,
    issuer_cert: x509.Certificate,
    signer: Signer,
    responder_cert: x509.Certificate | None,
    this_update: datetime,
    next_update: datetime,
) -> bytes:
    responder = responder_cert or issuer_cert
    responder_key_hash = x509.SubjectKeyIdentifier.from_public_key(responder.public_key()).digest
    single = [
        {
            "cert_id": {
                "hash_algorithm": {"algorithm": cid.hash_algorithm},
                "issuer_name_hash": cid.issuer_name_hash,
                "issuer_key_hash": cid.issuer_key_hash,
                "serial_number": cid.serial_number,
            },
            "cert_status": _asn1_status(status),
            "this_update": this_update.astimezone(UTC),
            "next_update": next_update.astimezone(UTC),
        }
        for cid, status in zip(info.cert_ids, statuses, strict=True)
    ]
    data: dict[str, object] = {
        "responder_id": a_ocsp.ResponderId(name="by_key", value=responder_key_hash),
        "produced_at": this_update.astimezone(UTC),
        "responses": single,
    }
    if info.nonce is not None:
        data["response_extensions"] = [
            {"extn_id": "nonce", "critical": False, "extn_value": info.nonce}
        ]
    tbs = a_ocsp.ResponseData(data)
    hash_alg = signer.algorithm.hash
    key = as_private_key(signer)
    if not isinstance(key, SignerECKey):
        raise ValueError("multi-certificate OCSP responses need an ECDSA signer")
    signature = key.sign(tbs.dump(), ec.ECDSA(hash_alg))
    basic: dict[str, object] = {
        "tbs_response_data": tbs,
        "signature_algorithm": {"algorithm": _ECDSA_OIDS[hash_alg.name]},
        "signature": signature,
    }
    if responder_cert is not None:
        basic["certs"] = [
            a_x509.Certificate.load(responder_cert.public_bytes(serialization.Encoding.DER))
        ]
    response = a_ocsp.OCSPResponse(
        {
            "response_status": "successful",
            "response_bytes": {
                "response_type": "basic_ocsp_response",
                "response": a_ocsp.BasicOCSPResponse(basic),
            },
        }
    )
    return bytes(response.dump())


class OCSPResponseCache:
    """Pre-signed "good" responses for nonce-less single requests, per serial.

    A cached response is served while ``this_update <= now < refresh_at`` where
    ``refresh_at = nextUpdate - refresh_before``; after that the next request signs a fresh
    one. Only "good" answers are cached; call :meth:`invalidate` when a serial is revoked so
    the next request sees the revocation at once. Thread-safe; least recently used entries
    are evicted beyond ``max_entries``.
    """

    def __init__(
        self, *, max_entries: int = 100_000, refresh_before: timedelta = timedelta(hours=12)
    ) -> None:
        """Keep at most ``max_entries`` responses; refresh ``refresh_before`` nextUpdate."""
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if refresh_before < timedelta(0):
            raise ValueError("refresh_before must not be negative")
        self._max = max_entries
        self.refresh_before = refresh_before
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[int, str, bytes], tuple[datetime, datetime, bytes]] = (
            OrderedDict()
        )
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[int, str, bytes], now: datetime) -> bytes | None:
        """The cached DER for ``key`` if still fresh at ``now``, else None."""
        with self._lock:
            item = self._items.get(key)
            if item is None or not item[0] <= now < item[1]:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[2]

    def put(
        self, key: tuple[int, str, bytes], der: bytes, this_update: datetime, next_update: datetime
    ) -> None:
        """Store ``der`` for ``key``; ignored when it would already need a refresh."""
        refresh_at = next_update - self.refresh_before
        if refresh_at <= this_update:
            return
        with self._lock:
            self._items[key] = (this_update, refresh_at, der)
            self._items.move_to_end(key)
            while len(self._items) > self._max:
                self._items.popitem(last=False)

    def invalidate(self, serial: int) -> None:
        """Drop every cached response for ``serial`` (call it when revoking)."""
        with self._lock:
            for key in [k for k in self._items if k[0] == serial]:
                del self._items[key]

    def clear(self) -> None:
        """Drop everything (for example after a responder certificate rotation)."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        """Number of cached responses."""
        return len(self._items)


def respond_ocsp(
    request_der: bytes,
    *,
    status_of: Callable[[int], CertStatus],
    issuer_cert: x509.Certificate,
    signer: Signer,
    responder_cert: x509.Certificate | None = None,
    now: datetime,
    validity: timedelta = timedelta(hours=24),
    cache: OCSPResponseCache | None = None,
) -> bytes:
    """Answer a DER OCSP request with a DER OCSP response; never raises on bad input.

    Args:
        request_der: the POST body (or the output of :func:`decode_ocsp_get`).
        status_of: the hold's answer for a serial issued by ``issuer_cert``.
        issuer_cert: the CA whose certificates are asked about.
        signer: the CA's signer, or the delegated responder's when ``responder_cert`` is set.
        responder_cert: a delegated responder certificate issued by ``issuer_cert`` (see
            :func:`holdca.pki.issue_ocsp_responder`); it is embedded in the response.
        now: the response time (timezone-aware): thisUpdate.
        validity: nextUpdate = ``now + validity`` (always set: notation needs it).
        cache: optional :class:`OCSPResponseCache` for "good" answers to nonce-less single
            requests.

    Returns:
        DER: ``successful`` with one SingleResponse per CertID, or ``malformedRequest``
        (does not parse), ``unauthorized`` (a CertID names another issuer) or
        ``internalError`` (``status_of`` or the signer failed, bad ``now``/``validity``).
    """
    try:
        info = parse_ocsp_request(request_der)
    except OCSPRequestError:
        return _ERROR_DER["malformedRequest"]
    try:
        return _respond(
            info,
            status_of=status_of,
            issuer_cert=issuer_cert,
            signer=signer,
            responder_cert=responder_cert,
            now=now,
            validity=validity,
            cache=cache,
        )
    except Exception:  # the contract: a DER answer, never an exception
        return _ERROR_DER["internalError"]


def _respond(
    info: OCSPRequestInfo,
    *,
    status_of: Callable[[int], CertStatus],
    issuer_cert: x509.Certificate,
    signer: Signer,
    responder_cert: x509.Certificate | None,
    now: datetime,
    validity: timedelta,
    cache: OCSPResponseCache | None,
) -> bytes:
    if not _authorized(info, issuer_cert):
        return _ERROR_DER["unauthorized"]
    this_update = _aware(now)
    lifetime: object = validity
    if not isinstance(lifetime, timedelta) or lifetime <= timedelta(0):
        raise ValueError("validity must be a positive timedelta")
    next_update = this_update + lifetime
    cacheable = cache is not None and info.nonce is None and len(info.cert_ids) == 1
    key = None
    if cacheable:
        assert cache is not None
        cid = info.cert_ids[0]
        key = (cid.serial_number, cid.hash_algorithm, cid.issuer_key_hash)
        hit = cache.get(key, this_update)
        if hit is not None:
            return hit
    statuses = [status_of(cid.serial_number) for cid in info.cert_ids]
    for status in statuses:
        if not isinstance(status, CertStatus):
            raise TypeError("status_of must return a CertStatus")
    build = _build_single_list if len(statuses) == 1 else _build_many
    der = build(
        info,
        statuses,
        issuer_cert=issuer_cert,
        signer=signer,
        responder_cert=responder_cert,
        this_update=this_update,
        next_update=next_update,
    )
    if len(der) > MAX_OCSP_RESPONSE_BYTES:
        return _ERROR_DER["internalError"]
    if cacheable and key is not None and statuses[0].kind == "good":
        assert cache is not None
        cache.put(key, der, this_update, next_update)
    return der


def respond_ocsp_get(
    path_or_b64: str,
    *,
    status_of: Callable[[int], CertStatus],
    issuer_cert: x509.Certificate,
    signer: Signer,
    responder_cert: x509.Certificate | None = None,
    now: datetime,
    validity: timedelta = timedelta(hours=24),
    cache: OCSPResponseCache | None = None,
) -> bytes:
    """:func:`respond_ocsp` for the GET form (the base64 path segment); never raises."""
    try:
        der = decode_ocsp_get(path_or_b64)
    except OCSPRequestError:
        return _ERROR_DER["malformedRequest"]
    return respond_ocsp(
        der,
        status_of=status_of,
        issuer_cert=issuer_cert,
        signer=signer,
        responder_cert=responder_cert,
        now=now,
        validity=validity,
        cache=cache,
    )
