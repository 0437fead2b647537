"""Fixtures for the notation tests (helpers live in tests/notation/helpers.py)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.notation.helpers import CA, HTTPServer, NotationCLI
from tests.tools import require_notation


@pytest.fixture(scope="session")
def root_ca() -> CA:
    """The hold's root for most tests (session-wide: issuing is cheap, keygen too)."""
    return CA.create()


@pytest.fixture(scope="session")
def other_ca() -> CA:
    """An unrelated root (wrong trust store)."""
    return CA.create(hold_did="did:web:other.example.com")


@pytest.fixture
def notation(tmp_path: Path) -> NotationCLI:
    """A notation CLI runner in a fresh config and cache directory."""
    binary = require_notation()
    return NotationCLI(binary, tmp_path / "notation-config", tmp_path / "notation-cache")


@pytest.fixture
def http_server() -> Iterator[HTTPServer]:
    """A threaded http.server on an ephemeral port (stopped after the test)."""
    routes: dict[str, Callable[[str], tuple[int, bytes]]] = {}
    post_routes: dict[str, Callable[[bytes], tuple[int, bytes]]] = {}
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            for prefix, handler in routes.items():
                if self.path.startswith(prefix):
                    status, body = handler(self.path[len(prefix) :])
                    break
            else:
                status, body = 404, b""
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            data = self.rfile.read(length)
            requests.append(self.path)
            handler = post_routes.get(self.path)
            status, body = handler(data) if handler else (404, b"")
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield HTTPServer(f"http://127.0.0.1:{server.server_port}", routes, post_routes, requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
