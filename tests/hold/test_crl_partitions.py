"""Partitioned CRLs: each leaf names the CRL of its CA and notBefore period (issue 16).

Oracles: the period strings are computed here with strftime / isocalendar, the CRLs are
judged by openssl (``verify -crl_check``, ``crl -CAfile``) and by notation v1.3.2.
"""

from __future__ import annotations

import base64
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from holdca.demo import notation_verify
from holdca.errors import ConfigError, MalformedInputError
from holdca.hold import HoldCA, IssuanceRecord, SQLiteLedger
from holdca.hold.castate import crl_url_for
from holdca.hold.crlparts import parse_period, period_of
from holdca.notation import Descriptor
from holdca.notation.oci import OCILayout
from holdca.notation.trustpolicy import hold_trust_policy
from holdca.notation.truststore import write_trust_policy, write_trust_store
from holdca.pki import build_crl
from tests.hold.conftest import NOW, World, make_world
from tests.hold.served import Served, auth, body, serve_hold, user
from tests.tools import require_notation, require_tool

CRL = "http://hold.example.com/ca.crl"
URL = "/xrpc/io.atcr.hold.coSignManifest"
DAY = timedelta(days=1)
PEM = serialization.Encoding.PEM


def _cdp(cert: x509.Certificate) -> str:
    ext = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    names = ext[0].full_name
    assert names is not None
    assert len(names) == 1
    return str(names[0].value)


def _period(url: str) -> str:
    return parse_qs(urlsplit(url).query)["p"][0]


def _issue(w: World, now: datetime) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return w.ca.issue(w.repo.did, key, now=now)[0]


def _serials(crl: x509.CertificateRevocationList) -> set[int]:
    return {entry.serial_number for entry in crl}


def _number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


# ------------------------------------------------------------------ periods and URLs


def test_period_keys_are_utc_days_and_iso_weeks() -> None:
    moment = datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert period_of(moment, "day").key == moment.strftime("%Y-%m-%d")
    year, week, _ = moment.date().isocalendar()  # 2026-W01: ISO years differ here
    assert period_of(moment, "week").key == f"{year:04d}-W{week:02d}"
    week_period = period_of(moment, "week")
    assert week_period.start.weekday() == 0
    assert week_period.end - week_period.start == timedelta(days=7)
    assert week_period.contains(moment)
    for key in ("2025-12-31", "2026-W01", "2020-W53"):
        assert parse_period(key).key == key
    for bad in ("2025-02-30", "2021-W53", "2025-1-01", "all", "", "2025-12-31x", "x" * 50):
        with pytest.raises(MalformedInputError):
            parse_period(bad)
    with pytest.raises(ConfigError):
        period_of(moment, "month")


def test_crl_url_for_names_the_partition() -> None:
    ca_id = "ab" * 32
    key = ca_id[:16]
    assert crl_url_for(CRL, ca_id, "2026-03-01") == f"{CRL}?ca={key}&p=2026-03-01"
    assert crl_url_for(CRL, ca_id) == f"{CRL}?ca={key}"  # the full CRL, as before
    assert crl_url_for("http://h/crl/{ca}.crl", ca_id, "2026-W09") == (
        f"http://h/crl/{key}-2026-W09.crl"
    )
    templated = "http://h/crl/{ca}/{period}.crl"
    assert crl_url_for(templated, ca_id, "2026-W09") == f"http://h/crl/{key}/2026-W09.crl"
    assert crl_url_for(templated, ca_id) == f"http://h/crl/{key}/all.crl"
    assert crl_url_for("http://h/{period}.crl", ca_id, "2026-W09") == (
        f"http://h/2026-W09.crl?ca={key}"
    )


# ------------------------------------------------------------------ leaves and CRLs


def test_leaf_names_its_partition_and_the_partition_lists_only_its_period(
    tmp_path: Path,
) -> None:
    w = make_world(tmp_path, crl_url=CRL)
    first = _issue(w, NOW)
    later = _issue(w, NOW + 2 * DAY)
    assert _period(_cdp(first)) == first.not_valid_before_utc.strftime("%Y-%m-%d")
    assert _period(_cdp(later)) == later.not_valid_before_utc.strftime("%Y-%m-%d")
    assert _cdp(first) != _cdp(later)
    when = NOW + 2 * DAY + timedelta(hours=1)
    for cert in (first, later):
        w.ca.revoke(serial=cert.serial_number, reason="superseded", now=when)
    for cert, other in ((first, later), (later, first)):
        crl = w.ca.crl(when, ca_id=w.ca.ca_id, period=_period(_cdp(cert)))
        assert _serials(crl) == {cert.serial_number}
        assert other.serial_number not in _serials(crl)
        idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
        assert idp.critical
        assert idp.value.full_name is not None
        assert [str(n.value) for n in idp.value.full_name] == [_cdp(cert)]
        assert idp.value.only_contains_user_certs
        assert crl.is_signature_valid(w.ca.certificate.public_key())  # type: ignore[arg-type]
    full = w.ca.crl(when)  # the un-partitioned URL: everything, no IDP
    assert _serials(full) == {first.serial_number, later.serial_number}
    with pytest.raises(x509.ExtensionNotFound):
        full.extensions.get_extension_for_class(x509.IssuingDistributionPoint)


def test_week_partitions_and_partitioning_off(tmp_path: Path) -> None:
    w = make_world(tmp_path, crl_url=CRL)
    w.ca.crl_partition = "week"
    leaf = _issue(w, NOW)
    year, week, _ = leaf.not_valid_before_utc.date().isocalendar()
    assert _period(_cdp(leaf)) == f"{year:04d}-W{week:02d}"
    w.ca.crl_partition = None
    leaf = _issue(w, NOW)
    assert _cdp(leaf) == f"{CRL}?ca={w.ca.ca_id[:16]}"


def test_a_period_the_ca_cannot_have_issued_in_is_refused(tmp_path: Path) -> None:
    w = make_world(tmp_path, crl_url=CRL)
    before = (w.ca.certificate.not_valid_before_utc - 2 * DAY).strftime("%Y-%m-%d")
    future = (NOW + 3 * DAY).strftime("%Y-%m-%d")
    for period in (before, future, "2026-13-01"):
        with pytest.raises(MalformedInputError):
            w.ca.crl(NOW, period=period)
    empty = w.ca.crl(NOW, period=NOW.strftime("%Y-%m-%d"))  # nothing revoked: empty, served
    assert len(empty) == 0


@pytest.mark.parametrize("engine", ["memory", "sqlite"])
def test_crl_numbers_increase_per_partition_and_this_update_never_goes_back(
    tmp_path: Path, engine: str
) -> None:
    ledger = SQLiteLedger(tmp_path / "l.sqlite3") if engine == "sqlite" else None
    w = make_world(tmp_path, crl_url=CRL, ledger=ledger)
    leaves = [_issue(w, NOW + i * DAY) for i in range(3)]
    periods = [_period(_cdp(c)) for c in leaves]
    seen: dict[str, list[tuple[int, datetime]]] = {p: [] for p in periods}
    when = NOW + 2 * DAY
    for i, leaf in enumerate(leaves):
        w.ca.revoke(serial=leaf.serial_number, now=when + i * timedelta(minutes=1))
        for period in periods:
            # a clock going backwards (the second request) cannot make a CRL go backwards
            for at in (when + i * timedelta(minutes=1), when - timedelta(hours=1)):
                crl = w.ca.crl(at, period=period)
                seen[period].append((_number(crl), crl.last_update_utc))
                w.ca.revoke(serial=leaf.serial_number, now=at)  # no-op, stays revoked
    for history in seen.values():
        numbers = [n for n, _ in dict.fromkeys(history)]
        assert numbers == sorted(set(numbers)), history
        updates = [u for _, u in history]
        assert updates == sorted(updates), history
    full = w.ca.crl(when)
    assert _number(full) == 1  # the full CRL has numbers of its own
    if ledger is not None:
        ledger.close()


def test_key_compromise_stays_in_its_partition_and_others_leave_after_retention(
    tmp_path: Path,
) -> None:
    w = make_world(tmp_path, crl_url=CRL, crl_retention=timedelta(days=30))
    stolen = _issue(w, NOW)
    replaced = _issue(w, NOW)
    w.ca.revoke(serial=stolen.serial_number, reason="keyCompromise", now=NOW)
    w.ca.revoke(serial=replaced.serial_number, reason="superseded", now=NOW)
    period = _period(_cdp(stolen))
    assert _serials(w.ca.crl(NOW, period=period)) == {
        stolen.serial_number,
        replaced.serial_number,
    }
    late = replaced.not_valid_after_utc + timedelta(days=31)
    assert _serials(w.ca.crl(late, period=period)) == {stolen.serial_number}


# ------------------------------------------------------------------ openssl


def _openssl_verify(
    tmp_path: Path,
    ca: x509.Certificate,
    crl: x509.CertificateRevocationList,
    leaf: x509.Certificate,
    at: datetime,
) -> tuple[bool, str]:
    openssl = require_tool("openssl")
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(PEM))
    (tmp_path / "crl.pem").write_bytes(crl.public_bytes(PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(PEM))
    proc = subprocess.run(
        [
            openssl, "verify", "-crl_check", "-attime", str(int(at.timestamp())),
            "-CAfile", str(tmp_path / "ca.pem"), "-CRLfile", str(tmp_path / "crl.pem"),
            str(tmp_path / "leaf.pem"),
        ],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    return proc.returncode == 0, proc.stdout + proc.stderr


def test_openssl_accepts_the_good_leaf_rejects_the_revoked_and_another_partitions_crl(
    tmp_path: Path,
) -> None:
    openssl = require_tool("openssl")
    w = make_world(tmp_path, crl_url=CRL)
    good = _issue(w, NOW)
    bad = _issue(w, NOW)
    other = _issue(w, NOW + timedelta(hours=12, minutes=10))  # the next UTC day
    assert _period(_cdp(other)) != _period(_cdp(good))
    at = NOW + timedelta(hours=12, minutes=20)  # good is still valid
    w.ca.revoke(serial=bad.serial_number, reason="superseded", now=at)
    w.ca.revoke(serial=other.serial_number, reason="superseded", now=at)
    crl = w.ca.crl(at, period=_period(_cdp(good)))
    (tmp_path / "ca.pem").write_bytes(w.ca.certificate.public_bytes(PEM))
    (tmp_path / "crl.pem").write_bytes(crl.public_bytes(PEM))
    checked = subprocess.run(
        [openssl, "crl", "-in", str(tmp_path / "crl.pem"), "-CAfile", str(tmp_path / "ca.pem"),
         "-noout", "-text"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "verify OK" in checked.stdout + checked.stderr
    assert "Issuing Distribution Point: critical" in checked.stdout
    assert _cdp(good) in checked.stdout
    ok, out = _openssl_verify(tmp_path, w.ca.certificate, crl, good, at)
    assert ok, out
    ok, out = _openssl_verify(tmp_path, w.ca.certificate, crl, bad, at)
    assert not ok
    assert "revoked" in out
    # attack: the (valid, signed) CRL of another period served for a leaf: wrong scope
    elsewhere = w.ca.crl(at, period=_period(_cdp(other)))
    ok, out = _openssl_verify(tmp_path, w.ca.certificate, elsewhere, good, at)
    assert not ok, out
    assert "different CRL scope" in out, out  # openssl 3.0: error 44


# ------------------------------------------------------------------ notation, end to end


class _CRLServer:
    """Serves whatever DER ``body`` holds at every path (stands in for a hostile network)."""

    def __init__(self) -> None:
        self.body = b""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/pkix-crl")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ca.crl"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _fill_other_partitions(ca: HoldCA, count: int, now: datetime) -> None:
    """``count`` revoked records of the active CA issued on the 10 days before ``now``."""
    records = [
        IssuanceRecord(
            serial=(1 << 126) + i,
            did="did:plc:aaaaaaaaaaaaaaaaaaaaaaaa",
            manifest_digest="",
            commit_cid=None,
            rev=None,
            not_before=now - (1 + i % 10) * DAY,
            not_after=now + DAY,
            certificate_der=b"",
            issuer_id=ca.ca_id,
            issued_at=now - (1 + i % 10) * DAY,
            kind="issue",
        )
        for i in range(count)
    ]
    assert all(e is None for e in ca.ledger.record_issuances(records))
    for record in records:
        ca.ledger.revoke(record.serial, revoked_at=now, reason="superseded")


def _signed(served: Served, tmp_path: Path) -> tuple[Path, OCILayout, Descriptor, x509.Certificate]:
    repo, layout, image, uri = user(served, tmp_path)
    reply = served.http.post(URL, json=body(repo, uri, image), headers=auth(repo))
    assert reply.status_code == 200, reply.text
    layout.attach_signature(image, base64.b64decode(reply.json()["envelope"]))
    config = tmp_path / "notation"
    write_trust_store(config, "hold", [served.ca.root_certificate])
    write_trust_policy(config, hold_trust_policy(store="hold"))
    leaf = x509.load_pem_x509_certificate(reply.json()["certificate"].encode())
    return config, layout, image, leaf


def test_notation_verifies_with_the_partition_crl_among_many_revocations(
    tmp_path: Path,
) -> None:
    """Strict, CRL only (no OCSP URL): 50k revocations in other periods, the leaf's
    partition CRL is small; notation passes, then fails once the leaf is revoked."""
    notation = require_notation()
    with serve_hold(ocsp=False) as served:
        now = datetime.now(UTC)
        _fill_other_partitions(served.ca, 50_000, now)
        config, layout, image, leaf = _signed(served, tmp_path)
        url = _cdp(leaf)
        assert _period(url) == leaf.not_valid_before_utc.strftime("%Y-%m-%d")
        part = served.http.get(url)
        assert part.status_code == 200
        assert len(x509.load_der_x509_crl(part.content)) == 0
        full = served.http.get(url.split("&p=")[0])  # what older leaves name
        assert len(x509.load_der_x509_crl(full.content)) == 50_000
        assert len(part.content) * 100 < len(full.content)
        ok, out = notation_verify(notation, config, layout.path, image.digest)
        assert ok, out
        served.ca.revoke(serial=leaf.serial_number, reason="superseded", now=now)
        ok, out = notation_verify(notation, config, layout.path, image.digest)
        assert not ok
        assert "revoked" in out


def test_another_partitions_crl_for_a_leaf_openssl_refuses_notation_takes(
    tmp_path: Path,
) -> None:
    """The attack: the signed CRL of another partition (not listing the revoked leaf)
    served at the leaf's URL. openssl rejects it (IDP scope); notation v1.3.2 does not
    compare the IDP with the CDP (revocation/internal/crl ``validate``) and finds the leaf
    good: like replaying an older CRL within its nextUpdate, only the transport stops it."""
    notation = require_notation()
    openssl_dir = tmp_path / "openssl"
    openssl_dir.mkdir()
    hostile = _CRLServer()
    try:
        with serve_hold(ocsp=False) as served:
            served.ca.crl_url = hostile.url  # leaves name the hostile server's URL
            config, layout, image, leaf = _signed(served, tmp_path)
            now = datetime.now(UTC)
            served.ca.revoke(serial=leaf.serial_number, reason="superseded", now=now)
            own = served.ca.crl(now, period=_period(_cdp(leaf)))
            hostile.body = own.public_bytes(serialization.Encoding.DER)
            ok, out = notation_verify(notation, config, layout.path, image.digest)
            assert not ok
            assert "revoked" in out
            active = served.ca.state(now).active
            other_url = crl_url_for(hostile.url, active.ca_id, "2000-01-01")
            assert other_url is not None
            other = build_crl(
                active.key("test"),
                active.certificate,
                [],
                crl_number=1,
                this_update=now,
                next_update=now + timedelta(hours=1),
                distribution_point=other_url,
            )
            hostile.body = other.public_bytes(serialization.Encoding.DER)
            ok, out = notation_verify(notation, config, layout.path, image.digest)
            assert ok, out  # notation takes the wrong partition's CRL
            ok, out = _openssl_verify(openssl_dir, active.certificate, other, leaf, now)
            assert not ok
            assert "different CRL scope" in out, out
    finally:
        hostile.close()
