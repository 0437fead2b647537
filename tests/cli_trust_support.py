"""Helpers of the ``holdca trust`` tests (tests/test_cli_trust*.py): run the CLI, the
oracles (openssl, notation, the files), a hold directory, signatures made by that hold."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from holdca.keys import MemorySigner
from holdca.notation.oci import OCILayout
from holdca.pki import SubjectInfo, issue_root
from holdca.testing.atproto import TestRepo
from holdca.testing.oci import build_test_image
from holdca.testing.tls import TestPKI
from tests.cli_helpers import run, run_json
from tests.tools import require_notation, require_tool

HOLD_DID = "did:web:hold.trust-test.example.com"
HOLD = ["--did", HOLD_DID, "--country", "US", "--state", "CA", "--org", "Trust Test Hold"]
SCOPE = "local/app"
ALICE = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"


def refused(capsys: pytest.CaptureFixture[str], code: int, *argv: str) -> str:
    """Run a command that must fail with ``code`` and one line on stderr, no traceback."""
    got, _, err = run(capsys, *argv)
    assert got == code, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert "internal error" not in err
    return err


def openssl_sha256(pem_file: Path) -> str:
    """openssl's SHA-256 fingerprint of the first certificate of ``pem_file``."""
    out = subprocess.run(
        [
            require_tool("openssl"),
            "x509",
            "-in",
            str(pem_file),
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip().split("=", 1)[1]


def der_sha256(cert: x509.Certificate) -> str:
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, 64, 2))


def tree(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its bytes (empty if it does not exist)."""
    if not directory.exists():
        return {}
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def store_files(config: Path, name: str, kind: str = "ca") -> list[Path]:
    return sorted((config / "truststore" / "x509" / kind / name).glob("*"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def init_home(path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    data = run_json(capsys, "init", "--home", str(path), *HOLD)
    assert data["created"] is True
    return path


def cosign(
    home: Path, tmp_path: Path, repo: TestRepo, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, str]:
    """A holdca signature for ``repo``'s DID on a fresh image: (layout, image digest)."""
    work = tmp_path / repo.did.replace(":", "-")
    work.mkdir()
    layout_dir = work / "layout"
    image = build_test_image(OCILayout.create(layout_dir), tag="v1", content=repo.did.encode())
    uri = repo.put_manifest(image.digest, repository="alice/app", hold_did=HOLD_DID)
    car, doc = work / "record.car", work / "did.json"
    car.write_bytes(repo.get_record_car(uri))
    doc.write_bytes(repo.did_document())
    run_json(
        capsys, "cosign", "--home", str(home), "--did-doc", str(doc), "--car", str(car),
        "--uri", uri, "--layout", str(layout_dir), "--image", "v1",
    )  # fmt: skip
    return layout_dir, image.digest


def notation(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The notation CLI with ``config`` as NOTATION_CONFIG and a throwaway cache."""
    with tempfile.TemporaryDirectory() as cache:
        return subprocess.run(
            [require_notation(), *args],
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": cache,
                "NOTATION_CONFIG": str(config),
                "NOTATION_CACHE": cache,
                "NOTATION_EXPERIMENTAL": "1",
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def verify(
    config: Path, layout: Path, digest: str, scope: str = SCOPE
) -> subprocess.CompletedProcess[str]:
    return notation(config, "verify", "-v", "--oci-layout", "--scope", scope, f"{layout}@{digest}")


def attacker_root() -> x509.Certificate:
    return issue_root(
        MemorySigner.generate(),
        hold_did=HOLD_DID,
        subject=SubjectInfo(country="US", state="CA", organization="Trust Test Hold"),
        now=datetime.now(UTC),
    )


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def foreign_config(config: Path) -> dict[str, Any]:
    """A notation configuration with a store and a statement holdca did not write."""
    pki = TestPKI(name="someone else's CA")
    other = config / "truststore" / "x509" / "ca" / "other"
    other.mkdir(parents=True)
    (other / "other.crt").write_bytes(pki.certificate.public_bytes(serialization.Encoding.PEM))
    statement = {
        "name": "theirs",
        "registryScopes": ["registry.example.com/theirs"],
        "signatureVerification": {"level": "strict"},
        "trustStores": ["ca:other"],
        "trustedIdentities": ["*"],
    }
    return statement
