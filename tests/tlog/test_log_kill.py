"""kill -9 while cosigning with a transparency log: nothing handed out is ever unlogged.

A child (tests/tlog/log_child.py) cosigns in a loop and prints each response's index,
checkpoint and inclusion proof; it is SIGKILLed at random points, N times, on one hold.
After each kill the parent reopens the hold: the next integration publishes every entry
the ledger sequenced (one per issuance in the ledger), the published log verifies (holdca
and, at the end, the Go verifier), and every response the child printed verifies against
its own checkpoint *and* that checkpoint is a prefix of what the log publishes later.
"""

from __future__ import annotations

import base64
import random
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from holdca.hold.translog import IssuanceLog
from holdca.tlog import (
    DirectoryLog,
    check_consistency,
    iter_entries,
    open_checkpoint,
    parse_entry,
    verify_inclusion,
    verify_log,
)
from tests.hardening import fault_child
from tests.tlog import log_child
from tests.tlog.conftest import run_goverify

ROOT = Path(__file__).resolve().parents[2]
KILLS = 6


def test_kill_9_while_cosigning_never_leaves_a_response_unlogged(
    tmp_path: Path, goverify: str
) -> None:
    seed = ed25519.Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    (tmp_path / "log.key").write_bytes(seed)
    fault_child.open_ca(tmp_path).ledger.close()
    signer = log_child.log_signer(tmp_path)
    verifier = signer.verifier()
    rng = random.Random(15)
    printed: list[list[str]] = []
    for _ in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.tlog.log_child", str(tmp_path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()  # type: ignore[union-attr]
        time.sleep(rng.uniform(0.2, 1.2))
        proc.kill()  # SIGKILL
        out, _ = proc.communicate(timeout=60)
        complete = out.split("\n")[:-1]  # a line cut by the kill was not handed out
        printed += [line.split() for line in complete if line.startswith("ok ")]
        # reopen: the next integration publishes every sequenced entry
        ca = fault_child.open_ca(tmp_path)
        try:
            checkpoint = IssuanceLog(tmp_path / "log", signer).integrate(ca.ledger)
            assert checkpoint.size == ca.ledger.log_size() == ca.ledger.count()
            log = DirectoryLog(tmp_path / "log")
            published, _ = open_checkpoint(log.read_checkpoint(), [verifier])
            verify_log(log, published)
            serials = {parse_entry(e).x509.serial_number for e in iter_entries(log, published)}  # type: ignore[union-attr]
            assert serials == {r.serial for r in ca.ledger.issuances()}
        finally:
            ca.ledger.close()
        for _, index, note, proof, leaf in printed:
            theirs, _ = open_checkpoint(base64.b64decode(note), [verifier])
            hashes = [] if proof == "-" else [base64.b64decode(h) for h in proof.split(",")]
            verify_inclusion(base64.b64decode(leaf), int(index), theirs.size, hashes, theirs.root)
            check_consistency(log, theirs, published)  # a prefix of the later log
    assert len(printed) >= KILLS  # the child did hand out responses between kills
    assert len({int(p[1]) for p in printed}) == len(printed)
    done = run_goverify(goverify, tmp_path / "log", verifier.vkey)
    assert done.returncode == 0, done.stdout + done.stderr
