"""Tile layout, the incremental appender, publication and readers (directory and HTTP)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from holdca.errors import TlogError
from holdca.net import AddressPolicy, Fetcher
from holdca.tlog import (
    DirectoryLog,
    Ed25519NoteSigner,
    HTTPLog,
    LogState,
    LogVerifier,
    append,
    bundle_path,
    leaf_hash,
    state_from_reader,
    tile_path,
)
from holdca.tlog.hashing import tree_root
from tests.tlog.conftest import ORIGIN, build_log, entries


def test_paths() -> None:
    """C2SP examples: 3-digit groups with x prefixes, .p/W for partial tiles."""
    assert tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert tile_path(1, 5, 17) == "tile/1/005.p/17"
    assert tile_path(2, 1000) == "tile/2/x001/000"
    assert bundle_path(0, 1) == "tile/entries/000.p/1"
    for bad in [(0, -1, 256), (0, 0, 0), (0, 0, 257), (-1, 0, 256)]:
        with pytest.raises(TlogError):
            tile_path(*bad)


def test_layout_of_70000(tmp_path: Path, signer: Ed25519NoteSigner) -> None:
    """The tlog-tiles example layout for 70000 entries, read from the file system."""
    items = entries(70_000)
    build_log(tmp_path, signer, items, batch=70_000)
    files = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    level0 = {f for f in files if f.startswith("tile/0/")}
    assert len(level0) == 274
    assert "tile/0/273.p/112" in level0
    assert {f for f in files if f.startswith("tile/1/")} == {"tile/1/000", "tile/1/001.p/17"}
    assert {f for f in files if f.startswith("tile/2/")} == {"tile/2/000.p/1"}
    assert "tile/entries/273.p/112" in files
    assert (tmp_path / "tile/0/000").stat().st_size == 8192
    # the first bundle is 256 (uint16-BE length || entry) records
    raw = (tmp_path / "tile/entries/000").read_bytes()
    assert raw[:2] == len(items[0]).to_bytes(2, "big")
    assert raw[2 : 2 + len(items[0])] == items[0]
    assert (tmp_path / "tile/0/000").read_bytes()[:32] == leaf_hash(items[0])


def test_incremental_equals_one_shot_and_resumes(tmp_path: Path, signer: Ed25519NoteSigner) -> None:
    """Batches of any size give the one-shot root; a state rebuilt from tiles is the same."""
    items = entries(1000)
    one, _ = append(LogState(), items)
    state = LogState()
    for size in (1, 254, 1, 1, 300, 443):
        state, writes = append(state, items[state.size : state.size + size])
        assert len(writes) <= 2 * 4 + 4  # only tiles this batch completed or changed
    assert state == one
    assert state.root == tree_root([leaf_hash(e) for e in items])
    log = build_log(tmp_path, signer, items, batch=333)
    assert state_from_reader(log, 1000) == one


def test_tiles_are_immutable(tmp_path: Path, signer: Ed25519NoteSigner) -> None:
    """Publishing a different tile under an existing name is refused; the checkpoint stays."""
    log = build_log(tmp_path, signer, entries(300))
    before = log.read_checkpoint()
    _, writes = append(LogState(), entries(300, tag="other"))
    with pytest.raises(TlogError, match="refusing"):
        log.publish(writes, b"x")
    assert log.read_checkpoint() == before


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A static HTTP server on 127.0.0.1 over ``tmp_path/log``."""
    root = tmp_path / "log"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_http_reader(served: tuple[Path, str], signer: Ed25519NoteSigner) -> None:
    """A static web server is enough: the monitor's verifier reads the log over HTTP."""
    root, url = served
    items = entries(600)
    build_log(root, signer, items, batch=250)
    with Fetcher(AddressPolicy.parse("127.0.0.1/32")) as fetcher:
        log = HTTPLog(fetcher, url, require_https=False)
        verifier = LogVerifier(log, [signer.verifier()], ORIGIN)
        checkpoint = verifier.checkpoint()
        assert checkpoint.size == 600
        verifier.verify_all(checkpoint)
        assert list(verifier.entries(checkpoint, start=590)) == items[590:]
        (root / "tile/0/001").unlink()
        with pytest.raises(TlogError, match="404"):
            verifier.verify_all(checkpoint)
    with pytest.raises(TlogError):
        DirectoryLog(root).read("../etc/passwd")
