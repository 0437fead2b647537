"""Benchmark: what a holdca signature costs a verifier, measured with the notation CLI itself.

The same image is stored in two OCI layouts. One gets a signature made by holdca
(:func:`holdca.notation.sign_envelope`, the envelope a cosign returns); the other a
signature made by ``notation sign`` itself, with the *same* leaf key and certificate chain
(a local key in ``signingkeys.json``: keyPath/certPath, read by notation-go ``config/keys.go``).
Both are verified by ``NOTATION_EXPERIMENTAL=1 notation verify --oci-layout`` with the
same trust store (the hold's root) and the policy holdca generates; the wall time of each
verify process is timed, alternating the two; the ratio is the median of the per-pair
ratios. A ratio near 1.0 means holdca's output costs verifiers nothing extra.

Usage: ``python benchmarks/bench_notation.py [--runs 25] [--json]``. Needs the notation
v1.3.2 CLI (``$HOLDCA_NOTATION`` or ``/root/go/bin/notation`` or on ``PATH``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Row, emit, environment
from cryptography.hazmat.primitives import serialization

from holdca.keys import MemorySigner
from holdca.notation import (
    OCILayout,
    hold_trust_policy,
    sign_envelope,
    write_trust_policy,
    write_trust_store,
)
from holdca.pki import SubjectInfo, issue_leaf, issue_root
from holdca.testing.oci import build_test_image

BENCH = "notation"
SCOPE = "local/holdca"
SUBJECT = SubjectInfo("US", "CA", "Bench Hold")
DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"


def find_notation() -> str | None:
    """The notation CLI: $HOLDCA_NOTATION, /root/go/bin/notation, or PATH."""
    for candidate in (os.environ.get("HOLDCA_NOTATION"), "/root/go/bin/notation"):
        if candidate and Path(candidate).is_file():
            return candidate
    return shutil.which("notation")


class CLI:
    """notation with a private config directory."""

    def __init__(self, binary: str, home: Path) -> None:
        self.binary = binary
        self.config = home / "config"
        self.config.mkdir(parents=True)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "NOTATION_CONFIG": str(self.config),
            "NOTATION_CACHE": str(home / "cache"),
            "NOTATION_EXPERIMENTAL": "1",
        }

    def run(self, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
        """Run notation; (wall seconds, result)."""
        t0 = time.perf_counter()
        result = subprocess.run(
            [self.binary, *args], env=self.env, capture_output=True, text=True, check=False
        )
        return time.perf_counter() - t0, result


def main() -> int:
    """Sign with both, verify each ``--runs`` times, print the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="JSON lines for run_all.py")
    args = parser.parse_args()
    binary = find_notation()
    if binary is None:
        print("notation CLI not found (set HOLDCA_NOTATION)", file=sys.stderr)
        return 2
    now = datetime.now(UTC)
    root_key = MemorySigner.generate()
    root = issue_root(root_key, hold_did="did:web:hold.bench.example.com", subject=SUBJECT, now=now)
    leaf_key = MemorySigner.generate()
    leaf = issue_leaf(
        root_key, root, did=DID, public_key=leaf_key.public_key, subject=SUBJECT, now=now
    )
    with tempfile.TemporaryDirectory(prefix="holdca-bench-notation-") as tmpdir:
        tmp = Path(tmpdir)
        cli = CLI(binary, tmp / "home")
        write_trust_store(cli.config, "hold", [root])
        write_trust_policy(cli.config, hold_trust_policy(store="hold"))

        # holdca's signature
        ours = OCILayout.create(tmp / "holdca")
        image = build_test_image(ours, content=b"holdca bench image\n")
        envelope = sign_envelope(leaf_key, [leaf, root], image, now=now)
        ours.attach_signature(image, envelope)

        # notation's signature: same image, same key and chain
        theirs = OCILayout.create(tmp / "notation")
        same = build_test_image(theirs, content=b"holdca bench image\n")
        assert same.digest == image.digest
        key_pem = leaf_key.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (tmp / "leaf.key").write_bytes(key_pem)
        os.chmod(tmp / "leaf.key", 0o600)
        (tmp / "chain.pem").write_bytes(
            b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, root))
        )
        (cli.config / "signingkeys.json").write_text(
            json.dumps(
                {
                    "default": "hold-leaf",
                    "keys": [
                        {
                            "name": "hold-leaf",
                            "keyPath": str(tmp / "leaf.key"),
                            "certPath": str(tmp / "chain.pem"),
                        }
                    ],
                }
            )
        )
        _, signed = cli.run(
            "sign", "--signature-format", "jws", "--oci-layout", f"{theirs.path}@{same.digest}"
        )
        if signed.returncode != 0:
            print(f"notation sign failed: {signed.stderr}", file=sys.stderr)
            return 1
        their_env = theirs.signatures_of(same)[0].envelope

        def verify(layout: OCILayout) -> float:
            elapsed, result = cli.run(
                "verify", "--oci-layout", "--scope", SCOPE, f"{layout.path}@{image.digest}"
            )
            if result.returncode != 0 or "Successfully verified" not in result.stdout:
                raise RuntimeError(f"notation verify failed: {result.stderr}")
            return elapsed

        verify(ours)
        verify(theirs)  # warm the page cache
        t_ours: list[float] = []
        t_theirs: list[float] = []
        for _ in range(args.runs):
            t_ours.append(verify(ours))
            t_theirs.append(verify(theirs))
        m_ours = statistics.median(t_ours) * 1000
        m_theirs = statistics.median(t_theirs) * 1000
        pair_ratio = statistics.median(o / t for o, t in zip(t_ours, t_theirs, strict=True))
    rows = [
        Row(
            BENCH,
            "notation verify, notation-made signature (same key and chain)",
            m_theirs,
            unit="ms",
            ratio=1.0,
            reference="notation-made",
            note=f"median of {args.runs}; envelope {len(their_env)} B",
        ),
        Row(
            BENCH,
            "notation verify, holdca-made signature",
            m_ours,
            unit="ms",
            ratio=pair_ratio,
            reference="notation-made (median of per-pair ratios)",
            note=f"median of {args.runs}; envelope {len(envelope)} B",
        ),
    ]
    if not args.json:
        print(f"{environment()}; {binary}\n")
    emit(rows, as_json=args.json, title="notation-side cost")
    return 0


if __name__ == "__main__":
    sys.exit(main())
