"""The connection layer of :class:`holdca.net.fetch.Fetcher`: an httpcore network backend.

This is where the address policy meets the socket, so that there is no window between the
check and the connection (DNS rebinding):

* :meth:`PolicyBackend.connect_tcp` receives the host of the request URL from httpcore,
  resolves it through :meth:`AddressPolicy.addresses` (which refuses the host if any address
  is forbidden), and connects a socket to one of the returned IP addresses itself. httpcore
  never resolves the name; nothing but the checked addresses is connected to.
* TLS is started on that socket with ``server_hostname`` as httpcore passes it (the URL's
  host), so the certificate is verified against the name, not against the IP.
* Every socket operation (DNS, connect, TLS handshake, each read and write) is bounded by
  ``min(timeout, time left before the deadline)``, the deadline being the one
  :func:`deadline` set in the calling thread's context: a server that drips bytes cannot
  hold a fetch past its deadline. ``getaddrinfo`` has no timeout, so resolution runs in a
  daemon thread that the caller stops waiting for at the deadline.

Public httpcore API only: :class:`httpcore.NetworkBackend` / :class:`httpcore.NetworkStream`
and the exception classes. That ``connect_tcp`` gets the URL's host and ``start_tls`` its
``server_hostname`` is pinned by ``tests/net/test_fetch.py``.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

import httpcore

from holdca.errors import AddressRefusedError, ResolutionError
from holdca.net._syntax import parse_ip
from holdca.net.policy import AddressPolicy

__all__ = ["ClosedUnderUse", "PolicyBackend", "TLSFailure", "deadline", "time_left"]

_DEADLINE: ContextVar[float | None] = ContextVar("holdca_net_deadline", default=None)
# plain http by a name: every address must be covered by an allow rule (not just public)
_ALLOWED_ONLY: ContextVar[bool] = ContextVar("holdca_net_allowed_only", default=False)


class TLSFailure(httpcore.ConnectError):
    """The TLS handshake failed; ``verification`` tells a certificate failure apart."""

    def __init__(self, message: str, *, verification: bool) -> None:
        """Describe the failure (``verification``: the certificate did not verify)."""
        super().__init__(message)
        self.verification = verification


class ClosedUnderUse(Exception):  # noqa: N818 (a marker mixed into httpcore's errors)
    """The socket was closed locally while a request was using it.

    httpcore 1.0.x's pool can close a connection another thread has just started to use:
    ``HTTP11Connection.has_expired`` reads the state (idle) and then asks the stream whether
    it is readable, which it is if a request was sent and answered in between; and a
    connection assigned to a queued request can be closed before the request starts
    (encode/httpcore#1110). ``_Stream`` answers "not readable" while a request awaits its
    response, which narrows the first window; what remains shows up here. The peer did
    nothing wrong, so the fetcher retries the GET once, within the same deadline (16 threads
    x 50 GETs on loopback: 2-5 retries, no failures).
    """


class _ReadClosed(ClosedUnderUse, httpcore.ReadError):
    pass


class _WriteClosed(ClosedUnderUse, httpcore.WriteError):
    pass


class _Deadline:
    """The context manager :func:`deadline` returns (a class: cheaper than a generator)."""

    __slots__ = ("_allowed_only", "_only", "_seconds", "_token")

    def __init__(self, seconds: float, allowed_only: bool) -> None:
        self._seconds = seconds
        self._allowed_only = allowed_only

    def __enter__(self) -> None:
        self._token = _DEADLINE.set(time.monotonic() + self._seconds)
        self._only = _ALLOWED_ONLY.set(self._allowed_only)

    def __exit__(self, *_exc: object) -> None:
        _ALLOWED_ONLY.reset(self._only)
        _DEADLINE.reset(self._token)


def deadline(
    seconds: float, *, allowed_only: bool = False
) -> contextlib.AbstractContextManager[None]:
    """Bound every socket operation of this thread's fetch to ``seconds`` from now
    (``with deadline(5.0): ...``; the clock starts when the block is entered).

    With ``allowed_only`` (plain http to a name no host rule covers), the connections of
    this fetch go only to addresses an allow rule covers, not to any public address.
    """
    return _Deadline(seconds, allowed_only)


def time_left(default: float) -> float:
    """Seconds before this thread's deadline (``default`` without one); raises
    :class:`httpcore.PoolTimeout` once it has passed."""
    budget = _budget(default, httpcore.PoolTimeout)
    return default if budget is None else budget


def _budget(timeout: float | None, expired: type[Exception]) -> float | None:
    """``min(timeout, time left)``; raises ``expired`` when the deadline has passed."""
    end = _DEADLINE.get()
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise expired("deadline exceeded")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    """A socket (plain or TLS) whose every operation honours the deadline."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._awaiting_response = False

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        budget = _budget(timeout, httpcore.ReadTimeout)
        try:
            self._sock.settimeout(budget)
            data = self._sock.recv(max_bytes)
        except TimeoutError:
            if self._sock.fileno() == -1:
                raise _ReadClosed("connection closed while in use") from None
            raise httpcore.ReadTimeout("read timed out") from None
        except OSError:
            if self._sock.fileno() == -1:
                raise _ReadClosed("connection closed while in use") from None
            raise httpcore.ReadError("read failed") from None
        self._awaiting_response = False
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        self._awaiting_response = True
        try:
            while view:
                self._sock.settimeout(_budget(timeout, httpcore.WriteTimeout))
                sent = self._sock.send(view)
                view = view[sent:]
        except TimeoutError:
            raise httpcore.WriteTimeout("write timed out") from None
        except OSError:
            if self._sock.fileno() == -1:
                raise _WriteClosed("connection closed while in use") from None
            raise httpcore.WriteError("write failed") from None

    def close(self) -> None:
        self._sock.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        if isinstance(self._sock, ssl.SSLSocket):
            self.close()
            raise httpcore.ConnectError("TLS inside TLS is not supported")
        if not server_hostname:
            self.close()
            raise TLSFailure("TLS needs a server name", verification=True)
        try:
            self._sock.settimeout(_budget(timeout, httpcore.ConnectTimeout))
            wrapped = ssl_context.wrap_socket(self._sock, server_hostname=server_hostname)
        except ssl.SSLCertVerificationError:
            self.close()
            raise TLSFailure("certificate verification failed", verification=True) from None
        except ssl.SSLError:
            self.close()
            raise TLSFailure("TLS handshake failed", verification=False) from None
        except TimeoutError:
            self.close()
            raise httpcore.ConnectTimeout("TLS handshake timed out") from None
        except OSError:
            self.close()
            raise httpcore.ConnectError("TLS handshake failed") from None
        except BaseException:
            self.close()
            raise
        return _Stream(wrapped)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":  # httpcore asks it for selected_alpn_protocol()
            return self._sock if isinstance(self._sock, ssl.SSLSocket) else None
        if info in ("server_addr", "client_addr"):
            try:
                return (
                    self._sock.getpeername() if info == "server_addr" else self._sock.getsockname()
                )
            except OSError:
                return None
        if info == "socket":
            return self._sock
        if info == "is_readable":  # an idle keep-alive connection with data or EOF is stale
            if self._awaiting_response:  # not idle: a request was just written (pool race)
                return False
            try:
                readable, _, _ = select.select([self._sock], [], [], 0)
            except (OSError, ValueError):
                return True
            return bool(readable)
        return None


class PolicyBackend(httpcore.NetworkBackend):
    """An httpcore backend that connects only to addresses ``policy`` accepted.

    Args:
        policy: the address policy; :meth:`AddressPolicy.addresses` is called once per new
            connection, and the socket goes to one of the addresses it returned.
        max_pending_lookups: DNS lookups allowed to be in flight at once (a lookup that
            outlives its deadline keeps its thread until ``getaddrinfo`` returns); beyond
            that, new lookups fail at once instead of piling up threads.
    """

    def __init__(self, policy: AddressPolicy, *, max_pending_lookups: int = 64) -> None:
        """Bind the backend to ``policy``."""
        self.policy = policy
        self._lookups = threading.BoundedSemaphore(max_pending_lookups)

    def _addresses(self, host: str, port: int, timeout: float | None) -> list[str]:
        if _ALLOWED_ONLY.get():
            return self._allowed_addresses(host, port, timeout)
        return self._lookup(host, port, timeout)

    def _allowed_addresses(self, host: str, port: int, timeout: float | None) -> list[str]:
        addresses = self._lookup(host, port, timeout)
        for address in addresses:
            ip = parse_ip(address)
            if ip is None or not self.policy.allows_address(ip, port):
                raise AddressRefusedError(
                    f"refused plain http to {host[:100]}: https is required (no allow rule "
                    "covers every address it resolves to)"
                )
        return addresses

    def _lookup(self, host: str, port: int, timeout: float | None) -> list[str]:
        if parse_ip(host) is not None:
            return self.policy.addresses(host, port)  # no DNS: judged synchronously
        budget = _budget(timeout, httpcore.ConnectTimeout)
        if not self._lookups.acquire(blocking=False):
            raise ResolutionError("too many DNS lookups in progress")
        outcome: list[list[str] | BaseException] = []
        done = threading.Event()

        def work() -> None:
            try:
                outcome.append(self.policy.addresses(host, port))
            except BaseException as exc:  # handed to the waiting thread
                outcome.append(exc)
            finally:
                self._lookups.release()
                done.set()

        threading.Thread(target=work, name="holdca-net-dns", daemon=True).start()
        if not done.wait(budget):
            raise httpcore.ConnectTimeout("name resolution timed out")
        result = outcome[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        """Resolve ``host`` through the policy and connect to a checked address.

        Raises:
            AddressRefusedError: the policy refused the host (nothing was connected to).
            ResolutionError: the name did not resolve.
            httpcore.ConnectTimeout: DNS or connect did not finish within the budget.
            httpcore.ConnectError: no checked address accepted the connection.
        """
        timed_out = False
        for address in self._addresses(host, port, timeout):
            ip = parse_ip(address)
            family = socket.AF_INET6 if ip is not None and ip.version == 6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for option in socket_options or ():
                    sock.setsockopt(*option)
                if local_address is not None:
                    sock.bind((local_address, 0))
                sock.settimeout(_budget(timeout, httpcore.ConnectTimeout))
                sock.connect((address, port))
            except TimeoutError:
                sock.close()
                timed_out = True
            except OSError:
                sock.close()
            except BaseException:
                sock.close()
                raise
            else:
                return _Stream(sock)
        if timed_out:
            raise httpcore.ConnectTimeout("connect timed out")
        raise httpcore.ConnectError("connection failed")

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        """Refused: the hold never fetches through unix sockets."""
        raise httpcore.ConnectError("unix sockets are not used by the hold")

    def sleep(self, seconds: float) -> None:
        """Sleep (httpcore's retry back-off; the fetcher does not retry)."""
        time.sleep(seconds)
