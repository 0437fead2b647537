"""An HTTP GET client that enforces the hold's :class:`~holdca.net.policy.AddressPolicy`.

:class:`Fetcher` sends its requests straight to httpcore connection pools (httpx's transport
layer, without httpx's client on top) whose network backend is
:class:`~holdca.net._backend.PolicyBackend`:

* the URL is checked by :meth:`AddressPolicy.check_url` first (scheme, userinfo, host syntax,
  IP literals, plain http), and that check's :class:`~holdca.net.policy.CheckedURL` is the
  only parse of the URL: the connection's scheme, host and port, the ``Host`` header and the
  request target all come from it (no second URL parser that could read the text
  differently from the policy);
* every new connection resolves the host through :meth:`AddressPolicy.addresses` and goes to
  one of the addresses it accepted (no second resolution, no rebinding window); TLS
  verifies the certificate against the URL's host name;
* one deadline (``timeout`` seconds) covers the wait for a pooled connection, DNS, connect,
  TLS, the request and the whole body;
* redirects are not followed (a 3xx raises, and its target is never contacted), the
  environment is not consulted (no proxies, netrc or ``SSL_CERT_FILE``: nothing here reads
  it), no cookies are stored or sent (there is no cookie jar), ``Accept-Encoding: identity``
  is sent and any other content coding refused;
* bodies are streamed and cut at the limit (a cut connection is closed, not pooled);
* connections are kept alive 5 s, by httpcore, which pools them by scheme, host and port;
  fetches limited to allowed addresses (plain http by a name) have a pool of their own, so a
  connection opened under a looser rule never serves a stricter fetch;
* a GET whose pooled connection httpcore closed under it (a race in httpcore 1.0.x's pool,
  see :class:`~holdca.net._backend.ClosedUnderUse`) is retried once, within the deadline.

Errors are typed and short: :class:`~holdca.errors.AddressRefusedError` for the policy,
:class:`~holdca.errors.ResolutionError` for everything else (network, timeout, redirect, size,
TLS). The class is thread-safe; connections are pooled and reused.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Final
from urllib.parse import quote_plus

import certifi
import httpcore

from holdca import __version__
from holdca.errors import ResolutionError
from holdca.net._backend import ClosedUnderUse, PolicyBackend, TLSFailure, deadline, time_left
from holdca.net.policy import AddressPolicy, CheckedURL

__all__ = ["ERROR_BODY_LIMIT", "FetchResponse", "Fetcher"]

ERROR_BODY_LIMIT: Final = 4096
"""Bytes of a non-2xx body kept (enough for an XRPC error; the rest is not read)."""

_MAX_SHOWN = 100
_KEEPALIVE: Final = 5.0  # seconds an idle connection is kept for reuse
_UNRESERVED: Final = re.compile(r"[A-Za-z0-9_.~-]*")  # what quote_plus leaves alone
_ROUTES: Final = 256  # checked URLs remembered per Fetcher ...
_ROUTE_URL_LENGTH: Final = 2048  # ... if no longer than this


def _shown(url: str) -> str:
    return url if len(url) <= _MAX_SHOWN else url[:_MAX_SHOWN] + "..."


@dataclass(frozen=True)
class FetchResponse:
    """A response the hold received.

    Attributes:
        status: HTTP status (2xx, or 4xx/5xx: the caller decides; 3xx is never returned).
        content_type: the ``Content-Type`` header, if any.
        body: the whole body for 2xx (at most the ``limit`` passed to :meth:`Fetcher.get`);
            for other statuses its first ``min(limit, ERROR_BODY_LIMIT)`` bytes.
        url: the URL fetched (normalised, with the query parameters).
    """

    status: int
    content_type: str | None
    body: bytes
    url: str


def _ssl_context(verify: bool) -> ssl.SSLContext:
    """certifi's CA bundle (nothing from the environment), or no verification at all."""
    if verify:
        return ssl.create_default_context(cafile=certifi.where())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _remove_dot_segments(path: str) -> str:
    """Drop ``.`` and ``..`` segments from a path (RFC 3986 5.2.4, as httpx does)."""
    segments = path.split("/")
    if "." not in segments and ".." not in segments:
        return path
    output: list[str] = []
    for segment in segments:
        if segment == "..":
            if output and output != [""]:
                output.pop()
        elif segment != ".":
            output.append(segment)
    return "/".join(output) or "/"


def _quoted(text: str) -> str:
    """``text`` form-encoded (``urllib.parse.quote_plus`` with nothing kept but the unreserved
    characters); the common plain value is returned as is."""
    return text if _UNRESERVED.fullmatch(text) else quote_plus(text, safe="")


def _target(checked: CheckedURL, params: Mapping[str, str] | None) -> str:
    """The request target: the checked path (dot segments removed) and query, then
    ``params`` form-encoded (``application/x-www-form-urlencoded``) and appended."""
    target = checked.target
    if "/." in target:  # a dot segment, or a name starting with a dot
        path, mark, query = target.partition("?")
        target = _remove_dot_segments(path) + mark + query
    if params:
        encoded = "&".join(f"{_quoted(key)}={_quoted(value)}" for key, value in params.items())
        if "?" not in target:
            target += "?" + encoded
        elif target.endswith(("?", "&")):
            target += encoded
        else:
            target += "&" + encoded
    return target


@dataclass(frozen=True, slots=True)
class _Route:
    """What a checked URL gives a request: the URL, its origin and ``Host`` header."""

    checked: CheckedURL
    origin: str
    scheme: bytes
    host: bytes
    host_header: bytes

    @classmethod
    def of(cls, checked: CheckedURL) -> _Route:
        origin = checked.origin
        return cls(
            checked,
            origin,
            checked.scheme.encode("ascii"),
            checked.host.encode("ascii"),
            origin[len(checked.scheme) + 3 :].encode("ascii"),
        )


class Fetcher:
    """GET over HTTP(S) through the address policy, with one deadline per fetch.

    Args:
        policy: the address policy every URL and every connection must pass.
        timeout: seconds for the whole fetch: DNS, connect, TLS, request, headers and body.
        verify: ``True`` (certifi's CA bundle), an :class:`ssl.SSLContext`, or ``False``
            (no certificate verification: tests only).
        user_agent: the ``User-Agent`` header.
        max_connections: connections open at most (all hosts together), in each of the two
            pools (fetches limited to allowed addresses, the others).
    """

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        timeout: float = 5.0,
        verify: ssl.SSLContext | bool = True,
        user_agent: str = f"holdca/{__version__}",
        max_connections: int = 20,
    ) -> None:
        """Build the pool; nothing is connected until :meth:`get`."""
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._policy = policy
        self.timeout = timeout
        self._closed = False
        self._user_agent = user_agent.encode("ascii")
        if isinstance(verify, ssl.SSLContext):
            context = verify  # the caller's, unchanged (without ALPN a server speaks HTTP/1.1)
        else:
            context = _ssl_context(verify)
            context.set_alpn_protocols(["http/1.1"])
        backend = PolicyBackend(policy)
        # by allowed_only: a connection opened under the looser rule never serves the stricter
        self._pools = {
            only: httpcore.ConnectionPool(
                ssl_context=context,
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=_KEEPALIVE,
                network_backend=backend,
            )
            for only in (False, True)
        }
        # check_url is a pure function of the URL, require_https and the (frozen) policy:
        # its answers are remembered, refusals are not
        self._routes: dict[tuple[str, bool], _Route] = {}

    @property
    def policy(self) -> AddressPolicy:
        """The address policy (fixed: the connections' backend holds the same one)."""
        return self._policy

    def _route(self, url: str, require_https: bool) -> _Route:
        """:meth:`AddressPolicy.check_url` of ``url``, remembered."""
        route = self._routes.get((url, require_https))
        if route is not None:
            return route
        route = _Route.of(self._policy.check_url(url, require_https=require_https))
        if len(url) <= _ROUTE_URL_LENGTH:
            if len(self._routes) >= _ROUTES:
                self._routes = {}
            self._routes[(url, require_https)] = route
        return route

    def get(
        self,
        url: str,
        *,
        limit: int,
        accept: str,
        params: Mapping[str, str] | None = None,
        require_https: bool = True,
    ) -> FetchResponse:
        """GET ``url`` and read its body.

        Checked, in order: :meth:`AddressPolicy.check_url` (with ``require_https``); the
        addresses of every connection (:meth:`AddressPolicy.addresses`); the status (3xx is
        refused); ``Content-Length`` and ``Content-Encoding``; the body size as it streams.
        All within ``timeout`` seconds of the call.

        Args:
            limit: largest 2xx body accepted, in bytes.
            accept: the ``Accept`` header.
            params: query parameters, form-encoded and appended to the URL's query.

        Raises:
            AddressRefusedError: the policy refused the URL or an address it resolves to.
            ResolutionError: DNS, connect, TLS or read failure; the deadline passed; a
                redirect; a 2xx body (declared or streamed) larger than ``limit``; a content
                coding other than identity.
        """
        return self._fetch("GET", url, limit, accept, params=params, require_https=require_https)

    def post(
        self,
        url: str,
        body: bytes,
        *,
        content_type: str,
        limit: int,
        accept: str,
        require_https: bool = True,
    ) -> FetchResponse:
        """POST ``body`` (as ``content_type``) to ``url`` and read the reply's body.

        The same checks, deadline, retry and errors as :meth:`get` (use it for requests that
        may be repeated, such as an RFC 3161 TimeStampReq).
        """
        return self._fetch(
            "POST", url, limit, accept, require_https=require_https, upload=(content_type, body)
        )

    def _fetch(
        self,
        method: str,
        url: str,
        limit: int,
        accept: str,
        *,
        params: Mapping[str, str] | None = None,
        require_https: bool,
        upload: tuple[str, bytes] | None = None,
    ) -> FetchResponse:
        if limit < 0:
            raise ValueError("limit must not be negative")
        if self._closed:
            raise RuntimeError("the Fetcher is closed")
        route = self._route(url, require_https)
        target = _target(route.checked, params)
        fetched = route.origin + target
        label = f"{method} {_shown(fetched)}"
        only = route.checked.allowed_only
        pool = self._pools[only]
        headers = [
            (b"Host", route.host_header),
            (b"Accept", accept.encode("ascii")),
            (b"Accept-Encoding", b"identity"),
            (b"User-Agent", self._user_agent),
        ]
        content = b""
        if upload is not None:
            content = upload[1]
            headers.append((b"Content-Type", upload[0].encode("ascii")))
            headers.append((b"Content-Length", str(len(content)).encode("ascii")))
        url_parts = httpcore.URL(
            scheme=route.scheme, host=route.host, port=route.checked.port, target=target.encode()
        )
        request = (method.encode("ascii"), url_parts, headers, content, fetched, label, limit)
        try:
            with deadline(self.timeout, allowed_only=only):
                try:
                    return self._get(pool, request)
                except ClosedUnderUse:  # the pool closed our connection: not the peer's fault
                    return self._get(pool, request)
        except ResolutionError:
            raise  # AddressRefusedError included: its message already names the host
        except TLSFailure as exc:
            what = "certificate verification failed" if exc.verification else "TLS failed"
            raise ResolutionError(f"{label}: {what}") from None
        except httpcore.TimeoutException:
            raise ResolutionError(f"{label}: timed out after {self.timeout:g} s") from None
        except httpcore.ConnectError:
            raise ResolutionError(f"{label}: connection failed") from None
        except httpcore.ProtocolError:
            raise ResolutionError(f"{label}: invalid HTTP response") from None
        except (httpcore.NetworkError, httpcore.UnsupportedProtocol):
            raise ResolutionError(f"{label}: network error") from None

    def _get(
        self,
        pool: httpcore.ConnectionPool,
        request: tuple[bytes, httpcore.URL, list[tuple[bytes, bytes]], bytes, str, str, int],
    ) -> FetchResponse:
        method, url, headers, content, fetched, label, limit = request
        left = time_left(self.timeout)  # also bounds the wait for a pooled connection
        sent = httpcore.Request(
            method,
            url,
            headers=headers,
            content=content,
            # only the timeouts: no "sni_hostname" or other override reaches the pool
            extensions={"timeout": {"connect": left, "read": left, "write": left, "pool": left}},
        )
        response = pool.handle_request(sent)
        try:
            return _read(response, fetched, label, limit)
        finally:
            response.close()  # a body not read to its end closes the connection

    def close(self) -> None:
        """Close pooled connections; :meth:`get` raises RuntimeError afterwards."""
        self._closed = True
        for pool in self._pools.values():
            pool.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _read(response: httpcore.Response, fetched: str, label: str, limit: int) -> FetchResponse:
    """Check ``response`` (status, coding, declared size) and read its body up to the cap."""
    status = response.status
    if 300 <= status < 400:
        raise ResolutionError(f"{label}: HTTP {status} redirect not followed")
    ok = 200 <= status < 300
    cap = limit if ok else min(limit, ERROR_BODY_LIMIT)
    content_type: list[bytes] = []
    encoding: list[bytes] = []
    declared: list[bytes] = []
    for name, value in response.headers:
        lowered = name.lower()
        if lowered == b"content-type":
            content_type.append(value)
        elif lowered == b"content-encoding":
            encoding.append(value)
        elif lowered == b"content-length":
            declared.append(value)
    if ok and b", ".join(encoding).strip().lower() not in (b"", b"identity"):
        raise ResolutionError(f"{label}: unexpected Content-Encoding")
    if ok and declared:
        length = b", ".join(declared).strip()
        if not length.isdigit() or int(length) > limit:
            raise ResolutionError(f"{label}: response larger than {limit} bytes")
    stream = response.stream
    if not isinstance(stream, Iterable):  # the sync pool returns sync streams
        raise httpcore.ProtocolError("unexpected asynchronous response stream")
    body = bytearray()
    for chunk in stream:
        body += chunk
        if len(body) > cap:
            if ok:
                raise ResolutionError(f"{label}: response larger than {limit} bytes")
            del body[cap:]
            break
    return FetchResponse(
        status,
        _decode(b", ".join(content_type)) if content_type else None,
        bytes(body),
        fetched,
    )


def _decode(value: bytes) -> str:
    """A header value as text: ASCII, else UTF-8, else Latin-1 (the order httpx uses)."""
    for codec in ("ascii", "utf-8"):
        try:
            return value.decode(codec)
        except UnicodeDecodeError:
            pass
    return value.decode("latin-1")
