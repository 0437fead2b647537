"""Benchmark: 2 ``holdca serve`` replicas sharing one ledger vs 1 replica (server path).

What runs (all on this machine, nothing pinned: the OS spreads it over the CPUs):

* **the replicas**: two ``python -m holdca serve`` processes per ledger kind, started from
  one ``holdca init --home`` directory (one CA key and certificate), with service auth,
  ``HOLD_REUSE_IDENTITIES=true``, no rate limit and the audit trail to a file;
* **the ledgers**: a throwaway PostgreSQL (:mod:`holdca.testing.postgres`: initdb in a
  temporary directory, a unix socket, ``fsync=off``) shared by the PostgreSQL pair, and
  one SQLite file shared by the SQLite pair;
* **the PDS and PLC stand-in** (:mod:`holdca.testing.fleet`, a forked process) serving
  one did:plc repo of ``--records`` records, from prebuilt bytes;
* **the clients**: this process, asyncio loops on bench_server's minimal keep-alive HTTP/1.1
  client, each request with a fresh service-auth token minted before the burst.

Each figure alternates bursts (``HTTP_BURST`` s each, the order flipped every pair, the
requests in flight at a burst's end completed uncounted): *1 replica* (every client on
replica A, replica B idle) and *2 replicas* (the same number of clients, half on each);
the ratio is the median of the per-pair ratios 2/1 (p10..p90 in the note). The note also
says where the CPU went during the 2-replica bursts (CPU ms per request of the replicas,
PostgreSQL, the stand-in and the clients, and the CPU seconds per second of all of them
against the CPUs there are): with everything on 2 cores the ratio is bounded by the CPU
the replicas' neighbours need. The 1-replica rows carry the ratio to the cosign limit
(``_harness.measure_primitives``, timed at the start of the run).

Usage: ``python benchmarks/bench_replicas.py [--seconds 1.0] [--json] [--no-sqlite]``
(about 2 minutes). Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Row, emit, environment, measure_primitives, quantile
from bench_server import Connection

from holdca.server import COSIGN_NSID
from holdca.testing.atproto import TestRepo
from holdca.testing.fleet import (
    ServeProcess,
    Site,
    StandIn,
    hold_env,
    listen,
    run_cli,
    site_of,
)
from holdca.testing.plc import plc_repo
from holdca.testing.postgres import PostgresServer

__all__ = ["main"]

BENCH = "replicas"
HOLD_DID = "did:web:hold.replicas.example.com"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CLIENTS = (8, 32)
HTTP_BURST = 0.5
PAIRS = 8
"""Pairs of bursts per figure at ``--seconds 1`` (scaled with it, at least 4)."""
PG_PORT = 55790


@dataclass
class Clients:
    """The repo, request bodies cycling over its records, and tokens minted ahead."""

    repo: TestRepo
    bodies: list[bytes]
    tokens: list[str]
    sent: int = 0

    def mint(self, count: int) -> None:
        """Make sure ``count`` unused tokens are ready (outside the timed bursts)."""
        for _ in range(count - len(self.tokens)):
            self.tokens.append(
                self.repo.service_token(HOLD_DID, COSIGN_NSID, lifetime=timedelta(minutes=4))
            )

    def body(self) -> bytes:
        """The next request body."""
        self.sent += 1
        return self.bodies[self.sent % len(self.bodies)]


def build(url: str, records: int) -> tuple[Clients, Site]:
    """A did:plc repo with ``records`` manifests naming the hold; 200 of them requested."""
    repo, plc = plc_repo(pds_endpoint=url)
    digests = [f"sha256:{i:064x}" for i in range(records)]
    uris = repo.put_manifests(digests, repository="bench/replicas", hold_did=HOLD_DID)
    step = max(1, records // 200)
    chosen = list(range(0, records, step))[:200]
    bodies = [
        json.dumps(
            {
                "userDid": repo.did,
                "recordUri": uris[i],
                "manifest": {"mediaType": MANIFEST, "digest": digests[i], "size": 1234},
            }
        ).encode()
        for i in chosen
    ]
    return Clients(repo, bodies, []), site_of(repo, plc, [uris[i] for i in chosen])


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Burst:
    """One burst: requests/s in the window, latencies, CPU seconds of each part."""

    rate: float
    latencies: list[float]
    cpu: dict[str, float]
    wall: float


async def http_burst(
    pools: Sequence[list[Connection]],
    clients: Clients,
    meters: dict[str, Callable[[], float]],
    seconds: float,
) -> Burst:
    """Every connection of ``pools`` in its own request loop for ``seconds``."""
    latencies: list[float] = []
    done = 0
    before = {name: meter() for name, meter in meters.items()}
    t0 = time.perf_counter()
    deadline = t0 + seconds
    path = f"/xrpc/{COSIGN_NSID}"

    async def loop(connection: Connection) -> None:
        nonlocal done
        while (start := time.perf_counter()) < deadline:
            headers = {
                "Authorization": f"Bearer {clients.tokens.pop()}",
                "Content-Type": "application/json",
            }
            status, body = await connection.request("POST", path, clients.body(), headers)
            end = time.perf_counter()
            if status != 200:
                raise RuntimeError(f"cosign answered {status}: {body[:300]!r}")
            latencies.append(end - start)
            if end <= deadline:
                done += 1

    await asyncio.gather(*(loop(c) for pool in pools for c in pool))
    wall = time.perf_counter() - t0
    cpu = {name: meter() - before[name] for name, meter in meters.items()}
    return Burst(done / seconds, latencies, cpu, wall)


@dataclass
class Figure:
    """The paired outcome of one ledger kind at one client count."""

    one: float
    two: float
    ratio: float
    p10: float
    p90: float
    pairs: int
    p50_ms: tuple[float, float]
    cpu_ms: dict[str, float]  # CPU ms per request of each part, 2-replica bursts
    busy: float  # CPU seconds per second of all parts, 2-replica bursts


async def measure(
    replicas: Sequence[ServeProcess],
    clients: Clients,
    meters: dict[str, Callable[[], float]],
    count: int,
    pairs: int,
) -> Figure:
    """Alternate 1-replica and 2-replica bursts of ``count`` clients, ``pairs`` times."""
    a, b = replicas
    one = [[Connection(a.port) for _ in range(count)]]
    two = [[Connection(a.port) for _ in range(count // 2)],
           [Connection(b.port) for _ in range(count - count // 2)]]  # fmt: skip
    expected = 400.0
    ratios, ones, twos, lat1, lat2 = [], [], [], [], []
    cpu: dict[str, float] = {name: 0.0 for name in meters}
    wall = served = 0.0
    for i in range(pairs + 1):  # the first pair warms the connections up (dropped)
        clients.mint(int(expected * HTTP_BURST * 2.5) + 4 * count + 50)
        if i % 2 == 0:
            first = await http_burst(one, clients, meters, HTTP_BURST)
            clients.mint(int(expected * HTTP_BURST * 2.5) + 4 * count + 50)
            second = await http_burst(two, clients, meters, HTTP_BURST)
        else:
            second = await http_burst(two, clients, meters, HTTP_BURST)
            clients.mint(int(expected * HTTP_BURST * 2.5) + 4 * count + 50)
            first = await http_burst(one, clients, meters, HTTP_BURST)
        expected = max(expected, first.rate, second.rate)
        if i == 0:
            continue
        ratios.append(second.rate / first.rate)
        ones.append(first.rate)
        twos.append(second.rate)
        lat1 += first.latencies
        lat2 += second.latencies
        for name, used in second.cpu.items():
            cpu[name] += used
        wall += second.wall
        served += len(second.latencies)
    for pool in (*one, *two):
        for connection in pool:
            connection.close()
    return Figure(
        one=statistics.median(ones),
        two=statistics.median(twos),
        ratio=statistics.median(ratios),
        p10=quantile(ratios, 0.1),
        p90=quantile(ratios, 0.9),
        pairs=pairs,
        p50_ms=(1e3 * quantile(lat1, 0.5), 1e3 * quantile(lat2, 0.5)),
        cpu_ms={name: 1e3 * used / max(served, 1) for name, used in cpu.items()},
        busy=sum(cpu.values()) / max(wall, 1e-9),
    )


def rows_of(label: str, count: int, fig: Figure, limit: float) -> list[Row]:
    """The two rows of one figure."""
    cpus = os.cpu_count() or 1
    parts = ", ".join(f"{name} {ms:.2f}" for name, ms in fig.cpu_ms.items())
    return [
        Row(BENCH, f"POST coSignManifest, 1 replica, {label}, {count} clients", fig.one,
            "req/s", fig.one / limit, "limit = 1/(verify + keygen + 2 sign), this run",
            f"p50 {fig.p50_ms[0]:.1f} ms; replica B idle"),
        Row(BENCH, f"POST coSignManifest, 2 replicas sharing one {label}, {count} clients",
            fig.two, "req/s", fig.ratio, f"1 replica, {label} (paired bursts)",
            f"p50 {fig.p50_ms[1]:.1f} ms; CPU ms per request: {parts}; all of it "
            f"{fig.busy:.2f} CPU-s/s of {cpus} CPUs; median of {fig.pairs} pairs; per-pair "
            f"ratio p10..p90 {fig.p10:.2f}..{fig.p90:.2f}"),
    ]  # fmt: skip


def replicas_cpu(replicas: Sequence[ServeProcess]) -> Callable[[], float]:
    """A meter: the CPU seconds of ``replicas`` together."""
    return lambda: sum(p.cpu_seconds() for p in replicas)


def start_pair(home: Path, env: dict[str, str]) -> list[ServeProcess]:
    """``holdca init`` in ``home``, then two ``holdca serve`` replicas of it."""
    run_cli(home, env, "init", "--did", HOLD_DID, "--country", "US", "--state", "CA",
            "--org", "Bench Replicas")  # fmt: skip
    return [ServeProcess(home, env), ServeProcess(home, env)]


def main() -> int:
    """Run the benchmark and print its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--json", action="store_true", help="JSON lines for run_all.py")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL rows only")
    args = parser.parse_args()
    logging.getLogger("holdca").setLevel(logging.WARNING)
    pairs = max(4, round(PAIRS * args.seconds))
    limit = measure_primitives(0.3 * args.seconds).limit
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="holdca-bench-replicas-") as tmpdir:
        tmp = Path(tmpdir)
        sock = listen()
        clients, site = build(f"http://127.0.0.1:{sock.getsockname()[1]}", args.records)
        stand_in = StandIn(sock, [site])
        server = PostgresServer(port=PG_PORT)
        fleets: list[tuple[str, list[ServeProcess], Callable[[], float] | None]] = []
        try:
            common = {"HOLD_RATE_LIMIT_PER_HOUR": "0", "HOLD_REUSE_IDENTITIES": "true",
                      "HOLD_IDENTITY_TTL": "3600"}  # fmt: skip
            kinds = [("PostgreSQL", {"HOLD_LEDGER_URL": server.fresh_schema()})]
            if not args.no_sqlite:
                kinds.append(("SQLite file", {}))
            for label, extra in kinds:
                home = tmp / label.split()[0].lower()
                env = hold_env(stand_in, HOLD_AUDIT_LOG=str(home / "audit.jsonl"),
                               **common, **extra)  # fmt: skip
                db = server.cpu_seconds if "HOLD_LEDGER_URL" in extra else None
                fleets.append((label, start_pair(home, env), db))
            for label, replicas, db in fleets:
                meters: dict[str, Callable[[], float]] = {
                    "replicas": replicas_cpu(replicas),
                    "stand-in": lambda: proc_cpu(stand_in.process.pid or 0),
                    "clients": time.process_time,
                }
                if db is not None:
                    meters["PostgreSQL"] = db
                for count in CLIENTS:
                    fig = asyncio.run(measure(replicas, clients, meters, count, pairs))
                    rows += rows_of(label, count, fig, limit)
        finally:
            for _, replicas, _ in fleets:
                for replica in replicas:
                    replica.stop()
            server.stop()
            stand_in.stop()
    if not args.json:
        print(f"{environment()}\n")
    emit(rows, as_json=args.json, title="replicas: 2 vs 1 on one ledger (server path)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
