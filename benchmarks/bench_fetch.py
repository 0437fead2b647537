"""Benchmark: the CPU cost of one ``holdca.net.Fetcher.get``, against a bare-socket GET.

What runs where:

* **the server**: a small threaded HTTP/1.1 server (keep-alive) in its **own process**
  (pinned to another CPU where there is one, so its CPU time is not billed here), answering
  every GET with one prebuilt response: ``--body`` bytes with ``Content-Length``, over plain
  http and over https (a throwaway CA; the certificate names ``pds.bench.example``).
* **the fetcher**: ``Fetcher(AddressPolicy.parse("127.0.0.0/8", resolve=...))``, the name
  mapped to 127.0.0.1 by an injected resolver, GETting a ``com.atproto.sync.getRecord`` URL
  with its three query parameters (as the hold's resolver does). One keep-alive connection
  is reused: the hold's steady state against one PDS.
* **the reference**: a bare-socket GET of the same request target and headers on one
  keep-alive socket (plain, or TLS with the same client context): send prebuilt request
  bytes, read the head, take ``Content-Length``, read the body. About the least Python a
  GET can take.

Figures are CPU time of this process (``time.process_time``), in alternating bursts
(``_harness.paired``: about 0.2 s of each, the order flipped every pair), medians of the
pairs. The value is microseconds of CPU per GET; the ratio is (Fetcher.get cost) / (bare GET
cost) of the same pair, its p10..p90 in the note.

``--compare-with PATH`` also times the ``Fetcher`` of another copy of ``fetch.py`` (for
instance ``git show HEAD:holdca/net/fetch.py > /tmp/fetch_old.py``) in the same run, each
fetcher paired against the bare GET, so before/after figures share one run.

Usage: ``python benchmarks/bench_fetch.py [--seconds 1.0] [--body 2048] [--json]``
(about 20 s at ``--seconds 1``). Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import multiprocessing as mp
import os
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _harness import Paired, Row, burst, emit, environment, paired, quantile

from holdca import __version__
from holdca.net import AddressPolicy, Fetcher
from holdca.testing.tls import TestPKI

BENCH = "fetch"
NAME = "pds.bench.example"
PATH = "/xrpc/com.atproto.sync.getRecord"
PARAMS = {
    "did": "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
    "collection": "io.atcr.manifest",
    "rkey": "3l3qo2vutsw2b",
}
ACCEPT = "application/vnd.ipld.car"
PAIRS = 8
"""Pairs of bursts per row at ``--seconds 1`` (scaled with it, at least 4)."""
BURST = 0.2


# --- the server process ---------------------------------------------------------------------


def _serve_connection(conn: socket.socket, reply: bytes, tls: ssl.SSLContext | None) -> None:
    try:
        if tls is not None:
            conn = tls.wrap_socket(conn, server_side=True)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = b""
        while True:
            while (end := buffer.find(b"\r\n\r\n")) < 0:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            buffer = buffer[end + 4 :]
            conn.sendall(reply)
    except OSError:
        return
    finally:
        conn.close()


def _accept(listener: socket.socket, reply: bytes, tls: ssl.SSLContext | None) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_serve_connection, args=(conn, reply, tls), daemon=True).start()


def _run_server(
    plain: socket.socket,
    secure: socket.socket,
    reply: bytes,
    cert: str,
    key: str,
    cpu: int | None,
    stop: Any,
) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    for listener, context in ((plain, None), (secure, tls)):
        threading.Thread(target=_accept, args=(listener, reply, context), daemon=True).start()
    with contextlib.suppress(EOFError, OSError):
        stop.recv()


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


@contextlib.contextmanager
def server(body: int, directory: Path) -> Iterator[tuple[int, int, ssl.SSLContext]]:
    """Start the server process; yields (http port, https port, client TLS context)."""
    pki = TestPKI(name="bench_fetch CA")
    cert_path, key_path = pki.server_files(directory, NAME)
    client, cert, key = pki.client_context(), str(cert_path), str(key_path)
    reply = (
        f"HTTP/1.1 200 OK\r\nContent-Type: {ACCEPT}\r\nContent-Length: {body}\r\n\r\n".encode()
        + os.urandom(body)
    )
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[0]})
    plain, secure = _listen(), _listen()
    ctx = mp.get_context("fork")  # before this process starts any thread
    ours, theirs = ctx.Pipe()
    process = ctx.Process(
        target=_run_server,
        args=(plain, secure, reply, cert, key, cpus[1] if len(cpus) >= 2 else None, theirs),
        daemon=True,
    )
    process.start()
    ports = plain.getsockname()[1], secure.getsockname()[1]
    plain.close()
    secure.close()
    try:
        yield ports[0], ports[1], client
    finally:
        with contextlib.suppress(OSError):
            ours.send("stop")
        process.join(5)
        if process.is_alive():
            process.terminate()
            process.join(5)


# --- the two clients ------------------------------------------------------------------------


class BareGET:
    """One keep-alive socket; a GET is: send the request bytes, read head and body."""

    def __init__(self, port: int, context: ssl.SSLContext | None, target: str) -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = context.wrap_socket(sock, server_hostname=NAME) if context else sock
        self.request = (
            f"GET {target} HTTP/1.1\r\nHost: {NAME}:{port}\r\nAccept: {ACCEPT}\r\n"
            f"Accept-Encoding: identity\r\nUser-Agent: holdca/{__version__}\r\n\r\n"
        ).encode()

    def get(self) -> bytes:
        sock = self.sock
        sock.sendall(self.request)
        data = b""
        while (end := data.find(b"\r\n\r\n")) < 0:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        head = data[:end].lower()
        if not head.startswith(b"http/1.1 200 "):
            raise ConnectionError("not a 200")
        length = int(head.partition(b"\r\ncontent-length:")[2].partition(b"\r\n")[0])
        body = bytearray(data[end + 4 :])
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            body += chunk
        return bytes(body)

    def close(self) -> None:
        self.sock.close()


def _load_fetcher(path: Path) -> type[Fetcher]:
    spec = importlib.util.spec_from_file_location("holdca_net_fetch_compared", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    fetcher: type[Fetcher] = module.Fetcher
    return fetcher


def _cost_ratio(p: Paired) -> tuple[float, float, float]:
    """(median, p10, p90) of fetch cost / bare cost from a pairing of fetch and bare rates."""
    return 1 / p.ratio, 1 / p.p90, 1 / p.p10


def measure(
    label: str,
    fetcher_class: type[Fetcher],
    url: str,
    bare: BareGET,
    context: ssl.SSLContext,
    body: int,
    pairs: int,
) -> list[Row]:
    policy = AddressPolicy.parse("127.0.0.0/8", resolve=lambda _h, _p: ["127.0.0.1"])
    fetcher = fetcher_class(policy, verify=context)
    try:

        def fetch() -> None:
            got = fetcher.get(url, limit=1 << 20, accept=ACCEPT, params=PARAMS)
            if got.status != 200 or len(got.body) != body:
                raise RuntimeError(f"unexpected answer {got.status}, {len(got.body)} bytes")

        fetch()
        bare.get()
        cpu = time.process_time
        fetch_rates: list[float] = []
        bare_rates: list[float] = []
        fetch_burst, bare_burst = burst(fetch, BURST, cpu), burst(bare.get, BURST, cpu)

        def timed_fetch() -> float:
            fetch_rates.append(fetch_burst())
            return fetch_rates[-1]

        def timed_bare() -> float:
            bare_rates.append(bare_burst())
            return bare_rates[-1]

        result = paired(timed_fetch, timed_bare, pairs)
    finally:
        fetcher.close()
    ratio, low, high = _cost_ratio(result)
    fetch_us = 1e6 / result.value
    bare_us = 1e6 / result.reference
    fastest, slowest = 1e6 / quantile(fetch_rates, 0.9), 1e6 / quantile(fetch_rates, 0.1)
    spread = (
        f"median of {result.pairs} pairs; per-pair ratio p10..p90 {low:.1f}..{high:.1f}; "
        f"Fetcher.get p10..p90 {fastest:.0f}..{slowest:.0f} µs"
    )
    return [
        Row(BENCH, f"{label}: Fetcher.get", fetch_us, "µs CPU", ratio, "bare-socket GET", spread),
        Row(BENCH, f"{label}: bare-socket GET", bare_us, "µs CPU", 1.0, "bare-socket GET"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="scales the pair count")
    parser.add_argument("--body", type=int, default=2048, help="response body bytes")
    parser.add_argument("--json", action="store_true", help="JSON lines for run_all.py")
    parser.add_argument(
        "--compare-with",
        type=Path,
        metavar="PATH",
        help="also time the Fetcher of this copy of fetch.py (same run)",
    )
    args = parser.parse_args()
    pairs = max(4, round(PAIRS * args.seconds))
    classes: list[tuple[str, type[Fetcher]]] = [("", Fetcher)]
    if args.compare_with is not None:
        classes.append((f" [{args.compare_with.name}]", _load_fetcher(args.compare_with)))
    target = f"{PATH}?{urlencode(PARAMS)}"
    rows: list[Row] = []
    with (
        tempfile.TemporaryDirectory() as directory,
        server(args.body, Path(directory)) as (
            http_port,
            https_port,
            context,
        ),
    ):
        for scheme, port, tls in (("http", http_port, None), ("https", https_port, context)):
            bare = BareGET(port, tls, target)
            try:
                for suffix, cls in classes:
                    label = f"{scheme}, {args.body} B body, keep-alive{suffix}"
                    url = f"{scheme}://{NAME}:{port}{PATH}"
                    rows += measure(label, cls, url, bare, context, args.body, pairs)
            finally:
                bare.close()
    if not args.json:
        print(environment() + "\n")
    emit(rows, as_json=args.json, title="Fetcher.get: CPU per GET against a bare-socket GET")
    return 0


if __name__ == "__main__":
    sys.exit(main())
