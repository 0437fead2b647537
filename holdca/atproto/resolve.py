"""The hold's own resolver: DID identities and repo proofs over HTTP, through one policy.

Optional I/O adapter (extra ``http``: ``pip install -e '.[http]'`` in a holdca checkout);
nothing in the sans-I/O core imports it. :class:`HTTPResolver` implements the
:class:`~holdca.atproto.identity.Resolver` Protocol, with every fetch going through one
:class:`~holdca.net.Fetcher` (the address policy checked after DNS for every connection, no
redirects, size limits, one deadline):

* **did:plc**: ``GET {plc}/{did}/log/audit`` (not the rendered document), and the signed
  operation chain is verified (:func:`~holdca.atproto.plc.verify_audit_log`: genesis hash,
  signatures by rotation keys, nullification, the 72 h window), so a compromised directory
  cannot swap a user's key; the DID document is rendered from the verified state, never
  taken from the directory;
* **did:web**: ``https://<host>/.well-known/did.json`` (the W3C path form
  ``did:web:<host>:<path>`` maps to ``https://<host>/<path>/did.json``; atproto accounts
  never use it); a 404 or 410 means the document is gone (:class:`DIDDeactivatedError`);
* **proofs**: ``com.atproto.sync.getRecord`` and ``getLatestCommit`` from the
  ``#atproto_pds`` endpoint of the resolved identity, reduced to its origin (scheme, host,
  port: a path, query or fragment in the document is dropped).

Verified identities are cached for ``cache_ttl`` seconds (LRU, bounded); ``fresh=True``
bypasses the cache. Failures are not cached.

Example::

    resolver = HTTPResolver(policy=AddressPolicy.parse(os.environ.get("HOLD_NETWORK_ALLOW")))
    identity = resolver.resolve("did:plc:ewvi7nxzyoun6zhxrhs64oiz")
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, NoReturn
from urllib.parse import unquote

from holdca._json import strict_json
from holdca.atproto.car import DEFAULT_CAR_LIMITS
from holdca.atproto.did import did_method, validate_account_did, validate_did, web_did_host
from holdca.atproto.diddoc import MAX_DID_DOCUMENT_SIZE
from holdca.atproto.identity import Identity, LatestCommit
from holdca.atproto.plc import verify_audit_log
from holdca.atproto.syntax import validate_nsid, validate_record_key
from holdca.errors import (
    DIDDeactivatedError,
    DIDDocumentError,
    DIDSyntaxError,
    MalformedInputError,
    RecordAbsentError,
    ResolutionError,
)
from holdca.net import AddressPolicy, Fetcher, FetchResponse, origin

__all__ = ["DEFAULT_PLC_URL", "HTTPResolver", "did_document_url"]

DEFAULT_PLC_URL: Final = "https://plc.directory"
_MAX_LOG_SIZE: Final = 1024 * 1024
_GONE_REPO: Final = frozenset({"RepoTakendown", "RepoSuspended", "RepoDeactivated"})


def did_document_url(
    did: str, *, plc_url: str = DEFAULT_PLC_URL, allow_localhost: bool = False
) -> str:
    """The URL of ``did``'s DID document.

    did:plc: ``{plc}/{did}`` (the hold itself reads ``{plc}/{did}/log/audit`` and verifies
    it); did:web: ``https://<host>/.well-known/did.json``, or for the W3C path form
    ``did:web:<host>:<path>`` ``https://<host>/<path>/did.json`` (atproto accounts never use
    it; the issuance policy refuses such DIDs); with ``allow_localhost``,
    ``did:web:localhost[%3A<port>]`` maps to ``http://localhost[:<port>]`` (development).

    Raises:
        DIDSyntaxError: not a valid did:plc or did:web (host rules as for atproto).
    """
    method = did_method(did)
    if method == "plc":
        return f"{plc_url.rstrip('/')}/{validate_account_did(did)}"
    if method != "web":
        raise DIDSyntaxError(f"unsupported DID method {method!r} (only did:plc and did:web)")
    ident = validate_did(did)[len("did:web:") :]
    if allow_localhost and (ident == "localhost" or ident.startswith("localhost%3A")):
        return f"http://{web_did_host(did, allow_localhost=True)}/.well-known/did.json"
    host, *path = ident.split(":")
    web_did_host(f"did:web:{host}")  # the host rules of atproto (no IPs, no ports, TLDs)
    if not path:
        return f"https://{host.lower()}/.well-known/did.json"
    segments = [unquote(p) for p in path]
    if any(not s or s in (".", "..") or "/" in s or "?" in s or "#" in s for s in segments):
        raise DIDSyntaxError(f"did:web path is not a plain path: {did[:100]!r}")
    return f"https://{host.lower()}/{'/'.join(segments)}/did.json"


def _xrpc_error(response: FetchResponse) -> str | None:
    try:
        body = json.loads(response.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error[:64] if isinstance(error, str) else None


class HTTPResolver:
    """The HTTP :class:`~holdca.atproto.identity.Resolver` of a hold (see the module).

    Thread-safe. Build with a policy (and the resolver builds its fetcher), or with a
    ready :class:`~holdca.net.Fetcher` (its policy is then the one enforced).
    """

    def __init__(
        self,
        *,
        plc_url: str = DEFAULT_PLC_URL,
        policy: AddressPolicy | None = None,
        fetcher: Fetcher | None = None,
        timeout: float = 5.0,
        cache_ttl: float = 60.0,
        cache_size: int = 10_000,
        max_car_size: int = DEFAULT_CAR_LIMITS.max_size,
        allow_localhost: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Resolve through ``fetcher`` (default: a Fetcher over ``policy``).

        Args:
            plc_url: the PLC directory (``HOLD_PLC_URL``); its fetches pass the policy too.
            policy: the address policy (default: public addresses over https only).
            fetcher: use this fetcher instead of building one.
            timeout: seconds for each whole fetch.
            cache_ttl: seconds a verified identity is reused (0 disables the cache).
            cache_size: most identities cached.
            max_car_size: largest getRecord CAR read.
            allow_localhost: resolve ``did:web:localhost[%3A<port>]`` over http (development;
                the address policy must still allow the port).
            clock: monotonic clock of the cache (injectable for tests).
        """
        self.plc_url = plc_url.rstrip("/")
        self.fetcher = fetcher or Fetcher(policy or AddressPolicy(), timeout=timeout)
        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        self.max_car_size = max_car_size
        self.allow_localhost = allow_localhost
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[float, Identity]] = OrderedDict()

    # --- identities -------------------------------------------------------------------

    def resolve(self, did: str, *, fresh: bool = False) -> Identity:
        """The verified identity of ``did`` (cached; ``fresh`` bypasses the cache).

        Raises:
            DIDSyntaxError: not a did:plc / did:web.
            AddressRefusedError, ResolutionError: the fetch was refused or failed (a
                did:plc unknown to the directory is a ResolutionError).
            PLCOperationError, PLCLogError: the did:plc log does not parse or verify.
            DIDDocumentError: the document is malformed or has no ``#atproto`` key.
            DIDDeactivatedError: tombstoned (did:plc) or gone (did:web 404/410).
        """
        url = did_document_url(did, plc_url=self.plc_url, allow_localhost=self.allow_localhost)
        now = self._clock()
        if not fresh and self.cache_ttl > 0:
            with self._lock:
                hit = self._cache.get(did)
                if hit is not None and hit[0] > now:
                    self._cache.move_to_end(did)
                    return hit[1]
        identity = (
            self._resolve_plc(did, url)
            if did.startswith("did:plc:")
            else (self._resolve_web(did, url))
        )
        if self.cache_ttl > 0:
            with self._lock:
                self._cache[did] = (now + self.cache_ttl, identity)
                self._cache.move_to_end(did)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return identity

    def _resolve_plc(self, did: str, url: str) -> Identity:
        response = self.fetcher.get(
            f"{url}/log/audit", limit=_MAX_LOG_SIZE, accept="application/json"
        )
        if response.status == 404:
            raise ResolutionError(f"{did} is not registered at the PLC directory")
        if response.status != 200:
            raise ResolutionError(f"the PLC directory answered HTTP {response.status} for {did}")
        state = verify_audit_log(response.body, did)
        # did_document raises DIDDeactivatedError for a tombstoned DID
        return Identity.from_document(state.did_document(), did, source="plc")

    def _resolve_web(self, did: str, url: str) -> Identity:
        response = self.fetcher.get(
            url,
            limit=MAX_DID_DOCUMENT_SIZE,
            accept="application/did+ld+json, application/json",
        )
        if response.status in (404, 410):
            raise DIDDeactivatedError(f"the DID document of {did} is gone (HTTP {response.status})")
        if response.status != 200:
            raise ResolutionError(f"{url[:100]} answered HTTP {response.status}")
        return Identity.from_document(response.body, did, source="web")

    # --- proofs -----------------------------------------------------------------------

    def _pds(self, identity: Identity) -> str:
        if identity.pds_endpoint is None:
            raise DIDDocumentError(f"the DID document of {identity.did} names no #atproto_pds")
        return origin(identity.pds_endpoint)

    def get_record(self, identity: Identity, collection: str, rkey: str) -> bytes:
        """``com.atproto.sync.getRecord`` from the identity's PDS.

        Raises:
            DIDDocumentError: no PDS endpoint.
            RecordAbsentError: the PDS answered ``RecordNotFound``.
            DIDDeactivatedError: the PDS says the repo is taken down, suspended or
                deactivated.
            AddressRefusedError, ResolutionError: refused, failed, or another error status.
        """
        validate_nsid(collection)
        validate_record_key(rkey)
        response = self.fetcher.get(
            f"{self._pds(identity)}/xrpc/com.atproto.sync.getRecord",
            limit=self.max_car_size,
            accept="application/vnd.ipld.car",
            params={"did": identity.did, "collection": collection, "rkey": rkey},
        )
        if response.status == 200:
            return response.body
        self._refuse(identity, response, f"the record {collection}/{rkey}")

    def get_latest_commit(self, identity: Identity) -> LatestCommit:
        """``com.atproto.sync.getLatestCommit`` from the identity's PDS.

        Raises:
            DIDDocumentError: no PDS endpoint.
            MalformedInputError: the answer is not ``{"cid": ..., "rev": ...}``.
            DIDDeactivatedError, AddressRefusedError, ResolutionError: as
                :meth:`get_record`.
        """
        response = self.fetcher.get(
            f"{self._pds(identity)}/xrpc/com.atproto.sync.getLatestCommit",
            limit=4096,
            accept="application/json",
            params={"did": identity.did},
        )
        if response.status != 200:
            self._refuse(identity, response, "the latest commit")
        answer = strict_json(response.body, "getLatestCommit answer", MalformedInputError)
        if not isinstance(answer, dict) or not all(
            isinstance(answer.get(k), str) for k in ("cid", "rev")
        ):
            raise MalformedInputError("getLatestCommit answer lacks a string cid and rev")
        return LatestCommit(answer["cid"], answer["rev"])

    def _refuse(self, identity: Identity, response: FetchResponse, what: str) -> NoReturn:
        error = _xrpc_error(response)
        if error == "RecordNotFound":
            raise RecordAbsentError(f"the PDS of {identity.did} has no {what} (RecordNotFound)")
        if error in _GONE_REPO:
            raise DIDDeactivatedError(f"the PDS of {identity.did} answered {error}")
        detail = f" ({error})" if error else ""
        raise ResolutionError(
            f"the PDS of {identity.did} answered HTTP {response.status}{detail} for {what}"
        )

    def close(self) -> None:
        """Close the fetcher's connections."""
        self.fetcher.close()

    def __repr__(self) -> str:
        return f"<HTTPResolver plc={self.plc_url}>"
