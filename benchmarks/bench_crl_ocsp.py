"""Benchmark: CRL builds and OCSP responses of holdca.pki, against same-run references.

Prints a Markdown table. Not a test: nothing here asserts a speed.

* CRL build for 1k and 100k entries (1M with ``--full``; over notation's 32 MiB, which
  build_crl refuses, so this script lifts the cap): 128-bit serials, reason
  keyCompromise, signed with P-256/SHA-256 through the Signer adapter. Reported: median
  seconds, DER bytes (and bytes/entry), peak memory of the build (Python heap by tracemalloc,
  and RSS growth in a fresh child process, which also counts cryptography's Rust heap), and
  the ratio to cryptography's own builder fed the same entries in the same run, two ways:
  "documented" (one ``RevokedCertificateBuilder().serial_number().revocation_date()
  .add_extension().build()`` per entry, list passed to ``CertificateRevocationListBuilder``)
  and "floor" (only ``CertificateRevocationListBuilder(revoked_certificates=prebuilt).sign``).
* OCSP: ``respond_ocsp`` responses/s for a notation-style request (SHA-1 CertID, no nonce),
  fresh and from a warm :class:`~holdca.pki.OCSPResponseCache`, as a ratio to one bare P-256
  ECDSA sign (cryptography) timed in the same run.
* HoldCA status (a table in the shared row format, paired bursts: 0.2 s of the figure, 0.2 s
  of its reference, alternating, the median of the per-pair ratios; CPU time unless a row
  says wall): ``HoldCA.ocsp`` with a cached answer (the same request bytes again), uncached
  (a fresh nonce per request: never cached), and for a serial the hold never issued
  (``unauthorized``, unsigned), each against one bare P-256 sign, on a MemoryLedger and an
  SQLite ledger; ``HoldCA.crl_der`` (what ``GET /ca.crl`` serves) once built, with 0, 10k
  and 100k revocations on a MemoryLedger (and 1k on SQLite), against ``crl_der`` with 0
  revocations: flat means O(1) in the revocations. The first call after the revocations
  (the build) is in the note.

Usage: ``python benchmarks/bench_crl_ocsp.py [--full]`` (about a minute; ``--full`` adds 1M
entries, about a minute more).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cryptography
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from holdca.keys import MemorySigner
from holdca.pki import (
    CertStatus,
    OCSPResponseCache,
    RevokedEntry,
    SubjectInfo,
    build_crl,
    issue_leaf,
    issue_root,
    respond_ocsp,
)
from holdca.pki import crl as crl_module

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SUBJECT = SubjectInfo("US", "CA", "Bench Hold")
REASON = x509.ReasonFlags.key_compromise


# A 1M-entry CRL (about 50 MB) is over notation's 32 MiB, which build_crl refuses; the
# benchmark lifts the cap so that the row can be timed (marked "over limit").
crl_module.MAX_CRL_BYTES = 1 << 31


def make_ca() -> tuple[MemorySigner, x509.Certificate]:
    signer = MemorySigner.generate()
    return signer, issue_root(signer, hold_did="did:web:hold.bench.test", subject=SUBJECT, now=NOW)


def make_entries(n: int) -> list[RevokedEntry]:
    rng = random.Random(n)
    serials: set[int] = set()
    while len(serials) < n:
        serials.add(rng.getrandbits(128) | 1)
    return [
        RevokedEntry(s, NOW - timedelta(seconds=i % 86400), REASON) for i, s in enumerate(serials)
    ]


def holdca_crl(signer: MemorySigner, cert: x509.Certificate, entries: list[RevokedEntry]) -> bytes:
    crl = build_crl(
        signer, cert, entries, crl_number=1, this_update=NOW, next_update=NOW + timedelta(hours=1)
    )
    return crl.public_bytes(Encoding.DER)


def crl_builder(
    cert: x509.Certificate, revoked: list[x509.RevokedCertificate]
) -> Callable[[ec.EllipticCurvePrivateKey], x509.CertificateRevocationList]:
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=cert.subject,
        last_update=NOW,
        next_update=NOW + timedelta(hours=1),
        extensions=[
            x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(1)),
            x509.Extension(
                x509.AuthorityKeyIdentifier.oid,
                False,
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
            ),
        ],
        revoked_certificates=revoked,
    )
    return lambda key: builder.sign(key, hashes.SHA256())


def documented_crl(
    signer: MemorySigner, cert: x509.Certificate, entries: list[RevokedEntry]
) -> bytes:
    revoked = [
        x509.RevokedCertificateBuilder()
        .serial_number(e.serial)
        .revocation_date(e.revoked_at)
        .add_extension(x509.CRLReason(REASON), critical=False)
        .build()
        for e in entries
    ]
    key = signer.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return crl_builder(cert, revoked)(key).public_bytes(Encoding.DER)


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rss_kib() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() // 1024


def child(n: int, impl: str) -> None:
    """Run in a fresh process: RSS growth of one build (prints JSON)."""
    signer, cert = make_ca()
    entries = make_entries(n)
    before = rss_kib()
    (holdca_crl if impl == "holdca" else documented_crl)(signer, cert, entries)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"rss_growth_kib": max(0, peak - before)}))


def child_rss(n: int, impl: str) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(n), impl],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(out.stdout)["rss_growth_kib"]) / 1024


def bench_crl(sizes: list[int]) -> None:
    signer, cert = make_ca()
    key = signer.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    print(
        "| entries | holdca build_crl s | bytes | B/entry | py heap peak MiB | RSS growth MiB "
        "| documented builder s | ratio | floor (prebuilt list) s | ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        entries = make_entries(n)
        repeats = 15 if n <= 10_000 else 3 if n <= 100_000 else 1
        der = holdca_crl(signer, cert, entries)
        crl = x509.load_der_x509_crl(der)
        assert len(crl) == n
        assert crl.is_signature_valid(cert.public_key())  # type: ignore[arg-type]

        # run holdca before and after the reference so drift affects both alike
        def run_holdca(entries: list[RevokedEntry] = entries) -> bytes:
            return holdca_crl(signer, cert, entries)

        def run_documented(entries: list[RevokedEntry] = entries) -> bytes:
            return documented_crl(signer, cert, entries)

        t_holdca = median_time(run_holdca, repeats)
        t_doc = median_time(run_documented, repeats)
        t_holdca = min(t_holdca, median_time(run_holdca, repeats))
        prebuilt = [r for r in x509.load_der_x509_crl(der)]
        floor = crl_builder(cert, prebuilt)
        t_floor = median_time(lambda: floor(key), repeats)  # noqa: B023 (called at once)
        tracemalloc.start()
        holdca_crl(signer, cert, entries)
        heap_peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        rss = child_rss(n, "holdca")
        over = " (over limit)" if len(der) > 32 * 2**20 else ""
        print(
            f"| {n:,}{over} | {t_holdca:.4f} | {len(der):,} | {len(der) / n:.1f} | {heap_peak:.1f} "
            f"| {rss:.0f} | {t_doc:.4f} | {t_holdca / t_doc:.2f} | {t_floor:.4f} "
            f"| {t_holdca / t_floor:.2f} |"
        )


def ops_per_second(fn: Callable[[], object], seconds: float = 1.5) -> float:
    runs = []
    for _ in range(3):
        count = 0
        start = time.perf_counter()
        deadline = start + seconds / 3
        while True:
            for _ in range(50):
                fn()
            count += 50
            now = time.perf_counter()
            if now >= deadline:
                break
        runs.append(count / (now - start))
    return statistics.median(runs)


def bench_ocsp() -> None:
    signer, cert = make_ca()
    leaf = issue_leaf(
        signer,
        cert,
        did="did:plc:ewvi7nxzyoun6zhxrhs64oiz",
        public_key=MemorySigner.generate().public_key,
        subject=SUBJECT,
        now=NOW,
    )
    req = ocsp.OCSPRequestBuilder().add_certificate(leaf, cert, hashes.SHA1()).build()
    der = req.public_bytes(Encoding.DER)
    good = CertStatus.good()
    cache = OCSPResponseCache()

    def fresh() -> bytes:
        return respond_ocsp(der, status_of=lambda _: good, issuer_cert=cert, signer=signer, now=NOW)

    def cached() -> bytes:
        return respond_ocsp(
            der, status_of=lambda _: good, issuer_cert=cert, signer=signer, now=NOW, cache=cache
        )

    response = ocsp.load_der_ocsp_response(fresh())
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert cached() == cached()
    key = signer.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    data = b"\x42" * 300

    def bare_sign() -> bytes:
        return key.sign(data, ec.ECDSA(hashes.SHA256()))

    sign_rate = ops_per_second(bare_sign)
    fresh_rate = ops_per_second(fresh)
    cached_rate = ops_per_second(cached)
    sign_rate = max(sign_rate, ops_per_second(bare_sign))
    print()
    print(
        f"| OCSP (single SHA-1 CertID, no nonce, CA-signed, {len(fresh())} B) | ops/s "
        "| µs/op | ratio to one bare P-256 sign |"
    )
    print("|---|---:|---:|---:|")
    print(
        f"| bare P-256 ECDSA sign (cryptography) | {sign_rate:,.0f} "
        f"| {1e6 / sign_rate:.1f} | 1.00 |"
    )
    print(
        f"| respond_ocsp, fresh | {fresh_rate:,.0f} | {1e6 / fresh_rate:.1f} "
        f"| {fresh_rate / sign_rate:.2f} |"
    )
    print(
        f"| respond_ocsp, cached | {cached_rate:,.0f} | {1e6 / cached_rate:.1f} "
        f"| {cached_rate / sign_rate:.2f} |"
    )


def bench_status() -> None:
    """The HoldCA status rows (see the module docstring), printed as a shared-format table."""
    import os  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _harness import Row, burst, emit, p256_sign, paired  # noqa: PLC0415

    from holdca.hold import HoldCA, IssuanceLedger, MemoryLedger, SQLiteLedger  # noqa: PLC0415
    from holdca.hold.ledger import IssuanceRecord  # noqa: PLC0415
    from holdca.keys import MemoryKeyStore  # noqa: PLC0415

    bench, pairs, did = "status", 10, "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
    cpu, wall = time.process_time, time.perf_counter
    sign_cpu = burst(p256_sign(), 0.2, cpu)
    sign_wall = burst(p256_sign(), 0.2, wall)
    rows: list[Row] = []

    def hold(ledger: IssuanceLedger) -> HoldCA:
        return HoldCA.open(MemoryKeyStore(), ledger, hold_did="did:web:hold.bench.test",
                           subject=SUBJECT, now=NOW, create=True)  # fmt: skip

    def row(name: str, fn: Callable[[], object], ref: Callable[[], float], note: str,
            clock: Callable[[], float] = cpu) -> None:  # fmt: skip
        got = paired(burst(fn, 0.2, clock), ref, pairs)
        rows.append(Row(bench, name, got.value, ratio=got.ratio,
                        reference="bare P-256 sign (paired bursts)",
                        note=f"{note}; {got.spread()}"))  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="holdca-bench-status-") as tmp:
        for label, ledger, clock, ref in (
            ("MemoryLedger", MemoryLedger(), cpu, sign_cpu),
            ("SQLite ledger", SQLiteLedger(Path(tmp) / "ocsp.sqlite3"), wall, sign_wall),
        ):
            ca = hold(ledger)
            chain = ca.issue(did, MemorySigner.generate().public_key, now=NOW)
            leaf, issuer = chain[0], chain[1]
            request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1())
            der = request.build().public_bytes(Encoding.DER)
            nonced = [
                request.add_extension(x509.OCSPNonce(os.urandom(16)), critical=False)
                .build()
                .public_bytes(Encoding.DER)
                for _ in range(512)
            ]
            stranger = issue_leaf(ca.state(NOW).active.signer, issuer, did=did,
                                  public_key=MemorySigner.generate().public_key,
                                  subject=SUBJECT, now=NOW)  # fmt: skip
            unknown = (
                ocsp.OCSPRequestBuilder()
                .add_certificate(stranger, issuer, hashes.SHA1())
                .build()
                .public_bytes(Encoding.DER)
            )
            answer = ocsp.load_der_ocsp_response(ca.ocsp(der, now=NOW))
            assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
            assert ca.ocsp(der, now=NOW) == ca.ocsp(der, now=NOW)  # cached
            refused = ocsp.load_der_ocsp_response(ca.ocsp(unknown, now=NOW))
            assert refused.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
            cycle = itertools.cycle(nonced)
            kind = "CPU time" if clock is cpu else "wall time"

            def cached(ca: HoldCA = ca, der: bytes = der) -> bytes:
                return ca.ocsp(der, now=NOW)

            def uncached(ca: HoldCA = ca, cycle: Iterator[bytes] = cycle) -> bytes:
                return ca.ocsp(next(cycle), now=NOW)

            def stranger_status(ca: HoldCA = ca, der: bytes = unknown) -> bytes:
                return ca.ocsp(der, now=NOW)

            if label == "MemoryLedger":
                row(f"HoldCA.ocsp, cached answer ({label})", cached, ref,
                    f"goal >= 10; the same {len(der)}-byte request again; {kind}")  # fmt: skip
                # the first request for each of many certificates (no nonce): enough
                # certificates that no burst meets one twice (2x the calls, from a
                # 0.1 s calibration on nonce requests, which cost as much)
                t0, calls = cpu(), 0
                while cpu() - t0 < 0.1:
                    uncached()
                    calls += 1
                total = int(2 * calls / (cpu() - t0) * (0.2 * (pairs + 1) + 0.2)) + 1000
                firsts = iter([
                    ocsp.OCSPRequestBuilder()
                    .add_certificate(ca.issue(did, MemorySigner.generate().public_key,
                                              now=NOW)[0], issuer, hashes.SHA1())
                    .build()
                    .public_bytes(Encoding.DER)
                    for _ in range(total)
                ])  # fmt: skip

                def first_request(ca: HoldCA = ca, firsts: Iterator[bytes] = firsts) -> bytes:
                    return ca.ocsp(next(firsts), now=NOW)

                hits = ca._ocsp_answers.hits  # read only: no burst may hit the cache
                row(f"HoldCA.ocsp, uncached: the first request for a certificate ({label})",
                    first_request, ref, f"{total:,} certificates, each asked once: parse, "
                    f"ledger lookups, sign, cache; {kind}")  # fmt: skip
                assert ca._ocsp_answers.hits == hits
            row(f"HoldCA.ocsp, uncached: a fresh nonce per request ({label})", uncached, ref,
                f"nonce answers are never cached; parse, ledger lookups, sign; {kind}",
                clock)  # fmt: skip
            row(f"HoldCA.ocsp, unknown serial: unauthorized, unsigned ({label})",
                stranger_status, ref, f"parse, issuer match, ledger lookup; {kind}",
                clock)  # fmt: skip
            ledger.close()

        base: Callable[[], float] | None = None
        sizes: list[tuple[IssuanceLedger, int, str]] = [
            (MemoryLedger(), n, "MemoryLedger") for n in (0, 10_000, 100_000)
        ]
        sizes += [
            (SQLiteLedger(Path(tmp) / f"crl{n}.sqlite3"), n, "SQLite ledger") for n in (0, 1_000)
        ]
        for crl_ledger, n, label in sizes:
            ca = hold(crl_ledger)
            records = [
                IssuanceRecord(serial=(1 << 100) + i, did=did,
                               manifest_digest="sha256:" + "00" * 32, commit_cid=None,
                               rev=None, not_before=NOW - timedelta(hours=1),
                               not_after=NOW + timedelta(hours=23), certificate_der=b"\x30\x00",
                               issuer_id=ca.ca_id, issued_at=NOW - timedelta(hours=1),
                               kind="issue")
                for i in range(n)
            ]  # fmt: skip
            crl_ledger.record_issuances(records)
            for record in records:
                crl_ledger.revoke(record.serial, revoked_at=NOW, reason="superseded")
            t0 = time.perf_counter()
            crl_der = ca.crl_der(NOW)
            build_s = time.perf_counter() - t0
            assert len(x509.load_der_x509_crl(crl_der)) == n

            def serve(ca: HoldCA = ca) -> bytes:
                return ca.crl_der(NOW)

            fn = burst(serve, 0.2, wall)
            note = (
                f"{len(crl_der):,} B; the first call built and signed it in {build_s * 1e3:.1f} ms"
            )
            if n == 0:
                base = fn
                got = paired(fn, sign_wall, pairs)
                reference = "bare P-256 sign (paired bursts)"
            else:
                assert base is not None
                got = paired(fn, base, pairs)
                reference = f"crl_der with 0 revocations ({label}, paired bursts)"
            rows.append(Row(bench, f"HoldCA.crl_der, {n:,} revocations ({label}), once built",
                            got.value, ratio=got.ratio, reference=reference,
                            note=f"{note}; wall time; {got.spread()}"))  # fmt: skip
        for crl_ledger, _, _ in sizes:  # closed only now: the 0 rows are the references
            crl_ledger.close()
    print()
    emit(rows, as_json=False, title="HoldCA status: OCSP answers and the CRL served")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also build a 1M-entry CRL")
    parser.add_argument("--child", nargs=2, metavar=("N", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1])
        return
    print(
        f"python {platform.python_version()}, cryptography {cryptography.__version__}, "
        f"{platform.machine()}, one core\n"
    )
    sizes = [1_000, 100_000] + ([1_000_000] if args.full else [])
    bench_crl(sizes)
    bench_ocsp()
    bench_status()


if __name__ == "__main__":
    main()
