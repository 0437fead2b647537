"""Shared timing harness for holdca's benchmarks.

Every benchmark reports its figures next to cryptographic primitives timed in the same
process run, as ratios: the machine is noisy, an absolute time alone means little.

* :func:`rate`: calls per second of a function: calibrated for about 0.1 s, then timed for
  about ``seconds`` with :func:`time.perf_counter`.
* :func:`measure_primitives`: the three primitives of a cosign, timed now: coincurve K-256
  verify of a 64-byte compact signature (libsecp256k1's raw verify, public key parsed
  once, the fastest path coincurve offers), cryptography P-256 key generation and
  P-256 ECDSA sign (DER, 600-byte message). The *limit* of a cosign is
  ``1 / (t_verify + t_keygen + 2 * t_sign)``: the most cosigns per second one core could do
  if nothing but the unavoidable curve math ran.
* :func:`paired`: the robust ratio of two rates on a noisy machine: short alternating
  bursts of the measured function and of its reference (about 0.2 s each, many pairs, the
  order flipped every pair so a drift hits both alike), reported as the median of the
  per-pair ratios with their 10th and 90th percentiles; :func:`burst` and
  :func:`limit_cycle` build the bursts;
* :class:`Row` and :func:`emit`: one row of the shared table, printed as Markdown or, with
  ``--json``, as one JSON object per line for ``benchmarks/run_all.py``.

Nothing here asserts a speed.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "Paired",
    "Primitives",
    "Row",
    "burst",
    "emit",
    "environment",
    "k256_verify",
    "limit_cycle",
    "measure_primitives",
    "p256_sign",
    "paired",
    "pin_one_core",
    "primitive_rows",
    "quantile",
    "rate",
    "repeat_rate",
]


def _calibrate(
    fn: Callable[[], Any], clock: Callable[[], float], at_least: float
) -> tuple[int, float]:
    """``(n, seconds)``: the first doubling of ``n`` calls of ``fn`` that takes ``at_least``
    seconds on ``clock`` (or ``n`` reaching 2**24), and how long it took."""
    n = 1
    while True:
        start = clock()
        for _ in range(n):
            fn()
        elapsed = clock() - start
        if elapsed >= at_least or n >= 1 << 24:
            return n, elapsed
        n *= 2


def rate(
    fn: Callable[[], Any], seconds: float = 1.0, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Calls per second of ``fn``: calibrate (about 0.1 s), then time about ``seconds``.

    ``clock`` is :func:`time.perf_counter` (wall time); pass :func:`time.process_time` to
    count only this process's CPU time (robust to other processes on a busy machine).
    """
    n, elapsed = _calibrate(fn, clock, 0.1)
    total = max(1, int(n * seconds / max(elapsed, 1e-9)))
    start = clock()
    for _ in range(total):
        fn()
    return total / max(clock() - start, 1e-9)


def repeat_rate(fn: Callable[[], Any], seconds: float = 1.0, repeats: int = 3) -> float:
    """Median of ``repeats`` :func:`rate` measurements of ``seconds / repeats`` each."""
    return statistics.median(rate(fn, seconds / repeats) for _ in range(repeats))


def quantile(values: Iterable[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, linearly interpolated between ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def burst(
    fn: Callable[[], Any],
    seconds: float = 0.2,
    clock: Callable[[], float] = time.perf_counter,
    per_call: int = 1,
) -> Callable[[], float]:
    """A burst of ``fn``: a no-argument function timing about ``seconds`` of calls.

    The number of calls is calibrated once (when this is called: about 0.1 s of calls)
    and then fixed, so no clock is read inside the loop. Each call of the returned
    function returns the rate of that burst (``per_call`` operations per ``fn`` call:
    e.g. 32 cosigns per ``cosign_many`` batch).
    """
    n, elapsed = _calibrate(fn, clock, 0.05)
    calls = max(1, round(n * seconds / max(elapsed, 1e-9)))

    def run() -> float:
        start = clock()
        for _ in range(calls):
            fn()
        return calls * per_call / max(clock() - start, 1e-9)

    return run


@dataclass(frozen=True)
class Paired:
    """The outcome of :func:`paired`: medians and the spread of the per-pair ratios."""

    ratio: float
    value: float
    reference: float
    p10: float
    p90: float
    pairs: int

    def spread(self) -> str:
        """``"median of N pairs; per-pair ratio p10..p90 a..b"`` for a row's note."""
        return (
            f"median of {self.pairs} pairs; per-pair ratio p10..p90 {self.p10:.2f}..{self.p90:.2f}"
        )


def paired(measured: Callable[[], float], reference: Callable[[], float], pairs: int) -> Paired:
    """Alternate bursts of ``measured`` and ``reference`` (each returns a rate) ``pairs`` times.

    Even pairs run the reference first, odd pairs the measured burst first. Returns the
    median of the per-pair ratios ``measured / reference``, their 10th and 90th
    percentiles, and the median rates of each (the row's value).
    """
    if pairs < 1:
        raise ValueError("pairs must be at least 1")
    ratios: list[float] = []
    values: list[float] = []
    refs: list[float] = []
    for i in range(pairs):
        if i % 2 == 0:
            ref = reference()
            value = measured()
        else:
            value = measured()
            ref = reference()
        values.append(value)
        refs.append(ref)
        ratios.append(value / ref)
    return Paired(
        ratio=statistics.median(ratios),
        value=statistics.median(values),
        reference=statistics.median(refs),
        p10=quantile(ratios, 0.1),
        p90=quantile(ratios, 0.9),
        pairs=pairs,
    )


def pin_one_core() -> int | None:
    """Pin this process to one CPU (the lowest allowed one); returns it, or None if impossible."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


@dataclass(frozen=True)
class Primitives:
    """Primitive rates (ops/s) measured in this run, and the cosign limit they imply."""

    k256_verify: float
    p256_keygen: float
    p256_sign: float

    @property
    def limit(self) -> float:
        """Cosigns per second if only the curve math ran: 1 / (verify + keygen + 2 sign)."""
        return 1.0 / (1 / self.k256_verify + 1 / self.p256_keygen + 2 / self.p256_sign)


def limit_cycle() -> Callable[[], Any]:
    """One call = the limit's curve math: a K-256 verify, a P-256 keygen and two P-256 signs.

    The rate of this function *is* the limit (1 / the sum of the four times), measured in
    one loop; :func:`paired` alternates bursts of it with bursts of cosigns.
    """
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    verify = k256_verify()
    curve = ec.SECP256R1()
    key = ec.generate_private_key(curve)
    data = b"\x42" * 600
    algorithm = ec.ECDSA(hashes.SHA256())

    def cycle() -> None:
        verify()
        ec.generate_private_key(curve)
        key.sign(data, algorithm)
        key.sign(data, algorithm)

    return cycle


def p256_sign() -> Callable[[], Any]:
    """One bare P-256 ECDSA sign of 600 bytes (cryptography), the OCSP rows' reference."""
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    data = b"\x42" * 600
    algorithm = ec.ECDSA(hashes.SHA256())
    return lambda: key.sign(data, algorithm)


def k256_verify() -> Callable[[], bool]:
    """libsecp256k1's raw verify of a 64-byte compact signature, public key parsed once."""
    from coincurve import PrivateKey  # noqa: PLC0415
    from coincurve._libsecp256k1 import ffi, lib  # noqa: PLC0415
    from coincurve.context import GLOBAL_CONTEXT  # noqa: PLC0415

    k256 = PrivateKey(hashlib.sha256(b"holdca-bench").digest())
    message = b"\x5a" * 300
    digest = hashlib.sha256(message).digest()
    compact = k256.sign_recoverable(digest, hasher=None)[:64]
    pub = k256.public_key
    ctx = GLOBAL_CONTEXT.ctx

    def verify() -> bool:
        sig = ffi.new("secp256k1_ecdsa_signature *")
        lib.secp256k1_ecdsa_signature_parse_compact(ctx, sig, compact)
        return bool(lib.secp256k1_ecdsa_verify(ctx, sig, digest, pub.public_key))

    if not verify():  # pragma: no cover - a broken coincurve
        raise RuntimeError("the K-256 reference verify failed")
    return verify


def measure_primitives(seconds: float = 1.0) -> Primitives:
    """Time the three cosign primitives now (``seconds`` each)."""
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    verify = k256_verify()
    curve = ec.SECP256R1()
    key = ec.generate_private_key(curve)
    data = b"\x42" * 600
    algorithm = ec.ECDSA(hashes.SHA256())
    return Primitives(
        k256_verify=rate(verify, seconds),
        p256_keygen=rate(lambda: ec.generate_private_key(curve), seconds),
        p256_sign=rate(lambda: key.sign(data, algorithm), seconds),
    )


@dataclass(frozen=True)
class Row:
    """One row of the benchmark table.

    Attributes:
        bench: the benchmark (script) name.
        name: what was measured.
        value: the figure (``unit`` says what it is).
        unit: ``ops/s``, ``s``, ``ms`` ...
        ratio: the figure as a ratio to ``reference`` (same run), or None.
        reference: what the ratio is relative to.
        note: anything else worth a column.
    """

    bench: str
    name: str
    value: float
    unit: str = "ops/s"
    ratio: float | None = None
    reference: str = ""
    note: str = ""


def primitive_rows(bench: str, prims: Primitives) -> list[Row]:
    """The primitive rows (and the limit) as table rows, ratio to the limit."""
    lim = prims.limit
    return [
        Row(bench, "K-256 verify (coincurve, 64-byte compact)", prims.k256_verify),
        Row(bench, "P-256 keygen (cryptography)", prims.p256_keygen),
        Row(bench, "P-256 sign (cryptography, 600 B)", prims.p256_sign),
        Row(bench, "limit = 1/(verify + keygen + 2 sign)", lim, ratio=1.0, reference="limit"),
    ]


def environment() -> str:
    """One line naming the interpreter, the crypto libraries and the CPU count."""
    import coincurve  # noqa: PLC0415
    import cryptography  # noqa: PLC0415

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"python {platform.python_version()}, cryptography {cryptography.__version__}, "
        f"coincurve {getattr(coincurve, '__version__', '?')}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {load:.1f}"
    )


def _fmt(value: float, unit: str) -> str:
    if unit == "ops/s":
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def emit(rows: Iterable[Row], *, as_json: bool, title: str = "") -> None:
    """Print ``rows`` as JSON lines (``as_json``) or as a Markdown table."""
    rows = list(rows)
    if as_json:
        for row in rows:
            print(json.dumps(asdict(row)))
        sys.stdout.flush()
        return
    if title:
        print(f"## {title}\n")
    print("| benchmark | figure | value | unit | ratio | relative to | note |")
    print("|---|---|---:|---|---:|---|---|")
    for r in rows:
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}"
        print(
            f"| {r.bench} | {r.name} | {_fmt(r.value, r.unit)} | {r.unit} | {ratio} "
            f"| {r.reference} | {r.note} |"
        )
