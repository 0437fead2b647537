"""An HTTP GET client that enforces the hold's :class:`~holdca.net.policy.AddressPolicy`.

:class:`Fetcher` is httpx (sync) on an httpcore connection pool whose network backend is
:class:`~holdca.net._backend.PolicyBackend`:

* the URL is checked by :meth:`AddressPolicy.check_url` first (scheme, userinfo, host syntax,
  IP literals, plain http);
* every new connection resolves the host through :meth:`AddressPolicy.addresses` and goes to
  one of the addresses it accepted (no second resolution by httpx, no rebinding window); TLS
  verifies the certificate against the URL's host name;
* one deadline (``timeout`` seconds) covers DNS, connect, TLS, the request and the whole body;
* redirects are not followed (a 3xx raises, and its target is never contacted), the
  environment is not consulted (no proxies, netrc or ``SSL_CERT_FILE``), cookies are neither
  stored nor sent, ``Accept-Encoding: identity`` is sent and any other content coding refused;
* bodies are streamed and cut at the limit;
* a GET whose pooled connection httpcore closed under it (a race in httpcore 1.0.x's pool,
  see :class:`~holdca.net._backend.ClosedUnderUse`) is retried once, within the deadline.

Errors are typed and short: :class:`~holdca.errors.AddressRefusedError` for the policy,
:class:`~holdca.errors.ResolutionError` for everything else (network, timeout, redirect, size,
TLS). The class is thread-safe; connections are pooled and reused.
"""

from __future__ import annotations

import http.cookiejar
import ssl
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Final

import httpcore
import httpx

from holdca import __version__
from holdca.errors import ResolutionError
from holdca.net._backend import ClosedUnderUse, PolicyBackend, TLSFailure, deadline, time_left
from holdca.net.policy import AddressPolicy

__all__ = ["ERROR_BODY_LIMIT", "FetchResponse", "Fetcher"]

ERROR_BODY_LIMIT: Final = 4096
"""Bytes of a non-2xx body kept (enough for an XRPC error; the rest is not read)."""

_MAX_SHOWN = 100


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


class _Body(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class _Transport(httpx.BaseTransport):
    """httpx transport over an httpcore pool with the policy backend (public APIs only)."""

    def __init__(self, pool: httpcore.ConnectionPool) -> None:
        self._pool = pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            # only the timeouts: no "sni_hostname" or other override reaches the pool
            extensions={"timeout": request.extensions.get("timeout", {})},
        )
        response = self._pool.handle_request(core)
        if not isinstance(response.stream, Iterable):  # the sync pool returns sync streams
            response.close()
            raise httpcore.ProtocolError("unexpected asynchronous response stream")
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


class Fetcher:
    """GET over HTTP(S) through the address policy, with one deadline per fetch.

    Args:
        policy: the address policy every URL and every connection must pass.
        timeout: seconds for the whole fetch: DNS, connect, TLS, request, headers and body.
        verify: ``True`` (certifi's CA bundle), an :class:`ssl.SSLContext`, or ``False``
            (no certificate verification: tests only).
        user_agent: the ``User-Agent`` header.
        max_connections: connections pooled at most (all hosts together).
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
        self.policy = policy
        self.timeout = timeout
        self._closed = False
        context = (
            verify
            if isinstance(verify, ssl.SSLContext)
            else httpx.create_ssl_context(verify=verify, trust_env=False)
        )
        pool = httpcore.ConnectionPool(
            ssl_context=context,
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=5.0,
            network_backend=PolicyBackend(policy),
        )
        no_cookies = http.cookiejar.CookieJar(
            policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[])
        )
        self._client = httpx.Client(
            transport=_Transport(pool),
            trust_env=False,
            follow_redirects=False,
            cookies=no_cookies,
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": user_agent, "Accept-Encoding": "identity"},
        )

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
            params: query parameters appended to the URL.

        Raises:
            AddressRefusedError: the policy refused the URL or an address it resolves to.
            ResolutionError: DNS, connect, TLS or read failure; the deadline passed; a
                redirect; a 2xx body (declared or streamed) larger than ``limit``; a content
                coding other than identity.
        """
        if limit < 0:
            raise ValueError("limit must not be negative")
        if self._closed:
            raise RuntimeError("the Fetcher is closed")
        checked = self.policy.check_url(url, require_https=require_https)
        shown = _shown(checked.url)
        try:
            with deadline(self.timeout, allowed_only=checked.allowed_only):
                try:
                    return self._get(checked.url, limit, accept, params)
                except ClosedUnderUse:  # the pool closed our connection: not the peer's fault
                    return self._get(checked.url, limit, accept, params)
        except ResolutionError:
            raise  # AddressRefusedError included: its message already names the host
        except TLSFailure as exc:
            what = "certificate verification failed" if exc.verification else "TLS failed"
            raise ResolutionError(f"GET {shown}: {what}") from None
        except (httpcore.TimeoutException, httpx.TimeoutException):
            raise ResolutionError(f"GET {shown}: timed out after {self.timeout:g} s") from None
        except (httpcore.ConnectError, httpx.ConnectError):
            raise ResolutionError(f"GET {shown}: connection failed") from None
        except (httpcore.ProtocolError, httpx.ProtocolError, httpx.DecodingError):
            raise ResolutionError(f"GET {shown}: invalid HTTP response") from None
        except (httpcore.NetworkError, httpx.HTTPError, httpx.StreamError, httpx.InvalidURL):
            raise ResolutionError(f"GET {shown}: network error") from None

    def _get(
        self, url: str, limit: int, accept: str, params: Mapping[str, str] | None
    ) -> FetchResponse:
        with self._client.stream(
            "GET",
            url,
            params=params,
            headers={"Accept": accept},
            timeout=httpx.Timeout(time_left(self.timeout)),  # bounds the wait for the pool
        ) as response:
            fetched = str(response.request.url)
            shown = _shown(fetched)
            status = response.status_code
            if 300 <= status < 400:
                raise ResolutionError(f"GET {shown}: HTTP {status} redirect not followed")
            ok = 200 <= status < 300
            cap = limit if ok else min(limit, ERROR_BODY_LIMIT)
            encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
            if ok and encoding not in ("", "identity"):
                raise ResolutionError(f"GET {shown}: unexpected Content-Encoding")
            declared = response.headers.get("Content-Length")
            if (
                ok
                and declared is not None
                and (not declared.strip().isdigit() or int(declared) > limit)
            ):
                raise ResolutionError(f"GET {shown}: response larger than {limit} bytes")
            body = bytearray()
            for chunk in response.iter_raw():
                body += chunk
                if len(body) > cap:
                    if ok:
                        raise ResolutionError(f"GET {shown}: response larger than {limit} bytes")
                    del body[cap:]
                    break
            return FetchResponse(status, response.headers.get("Content-Type"), bytes(body), fetched)

    def close(self) -> None:
        """Close pooled connections; :meth:`get` raises RuntimeError afterwards."""
        self._closed = True
        self._client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
