"""Shared helpers for tests/notation: holdca.pki chains, the notation CLI, an HTTP server."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from holdca.keys import MemorySigner, SignatureAlgorithm, Signer
from holdca.pki import SubjectInfo, issue_leaf, issue_root

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "notation"
SUBJECT = SubjectInfo(country="US", state="CA", organization="Test Hold")
HOLD_DID = "did:web:hold.example.com"
DID_A = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
DID_B = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"
SCOPE = "local/holdca"


@dataclass
class CA:
    """A root CA (signer + certificate) that issues leaves for tests."""

    signer: Signer
    cert: x509.Certificate

    @classmethod
    def create(
        cls,
        *,
        now: datetime | None = None,
        signer: Signer | None = None,
        hold_did: str = HOLD_DID,
        subject: SubjectInfo = SUBJECT,
        common_name: str | None = None,
    ) -> CA:
        signer = signer or MemorySigner.generate()
        when = now or datetime.now(UTC)
        cert = issue_root(
            signer, hold_did=hold_did, subject=subject, now=when, common_name=common_name
        )
        return cls(signer, cert)

    def leaf(
        self,
        did: str = DID_A,
        *,
        now: datetime | None = None,
        algorithm: SignatureAlgorithm = SignatureAlgorithm.ES256,
        validity: timedelta = timedelta(hours=24),
        crl_url: str | None = None,
        ocsp_url: str | None = None,
        chain_tail: list[x509.Certificate] | None = None,
    ) -> tuple[MemorySigner, list[x509.Certificate]]:
        """A fresh leaf key and ``[leaf, root]`` (or ``[leaf, *chain_tail]``)."""
        key = MemorySigner.generate(algorithm)
        cert = issue_leaf(
            self.signer,
            self.cert,
            did=did,
            public_key=key.public_key,
            subject=SUBJECT,
            now=now or datetime.now(UTC),
            validity=validity,
            crl_url=crl_url,
            ocsp_url=ocsp_url,
        )
        return key, [cert, *(chain_tail if chain_tail is not None else [self.cert])]


@dataclass
class NotationCLI:
    """The notation CLI with a private NOTATION_CONFIG and NOTATION_CACHE."""

    binary: str
    config: Path
    cache: Path
    calls: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.config.mkdir(parents=True, exist_ok=True)
        self.cache.mkdir(parents=True, exist_ok=True)

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.config.parent),
            "NOTATION_CONFIG": str(self.config),
            "NOTATION_CACHE": str(self.cache),
            "NOTATION_EXPERIMENTAL": "1",
        }
        argv = [self.binary, *args]
        self.calls.append(argv)
        return subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def verify(
        self, layout: Path, digest: str, scope: str = SCOPE
    ) -> subprocess.CompletedProcess[str]:
        """``notation verify -v --oci-layout --scope <scope> <layout>@<digest>``.

        ``-v`` makes notation log each failed check with its reason (on stderr).
        """
        return self.run("verify", "-v", "--oci-layout", "--scope", scope, f"{layout}@{digest}")


@dataclass
class HTTPServer:
    """A tiny HTTP server on 127.0.0.1.

    GET: ``routes[prefix](rest of path) -> (status, body)``; POST: ``post_routes[path](body)``.
    """

    base_url: str
    routes: dict[str, Callable[[str], tuple[int, bytes]]]
    post_routes: dict[str, Callable[[bytes], tuple[int, bytes]]]
    requests: list[str]
