"""SSRF through the trust gate: user-chosen endpoints never reach internal addresses.

A user controls their DID document: a did:web host, or (in a did:plc log) the PDS endpoint.
Through ``HoldCA.cosign`` with the HTTP resolver, every such endpoint that resolves to, or
names, an internal address is refused with a typed error before any connection; redirects
are not followed; a dripping server is cut at the deadline. The guard of tests/net records
every connection the process attempts (and refuses any but 127.0.0.1), and local listeners
record what they accepted: refused targets see nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from holdca.atproto.resolve import HTTPResolver
from holdca.errors import AddressRefusedError, DIDSyntaxError, HoldCAError, ResolutionError
from holdca.hold import CosignRequest, HoldCA, MemoryLedger
from holdca.keys import MemoryKeyStore
from holdca.net import AddressPolicy
from holdca.notation import Descriptor
from holdca.pki import SubjectInfo
from holdca.testing.plc import plc_repo
from tests.net.conftest import Listener, NetGuard, Resolver, closed_port, drip

HOLD_DID = "did:web:hold.ssrf.test"
NOW = datetime.now(UTC)
IMAGE = Descriptor("application/vnd.oci.image.manifest.v1+json", "sha256:" + "ab" * 32, 321)
INTERNAL = ["127.0.0.1", "10.0.0.7", "172.16.3.4", "192.168.1.1", "169.254.169.254", "::1",
            "fd00::1", "::ffff:127.0.0.1", "100.64.0.1", "0.0.0.0"]  # fmt: skip
Listen = Callable[..., Listener]


def _hold(policy: AddressPolicy, plc_url: str = "http://127.0.0.1:1") -> HoldCA:
    return HoldCA.open(
        MemoryKeyStore(),
        MemoryLedger(),
        hold_did=HOLD_DID,
        subject=SubjectInfo("US", "CA", "SSRF Hold"),
        now=NOW,
        create=True,
        resolver=HTTPResolver(plc_url=plc_url, policy=policy, timeout=1.0),
    )


def _request(did: str, rkey: str = "3l3qo2vutsw2b") -> CosignRequest:
    return CosignRequest(
        did=did, descriptor=IMAGE, record_uri=f"at://{did}/io.atcr.manifest/{rkey}", caller=did
    )


def _plc(listen: Listen, pds_endpoint: str) -> tuple[Listener, str]:
    """A PLC directory stand-in serving a valid signed log naming ``pds_endpoint``."""
    _, plc = plc_repo(pds_endpoint=pds_endpoint)
    log = plc.audit_log()

    def respond(_conn: object, head: bytes) -> bytes:
        path = head.split(b" ", 2)[1].decode()
        body = log if path == f"/{plc.did}/log/audit" else b"{}"
        status = "200 OK" if path == f"/{plc.did}/log/audit" else "404 Not Found"
        return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body

    return listen(respond), plc.did


@pytest.mark.parametrize("address", INTERNAL)
def test_a_did_web_host_resolving_inside_is_refused(address: str, net_guard: NetGuard) -> None:
    resolver = Resolver({"victim.ssrf.test": [address]})
    ca = _hold(AddressPolicy(resolve=resolver))
    with pytest.raises(AddressRefusedError, match=r"victim\.ssrf\.test"):
        ca.cosign(_request("did:web:victim.ssrf.test"), now=NOW)
    assert resolver.calls  # it was resolved, then refused
    assert net_guard.connects == []
    assert ca.ledger.count() == 0


def test_a_did_web_ip_literal_is_not_even_a_did(net_guard: NetGuard) -> None:
    ca = _hold(AddressPolicy())
    for did in ("did:web:10.0.0.1", "did:web:169.254.169.254", "did:web:127.0.0.1%3A8080"):
        with pytest.raises(DIDSyntaxError):
            ca.cosign(_request(did), now=NOW)
    assert net_guard.connects == []


@pytest.mark.parametrize("address", INTERNAL)
def test_a_pds_endpoint_resolving_inside_is_refused(
    address: str, listen: Listen, net_guard: NetGuard
) -> None:
    directory, did = _plc(listen, "https://pds.evil.test")
    resolver = Resolver({"pds.evil.test": [address]})
    ca = _hold(
        AddressPolicy.parse(f"127.0.0.1:{directory.port}", resolve=resolver),
        f"http://127.0.0.1:{directory.port}",
    )
    with pytest.raises(AddressRefusedError, match=r"pds\.evil\.test"):
        ca.cosign(_request(did), now=NOW)
    assert {port for _, port in net_guard.connects} == {directory.port}  # only the directory
    assert ca.ledger.count() == 0


def test_ip_literal_pds_endpoints_are_refused_and_ports_stay_secret(
    listen: Listen, net_guard: NetGuard
) -> None:
    internal = listen()
    messages = []
    for endpoint in (
        f"http://127.0.0.1:{internal.port}",
        f"http://127.0.0.1:{closed_port()}",
        "https://[::1]:8443/",
        "http://169.254.169.254/latest/meta-data/",
        "https://10.0.0.5#",
    ):
        directory, did = _plc(listen, endpoint)
        ca = _hold(
            AddressPolicy.parse(f"127.0.0.1:{directory.port}"), f"http://127.0.0.1:{directory.port}"
        )
        with pytest.raises(AddressRefusedError) as caught:
            ca.cosign(_request(did), now=NOW)
        messages.append(str(caught.value))
    assert internal.accepted == 0
    assert messages[0] == messages[1]  # an open and a closed port give the same answer
    assert not any(str(internal.port) in m for m in messages)
    assert all(port != internal.port for _, port in net_guard.connects)


def test_a_redirect_from_the_pds_is_not_followed(listen: Listen) -> None:
    internal = listen()
    location = f"http://127.0.0.1:{internal.port}/latest/meta-data/"
    pds = listen(
        f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
    )
    directory, did = _plc(listen, f"http://127.0.0.1:{pds.port}")
    policy = AddressPolicy.parse(f"127.0.0.1:{directory.port}, 127.0.0.1:{pds.port}")
    ca = _hold(policy, f"http://127.0.0.1:{directory.port}")
    with pytest.raises(ResolutionError, match="302"):
        ca.cosign(_request(did), now=NOW)
    assert pds.accepted == 1
    assert internal.accepted == 0


def test_a_dripping_pds_is_cut_at_the_deadline(listen: Listen) -> None:
    pds = listen(drip(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", 100, 0.1))
    directory, did = _plc(listen, f"http://127.0.0.1:{pds.port}")
    policy = AddressPolicy.parse(f"127.0.0.1:{directory.port}, 127.0.0.1:{pds.port}")
    ca = _hold(policy, f"http://127.0.0.1:{directory.port}")
    started = time.monotonic()
    with pytest.raises(ResolutionError):
        ca.cosign(_request(did), now=NOW)
    assert time.monotonic() - started < 2.5  # two fetches (log, record), 1 s deadline each
    assert ca.ledger.count() == 0


def test_refusals_are_audited_with_a_typed_error(
    listen: Listen, caplog: pytest.LogCaptureFixture
) -> None:
    directory, did = _plc(listen, "http://169.254.169.254/")
    ca = _hold(
        AddressPolicy.parse(f"127.0.0.1:{directory.port}"), f"http://127.0.0.1:{directory.port}"
    )
    with caplog.at_level("WARNING", logger="holdca.audit"), pytest.raises(HoldCAError):
        ca.cosign(_request(did), now=NOW)
    [event] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "holdca.audit"]
    assert (event["event"], event["error"]) == ("refused", "AddressRefusedError")


def test_the_allow_list_is_the_only_way_in(listen: Listen, tmp_path: Path) -> None:
    """Positive control: the same internal PDS, allowed explicitly, is reached."""
    pds = listen()
    directory, did = _plc(listen, f"http://127.0.0.1:{pds.port}")
    allowed = _hold(
        AddressPolicy.parse(f"127.0.0.1:{directory.port}, 127.0.0.1:{pds.port}"),
        f"http://127.0.0.1:{directory.port}",
    )
    with pytest.raises(HoldCAError):  # the stand-in answers "hello", not a CAR
        allowed.cosign(_request(did), now=NOW)
    assert pds.accepted == 1
