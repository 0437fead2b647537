"""Prometheus metrics (holdca.server.metrics) over real HTTP: /metrics parses with
prometheus-client's own parser and its counters match the ledger after a mixed workload."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from prometheus_client.parser import text_string_to_metric_families

from holdca.errors import LedgerError, ResolutionError
from holdca.hold import HoldCA, IssuanceLedger, IssuancePolicy, MemoryLedger, RateLimiter
from holdca.hold.ledger import IssuanceRecord, SQLiteLedger
from holdca.keys import MemoryKeyStore
from holdca.notation import Descriptor
from holdca.notation.oci import OCILayout
from holdca.server import RESIGN_NSID, ClientBudget
from holdca.server.metrics import OCSP_OUTCOMES, HoldMetrics, instrument
from holdca.server.timing import TimedLedger, TimedResolver
from holdca.testing.atproto import TestRepo
from holdca.testing.network import TestNetwork
from holdca.testing.oci import build_test_image
from tests.hold.conftest import HOLD_DID, SUBJECT
from tests.hold.served import auth, body, serve_hold
from tests.hold.test_status_cache import ocsp_request, request_by_hash

URL = "/xrpc/io.atcr.hold.coSignManifest"
OCSP_HEADERS = {"Content-Type": "application/ocsp-request"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Hold:
    ca: HoldCA
    metrics: HoldMetrics
    http: httpx.Client
    net: TestNetwork

    def scrape(self) -> Samples:
        """GET /metrics, parsed by prometheus-client: {(sample name, labels): value}."""
        r = self.http.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        out: Samples = {}
        for family in text_string_to_metric_families(r.text):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out


@contextmanager
def serve(
    *,
    ledger: IssuanceLedger | None = None,
    sinks: tuple[Any, ...] = (),
    app_options: Mapping[str, Any] | None = None,
    ca_options: Mapping[str, Any] | None = None,
) -> Iterator[Hold]:
    """A hold on memory keys and a TestNetwork, instrumented, served by uvicorn."""
    made: list[HoldMetrics] = []

    def prepare(ca: HoldCA) -> dict[str, Any]:
        for sink in sinks:  # before the metrics' sink: a broken one must not stop it
            ca.audit.add_sink(sink)
        made.append(instrument(ca))  # before create_app: service auth uses the timed proxies
        return {"metrics": made[0]}

    with serve_hold(
        ledger=ledger,
        app_options=dict(app_options or {}),
        ca_options=dict(ca_options or {}),
        prepare=prepare,
    ) as served:
        yield Hold(served.ca, made[0], served.http, served.net)


def make_user(hold: Hold, tmp_path: Path) -> tuple[TestRepo, Descriptor, str]:
    """A user on the hold's network with a manifest record for an image."""
    repo = hold.net.add(TestRepo.create())
    image = build_test_image(OCILayout.create(tmp_path / f"layout-{repo.did[-6:]}"), tag="v1")
    return repo, image, repo.put_manifest(image.digest, hold_did=HOLD_DID)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def all_records(ledger: IssuanceLedger, dids: list[str]) -> list[IssuanceRecord]:
    return [r for did in dids for r in ledger.by_did(did)]


def ocsp_status(content: bytes) -> ocsp.OCSPResponseStatus:
    return ocsp.load_der_ocsp_response(content).response_status


# ---------------------------------------------------------------------- the workload


def test_counters_match_the_ledger_after_a_mixed_workload(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite3")
    policy = IssuancePolicy(rate_limit=RateLimiter(3, timedelta(hours=1)))
    with serve(
        ledger=ledger,
        app_options={"ocsp_budget": ClientBudget(rate=0.001, burst=3)},
        ca_options={"policy": policy},
    ) as hold:
        before = hold.scrape()
        for outcome in OCSP_OUTCOMES:  # every outcome is there from the start, at 0
            assert ("holdca_ocsp_requests_total", (("outcome", outcome),)) in before
        assert value(before, "holdca_issuances_total", kind="cosign") == 0

        alice, image_a, uri_a = make_user(hold, tmp_path)
        bob, image_b, uri_b = make_user(hold, tmp_path)
        post = hold.http.post

        # issuances: 3 cosigns for alice (then her rate limit), a resign and a cosign for bob
        serials = []
        for _ in range(3):
            r = post(URL, json=body(alice, uri_a, image_a), headers=auth(alice))
            assert r.status_code == 200, r.text
            serials.append(int(r.json()["serial"], 16))
        r = post(
            f"/xrpc/{RESIGN_NSID}", json=body(bob, uri_b, image_b), headers=auth(bob, RESIGN_NSID)
        )
        assert r.status_code == 200, r.text
        r = post(URL, json=body(bob, uri_b, image_b), headers=auth(bob))
        assert r.status_code == 200, r.text
        bob_serial = int(r.json()["serial"], 16)

        # refusals of several kinds
        statuses = [
            post(URL, json=body(alice, uri_a, image_a), headers=auth(alice)).status_code,
            post(URL, json=body(alice, uri_a, image_a), headers={}).status_code,
            post(URL, json=body(alice, uri_a, image_a), headers=auth(bob)).status_code,
            post(URL, content=b"{not json", headers=auth(bob)).status_code,
        ]
        wrong = body(bob, uri_b, image_b)
        wrong["manifest"] = {**wrong["manifest"], "digest": "sha256:" + "11" * 32}
        statuses.append(post(URL, json=wrong, headers=auth(bob)).status_code)
        assert statuses == [429, 401, 403, 400, 400]

        # revocations: two reasons, one of them repeated (counted once)
        now = datetime.now(UTC)
        hold.ca.revoke(serial=serials[0], reason="superseded", now=now)
        hold.ca.revoke(serial=serials[0], reason="superseded", now=now + timedelta(seconds=1))
        hold.ca.revoke(serial=serials[1], reason="keyCompromise", now=now)

        # OCSP: signed, cached, signed (revoked), unknown, malformed, a nonce, tryLater
        root = hold.ca.certificate
        leaf_bob = hold.ca.ledger.get(bob_serial)
        leaf_revoked = hold.ca.ledger.get(serials[0])
        assert leaf_bob is not None
        assert leaf_revoked is not None
        cert_bob = x509.load_der_x509_certificate(leaf_bob.certificate_der)
        cert_revoked = x509.load_der_x509_certificate(leaf_revoked.certificate_der)
        good = ocsp_request(cert_bob, root)
        answers = [
            post("/ocsp", content=good, headers=OCSP_HEADERS),  # signed
            post("/ocsp", content=good, headers=OCSP_HEADERS),  # cached
            post("/ocsp", content=ocsp_request(cert_revoked, root), headers=OCSP_HEADERS),
            post("/ocsp", content=request_by_hash(root, 0x4242), headers=OCSP_HEADERS),
            post("/ocsp", content=b"garbage", headers=OCSP_HEADERS),
            hold.http.get("/ocsp/!!notbase64"),
            post("/ocsp", content=ocsp_request(cert_bob, root, nonce=b"\x01" * 16)),  # signed
            post("/ocsp", content=ocsp_request(cert_bob, root, nonce=b"\x02" * 16)),  # budget
        ]
        s = ocsp.OCSPResponseStatus
        assert [ocsp_status(a.content) for a in answers] == [
            s.SUCCESSFUL,
            s.SUCCESSFUL,
            s.SUCCESSFUL,
            s.UNAUTHORIZED,
            s.MALFORMED_REQUEST,
            s.MALFORMED_REQUEST,
            s.SUCCESSFUL,
            s.TRY_LATER,
        ]
        # CRL twice (signed once: nothing was revoked in between)
        for _ in range(2):
            assert hold.http.get("/ca.crl").status_code == 200

        m = hold.scrape()

    # issuances match the ledger, by kind
    records = all_records(ledger, [alice.did, bob.did])
    assert len(records) == ledger.count() == 5
    for kind in ("cosign", "resign", "issue"):
        expected = sum(1 for r in records if r.kind == kind)
        assert value(m, "holdca_issuances_total", kind=kind) == expected
    assert total(m, "holdca_issuances_total") == ledger.count()
    # refusals by operation and error class
    assert value(m, "holdca_refusals_total", operation="cosign", reason="RateLimitError") == 1
    assert (
        value(m, "holdca_refusals_total", operation="authenticate", reason="AuthenticationError")
        == 1
    )
    assert value(m, "holdca_refusals_total", operation="cosign", reason="AuthorizationError") == 1
    assert value(m, "holdca_refusals_total", operation="cosign", reason="XRPCError") == 1
    assert value(m, "holdca_refusals_total", operation="cosign", reason="RecordMismatchError") == 1
    assert total(m, "holdca_refusals_total") == 5
    assert value(m, "holdca_rate_limit_hits_total", limit="issuance") == 1
    assert value(m, "holdca_rate_limit_hits_total", limit="ocsp") == 1
    # revocations match the ledger
    revoked = ledger.revoked(hold.ca.ca_id)
    assert len(revoked) == 2
    for reason in ("superseded", "keyCompromise"):
        expected = sum(1 for rev, _ in revoked if rev.reason == reason)
        assert value(m, "holdca_revocations_total", reason=reason) == expected
    assert total(m, "holdca_revocations_total") == len(revoked)
    assert value(m, "holdca_deny_list_changes_total", event="denied") == 1  # keyCompromise
    # OCSP outcomes
    expected_ocsp = {
        "signed": 3,
        "cached": 1,
        "unauthorized": 1,
        "malformed": 2,
        "tryLater": 1,
        "internalError": 0,
    }
    for outcome, n in expected_ocsp.items():
        assert value(m, "holdca_ocsp_requests_total", outcome=outcome) == n, outcome
    # CRL
    assert value(m, "holdca_crl_requests_total", outcome="ok") == 2
    assert value(m, "holdca_crls_signed_total") == 1
    # histograms have observations
    assert value(m, "holdca_did_resolution_seconds_count", fresh="true") >= 5  # each issuance
    assert value(m, "holdca_did_resolution_seconds_count", fresh="false") >= 1  # service auth
    assert value(m, "holdca_pds_fetch_seconds_count", call="get_record") >= 5
    assert value(m, "holdca_ledger_commit_seconds_count", op="record_issuance") == 5
    assert value(m, "holdca_ledger_commit_seconds_count", op="use_token") >= 5
    assert value(m, "holdca_ledger_commit_seconds_count", op="revoke") == 3
    assert value(m, "holdca_ledger_commit_seconds_sum", op="record_issuance") > 0
    assert value(m, "holdca_ledger_commit_seconds_bucket", op="record_issuance", le="+Inf") == 5
    assert value(m, "holdca_audit_sink_failures_total") == 0
    ledger.close()


def test_a_sink_that_raises_does_not_stop_a_cosign(tmp_path: Path) -> None:
    def broken(event: Mapping[str, object]) -> None:
        raise RuntimeError("metrics backend down")

    with serve(sinks=(broken,)) as hold:
        repo, image, uri = make_user(hold, tmp_path)
        r = hold.http.post(URL, json=body(repo, uri, image), headers=auth(repo))
        assert r.status_code == 200, r.text
        assert hold.ca.ledger.get(int(r.json()["serial"], 16)) is not None
        m = hold.scrape()
    assert value(m, "holdca_audit_sink_failures_total") == 1
    assert value(m, "holdca_issuances_total", kind="cosign") == 1  # the next sink still ran


def test_failures_are_counted_and_timed() -> None:
    metrics = HoldMetrics()

    class Down:
        def resolve(self, did: str, *, fresh: bool = False) -> Any:
            raise ResolutionError("PLC directory timed out")

        def get_record(self, identity: Any, collection: str, rkey: str) -> bytes:
            raise ResolutionError("PDS down")

        def get_latest_commit(self, identity: Any) -> Any:
            raise ResolutionError("PDS down")

    resolver = TimedResolver(Down(), metrics)
    with pytest.raises(ResolutionError):
        resolver.resolve("did:plc:ewvi7nxzyoun6zhxrhs64oiz", fresh=True)
    with pytest.raises(ResolutionError):
        resolver.get_latest_commit(None)  # type: ignore[arg-type]
    ledger = TimedLedger(MemoryLedger(), metrics)
    with pytest.raises(LedgerError):
        ledger.revoke(0x99, revoked_at=datetime.now(UTC))  # never issued
    m: Samples = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            m[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert value(m, "holdca_did_resolution_failures_total", error="ResolutionError") == 1
    assert value(m, "holdca_did_resolution_seconds_count", fresh="true") == 1
    assert (
        value(
            m, "holdca_pds_fetch_failures_total", call="get_latest_commit", error="ResolutionError"
        )
        == 1
    )
    assert value(m, "holdca_ledger_commit_failures_total", op="revoke", error="LedgerError") == 1
    assert value(m, "holdca_ledger_commit_seconds_count", op="revoke") == 1


def test_the_ledger_proxy_implements_the_whole_protocol(tmp_path: Path) -> None:
    protocol = {n for n in vars(IssuanceLedger) if not n.startswith("_")}
    assert protocol <= set(vars(TimedLedger))  # explicit methods, no __getattr__ magic
    inner = SQLiteLedger(tmp_path / "l.sqlite3")
    proxy = TimedLedger(inner, HoldMetrics())
    assert isinstance(proxy, IssuanceLedger)
    now = datetime.now(UTC)
    rec = IssuanceRecord(
        serial=7,
        did="did:plc:ewvi7nxzyoun6zhxrhs64oiz",
        manifest_digest="sha256:" + "ab" * 32,
        commit_cid=None,
        rev=None,
        not_before=now,
        not_after=now + timedelta(hours=1),
        certificate_der=b"\x30\x00",
        issuer_id="ca1",
        issued_at=now,
    )
    proxy.record_issuance(rec)
    assert proxy.get(7) == inner.get(7) == rec
    assert proxy.count_since(rec.did, now) == 1
    assert proxy.note_pds_host(rec.did, "https://a.example", now=now)
    assert not inner.note_pds_host(rec.did, "https://a.example", now=now)
    assert proxy.revoke(7, revoked_at=now, reason="superseded").reason == "superseded"
    assert inner.revocation(7) is not None
    proxy.close()


def test_instrument_wraps_once_and_registries_are_per_app() -> None:
    net = TestNetwork()
    ca = HoldCA.open(
        MemoryKeyStore(),
        MemoryLedger(),
        hold_did=HOLD_DID,
        subject=SUBJECT,
        now=datetime.now(UTC),
        create=True,
        resolver=net,
    )
    metrics = instrument(ca)
    assert instrument(ca, metrics) is metrics
    assert isinstance(ca.ledger, TimedLedger)
    assert not isinstance(ca.ledger.inner, TimedLedger)
    assert ca.gate is not None
    assert isinstance(ca.gate.resolver, TimedResolver)
    assert ca.gate.resolver.inner is net
    assert ca.audit.sinks.count(metrics.observe_event) == 1
    other = HoldMetrics()  # a second app in the same process: its own registry, no clash
    assert other.registry is not metrics.registry
    ca.issue("did:plc:ewvi7nxzyoun6zhxrhs64oiz", _public_key(), now=datetime.now(UTC))
    assert b'holdca_issuances_total{kind="issue"} 1.0' in metrics.exposition()
    assert b'holdca_issuances_total{kind="issue"} 0.0' in other.exposition()


def _public_key() -> ec.EllipticCurvePublicKey:
    return ec.generate_private_key(ec.SECP256R1()).public_key()
