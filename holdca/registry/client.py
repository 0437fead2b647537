"""A small OCI distribution API client (httpx): blobs, manifests, referrers, auth.

What it speaks (OCI distribution spec v1.1):

* Blobs: ``HEAD /v2/<repo>/blobs/<digest>`` (present: skipped), then the monolithic
  upload ``POST /v2/<repo>/blobs/uploads/`` and ``PUT <Location>?digest=<digest>``.
* Manifests: ``GET``/``PUT``/``DELETE /v2/<repo>/manifests/<reference>``. A manifest
  read is checked against its digest (the one asked for, or ``Docker-Content-Digest``).
* Referrers: ``GET /v2/<repo>/referrers/<digest>?artifactType=...`` (see
  :mod:`holdca.registry.signatures` for the tag-schema fallback).
* Authentication: the token challenge of real registries (``401`` with
  ``WWW-Authenticate: Bearer realm=...,service=...,scope=...``: a ``GET`` of the realm
  with ``service`` and ``scope``, with Basic credentials when given, returns
  ``token``/``access_token``, sent as ``Authorization: Bearer``), and ``Basic``.
* Plain ``http`` only with ``insecure=True``: no host is exempt, ``localhost``
  included. A token realm or upload ``Location`` on another origin or scheme is refused
  unless it is https (realm) or the same origin (upload).

Limits: every response body is read up to a per-call limit (manifests 4 MiB, token and
error bodies 64 KiB) and refused past it; every request has ``timeout`` seconds, and
all requests made inside ``with client.deadline(seconds):`` share one deadline. Every
failure is a :class:`~holdca.errors.RegistryError`; credentials and tokens never
appear in messages.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from holdca.errors import RegistryError
from holdca.notation.oci import MAX_MANIFEST_SIZE, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST
from holdca.registry.reference import RegistryCredentials

__all__ = [
    "MANIFEST_ACCEPT",
    "Fetched",
    "RegistryClient",
    "parse_challenge",
]

MANIFEST_ACCEPT = ", ".join(
    [
        MEDIA_TYPE_OCI_MANIFEST,
        MEDIA_TYPE_OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
"""The manifest media types a GET accepts."""

_SMALL = 64 * 1024
_RETRIES = 4
_TRANSIENT = frozenset({500, 502, 503, 504})
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_PARAM = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*,?')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``WWW-Authenticate`` -> (lowercase scheme, parameters), e.g. ``("bearer", {...})``.

    Raises:
        RegistryError: the header is not ``<scheme> k=v, ...``.
    """
    scheme, _, rest = header.strip().partition(" ")
    if not scheme.isalpha():
        raise RegistryError(f"malformed WWW-Authenticate challenge {header[:80]!r}")
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _PARAM.match(rest, position)
        if match is None or match.end() == position:
            raise RegistryError(f"malformed WWW-Authenticate challenge {header[:80]!r}")
        quoted, bare = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        params[match.group(1).lower()] = value
        position = match.end()
    return scheme.lower(), params


@dataclass(frozen=True)
class Fetched:
    """A registry response: status, headers (lowercase names) and the bounded body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def media_type(self) -> str:
        """The Content-Type without parameters (lowercase)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def error_code(self) -> str | None:
        """The first ``errors[].code`` of an OCI error body, or ``None``."""
        try:
            document = json.loads(self.body)
        except ValueError:
            return None
        errors = document.get("errors") if isinstance(document, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code = errors[0].get("code")
            return code if isinstance(code, str) else None
        return None


class RegistryClient:
    """A client for one registry (``host[:port]``), safe to share between threads.

    Args:
        registry: the registry's ``host[:port]``.
        credentials: Basic credentials (sent to a Basic challenge or to the token realm).
        insecure: speak plain http (``localhost`` is not special: say so explicitly).
        timeout: seconds for each request.
        transport: an httpx transport (tests); default: httpx's, TLS verified.

    Raises:
        ValueError: ``timeout`` is not positive.
    """

    def __init__(
        self,
        registry: str,
        *,
        credentials: RegistryCredentials | None = None,
        insecure: bool = False,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Prepare the client (no request is made here)."""
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.registry = registry
        self.insecure = insecure
        self.base = f"{'http' if insecure else 'https'}://{registry}"
        self._credentials = credentials
        self._timeout = timeout
        self._http = httpx.Client(transport=transport, follow_redirects=False, trust_env=False)
        self._lock = threading.Lock()
        self._authorization: dict[str, str] = {}  # scope -> Authorization value
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"<RegistryClient {self.base}>"

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- deadline ---

    @contextlib.contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """All requests of this thread inside the block finish within ``seconds``.

        Raises (inside the block):
            RegistryError: the deadline passed before a request could finish.
        """
        outer = getattr(self._local, "until", None)
        until = time.monotonic() + seconds
        self._local.until = until if outer is None else min(outer, until)
        try:
            yield
        finally:
            self._local.until = outer

    def _request_timeout(self) -> float:
        until: float | None = getattr(self._local, "until", None)
        if until is None:
            return self._timeout
        left = until - time.monotonic()
        if left <= 0:
            raise RegistryError(f"{self.registry}: deadline exceeded")
        return min(left, self._timeout)

    # --- raw requests ---

    def _send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: bytes | None,
        limit: int,
    ) -> Fetched:
        timeout = self._request_timeout()
        request = self._http.build_request(
            method, url, headers=dict(headers), content=content, timeout=timeout
        )
        try:
            response = self._http.send(request, stream=True)
            try:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise RegistryError(
                            f"{self.registry}: {method} {request.url.path}: response over "
                            f"{limit} bytes",
                            status=response.status_code,
                        )
            finally:
                response.close()
        except httpx.TimeoutException:
            raise RegistryError(f"{self.registry}: {method} timed out") from None
        except httpx.HTTPError as exc:
            raise RegistryError(f"{self.registry}: {type(exc).__name__}: {exc}") from None
        headers_out = {k.lower(): v for k, v in response.headers.items()}
        return Fetched(response.status_code, headers_out, bytes(body))

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        scope: str,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        limit: int = _SMALL,
    ) -> Fetched:
        """One request with authentication (a 401 challenge is answered, then retried).

        ``scope`` is the token scope to ask for when challenged, e.g.
        ``repository:holdca/demo:pull,push``. Any status is returned (the caller judges).

        Raises:
            RegistryError: transport failure, deadline, oversized body, or the
                authentication failed (no credentials for Basic, token endpoint refused).
        """
        url = path_or_url if "://" in path_or_url else self.base + path_or_url
        if not self._same_origin(url):
            raise RegistryError(f"{self.registry}: refusing to follow a URL on another origin")
        for retry in range(_RETRIES):
            reply = self._authenticated(
                method, url=url, scope=scope, headers=headers, content=content, limit=limit
            )
            # a read is idempotent: a transient 5xx (distribution's filesystem driver
            # answers 500 while a concurrent writer moves a link) is retried
            if method not in ("GET", "HEAD") or reply.status not in _TRANSIENT:
                return reply
            time.sleep(0.05 * (retry + 1))
        return reply

    def _authenticated(
        self,
        method: str,
        *,
        url: str,
        scope: str,
        headers: Mapping[str, str] | None,
        content: bytes | None,
        limit: int,
    ) -> Fetched:
        sent = dict(headers or {})
        for attempt in range(3):
            with self._lock:
                authorization = self._authorization.get(scope) or self._authorization.get("*")
            if authorization:
                sent["Authorization"] = authorization
            reply = self._send(method, url, headers=sent, content=content, limit=limit)
            if reply.status != 401 or attempt == 2:
                return reply
            challenge = reply.headers.get("www-authenticate")
            if not challenge:
                raise RegistryError(
                    f"{self.registry}: 401 without a WWW-Authenticate challenge", status=401
                )
            new = self._answer(challenge, scope)
            if new == authorization:
                break  # the same credentials again would be refused again
            with self._lock:
                # Basic is the same for every scope; a token is for the scope it was asked
                self._authorization["*" if new.startswith("Basic ") else scope] = new
        raise RegistryError(
            f"{self.registry}: authentication refused for {scope}"
            + ("" if self._credentials else " (no credentials given)"),
            status=401,
        )

    def _same_origin(self, url: str) -> bool:
        parsed, base = urllib.parse.urlsplit(url), urllib.parse.urlsplit(self.base)
        return (parsed.scheme, parsed.netloc.lower()) == (base.scheme, base.netloc.lower())

    def _answer(self, challenge: str, scope: str) -> str:
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if self._credentials is None:
                raise RegistryError(
                    f"{self.registry}: Basic authentication required and no credentials "
                    "given (HOLDCA_REGISTRY_USERNAME/HOLDCA_REGISTRY_PASSWORD)",
                    status=401,
                )
            return self._credentials.basic()
        if scheme != "bearer":
            raise RegistryError(f"{self.registry}: unsupported authentication scheme {scheme!r}")
        realm = params.get("realm", "")
        parsed = urllib.parse.urlsplit(realm)
        if parsed.scheme != "https" and not (self.insecure and parsed.scheme == "http"):
            raise RegistryError(
                f"{self.registry}: token realm must be an https URL (plain http only with "
                "the insecure flag)"
            )
        query = [("scope", params.get("scope") or scope)]
        if params.get("service"):
            query.insert(0, ("service", params["service"]))
        separator = "&" if parsed.query else "?"
        url = realm + separator + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        if self._credentials is not None:
            headers["Authorization"] = self._credentials.basic()
        reply = self._send("GET", url, headers=headers, content=None, limit=_SMALL)
        if reply.status != 200:
            raise RegistryError(
                f"{self.registry}: token endpoint answered {reply.status}", status=reply.status
            )
        try:
            document = json.loads(reply.body)
        except ValueError:
            raise RegistryError(f"{self.registry}: token endpoint answered non-JSON") from None
        token = None
        if isinstance(document, dict):
            token = document.get("token") or document.get("access_token")
        if not isinstance(token, str) or not token or any(c in token for c in "\r\n "):
            raise RegistryError(f"{self.registry}: token endpoint answered no usable token")
        return f"Bearer {token}"

    def fail(self, reply: Fetched, what: str) -> RegistryError:
        """A :class:`RegistryError` describing an unexpected reply to ``what``."""
        code = reply.error_code()
        detail = f" ({code})" if code else ""
        return RegistryError(
            f"{self.registry}: {what}: HTTP {reply.status}{detail}", status=reply.status
        )

    # --- blobs ---

    def has_blob(self, repository: str, digest: str) -> bool:
        """Whether the repository holds blob ``digest`` (HEAD).

        Raises:
            RegistryError: a status other than 200 or 404.
        """
        reply = self.request(
            "HEAD", f"/v2/{repository}/blobs/{digest}", scope=f"repository:{repository}:pull"
        )
        if reply.status == 200:
            return True
        if reply.status == 404:
            return False
        raise self.fail(reply, f"HEAD blob {digest}")

    def push_blob(self, repository: str, data: bytes) -> str:
        """Upload ``data`` unless already present; return its ``sha256:`` digest.

        Raises:
            RegistryError: the upload was refused or the registry stored another digest.
        """
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        for retry in range(_RETRIES):
            if self.has_blob(repository, digest):
                return digest
            try:
                return self._upload(repository, data, digest)
            except RegistryError as exc:
                # a concurrent upload of the same content can fail transiently
                if exc.status not in _TRANSIENT or retry == _RETRIES - 1:
                    raise
            time.sleep(0.05 * (retry + 1))
        raise AssertionError("unreachable")

    def _upload(self, repository: str, data: bytes, digest: str) -> str:
        scope = f"repository:{repository}:pull,push"
        start = self.request("POST", f"/v2/{repository}/blobs/uploads/", scope=scope, content=b"")
        location = start.headers.get("location")
        if start.status != 202 or not location:
            raise self.fail(start, "start blob upload")
        url = urllib.parse.urljoin(self.base + "/", location)
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
        done = self.request(
            "PUT",
            url,
            scope=scope,
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if done.status != 201:
            raise self.fail(done, f"upload blob {digest}")
        stored = done.headers.get("docker-content-digest")
        if stored and stored != digest:
            raise RegistryError(f"{self.registry}: stored blob {stored}, expected {digest}")
        return digest

    # --- manifests ---

    def get_manifest(self, repository: str, reference: str) -> Fetched | None:
        """The manifest or index at a tag or digest, or ``None`` (404).

        The body is checked against the digest asked for, or else against
        ``Docker-Content-Digest`` when the registry sends it.

        Raises:
            RegistryError: another error status, over 4 MiB, or a digest mismatch.
        """
        reply = self.request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            scope=f"repository:{repository}:pull",
            headers={"Accept": MANIFEST_ACCEPT},
            limit=MAX_MANIFEST_SIZE,
        )
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise self.fail(reply, f"GET manifest {reference}")
        actual = "sha256:" + hashlib.sha256(reply.body).hexdigest()
        expected = reference if _DIGEST.fullmatch(reference) else None
        expected = expected or reply.headers.get("docker-content-digest")
        if expected and expected.startswith("sha256:") and expected != actual:
            raise RegistryError(
                f"{self.registry}: manifest {reference} does not match its digest {expected}"
            )
        return reply

    def put_manifest(
        self, repository: str, reference: str, data: bytes, media_type: str
    ) -> Fetched:
        """PUT a manifest under a tag or its digest; the reply (headers: OCI-Subject).

        Raises:
            RegistryError: not 201, or the registry reports another digest.
        """
        reply = self.request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            scope=f"repository:{repository}:pull,push",
            headers={"Content-Type": media_type},
            content=data,
        )
        if reply.status != 201:
            raise self.fail(reply, f"PUT manifest {reference}")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        stored = reply.headers.get("docker-content-digest")
        if stored and stored != digest:
            raise RegistryError(f"{self.registry}: stored manifest {stored}, expected {digest}")
        return reply

    def delete_manifest(self, repository: str, digest: str) -> bool:
        """DELETE a manifest by digest; ``False`` when the registry does not allow it.

        Raises:
            RegistryError: a status other than 202, 404, 405 or 400/403 UNSUPPORTED/DENIED.
        """
        reply = self.request(
            "DELETE",
            f"/v2/{repository}/manifests/{digest}",
            scope=f"repository:{repository}:delete",
        )
        if reply.status in (200, 202):
            return True
        if reply.status in (400, 401, 403, 404, 405):
            return False
        raise self.fail(reply, f"DELETE manifest {digest}")

    def get_json(self, reply: Fetched, what: str) -> dict[str, Any]:
        """The JSON object in ``reply``'s body.

        Raises:
            RegistryError: not a JSON object.
        """
        try:
            document = json.loads(reply.body)
        except ValueError:
            raise RegistryError(f"{self.registry}: {what} is not JSON") from None
        if not isinstance(document, dict):
            raise RegistryError(f"{self.registry}: {what} is not a JSON object")
        return document
