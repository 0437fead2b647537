"""Shared helpers for the PKI tests: a small CA world, PEM files, openssl runs, strategies."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import strategies as st

from holdca.keys import MemorySigner, Signer
from holdca.pki import SubjectInfo, issue_leaf, issue_root
from tests.tools import require_tool

HOLD_DID = "did:web:hold01.example.com"
USER_DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
SUBJECT = SubjectInfo(country="US", state="CA", organization="Example Hold")


def utcnow() -> datetime:
    """The real current time, seconds precision (openssl checks OCSP times against it)."""
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class CA:
    """A root CA: signer plus certificate."""

    signer: Signer
    cert: x509.Certificate


def make_root(now: datetime, **kwargs: object) -> CA:
    """A fresh P-256 root (kwargs go to issue_root)."""
    signer = MemorySigner.generate()
    cert = issue_root(signer, hold_did=HOLD_DID, subject=SUBJECT, now=now, **kwargs)  # type: ignore[arg-type]
    return CA(signer, cert)


def make_leaf(ca: CA, now: datetime, did: str = USER_DID, **kwargs: object) -> x509.Certificate:
    """A leaf for ``did`` with a fresh P-256 key under ``ca``."""
    key = MemorySigner.generate().public_key
    return issue_leaf(
        ca.signer,
        ca.cert,
        did=did,
        public_key=key,
        subject=SUBJECT,
        now=now,
        **kwargs,  # type: ignore[arg-type]
    )


def pem(path: Path, *certs: x509.Certificate) -> Path:
    """Write ``certs`` as one PEM file and return its path."""
    path.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certs))
    return path


def openssl(*args: str | Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run openssl with ``args``; stdout+stderr are returned as text."""
    exe = require_tool("openssl")
    return subprocess.run(
        [exe, *map(str, args)], capture_output=True, text=True, check=check, timeout=60
    )


def epoch(moment: datetime) -> str:
    """``moment`` as the integer seconds openssl's ``-attime`` takes."""
    return str(int(moment.timestamp()))


# --- hypothesis strategies for account DIDs ------------------------------------------

_B32 = "abcdefghijklmnopqrstuvwxyz234567"
plc_dids = st.text(alphabet=_B32, min_size=24, max_size=24).map(lambda s: f"did:plc:{s}")
_label = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?", fullmatch=True)
_tld = st.from_regex(r"[a-z][a-z0-9]{1,5}", fullmatch=True).filter(
    lambda t: (
        t not in {"alt", "arpa", "example", "internal", "invalid", "local", "localhost", "onion"}
    )
)
web_dids = st.builds(
    lambda labels, tld: "did:web:" + ".".join([*labels, tld]),
    st.lists(_label, min_size=1, max_size=4),
    _tld,
)
account_dids = st.one_of(plc_dids, web_dids)
validities = st.integers(min_value=60, max_value=90 * 24 * 3600).map(lambda s: timedelta(seconds=s))
