"""Anomaly alerts (holdca.hold.alerts): bursts against the ledger's baseline, new PDS hosts,
refusal bursts; and the audit sinks they ride on."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from holdca.errors import (
    AuthorizationError,
    HoldCAError,
    RateLimitError,
    SignatureInvalidError,
)
from holdca.hold import HoldConfig
from holdca.hold.alerts import (
    ISSUANCE_BURST,
    NEW_PDS_HOST,
    REFUSAL_BURST,
    AnomalyDetector,
    alerts_from_config,
)
from holdca.hold.audit import AuditLog
from holdca.hold.ledger import IssuanceLedger, IssuanceRecord, MemoryLedger, SQLiteLedger
from tests.hold.conftest import HOLD_DID, NOW, make_world

T0 = datetime(2026, 1, 8, 12, 0, tzinfo=UTC)
DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
OTHER = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
HOST_A = "https://pds-a.example.com"
HOST_B = "https://pds-b.example.net"
_serials = itertools.count(1)


class Alerts:
    """A sink collecting the alert events of an audit log."""

    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []

    def __call__(self, event: Mapping[str, object]) -> None:
        if event["event"] == "alert":
            self.events.append(dict(event))

    def kinds(self, kind: str | None = None) -> list[str]:
        return [str(e["alert"]) for e in self.events if kind is None or e["alert"] == kind]


def quiet_audit() -> AuditLog:
    logger = logging.getLogger("test.hold.alerts.quiet")
    logger.setLevel(logging.CRITICAL)  # the logger drops every event: sinks still run
    logger.propagate = False
    return AuditLog(logger)


def record(did: str, at: datetime) -> IssuanceRecord:
    serial = next(_serials)
    return IssuanceRecord(
        serial=serial,
        did=did,
        manifest_digest="sha256:" + "ab" * 32,
        commit_cid="bafyreib2rxk3rh6kzwq",
        rev="3l3qo2vutsw2b",
        not_before=at,
        not_after=at + timedelta(hours=24),
        certificate_der=b"\x30\x03\x02\x01" + serial.to_bytes(20, "big"),
        issuer_id="ca1",
        issued_at=at,
        kind="cosign",
    )


def issue(
    ledger: IssuanceLedger,
    audit: AuditLog | None,
    did: str,
    at: datetime,
    n: int = 1,
    *,
    host: str | None = HOST_A,
    spread: timedelta = timedelta(0),
) -> None:
    """``n`` issuances committed to the ledger (and audited, as the HoldCA does)."""
    if audit is None:  # history only: one commit
        assert ledger.record_issuances([record(did, at + spread * i) for i in range(n)])
        return
    for i in range(n):
        rec = record(did, at + spread * i)
        ledger.record_issuance(rec)
        if audit is not None:
            audit.issued(rec, now=rec.issued_at, pds_host=host)


def refuse(
    audit: AuditLog, did: str | None, at: datetime, error: HoldCAError | None = None
) -> None:
    audit.refused(
        operation="cosign",
        did=did,
        caller=did,
        error=error if error is not None else SignatureInvalidError("forged"),
        now=at,
    )


@pytest.fixture(params=["memory", "sqlite"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IssuanceLedger]:
    led: IssuanceLedger = (
        MemoryLedger() if request.param == "memory" else SQLiteLedger(tmp_path / "l.sqlite3")
    )
    yield led
    led.close()


def detector(ledger: IssuanceLedger, **options: int) -> tuple[AuditLog, Alerts, AnomalyDetector]:
    audit = quiet_audit()
    alerts = Alerts()
    audit.add_sink(alerts)
    return audit, alerts, AnomalyDetector(ledger, audit, **options).attach()


# ---------------------------------------------------------------------- issuance bursts


def test_burst_of_a_new_did_alerts_once_at_the_minimum(ledger: IssuanceLedger) -> None:
    audit, alerts, _ = detector(ledger, burst_min=20, burst_factor=10)
    issue(ledger, audit, DID, T0, 19, spread=timedelta(minutes=1))
    assert alerts.events == []  # 19 < HOLD_ALERT_BURST_MIN
    issue(ledger, audit, DID, T0 + timedelta(minutes=19))
    assert alerts.kinds() == [ISSUANCE_BURST]
    assert alerts.events[0]["did"] == DID
    assert alerts.events[0]["time"] == (T0 + timedelta(minutes=19)).isoformat()
    assert "20 certificates in the last hour" in str(alerts.events[0]["detail"])
    issue(ledger, audit, DID, T0 + timedelta(minutes=20), 20, spread=timedelta(seconds=30))
    assert alerts.kinds() == [ISSUANCE_BURST]  # at most one per DID per hour
    issue(ledger, audit, OTHER, T0 + timedelta(minutes=30), 5)
    assert len(alerts.events) == 1  # another DID below the minimum


def test_burst_alerts_again_after_an_hour(ledger: IssuanceLedger) -> None:
    audit, alerts, _ = detector(ledger, burst_min=20, burst_factor=10)
    issue(ledger, audit, DID, T0, 20)
    later = T0 + timedelta(hours=2)  # the first 20 are now the baseline: 20/167 an hour
    issue(ledger, audit, DID, later, 20)
    assert alerts.kinds() == [ISSUANCE_BURST, ISSUANCE_BURST]


def test_burst_is_relative_to_the_did_s_own_week(ledger: IssuanceLedger) -> None:
    audit, alerts, _ = detector(ledger, burst_min=20, burst_factor=10)
    week = T0 - timedelta(days=7)
    # 5 an hour for the 167 hours before the last one: recorded in the ledger only
    first = week + timedelta(minutes=11)  # the last at T0 - 61 min
    issue(ledger, None, DID, first, 5 * 167, spread=timedelta(minutes=12))
    assert ledger.count_since(DID, T0 - timedelta(hours=1)) == 0
    # 50 in the last hour = 10 x the average (835 / 167 = 5): not *more* than 10 x
    start = T0 + timedelta(minutes=1)
    issue(ledger, audit, DID, start, 50, host=None, spread=timedelta(seconds=10))
    assert alerts.events == []
    issue(ledger, audit, DID, T0 + timedelta(minutes=10), host=None)  # the 51st
    assert alerts.kinds() == [ISSUANCE_BURST]
    # issuances older than the week do not count in the baseline
    audit2, alerts2, _ = detector(ledger, burst_min=20, burst_factor=10)
    issue(ledger, None, OTHER, T0 - timedelta(days=8), 500)
    issue(ledger, audit2, OTHER, T0, 20, host=None)
    assert alerts2.kinds() == [ISSUANCE_BURST]


def test_baseline_comes_from_the_ledger_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    first = SQLiteLedger(path)
    audit, alerts, _ = detector(first, burst_min=20)
    issue(first, audit, DID, T0, 12, host=HOST_A)
    assert alerts.events == []
    first.close()
    again = SQLiteLedger(path)  # a restart: a new detector with empty memory
    audit2, alerts2, fresh = detector(again, burst_min=20)
    assert fresh.tracked() == {"refusals": 0, "bursts": 0, "hosts": 0}
    issue(again, audit2, DID, T0 + timedelta(minutes=5), 7, host=HOST_A)
    assert alerts2.events == []  # 19 in the ledger's last hour
    issue(again, audit2, DID, T0 + timedelta(minutes=6), host=HOST_A)
    # the 20th by the ledger's count, the 8th this detector saw; and HOST_A is not new
    assert alerts2.kinds() == [ISSUANCE_BURST]
    again.close()


# ---------------------------------------------------------------------- PDS hosts


def test_new_pds_host_alerts_but_not_on_the_first_issuance(ledger: IssuanceLedger) -> None:
    audit, alerts, _ = detector(ledger)
    issue(ledger, audit, DID, T0, host=HOST_A)
    assert alerts.events == []  # the first issuance of the DID
    issue(ledger, audit, DID, T0 + timedelta(minutes=1), host=HOST_A)
    assert alerts.events == []
    issue(ledger, audit, DID, T0 + timedelta(minutes=2), host=HOST_B)
    assert alerts.kinds() == [NEW_PDS_HOST]
    assert alerts.events[0]["did"] == DID
    assert HOST_B in str(alerts.events[0]["detail"])
    issue(ledger, audit, DID, T0 + timedelta(minutes=3), host=HOST_B)
    issue(ledger, audit, DID, T0 + timedelta(minutes=4), host=HOST_A)  # seen before
    issue(ledger, audit, OTHER, T0 + timedelta(minutes=5), host=HOST_B)  # OTHER's first
    issue(ledger, audit, DID, T0 + timedelta(minutes=6), host=None)  # no PDS named
    assert alerts.kinds() == [NEW_PDS_HOST]


def test_a_first_batch_from_one_host_does_not_alert(ledger: IssuanceLedger) -> None:
    audit, alerts, _ = detector(ledger)
    records = [record(DID, T0) for _ in range(3)]  # cosign_many: one commit, then events
    assert ledger.record_issuances(records) == [None, None, None]
    for rec in records:
        audit.issued(rec, now=T0, pds_host=HOST_A)
    assert alerts.events == []


def test_known_hosts_survive_a_restart_and_replicas_alert_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    one, two = SQLiteLedger(path), SQLiteLedger(path)  # two replicas on one ledger
    audit1, alerts1, _ = detector(one)
    audit2, alerts2, _ = detector(two)
    issue(one, audit1, DID, T0, host=HOST_A)
    issue(two, audit2, DID, T0 + timedelta(minutes=1), host=HOST_A)
    assert alerts1.events == alerts2.events == []  # replica two knows HOST_A from the ledger
    issue(one, audit1, DID, T0 + timedelta(minutes=2), host=HOST_B)
    issue(two, audit2, DID, T0 + timedelta(minutes=3), host=HOST_B)
    assert len(alerts1.events) + len(alerts2.events) == 1
    one.close()
    two.close()


# ---------------------------------------------------------------------- refusal bursts


def test_refusal_burst_alerts_once_per_burst() -> None:
    audit, alerts, _ = detector(MemoryLedger(), refusals=5)
    for i in range(4):
        refuse(audit, DID, T0 + timedelta(minutes=2 * i))
    assert alerts.events == []
    refuse(audit, DID, T0 + timedelta(minutes=9))  # 5 within 10 minutes
    assert alerts.kinds() == [REFUSAL_BURST]
    assert alerts.events[0]["did"] == DID
    assert "5 refused requests" in str(alerts.events[0]["detail"])
    for i in range(1, 30):  # the burst goes on for half an hour: no second alert
        refuse(audit, DID, T0 + timedelta(minutes=9 + i))
    assert len(alerts.events) == 1
    quiet = T0 + timedelta(minutes=38 + 11)  # quiet for 11 minutes: a new burst may alert
    for i in range(5):
        refuse(audit, DID, quiet + timedelta(seconds=i))
    assert alerts.kinds() == [REFUSAL_BURST, REFUSAL_BURST]


def test_refusals_below_the_threshold_or_not_counted_do_not_alert() -> None:
    audit, alerts, _ = detector(MemoryLedger(), refusals=5)
    for i in range(40):  # one every 3 minutes: never 5 within 10 minutes
        refuse(audit, DID, T0 + timedelta(minutes=3 * i))
    for i in range(20):  # rate-limit refusals are the DID's own traffic
        refuse(audit, OTHER, T0 + timedelta(seconds=i), RateLimitError("rate"))
    for i in range(20):  # no DID to blame (a failed authentication)
        refuse(audit, None, T0 + timedelta(seconds=i), AuthorizationError("no"))
    for i in range(4):  # 4 each for two DIDs: counted per DID
        refuse(audit, "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb", T0 + timedelta(seconds=i))
        refuse(audit, "did:plc:cccccccccccccccccccccccc", T0 + timedelta(seconds=i))
    assert alerts.events == []


def test_refusal_alert_disabled_with_zero() -> None:
    audit, alerts, _ = detector(MemoryLedger(), refusals=0)
    for i in range(100):
        refuse(audit, DID, T0 + timedelta(seconds=i))
    assert alerts.events == []


def test_memory_is_bounded() -> None:
    ledger = MemoryLedger()
    audit, alerts, det = detector(ledger, refusals=3, max_tracked=50, max_hosts=40)
    for i in range(2000):
        did = f"did:plc:{i:024d}"
        refuse(audit, did, T0 + timedelta(milliseconds=i))
        refuse(audit, did, T0 + timedelta(milliseconds=i))
    assert det.tracked()["refusals"] <= 50
    assert alerts.events == []  # evicted DIDs start again; none reached 3
    for i in range(200):
        issue(ledger, audit, DID, T0 + timedelta(seconds=i), host=f"https://pds{i}.example.com")
    sizes = det.tracked()
    assert sizes["hosts"] <= 40
    assert len(alerts.kinds(NEW_PDS_HOST)) == 199  # each host new for DID after the first
    audit2, _, det2 = detector(ledger, burst_min=1, burst_factor=1, max_tracked=10)
    for i in range(100):
        issue(ledger, audit2, f"did:plc:{i:024d}", T0 + timedelta(hours=i))
    assert det2.tracked()["bursts"] <= 10
    # a DID quiet for a whole window is forgotten at once, not only beyond the bound
    audit3, _, det3 = detector(MemoryLedger(), refusals=3)
    refuse(audit3, DID, T0)
    refuse(audit3, OTHER, T0 + timedelta(minutes=11))
    assert det3.tracked()["refusals"] == 1


def test_invalid_thresholds() -> None:
    with pytest.raises(ValueError, match="burst"):
        AnomalyDetector(MemoryLedger(), quiet_audit(), burst_min=0)
    with pytest.raises(ValueError, match="max_tracked"):
        AnomalyDetector(MemoryLedger(), quiet_audit(), max_tracked=0)


def test_alerts_from_config_reads_the_hold_alert_settings() -> None:
    config = HoldConfig.from_env(
        {
            "HOLD_DID": HOLD_DID,
            "HOLD_SUBJECT_C": "US",
            "HOLD_SUBJECT_ST": "CA",
            "HOLD_SUBJECT_O": "Example Hold",
            "HOLD_ALERT_BURST_FACTOR": "3",
            "HOLD_ALERT_BURST_MIN": "4",
            "HOLD_ALERT_REFUSALS": "2",
        }
    )
    audit = quiet_audit()
    alerts = Alerts()
    audit.add_sink(alerts)
    ledger = MemoryLedger()
    det = alerts_from_config(config, ledger, audit)
    assert (det.burst_factor, det.burst_min, det.refusals) == (3, 4, 2)
    assert det in audit.sinks  # attached
    issue(ledger, audit, DID, T0, 4)
    refuse(audit, DID, T0)
    refuse(audit, DID, T0)
    assert alerts.kinds() == [ISSUANCE_BURST, REFUSAL_BURST]


# ---------------------------------------------------------------------- through a HoldCA


def test_a_hold_raises_all_three_alerts(tmp_path: Path) -> None:
    audit = quiet_audit()
    alerts = Alerts()
    audit.add_sink(alerts)
    w = make_world(tmp_path, audit=audit)
    alerts_from_config(
        HoldConfig(
            hold_did=HOLD_DID,
            subject_country="US",
            subject_state="CA",
            subject_organization="Example Hold",
            alert_burst_min=3,
            alert_refusals=3,
        ),
        w.ca.ledger,
        audit,
    )
    mine = (NEW_PDS_HOST, ISSUANCE_BURST, REFUSAL_BURST)  # not the DID-change alerts

    def raised() -> list[str]:
        return [k for k in alerts.kinds() if k in mine]

    w.ca.cosign(w.request(), now=NOW)
    w.repo.pds_endpoint = "https://elsewhere.example.net"  # the DID moved to another PDS
    w.ca.cosign(w.request(), now=NOW + timedelta(minutes=1))
    assert raised() == [NEW_PDS_HOST]
    w.ca.cosign(w.request(), now=NOW + timedelta(minutes=2))  # the 3rd in the hour
    assert raised() == [NEW_PDS_HOST, ISSUANCE_BURST]
    for i in range(3):  # someone else asks for the DID's certificates
        with pytest.raises(AuthorizationError):
            w.ca.cosign(w.request(caller=OTHER), now=NOW + timedelta(minutes=3, seconds=i))
    assert raised() == [NEW_PDS_HOST, ISSUANCE_BURST, REFUSAL_BURST]
    assert all(e["did"] == w.repo.did for e in alerts.events if e["alert"] in mine)
    assert w.ledger.count() == 3  # alerts change nothing in what is issued


# ---------------------------------------------------------------------- the sinks


def test_sinks_run_when_the_logger_drops_the_level_and_never_fail_the_operation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    audit = quiet_audit()
    seen: list[str] = []

    def broken(event: Mapping[str, object]) -> None:
        raise RuntimeError("sink is down")

    audit.add_sink(broken)
    audit.add_sink(lambda event: seen.append(str(event["event"])))
    with caplog.at_level(logging.ERROR, logger="holdca.hold.audit"):
        for i in range(3):
            issue(MemoryLedger(), audit, DID, T0 + timedelta(seconds=i))
    assert seen == ["issued"] * 3  # the sink after the broken one still runs
    assert audit.sink_failures == 3
    logged = [r for r in caplog.records if r.name == "holdca.hold.audit"]
    assert len(logged) == 1  # logged once, then only counted
    assert logged[0].exc_info is not None
    assert isinstance(logged[0].exc_info[1], RuntimeError)
    audit.remove_sink(broken)
    issue(MemoryLedger(), audit, DID, T0)
    assert audit.sink_failures == 3
    assert AuditLog(sinks=[broken]).sinks == (broken,)
