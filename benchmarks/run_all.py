"""Run every holdca benchmark and print one table (optionally write docs/performance.md).

Usage::

    python benchmarks/run_all.py                      # about 10 minutes; prints Markdown
    python benchmarks/run_all.py --output docs/performance.md
    python benchmarks/run_all.py --quick              # shorter rows, no 1M-entry CRL

Each benchmark runs in its own process (a SoftHSM token or CPU pinning in one must not
leak into the next). ``bench_cosign.py``, ``bench_server.py``, ``bench_notation.py``,
``bench_crl_partitions.py`` and ``bench_tlog.py`` emit their rows as JSON lines; the figures of
``bench_atproto.py``, ``bench_crl_ocsp.py`` and ``bench_pkcs11_threads.py`` are read from
their Markdown/text output into the same table, and their full output is kept in an
appendix. Every row carries a ratio to something timed in the same run; absolute figures
are for orientation only.

The two headline cosign rows (MemoryLedger; SQLite ledger, batches of 32) are measured
twice more (``bench_cosign.py --headline-only``, each in a fresh process), and the
Goals section states how much their ratio moved across the three runs.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Row, environment

HERE = Path(__file__).resolve().parent


def run(script: str, *args: str, timeout: float = 1800) -> tuple[int, str, str, float]:
    """(returncode, stdout, stderr, seconds) of ``python benchmarks/<script> args``."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, str(HERE / script), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return 124, "", f"timed out after {timeout} s", time.perf_counter() - t0
    return proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - t0


def json_rows(stdout: str) -> list[Row]:
    """Rows printed by a benchmark run with ``--json``."""
    rows = []
    for raw in stdout.splitlines():
        line = raw.strip()
        if line.startswith("{"):
            rows.append(Row(**json.loads(line)))
    return rows


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _num(text: str) -> float:
    return float(text.replace(",", "").split()[0])


def atproto_rows(stdout: str) -> list[Row]:
    """The ops/s rows of bench_atproto.py's first table (ratio to a bare K-256 verify)."""
    rows = []
    table = ""
    for line in stdout.splitlines():
        if line.startswith("| operation | ops/s"):
            table = "ops"
            continue
        if line.startswith("| step (one proof)"):
            table = "steps"
            continue
        if not line.startswith("|"):
            table = ""
            continue
        cells = _cells(line)
        if not table or cells[0].startswith("---"):
            continue
        if table == "ops":
            rows.append(
                Row(
                    "atproto",
                    cells[0],
                    _num(cells[1]),
                    ratio=_num(cells[3]),
                    reference="bare K-256 verify",
                )
            )
        else:
            rows.append(
                Row(
                    "atproto",
                    f"step: {cells[0]}",
                    _num(cells[2]),
                    unit="µs",
                    ratio=_num(cells[1]),
                    reference="bare K-256 verify (ops/s ratio)",
                )
            )
    return rows


def crl_ocsp_rows(stdout: str) -> list[Row]:
    """CRL sizes/times (ratio to cryptography's builder) and OCSP rates (ratio to one sign)."""
    rows = []
    for line in stdout.splitlines():
        if not line.startswith("|"):
            continue
        cells = _cells(line)
        if re.fullmatch(r"[\d,]+( \(over limit\))?", cells[0]) and len(cells) >= 10:
            n = cells[0]
            rows.append(
                Row(
                    "crl",
                    f"build_crl, {n} entries",
                    _num(cells[1]),
                    unit="s",
                    ratio=_num(cells[7]),
                    reference="cryptography builder, same list",
                    note=f"{cells[2]} B; heap peak {cells[4]} MiB, RSS +{cells[5]} MiB; "
                    f"{cells[9]}x the prebuilt-list floor",
                )
            )
        elif cells[0].startswith("respond_ocsp") and len(cells) >= 4:
            rows.append(
                Row(
                    "ocsp",
                    cells[0],
                    _num(cells[1]),
                    ratio=_num(cells[3]),
                    reference="one bare P-256 sign",
                )
            )
    return rows


def harness_rows(stdout: str) -> list[Row]:
    """Rows of tables printed by ``_harness.emit`` (Markdown), e.g. bench_crl_ocsp's status.

    The columns are ``benchmark | figure | value | unit | ratio | relative to | note``;
    values come back as printed (3 significant digits below 100).
    """
    rows = []
    table = False
    for line in stdout.splitlines():
        if line.startswith("| benchmark | figure | value | unit | ratio |"):
            table = True
            continue
        if not line.startswith("|"):
            table = False
            continue
        cells = _cells(line)
        if not table or cells[0].startswith("---") or len(cells) < 7:
            continue
        ratio = float(cells[4]) if cells[4] else None
        rows.append(Row(cells[0], cells[1], _num(cells[2]), cells[3], ratio, cells[5], cells[6]))
    return rows


def crl_status_rows(stdout: str) -> list[Row]:
    """bench_crl_ocsp.py: its CRL and OCSP tables, then its HoldCA status table."""
    return crl_ocsp_rows(stdout) + harness_rows(stdout)


def pkcs11_rows(stdout: str) -> list[Row]:
    """Signatures/s per mode and thread count (ratio to python-pkcs11's bare sign).

    Reads the lines ``<mode> <threads> <sig/s> <N.NNx> <vs bare> [more columns]``.
    """
    rows = []
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) < 5 or not parts[1].isdigit() or not parts[3].endswith("x"):
            continue
        try:
            value, vs_bare = _num(parts[2]), float(parts[4])
        except ValueError:
            continue
        extra = f"; CPU {parts[5]} µs/sig, {parts[6]} cores" if len(parts) >= 7 else ""
        rows.append(
            Row("pkcs11", f"SoftHSM sign, {parts[0]}, {parts[1]} thread(s)", value,
                ratio=vs_bare, reference="bare python-pkcs11 sign, 1 thread",
                note=f"{parts[3]} vs 1 thread{extra}")
        )  # fmt: skip
    return rows


def table(rows: list[Row]) -> str:
    """The Markdown table of ``rows``."""
    out = [
        "| benchmark | figure | value | unit | ratio | relative to (same run) | note |",
        "|---|---|---:|---|---:|---|---|",
    ]
    for r in rows:
        big = r.unit == "ops/s" or r.value >= 100
        value = f"{r.value:,.0f}" if big else f"{r.value:.3g}"
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}"
        out.append(
            f"| {r.bench} | {r.name} | {value} | {r.unit} | {ratio} | {r.reference} | {r.note} |"
        )
    return "\n".join(out)


DOC_HEADER = """# Performance

Regenerate: `python benchmarks/run_all.py --output docs/performance.md` (about 10 minutes;
needs SoftHSM and the notation CLI for their rows; `--quick` for a short run).

How to read it. The machine a benchmark runs on is noisy (shared CPUs, other processes), so
every figure is printed with a ratio to something timed *in the same process run*:

* **cosign rows** are a ratio to the **limit** = 1 / (K-256 verify + P-256 keygen +
  2 P-256 signs), the most cosigns per second one core could do if only the unavoidable
  curve math ran (coincurve's libsecp256k1 compact verify, cryptography's keygen and
  sign). A cosign is the whole `HoldCA.cosign`: the trust gate (the
  hold resolves the DID and fetches the getRecord proof itself, then verifies it for a
  10k-record repo and checks that the record names this hold and this image), ephemeral
  key, leaf issuance, JWS, signature manifest, ledger commit, audit event.
* **the resolver of the cosign rows** is in process: a `FrozenNetwork` (a `TestNetwork`
  whose repo renders its DID document and builds each getRecord CAR once, so a fetch is a
  dict lookup and a fresh resolution parses the document). Unless a row says otherwise,
  requests carry no proof hint (the hold fetches the proof, the realistic server path) and
  the DID is resolved anew for every issuance (`reuse_identities=False`, the default). The
  "proof hint" rows send the getRecord CAR with the request (the gate verifies it and asks
  only for the latest commit), the "cached identities" row reuses the resolver's identity,
  and the "plain TestNetwork" row lets the test repo render its document and build the CAR
  in every cosign (work a real hold's PDS does). In production a fresh did:plc resolution
  also fetches and verifies the DID's PLC log: the `verify_audit_log` row says what that
  adds on the CPU, and the server rows measure the HTTP fetches.
* **paired bursts**: each cosign row alternates about 0.2 s of cosigns with about 0.2 s of
  the limit's curve math (one call = one K-256 verify, one P-256 keygen, two P-256 signs,
  so its rate is the limit), 16 pairs, the order flipped every pair; the ratio is the
  median of the per-pair ratios and the note gives their 10th-90th percentiles. Rows
  marked CPU time use process time for both halves (other processes on the core do not
  count), the others wall time (the ledger's syncs are waits). Before this change each
  row was one 1 s run against primitives timed before and after it (issue 13 saw one row
  between 0.12 and 0.36 in three runs). Measured when the change was made (2026-12-02, this
  machine, the new trust-gate API, `bench_cosign.py --headline-only [--unpaired]`, three
  fresh processes each): the MemoryLedger row gave 0.162, 0.162 and 0.177 the old way and
  0.199, 0.200 and 0.203 paired; the SQLite batch row 0.106, 0.123 and 0.150 the old way
  and 0.136, 0.146 and 0.155 paired. The paired ratios are also higher: the old method
  timed the cosigns in wall time against the faster of two timings of each primitive, and
  on a busy machine both push the ratio down. The Goals section gives the run-to-run
  range of the two headline rows for the run that wrote this page (two extra runs of
  those rows).
* **the ledger commit** is durable (SQLite WAL, `synchronous=FULL`): one sync to disk per
  transaction, which alone costs more than a cosign at the limit. The headline rows
  therefore use `HoldCA.cosign_many` with batches of 32 requests: each request is checked
  and signed as `cosign` does, the 32 issuances are committed in one transaction, and only
  then is anything handed out. A threaded server gets the same sharing from the ledger's
  group commit (the "8 threads" row); the "one commit per cosign" rows show the cost
  without it, and the MemoryLedger row the CPU alone.
* **stage rows** are CPU microseconds of each step inside real cosigns, as a share of
  one cosign's CPU time: where the time goes (the trust gate's resolve, fetch and proof
  verification are nested under it).
* **floor and ceiling rows** bound what any implementation on this interpreter could
  reach: the proof's C calls alone (sha256 of every CAR block and visited MST key, the
  strict decoder on every visited block; no Python per item) and the ceiling = 1 / (the
  limit's primitives + those calls). What is left of the 0.5 goal's time after them is
  the budget for all the Python of a cosign.
* **scaling rows** compare 2 worker processes with 1 (each pinned to its own core, doing
  batches of 32).
* **server rows** (bench_server.py) run the reference app under uvicorn (`uvicorn_config`,
  what `holdca serve` runs) in its own process pinned to one CPU, so that the load
  generator's Python does not share its GIL; each request carries a fresh service-auth
  JWT, the hold resolves the DID through `HTTPResolver` with `reuse_identities=True` (the
  PLC log is fetched and verified once) and fetches the proof from a PDS stand-in (a small
  asyncio HTTP server in a third process, prebuilt answers) for every request. Clients: 1,
  8 or 64 concurrent keep-alive connections on a minimal HTTP/1.1 client (httpx's async
  client costs more CPU per request than the hold's cosign). Requests/s is a ratio to
  `HoldCA.cosign_many` (batches of 32, FrozenNetwork, no HTTP) run on the hold's CPU while
  the hold is idle, in alternating bursts (0.4 s of HTTP, 0.2 s of the reference, median
  of the per-pair ratios); "hold CPU" is the hold process's CPU seconds per second during
  the HTTP bursts (1.00: its core was the bottleneck). The component rows say where a
  served request's CPU goes: the hold's HTTP fetch of the proof against a bare-socket GET,
  `cosign_many` with the proof fetched over HTTP against the FrozenNetwork, and
  service-auth verification against one K-256 verify.
* **status rows** (bench_crl_ocsp.py, paired bursts against one bare P-256 sign): OCSP
  through `HoldCA.ocsp` with a cached answer (the goal: at least 10x a bare sign), the
  first request for a certificate (parse, ledger lookups, sign, cache), a request with a
  fresh nonce (never cached) and a serial the hold never issued (`unauthorized`, unsigned);
  `HoldCA.crl_der` (what `GET /ca.crl` serves) with 0, 10k and 100k revocations once
  built, each against `crl_der` with 0 revocations: a ratio of 1.00 means the time per
  call does not grow with the revocations. The first call, which builds and signs the CRL,
  is in the note. The server rows have `POST /ocsp` and `GET /ca.crl` over HTTP, where the
  time grows with the bytes sent.
* **notation rows**: `notation verify` wall time (median) of a holdca-made signature vs a
  notation-made signature of the same image with the same key and chain.
* **tlog rows** (bench_tlog.py): cosigns with the transparency log vs the same hold
  without it, paired bursts, 8 threads and `cosign_many` batches of 32, MemoryLedger and
  SQLite; the ratio is with / without (1 = the log costs nothing).
* **replica rows** (bench_replicas.py): `holdca serve` processes started from one home
  directory, 1 replica vs 2 sharing one PostgreSQL (and one SQLite file), the same number
  of clients spread over both, paired bursts; the note says where the CPU went (the
  database, the PDS stand-in and the clients share the same 2 cores).
* **CRL/OCSP, ATProto and PKCS#11 rows** come from their own scripts (benchmarks/); their
  full output is in the appendix.

Goals (issue 7): cosign with the CA key in memory >= 0.5 of the limit, on SoftHSM >= 0.3,
2 worker processes >= 1.8x one; (issue 13) a cached OCSP answer >= 10x a bare P-256 sign,
`GET /ca.crl` O(1) in the revocations once built; (issue 16) 2 replicas on one PostgreSQL
>= 1.8x one (server path). The server rows are informational.
"""

GOALS = [
    ("cosign, CA key in memory, SQLite ledger, cosign_many batches of 32", 0.5,
     "CA key in memory (SQLite ledger, batches of 32)"),
    ("cosign, CA key in memory, MemoryLedger", 0.5, "CA key in memory (MemoryLedger)"),
    ("cosign, CA key on SoftHSM, SQLite ledger, cosign_many batches of 32", 0.3,
     "CA key on SoftHSM (SQLite ledger, batches of 32)"),
    ("cosign, 2 worker processes, PEM CA, a MemoryLedger each", 1.8,
     "2 workers vs 1 (in-memory ledgers: CPU scaling)"),
    ("cosign, 2 worker processes, PEM CA, own SQLite ledger each", 1.8,
     "2 workers vs 1 (own SQLite ledgers)"),
    ("cosign, 2 worker processes, PEM CA, one shared SQLite ledger", 1.8,
     "2 workers vs 1 (shared ledger)"),
    ("POST coSignManifest, 2 replicas sharing one PostgreSQL, 32 clients", 1.8,
     "2 holdca serve replicas vs 1 on one PostgreSQL (server path, 32 clients)"),
    ("HoldCA.ocsp, cached answer (MemoryLedger)", 10.0, "cached OCSP >= 10x bare sign"),
]  # fmt: skip

HEADLINE = {
    "cosign, CA key in memory, MemoryLedger": "MemoryLedger",
    "cosign, CA key in memory, SQLite ledger, cosign_many batches of 32":
        "SQLite ledger, batches of 32",
}  # fmt: skip
"""The rows whose run-to-run movement the Goals section reports (row name: label)."""


def run_to_run(rows: list[Row], repeats: list[list[Row]]) -> list[str]:
    """Lines on how much each headline ratio moved across the main run and the repeats."""
    lines = []
    for name, label in HEADLINE.items():
        ratios = [r.ratio for run in ([rows], repeats) for rs in run for r in rs
                  if r.name == name and r.ratio is not None]  # fmt: skip
        if len(ratios) < 2:
            continue
        low, high = min(ratios), max(ratios)
        middle = (low + high) / 2
        lines.append(
            f"- {label}: {', '.join(f'{x:.3f}' for x in ratios)} in {len(ratios)} runs: "
            f"range {high - low:.3f} ({100 * (high - low) / middle:.0f}% of its middle)"
        )
    if not lines:
        return []
    return [
        "",
        "Run to run: the headline ratios of this run and of two more runs of the same rows "
        "(`bench_cosign.py --headline-only`, fresh processes, paired bursts):",
        "",
        *lines,
    ]


def server_lines(rows: list[Row]) -> list[str]:
    """The server rows in short (informational: no goal)."""
    served = [r for r in rows if r.bench == "server" and r.name.startswith("POST coSign")]
    if not served:
        return []
    out = [
        "",
        "The server end to end (informational; requests/s as a ratio to HoldCA.cosign_many "
        "in the same run; latency at the client):",
        "",
    ]
    for r in served:
        latency = r.note.split(";")[0]
        out.append(
            f"- {r.name.removeprefix('POST coSignManifest over HTTP, ')}: {r.value:,.0f} req/s, "
            f"{r.ratio or 0:.2f}; {latency}"
        )
    return out


def headroom(by_name: dict[str, Row]) -> list[str]:
    """Lines on what the floor and ceiling rows say about the CPU goals (none if absent)."""
    floor = next((r for n, r in by_name.items() if n.startswith("floor: ")), None)
    ceiling = by_name.get("ceiling: limit primitives + the proof's C calls, no Python at all")
    budget = by_name.get("time per cosign left for everything else at the 0.5 goal")
    spent = next((r for n, r in by_name.items() if n.startswith("time per cosign spent")), None)
    hsm = by_name.get("ceiling on SoftHSM: as above, the CA's sign on SoftHSM")
    if floor is None or ceiling is None or budget is None or spent is None:
        return []
    lines = [
        "",
        f"Headroom: the proof's C calls alone ({floor.note.split(',')[0]}) take "
        f"{floor.value:.0f} µs, {floor.ratio or 0:.2f} of the limit's time, so even with no "
        f"Python at all a cosign could reach {ceiling.ratio or 0:.2f} of the limit"
        + (f" ({hsm.ratio or 0:.2f} with the CA key on SoftHSM)" if hsm else "")
        + f". At the 0.5 goal, {budget.value:.0f} µs per cosign would be left for all of its "
        f"Python: policy, URI and CAR framing, the MST invariants of every visited entry, the "
        f"certificate's DER, the JWS and manifest JSON, the ledger record. It takes "
        f"{spent.value:.0f} µs ({spent.ratio or 0:.1f}x that budget).",
    ]
    return lines


def goals(rows: list[Row], repeats: list[list[Row]] | None = None) -> str:
    """A Markdown list: each goal, the measured ratio, met or missed; then the run-to-run
    movement of the headline rows, the server rows, the headroom and the stages."""
    by_name = {r.name: r for r in rows}
    out = ["## Goals", ""]
    for name, goal, label in GOALS:
        row = by_name.get(name)
        if row is None or row.ratio is None:
            out.append(f"- {label}: not measured")
            continue
        verdict = "met" if row.ratio >= goal else "**missed**"
        out.append(f"- {label}: {row.ratio:.2f} (goal >= {goal:g}): {verdict}")
    out += run_to_run(rows, repeats or [])
    out += server_lines(rows)
    out += headroom(by_name)
    groups: list[list[Row]] = []  # a step and its indented sub-steps, kept together
    for r in rows:
        if r.name.startswith("stage: ") and r.ratio is not None and r.value >= 0.5:
            if r.name[7:].startswith(" ") and groups:
                groups[-1].append(r)
            else:
                groups.append([r])
    groups.sort(key=lambda g: -(g[0].ratio or 0.0))
    stages = [r for g in groups for r in g]
    if stages:
        out += [
            "",
            "Where a cosign's time goes (time spent in each step inside real cosigns, largest "
            "first; CPU time, except the SQLite commit, which is wall time):",
            "",
        ]
        for r in stages:
            name = r.name[7:]
            indent = "  " if name.startswith(" ") else ""
            out.append(f"{indent}- {name.strip()}: {r.value:,.0f} µs ({r.ratio:.0%})")
    return "\n".join(out) + "\n"


def main() -> int:
    """Run everything, print the table (and write ``--output``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.3 s rows, no 1M CRL")
    parser.add_argument("--output", type=Path, help="also write this Markdown file")
    parser.add_argument("--header", type=Path, help="text placed before the table in --output")
    args = parser.parse_args()
    secs = "0.3" if args.quick else "1.0"
    plan: list[tuple[str, list[str], str]] = [
        ("bench_cosign.py", ["--json", "--seconds", secs], "json"),
        ("bench_cosign.py", ["--json", "--headline-only", "--seconds", secs], "repeat"),
        ("bench_server.py", ["--json", "--seconds", secs], "json"),
        ("bench_replicas.py", ["--json", "--seconds", secs], "json"),
        ("bench_tlog.py", ["--json", "--seconds", secs], "json"),
        ("bench_fetch.py", ["--json", "--seconds", secs], "json"),
        ("bench_cosign.py", ["--json", "--headline-only", "--seconds", secs], "repeat"),
        ("bench_notation.py", ["--json", "--runs", "5" if args.quick else "25"], "json"),
        ("bench_atproto.py", ["--seconds", secs], "atproto"),
        ("bench_crl_ocsp.py", [] if args.quick else ["--full"], "crl"),
        (
            "bench_crl_partitions.py",
            ["--json", "--revocations", "100000" if args.quick else "1000000"],
            "json",
        ),
        (
            "bench_pkcs11_threads.py",
            ["--seconds", "0.5" if args.quick else "2", "--repeats", "1" if args.quick else "3"],
            "pkcs11",
        ),
    ]
    parsers = {
        "json": json_rows,
        "repeat": json_rows,
        "atproto": atproto_rows,
        "crl": crl_status_rows,
        "pkcs11": pkcs11_rows,
    }
    rows: list[Row] = []
    repeats: list[list[Row]] = []  # the headline rows measured again (not in the table)
    raw: list[tuple[str, str]] = []
    failures: list[str] = []
    started = datetime.now(UTC)
    for script, script_args, kind in plan:
        print(f"running {script} {' '.join(script_args)} ...", file=sys.stderr, flush=True)
        code, out, err, took = run(script, *script_args)
        if code != 0:
            failures.append(f"{script} exited {code}: {err.strip().splitlines()[-1:] or ''}")
            print(f"  FAILED ({code}): {err.strip()[-2000:]}", file=sys.stderr)
        got = parsers[kind](out)
        if code == 0 and not got:
            failures.append(f"{script}: no rows recognised in its output")
        if kind == "repeat":
            repeats.append(got)
        else:
            rows += got
        if kind not in ("json", "repeat"):
            raw.append((f"{script} {' '.join(script_args)} ({took:.0f} s)", out.rstrip()))
        print(f"  {len(got)} rows, {took:.0f} s", file=sys.stderr, flush=True)
    text = table(rows)
    print(text)
    for failure in failures:
        print(f"\nFAILED: {failure}")
    if args.output:
        header = args.header.read_text() if args.header else DOC_HEADER
        parts = [
            header.rstrip() + "\n",
            f"Generated {started:%Y-%m-%d %H:%M} UTC by `python benchmarks/run_all.py"
            f"{' --quick' if args.quick else ''} --output {args.output}` on: {environment()}.\n",
            goals(rows, repeats),
            "## All figures\n",
            text,
            "",
            *(f"FAILED: {f}\n" for f in failures),
            "## Appendix: full output of the component benchmarks\n",
        ]
        for title, body in raw:
            parts += [f"### {title}\n", "```", body, "```", ""]
        args.output.write_text("\n".join(parts))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
