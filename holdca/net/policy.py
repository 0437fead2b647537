"""The one outbound address policy of the hold (no network I/O except DNS, injectable).

Every URL the hold fetches because a user chose it (a did:web host, a PDS endpoint from a DID
document, the PLC directory) goes through an :class:`AddressPolicy`:

* :meth:`AddressPolicy.check_url` judges the URL's syntax before anything else happens:
  ``https`` (plain ``http`` only where an allow rule covers the host), no userinfo, a valid DNS
  name or an IP literal that an allow rule covers;
* :meth:`AddressPolicy.addresses` resolves a host and judges every address it resolves to:
  globally routable unicast only (see :func:`~holdca.net._syntax.is_public_address`), unless
  an allow rule covers it. One forbidden address refuses the whole host.

The HTTP fetcher (:class:`holdca.net.fetch.Fetcher`) calls :meth:`~AddressPolicy.addresses`
for every new connection and connects to exactly the addresses it returned.

Every refusal raises :class:`~holdca.errors.AddressRefusedError` naming the host, never the
address or port that was refused (a refused internal port reads the same whether it is open or
closed: nothing was connected to). Bad policy text raises :class:`~holdca.errors.ConfigError`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from holdca.errors import AddressRefusedError, ConfigError, ResolutionError
from holdca.net._syntax import (
    IPAddress,
    URLSyntaxError,
    is_public_address,
    parse_host,
    parse_ip,
    parse_port,
    split_url,
)

__all__ = [
    "AddressPolicy",
    "AllowRule",
    "CheckedURL",
    "HostPortRule",
    "NetworkRule",
    "Resolve",
    "is_public_address",
    "origin",
    "system_resolve",
]

Resolve = Callable[[str, int], Sequence[str]]
"""``resolve(host, port)``: the IP addresses (strings) a DNS name resolves to."""

_MAX_SHOWN = 100


def _shown(text: str) -> str:
    return repr(text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "...")


def system_resolve(host: str, port: int) -> list[str]:
    """The unique IPv4/IPv6 addresses ``socket.getaddrinfo`` gives for ``host``, in order.

    Raises:
        OSError: the lookup failed (``socket.gaierror``).
    """
    seen: list[str] = []
    for *_, sockaddr in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    ):
        address = sockaddr[0]
        if isinstance(address, str) and address not in seen:
            seen.append(address)
    return seen


@dataclass(frozen=True)
class NetworkRule:
    """Allow every address of ``network``, on any port."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network

    def __str__(self) -> str:
        return str(self.network)


@dataclass(frozen=True)
class HostPortRule:
    """Allow ``host`` on ``port`` only.

    For a DNS name (``localhost:2583``): a URL naming that host and port, whatever the name
    resolves to, and plain ``http`` to it. For an IP address (``127.0.0.1:8080``,
    ``[::1]:9000``): that address on that port, reached as a literal or through any name.
    ``host`` is normalised (lowercase A-labels, or the compressed IP form without brackets).
    """

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


AllowRule = NetworkRule | HostPortRule


@dataclass(frozen=True)
class CheckedURL:
    """A URL that passed :meth:`AddressPolicy.check_url` (its addresses are judged later).

    Attributes:
        scheme: ``"https"`` or ``"http"``.
        host: lowercase A-label DNS name, or an IP address without brackets.
        port: the explicit port, or 443 / 80.
        target: path and query (at least ``/``); the fragment is dropped.
        address: the address of an IP-literal host, else ``None``.
        allowed_only: plain http to a name no host rule covers: it may be fetched only if
            every address the name resolves to is covered by an allow rule (checked for
            each connection by the fetcher), never from a merely public address.
    """

    scheme: str
    host: str
    port: int
    target: str
    address: IPAddress | None = None
    allowed_only: bool = False

    @property
    def origin(self) -> str:
        """``scheme://host[:port]``: no path, query, fragment or userinfo."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return (
            f"{self.scheme}://{host}"
            if self.port == default
            else f"{self.scheme}://{host}:{self.port}"
        )

    @property
    def url(self) -> str:
        """The normalised URL: :attr:`origin` followed by :attr:`target`."""
        return self.origin + self.target


def _split(url: str) -> CheckedURL:
    try:
        scheme, host, address, port, target = split_url(url)
    except URLSyntaxError as exc:
        # the URL is not echoed: it may carry userinfo (a password) or control characters
        raise AddressRefusedError(f"refused URL: {exc}") from None
    return CheckedURL(scheme, host, port, target, address)


def origin(url: str) -> str:
    """Only ``scheme://host[:port]`` of ``url`` (syntax only, no address policy).

    Used to sanitise a PDS endpoint taken from a DID document: its path, query, fragment
    (``https://pds.example/x#``) are dropped, so the hold builds its request URLs from an
    origin it checked, never from text the account holder appended.

    Raises:
        AddressRefusedError: ``url`` is not an acceptable ``http``/``https`` URL (userinfo,
            invalid host or port, control characters, ...).
    """
    return _split(url).origin


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses the hold may connect to: public unicast, plus the ``allow`` rules.

    Attributes:
        allow: exceptions (:class:`NetworkRule` for a CIDR block on any port,
            :class:`HostPortRule` for one host on one port).
        resolve: ``resolve(host, port) -> addresses``; :func:`system_resolve` by default,
            injectable for tests.
    """

    allow: tuple[AllowRule, ...] = ()
    resolve: Resolve = field(default=system_resolve, repr=False, compare=False)

    def __post_init__(self) -> None:
        for rule in self.allow:
            if not isinstance(rule, NetworkRule | HostPortRule):
                raise TypeError(f"allow rules are NetworkRule or HostPortRule, not {rule!r}")

    @classmethod
    def parse(
        cls,
        text: str | None,
        *,
        variable: str = "HOLD_NETWORK_ALLOW",
        resolve: Resolve = system_resolve,
    ) -> AddressPolicy:
        """A policy from a comma-separated allow list.

        Entries: CIDR networks (``127.0.0.0/8``, ``::1/128``; host bits must be zero), bare IP
        addresses (a /32 or /128), and ``host:port`` pairs (``localhost:2583``,
        ``127.0.0.1:8080``, ``[::1]:9000``). Whitespace and empty entries are ignored;
        ``None`` or ``""`` is the default policy (public addresses only).

        Raises:
            ConfigError: an entry that is none of these, naming ``variable`` and the entry.
        """
        rules: list[AllowRule] = []
        for raw in (text or "").split(","):
            entry = raw.strip()
            if entry:
                rules.append(_parse_rule(entry, variable))
        return cls(tuple(rules), resolve)

    # --- judging --------------------------------------------------------------------------

    def _host_rule(self, host: str, port: int) -> bool:
        return any(
            isinstance(rule, HostPortRule) and rule.host == host and rule.port == port
            for rule in self.allow
        )

    def allows_address(self, address: IPAddress, port: int) -> bool:
        """Whether an allow rule covers ``address`` on ``port`` (an IPv4-mapped IPv6
        address is matched as its IPv4 address; the zone of a scoped address is ignored)."""
        if isinstance(address, ipaddress.IPv6Address):
            if address.scope_id:
                address = ipaddress.IPv6Address(str(address).partition("%")[0])
            if address.ipv4_mapped is not None:
                address = address.ipv4_mapped
        for rule in self.allow:
            if isinstance(rule, NetworkRule):
                if address in rule.network:
                    return True
            elif rule.port == port and parse_ip(rule.host) == address:
                return True
        return False

    def permits(self, address: IPAddress, port: int) -> bool:
        """Whether the hold may connect to ``address:port``: public, or allowed by a rule."""
        return is_public_address(address) or self.allows_address(address, port)

    def check_url(self, url: str, *, require_https: bool = True) -> CheckedURL:
        """Check ``url`` at the syntax level and normalise it.

        Checked: the grammar of :func:`~holdca.net._syntax.split_url` (``http``/``https``
        only, no userinfo, no control characters, a valid DNS name or IP literal, a port in
        1..65535); an IP-literal host must be covered by an allow rule (public or not: the
        hold fetches user-chosen URLs by name); plain ``http``.

        ``require_https=True`` (the default): plain ``http`` is refused unless an allow rule
        covers the host, i.e. a :class:`HostPortRule` naming this host and port, or, for an
        IP literal, any rule covering that address and port. For a *name* under a
        :class:`NetworkRule` the URL passes with ``allowed_only`` set: the fetcher then
        connects only if every address the name resolves to is covered by an allow rule
        (``http://localhost:2583`` with ``127.0.0.0/8`` allowed), never to a public address
        over http. ``require_https=False``: plain ``http`` is accepted for any host; the
        address rules apply unchanged.

        The addresses a DNS name resolves to are judged later, by :meth:`addresses`.

        Raises:
            AddressRefusedError: any of the above; the message names the host.
        """
        checked = _split(url)
        host = _shown(checked.host)
        if checked.address is not None:
            if not self.allows_address(checked.address, checked.port):
                raise AddressRefusedError(
                    f"refused to connect to {host}: IP-literal hosts need an allow rule"
                )
            covered = True
        else:
            covered = self._host_rule(checked.host, checked.port)
        if checked.scheme == "http" and require_https and not covered:
            if not any(isinstance(rule, NetworkRule) for rule in self.allow):
                raise AddressRefusedError(f"refused plain http to {host}: https is required")
            checked = replace(checked, allowed_only=True)
        return checked

    def addresses(self, host: str, port: int) -> list[str]:
        """Resolve ``host`` (unless it is an IP literal) and judge every address.

        All addresses must be public unicast or covered by an allow rule for ``port``; a
        :class:`HostPortRule` naming ``host`` and ``port`` allows whatever it resolves to.
        If any address is forbidden, the host is refused as a whole. Returns the addresses
        (unique, in resolver order) to connect to; nothing else may be connected to.

        Raises:
            AddressRefusedError: an invalid host, or a forbidden address (the message names
                the host, never the address).
            ResolutionError: the name does not resolve, or the resolver answered garbage.
        """
        try:
            name, literal = parse_host(f"[{host}]" if ":" in host else host)
        except URLSyntaxError as exc:
            raise AddressRefusedError(f"refused to connect to {_shown(host)}: {exc}") from None
        shown = _shown(name)
        if literal is not None:
            if not self.permits(literal, port):
                raise AddressRefusedError(f"refused to connect to {shown}: not a public address")
            return [str(literal)]
        try:
            answers = list(self.resolve(name, port))
        except (OSError, UnicodeError) as exc:
            raise ResolutionError(f"could not resolve {shown}") from exc
        if not answers:
            raise ResolutionError(f"could not resolve {shown}: no addresses")
        trusted_name = self._host_rule(name, port)
        result: list[str] = []
        for answer in answers:
            address = parse_ip(str(answer))
            if address is None:
                raise ResolutionError(f"could not resolve {shown}: invalid resolver answer")
            if not trusted_name and not self.permits(address, port):
                raise AddressRefusedError(
                    f"refused to connect to {shown}: it resolves to a non-public address"
                )
            if str(address) not in result:
                result.append(str(address))
        return result


def _parse_rule(entry: str, variable: str) -> AllowRule:
    def bad(why: str) -> ConfigError:
        return ConfigError(f"{variable}: invalid entry {_shown(entry)}: {why}")

    if "/" in entry:
        try:
            return NetworkRule(ipaddress.ip_network(entry, strict=True))
        except ValueError as exc:
            raise bad(f"not a CIDR network ({exc})") from None
    bare = parse_ip(entry)
    if bare is not None:
        if isinstance(bare, ipaddress.IPv6Address) and bare.scope_id:
            raise bad("zoned IPv6 addresses are not supported")
        return NetworkRule(ipaddress.ip_network(bare))
    if entry.startswith("["):
        raw_host, close, port_part = entry.partition("]")
        raw_host += close
        if not port_part.startswith(":"):
            raise bad("expected [v6]:port")
        port_text = port_part[1:]
    else:
        raw_host, colon, port_text = entry.partition(":")
        if not colon:
            raise bad("expected a CIDR network (10.0.0.0/8), an IP address or host:port")
    try:
        host, _ = parse_host(raw_host)
        port = parse_port(port_text)
    except URLSyntaxError as exc:
        raise bad(str(exc)) from None
    return HostPortRule(host, port)
