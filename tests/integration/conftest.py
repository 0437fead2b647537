"""The ``atproto_net`` fixture: the reference PLC directory and PDS, running on 127.0.0.1.

``scripts/atproto-net.sh install`` (run by ``make test``) installs them, with Node 22, into a
cache directory, and ``scripts/test.sh`` exports it as ``$HOLDCA_ATPROTO_NET``. Without it the
tests here skip (fail under ``CI=true``). Each test process (each xdist worker) starts its own
network from ``tests/atproto_net/start.mjs``, once per session.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.pds_client import ATProtoClient
from tests.tools import missing

START_SCRIPT = Path(__file__).resolve().parent.parent / "atproto_net" / "start.mjs"
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0
MARKER = "holdca-atproto-net.json"  # written last by scripts/atproto-net.sh install


@dataclass
class ATProtoNet:
    """A running network: its URLs, its process, and a client for it.

    Attributes:
        plc_url: the PLC directory (``http://127.0.0.1:<port>``).
        pds_url: the PDS, as its DID documents name it (``http://localhost:<port>``).
        pds_did: the PDS's service DID (``did:web:localhost``).
        admin_password: the PDS's admin password (random per run).
        versions: node, pds, plc, crypto.
        client: an :class:`ATProtoClient` for both.
        process: the ``node start.mjs`` process.
        workdir: its temporary directory (data dir, stdout and stderr logs).
        startup_seconds: from spawning Node to the READY line.
    """

    plc_url: str
    pds_url: str
    pds_did: str
    admin_password: str = field(repr=False)
    versions: dict[str, str]
    client: ATProtoClient
    process: subprocess.Popen[bytes] = field(repr=False)
    workdir: Path
    startup_seconds: float
    ready: dict[str, Any] = field(repr=False)

    @property
    def stderr_path(self) -> Path:
        return self.workdir / "stderr.log"


def install_dir() -> Path:
    """The install named by ``$HOLDCA_ATPROTO_NET``; skip (fail in CI) when unset."""
    value = os.environ.get("HOLDCA_ATPROTO_NET")
    if not value:
        missing(
            "the ATProto reference network (npm; scripts/atproto-net.sh install, "
            "then HOLDCA_ATPROTO_NET=$(scripts/atproto-net.sh path))"
        )
        raise AssertionError("unreachable")
    path = Path(value)
    node = path / "node" / "bin" / "node"
    if not (path / MARKER).is_file() or not node.is_file():
        pytest.fail(
            f"HOLDCA_ATPROTO_NET={value} is not a complete install "
            "(run scripts/atproto-net.sh install and use the directory it prints)"
        )
    return path


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:]) or "<empty>"


def _read_ready(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        if line.startswith("READY "):
            info = json.loads(line[len("READY ") :])
            assert isinstance(info, dict)
            return info
    return None


def stop_network(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, wait, SIGKILL if needed; the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
    if process.stdin is not None:
        process.stdin.close()
    return process.returncode


@contextmanager
def run_network(install: Path, workdir: Path) -> Iterator[ATProtoNet]:
    """Start ``start.mjs`` with the install's Node in ``workdir``; stop it on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    stdout_path = workdir / "stdout.log"
    stderr_path = workdir / "stderr.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NODE_", "npm_"))}
    env.update(
        HOLDCA_ATPROTO_NET=str(install),
        DATA_DIR=str(data_dir),
        TMPDIR=str(workdir),
    )
    began = time.monotonic()
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [str(install / "node" / "bin" / "node"), str(START_SCRIPT), "--exit-on-stdin-eof"],
            stdin=subprocess.PIPE,  # closed when this process dies: the network stops too
            stdout=out,
            stderr=err,
            cwd=workdir,
            env=env,
            start_new_session=True,  # a Ctrl-C reaches pytest, which then stops it in order
        )
    try:
        deadline = began + READY_TIMEOUT
        while (ready := _read_ready(stdout_path)) is None:
            if process.poll() is not None:
                pytest.fail(
                    f"start.mjs exited with status {process.returncode} before READY; "
                    f"its stderr ends:\n{_tail(stderr_path)}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"start.mjs was not READY within {READY_TIMEOUT:.0f} s; "
                    f"its stderr ends:\n{_tail(stderr_path)}"
                )
            time.sleep(0.05)
        startup = time.monotonic() - began
        with ATProtoClient(ready["pdsUrl"], ready["plcUrl"]) as client:
            yield ATProtoNet(
                plc_url=ready["plcUrl"],
                pds_url=ready["pdsUrl"],
                pds_did=ready["pdsDid"],
                admin_password=ready["adminPassword"],
                versions=ready["versions"],
                client=client,
                process=process,
                workdir=workdir,
                startup_seconds=startup,
                ready=ready,
            )
    finally:
        stop_network(process)


@pytest.fixture(scope="session")
def atproto_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ATProtoNet]:
    """The reference PLC directory and PDS on 127.0.0.1 (one network per test process)."""
    install = install_dir()
    workdir = tmp_path_factory.mktemp("atproto-net")
    try:
        with run_network(install, workdir) as net:
            yield net
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
