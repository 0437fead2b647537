"""Child process of the kill -9 log test: cosign in a loop with a transparency log.

Run as ``python -m tests.tlog.log_child DIR`` from the repository root (the hold of
tests/hardening/fault_child.py, its log in ``DIR/log`` signed with the Ed25519 seed in
``DIR/log.key``). After each cosign returned it prints ``ok <index> <checkpoint>
<proof> <leaf>`` (base64 fields, the proof's hashes comma-separated) and flushes: what
the child was handed before it was killed.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from holdca.hold.translog import IssuanceLog
from holdca.keys import MemoryEd25519Signer
from holdca.tlog import Ed25519NoteSigner, leaf_hash
from holdca.tlog.entry import encode_certificate
from tests.hardening.fault_child import NOW, open_ca, requests

ORIGIN = "hold-faults.example.com/log"


def log_signer(directory: Path) -> Ed25519NoteSigner:
    """The log key of ``directory`` (its 32-byte seed in ``log.key``)."""
    key = ed25519.Ed25519PrivateKey.from_private_bytes((directory / "log.key").read_bytes())
    return Ed25519NoteSigner(ORIGIN, MemoryEd25519Signer(key))


def main(argv: list[str]) -> int:
    directory = Path(argv[1])
    ca = open_ca(directory)
    ca.transparency = IssuanceLog(directory / "log", log_signer(directory))
    print("ready", flush=True)
    b64 = base64.b64encode
    while True:
        for request in requests(50):
            r = ca.cosign(request, now=NOW)
            rec, receipt = r.record, r.log
            assert receipt is not None
            entry = encode_certificate(
                rec.certificate_der,
                (
                    rec.did,
                    rec.record_uri or "",
                    rec.commit_cid or "",
                    rec.rev or "",
                    rec.manifest_digest,
                    rec.repository or "",
                ),
            )
            proof = ",".join(b64(h).decode() for h in receipt.proof) or "-"
            fields = (b64(receipt.checkpoint).decode(), proof, b64(leaf_hash(entry)).decode())
            print("ok", receipt.index, *fields, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
