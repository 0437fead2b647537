"""Partitioned CRLs at 1M revocations: what a verifier downloads, and what building costs.

A HoldCA on a MemoryLedger filled directly with ``--revocations`` revoked records (not
cosigns), spread evenly over ``--days`` UTC days of notBefore, all within retention; each
day is one CRL partition (``crl_partition = "day"``). Reported, next to one P-256 sign
timed in the same run (the harness's primitive):

* bytes of the largest partition CRL (what a leaf's CDP makes a verifier download) and of
  the CA's full CRL (what one CRL per CA would be; still served at the un-partitioned URL);
* build time of the full CRL, of the first partition CRL after a revocation (it reads and
  orders the CA's revocations from the ledger once) and of each further partition (the
  ledger read is shared), as seconds and as multiples of a P-256 sign.

Usage::

    python benchmarks/bench_crl_partitions.py [--json] [--revocations 1000000] [--days 30]

Nothing here asserts a speed. ``tests/hold/test_crl_partitions.py`` checks with notation
that a partition CRL is accepted while the CA has many revocations elsewhere.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Row, emit, measure_primitives

from holdca.errors import HoldCAError
from holdca.hold import HoldCA, IssuanceRecord, MemoryLedger
from holdca.keys import MemoryKeyStore
from holdca.pki import MAX_CRL_BYTES, SubjectInfo

BENCH = "crl_partitions"
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)


def fill(ca: HoldCA, count: int, days: int, now: datetime) -> None:
    """``count`` revoked records of ``ca``'s active CA, notBefore spread over ``days`` days."""
    chunk = 50_000
    for first in range(0, count, chunk):
        records = [
            IssuanceRecord(
                serial=(1 << 126) + i,
                did="did:plc:aaaaaaaaaaaaaaaaaaaaaaaa",
                manifest_digest="",
                commit_cid=None,
                rev=None,
                not_before=now - (i % days) * DAY - timedelta(hours=1),
                not_after=now - (i % days) * DAY + DAY,
                certificate_der=b"",
                issuer_id=ca.ca_id,
                issued_at=now - (i % days) * DAY,
                kind="issue",
            )
            for i in range(first, min(first + chunk, count))
        ]
        ca.ledger.record_issuances(records)
        for record in records:
            ca.ledger.revoke(record.serial, revoked_at=now, reason="superseded")


def main() -> int:
    """Fill, build, print the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--revocations", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    created = NOW - (args.days + 1) * DAY
    ca = HoldCA.open(
        MemoryKeyStore(),
        MemoryLedger(),
        hold_did="did:web:hold.example.com",
        subject=SubjectInfo(country="US", state="CA", organization="Bench Hold"),
        now=created,
        create=True,
        crl_url="http://hold.example.com/ca.crl",
        crl_retention=timedelta(days=365),
    )
    t0 = time.perf_counter()
    fill(ca, args.revocations, args.days, NOW)
    fill_s = time.perf_counter() - t0
    prims = measure_primitives(1.0)
    sign_s = 1 / prims.p256_sign

    periods = [(NOW - d * DAY - timedelta(hours=1)).strftime("%Y-%m-%d") for d in range(args.days)]
    t0 = time.perf_counter()
    first = ca.crl_der(NOW, period=periods[0])
    first_s = time.perf_counter() - t0
    sizes = [len(first)]
    times = []
    for period in periods[1:]:
        t0 = time.perf_counter()
        sizes.append(len(ca.crl_der(NOW, period=period)))
        times.append(time.perf_counter() - t0)
    each_s = sum(times) / len(times) if times else first_s
    t0 = time.perf_counter()
    try:
        full_bytes = len(ca.crl_der(NOW))
        full_note = f"{full_bytes / MAX_CRL_BYTES:.0%} of notation's 32 MiB limit"
    except HoldCAError as exc:  # a CRL over notation's limit is refused: report it
        found = re.search(r"is (\d+) bytes", str(exc))  # build_crl names the size it refused
        full_bytes = int(found[1]) if found else 0
        full_note = f"refused: {type(exc).__name__}: {str(exc)[:80]}"
    full_s = time.perf_counter() - t0
    largest = max(sizes)
    n, d = args.revocations, args.days
    rows = [
        Row(BENCH, "P-256 sign (cryptography, 600 B)", prims.p256_sign),
        Row(BENCH, f"fill: {n:,} revoked records over {d} days (not timed as a row)", fill_s, "s"),
        Row(
            BENCH,
            f"largest partition CRL a verifier downloads ({n // d:,} entries)",
            largest,
            "bytes",
            ratio=largest / full_bytes if full_bytes else None,
            reference="the full CRL" if full_bytes else "",
            note=f"{largest / MAX_CRL_BYTES:.1%} of 32 MiB",
        ),
        Row(BENCH, f"full CRL of the CA ({n:,} entries)", full_bytes, "bytes", note=full_note),
        Row(
            BENCH,
            "build: full CRL",
            full_s,
            "s",
            ratio=full_s / sign_s,
            reference="P-256 signs",
        ),
        Row(
            BENCH,
            "build: first partition CRL after a revocation (reads the ledger)",
            first_s,
            "s",
            ratio=first_s / sign_s,
            reference="P-256 signs",
        ),
        Row(
            BENCH,
            "build: each further partition CRL (ledger read shared)",
            each_s,
            "s",
            ratio=each_s / sign_s,
            reference="P-256 signs",
            note=f"mean of {len(times)}",
        ),
    ]
    emit(rows, as_json=args.json, title="Partitioned CRLs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
