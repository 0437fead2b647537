"""Real ``holdca serve`` processes against a PDS and PLC stand-in, for tests and benchmarks.

* :class:`StandIn`: a small asyncio HTTP/1.1 server (keep-alive) in a **forked process**,
  answering ``/{did}/log/audit`` (a signed PLC log from :mod:`holdca.testing.plc`),
  ``com.atproto.sync.getRecord`` and ``getLatestCommit`` from prebuilt bytes for each
  :class:`Site` (one DID's repo). A hold points ``HOLD_PLC_URL`` at it and the DID
  documents name it as the PDS, so a hold in another process resolves and fetches proofs
  over real HTTP on 127.0.0.1. :func:`site_of` builds a site from a ``plc_repo``.
* :class:`ServeProcess`: ``python -m holdca serve --home HOME --port PORT`` as a child
  process (its own session), waited for until ``GET /ca.crt`` answers; :meth:`kill`
  sends SIGKILL, :meth:`stop` SIGTERM (then SIGKILL).
* :func:`hold_env` and :func:`run_cli`: the environment of such a hold (``HOLD_*`` from the
  caller's environment removed) and one ``holdca`` command (``init``, ``rotate``, ...) run
  as a separate process with it.

Nothing here imports pytest; failures raise :class:`FleetError`.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from holdca.testing.atproto import TestRepo
from holdca.testing.plc import TestPLC

__all__ = [
    "FleetError",
    "ServeProcess",
    "Site",
    "StandIn",
    "free_port",
    "hold_env",
    "listen",
    "run_cli",
    "site_of",
]


class FleetError(RuntimeError):
    """A stand-in or hold process did not start, or a ``holdca`` command failed."""


@dataclass(frozen=True)
class Site:
    """What the stand-in serves for one DID: its PLC log, record CARs and latest commit."""

    did: str
    log: bytes
    cars: dict[str, bytes]  # rkey -> getRecord CAR
    latest: bytes


def site_of(repo: TestRepo, plc: TestPLC, uris: Sequence[str]) -> Site:
    """The :class:`Site` of ``repo`` (registered by ``plc``) serving the records ``uris``."""
    cars = {uri.rsplit("/", 1)[1]: repo.get_record_car(uri) for uri in uris}
    latest = json.dumps({"cid": str(repo.commit_cid), "rev": repo.rev}).encode()
    return Site(repo.did, plc.audit_log(), cars, latest)


def listen() -> socket.socket:
    """A listening TCP socket on 127.0.0.1 (an ephemeral port), ``proto=IPPROTO_TCP`` so
    that asyncio turns Nagle's algorithm off on accepted sockets."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for ``holdca serve --port``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Protocol(asyncio.Protocol):
    """HTTP/1.1 GETs with keep-alive, answered from :class:`Site` bytes."""

    def __init__(self, sites: Mapping[str, Site], served: Any) -> None:
        self.sites = sites
        self.served = served
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            parts = head.split(b" ", 2)
            target = parts[1].decode("ascii", "replace") if len(parts) > 1 else "/"
            status, body, kind = self.route(target)
            assert self.transport is not None
            self.transport.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            with self.served.get_lock():
                self.served.value += 1

    def route(self, target: str) -> tuple[str, bytes, str]:
        url = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path.endswith("/log/audit"):
            site = self.sites.get(url.path.removeprefix("/").removesuffix("/log/audit"))
            if site is not None:
                return "200 OK", site.log, "application/json"
        site = self.sites.get(query.get("did", ""))
        if url.path == "/xrpc/com.atproto.sync.getRecord" and site is not None:
            car = site.cars.get(query.get("rkey", ""))
            if car is not None:
                return "200 OK", car, "application/vnd.ipld.car"
            body = b'{"error":"RecordNotFound","message":"no such record"}'
            return "400 Bad Request", body, "application/json"
        if url.path == "/xrpc/com.atproto.sync.getLatestCommit" and site is not None:
            return "200 OK", site.latest, "application/json"
        return "404 Not Found", b'{"error":"NotFound"}', "application/json"


def _serve(sock: socket.socket, sites: Mapping[str, Site], served: Any, cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Protocol(sites, served), sock=sock)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class StandIn:
    """The PDS and PLC stand-in, in a forked process (start it before any thread exists)."""

    def __init__(self, sock: socket.socket, sites: Sequence[Site], *, cpu: int | None = None):
        """Fork the server on the listening ``sock`` (closed here: the child has it).

        ``sock`` comes first so that the sites' DID documents can name its URL
        (:func:`listen`, then ``plc_repo(pds_endpoint=url)``, then this).
        """
        ctx = mp.get_context("fork")
        self.port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.served = ctx.Value("q", 0)
        by_did = {site.did: site for site in sites}
        self.process = ctx.Process(
            target=_serve, args=(sock, by_did, self.served, cpu), daemon=True
        )
        self.process.start()
        sock.close()

    @property
    def allow(self) -> str:
        """The ``HOLD_NETWORK_ALLOW`` entry that lets a hold reach it."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Terminate the server process."""
        self.process.terminate()
        self.process.join(5)


def hold_env(stand_in: StandIn, *, ledger_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a hold using ``stand_in``: this process's environment without
    any ``HOLD_*`` variable, then ``HOLD_PLC_URL``, ``HOLD_NETWORK_ALLOW``,
    ``HOLD_LEDGER_URL`` (when given) and ``extra`` (``HOLD_RATE_LIMIT_PER_HOUR="0"``...)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLD_")}
    env.update(HOLD_PLC_URL=stand_in.url, HOLD_NETWORK_ALLOW=stand_in.allow)
    if ledger_url is not None:
        env["HOLD_LEDGER_URL"] = ledger_url
    env.update(extra)
    return env


def run_cli(
    home: Path, env: Mapping[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m holdca <args> --home HOME`` as its own process.

    Raises:
        FleetError: it exited non-zero (its stderr in the message).
    """
    done = subprocess.run(
        [sys.executable, "-m", "holdca", *args, "--home", str(home)],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise FleetError(f"holdca {args[0]} exited {done.returncode}: {done.stderr.strip()}")
    return done


class ServeProcess:
    """``holdca serve`` as a child process on 127.0.0.1."""

    def __init__(
        self,
        home: Path,
        env: Mapping[str, str],
        *,
        port: int | None = None,
        extra: Sequence[str] = (),
        cpu: int | None = None,
        wait: float = 60.0,
    ) -> None:
        """Start it (``cpu``: pin it to that CPU with ``taskset``-like affinity) and wait
        until ``GET /ca.crt`` answers 200.

        Raises:
            FleetError: it exited, or did not answer within ``wait`` seconds (its stderr
                is in the message).
        """
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.stderr_path = home / f"serve-{self.port}.err"
        cpus = {cpu} if cpu is not None else None

        def pin() -> None:  # pragma: no cover - runs in the child
            if cpus is not None:
                os.sched_setaffinity(0, cpus)

        with self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "holdca", "serve", "--home", str(home),
                 "--port", str(self.port), *extra],
                env=dict(env),
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
                preexec_fn=pin if cpus is not None else None,  # noqa: PLW1509
            )  # fmt: skip
        self._wait(wait)

    def _wait(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while True:
            if self.process.poll() is not None:
                raise FleetError(f"holdca serve exited {self.process.returncode}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    sock.sendall(b"GET /ca.crt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if sock.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise FleetError(f"holdca serve did not answer in {wait:.0f} s: {self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        """The tail of its stderr."""
        try:
            return self.stderr_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def cpu_seconds(self) -> float:
        """Its CPU time so far (user + system), from /proc."""
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """SIGKILL, then wait for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 20 s), then wait for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
