"""Group publication of the transparency log (holdca issue 15, batching).

Oracles: every receipt is checked with holdca.tlog's RFC 6962 verifier against the checkpoint
it carries (signature checked with the log key), the leaf rebuilt from the certificate and
the ATProto record this test created; proofs from the memo are compared with the proofs
read from the tiles of a log written by :class:`LogWriter` and checked against its signed
root; signatures are counted on the log's signer; the file system says what was written.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from holdca.errors import TlogError
from holdca.hold import CosignResponse, SQLiteLedger
from holdca.hold.translog import IssuanceLog, LogReceipt
from holdca.keys import MemoryEd25519Signer
from holdca.tlog import (
    CertificateEntry,
    DirectoryLog,
    Ed25519NoteSigner,
    LogWriter,
    TileWrite,
    leaf_hash,
    open_checkpoint,
    verify_inclusion,
)
from holdca.tlog.memo import SubtreeMemo
from holdca.tlog.tiles import inclusion_proof
from tests.hold.conftest import NOW, World, make_world
from tests.tlog.conftest import ORIGIN, entries


class CountingSigner:
    """A note signer that counts its signatures, optionally slow or held at a gate."""

    def __init__(self, delay: float = 0.0) -> None:
        self.inner = Ed25519NoteSigner(ORIGIN, MemoryEd25519Signer.generate())
        self.calls = 0
        self.delay = delay
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def key_id(self) -> bytes:
        return self.inner.key_id

    def verifier(self) -> object:
        return self.inner.verifier()

    def sign(self, text: bytes) -> bytes:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30)
        time.sleep(self.delay)
        return self.inner.sign(text)


def logged_world(tmp_path: Path, signer: CountingSigner) -> tuple[World, IssuanceLog]:
    log = IssuanceLog(tmp_path / "log", signer)  # type: ignore[arg-type]
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite3")
    return make_world(tmp_path, ledger=ledger, transparency=log), log


def check_receipt(w: World, signer: CountingSigner, r: CosignResponse) -> LogReceipt:
    """The receipt's proof leads from the entry this test expects to its signed root."""
    receipt = r.log
    assert receipt is not None
    checkpoint, _ = open_checkpoint(receipt.checkpoint, [signer.inner.verifier()], origin=ORIGIN)
    assert checkpoint.size == receipt.size > receipt.index
    entry = CertificateEntry(
        r.certificate.public_bytes(serialization.Encoding.DER),
        w.repo.did,
        w.uri,
        str(r.verified.commit_cid) if r.verified else "",
        r.verified.rev if r.verified else "",
        w.image.digest,
        "alice/app",
    ).encode()
    verify_inclusion(
        leaf_hash(entry), receipt.index, checkpoint.size, receipt.proof, checkpoint.root
    )
    return receipt


def test_sixteen_threads_get_receipts_that_verify_and_share_checkpoints(tmp_path: Path) -> None:
    signer = CountingSigner(delay=0.05)  # a slow log key: requests pile up behind it
    w, _ = logged_world(tmp_path, signer)
    w.ca.publish_log()  # the empty checkpoint
    before = signer.calls
    go = threading.Barrier(16)
    out: list[CosignResponse] = []
    errors: list[BaseException] = []

    def work() -> None:
        go.wait()
        try:
            for _ in range(2):
                out.append(w.ca.cosign(w.request(), now=NOW))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len(out) == 32
    receipts = [check_receipt(w, signer, r) for r in out]
    assert sorted(r.index for r in receipts) == list(range(32))
    # far fewer signatures than cosigns: each integration took everything queued
    assert signer.calls - before <= 12
    assert len({r.size for r in receipts}) == signer.calls - before


def test_a_batch_of_cosigns_shares_one_checkpoint_signature(tmp_path: Path) -> None:
    signer = CountingSigner()
    w, _ = logged_world(tmp_path, signer)
    w.ca.cosign(w.request(), now=NOW)
    before = signer.calls
    results = w.ca.cosign_many([w.request() for _ in range(12)], now=NOW)
    assert signer.calls == before + 1
    receipts = [check_receipt(w, signer, r) for r in results if isinstance(r, CosignResponse)]
    assert len(receipts) == 12
    assert len({(r.size, r.checkpoint) for r in receipts}) == 1
    assert (tmp_path / "log" / "checkpoint").read_bytes() == receipts[0].checkpoint


def test_a_published_entry_gets_its_receipt_while_an_integration_runs(tmp_path: Path) -> None:
    signer = CountingSigner()
    w, log = logged_world(tmp_path, signer)
    first = w.ca.cosign(w.request(), now=NOW)
    signer.gate, signer.entered = threading.Event(), threading.Event()
    held = threading.Thread(target=lambda: w.ca.cosign(w.request(), now=NOW))
    held.start()
    try:
        assert signer.entered.wait(30)  # the second cosign's integration is signing
        got: list[list[LogReceipt]] = []
        again = threading.Thread(target=lambda: got.append(log.receipts(w.ledger, [first.serial])))
        again.start()
        again.join(5)
        assert got, "a published entry waited for an unrelated integration"
        assert got[0][0].index == 0
        assert got[0][0].checkpoint == first.log.checkpoint  # type: ignore[union-attr]
    finally:
        signer.gate.set()
        held.join(30)


def test_memo_proofs_equal_tile_proofs_as_the_log_grows(tmp_path: Path) -> None:
    signer = Ed25519NoteSigner(ORIGIN, MemoryEd25519Signer.generate())
    writer = LogWriter.open(tmp_path / "log", signer)
    memo = SubtreeMemo()
    small = SubtreeMemo(limit=300)  # forgets everything now and then
    items = entries(700)
    start = 0
    for step in (1, 2, 5, 30, 1, 200, 17, 60, 255, 1, 128):
        batch = items[start : start + step]
        start += len(batch)
        checkpoint = writer.append(batch)
        size = checkpoint.size
        for index in {0, size // 3, max(size - step, 0), size - 1}:
            want = inclusion_proof(writer.log, index, size)
            for m in (memo, small):
                got = m.inclusion_proof(writer.log, index, size)
                assert got == want
                verify_inclusion(leaf_hash(items[index]), index, size, got, checkpoint.root)
    assert 0 < len(small) <= 300 + 256
    with pytest.raises(TlogError):
        memo.inclusion_proof(writer.log, start, start)


def test_a_failed_tile_write_publishes_nothing_and_a_retry_does(tmp_path: Path) -> None:
    signer = Ed25519NoteSigner(ORIGIN, MemoryEd25519Signer.generate())
    writer = LogWriter.open(tmp_path / "log", signer)
    writer.append(entries(3))
    old = (tmp_path / "log" / "checkpoint").read_bytes()
    blocker = tmp_path / "log" / "tile" / "0" / "000.p" / "7"
    blocker.mkdir(parents=True)  # a directory where the next level-0 tile goes
    with pytest.raises(IsADirectoryError):
        writer.append(entries(4, "f"))
    assert (tmp_path / "log" / "checkpoint").read_bytes() == old
    assert not list((tmp_path / "log").glob(".holdca-*"))  # no staged checkpoint left
    blocker.rmdir()
    checkpoint = writer.append(entries(4, "f"))
    assert checkpoint.size == 7
    published, _ = open_checkpoint(
        DirectoryLog(tmp_path / "log").read_checkpoint(), [signer.verifier()]
    )
    assert published.size == 7


def test_a_tile_is_never_changed(tmp_path: Path) -> None:
    log = DirectoryLog(tmp_path / "log")
    log.publish([TileWrite("tile/0/000.p/1", b"a" * 32)], b"one\n")
    with pytest.raises(TlogError, match="refusing to change"):
        log.publish([TileWrite("tile/0/000.p/1", b"b" * 32)], b"two\n")
    assert (tmp_path / "log" / "checkpoint").read_bytes() == b"one\n"
    assert (tmp_path / "log" / "tile" / "0" / "000.p" / "1").read_bytes() == b"a" * 32


def test_a_forked_child_publishes(tmp_path: Path) -> None:
    """The tile writer threads do not survive fork: a child gets its own."""
    signer = Ed25519NoteSigner(ORIGIN, MemoryEd25519Signer.generate())
    writer = LogWriter.open(tmp_path / "log", signer)
    writer.append(entries(3))  # two tiles: the writer threads start
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            writer.append(entries(2, "c"))
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung publishing")
    assert os.waitstatus_to_exitcode(done[1]) == 0
    published, _ = open_checkpoint(
        (tmp_path / "log" / "checkpoint").read_bytes(), [signer.verifier()]
    )
    assert published.size == 5
