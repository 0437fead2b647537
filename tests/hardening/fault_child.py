"""Child process for the fault tests: write in a loop until killed (or until the disk is full).

Run as ``python -m tests.hardening.fault_child MODE DIR [LIMIT]`` from the repository root.
After each completed (acknowledged) write it prints one line ``ok <id>`` and flushes, so
the parent knows what the child was told had succeeded before it was killed.

Modes:
    pem     PEMKeyStore(DIR/keys).generate("k<n>") for n = 0, 1, ...
    many    N cosigns (N = LIMIT), then exit 0 (for the two-process ledger test)
    cosign  HoldCA (PEM key store DIR/keys, SQLite ledger DIR/ledger.sqlite3).cosign(...)
    crl     revoke one certificate, then ``holdca crl --out DIR/ca.crl`` (the CLI, in-process)
    fsize   like ``cosign`` but with RLIMIT_FSIZE = LIMIT bytes (disk full: EFBIG); prints
            ``error <ExceptionClass>`` when a write fails and exits 0
"""

from __future__ import annotations

import os
import resource
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from holdca.errors import HoldCAError
from holdca.hold import CosignRequest, HoldCA, SQLiteLedger
from holdca.hold.policy import AllowAllAuthorizer
from holdca.hold.setup import write_pem_certificate
from holdca.keys.pem import PEMKeyStore
from holdca.notation import Descriptor
from holdca.pki import SubjectInfo
from holdca.testing.atproto import TestRepo
from holdca.testing.network import TestNetwork

NOW = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
HOLD_DID = "did:web:hold-faults.example.com"
SUBJECT = SubjectInfo("US", "CA", "Fault Hold")
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
NETWORK = TestNetwork()
"""The stand-in for the PLC directory and the PDS that every hold of this module resolves with."""
ENV = {
    "HOLD_DID": HOLD_DID,
    "HOLD_SUBJECT_C": "US",
    "HOLD_SUBJECT_ST": "CA",
    "HOLD_SUBJECT_O": "Fault Hold",
}


def open_ca(directory: Path) -> HoldCA:
    """The hold every mode shares: PEM key store and SQLite ledger under ``directory``,
    its root in ``directory/ca.crt`` (as ``holdca init`` leaves it: the CLI modes need it,
    only init creates it)."""
    ca = HoldCA.open(
        PEMKeyStore(directory / "keys"),
        SQLiteLedger(directory / "ledger.sqlite3"),
        hold_did=HOLD_DID,
        subject=SUBJECT,
        now=NOW,
        create=True,
        authorizer=AllowAllAuthorizer(),
        resolver=NETWORK,
    )
    if not (directory / "ca.crt").exists():
        write_pem_certificate(directory / "ca.crt", [ca.root_certificate])
    return ca


def requests(n: int = 20) -> list[CosignRequest]:
    """``n`` cosign requests for one fresh repo on :data:`NETWORK` (with proof hints)."""
    repo = NETWORK.add(TestRepo.create("plc", "k256", now=NOW))
    digests = [f"sha256:{i:064x}" for i in range(n)]
    uris = repo.put_manifests(digests, hold_did=HOLD_DID)
    return [
        CosignRequest(repo.did, Descriptor(MANIFEST, d, 10), u, repo.get_record_car(u), repo.did)
        for d, u in zip(digests, uris, strict=True)
    ]


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    mode, directory = argv[0], Path(argv[1])
    if mode == "pem":
        store = PEMKeyStore(directory / "keys")
        n = len(store.labels())
        while True:
            store.generate(f"k{n}")
            say(f"ok k{n}")
            n += 1
    ca = open_ca(directory)
    reqs = requests()
    say("ready")
    if mode == "many":
        for i in range(int(argv[2])):
            response = ca.cosign(reqs[i % len(reqs)], now=NOW + timedelta(seconds=i))
            say(f"ok {response.serial:x}")
        return 0
    if mode == "fsize":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        limit = int(argv[2])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    if mode in ("cosign", "fsize"):
        i = 0
        while True:
            try:
                response = ca.cosign(reqs[i % len(reqs)], now=NOW + timedelta(seconds=i))
            except HoldCAError as exc:
                say(f"error {type(exc).__name__}")
                return 0
            say(f"ok {response.serial:x}")
            i += 1
    if mode == "crl":
        from holdca.cli import main as cli  # noqa: PLC0415

        os.environ.update(
            {
                **ENV,
                "HOLD_CA_CERT_PATH": str(directory / "ca.crt"),
                "HOLD_CA_KEY_PATH": str(directory / "keys"),
                "HOLD_LEDGER_PATH": str(directory / "ledger.sqlite3"),
            }
        )
        i = 0
        while True:
            serial = ca.issue(
                "did:plc:ewvi7nxzyoun6zhxrhs64oiz", ca.certificate.public_key(), now=NOW
            )[0].serial_number
            ca.revoke(serial=serial, now=NOW + timedelta(seconds=i), reason="superseded")
            code = cli(["crl", "--out", str(directory / "ca.crl")])
            if code != 0:
                return code
            say(f"ok crl {i}")
            i += 1
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
