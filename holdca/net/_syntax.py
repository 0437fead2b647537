"""Address classification and host/URL syntax for :mod:`holdca.net.policy` (no I/O).

Two questions are answered here, both without touching the network:

* :func:`is_public_address`: is an IP address globally routable unicast? The stdlib's
  ``ipaddress.is_global`` is not enough on Python 3.11 (224.0.0.1, ff02::1, fec0::1, 3fff::1,
  192.88.99.1 and 64:ff9b:1::1 are all "global" there), so the IANA special-purpose
  registries are spelled out below and the stdlib flags are only an extra veto.
* :func:`parse_host` / :func:`split_url`: what host, port and request target does a URL name,
  with one strict grammar (no userinfo, no control characters, no numeric host tricks such as
  ``2130706433``, ``0x7f.1`` or ``127.1``), so that the policy and the HTTP client cannot
  disagree about where a URL points.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

import idna

__all__ = [
    "IPAddress",
    "URLSyntaxError",
    "embedded_ipv4",
    "is_public_address",
    "parse_host",
    "parse_ip",
    "parse_port",
    "split_url",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH: Final = 8192


class URLSyntaxError(ValueError):
    """A host, port or URL that does not follow the accepted grammar; the message says why."""


# --- addresses --------------------------------------------------------------------------

# IANA IPv4 special-purpose registry (the blocks not globally reachable), plus multicast,
# which the registry lists elsewhere and Python 3.11 calls global.
_V4_FORBIDDEN: Final = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network", includes the unspecified 0.0.0.0
        "10.0.0.0/8",  # RFC 1918
        "100.64.0.0/10",  # shared address space (CGNAT)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, includes 169.254.169.254 (cloud metadata)
        "172.16.0.0/12",  # RFC 1918
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",  # RFC 1918
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes the limited broadcast 255.255.255.255
    )
)
_V6_GLOBAL_UNICAST: Final = ipaddress.IPv6Network("2000::/3")
_V6_FORBIDDEN: Final = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "2001::/23",  # IETF protocol assignments (Teredo, 2001::/32, is judged before)
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
    )
)
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR: Final = ipaddress.IPv6Network("2002::/16")
_TEREDO: Final = ipaddress.IPv6Network("2001::/32")


def embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address stands for: IPv4-mapped (``::ffff:a.b.c.d``),
    NAT64 (``64:ff9b::/96``), 6to4 (``2002::/16``) and Teredo (server and client);
    ``()`` for any other IPv6 address."""
    if address.ipv4_mapped is not None:
        return (address.ipv4_mapped,)
    if address in _NAT64:
        return (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF),)
    if address in _SIX_TO_FOUR and address.sixtofour is not None:
        return (address.sixtofour,)
    if address in _TEREDO and address.teredo is not None:
        return address.teredo
    return ()


def _public_v4(address: ipaddress.IPv4Address) -> bool:
    if any(address in net for net in _V4_FORBIDDEN):
        return False
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_reserved
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
    )


def is_public_address(address: IPAddress) -> bool:
    """Whether ``address`` is globally routable unicast.

    IPv4: outside every block of ``_V4_FORBIDDEN`` (loopback, RFC 1918, link-local, CGNAT,
    documentation, benchmarking, multicast, reserved, broadcast, "this network") and global
    for the stdlib too. IPv6 that embeds an IPv4 address (mapped, NAT64, 6to4, Teredo) is
    judged by the embedded address(es) only; any other IPv6 address must be in ``2000::/3``,
    outside documentation and IETF blocks, and global for the stdlib.
    """
    if isinstance(address, ipaddress.IPv4Address):
        return _public_v4(address)
    if address.scope_id:
        return False
    embedded = embedded_ipv4(address)
    if embedded:
        return all(_public_v4(v4) for v4 in embedded)
    if address not in _V6_GLOBAL_UNICAST or any(address in net for net in _V6_FORBIDDEN):
        return False
    return address.is_global and not (
        address.is_multicast or address.is_private or address.is_reserved
    )


def parse_ip(text: str) -> IPAddress | None:
    """``text`` as an IP address (IPv4 dotted quad, or IPv6 with optional ``%zone``),
    or ``None`` if it is not one."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


# --- hosts and URLs -----------------------------------------------------------------------

_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_NUMERIC_LABEL: Final = re.compile(r"(?:[0-9]+|0x[0-9a-f]*)")
_PORT: Final = re.compile(r"[0-9]{1,5}")
# RFC 3986 pchar plus "/" and "?": everything a request target may hold, percent-escapes
# checked separately. No spaces, controls, backslashes, quotes, brackets or non-ASCII.
_TARGET: Final = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*")
_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_FORBIDDEN_ANYWHERE: Final = re.compile(r"[\x00-\x20\x7f\\]")


def parse_port(text: str) -> int:
    """A decimal port in 1..65535.

    Raises:
        URLSyntaxError: not decimal digits, or out of range.
    """
    if not _PORT.fullmatch(text) or not 0 < int(text) < 65536:
        raise URLSyntaxError(f"invalid port {text[:10]!r}")
    return int(text)


def parse_host(raw: str) -> tuple[str, IPAddress | None]:
    """The normalised host of a URL authority and, for an IP literal, its address.

    ``[v6]`` is an IPv6 literal (no zone). Otherwise a non-ASCII host is converted to
    A-labels (IDNA 2008 with UTS 46 mapping), lowercased, one trailing dot dropped; then it
    is a strict IPv4 dotted quad or a DNS name (LDH labels of 1-63 characters, at most 253
    in all, a last label that is not numeric, valid IDNA in ``xn--`` labels). The numeric
    forms a browser would read as IPv4 (``2130706433``, ``0x7f.1``, ``127.1``, ``0177.0.0.1``)
    are refused rather than guessed at.

    Raises:
        URLSyntaxError: anything else.
    """
    if raw.startswith("["):
        if not raw.endswith("]") or "%" in raw:
            raise URLSyntaxError("invalid IPv6 literal")
        try:
            v6 = ipaddress.IPv6Address(raw[1:-1])
        except ValueError:
            raise URLSyntaxError("invalid IPv6 literal") from None
        return str(v6), v6
    host = raw
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except (UnicodeError, ValueError):
            raise URLSyntaxError("host is not a valid internationalised name") from None
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    v4 = parse_ip(host)
    if isinstance(v4, ipaddress.IPv4Address):
        return str(v4), v4
    labels = host.split(".")
    if (
        not host
        or len(host) > 253
        or not all(_LABEL.fullmatch(label) for label in labels)
        or _NUMERIC_LABEL.fullmatch(labels[-1])
    ):
        raise URLSyntaxError("host is not a valid DNS name")
    if any(label.startswith("xn--") for label in labels):
        try:
            idna.decode(host)
        except (UnicodeError, ValueError):
            raise URLSyntaxError("host is not a valid internationalised name") from None
    return host, None


def split_url(url: str) -> tuple[str, str, IPAddress | None, int, str]:
    """``(scheme, host, address, port, target)`` of an ``http``/``https`` URL.

    ``scheme`` is lowercased, ``host`` normalised by :func:`parse_host`, ``address`` set for
    an IP literal, ``port`` explicit or the scheme's default, ``target`` the path and query
    (``/`` when empty). The fragment is dropped.

    Raises:
        URLSyntaxError: another scheme, userinfo, an empty or invalid host or port, control
            characters, spaces, backslashes, or a request target outside RFC 3986.
    """
    if len(url) > MAX_URL_LENGTH:
        raise URLSyntaxError("URL too long")
    if _FORBIDDEN_ANYWHERE.search(url):
        raise URLSyntaxError("URL contains control characters, spaces or backslashes")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        raise URLSyntaxError("URL scheme must be https (or http where allowed)")
    end = len(rest)
    for delimiter in "/?#":
        index = rest.find(delimiter)
        if index != -1:
            end = min(end, index)
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        raise URLSyntaxError("URL must not carry userinfo")
    if authority.startswith("["):
        close = authority.find("]")
        raw_host, port_part = authority[: close + 1], authority[close + 1 :]
        if close == -1 or (port_part and not port_part.startswith(":")):
            raise URLSyntaxError("invalid IPv6 literal")
        port_text = port_part[1:] if port_part else None
    else:
        raw_host, colon, port_text_or_empty = authority.partition(":")
        port_text = port_text_or_empty if colon else None
    if not raw_host:
        raise URLSyntaxError("URL has no host")
    host, address = parse_host(raw_host)
    port = (443 if scheme == "https" else 80) if port_text is None else parse_port(port_text)
    target = tail.partition("#")[0]
    if not _TARGET.fullmatch(target) or _ESCAPE.search(target):
        raise URLSyntaxError("URL path or query holds characters outside RFC 3986")
    if not target.startswith("/"):
        target = "/" + target
    return scheme, host, address, port, target
