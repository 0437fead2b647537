"""A hold, users with did:plc repos, and a transparency log of what the hold issued.

The monitor tests log real certificates: each user's image is co-signed by a
:class:`~holdca.hold.HoldCA` whose resolver is a :class:`~holdca.testing.network.TestNetwork`,
and the entry is built from the hold's ledger record. :class:`Served` puts the same repos,
their PLC audit logs and the log directory on 127.0.0.1 for the CLI, which only speaks HTTP.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from holdca.hold import CosignRequest, HoldCA, MemoryLedger
from holdca.keys import MemoryEd25519Signer, MemoryKeyStore
from holdca.notation import Descriptor
from holdca.notation.oci import OCILayout
from holdca.pki import SubjectInfo
from holdca.testing.atproto import TestRepo
from holdca.testing.network import TestNetwork
from holdca.testing.oci import build_test_image
from holdca.testing.plc import TestPLC, plc_repo
from holdca.tlog import CertificateEntry, Ed25519NoteSigner, LogWriter
from holdca.tlog.facts import FactChecker

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOLD_DID = "did:web:hold01.example.com"
ORIGIN = "hold01.example.com/log"
REPOSITORY = "alice/app"


@dataclass
class User:
    """A did:plc user with a repo holding one manifest record of its image."""

    repo: TestRepo
    plc: TestPLC
    image: Descriptor
    uri: str

    @property
    def did(self) -> str:
        return self.repo.did


@dataclass
class MonitorWorld:
    """A hold on a test network, its users, and the log the test publishes."""

    root: Path
    pds_endpoint: str = "https://pds.example.com"
    net: TestNetwork = field(default_factory=TestNetwork)
    plcs: dict[str, TestPLC] = field(default_factory=dict)
    repos: dict[str, TestRepo] = field(default_factory=dict)
    signer: Ed25519NoteSigner = field(
        default_factory=lambda: Ed25519NoteSigner(ORIGIN, MemoryEd25519Signer.generate())
    )

    def __post_init__(self) -> None:
        self.ca = HoldCA.open(
            MemoryKeyStore(),
            MemoryLedger(),
            hold_did=HOLD_DID,
            subject=SubjectInfo(country="US", state="CA", organization="Monitor Hold"),
            now=NOW,
            create=True,
            resolver=self.net,
        )
        self.layout = OCILayout.create(self.root / "layout")
        self.log_dir = self.root / "log"
        self.writer = LogWriter.open(self.log_dir, self.signer)
        self._images = 0

    def image(self) -> Descriptor:
        self._images += 1
        return build_test_image(self.layout, tag=None, content=f"image {self._images}\n".encode())

    def user(self, repo: TestRepo | None = None, plc: TestPLC | None = None) -> User:
        """A new did:plc user (or the given repo and PLC) with a manifest record."""
        if repo is None or plc is None:
            repo, plc = plc_repo(pds_endpoint=self.pds_endpoint, now=NOW)
        self.net.add(repo)
        self.repos[repo.did] = repo
        self.plcs[repo.did] = plc
        image = self.image()
        uri = repo.put_manifest(image.digest, repository=REPOSITORY, hold_did=HOLD_DID)
        return User(repo, plc, image, uri)

    def cosign(self, user: User) -> CertificateEntry:
        """Co-sign the user's image through the hold; the log entry of what it issued."""
        request = CosignRequest(
            did=user.did, descriptor=user.image, record_uri=user.uri, caller=user.did
        )
        record = self.ca.cosign(request, now=NOW).record
        assert record.commit_cid
        assert record.rev
        assert record.repository
        assert record.record_uri
        return CertificateEntry(
            record.certificate_der,
            record.did,
            record.record_uri,
            record.commit_cid,
            record.rev,
            record.manifest_digest,
            record.repository,
        )

    def append(self, *entries: CertificateEntry) -> None:
        self.writer.append([e.encode() for e in entries])

    def audit_log(self, did: str) -> bytes:
        return self.plcs[did].audit_log()

    def checker(self) -> FactChecker:
        return FactChecker(self.net, self.audit_log)


class Served:
    """The world's PLC directory, PDS and log directory over HTTP on 127.0.0.1."""

    def __init__(self) -> None:
        self.world: MonitorWorld | None = None
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = served.answer(self.path)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def answer(self, path: str) -> tuple[int, bytes]:
        world = self.world
        assert world is not None
        split = urlsplit(path)
        if split.path.startswith("/log/"):
            file = world.log_dir / split.path.removeprefix("/log/")
            return (200, file.read_bytes()) if file.is_file() else (404, b"not found")
        if split.path == "/xrpc/com.atproto.sync.getRecord":
            q = {k: v[0] for k, v in parse_qs(split.query).items()}
            if q["did"] not in world.plcs:
                return 400, b'{"error":"RepoNotFound"}'
            repo = world.repos[q["did"]]
            uri = f"at://{q['did']}/{q['collection']}/{q['rkey']}"
            return 200, repo.get_record_car(uri)
        did, _, rest = split.path.removeprefix("/").partition("/")
        if rest == "log/audit" and did in world.plcs:
            return 200, world.plcs[did].audit_log()
        return 404, b'{"error":"NotFound"}'

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
