"""Benchmark: HoldCA.cosign end to end, as a ratio to the cosign limit timed in the same run.

One cosign = the trust gate (the hold resolves the DID through its resolver and fetches the
getRecord proof itself: CAR hashes, K-256 commit signature, MST inclusion, record digest,
``holdDid`` and descriptor binding) + ephemeral P-256 key + leaf issuance + Notation JWS
envelope + OCI signature manifest + ledger commit (SQLite, WAL, ``synchronous=FULL``) +
audit event. The repo has 10k records (holdca.testing.atproto), all naming the hold.

The resolver is in process: a :class:`FrozenNetwork` (a ``TestNetwork`` whose repo renders
its DID document and builds each getRecord CAR once, so that a "fetch" is a dict lookup
and a fresh resolution parses the document: holdca's work, not the test helper's). Unless
a row says otherwise, requests carry **no proof hint** (the realistic server path: the hold
fetches the proof) and the hold resolves the DID anew for every issuance (the default,
``reuse_identities=False``). Rows with a hint, with cached identities and with a plain
``TestNetwork`` say so; ``bench_server.py`` has the HTTP resolver and the server.

How the cosign rows are measured: **paired bursts**. Each row alternates a burst of
cosigns (about 0.2 s) with a burst of the limit's curve math (``_harness.limit_cycle``:
one K-256 verify, one P-256 keygen and two P-256 signs per call, whose rate *is* the
limit), 16 pairs (at ``--seconds 1``), the order flipped every pair; the ratio is the
median of the 16 per-pair ratios, and the note gives their 10th and 90th percentiles.
Rows marked CPU time use ``time.process_time`` for both halves, the others wall time
(the ledger's syncs are waits, not CPU). A slow moment of the machine then hits both
halves of a pair alike; before this, one run of each row against primitives timed before
and after (``--headline-only --unpaired`` still does that) moved the same row by 30% and
more between runs.

Rows (single process, pinned to one core):

* the primitives and the limit = 1 / (K-256 verify + P-256 keygen + 2 P-256 signs); each
  primitive is timed before and after the single-process rows and its faster rate kept
  (the primitive rows, the floor and the ceiling use them);
* ``verify_record_proof`` alone; ``verify_audit_log`` of a 1-operation did:plc log, what
  ``HTTPResolver`` verifies on each fresh resolution (not in the in-process rows);
* the floor and the ceiling: the proof's C calls alone (sha256 of every CAR block and
  visited MST key, the strict decoder on every visited block, run through ``map`` over
  prebuilt lists), the ceiling 1 / (the limit's primitives + those calls), the time the
  0.5 goal leaves for everything else and the time a cosign spends on it; the SoftHSM
  sign through holdca's signer and the ceiling with it;
* cosign with the CA key in memory, in a PEM file and on SoftHSM. The ledger commit is
  durable (SQLite, ``synchronous=FULL``), which costs one WAL sync per transaction, more
  than a whole cosign at the limit. So the headline rows use ``HoldCA.cosign_many`` with
  batches of 32 requests (one commit per batch; nothing is handed out before its commit);
  the rows with one commit per cosign, with 8 threads calling ``HoldCA.cosign`` (the
  ledger's group commit) and with a MemoryLedger (CPU alone) are there for comparison;
* stages: the time spent in each step inside real cosigns (the trust gate with its
  resolve, fetch and proof verification; key, leaf, envelope, manifest, ledger, audit);
* scaling: cosigns/s of 1 and 2 worker processes sharing one PEM CA key, each pinned to
  its own core and doing batches of 32, with a MemoryLedger each (CPU scaling alone), an
  SQLite ledger file each, and one SQLite ledger file for both (lock and fsync
  contention); median of 5 interleaved runs each.

Usage: ``python benchmarks/bench_cosign.py [--seconds 1.0] [--records 10000] [--json]
[--no-scaling] [--headline-only [--unpaired]]`` (about three minutes; ``--headline-only``:
the MemoryLedger and SQLite batch rows alone, about 30 s). Goals (issue 7): in memory >=
0.5 of the limit, SoftHSM >= 0.3, 2 workers >= 1.8x one. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import logging
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    Paired,
    Primitives,
    Row,
    burst,
    emit,
    environment,
    limit_cycle,
    measure_primitives,
    paired,
    pin_one_core,
    primitive_rows,
    rate,
)

from holdca.atproto.diddoc import DIDDocument
from holdca.atproto.identity import Identity
from holdca.atproto.verify import verify_record_proof
from holdca.hold import CosignRequest, HoldCA, MemoryLedger, SQLiteLedger
from holdca.hold.ledger import IssuanceLedger
from holdca.keys import KeyStore, MemoryKeyStore
from holdca.keys.pem import PEMKeyStore
from holdca.notation import Descriptor
from holdca.pki import SubjectInfo
from holdca.testing.atproto import TestRepo
from holdca.testing.network import TestNetwork

BENCH = "cosign"
BATCH = 32
"""Requests per HoldCA.cosign_many call (one ledger commit each) in the batched rows."""
THREADS = 8
PAIRS = 16
"""Pairs of alternating bursts per cosign row at ``--seconds 1`` (scaled with it, at least 6)."""
BURST = 0.2
"""Seconds per burst: short enough that both halves of a pair see the same machine."""
SCALING_RUNS = 5
"""Interleaved 1- and 2-worker runs per scaling figure (the medians are reported)."""
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
HOLD_DID = "did:web:hold.bench.example.com"
SUBJECT = SubjectInfo("US", "CA", "Bench Hold")
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)


class FrozenNetwork(TestNetwork):
    """A :class:`TestNetwork` over repos that do not change during the run.

    A plain TestNetwork makes the repo render its DID document on every fresh resolution
    (about 100 µs of test-helper JSON and base58) and build the getRecord CAR on every
    fetch (MST walk and CAR framing, about as much): work a real hold never does, since
    its PDS and PLC directory do it. Here both are built once per DID and record, so a
    fetch is a dict lookup, while each fresh resolution still parses the document into an
    :class:`Identity` (holdca's part of it). The rows say which network they use.
    """

    __test__ = False

    def __init__(self, repos: list[TestRepo]) -> None:
        """Serve ``repos`` (their documents rendered now)."""
        super().__init__(repos)
        self._docs = {r.did: r.did_document() for r in repos}
        self._cars: dict[tuple[str, str, str], bytes] = {}

    def resolve(self, did: str, *, fresh: bool = False) -> Identity:
        """A fresh resolution parses the document rendered once; otherwise the cache."""
        doc = self._docs.get(did)
        if not fresh or doc is None:
            return super().resolve(did, fresh=fresh)
        return Identity.from_document(doc, did, source="test")

    def get_record(self, identity: Identity, collection: str, rkey: str) -> bytes:
        """The getRecord CAR, built on the first fetch of each record."""
        key = (identity.did, collection, rkey)
        car = self._cars.get(key)
        if car is None:
            car = self._cars[key] = super().get_record(identity, collection, rkey)
        return car


@dataclass(frozen=True)
class Workload:
    """The repo, the network serving it, and the requests every cosign row cycles through.

    Attributes:
        network: the in-process resolver the holds use (a :class:`FrozenNetwork`).
        plain: a plain :class:`TestNetwork` over the same repo (for one comparison row).
        requests: requests without a proof hint: the hold fetches the proof through the
            resolver (in process: TestRepo builds the getRecord CAR on each fetch).
        hinted: the same requests with ``proof_hint`` = the getRecord CAR at the current
            commit (the gate verifies it and asks only for the latest commit).
        cars: the getRecord CAR of each request (for the proof-only rows).
        document: the repo's parsed DID document (for ``verify_record_proof`` alone).
    """

    network: TestNetwork
    plain: TestNetwork
    requests: list[CosignRequest]
    hinted: list[CosignRequest]
    cars: list[bytes]
    document: DIDDocument


def build_workload(records: int, picks: int = 200) -> Workload:
    """A ``records``-record repo and ``picks`` cosign requests for records spread over it."""
    repo = TestRepo.create("plc", "k256", now=NOW)
    digests = [f"sha256:{i:064x}" for i in range(records)]
    uris = repo.put_manifests(digests, repository="bench/app", hold_did=HOLD_DID)
    step = max(1, records // picks)
    chosen = list(range(0, records, step))[:picks]
    requests = [
        CosignRequest(
            did=repo.did,
            descriptor=Descriptor(MANIFEST, digests[i], 1234),
            record_uri=uris[i],
            caller=repo.did,
        )
        for i in chosen
    ]
    cars = [repo.get_record_car(r.record_uri) for r in requests]
    hinted = [replace(r, proof_hint=car) for r, car in zip(requests, cars, strict=True)]
    document = Identity.from_document(repo.did_document(), repo.did, source="test").document
    return Workload(FrozenNetwork([repo]), TestNetwork([repo]), requests, hinted, cars, document)


def in_situ(
    ca: HoldCA, requests: list[CosignRequest], n: int, clock: Callable[[], float]
) -> tuple[float, list[tuple[str, float]]]:
    """Time spent in each step *inside* real cosigns: (µs per cosign, [(step, µs)]).

    The functions HoldCA.cosign calls are wrapped (in this process only, restored after)
    with ``clock`` accumulators; nested steps are indented. ``clock`` is
    :func:`time.process_time` for CPU time, or :func:`time.perf_counter` to include the
    ledger's fsync waits.
    """
    import holdca.hold.gate as gate_mod  # noqa: PLC0415
    import holdca.hold.service as svc  # noqa: PLC0415
    import holdca.notation.envelope as envelope_mod  # noqa: PLC0415
    from holdca.keys import MemorySigner  # noqa: PLC0415
    from holdca.pki import LeafTemplate  # noqa: PLC0415

    spent: dict[str, float] = {}
    undo: list[Callable[[], None]] = []

    def wrap(owner: Any, attr: str, label: str, *, method: bool = False) -> None:
        original = owner.__dict__[attr] if method else getattr(owner, attr)
        spent[label] = 0.0

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] += clock() - t0

        if method:  # a plain method, replaced on its class
            setattr(owner, attr, timed)
            undo.append(lambda: setattr(owner, attr, original))
        elif isinstance(owner, type):  # a classmethod: put the descriptor back afterwards
            descriptor = owner.__dict__[attr]
            setattr(owner, attr, staticmethod(timed))
            undo.append(lambda: setattr(owner, attr, descriptor))
        elif isinstance(owner, types.ModuleType):
            setattr(owner, attr, timed)
            undo.append(lambda: setattr(owner, attr, original))
        else:  # an instance: the wrapper shadows the method until deleted
            setattr(owner, attr, timed)
            undo.append(lambda: delattr(owner, attr))

    assert ca.gate is not None
    resolver = ca.gate.resolver
    wrap(ca.gate, "verify", "trust gate (TrustGate.verify)")
    wrap(resolver, "resolve", "  of which resolve (fresh: parse the DID document)")
    wrap(resolver, "get_record", "  of which get_record (the CAR, prebuilt)")
    wrap(resolver, "get_latest_commit", "  of which get_latest_commit")
    wrap(gate_mod, "verify_record_proof", "  of which verify_record_proof (CAR, commit sig, MST)")
    wrap(MemorySigner, "generate", "ephemeral P-256 key")
    wrap(LeafTemplate, "issue_der", "leaf (LeafTemplate.issue_der + CA signature)", method=True)
    wrap(svc, "sign_envelope", "sign_envelope (JWS)")
    wrap(envelope_mod, "check_notation_profile", "  of which check_notation_profile(chain)")
    wrap(svc, "signature_manifest", "signature_manifest")
    wrap(ca.ledger, "record_issuance", f"ledger.record_issuance ({type(ca.ledger).__name__})")
    wrap(ca.audit, "issued", "audit event")
    cycle = itertools.cycle(requests)
    try:
        for _ in range(20):
            ca.cosign(next(cycle), now=NOW)
        for label in spent:
            spent[label] = 0.0
        t0 = clock()
        for _ in range(n):
            ca.cosign(next(cycle), now=NOW)
        total = clock() - t0
    finally:
        for restore in reversed(undo):
            restore()
    outer = sum(v for k, v in spent.items() if not k.startswith(" "))
    steps = [(k, 1e6 * v / n) for k, v in spent.items()]
    steps.append(("rest of HoldCA.cosign (policy, records, glue)", 1e6 * (total - outer) / n))
    return 1e6 * total / n, steps


def proof_floor(work: Workload, seconds: float) -> tuple[float, int, int]:
    """The C calls inside ``verify_record_proof`` with no Python around them.

    Returns (µs per proof, sha256 calls per proof, strict decodes per proof), averaged
    over ``requests``: sha256 of every CAR block (the CID check), the strict codec's
    decode (cbrrr) of the commit, of each MST node the walk visits and of the record,
    and sha256 of every key in those nodes (the height check). The blocks and keys are
    gathered beforehand; the timed calls run proof by proof through ``map`` over prebuilt
    lists (results dropped at once), so no Python bytecode runs per item. The K-256
    verify is not included (it is in the limit).
    """
    from collections import deque  # noqa: PLC0415
    from itertools import repeat  # noqa: PLC0415
    from operator import methodcaller  # noqa: PLC0415

    from cbrrr._cbrrr import decode_dag_cbor  # noqa: PLC0415

    from holdca.atproto.car import read_car_raw  # noqa: PLC0415
    from holdca.atproto.commit import commit_fields  # noqa: PLC0415
    from holdca.atproto.mst import lookup_raw  # noqa: PLC0415
    from holdca.atproto.syntax import mst_key, parse_record_uri  # noqa: PLC0415

    proofs: list[tuple[list[bytes], list[bytes], list[bytes]]] = []
    for r, car in zip(work.requests, work.cars, strict=True):
        roots, blocks = read_car_raw(car)
        visited: list[bytes] = []

        def get(
            raw: bytes, blocks: dict[bytes, bytes] = blocks, visited: list[bytes] = visited
        ) -> bytes | None:
            block = blocks.get(raw)
            if block is not None:
                visited.append(block)
            return block

        _, collection, rkey = parse_record_uri(r.record_uri)
        path = mst_key(collection, rkey)
        record = lookup_raw(get, commit_fields(blocks[roots[0]])[1].raw, path)
        assert record is not None
        keys: list[bytes] = []
        for node in visited:
            prev = b""
            for entry in decode_dag_cbor(node, bytearray, False)[0]["e"]:
                prev = prev[: entry["p"]] + entry["k"]
                keys.append(prev)
        proofs.append((list(blocks.values()), [blocks[roots[0]], *visited, blocks[record]], keys))
    digest = methodcaller("digest")
    drain = deque[object](maxlen=0).extend  # consume an iterator, keeping nothing
    no_links, strict = repeat(bytearray), repeat(False)

    def c_calls() -> None:
        for hashed, decoded, keys in proofs:  # one proof at a time, as a cosign does
            drain(map(digest, map(hashlib.sha256, hashed)))
            drain(map(decode_dag_cbor, decoded, no_links, strict))
            drain(map(digest, map(hashlib.sha256, keys)))

    n = len(proofs)
    per_proof = 1e6 / rate(c_calls, seconds) / n
    hashes = sum(len(h) + len(k) for h, _, k in proofs)
    decodes = sum(len(d) for _, d, _ in proofs)
    return per_proof, round(hashes / n), round(decodes / n)


def fsync_us(directory: Path, seconds: float) -> float:
    """Wall µs of one 4 KiB write + fsync to a file in ``directory`` (the ledger's disk)."""
    fd = os.open(directory / "fsync-probe", os.O_WRONLY | os.O_CREAT, 0o600)
    block = b"\0" * 4096

    def one() -> None:
        os.pwrite(fd, block, 0)
        os.fsync(fd)

    try:
        return 1e6 / rate(one, seconds)
    finally:
        os.close(fd)


def open_ca(
    store: KeyStore, ledger: IssuanceLedger, network: TestNetwork, *, reuse: bool = False
) -> HoldCA:
    """A HoldCA on ``store`` (creating the root key if absent), ``ledger`` and ``network``.

    ``reuse``: ``reuse_identities=True`` (the resolver's cached identity instead of a fresh
    resolution per issuance, the default).
    """
    return HoldCA.open(
        store,
        ledger,
        hold_did=HOLD_DID,
        subject=SUBJECT,
        now=NOW,
        create=True,
        resolver=network,
        reuse_identities=reuse,
    )


def cosign_fn(ca: HoldCA, requests: list[CosignRequest]) -> Callable[[], Any]:
    """A no-argument function doing one cosign (cycling through ``requests``)."""
    cycle = itertools.cycle(requests)

    def one() -> Any:
        return ca.cosign(next(cycle), now=NOW)

    return one


def batch_fn(ca: HoldCA, requests: list[CosignRequest], size: int = BATCH) -> Callable[[], Any]:
    """A no-argument function doing ``size`` cosigns with one ledger commit (cosign_many)."""
    cycle = itertools.cycle(requests)

    def many() -> Any:
        results = ca.cosign_many([next(cycle) for _ in range(size)], now=NOW)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            raise failed[0]
        return results

    return many


def threaded_rate(ca: HoldCA, requests: list[CosignRequest], threads: int, seconds: float) -> float:
    """Cosigns/s of ``threads`` threads calling HoldCA.cosign (the ledger's group commit)."""
    counts = [0] * threads
    go = threading.Barrier(threads + 1)
    stop = [0.0]

    def work(i: int) -> None:
        fn = cosign_fn(ca, requests[i::threads])
        go.wait()
        n = 0
        while time.perf_counter() < stop[0]:
            fn()
            n += 1
        counts[i] = n

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    t0 = time.perf_counter()
    stop[0] = t0 + seconds
    go.wait()
    for t in pool:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


# --- scaling: worker processes -------------------------------------------------------------


def _worker(
    cpu: int | None,
    key_dir: str,
    ledger_path: str,
    work: Workload,
    seconds: float,
    start: Any,
    out: Any,
) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    ledger: IssuanceLedger = SQLiteLedger(ledger_path) if ledger_path else MemoryLedger()
    ca = open_ca(PEMKeyStore(key_dir), ledger, work.network)
    fn = batch_fn(ca, work.requests)
    fn()  # warm up
    start.wait()
    count = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        fn()
        count += BATCH
        now = time.perf_counter()
        if now >= deadline:
            break
    out.put((count, t0, now))


def scaling(workers: int, work: Workload, seconds: float, tmp: Path, *, ledger: str) -> float:
    """Total cosigns/s of ``workers`` processes sharing one PEM CA key.

    ``ledger``: ``memory`` (a MemoryLedger each: CPU scaling alone), ``own`` (an SQLite
    file each) or ``shared`` (one SQLite file for all: lock and fsync contention too).
    """
    shared = ledger == "shared"
    ctx = mp.get_context("fork")  # the workload (and its network) is inherited, not pickled
    key_dir = tmp / "keys"
    if not key_dir.exists():
        open_ca(PEMKeyStore(key_dir), MemoryLedger(), work.network)
    run = tmp / f"run-{workers}-{'shared' if shared else 'own'}-{time.monotonic_ns()}"
    run.mkdir()
    ledgers = [
        "" if ledger == "memory" else str(run / ("ledger.sqlite3" if shared else f"l{n}.sqlite3"))
        for n in range(workers)
    ]
    if ledgers[0]:
        open_ca(PEMKeyStore(key_dir), SQLiteLedger(ledgers[0]), work.network).ledger.close()
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    start = ctx.Barrier(workers)
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker,
            args=(
                cpus[n % len(cpus)] if cpus else None,
                str(key_dir),
                ledgers[n],
                work,
                seconds,
                start,
                out,
            ),
        )
        for n in range(workers)
    ]
    for p in procs:
        p.start()
    results: list[tuple[int, float, float]] = [out.get(timeout=120 + seconds * 4) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    t0 = min(r[1] for r in results)
    t1 = max(r[2] for r in results)
    return sum(r[0] for r in results) / (t1 - t0)


# --- SoftHSM -------------------------------------------------------------------------------


def softhsm_store(tmp: Path) -> KeyStore | None:
    """A PKCS11KeyStore on a fresh SoftHSM token under ``tmp``, or None without SoftHSM."""
    module = os.environ.get("HOLDCA_SOFTHSM_MODULE") or next(
        (m for m in MODULES if Path(m).is_file()), None
    )
    util = shutil.which("softhsm2-util")
    if module is None or util is None:
        return None
    tokens = tmp / "tokens"
    tokens.mkdir(mode=0o700, parents=True)
    conf = tmp / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    pin = "135790"
    subprocess.run(
        [util, "--init-token", "--free", "--label", "bench", "--so-pin", "24680", "--pin", pin],
        check=True,
        capture_output=True,
    )
    from holdca.keys.pkcs11 import PKCS11KeyStore  # noqa: PLC0415

    return PKCS11KeyStore(module, "bench", pin)


def audit_log_fn() -> Callable[[], Any]:
    """One ``verify_audit_log`` of a 1-operation did:plc log: what a fresh resolution verifies.

    ``HTTPResolver.resolve(did, fresh=True)`` fetches ``{plc}/{did}/log/audit`` and verifies
    the signed operation chain; with ``reuse_identities=False`` (the default) a production
    hold does that for every issuance. The TestNetwork rows do not (they parse the repo's
    DID document instead), so this row says what the fresh resolution adds on the CPU.
    """
    from holdca.atproto.plc import verify_audit_log  # noqa: PLC0415
    from holdca.testing.plc import plc_repo  # noqa: PLC0415

    _, plc = plc_repo(now=NOW)
    log = plc.audit_log()
    return lambda: verify_audit_log(log, plc.did)


def main() -> int:
    """Run the benchmark and print its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--json", action="store_true", help="JSON lines for run_all.py")
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument(
        "--headline-only",
        action="store_true",
        help="only the MemoryLedger and SQLite batch rows (run_all repeats them)",
    )
    parser.add_argument(
        "--unpaired",
        action="store_true",
        help="with --headline-only: the old method (one rate() run of --seconds against "
        "primitives timed before and after), for comparison",
    )
    args = parser.parse_args()
    logging.getLogger("holdca").setLevel(logging.WARNING)  # audit events: formatted, dropped
    secs = args.seconds
    pairs = max(6, round(PAIRS * secs))

    t0 = time.perf_counter()
    work = build_workload(args.records)
    build_s = time.perf_counter() - t0
    cpu = pin_one_core()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="holdca-bench-cosign-") as tmpdir:
        tmp = Path(tmpdir)
        if args.headline_only:
            rows = headline(work, tmp, secs, pairs, unpaired=args.unpaired)
        else:
            rows = everything(work, tmp, secs, pairs, cpu, scale=not args.no_scaling)
    if not args.json:
        print(f"{environment()}; repo of {args.records} records built in {build_s:.1f} s\n")
    emit(rows, as_json=args.json, title="cosign end to end")
    return 0


def _paired_row(name: str, result: Paired, note: str, unit: str = "ops/s") -> Row:
    """A row whose ratio is the median of per-pair ratios to the limit (see paired)."""
    notes = "; ".join(n for n in (note, result.spread()) if n)
    return Row(BENCH, name, result.value, unit, result.ratio, "limit (paired bursts)", notes)


MEM_NAME = "cosign, CA key in memory, MemoryLedger"
SQL_NAME = f"cosign, CA key in memory, SQLite ledger, cosign_many batches of {BATCH}"
MEM_NOTE = "goal >= 0.5 (CPU only); no hint: fresh resolution + fetch (FrozenNetwork); CPU time"
SQL_NOTE = "goal >= 0.5; wall time; one commit per batch; no hint"


def headline(work: Workload, tmp: Path, secs: float, pairs: int, *, unpaired: bool) -> list[Row]:
    """The two headline rows alone (MemoryLedger; SQLite batches), paired or the old way."""
    mem = open_ca(MemoryKeyStore(), MemoryLedger(), work.network)
    sql = open_ca(MemoryKeyStore(), SQLiteLedger(tmp / "head.sqlite3"), work.network)
    if unpaired:
        first = measure_primitives(secs)
        mem_rate = rate(cosign_fn(mem, work.requests), secs)
        sql_rate = BATCH * rate(batch_fn(sql, work.requests), secs)
        again = measure_primitives(secs)
        limit = Primitives(
            max(first.k256_verify, again.k256_verify),
            max(first.p256_keygen, again.p256_keygen),
            max(first.p256_sign, again.p256_sign),
        ).limit
        return [
            Row(BENCH, MEM_NAME, mem_rate, ratio=mem_rate / limit, reference="limit",
                note="unpaired: one rate() run, wall time"),
            Row(BENCH, SQL_NAME, sql_rate, ratio=sql_rate / limit, reference="limit",
                note="unpaired: one rate() run, wall time"),
        ]  # fmt: skip
    cpu_ref = burst(limit_cycle(), BURST, time.process_time)
    wall_ref = burst(limit_cycle(), BURST)
    mem_p = paired(burst(cosign_fn(mem, work.requests), BURST, time.process_time), cpu_ref, pairs)
    sql_p = paired(burst(batch_fn(sql, work.requests), BURST, per_call=BATCH), wall_ref, pairs)
    return [_paired_row(MEM_NAME, mem_p, MEM_NOTE), _paired_row(SQL_NAME, sql_p, SQL_NOTE)]


def everything(
    work: Workload, tmp: Path, secs: float, pairs: int, cpu: int | None, *, scale: bool
) -> list[Row]:
    """Every row (see the module docstring)."""
    requests, hinted = work.requests, work.hinted
    rows: list[Row] = []
    first = measure_primitives(secs)
    cpu_ref = burst(limit_cycle(), BURST, time.process_time)
    wall_ref = burst(limit_cycle(), BURST)

    def cpu_row(name: str, fn: Callable[[], Any], note: str = "", per_call: int = 1) -> Paired:
        result = paired(burst(fn, BURST, time.process_time, per_call), cpu_ref, pairs)
        rows.append(_paired_row(name, result, "; ".join(n for n in (note, "CPU time") if n)))
        return result

    def wall_row(name: str, fn: Callable[[], Any], note: str = "", per_call: int = 1) -> Paired:
        result = paired(burst(fn, BURST, per_call=per_call), wall_ref, pairs)
        rows.append(_paired_row(name, result, "; ".join(n for n in (note, "wall time") if n)))
        return result

    cycle = itertools.cycle(list(zip(requests, work.cars, strict=True)))
    doc = work.document

    def verify_only() -> Any:
        r, car = next(cycle)
        return verify_record_proof(car, doc, r.record_uri, r.descriptor.digest, did=r.did)

    cpu_row("verify_record_proof alone (10k-record repo)", verify_only,
            f"CAR {len(work.cars[0])} B, parsed DID document")  # fmt: skip
    cpu_row("verify_audit_log, 1-operation did:plc log (what HTTPResolver verifies on a "
            "fresh resolution)", audit_log_fn(),
            "not in the TestNetwork cosign rows; a production hold with reuse_identities="
            "False adds it to every cosign")  # fmt: skip

    mem_mem = open_ca(MemoryKeyStore(), MemoryLedger(), work.network)
    mem = paired(burst(cosign_fn(mem_mem, requests), BURST, time.process_time), cpu_ref, pairs)
    rows.append(_paired_row(MEM_NAME, mem, MEM_NOTE))
    cpu_row("cosign, CA key in memory, MemoryLedger, proof hint at the current commit",
            cosign_fn(mem_mem, hinted),
            "fresh resolve; the hint is verified, then only getLatestCommit is asked")  # fmt: skip
    mem_reuse = open_ca(MemoryKeyStore(), MemoryLedger(), work.network, reuse=True)
    cpu_row("cosign, CA key in memory, MemoryLedger, cached identities (reuse_identities)",
            cosign_fn(mem_reuse, requests), "no hint: the proof is fetched")  # fmt: skip
    mem_plain = open_ca(MemoryKeyStore(), MemoryLedger(), work.plain)
    cpu_row("cosign, CA key in memory, MemoryLedger, plain TestNetwork",
            cosign_fn(mem_plain, requests), "no hint; TestRepo renders its DID document and "
            "builds the CAR in every cosign: test-helper work a real hold's PDS does")  # fmt: skip

    mem_sql = open_ca(MemoryKeyStore(), SQLiteLedger(tmp / "mem.sqlite3"), work.network)
    wall_row("cosign, CA key in memory, SQLite ledger, one commit per cosign",
             cosign_fn(mem_sql, requests), "no hint")  # fmt: skip
    sql = paired(burst(batch_fn(mem_sql, requests), BURST, per_call=BATCH), wall_ref, pairs)
    rows.append(_paired_row(SQL_NAME, sql, SQL_NOTE))
    wall_row(f"cosign, CA key in memory, SQLite ledger, cosign_many batches of {BATCH}, "
             "proof hint at the current commit", batch_fn(mem_sql, hinted),
             per_call=BATCH)  # fmt: skip
    threaded = paired(lambda: threaded_rate(mem_sql, requests, THREADS, BURST), wall_ref, pairs)
    rows.append(_paired_row(f"cosign, CA key in memory, SQLite ledger, {THREADS} threads",
                            threaded, "HoldCA.cosign from each thread; the ledger's group "
                            "commit; wall time; no hint"))  # fmt: skip

    n_situ = max(200, int(300 * secs))
    total_us, steps = in_situ(mem_mem, requests, n_situ, time.process_time)
    ref = "share of one cosign's CPU time (memory CA, MemoryLedger)"
    stage_rows = [
        Row(BENCH, f"stage: {name}", us, unit="µs", ratio=us / total_us, reference=ref)
        for name, us in steps
    ]
    wall_us, wall_steps = in_situ(mem_sql, requests, n_situ, time.perf_counter)
    ledger_us = next(us for name, us in wall_steps if name.startswith("ledger"))
    stage_rows.append(
        Row(BENCH, "stage: ledger.record_issuance (SQLiteLedger, wall clock)", ledger_us,
            unit="µs", ratio=ledger_us / wall_us,
            reference="share of one cosign's wall time (memory CA, SQLite ledger, "
            "one commit per cosign)")
    )  # fmt: skip
    floor_us, hashes, decodes = proof_floor(work, secs)
    fs = fsync_us(tmp, secs / 2)

    pem = open_ca(PEMKeyStore(tmp / "pem-keys"), SQLiteLedger(tmp / "pem.sqlite3"), work.network)
    wall_row(f"cosign, CA key in a PEM file, SQLite ledger, cosign_many batches of {BATCH}",
             batch_fn(pem, requests), "no hint", per_call=BATCH)  # fmt: skip

    store = softhsm_store(tmp / "hsm")
    hsm_sign = 0.0
    if store is None:
        rows.append(Row(BENCH, "cosign, CA key on SoftHSM", 0.0, note="SoftHSM missing"))
    else:
        hsm = open_ca(store, SQLiteLedger(tmp / "hsm.sqlite3"), work.network)
        hsm_signer = hsm.state(NOW).active.signer
        hsm_sign = rate(lambda: hsm_signer.sign(b"\x42" * 600), secs)
        wall_row(f"cosign, CA key on SoftHSM, SQLite ledger, cosign_many batches of {BATCH}",
                 batch_fn(hsm, requests), "goal >= 0.3; no hint", per_call=BATCH)  # fmt: skip
        wall_row("cosign, CA key on SoftHSM, SQLite ledger, one commit per cosign",
                 cosign_fn(hsm, requests), "no hint")  # fmt: skip

    # The primitives again, after the single-process rows: each at its best of the two
    # runs (the primitive rows, the floor and ceiling use them; the cosign rows above are
    # paired with the limit's bursts and need no such care). The proof's C calls too,
    # keeping the lower floor (the larger budget for Python).
    again = measure_primitives(secs)
    floor_us = min(floor_us, proof_floor(work, secs)[0])
    prims = Primitives(
        k256_verify=max(first.k256_verify, again.k256_verify),
        p256_keygen=max(first.p256_keygen, again.p256_keygen),
        p256_sign=max(first.p256_sign, again.p256_sign),
    )
    limit_us = 1e6 / prims.limit
    budget_us = limit_us - floor_us  # 2 x the limit's time - primitives - the C calls
    cosign_us = limit_us / mem.ratio  # the paired ratio: one cosign's time in limit units
    spent_us = cosign_us - limit_us - floor_us
    rows[:] = [
        *primitive_rows(BENCH, prims),
        *rows,
        Row(BENCH, "cosign CPU time, memory CA, MemoryLedger", total_us, unit="µs",
            ratio=limit_us / total_us, reference="limit (as a rate ratio)",
            note=f"process_time, {n_situ} cosigns, no hint"),
        # Why the CPU goals are out of reach: the C calls alone, and what is left for Python
        Row(BENCH, "floor: the proof's C calls (sha256 of every CAR block and visited MST "
            "key, strict decode of every visited block)", floor_us, unit="µs",
            ratio=floor_us / limit_us, reference="time of one cosign at the limit",
            note=f"{hashes} sha256 + {decodes} decodes per proof, no Python per item"),
        Row(BENCH, "ceiling: limit primitives + the proof's C calls, no Python at all",
            1e6 / (limit_us + floor_us), ratio=limit_us / (limit_us + floor_us),
            reference="limit"),
        Row(BENCH, "time per cosign left for everything else at the 0.5 goal",
            budget_us, unit="µs",
            note="2 x the limit's time - primitives - the proof's C calls"),
        Row(BENCH, "time per cosign spent on everything else (Python, and the "
            "primitives' slowdown inside a real cosign)", spent_us, unit="µs",
            ratio=spent_us / budget_us, reference="that budget",
            note="a cosign (memory CA, MemoryLedger, no hint: the limit's time / its paired "
            "ratio) - primitives - the proof's C calls; includes parsing the DID document "
            "of the fresh resolution"),
        *stage_rows,
        Row(BENCH, "primitive: 4 KiB write + fsync on the ledger's disk", fs, unit="µs",
            ratio=fs / limit_us, reference="cosigns of the limit it costs"),
    ]  # fmt: skip
    if hsm_sign:
        hsm_us = limit_us + floor_us + 1e6 / hsm_sign - 1e6 / prims.p256_sign
        rows += [
            Row(BENCH, "primitive: SoftHSM P-256 sign (holdca PKCS#11 signer, 600 B)",
                hsm_sign, ratio=hsm_sign / prims.p256_sign,
                reference="P-256 sign (cryptography)"),
            Row(BENCH, "ceiling on SoftHSM: as above, the CA's sign on SoftHSM",
                1e6 / hsm_us, ratio=limit_us / hsm_us, reference="limit",
                note="the goal is 0.3"),
        ]  # fmt: skip

    if scale:
        if cpu is not None:  # unpin: the workers pick their own cores
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        span = max(1.5, 1.5 * secs)
        labels = {
            "memory": "a MemoryLedger each",
            "own": "own SQLite ledger each",
            "shared": "one shared SQLite ledger",
        }
        for kind, label in labels.items():
            ones, twos = [], []
            for _ in range(SCALING_RUNS):  # interleaved; medians
                ones.append(scaling(1, work, span, tmp, ledger=kind))
                twos.append(scaling(2, work, span, tmp, ledger=kind))
            one, two = statistics.median(ones), statistics.median(twos)
            rows.append(Row(BENCH, f"cosign, 1 worker process, PEM CA, {label}", one,
                            ratio=one / prims.limit, reference="limit",
                            note=f"median of {SCALING_RUNS}; no hint"))  # fmt: skip
            rows.append(
                Row(BENCH, f"cosign, 2 worker processes, PEM CA, {label}", two,
                    ratio=two / one, reference="1 worker",
                    note=f"goal >= 1.8; median of {SCALING_RUNS}, ratios "
                    f"{min(twos) / max(ones):.2f}..{max(twos) / min(ones):.2f}")
            )  # fmt: skip
    return rows


if __name__ == "__main__":
    sys.exit(main())
