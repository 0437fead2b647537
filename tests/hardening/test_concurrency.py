"""Concurrency: many threads on one hold (CA on SoftHSM), two processes on one SQLite ledger.

Oracles: every cosign returns or raises a HoldCAError (none did, in practice), serials are
unique, the ledger holds exactly the issued certificates (nothing lost, nothing extra), and
every certificate verifies under the CA's public key with cryptography.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography import x509

from holdca.hold import HoldCA, SQLiteLedger
from tests.conftest import SoftHSM
from tests.hardening import fault_child
from tests.hardening.tally import count

ROOT = Path(__file__).resolve().parents[2]
THREADS = 16
PER_THREAD = int(os.environ.get("HOLDCA_CONCURRENCY_PER_THREAD", "6"))
PER_PROCESS = int(os.environ.get("HOLDCA_CONCURRENCY_PER_PROCESS", "40"))


def _ledger_serials(path: Path) -> list[int]:
    import sqlite3  # noqa: PLC0415

    conn = sqlite3.connect(path)
    try:
        return [int(r[0], 16) for r in conn.execute("SELECT serial FROM issuance")]
    finally:
        conn.close()


@pytest.mark.hsm
def test_sixteen_threads_cosign_on_softhsm(softhsm: SoftHSM, tmp_path: Path) -> None:
    store = softhsm.keystore()
    label = "threads-" + os.urandom(4).hex()
    ledger_path = tmp_path / "ledger.sqlite3"
    ca = HoldCA.open(
        store,
        SQLiteLedger(ledger_path),
        hold_did=fault_child.HOLD_DID,
        subject=fault_child.SUBJECT,
        now=fault_child.NOW,
        create=True,
        resolver=fault_child.NETWORK,
        key_label=label,
    )
    reqs = fault_child.requests(THREADS)
    serials: list[int] = []
    certs: list[x509.Certificate] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def work(n: int) -> None:
        try:
            start.wait()
            for i in range(PER_THREAD):
                response = ca.cosign(reqs[(n + i) % len(reqs)], now=fault_child.NOW)
                with lock:
                    serials.append(response.serial)
                    certs.append(response.certificate)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        count("concurrency.thread_cosigns", len(serials))
        assert len(serials) == THREADS * PER_THREAD
        assert len(set(serials)) == len(serials)
        ca.ledger.close()
        assert sorted(_ledger_serials(ledger_path)) == sorted(serials)
        for cert in certs:
            cert.verify_directly_issued_by(ca.certificate)  # raises if another key signed
    finally:
        store.delete(label)


def test_two_processes_share_one_sqlite_ledger(tmp_path: Path) -> None:
    fault_child.open_ca(tmp_path).ledger.close()
    cmd = [
        sys.executable,
        "-m",
        "tests.hardening.fault_child",
        "many",
        str(tmp_path),
        str(PER_PROCESS),
    ]
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    acked = [
        int(line.split()[1], 16)
        for out, _ in outs
        for line in out.splitlines()
        if line.startswith("ok ")
    ]
    count("concurrency.process_cosigns", len(acked))
    assert len(acked) == 2 * PER_PROCESS
    assert len(set(acked)) == len(acked)
    assert sorted(_ledger_serials(tmp_path / "ledger.sqlite3")) == sorted(acked)
    ca = fault_child.open_ca(tmp_path)
    try:
        for serial in acked:
            record = ca.ledger.get(serial)
            assert record is not None
            x509.load_der_x509_certificate(record.certificate_der).verify_directly_issued_by(
                ca.certificate
            )
    finally:
        ca.ledger.close()
