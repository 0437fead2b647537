"""PKCS#11 signing throughput with 1 and 2 threads (SoftHSM, P-256).

Usage::

    python benchmarks/bench_pkcs11_threads.py [--seconds 1] [--repeats 7] [--threads 1,2]

Makes a throwaway SoftHSM token (its own SOFTHSM2_CONF under a temp dir), then runs one
child process per mode, because the mode is fixed when a process first loads the module:

* ``os-locking``: holdca's default: the module re-initialised with CKF_OS_LOCKING_OK,
  one session per thread;
* ``serialised``: ``PKCS11KeyStore(..., os_locking=False)``: one lock around every call.

Each child also times the primitive in the same run: python-pkcs11's bare
``key.sign(digest, mechanism=ECDSA)`` on one session and one thread. The figures are
measured in interleaved rounds and printed as signatures/s (median of the rounds) and
as ratios: 2 threads vs 1 thread, and holdca's signer (SHA-256 and DER conversion
included) vs the bare primitive. Two threads can only be faster than one on two idle
cores: the load average is printed with the results, and "cores used" (process CPU
time / wall time) shows whether the second thread got a core at all.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PIN = "246810"
LABEL = "bench"
MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


def rate(threads: int, seconds: float, sign: Any) -> tuple[float, float]:
    """(signatures per second over all ``threads``, process CPU microseconds per signature).

    The CPU cost per signature stays meaningful on a busy machine, where the wall-clock
    rate of 2 threads depends on how much of the second core the other processes leave.
    """
    counts = [0] * threads
    stop = threading.Event()
    start = threading.Barrier(threads + 1)

    def work(n: int) -> None:
        start.wait()
        done = 0
        while not stop.is_set():
            for _ in range(50):
                sign()
            done += 50
        counts[n] = done

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    total = sum(counts)
    return total / (time.perf_counter() - t0), 1e6 * (time.process_time() - c0) / total


def child(mode: str, seconds: float, repeats: int, threads: list[int]) -> dict[str, Any]:
    """Measure in this process (SOFTHSM2_CONF etc. come from the parent)."""
    import pkcs11  # noqa: PLC0415

    from holdca.keys.pkcs11 import PKCS11KeyStore  # noqa: PLC0415

    module = os.environ["BENCH_MODULE"]
    store = PKCS11KeyStore(module, LABEL, PIN, os_locking=(mode == "os-locking"))
    label = f"bench-{mode}"
    if label in store.labels():
        store.delete(label)
    signer = store.generate(label)
    message = b"x" * 200

    # The primitive: python-pkcs11 alone, one session, one thread.
    session = pkcs11.lib(store.module_path).get_token(token_label=LABEL).open()
    key = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label=label)
    digest = hashlib.sha256(message).digest()

    def bare() -> None:
        key.sign(digest, mechanism=pkcs11.Mechanism.ECDSA)

    # Interleaved rounds, so that a burst of load elsewhere hits every figure alike.
    bare_runs: list[tuple[float, float]] = []
    runs: dict[int, list[tuple[float, float]]] = {n: [] for n in threads}
    for _ in range(repeats):
        bare_runs.append(rate(1, seconds, bare))
        for n in threads:
            runs[n].append(rate(n, seconds, lambda: signer.sign(message)))
    session.close()

    def summary(r: list[tuple[float, float]]) -> dict[str, Any]:
        return {
            "median": statistics.median(x for x, _ in r),
            "cpu_us": statistics.median(c for _, c in r),
            "runs": [x for x, _ in r],
        }

    result: dict[str, Any] = {
        "mode": mode,
        "os_locking": store.os_locking,
        "bare": summary(bare_runs),
        "rates": {str(n): summary(r) for n, r in runs.items()},
    }
    store.delete(label)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    if args.child:
        print(json.dumps(child(args.child, args.seconds, args.repeats, threads)))
        return 0

    module = os.environ.get("HOLDCA_SOFTHSM_MODULE") or next(
        (p for p in MODULE_CANDIDATES if Path(p).is_file()), None
    )
    util = shutil.which("softhsm2-util")
    if module is None or util is None:
        print("SoftHSM is not installed (Debian package softhsm2)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="holdca-bench-") as tmp:
        tokens = Path(tmp) / "tokens"
        tokens.mkdir()
        conf = Path(tmp) / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
        env = {**os.environ, "SOFTHSM2_CONF": str(conf), "BENCH_MODULE": module}
        subprocess.run(
            [util, "--init-token", "--free", "--label", LABEL, "--so-pin", "000000",
             "--pin", PIN],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        results = []
        for mode in ("os-locking", "serialised"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--seconds", str(args.seconds),
                 "--repeats", str(args.repeats), "--threads", args.threads],
                env=env, check=True, capture_output=True, text=True,
            )  # fmt: skip
            results.append(json.loads(out.stdout))

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"SoftHSM P-256 signing, {args.repeats} x {args.seconds:g} s per figure (median)")
    print(f"{os.cpu_count()} CPUs, load average after the run: {load}\n")
    head = f"{'mode':<12} {'threads':>7} {'sig/s':>10} {'vs 1 thread':>12} {'vs bare':>8}"
    print(f"{head} {'CPU us/sig':>11} {'cores used':>10}")
    for r in results:
        one = r["rates"]["1"]["median"] if "1" in r["rates"] else None
        bare = r["bare"]
        print(
            f"{r['mode']:<12} {'bare':>7} {bare['median']:>10,.0f} {'':>12} {1.0:>8.2f}"
            f" {bare['cpu_us']:>11.1f} {bare['median'] * bare['cpu_us'] / 1e6:>10.2f}"
        )
        for n, figures in r["rates"].items():
            median = figures["median"]
            vs_one = f"{median / one:.2f}x" if one else "-"
            print(
                f"{r['mode']:<12} {n:>7} {median:>10,.0f} {vs_one:>12}"
                f" {median / bare['median']:>8.2f} {figures['cpu_us']:>11.1f}"
                f" {median * figures['cpu_us'] / 1e6:>10.2f}"
            )
        assert r["os_locking"] == (r["mode"] == "os-locking"), r
    print()
    for r in results:
        if "1" in r["rates"] and "2" in r["rates"]:
            ratio = r["rates"]["2"]["median"] / r["rates"]["1"]["median"]
            print(f"{r['mode']}: 2 threads / 1 thread = {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
