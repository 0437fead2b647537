"""Benchmark: cosigns with the transparency log vs without it, as paired-burst ratios.

holdca issue 15: every issuance is published to the log (tiles, entry bundle, a signed
checkpoint, fsyncs) and gets its inclusion proof before the cosign returns; batching the
publication must keep the throughput close to the hold without a log. Each row pairs
bursts (about 0.2 s each, the order flipped every pair, ``_harness.paired``) of the same
workload on two holds that differ only in ``transparency=IssuanceLog(...)``; the ratio is
the median of the per-pair ratios *with / without* (1.0 = the log costs nothing), the note
gives their 10th-90th percentiles, the average number of cosigns that shared one
checkpoint signature (counted on the log's signer) and the fsync time of the disk.

Workloads (the requests of ``bench_cosign.py``: no proof hint, fresh resolution, an
in-process FrozenNetwork), each on a MemoryLedger and on an SQLite ledger (WAL,
``synchronous=FULL``) in a temporary directory, the log in the same directory:

* ``cosign`` from 8 threads (the ledger's group commit and the log's group publication);
* ``cosign_many`` batches of 32 (one ledger commit and one publication per batch).

The process is pinned to one core, as the single-process rows of ``bench_cosign.py``.
Wall time throughout (the fsyncs are waits, not CPU). Nothing here asserts a speed.

Usage: ``python benchmarks/bench_tlog.py [--seconds 1.0] [--records 10000] [--json]``
(about a minute at ``--seconds 1``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Row, burst, emit, environment, paired, pin_one_core
from bench_cosign import (
    BATCH,
    BURST,
    THREADS,
    HoldCA,
    Workload,
    batch_fn,
    build_workload,
    fsync_us,
    open_ca,
    threaded_rate,
)

from holdca.hold import MemoryLedger, SQLiteLedger
from holdca.hold.ledger import IssuanceLedger
from holdca.hold.translog import IssuanceLog
from holdca.keys import MemoryEd25519Signer, MemoryKeyStore
from holdca.tlog import Ed25519NoteSigner

BENCH = "tlog"
PAIRS = 12
"""Pairs of alternating bursts per row at ``--seconds 1`` (scaled with it, at least 6)."""
ORIGIN = "hold.bench.example.com/log"


class CountingSigner:
    """An :class:`Ed25519NoteSigner` that counts its signatures (one per checkpoint)."""

    def __init__(self) -> None:
        """A fresh in-memory log key."""
        self.inner = Ed25519NoteSigner(ORIGIN, MemoryEd25519Signer.generate())
        self.calls = 0

    @property
    def name(self) -> str:
        """The key name (the log's origin)."""
        return self.inner.name

    @property
    def key_id(self) -> bytes:
        """The note key id."""
        return self.inner.key_id

    def verifier(self) -> Any:
        """The verifier of the key."""
        return self.inner.verifier()

    def sign(self, text: bytes) -> bytes:
        """Sign ``text`` and count it."""
        self.calls += 1
        return self.inner.sign(text)


def threaded_burst(ca: HoldCA, work: Workload) -> Callable[[], float]:
    """A burst of :data:`THREADS` threads calling ``HoldCA.cosign`` (returns its rate)."""
    return lambda: threaded_rate(ca, work.requests, THREADS, BURST)


def pair_of_holds(
    work: Workload, ledger: Callable[[str], IssuanceLedger], tmp: Path, tag: str
) -> tuple[HoldCA, HoldCA, CountingSigner]:
    """Two holds on their own ledgers: with a log in ``tmp/<tag>-log``, and without."""
    signer = CountingSigner()
    logged = open_ca(MemoryKeyStore(), ledger(f"{tag}-log"), work.network)
    logged.transparency = IssuanceLog(tmp / f"{tag}-log", signer)  # type: ignore[arg-type]
    plain = open_ca(MemoryKeyStore(), ledger(f"{tag}-plain"), work.network)
    return logged, plain, signer


def rows_for(
    work: Workload, ledger: Callable[[str], IssuanceLedger], tmp: Path, label: str, pairs: int
) -> list[Row]:
    """The threaded and the cosign_many rows of one ledger kind."""
    rows: list[Row] = []
    tag = label.split(maxsplit=1)[0].lower()
    workloads: list[tuple[str, Callable[[HoldCA], Callable[[], float]]]] = [
        (
            f"cosign, {THREADS} threads",
            lambda ca: threaded_burst(ca, work),
        ),
        (
            f"cosign_many batches of {BATCH}",
            lambda ca: burst(batch_fn(ca, work.requests), BURST, per_call=BATCH),
        ),
    ]
    for i, (name, make) in enumerate(workloads):
        logged, plain, signer = pair_of_holds(work, ledger, tmp, f"{tag}{i}")
        with_log, without = make(logged), make(plain)  # calibrates (and publishes) first
        before = (logged.ledger.log_size(), signer.calls)
        result = paired(with_log, without, pairs)
        cosigns = logged.ledger.log_size() - before[0]
        per_checkpoint = cosigns / max(signer.calls - before[1], 1)
        note = (
            f"{result.spread()}; {per_checkpoint:.1f} cosigns per checkpoint signature; "
            f"without the log {result.reference:,.0f}/s"
        )
        rows.append(
            Row(
                BENCH,
                f"{name}, {label}, with the log",
                result.value,
                "ops/s",
                result.ratio,
                "without the log (paired bursts)",
                note,
            )
        )
        for ca in (logged, plain):
            ca.ledger.close()
    return rows


def main() -> int:
    """Run the benchmark and print its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--json", action="store_true", help="JSON lines for run_all.py")
    args = parser.parse_args()
    logging.getLogger("holdca").setLevel(logging.WARNING)  # audit events: formatted, dropped
    pairs = max(6, round(PAIRS * args.seconds))
    t0 = time.perf_counter()
    work = build_workload(args.records)
    build_s = time.perf_counter() - t0
    pin_one_core()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="holdca-bench-tlog-") as tmpdir:
        tmp = Path(tmpdir)
        sync = fsync_us(tmp, min(args.seconds, 0.5))
        rows += rows_for(work, lambda _: MemoryLedger(), tmp, "MemoryLedger", pairs)
        rows += rows_for(
            work, lambda tag: SQLiteLedger(tmp / f"{tag}.sqlite3"), tmp, "SQLite ledger", pairs
        )
    rows.append(Row(BENCH, "4 KiB write + fsync on the log's disk", sync, "µs"))
    if not args.json:
        print(f"{environment()}; repo of {args.records} records built in {build_s:.1f} s\n")
    emit(rows, as_json=args.json, title="cosign with the transparency log vs without")
    return 0


if __name__ == "__main__":
    sys.exit(main())
