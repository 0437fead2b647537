"""holdca's logs judged by independent Go code (x/mod sumdb/note + tlog, transparency-dev/merkle).

Each tampering (a modified tile, a truncated log, a forked checkpoint, a wrong key) must be
rejected by the Go verifier *and* by holdca's own verification.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from holdca.errors import SignatureInvalidError, TlogError
from holdca.keys import MemoryEd25519Signer
from holdca.tlog import (
    DirectoryLog,
    Ed25519NoteSigner,
    LogVerifier,
    check_consistency,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    open_checkpoint,
)
from tests.tlog.conftest import ORIGIN, build_log, entries, run_goverify


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("size", [0, 1, 255, 256, 257, 70_000])
def test_go_accepts(tmp_path: Path, signer: Ed25519NoteSigner, goverify: str, size: int) -> None:
    """Signature, every tile and bundle, inclusion and consistency all pass in Go."""
    items = entries(size)
    half = size // 2
    log = build_log(tmp_path / "log", signer, items[:half], batch=25_000)
    old = tmp_path / "old-checkpoint"
    old.write_bytes(log.read_checkpoint())
    build_log(tmp_path / "log", signer, items[half:], batch=25_000)
    checkpoint, _ = open_checkpoint(log.read_checkpoint(), [signer.verifier()])
    assert checkpoint.size == size
    indexes = sorted({i for i in (0, 1, 254, 255, 256, 65535, 65536, size - 1) if 0 <= i < size})
    proofs = {
        "inclusion": [
            {
                "index": i,
                "size": size,
                "leaf": _b64(leaf_hash(items[i])),
                "proof": [_b64(h) for h in inclusion_proof(log, i, size)],
                "root": _b64(checkpoint.root),
            }
            for i in indexes
        ],
        "consistency": [
            {
                "old": half,
                "new": size,
                "old_root": _b64(open_checkpoint(old.read_bytes(), [signer.verifier()])[0].root),
                "new_root": _b64(checkpoint.root),
                "proof": [_b64(h) for h in consistency_proof(log, half, size)],
            }
        ],
    }
    (tmp_path / "proofs.json").write_text(json.dumps(proofs))
    args = ["-old", str(old), "-proofs", str(tmp_path / "proofs.json")]
    if indexes:
        args += ["-inclusion", ",".join(map(str, indexes))]
    done = run_goverify(goverify, tmp_path / "log", signer.vkey, *args)
    assert done.returncode == 0, done.stderr
    assert f"OK consistency {half} -> {size}" in done.stdout
    assert done.stdout.count("OK holdca inclusion") == len(indexes)
    # and holdca's own verifier agrees
    LogVerifier(log, [signer.verifier()], ORIGIN).verify_all(checkpoint)


@pytest.fixture
def log600(tmp_path: Path, signer: Ed25519NoteSigner) -> DirectoryLog:
    """A published 600-entry log (two full level-0 tiles and a partial one)."""
    return build_log(tmp_path / "log", signer, entries(600), batch=200)


def _both_reject(goverify: str, log: DirectoryLog, signer: Ed25519NoteSigner, *args: str) -> str:
    done = run_goverify(goverify, log.root, signer.vkey, *args)
    assert done.returncode == 1, done.stdout
    return done.stderr


def test_modified_tile(log600: DirectoryLog, signer: Ed25519NoteSigner, goverify: str) -> None:
    """One flipped bit in a full level-0 tile."""
    tile = log600.root / "tile/0/001"
    data = bytearray(tile.read_bytes())
    data[100] ^= 1
    tile.write_bytes(bytes(data))
    assert "tiles" in _both_reject(goverify, log600, signer)
    verifier = LogVerifier(log600, [signer.verifier()], ORIGIN)
    with pytest.raises(TlogError):
        verifier.verify_all(verifier.checkpoint())


def test_modified_entry(log600: DirectoryLog, signer: Ed25519NoteSigner, goverify: str) -> None:
    """An entry changed in its bundle (its tile left alone)."""
    bundle = log600.root / "tile/entries/000"
    data = bytearray(bundle.read_bytes())
    data[5] ^= 1
    bundle.write_bytes(bytes(data))
    assert "bundle" in _both_reject(goverify, log600, signer)
    verifier = LogVerifier(log600, [signer.verifier()], ORIGIN)
    with pytest.raises(TlogError, match="bundle"):
        verifier.verify_all(verifier.checkpoint())


@pytest.mark.parametrize("cut", ["tile/0/002.p/88", "tile/1/000.p/2", "tile/entries/001"])
def test_truncated_log(
    log600: DirectoryLog, signer: Ed25519NoteSigner, goverify: str, cut: str
) -> None:
    """A tile or bundle the checkpoint needs is gone or cut short."""
    path = log600.root / cut
    assert path.exists()
    if cut.startswith("tile/entries"):
        path.write_bytes(path.read_bytes()[:-10])
    else:
        path.unlink()
    _both_reject(goverify, log600, signer)
    verifier = LogVerifier(log600, [signer.verifier()], ORIGIN)
    with pytest.raises(TlogError):
        verifier.verify_all(verifier.checkpoint())


def test_forked_checkpoint(
    tmp_path: Path, log600: DirectoryLog, signer: Ed25519NoteSigner, goverify: str
) -> None:
    """Two checkpoints of the same size with different roots, both validly signed."""
    fork = build_log(tmp_path / "fork", signer, entries(600, tag="forged"), batch=600)
    other = tmp_path / "fork-checkpoint"
    other.write_bytes(fork.read_checkpoint())
    assert "fork" in _both_reject(goverify, log600, signer, "-old", str(other))
    a, _ = open_checkpoint(log600.read_checkpoint(), [signer.verifier()])
    b, _ = open_checkpoint(other.read_bytes(), [signer.verifier()])
    assert a.size == b.size
    assert a.root != b.root
    with pytest.raises(TlogError, match="fork"):
        check_consistency(log600, b, a)
    # a smaller checkpoint of the fork is not consistent with the real log either
    small = build_log(tmp_path / "small", signer, entries(300, tag="forged"), batch=300)
    (tmp_path / "small-checkpoint").write_bytes(small.read_checkpoint())
    _both_reject(goverify, log600, signer, "-old", str(tmp_path / "small-checkpoint"))
    c, _ = open_checkpoint(small.read_checkpoint(), [signer.verifier()])
    with pytest.raises(TlogError):
        check_consistency(log600, c, a)


def test_rollback(tmp_path: Path, signer: Ed25519NoteSigner, goverify: str) -> None:
    """A log that shrank since the last checkpoint seen."""
    log = build_log(tmp_path / "log", signer, entries(600), batch=600)
    newer = tmp_path / "newer"
    newer.write_bytes(log.read_checkpoint())
    shutil.rmtree(tmp_path / "log")
    log = build_log(tmp_path / "log", signer, entries(500), batch=500)
    assert "backwards" in _both_reject(goverify, log, signer, "-old", str(newer))
    a, _ = open_checkpoint(log.read_checkpoint(), [signer.verifier()])
    b, _ = open_checkpoint(newer.read_bytes(), [signer.verifier()])
    with pytest.raises(TlogError, match="backwards"):
        check_consistency(log, b, a)


def test_wrong_key(log600: DirectoryLog, signer: Ed25519NoteSigner, goverify: str) -> None:
    """The checkpoint checked against another key of the same name, and re-signed by it."""
    impostor = Ed25519NoteSigner(ORIGIN, MemoryEd25519Signer.generate())
    done = run_goverify(goverify, log600.root, impostor.vkey)
    assert done.returncode == 1
    assert "signature" in done.stderr
    with pytest.raises(SignatureInvalidError):
        LogVerifier(log600, [impostor.verifier()], ORIGIN).checkpoint()
    # the impostor's checkpoint over the real tiles is refused under the log's key
    forged = build_log(log600.root.parent / "x", impostor, entries(600), batch=600)
    (log600.root / "checkpoint").write_bytes(forged.read_checkpoint())
    _both_reject(goverify, log600, signer)
    with pytest.raises(SignatureInvalidError):
        LogVerifier(log600, [signer.verifier()], ORIGIN).checkpoint()
