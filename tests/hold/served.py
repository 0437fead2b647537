"""A hold served over real HTTP on 127.0.0.1 (uvicorn in a thread) for the server tests."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from holdca.hold import HoldCA, IssuanceLedger, MemoryLedger
from holdca.keys import MemoryKeyStore
from holdca.notation import Descriptor
from holdca.notation.oci import OCILayout
from holdca.server import COSIGN_NSID, ServerLimits, create_app
from holdca.server.run import uvicorn_config
from holdca.testing.atproto import TestRepo
from holdca.testing.network import TestNetwork
from holdca.testing.oci import build_test_image
from tests.hold.conftest import HOLD_DID, SUBJECT


@dataclass
class Served:
    ca: HoldCA
    base: str
    http: httpx.Client
    net: TestNetwork
    port: int


@contextmanager
def serve_hold(
    *,
    ocsp: bool = True,
    ledger: IssuanceLedger | None = None,
    limits: ServerLimits | None = None,
    app_options: dict[str, Any] | None = None,
    ca_options: dict[str, Any] | None = None,
    prepare: Callable[[HoldCA], Mapping[str, Any]] | None = None,
) -> Iterator[Served]:
    """A HoldCA on memory keys, a TestNetwork resolver, the app under uvicorn with limits.

    ``prepare(ca)`` runs before the app is built; what it returns is added to the app's
    options (the metrics tests instrument the hold there).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    net = TestNetwork()
    ca = HoldCA.open(
        MemoryKeyStore(),
        ledger if ledger is not None else MemoryLedger(),
        hold_did=HOLD_DID,
        subject=SUBJECT,
        now=datetime.now(UTC),
        create=True,
        crl_url=f"{base}/ca.crl",
        ocsp_url=f"{base}/ocsp" if ocsp else None,
        resolver=net,
        **(ca_options or {}),
    )
    options = dict(app_options or {})
    if prepare is not None:
        options.update(prepare(ca))
    app = create_app(ca, **options)
    server = uvicorn.Server(uvicorn_config(app, limits=limits, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.01)
    assert server.started
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            yield Served(ca, base, client, net, port)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def user(served: Served, tmp_path: Path) -> tuple[TestRepo, OCILayout, Descriptor, str]:
    """A user on the test network with a manifest record for an image in a layout."""
    repo = served.net.add(TestRepo.create())
    layout = OCILayout.create(tmp_path / f"layout-{repo.did[-6:]}")
    image = build_test_image(layout, tag="v1")
    uri = repo.put_manifest(image.digest, hold_did=HOLD_DID)
    return repo, layout, image, uri


def body(repo: TestRepo, uri: str, image: Descriptor, **extra: Any) -> dict[str, Any]:
    """A coSignManifest body: DID, record URI and descriptor only."""
    return {"userDid": repo.did, "recordUri": uri, "manifest": image.to_json(), **extra}


def hint(repo: TestRepo, uri: str) -> str:
    """The base64 getRecord CAR a client may send as a proof hint."""
    return base64.b64encode(repo.get_record_car(uri)).decode()


def auth(repo: TestRepo, lxm: str = COSIGN_NSID, **kwargs: Any) -> dict[str, str]:
    """An Authorization header with a fresh service token of ``repo`` for the hold."""
    return {"Authorization": f"Bearer {repo.service_token(HOLD_DID, lxm, **kwargs)}"}
