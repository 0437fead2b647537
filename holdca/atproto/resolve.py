"""Optional I/O adapter: resolve DID documents and fetch getRecord proofs over HTTP (stdlib only).

Nothing in the sans-I/O core imports this module. It provides:

* :class:`Resolver`, the Protocol an embedder can implement with its own HTTP stack;
* :class:`HTTPResolver`, a ``urllib`` implementation: did:plc via a configurable PLC directory,
  did:web via ``https://<host>/.well-known/did.json`` (``http`` only for ``localhost`` when
  allowed), ``com.atproto.sync.getRecord`` from the PDS named by the DID document; per-request
  timeout plus an overall read deadline, bodies read up to a size limit, redirects refused,
  a small TTL cache for DID documents;
* :func:`verify_with_resolver`, which re-resolves the DID document once when the commit signature
  fails (the key may have rotated) before rejecting.

Security notes: the PDS URL comes from the DID document (never from the caller), but it is still
chosen by the account holder; deployments that must not reach internal addresses should put the
resolver behind an egress proxy or implement :class:`Resolver` with their own address policy.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from holdca.atproto.car import DEFAULT_CAR_LIMITS, CARLimits
from holdca.atproto.did import did_method, validate_account_did, web_did_host
from holdca.atproto.diddoc import MAX_DID_DOCUMENT_SIZE, parse_did_document
from holdca.atproto.syntax import parse_record_uri
from holdca.atproto.verify import VerifiedRecord, verify_record_proof
from holdca.errors import DIDDocumentError, ResolutionError, SignatureInvalidError

__all__ = ["HTTPResolver", "Resolver", "did_document_url", "verify_with_resolver"]


class Resolver(Protocol):
    """Fetches DID documents and getRecord CARs; raises ResolutionError on failure."""

    def resolve_did(self, did: str, *, fresh: bool = False) -> bytes:
        """The DID document JSON of ``did`` (``fresh`` bypasses any cache)."""
        ...

    def get_record_car(self, pds_endpoint: str, did: str, collection: str, rkey: str) -> bytes:
        """The ``com.atproto.sync.getRecord`` CAR for the record."""
        ...


def did_document_url(
    did: str, *, plc_url: str = "https://plc.directory", allow_localhost: bool = False
) -> str:
    """The URL a DID document is fetched from.

    Raises:
        DIDSyntaxError: not a did:plc / did:web acceptable to atproto.
    """
    validate_account_did(did, allow_localhost=allow_localhost)
    if did_method(did) == "plc":
        return f"{plc_url.rstrip('/')}/{did}"
    host = web_did_host(did, allow_localhost=allow_localhost)
    scheme = "http" if host == "localhost" or host.startswith("localhost:") else "https"
    return f"{scheme}://{host}/.well-known/did.json"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError for the 3xx response


@dataclass
class HTTPResolver:
    """A stdlib HTTP :class:`Resolver`.

    Attributes:
        plc_url: base URL of the PLC directory.
        timeout: seconds per socket operation, and the overall deadline for one response body.
        max_document_size: largest DID document body read.
        max_car_size: largest getRecord body read.
        cache_ttl: seconds a resolved DID document is reused (0 disables the cache).
        allow_localhost: accept ``did:web:localhost[%3A<port>]`` (development only).
        allow_http_pds: accept an ``http://`` PDS endpoint (development only).
        clock: monotonic clock for the cache (injectable for tests).
    """

    plc_url: str = "https://plc.directory"
    timeout: float = 5.0
    max_document_size: int = MAX_DID_DOCUMENT_SIZE
    max_car_size: int = DEFAULT_CAR_LIMITS.max_size
    cache_ttl: float = 300.0
    allow_localhost: bool = False
    allow_http_pds: bool = False
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._opener = urllib.request.build_opener(_NoRedirect())
        self._cache: dict[str, tuple[float, bytes]] = {}
        self._lock = threading.Lock()

    def _fetch(self, url: str, limit: int, accept: str) -> bytes:
        request = urllib.request.Request(url, headers={"Accept": accept})  # noqa: S310
        deadline = time.monotonic() + self.timeout
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                if response.status != 200:
                    raise ResolutionError(f"GET {url}: HTTP {response.status}")
                chunks: list[bytes] = []
                size = 0
                while True:
                    chunk = response.read(min(65536, limit + 1 - size))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > limit:
                        raise ResolutionError(f"GET {url}: response larger than {limit} bytes")
                    if time.monotonic() > deadline:
                        raise ResolutionError(f"GET {url}: body not received within the timeout")
                return b"".join(chunks)
        except urllib.error.HTTPError as exc:
            detail = ""
            try:
                body = json.loads(exc.read(4096))
                if isinstance(body, dict) and isinstance(body.get("error"), str):
                    detail = f" ({body['error'][:80]})"
            except (ValueError, OSError):
                pass
            raise ResolutionError(f"GET {url}: HTTP {exc.code}{detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ResolutionError(f"GET {url} failed: {str(reason)[:120]}") from None

    def resolve_did(self, did: str, *, fresh: bool = False) -> bytes:
        """Fetch (or reuse from the TTL cache) the DID document of ``did``.

        Raises:
            DIDSyntaxError: ``did`` is not an acceptable account DID.
            ResolutionError: network failure, timeout, non-200 status, redirect, oversize body.
        """
        url = did_document_url(did, plc_url=self.plc_url, allow_localhost=self.allow_localhost)
        now = self.clock()
        if not fresh and self.cache_ttl > 0:
            with self._lock:
                hit = self._cache.get(did)
            if hit is not None and hit[0] > now:
                return hit[1]
        body = self._fetch(url, self.max_document_size, "application/did+ld+json, application/json")
        if self.cache_ttl > 0:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[did] = (now + self.cache_ttl, body)
        return body

    def get_record_car(self, pds_endpoint: str, did: str, collection: str, rkey: str) -> bytes:
        """Fetch ``com.atproto.sync.getRecord`` from ``pds_endpoint``.

        Raises:
            ResolutionError: bad endpoint scheme, network failure, timeout, non-200 status
                (including an XRPC ``RecordNotFound``), redirect, oversize body.
        """
        parts = urllib.parse.urlsplit(pds_endpoint)
        if parts.scheme != "https" and not (self.allow_http_pds and parts.scheme == "http"):
            raise ResolutionError(f"PDS endpoint must be https: {pds_endpoint[:100]!r}")
        query = urllib.parse.urlencode({"did": did, "collection": collection, "rkey": rkey})
        url = f"{pds_endpoint.rstrip('/')}/xrpc/com.atproto.sync.getRecord?{query}"
        return self._fetch(url, self.max_car_size, "application/vnd.ipld.car")


def verify_with_resolver(
    resolver: Resolver,
    uri: str,
    expected_digest: str,
    *,
    car_bytes: bytes | None = None,
    did: str | None = None,
    limits: CARLimits = DEFAULT_CAR_LIMITS,
    allow_localhost: bool = False,
) -> VerifiedRecord:
    """Resolve the DID, fetch the proof (unless ``car_bytes`` is given) and verify it.

    When the commit signature fails, the DID document is re-resolved once bypassing the cache
    (the account may have rotated its key); if it changed, the proof is verified again.

    Raises:
        ResolutionError: the document or the proof could not be fetched.
        DIDDocumentError: the document has no PDS endpoint (when fetching) or no usable key.
        HoldCAError: any failure of :func:`~holdca.atproto.verify.verify_record_proof`.
    """
    uri_did, collection, rkey = parse_record_uri(uri)
    validate_account_did(uri_did, allow_localhost=allow_localhost)
    doc_bytes = resolver.resolve_did(uri_did)
    if car_bytes is None:
        pds = parse_did_document(doc_bytes, uri_did).pds_endpoint()
        if pds is None:
            raise DIDDocumentError(f"DID document of {uri_did} has no #atproto_pds endpoint")
        car_bytes = resolver.get_record_car(pds, uri_did, collection, rkey)

    def attempt(document: bytes) -> VerifiedRecord:
        return verify_record_proof(
            car_bytes,
            document,
            uri,
            expected_digest,
            did=did,
            limits=limits,
            allow_localhost=allow_localhost,
        )

    try:
        return attempt(doc_bytes)
    except SignatureInvalidError:
        fresh = resolver.resolve_did(uri_did, fresh=True)
        if fresh == doc_bytes:
            raise
        return attempt(fresh)
