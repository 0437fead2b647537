"""``holdca serve`` serves the hold's transparency log read-only (holdca issue 15).

A hold made by ``holdca init --log``, a real ``holdca serve`` subprocess on 127.0.0.1, and
issuances made against the same directories while it runs (a co-sign through the library
with a did:plc user on a test network, an operator ``holdca issue``). Oracles: ``holdca
monitor`` over HTTP (the PLC directory and PDS served on 127.0.0.1 by tests' own server),
the Go verifier over a mirror downloaded from the server, the files on disk, and raw
HTTP requests (``http.client`` sends the path as given: no client-side normalisation).
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.testclient import TestClient

from holdca.hold import CosignRequest
from holdca.hold.config import HoldConfig
from holdca.hold.policy import AllowAllAuthorizer
from holdca.hold.setup import open_hold
from holdca.keys import MemoryEd25519Signer
from holdca.server.logfiles import CACHE_FULL, canonical_log_path, log_routes
from holdca.tlog import Ed25519NoteSigner, Ed25519NoteVerifier, open_checkpoint
from holdca.tlog.tiles import bundle_path, tile_path, tiles_for_size
from tests.cli_trust_support import free_port
from tests.tlog.conftest import build_log, entries, run_goverify
from tests.tlog.monitor_support import HOLD_DID, MonitorWorld, Served

HOLD = ["--did", HOLD_DID, "--country", "US", "--state", "CA", "--org", "Log Test Hold"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("HOLD_", "HOLDCA_"))}


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "holdca", *argv],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        check=False,
    )


@dataclass
class Hold:
    home: Path
    vkey: str
    port: int

    @property
    def log_dir(self) -> Path:
        return self.home / "log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/log"

    def get(self, raw_path: str) -> tuple[int, dict[str, str], bytes]:
        """GET ``raw_path`` exactly as written (no normalisation, no re-encoding)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.putrequest("GET", raw_path, skip_accept_encoding=True)
            conn.endheaders()
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


@pytest.fixture
def hold(tmp_path: Path) -> Iterator[Hold]:
    """``holdca init --log``, then ``holdca serve`` on a free port until the test ends."""
    pytest.importorskip("uvicorn")
    home = tmp_path / "hold"
    done = _cli("init", "--home", str(home), *HOLD, "--log", "--json")
    assert done.returncode == 0, done.stderr
    vkey = json.loads(done.stdout)["logVkey"]
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "holdca", "serve", "--home", str(home), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    served = Hold(home, vkey, port)
    try:
        for _ in range(300):
            try:
                if served.get("/log/checkpoint")[0] == 200:
                    break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"holdca serve exited: {proc.stderr.read()!r}")  # type: ignore[union-attr]
                time.sleep(0.1)
        else:
            pytest.fail("holdca serve did not answer")
        yield served
    finally:
        proc.terminate()
        proc.wait(20)


def _monitor(hold: Hold, served: Served, state: Path) -> tuple[int, dict[str, object]]:
    done = _cli(
        "monitor", hold.url, "--state", str(state), "--vkey", hold.vkey, "--insecure-http",
        "--allow", "127.0.0.1/32", "--plc-url", served.url, "--json",
    )  # fmt: skip
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    assert isinstance(report, dict)
    return done.returncode, report


def _cosign_through_the_library(hold: Hold, world: MonitorWorld) -> int:
    """Co-sign a did:plc user's image with the hold in ``hold.home`` (same ledger, key
    store and log directory as the running server); the leaf's serial."""
    settings = json.loads((hold.home / "hold.json").read_text(encoding="utf-8"))
    config = HoldConfig.from_env(
        {
            **settings,
            "HOLD_CA_CERT_PATH": str(hold.home / "ca.crt"),
            "HOLD_CA_KEY_PATH": str(hold.home / "keys"),
            "HOLD_LEDGER_PATH": str(hold.home / "ledger.sqlite3"),
        }
    )
    user = world.user()
    ca = open_hold(
        config, now=datetime.now(UTC), resolver=world.net, authorizer=AllowAllAuthorizer()
    )
    try:
        assert ca.transparency is not None
        request = CosignRequest(
            did=user.did, descriptor=user.image, record_uri=user.uri, caller=user.did
        )
        response = ca.cosign(request, now=datetime.now(UTC))
        assert response.log is not None
        return int(response.serial)
    finally:
        ca.ledger.close()


def _mirror(hold: Hold, target: Path) -> int:
    """Download the served log (checkpoint, every tile and bundle) into ``target``."""
    status, _, note = hold.get("/log/checkpoint")
    assert status == 200
    checkpoint, _ = open_checkpoint(note, [Ed25519NoteVerifier.from_vkey(hold.vkey)])
    paths = [
        tile_path(level, index, width) for level, index, width in tiles_for_size(checkpoint.size)
    ]
    paths += [bundle_path(i, w) for lv, i, w in tiles_for_size(checkpoint.size) if lv == 0]
    for path in ["checkpoint", *paths]:
        status, _, body = hold.get(f"/log/{path}")
        assert status == 200, path
        assert body == (hold.log_dir / path).read_bytes(), path  # the file on disk
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        (target / path).write_bytes(body)
    return checkpoint.size


def test_the_served_log_verifies_with_the_monitor_and_the_go_verifier(
    hold: Hold, tmp_path: Path, goverify: str
) -> None:
    served = Served()
    try:
        world = MonitorWorld(tmp_path / "world", pds_endpoint=served.url)
        served.world = world
        state = tmp_path / "monitor"
        # init published an empty signed checkpoint: the monitor accepts it
        code, report = _monitor(hold, served, state)
        assert (code, report["size"], report["alarms"]) == (0, 0, []), report
        # a co-sign with a real ATProto record, logged while the server runs
        serial = _cosign_through_the_library(hold, world)
        code, report = _monitor(hold, served, state)
        assert code == 0, report
        assert (report["size"], report["verified"], report["alarms"]) == (1, 1, [])
        # an operator issuance (no ATProto record) through the CLI: logged, and unexpected
        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        pub = tmp_path / "pub.pem"
        pub.write_bytes(
            key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        leaf_file = tmp_path / "leaf.pem"
        done = _cli(
            "issue", "--home", str(hold.home), "--did", world.user().did,
            "--public-key", str(pub), "--out", str(leaf_file),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        leaf = x509.load_pem_x509_certificates(leaf_file.read_bytes())[0]
        code, report = _monitor(hold, served, state)
        assert code == 1
        assert (report["size"], report["newEntries"], report["alarms"]) == (2, 1, [])
        unexpected = report["unexpected"]
        assert isinstance(unexpected, list)
        assert [u["serial"] for u in unexpected] == [format(leaf.serial_number, "x")]
        assert serial != leaf.serial_number
    finally:
        served.close()
    mirror = tmp_path / "mirror"
    assert _mirror(hold, mirror) == 2
    done = run_goverify(goverify, mirror, hold.vkey, "-inclusion", "0,1")
    assert done.returncode == 0, done.stdout + done.stderr


def test_log_responses_have_their_types_and_cache_lifetimes(hold: Hold) -> None:
    status, headers, body = hold.get("/log/checkpoint")
    assert status == 200
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["cache-control"] == "no-cache"
    assert body == (hold.log_dir / "checkpoint").read_bytes()
    done = _cli("issue", "--home", str(hold.home), "--did", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa",
                "--public-key", str(_pub(hold.home.parent)))  # fmt: skip
    assert done.returncode == 0, done.stderr
    for path in ("tile/0/000.p/1", "tile/entries/000.p/1"):
        status, headers, body = hold.get(f"/log/{path}")
        assert status == 200, path
        assert headers["content-type"] == "application/octet-stream"
        max_age = int(headers["cache-control"].split("max-age=")[1].split(",")[0])
        assert 0 < max_age <= 300  # partial tiles: short
        assert "immutable" not in headers["cache-control"]
        assert body == (hold.log_dir / path).read_bytes()


def _pub(directory: Path) -> Path:
    path = directory / "any-pub.pem"
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    path.write_bytes(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


ATTACKS = [
    "/log/../hold.json",
    "/log/..%2fhold.json",
    "/log/%2e%2e/hold.json",
    "/log/%2e%2e%2fhold.json",
    "/log/%2E%2E/%2E%2E/hold/hold.json",
    "/log/tile/../../hold.json",
    "/log/tile/0/../../../hold.json",
    "/log/tile/..%2f..%2f..%2fhold.json",
    "/log//etc/passwd",
    "/log/%2fetc%2fpasswd",
    "/log/%2Fetc/passwd",
    "/log/tile/0/000.p/1/../../../../../hold.json",
    "/log/./checkpoint",
    "/log/checkpoint/",
    "/log/checkpoint%00",
    "/log/tile/0/000.p/1%00",
    "/log/tile/0/000.p/01",
    "/log/tile/0/000.p/256",
    "/log/tile/00/000.p/1",
    "/log/tile/0/x000/000.p/1",
    "/log/tile/0/0.p/1",
    "/log/tile/0/%30%30%30.p/1",  # decoded to 000: the canonical path, served (not an attack)
    "/log/tile/data/000.p/1",
    "/log/tile/8/0/000.p/1",
    "/log/tile/0/" + "x000/" * 200 + "000.p/1",
    "/log/" + "a" * 5000,
]


def test_traversal_and_non_canonical_paths_are_404(hold: Hold) -> None:
    done = _cli("issue", "--home", str(hold.home), "--did", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa",
                "--public-key", str(_pub(hold.home.parent)))  # fmt: skip
    assert done.returncode == 0, done.stderr
    secret = (hold.home / "hold.json").read_bytes()
    for raw in ATTACKS:
        if "%30%30%30" in raw:
            assert hold.get(raw)[0] == 200  # percent-decoding is the server's, not ours
            continue
        status, _, body = hold.get(raw)
        assert status in (404, 400), (raw, status)
        assert secret not in body
        assert b"root:" not in body


def test_symlinks_out_of_the_directory_and_fifos_are_404(hold: Hold, tmp_path: Path) -> None:
    outside = hold.home / "hold.json"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "000").write_bytes(outside.read_bytes())
    # canonical paths, far beyond the log's size: nothing the publisher would write soon
    (hold.log_dir / "tile" / "0").mkdir(parents=True, exist_ok=True)
    (hold.log_dir / "tile" / "0" / "007").symlink_to(outside)
    (hold.log_dir / "tile" / "1").symlink_to(elsewhere, target_is_directory=True)
    assert (hold.log_dir / "tile" / "1" / "000").is_file()
    (hold.log_dir / "tile" / "entries").mkdir(parents=True, exist_ok=True)
    os.mkfifo(hold.log_dir / "tile" / "entries" / "009")
    assert (hold.log_dir / "tile" / "0" / "007").read_bytes() == outside.read_bytes()
    inside = hold.log_dir / "tile" / "0" / "008"
    inside.symlink_to(hold.log_dir / "checkpoint")  # a link that stays inside is fine
    start = time.monotonic()
    for path in ("tile/0/007", "tile/1/000", "tile/entries/009"):
        status, _, body = hold.get(f"/log/{path}")
        assert status == 404, path
        assert outside.read_bytes() not in body
    assert time.monotonic() - start < 5  # the FIFO was not opened for a blocking read
    assert hold.get("/log/tile/0/008")[0] == 200


def test_full_tiles_are_immutable_and_served_as_published(tmp_path: Path) -> None:
    """The routes in process (Starlette's TestClient) over a log of 300 entries: every
    published file is answered byte for byte, full ones cached as immutable."""
    signer = Ed25519NoteSigner("hold.example/log", MemoryEd25519Signer.generate())
    root = tmp_path / "log"
    build_log(root, signer, entries(300))
    client = TestClient(Starlette(routes=log_routes(root)))
    on_disk = sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "tmp" not in p.name
    )
    assert "tile/0/000" in on_disk
    assert "tile/entries/000" in on_disk
    for path in on_disk:
        assert canonical_log_path(path) is not None, path
        resp = client.get(f"/log/{path}")
        assert resp.status_code == 200, path
        assert resp.content == (root / path).read_bytes()
        full = ".p/" not in path and path != "checkpoint"
        assert (resp.headers["cache-control"] == CACHE_FULL) is full, path
    assert client.get("/log/tile/0/001").status_code == 404  # not published yet


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/\u0660\u0660\u0660.p/1",  # Arabic-Indic digits: int() would accept them
        "tile/entries/000.p/\u0661",
        "tile/\u0660/000",
        "tile/0/000.p/0",
        "tile/0/000.p/",
        "tile/0/000.p/1.p/1",
        "tile/0/x000",
        "tile/0/x1000/000",
        "tile/-1/000",
        "tile/0/-01",
        "tile/1000/000",
        "tile",
        "tile/",
        "",
        "Checkpoint",
    ],
)
def test_non_canonical_paths_are_not_log_paths(path: str) -> None:
    assert canonical_log_path(path) is None
