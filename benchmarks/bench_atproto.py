"""Benchmark: getRecord-proof verification rate and DAG-CBOR codec comparison (one core).

Run: ``python benchmarks/bench_atproto.py [--records 10000] [--seconds 1.0]``

Every figure is also reported as a ratio to one bare K-256 signature verification (coincurve /
libsecp256k1, 64-byte compact signature, pubkey parsed once) timed in the same run. Times are
process CPU time (``time.process_time``) on one pinned core, so that other load on a shared
machine inflates them less than wall time would.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import cbrrr
import dag_cbor
import libipld
from coincurve import PrivateKey
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

from holdca.atproto import dagcbor
from holdca.atproto.car import read_car, read_car_raw
from holdca.atproto.commit import commit_fields, parse_commit, verify_commit
from holdca.atproto.diddoc import document_signing_key, parse_did_document
from holdca.atproto.mst import lookup, lookup_raw
from holdca.atproto.syntax import mst_key
from holdca.atproto.verify import verify_record_proof
from holdca.testing.atproto import TestRepo


def rate(fn: Callable[[], Any], seconds: float) -> float:
    """Calls per second of ``fn`` (calibrated, then timed for ``seconds``)."""
    n = 1
    while True:
        start = time.process_time()
        for _ in range(n):
            fn()
        elapsed = time.process_time() - start
        if elapsed > 0.1:
            break
        n *= 2
    total = max(1, int(n * seconds / elapsed))
    start = time.process_time()
    for _ in range(total):
        fn()
    return total / (time.process_time() - start)


INVALID = {
    "float64": "fb405edd2f1a9fbe77",
    "non-minimal int": "1805",
    "non-minimal length": "780161",
    "unsorted keys": "a2616201616102",
    "duplicate keys": "a2616101616102",
    "tag 1": "c100",
    "trailing bytes": "0000",
    "indefinite array": "9fff",
    "integer key": "a10102",
    "undefined": "f7",
    "int > 2^63": "1bffffffffffffffff",
    "CID of only 0x00": "d82a4100",
    "depth 10000": "81" * 10000 + "00",
}


def main() -> None:
    """Run the benchmark and print a Markdown report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    secs = args.seconds

    # same-run reference: one bare K-256 verify (compact sig, pubkey parsed once)
    priv = PrivateKey(hashlib.sha256(b"bench").digest())
    pub = priv.public_key
    msg = os.urandom(300)
    sig64 = priv.sign_recoverable(msg)[:64]
    digest = hashlib.sha256(msg).digest()

    def bare() -> bool:
        s = ffi.new("secp256k1_ecdsa_signature *")
        lib.secp256k1_ecdsa_signature_parse_compact(GLOBAL_CONTEXT.ctx, s, sig64)
        return bool(lib.secp256k1_ecdsa_verify(GLOBAL_CONTEXT.ctx, s, digest, pub.public_key))

    assert bare()

    # a 10k-record repo
    t0 = time.process_time()
    repo = TestRepo.create("plc", "k256")
    digests = [f"sha256:{i:064x}" for i in range(args.records)]
    uris = repo.put_manifests(digests)
    _ = repo.commit_cid
    build_s = time.process_time() - t0
    rng = random.Random(1)
    picks = rng.sample(range(len(uris)), 200)
    cars = [(repo.get_record_car(uris[i]), uris[i], digests[i]) for i in picks]
    doc_bytes = repo.did_document()
    doc = parse_did_document(doc_bytes, repo.did)
    key = doc.atproto_key()
    sizes = sorted(len(c) for c, _, _ in cars)
    it = iter(range(1 << 62))

    def verify_full() -> None:
        car, uri, dig = cars[next(it) % len(cars)]
        verify_record_proof(car, doc_bytes, uri, dig)

    def verify_parsed_doc() -> None:
        car, uri, dig = cars[next(it) % len(cars)]
        verify_record_proof(car, doc, uri, dig)

    # interleaved rounds: the ratio is taken inside each round (the machine may be shared)
    rounds: list[tuple[float, float, float]] = []
    for _ in range(args.rounds):
        rb = rate(bare, secs / 3)
        rf = rate(verify_full, secs / 3)
        rd = rate(verify_parsed_doc, secs / 3)
        rounds.append((rb, rf, rd))
    r_bare = statistics.median(r[0] for r in rounds)
    r_full = statistics.median(r[1] for r in rounds)
    r_doc = statistics.median(r[2] for r in rounds)
    ratio_full = sorted(r[1] / r[0] for r in rounds)
    ratio_doc = sorted(r[2] / r[0] for r in rounds)

    # breakdown: each step over the same 200 proofs, in turn (so the steps add up to the total)
    car0, _, _ = cars[0]
    parsed = read_car(car0)
    root = parsed.roots[0]
    commit = parse_commit(parsed.blocks[root], root)
    commit_block = parsed.blocks[root]
    proofs = []
    for car, uri, _ in cars:
        car_roots, raw_blocks = read_car_raw(car)
        fields = commit_fields(raw_blocks[car_roots[0]])
        path = mst_key("io.atcr.manifest", uri.rsplit("/", 1)[1])
        found = lookup_raw(raw_blocks.get, fields[1].raw, path)
        assert found is not None
        proofs.append((car, raw_blocks, raw_blocks[car_roots[0]], fields, path, raw_blocks[found]))
    record_cid = lookup(parsed.blocks, commit.data, proofs[0][4])
    assert record_cid is not None
    record_block = parsed.blocks[record_cid]

    def each(fn: Callable[[Any], Any]) -> Callable[[], Any]:
        return lambda: fn(proofs[next(it) % len(proofs)])

    steps: dict[str, Callable[[], Any]] = {
        "read_car_raw (parse + sha256 of every block)": each(lambda p: read_car_raw(p[0])),
        "commit_fields (strict decode + splice)": each(lambda p: commit_fields(p[2])),
        "verify_commit (K-256, libsecp256k1)": lambda: verify_commit(commit, key),
        "MST lookup_raw (strict decode of path nodes)": each(
            lambda p: lookup_raw(p[1].get, p[3][1].raw, p[4])
        ),
        "record decode (strict)": each(lambda p: dagcbor.decode(p[5])),
        "DID document key (cached per document, as verify uses it)": lambda: document_signing_key(
            doc_bytes, repo.did
        ),
        "DID document parse + key (uncached)": lambda: parse_did_document(
            doc_bytes, repo.did
        ).atproto_key(),
    }
    step_ratios: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(3):
        for name, fn in steps.items():
            step_ratios[name].append(rate(fn, secs / 6) / rate(bare, secs / 6))

    # codec comparison
    node_block = max((b for c, b in parsed.blocks.items() if c not in (root, record_cid)), key=len)
    samples = {"commit": commit_block, "largest MST node": node_block, "record": record_block}
    codecs: dict[str, Callable[[bytes], Any]] = {
        "libipld.decode_dag_cbor": libipld.decode_dag_cbor,
        "cbrrr.decode_dag_cbor": cbrrr.decode_dag_cbor,
        "dag_cbor.decode": dag_cbor.decode,
        "holdca prescan only": dagcbor.prescan,
        "holdca strict decode (prescan + cbrrr)": dagcbor.decode,
    }
    codec_us: dict[tuple[str, str], float | None] = {}
    for name, fn in codecs.items():
        for label, block in samples.items():
            try:
                fn(block)
            except Exception:
                codec_us[(name, label)] = None  # not applicable
                continue
            codec_us[(name, label)] = 1e6 / rate(lambda f=fn, b=block: f(b), secs / 4)
    strict: dict[str, int] = {}
    for name, fn in codecs.items():
        if name == "holdca prescan only":
            continue
        rejected = 0
        for hexdata in INVALID.values():
            try:
                fn(bytes.fromhex(hexdata))
            except Exception:
                rejected += 1
        strict[name] = rejected

    print(f"# bench_atproto ({args.records} records, repo built in {build_s:.2f} s)\n")
    print(f"getRecord CAR sizes: {sizes[0]}..{sizes[-1]} bytes (median {sizes[len(sizes) // 2]})\n")
    print(f"{args.rounds} interleaved rounds; median ops/s; ratio = median (min..max) per round\n")
    print("| operation | ops/s | µs/op | ratio to bare K-256 verify |")
    print("|---|---:|---:|---:|")
    print(f"| bare K-256 verify (coincurve, compact) | {r_bare:,.0f} | {1e6 / r_bare:.1f} | 1 |")
    for name, r, ratios in (
        ("verify_record_proof, DID doc as JSON bytes (key cached per doc)", r_full, ratio_full),
        ("verify_record_proof, pre-parsed DIDDocument", r_doc, ratio_doc),
    ):
        med = statistics.median(ratios)
        print(
            f"| {name} | {r:,.0f} | {1e6 / r:.1f} | {med:.3f} ({ratios[0]:.3f}..{ratios[-1]:.3f}) |"
        )
    print("\n| step (mean over the proofs) | ratio to bare K-256 verify | est. µs at median bare |")
    print("|---|---:|---:|")
    for name, ratios in step_ratios.items():
        med = statistics.median(ratios)
        print(f"| {name} | {med:.3f} | {1e6 / (med * r_bare):.1f} |")
    print("\n| decoder | " + " | ".join(f"{k} ({len(v)} B) µs" for k, v in samples.items()) + " |")
    print("|---|" + "---:|" * len(samples))
    for name in codecs:
        cells = " | ".join(
            "n/a" if (us := codec_us[(name, label)]) is None else f"{us:.2f}" for label in samples
        )
        print(f"| {name} | {cells} |")
    print(f"\nstrictness: invalid inputs rejected out of {len(INVALID)}")
    for name, count in strict.items():
        print(f"- {name}: {count}")


if __name__ == "__main__":
    main()
