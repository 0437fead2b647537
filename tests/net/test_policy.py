"""AddressPolicy: the allow-list grammar, address classes, URL syntax, resolution checks."""

from __future__ import annotations

import ipaddress
import re
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from holdca.errors import AddressRefusedError, ConfigError, ResolutionError
from holdca.net import (
    AddressPolicy,
    CheckedURL,
    HostPortRule,
    NetworkRule,
    is_public_address,
    origin,
    system_resolve,
)
from tests.net.conftest import NetGuard, Resolver

# --- the allow list -----------------------------------------------------------------------


def test_parse_accepts_the_documented_forms() -> None:
    policy = AddressPolicy.parse(
        "127.0.0.0/8, ::1/128, localhost:2583, 127.0.0.1:8080, [::1]:9000,, 10.1.2.3 ,"
    )
    assert policy.allow == (
        NetworkRule(ipaddress.ip_network("127.0.0.0/8")),
        NetworkRule(ipaddress.ip_network("::1/128")),
        HostPortRule("localhost", 2583),
        HostPortRule("127.0.0.1", 8080),
        HostPortRule("::1", 9000),
        NetworkRule(ipaddress.ip_network("10.1.2.3/32")),
    )
    assert [str(rule) for rule in policy.allow][2:5] == [
        "localhost:2583",
        "127.0.0.1:8080",
        "[::1]:9000",
    ]


def test_parse_normalises_names() -> None:
    (rule,) = AddressPolicy.parse("PDS.Example.:2583").allow
    assert rule == HostPortRule("pds.example", 2583)


@pytest.mark.parametrize("text", [None, "", " , ,"])
def test_parse_empty_is_the_default_policy(text: str | None) -> None:
    assert AddressPolicy.parse(text).allow == ()


@pytest.mark.parametrize(
    "entry",
    [
        "10.0.0.1/8",  # host bits set
        "10.0.0.0/33",
        "localhost",  # a name needs a port
        "localhost:0",
        "localhost:65536",
        "localhost:http",
        "[::1]",
        "[::1]9000",
        "[::1:9000",
        "exa_mple.com:80",
        "2130706433:80",  # numeric host trick
        "0x7f.1:80",
        "http://localhost:2583",
        "fe80::1%eth0",
        "*.example.com:443",
    ],
)
def test_parse_rejects_bad_entries_naming_variable_and_entry(entry: str) -> None:
    with pytest.raises(ConfigError) as info:
        AddressPolicy.parse(f"127.0.0.0/8, {entry}", variable="MY_ALLOW")
    assert "MY_ALLOW" in str(info.value)
    assert repr(entry) in str(info.value)


def test_rules_must_be_rule_objects() -> None:
    with pytest.raises(TypeError):
        AddressPolicy(("127.0.0.0/8",))  # type: ignore[arg-type]


# --- address classes ----------------------------------------------------------------------

FORBIDDEN = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "169.254.0.1",
    "100.64.0.1",  # CGNAT
    "100.127.255.254",
    "0.0.0.0",
    "0.1.2.3",
    "255.255.255.255",
    "240.0.0.1",
    "224.0.0.1",
    "239.255.255.250",
    "192.0.0.9",
    "192.0.2.1",
    "198.51.100.1",
    "203.0.113.1",
    "198.18.0.1",
    "192.88.99.1",
    "::",
    "::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fe80::1%1",
    "fec0::1",
    "ff02::1",
    "ff0e::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible (deprecated)
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b::7f00:1",
    "64:ff9b:1::1",  # local-use NAT64
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2002:7f00:1::1",
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
    "2001:0:a00:1::1",  # Teredo, server 10.0.0.1
    "2001:db8::1",
    "3fff::1",
    "100::1",
    "::ffff:0.0.0.0",
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "2606:4700:4700::1111",
    "2a00:1450:4001::1",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize("text", FORBIDDEN)
def test_forbidden_addresses(text: str) -> None:
    assert not is_public_address(ipaddress.ip_address(text))


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses(text: str) -> None:
    assert is_public_address(ipaddress.ip_address(text))


@pytest.mark.parametrize("text", ["224.0.0.1", "ff02::1"])
def test_stdlib_is_global_misses_multicast(text: str) -> None:
    """Why the policy does not rely on ``is_global``: on Python 3.11 multicast is "global"
    (so are fec0::1, 3fff::1, 192.88.99.1 and 64:ff9b:1::1, refused above)."""
    address = ipaddress.ip_address(text)
    assert address.is_global
    assert not is_public_address(address)


# --- URLs ---------------------------------------------------------------------------------

ALLOW_LOCAL = AddressPolicy.parse("127.0.0.0/8, localhost:2583, [::1]:9000")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://PDS.Example.COM/xrpc/x?a=b#frag",
            ("https", "pds.example.com", 443, "/xrpc/x?a=b"),
        ),
        ("HTTPS://pds.example.com.", ("https", "pds.example.com", 443, "/")),
        ("https://pds.example.com:8443?x=1", ("https", "pds.example.com", 8443, "/?x=1")),
        ("https://bücher.example/", ("https", "xn--bcher-kva.example", 443, "/")),
        ("https://xn--bcher-kva.example/", ("https", "xn--bcher-kva.example", 443, "/")),
        ("https://localhost/", ("https", "localhost", 443, "/")),
    ],
)
def test_check_url_normalises(url: str, expected: tuple[str, str, int, str]) -> None:
    checked = AddressPolicy().check_url(url)
    assert (checked.scheme, checked.host, checked.port, checked.target) == expected
    assert checked.address is None
    assert AddressPolicy().check_url(checked.url) == checked


@pytest.mark.parametrize(
    "url",
    [
        "https://user@pds.example.com/",
        "https://user:pw@pds.example.com/",
        "https://pds.example.com@127.0.0.1/",
        "https://:@pds.example.com/",
        "ftp://pds.example.com/",
        "file:///etc/passwd",
        "https:pds.example.com",
        "//pds.example.com/",
        "https:///path",
        "https://pds.example.com:0/",
        "https://pds.example.com:65536/",
        "https://pds.example.com:/",
        "https://pds.example.com:443:443/",
        "https://pds.example.com:+443/",
        "https://exa_mple.com/",
        "https://-bad.example/",
        "https://bad..example/",
        "https://pds.example.com\\@evil.example/",
        "https://pds.example.com /",
        "https://pds.exa\tmple.com/",
        "https://pds.example.com/\r\nX-Injected: 1",
        "https://pds.example.com/pa th",
        "https://pds.example.com/%zz",
        "https://pds.example.com/é",
        "https://%31%32%37.0.0.1/",
        "https://xn--zz.example/",
        "https://" + "a" * 64 + ".example/",
        "https://[::1/",
        "https://[fe80::1%25eth0]/",
        "https://[v1.fe]/",
    ],
)
def test_check_url_refuses_bad_syntax(url: str) -> None:
    with pytest.raises(AddressRefusedError):
        ALLOW_LOCAL.check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0x7f.1/",
        "http://127.1/",
        "http://127.0.1/",
        "http://0177.0.0.1/",
        "http://017700000001/",
        "http://1.0x2.3.4/",
        "http://0/",
        "https://1.2.3.0x4/",
    ],
)
def test_numeric_host_tricks_are_refused_even_when_loopback_is_allowed(url: str) -> None:
    with pytest.raises(AddressRefusedError, match="not a valid DNS name"):
        ALLOW_LOCAL.check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/",
        "https://10.0.0.1/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/",
        "https://[fc00::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://127.0.0.1./",
        "https://8.8.8.8/",  # public, but IP literals need an allow rule
        "https://[2606:4700:4700::1111]/",
    ],
)
def test_ip_literals_need_an_allow_rule(url: str) -> None:
    with pytest.raises(AddressRefusedError, match="IP-literal"):
        AddressPolicy().check_url(url)


def test_ip_literals_covered_by_a_rule() -> None:
    assert ALLOW_LOCAL.check_url("http://127.0.0.1:8080/").address == ipaddress.ip_address(
        "127.0.0.1"
    )
    assert ALLOW_LOCAL.check_url("https://[::ffff:127.0.0.1]/").host == "::ffff:7f00:1"
    assert ALLOW_LOCAL.check_url("http://[::1]:9000/").origin == "http://[::1]:9000"
    with pytest.raises(AddressRefusedError):
        ALLOW_LOCAL.check_url("http://[::1]:9001/")  # the [::1]:9000 rule is for one port


def test_plain_http_needs_an_allow_rule_for_the_host() -> None:
    policy = ALLOW_LOCAL
    with pytest.raises(AddressRefusedError, match="https is required"):
        AddressPolicy().check_url("http://pds.example.com/")
    named = policy.check_url("http://localhost:2583/x")
    assert (named.url, named.allowed_only) == ("http://localhost:2583/x", False)
    # a name without a host rule, under a CIDR rule: passes the syntax check, and the fetcher
    # connects only if every address it resolves to is covered by an allow rule
    assert policy.check_url("http://localhost:2584/").allowed_only
    assert policy.check_url("http://localhost/").allowed_only
    with pytest.raises(AddressRefusedError, match="https is required"):
        AddressPolicy.parse("localhost:2583").check_url("http://localhost:2584/")  # no CIDR
    assert policy.check_url("https://localhost:2584/").scheme == "https"


def test_require_https_false_accepts_http_to_any_host() -> None:
    checked = AddressPolicy().check_url("http://pds.example.com/", require_https=False)
    assert checked.url == "http://pds.example.com/"
    with pytest.raises(AddressRefusedError):  # the address rules still apply
        AddressPolicy().check_url("http://10.0.0.1/", require_https=False)


def test_syntax_refusals_do_not_echo_the_url() -> None:
    with pytest.raises(AddressRefusedError) as info:
        AddressPolicy().check_url("https://admin:hunter2@pds.example.com/")
    assert "hunter2" not in str(info.value)
    assert "userinfo" in str(info.value)


def test_refusal_names_the_host_only() -> None:
    with pytest.raises(AddressRefusedError) as info:
        AddressPolicy().check_url("https://10.1.2.3:6379/secret-path")
    assert "10.1.2.3" in str(info.value)
    assert "6379" not in str(info.value)
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://pds.example.com/xrpc/com.atproto.sync.getRecord?did=x",
            "https://pds.example.com",
        ),
        ("https://pds.example.com#", "https://pds.example.com"),
        ("https://pds.example.com/#@internal", "https://pds.example.com"),
        ("https://pds.example.com:443/", "https://pds.example.com"),
        ("http://pds.example.com:80", "http://pds.example.com"),
        ("https://PDS.example.com:8443/a/b", "https://pds.example.com:8443"),
        ("https://[::1]:9000/x", "https://[::1]:9000"),
        ("https://bücher.example/", "https://xn--bcher-kva.example"),
    ],
)
def test_origin(url: str, expected: str) -> None:
    assert origin(url) == expected


@pytest.mark.parametrize(
    "url", ["https://user@pds.example.com", "ftp://pds.example.com", "https://127.1/"]
)
def test_origin_refuses(url: str) -> None:
    with pytest.raises(AddressRefusedError):
        origin(url)


def test_checked_url_origin_and_url() -> None:
    checked = CheckedURL("https", "::1", 8443, "/x?y")
    assert checked.origin == "https://[::1]:8443"
    assert checked.url == "https://[::1]:8443/x?y"


# --- resolution ---------------------------------------------------------------------------


def test_addresses_of_a_public_name() -> None:
    resolver = Resolver({"pds.example.com": ["93.184.216.34", "2606:2800::1", "93.184.216.34"]})
    policy = AddressPolicy(resolve=resolver)
    assert policy.addresses("pds.example.com", 443) == ["93.184.216.34", "2606:2800::1"]
    assert resolver.calls == [("pds.example.com", 443)]


@pytest.mark.parametrize("bad", FORBIDDEN)
def test_any_forbidden_address_refuses_the_name(bad: str) -> None:
    resolver = Resolver({"pds.example.com": ["93.184.216.34", bad]})
    with pytest.raises(AddressRefusedError) as info:
        AddressPolicy(resolve=resolver).addresses("pds.example.com", 443)
    message = str(info.value)
    assert "pds.example.com" in message
    assert bad not in message
    assert "93.184.216.34" not in message
    assert "443" not in message


def test_allow_rules_cover_resolved_addresses() -> None:
    resolver = Resolver({"local.test": ["127.0.0.1", "::ffff:127.0.0.1"], "v6.test": ["::1"]})
    policy = AddressPolicy.parse("127.0.0.0/8, [::1]:9000", resolve=resolver)
    assert policy.addresses("local.test", 1234) == ["127.0.0.1", "::ffff:7f00:1"]
    assert policy.addresses("v6.test", 9000) == ["::1"]
    with pytest.raises(AddressRefusedError):
        policy.addresses("v6.test", 9001)


def test_host_port_rule_trusts_the_name_on_that_port_only() -> None:
    resolver = Resolver({"localhost": ["127.0.0.1", "::1"]})
    policy = AddressPolicy.parse("localhost:2583", resolve=resolver)
    assert policy.addresses("localhost", 2583) == ["127.0.0.1", "::1"]
    with pytest.raises(AddressRefusedError):
        policy.addresses("localhost", 2584)
    with pytest.raises(AddressRefusedError):
        policy.addresses("127.0.0.1", 2583)  # the rule names the host, not its address


def test_ip_literal_hosts_are_not_resolved() -> None:
    resolver = Resolver()
    policy = AddressPolicy.parse("127.0.0.0/8", resolve=resolver)
    assert policy.addresses("127.0.0.1", 80) == ["127.0.0.1"]
    with pytest.raises(AddressRefusedError):
        policy.addresses("10.0.0.1", 80)
    with pytest.raises(AddressRefusedError):
        policy.addresses("::1", 80)
    assert resolver.calls == []


def test_invalid_hosts_are_refused_before_resolution() -> None:
    resolver = Resolver()
    for host in ("127.1", "2130706433", "exa_mple.com", "", "a" * 300):
        with pytest.raises(AddressRefusedError):
            AddressPolicy(resolve=resolver).addresses(host, 443)
    assert resolver.calls == []


@pytest.mark.parametrize("answers", [[], ["not-an-ip"], ["10.0.0.1/8"]])
def test_empty_or_garbage_resolution(answers: list[str]) -> None:
    policy = AddressPolicy(resolve=Resolver({"pds.example.com": answers}))
    with pytest.raises(ResolutionError) as info:
        policy.addresses("pds.example.com", 443)
    assert not isinstance(info.value, AddressRefusedError)


def test_lookup_failure_is_a_resolution_error() -> None:
    with pytest.raises(ResolutionError, match=r"could not resolve 'nowhere\.example'") as info:
        AddressPolicy(resolve=Resolver()).addresses("nowhere.example", 443)
    assert not isinstance(info.value, AddressRefusedError)


def test_system_resolve_on_a_literal_does_no_dns(net_guard: NetGuard) -> None:
    assert system_resolve("127.0.0.1", 80) == ["127.0.0.1"]
    assert net_guard.lookups == []
    with pytest.raises(socket.gaierror):  # the guard forbids real lookups in tests
        system_resolve("pds.example.com", 443)


# --- properties ---------------------------------------------------------------------------

_ORIGIN = re.compile(r"https?://(?:[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?")

_pieces = st.sampled_from(
    [
        "https://",
        "http://",
        "HTTPS://",
        "ftp://",
        "https:",
        "//",
        "",
        "user@",
        "u:p@",
        "@",
        "pds.example.com",
        "bücher.example",
        "127.0.0.1",
        "127.1",
        "0x7f.1",
        "2130706433",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[fe80::1%25lo]",
        "[",
        "]",
        "localhost",
        "xn--zz",
        ":",
        ":443",
        ":0",
        ":2583",
        ":99999",
        "/",
        "/path",
        "?q=1",
        "#frag",
        "#",
        "%",
        "%2e",
        "\\",
        " ",
        "\t",
        "\n",
        "\x00",
        ".",
        "..",
        "-",
        "_",
        "。",
        "\uff41",
        "\u200b",
        "é",
    ]
)
_odd_urls = st.one_of(
    st.text(max_size=60),
    st.lists(_pieces, max_size=8).map("".join),
    st.tuples(st.sampled_from(["https://", "http://"]), st.text(max_size=30)).map("".join),
)
_policies = st.sampled_from([AddressPolicy(), ALLOW_LOCAL])


@given(url=_odd_urls, policy=_policies, require_https=st.booleans())
def test_check_url_only_raises_address_refused(
    url: str, policy: AddressPolicy, require_https: bool
) -> None:
    try:
        checked = policy.check_url(url, require_https=require_https)
    except AddressRefusedError:
        return
    assert checked.scheme in ("http", "https")
    assert checked.target.startswith("/")
    assert "#" not in checked.target
    assert policy.check_url(checked.url, require_https=require_https) == checked


@given(url=_odd_urls)
def test_origin_keeps_only_scheme_host_port(url: str) -> None:
    try:
        result = origin(url)
    except AddressRefusedError:
        return
    assert _ORIGIN.fullmatch(result), result
    assert "@" not in result
    assert "?" not in result
    assert "#" not in result
    assert origin(result) == result
