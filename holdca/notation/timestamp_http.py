"""An RFC 3161 client: timestamp signatures at an external TSA (``HOLD_TSA_URL``).

Needs the ``http`` extra (holdca.net). The TimeStampReq is POSTed as
``application/timestamp-query`` through :class:`holdca.net.Fetcher`, so the hold's one
outbound address policy applies (public addresses only, ``HOLD_NETWORK_ALLOW`` exceptions;
plain http is allowed because the reply is signed); the reply must be ``200`` with
``Content-Type: application/timestamp-reply`` exactly, at most
:data:`~holdca.notation.timestamp.MAX_TOKEN_SIZE` bytes, within the deadline, and pass
:func:`~holdca.notation.timestamp.check_response` against the configured TSA roots.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509

from holdca.errors import ResolutionError, TimestampError
from holdca.net import AddressPolicy, Fetcher
from holdca.notation.timestamp import (
    MAX_TOKEN_SIZE,
    MEDIA_TYPE_QUERY,
    MEDIA_TYPE_REPLY,
    build_request,
    check_response,
    check_tsa_roots,
)

__all__ = ["DEFAULT_TSA_TIMEOUT", "HTTPTimestamper"]

DEFAULT_TSA_TIMEOUT = 15.0
"""Seconds for a whole TSA exchange (notation's own timeout)."""


class HTTPTimestamper:
    """A :class:`~holdca.notation.timestamp.Timestamper` backed by a TSA at ``url``.

    Args:
        url: the TSA's http(s) URL.
        roots: the TSA root certificate(s) its tokens must chain to (self-signed CAs).
        policy: the address policy (default: public addresses only).
        fetcher: use this fetcher (its policy applies) instead of building one.
        timeout: seconds for the whole exchange (DNS, connect, request, reply).
        max_size: largest reply accepted, in bytes.

    Raises:
        TimestampError: no roots, or a root that is not a self-signed CA.
        AddressRefusedError: ``url`` is not an http(s) URL the policy accepts.
    """

    def __init__(
        self,
        url: str,
        roots: Sequence[x509.Certificate],
        *,
        policy: AddressPolicy | None = None,
        fetcher: Fetcher | None = None,
        timeout: float = DEFAULT_TSA_TIMEOUT,
        max_size: int = MAX_TOKEN_SIZE,
    ) -> None:
        """Check the roots and the URL's syntax; nothing is connected yet."""
        self.roots = check_tsa_roots(roots)
        self.fetcher = fetcher or Fetcher(policy or AddressPolicy(), timeout=timeout)
        self.fetcher.policy.check_url(url, require_https=False)
        self.url = url
        self.max_size = min(max_size, MAX_TOKEN_SIZE)

    def timestamp(self, signature: bytes, *, hash_algorithm: str) -> bytes:
        """POST a TimeStampReq over ``signature`` and return the checked DER token.

        Checked: the policy (URL and every address), the deadline, status 200, the content
        type, the size, then :func:`~holdca.notation.timestamp.check_response` (status
        granted, messageImprint and nonce, token signature, ESS certHash, TSA chain and EKU).

        Raises:
            TimestampError: any failure, including a refused address or a network error
                (raised from the :class:`~holdca.errors.ResolutionError`).
        """
        request = build_request(signature, hash_algorithm=hash_algorithm)
        try:
            reply = self.fetcher.post(
                self.url,
                request.der,
                content_type=MEDIA_TYPE_QUERY,
                accept=MEDIA_TYPE_REPLY,
                limit=self.max_size,
                require_https=False,
            )
        except ResolutionError as exc:
            raise TimestampError(f"TSA: {exc}") from exc
        if reply.status != 200:
            raise TimestampError(f"TSA: HTTP {reply.status}")
        if reply.content_type != MEDIA_TYPE_REPLY:
            shown = (reply.content_type or "none")[:60]
            raise TimestampError(f"TSA: Content-Type {shown!r} is not {MEDIA_TYPE_REPLY}")
        return check_response(reply.body, request, self.roots).token

    def close(self) -> None:
        """Close the fetcher's pooled connections."""
        self.fetcher.close()
