"""Benchmark: HoldCA.cosign end to end, as a ratio to the cosign limit timed in the same run.

One cosign = ATProto getRecord proof verification (a 10k-record repo built with
holdca.testing.atproto: DID document, CAR hashes, K-256 commit signature, MST inclusion,
record digest) + ephemeral P-256 key + leaf issuance + Notation JWS envelope + OCI
signature manifest + ledger commit (SQLite, WAL, ``synchronous=FULL``) + audit event.

Rows (single process, pinned to one core):

* the primitives and the limit = 1 / (K-256 verify + P-256 keygen + 2 P-256 signs);
* ``verify_record_proof`` alone;
* cosign with the CA key in memory, in a PEM file and on SoftHSM, each with the SQLite
  ledger (and the in-memory CA also with a MemoryLedger, which isolates the fsync cost);
* scaling: cosigns/s of 1 and 2 worker processes sharing one PEM CA key, each worker with
  its own SQLite ledger file and pinned to its own core (and, as a second figure, both
  workers sharing one SQLite ledger file).

Usage: ``python benchmarks/bench_cosign.py [--seconds 1.0] [--records 10000] [--json]``
(about a minute). Goals (issue 7): in memory >= 0.5 of the limit, SoftHSM >= 0.3,
2 workers >= 1.8x one. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    Primitives,
    Row,
    emit,
    environment,
    measure_primitives,
    pin_one_core,
    primitive_rows,
    rate,
)

from holdca.atproto.verify import verify_record_proof
from holdca.hold import CosignRequest, HoldCA, MemoryLedger, SQLiteLedger
from holdca.hold.ledger import IssuanceLedger
from holdca.keys import KeyStore, MemoryKeyStore
from holdca.keys.pem import PEMKeyStore
from holdca.notation import Descriptor
from holdca.pki import SubjectInfo
from holdca.testing.atproto import TestRepo

BENCH = "cosign"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
HOLD_DID = "did:web:hold.bench.example.com"
SUBJECT = SubjectInfo("US", "CA", "Bench Hold")
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)


def build_requests(records: int, picks: int = 200) -> list[CosignRequest]:
    """A ``records``-record repo and ``picks`` cosign requests for records spread over it."""
    repo = TestRepo.create("plc", "k256", now=NOW)
    digests = [f"sha256:{i:064x}" for i in range(records)]
    uris = repo.put_manifests(digests, repository="bench/app")
    step = max(1, records // picks)
    doc = repo.did_document()
    return [
        CosignRequest(
            did=repo.did,
            descriptor=Descriptor(MANIFEST, digests[i], 1234),
            record_uri=uris[i],
            record_car=repo.get_record_car(uris[i]),
            did_document=doc,
            caller=repo.did,
        )
        for i in range(0, records, step)[:picks]
    ]


def breakdown(ca: HoldCA, requests: list[CosignRequest], seconds: float) -> list[tuple[str, float]]:
    """µs per call of each cosign stage, timed alone with the same inputs HoldCA uses."""
    from holdca.hold.ledger import IssuanceRecord  # noqa: PLC0415
    from holdca.keys import MemorySigner, SignatureAlgorithm  # noqa: PLC0415
    from holdca.notation import sign_envelope, signature_manifest  # noqa: PLC0415
    from holdca.pki import check_notation_profile, issue_leaf, random_serial  # noqa: PLC0415

    state = ca.state(NOW)
    signer, cert = state.active.signer, state.active.certificate
    req = requests[0]
    key = MemorySigner.generate(SignatureAlgorithm.ES256)

    def leaf() -> Any:
        return issue_leaf(
            signer,
            cert,
            did=req.did,
            public_key=key.public_key,
            subject=SUBJECT,
            now=NOW,
            serial=random_serial(),
        )

    one_leaf = leaf()
    chain = (one_leaf, *state.chain_suffix)
    envelope = sign_envelope(key, chain, req.descriptor, now=NOW)
    serials = itertools.count(1)

    def record() -> None:
        ca.ledger.record_issuance(
            IssuanceRecord(
                next(serials) << 64,
                req.did,
                req.descriptor.digest,
                None,
                None,
                NOW,
                NOW,
                b"x" * 530,
                state.active.ca_id,
                NOW,
            )
        )

    stages: list[tuple[str, Callable[[], Any]]] = [
        (
            "verify_record_proof",
            lambda: verify_record_proof(
                req.record_car, req.did_document, req.record_uri, req.descriptor.digest, did=req.did
            ),
        ),
        (
            "ephemeral P-256 key (MemorySigner.generate)",
            lambda: MemorySigner.generate(SignatureAlgorithm.ES256),
        ),
        ("issue_leaf", leaf),
        (
            "sign_envelope (includes check_notation_profile of the chain)",
            lambda: sign_envelope(key, chain, req.descriptor, now=NOW),
        ),
        (
            "  of which check_notation_profile(chain, now)",
            lambda: check_notation_profile(chain, now=NOW),
        ),
        (
            "signature_manifest (re-parses the envelope)",
            lambda: signature_manifest(envelope, req.descriptor),
        ),
        (f"ledger.record_issuance ({type(ca.ledger).__name__})", record),
    ]
    return [(name, 1e6 / rate(fn, seconds / 2)) for name, fn in stages]


def open_ca(store: KeyStore, ledger: IssuanceLedger) -> HoldCA:
    """A HoldCA on ``store`` (creating the root key if absent) and ``ledger``."""
    return HoldCA.open(store, ledger, hold_did=HOLD_DID, subject=SUBJECT, now=NOW, create=True)


def cosign_fn(ca: HoldCA, requests: list[CosignRequest]) -> Callable[[], Any]:
    """A no-argument function doing one cosign (cycling through ``requests``)."""
    cycle = itertools.cycle(requests)

    def one() -> Any:
        return ca.cosign(next(cycle), now=NOW)

    return one


# --- scaling: worker processes -------------------------------------------------------------


def _worker(
    cpu: int | None,
    key_dir: str,
    ledger_path: str,
    requests: list[CosignRequest],
    seconds: float,
    start: Any,
    out: Any,
) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    ca = open_ca(PEMKeyStore(key_dir), SQLiteLedger(ledger_path))
    fn = cosign_fn(ca, requests)
    for _ in range(20):  # warm up
        fn()
    start.wait()
    count = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for _ in range(10):
            fn()
        count += 10
        now = time.perf_counter()
        if now >= deadline:
            break
    out.put((count, t0, now))


def scaling(
    workers: int, requests: list[CosignRequest], seconds: float, tmp: Path, *, shared: bool
) -> float:
    """Total cosigns/s of ``workers`` processes (PEM CA key; own or shared SQLite ledger)."""
    ctx = mp.get_context("fork")
    key_dir = tmp / "keys"
    if not key_dir.exists():
        open_ca(PEMKeyStore(key_dir), MemoryLedger())
    run = tmp / f"run-{workers}-{'shared' if shared else 'own'}-{time.monotonic_ns()}"
    run.mkdir()
    ledgers = [
        run / ("ledger.sqlite3" if shared else f"ledger-{n}.sqlite3") for n in range(workers)
    ]
    open_ca(PEMKeyStore(key_dir), SQLiteLedger(ledgers[0])).ledger.close()  # create schema
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    start = ctx.Barrier(workers)
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker,
            args=(
                cpus[n % len(cpus)] if cpus else None,
                str(key_dir),
                str(ledgers[n]),
                requests,
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


def main() -> int:
    """Run the benchmark and print its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--json", action="store_true", help="JSON lines for run_all.py")
    parser.add_argument("--no-scaling", action="store_true")
    args = parser.parse_args()
    logging.getLogger("holdca").setLevel(logging.WARNING)  # audit events: formatted, dropped
    secs = args.seconds

    t0 = time.perf_counter()
    requests = build_requests(args.records)
    build_s = time.perf_counter() - t0
    cpu = pin_one_core()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="holdca-bench-cosign-") as tmpdir:
        tmp = Path(tmpdir)
        prims = measure_primitives(secs)
        rows += primitive_rows(BENCH, prims)

        def add(name: str, value: float, note: str = "") -> None:
            rows.append(
                Row(BENCH, name, value, ratio=value / prims.limit, reference="limit", note=note)
            )

        req = requests[0]
        cycle = itertools.cycle(requests)

        def verify_only() -> Any:
            r = next(cycle)
            return verify_record_proof(
                r.record_car, r.did_document, r.record_uri, r.descriptor.digest, did=r.did
            )

        add(
            "verify_record_proof alone (10k-record repo)",
            rate(verify_only, secs),
            f"CAR {len(req.record_car)} B",
        )

        mem_mem = open_ca(MemoryKeyStore(), MemoryLedger())
        add("cosign, CA key in memory, MemoryLedger", rate(cosign_fn(mem_mem, requests), secs))

        mem_sql = open_ca(MemoryKeyStore(), SQLiteLedger(tmp / "mem.sqlite3"))
        r_mem = rate(cosign_fn(mem_sql, requests), secs)
        add("cosign, CA key in memory, SQLite ledger", r_mem, "goal >= 0.5")

        total_us = 1e6 / r_mem
        for name, us in breakdown(mem_sql, requests, secs):
            rows.append(
                Row(
                    BENCH,
                    f"stage: {name}",
                    us,
                    unit="µs",
                    ratio=us / total_us,
                    reference="share of one cosign (memory CA, SQLite)",
                )
            )
        mem_ledger_us = breakdown(mem_mem, requests[:1], secs / 4)[-1][1]
        rows.append(
            Row(
                BENCH,
                "stage: ledger.record_issuance (MemoryLedger)",
                mem_ledger_us,
                unit="µs",
                ratio=mem_ledger_us / total_us,
                reference="share of one cosign (memory CA, SQLite)",
            )
        )

        pem = open_ca(PEMKeyStore(tmp / "pem-keys"), SQLiteLedger(tmp / "pem.sqlite3"))
        add("cosign, CA key in a PEM file, SQLite ledger", rate(cosign_fn(pem, requests), secs))

        store = softhsm_store(tmp / "hsm")
        if store is None:
            rows.append(Row(BENCH, "cosign, CA key on SoftHSM", 0.0, note="SoftHSM missing"))
        else:
            hsm = open_ca(store, SQLiteLedger(tmp / "hsm.sqlite3"))
            add(
                "cosign, CA key on SoftHSM, SQLite ledger",
                rate(cosign_fn(hsm, requests), secs),
                "goal >= 0.3",
            )

        if not args.no_scaling:
            if cpu is not None:  # unpin: the workers pick their own cores
                os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
            span = max(2.0, 2 * secs)
            for shared in (False, True):
                label = "one shared SQLite ledger" if shared else "own SQLite ledger each"
                one = scaling(1, requests, span, tmp, shared=shared)
                two = scaling(2, requests, span, tmp, shared=shared)
                add(f"cosign, 1 worker process, PEM CA, {label}", one)
                rows.append(
                    Row(
                        BENCH,
                        f"cosign, 2 worker processes, PEM CA, {label}",
                        two,
                        ratio=two / one,
                        reference="1 worker",
                        note="goal >= 1.8",
                    )
                )
    if not args.json:
        print(f"{environment()}; repo of {args.records} records built in {build_s:.1f} s\n")
    emit(rows, as_json=args.json, title="cosign end to end")
    _ = Primitives  # re-exported type for readers
    return 0


if __name__ == "__main__":
    sys.exit(main())
