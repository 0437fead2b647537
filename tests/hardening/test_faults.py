"""Faults: processes killed mid-write, disk full, PKCS#11 sessions lost, the clock going back.

Kill tests start ``tests/hardening/fault_child.py`` writing in a loop, SIGKILL it after a
random delay, and check the files it left, repeatedly (``HOLDCA_FAULT_ROUNDS`` rounds per
test, default 4; ``scripts/reliability.py`` raises it). After every kill:

* key write (PEMKeyStore): every ``<label>.pem`` loads and signs; nothing half-written is
  listed as a key;
* ledger write (cosign + SQLite): ``PRAGMA integrity_check`` is ok, every serial the child
  was told had been issued is in the ledger (nothing acknowledged is lost), and every
  ledger certificate verifies under the CA key;
* CRL publication (``holdca crl --out``): the ledger's CRL number keeps increasing, and the
  published file, if any, is a complete CRL signed by the CA.

Each kill is counted as an injected fault (tests/hardening/tally.py).
"""

from __future__ import annotations

import errno
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from holdca.errors import KeyStoreError, SignerError
from holdca.hold import HoldCA, MemoryLedger, SQLiteLedger
from holdca.keys.pem import PEMKeyStore
from holdca.pki import SubjectInfo
from tests.conftest import SoftHSM
from tests.hardening import fault_child
from tests.hardening.tally import count
from tests.tools import missing

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = int(os.environ.get("HOLDCA_FAULT_ROUNDS", "4"))
rng = random.Random()


class Child:
    """A fault_child process whose acknowledged writes are collected line by line."""

    def __init__(self, mode: str, directory: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.hardening.fault_child", mode, str(directory), *extra],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.acked: list[str] = []

    def wait_ready(self, marker: str = "ready") -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip() == marker:
                return
            self.acked.append(line.strip())
        raise AssertionError(f"child died before {marker!r}: {self.proc.stderr.read()}")  # type: ignore[union-attr]

    def kill_after(self, delay: float) -> list[str]:
        """SIGKILL after ``delay`` seconds; returns every line acknowledged before death."""
        time.sleep(delay)
        alive = self.proc.poll() is None
        self.proc.send_signal(signal.SIGKILL)
        out, err = self.proc.communicate(timeout=60)
        assert alive, f"child ended on its own: {err}"
        count("fault.kill")
        self.acked += [line.strip() for line in out.splitlines() if line.strip()]
        return self.acked


def _verifies(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    key = ca.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception):
        return False
    return True


@pytest.fixture
def hold_dir(tmp_path: Path) -> Path:
    fault_child.open_ca(tmp_path).ledger.close()  # the CA key and ledger exist before any kill
    return tmp_path


def _integrity(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


# --- killed mid-write ----------------------------------------------------------------------


def test_kill_during_key_write(tmp_path: Path) -> None:
    for _ in range(ROUNDS):
        child = Child("pem", tmp_path)
        acked = child.kill_after(rng.uniform(0.3, 1.5))
        store = PEMKeyStore(tmp_path / "keys")
        labels = store.labels()
        for line in acked:
            assert line.removeprefix("ok ") in labels  # acknowledged keys exist
        for label in labels:
            signer = store.load(label)  # complete, or it would raise KeyFileCorruptError
            sig = signer.sign(b"after the kill")
            public = signer.public_key
            assert isinstance(public, ec.EllipticCurvePublicKey)
            public.verify(sig, b"after the kill", ec.ECDSA(hashes.SHA256()))
        count("fault.pem.keys_checked", len(labels))


def test_kill_during_ledger_write(hold_dir: Path) -> None:
    ledger_path = hold_dir / "ledger.sqlite3"
    for _ in range(ROUNDS):
        child = Child("cosign", hold_dir)
        child.wait_ready()
        acked = child.kill_after(rng.uniform(0.05, 1.0))
        _integrity(ledger_path)
        ca = fault_child.open_ca(hold_dir)
        try:
            for line in acked:
                serial = int(line.removeprefix("ok "), 16)
                assert ca.ledger.get(serial) is not None, f"acknowledged {serial:x} lost"
            rows = ca.ledger.by_did(fault_child.requests(1)[0].did)  # another DID: none
            assert rows == []
            count("fault.ledger.acknowledged_checked", len(acked))
        finally:
            ca.ledger.close()
    ca = fault_child.open_ca(hold_dir)
    conn = sqlite3.connect(ledger_path)
    try:
        certs = [
            x509.load_der_x509_certificate(r[0])
            for r in conn.execute("SELECT certificate FROM issuance")
        ]
    finally:
        conn.close()
    assert all(_verifies(c, ca.certificate) for c in certs)
    count("fault.ledger.rows_verified", len(certs))
    ca.ledger.close()


def test_kill_during_crl_publication(hold_dir: Path) -> None:
    crl_path = hold_dir / "ca.crl"
    numbers: list[int] = []
    for _ in range(ROUNDS):
        child = Child("crl", hold_dir)
        child.wait_ready()
        child.kill_after(rng.uniform(0.2, 1.5))
        _integrity(hold_dir / "ledger.sqlite3")
        ca = fault_child.open_ca(hold_dir)
        number, _ = ca.ledger.next_crl_number(ca.ca_id, fault_child.NOW)
        numbers.append(number)
        if crl_path.exists():
            crl = x509.load_der_x509_crl(crl_path.read_bytes())  # a torn file: ValueError
            assert crl.is_signature_valid(ca.certificate.public_key())  # type: ignore[arg-type]
            published = crl.extensions.get_extension_for_class(x509.CRLNumber).value
            assert published.crl_number < number
            count("fault.crl.file_checked")
        ca.ledger.close()
    assert numbers == sorted(set(numbers))  # strictly increasing across kills


# --- disk full -------------------------------------------------------------------------------


def test_disk_full_during_ledger_write(hold_dir: Path) -> None:
    """RLIMIT_FSIZE makes the ledger's next write fail (EFBIG): a LedgerError, nothing lost."""
    ledger_path = hold_dir / "ledger.sqlite3"
    wal = hold_dir / "ledger.sqlite3-wal"
    size = ledger_path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    child = Child("fsize", hold_dir, str(size + 64 * 1024))
    child.wait_ready()
    out, err = child.proc.communicate(timeout=300)
    lines = child.acked + out.split()
    count("fault.disk_full")
    assert child.proc.returncode == 0, err
    assert "LedgerError" in out, out[-500:] + err[-2000:]
    _integrity(ledger_path)
    ca = fault_child.open_ca(hold_dir)
    acked = [w for w in lines if w not in ("ok", "error", "LedgerError")]
    assert acked, "some issuances succeeded before the disk filled"
    for serial in acked:
        assert ca.ledger.get(int(serial, 16)) is not None
    ca.ledger.close()


def test_disk_full_during_key_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills while a key is written: KeyStoreError, no key file (whole or partial).

    Two ways: a real short write (a child process with RLIMIT_FSIZE below the key file's
    size gets EFBIG from write(2)), and ENOSPC from fsync (monkeypatched, in process).
    """
    keys = tmp_path / "keys"
    store = PEMKeyStore(keys)
    store.generate("existing")
    child = (
        "import resource, signal, sys; from holdca.keys.pem import PEMKeyStore; "
        "from holdca.errors import KeyStoreError; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64)); store = PEMKeyStore(sys.argv[1])\n"
        "try:\n    store.generate('new-short-write')\nexcept KeyStoreError as e:\n"
        "    print('refused', type(e.__cause__).__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", child, str(keys)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    count("fault.disk_full")
    assert out.stdout.startswith("refused"), out.stdout + out.stderr
    assert store.labels() == ["existing"]
    assert sorted(p.name for p in keys.iterdir()) == ["existing.pem"]

    def full(*args: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(KeyStoreError):
        store.generate("new-enospc")
    monkeypatch.undo()
    count("fault.disk_full")
    assert store.labels() == ["existing"]
    assert sorted(p.name for p in keys.iterdir()) == ["existing.pem"]
    store.load("existing").sign(b"still fine")


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """An 8 KiB tmpfs (needs root): a real ENOSPC once it is full."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(mnt)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        missing("permission to mount a tmpfs (run as root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_crl_publication_disk_full(hold_dir: Path, tiny_fs: Path) -> None:
    """A CRL write that fails half-way (disk full) must leave the published CRL intact."""
    env = {
        **os.environ,
        **fault_child.ENV,
        "HOLD_CA_CERT_PATH": str(hold_dir / "ca.crt"),
        "HOLD_CA_KEY_PATH": str(hold_dir / "keys"),
        "HOLD_LEDGER_PATH": str(hold_dir / "ledger.sqlite3"),
    }
    crl_path = tiny_fs / "ca.crl"
    cmd = [sys.executable, "-m", "holdca", "crl", "--out", str(crl_path)]

    def revoke(n: int) -> None:
        ca = fault_child.open_ca(hold_dir)
        for i in range(n):
            leaf = ca.issue(
                "did:plc:ewvi7nxzyoun6zhxrhs64oiz", ca.certificate.public_key(), now=fault_child.NOW
            )[0]
            ca.revoke(serial=leaf.serial_number, now=fault_child.NOW + timedelta(seconds=i))
        ca.ledger.close()

    revoke(20)  # about 1 KB: fits
    subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True)
    before = x509.load_der_x509_crl(crl_path.read_bytes())
    revoke(400)  # about 17 KB: cannot fit in 8 KiB
    failed = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    count("fault.disk_full")
    assert failed.returncode != 0  # the CLI reports the failure
    after = x509.load_der_x509_crl(crl_path.read_bytes())  # torn file: ValueError
    assert after == before


# --- PKCS#11 --------------------------------------------------------------------------------


@pytest.mark.hsm
def test_pkcs11_sessions_lost_during_cosigns(softhsm: SoftHSM, tmp_path: Path) -> None:
    """Sessions closed under a running hold: it recovers; every issued leaf is the CA's."""
    store = softhsm.keystore()
    label = "faults-" + os.urandom(4).hex()
    ca = HoldCA.open(
        store,
        SQLiteLedger(tmp_path / "l.sqlite3"),
        hold_did=fault_child.HOLD_DID,
        subject=fault_child.SUBJECT,
        now=fault_child.NOW,
        create=True,
        resolver=fault_child.NETWORK,
        key_label=label,
    )
    reqs = fault_child.requests(8)
    try:
        issued = []
        for i in range(4 * ROUNDS):
            if i % 2:
                store._token.close_all_sessions()  # a token reset
                count("fault.pkcs11.sessions_closed")
            response = ca.cosign(reqs[i % len(reqs)], now=fault_child.NOW)
            issued.append(response.certificate)
        assert all(_verifies(c, ca.certificate) for c in issued)
        assert ca.ledger.count() == len(issued)

        # the key vanishes and is replaced under the same label: refuse, record nothing
        store.delete(label)
        store.generate(label)
        count("fault.pkcs11.key_replaced")
        with pytest.raises(SignerError):
            ca.cosign(reqs[0], now=fault_child.NOW)
        assert ca.ledger.count() == len(issued)
    finally:
        if label in store.labels():
            store.delete(label)


@pytest.mark.hsm
def test_pkcs11_token_removed(softhsm: SoftHSM, monkeypatch: pytest.MonkeyPatch) -> None:
    """The token stops answering (recovery fails too): a clear SignerError, nothing issued."""
    import pkcs11  # noqa: PLC0415

    store = softhsm.keystore()
    label = "removed-" + os.urandom(4).hex()
    ca = HoldCA.open(
        store,
        MemoryLedger(),
        hold_did=fault_child.HOLD_DID,
        subject=fault_child.SUBJECT,
        now=fault_child.NOW,
        create=True,
        resolver=fault_child.NETWORK,
        key_label=label,
    )
    reqs = fault_child.requests(2)
    try:
        ca.cosign(reqs[0], now=fault_child.NOW)

        class Removed:  # C_OpenSession on a removed token
            def open(self, *args: Any, **kwargs: Any) -> Any:
                raise pkcs11.exceptions.TokenNotPresent()

        store._token.close_all_sessions()
        monkeypatch.setattr(store._token, "token", Removed())
        count("fault.pkcs11.token_removed")
        with pytest.raises(SignerError):
            ca.cosign(reqs[1], now=fault_child.NOW)
        assert ca.ledger.count() == 1
        monkeypatch.undo()  # the token is back: works again
        ca.cosign(reqs[1], now=fault_child.NOW)
        assert ca.ledger.count() == 2
    finally:
        monkeypatch.undo()
        store.delete(label)


# --- the clock goes backwards --------------------------------------------------------------


@pytest.mark.parametrize("ledger_kind", ["sqlite", "memory"])
def test_clock_backwards_crl_monotonic(tmp_path: Path, ledger_kind: str) -> None:
    """CRL numbers strictly increase and thisUpdate never decreases when ``now`` jumps back."""
    ledger = SQLiteLedger(tmp_path / "l.sqlite3") if ledger_kind == "sqlite" else MemoryLedger()
    from holdca.keys import MemoryKeyStore  # noqa: PLC0415

    ca = HoldCA.open(
        MemoryKeyStore(),
        ledger,
        hold_did=fault_child.HOLD_DID,
        subject=SubjectInfo("US", "CA", "Clock Hold"),
        now=fault_child.NOW,
        create=True,
        resolver=fault_child.NETWORK,
    )
    t = fault_child.NOW + timedelta(days=2)  # jumps back stay inside the CA's validity
    last_number, last_update = 0, datetime.min.replace(tzinfo=UTC)
    for step in range(30):
        jump = timedelta(minutes=rng.choice([-90, -5, -1, 0, 1, 30, 120]))
        t = t + jump
        count("fault.clock_jump")
        if step % 3 == 0:
            leaf = ca.issue("did:plc:ewvi7nxzyoun6zhxrhs64oiz", ca.certificate.public_key(), now=t)[
                0
            ]
            ca.revoke(serial=leaf.serial_number, now=t)
        ca._crl_cache.clear()  # force a fresh CRL each step (as a new process would)
        crl = ca.crl(t)
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        assert number > last_number
        assert crl.last_update_utc >= last_update
        assert crl.is_signature_valid(ca.certificate.public_key())  # type: ignore[arg-type]
        last_number, last_update = number, crl.last_update_utc
