"""Fixtures of the transparency log tests: a log key, log builders, the Go verifier."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from holdca.keys import MemoryEd25519Signer
from holdca.tlog import DirectoryLog, Ed25519NoteSigner, LogWriter
from tests.tools import missing, require_tool

ORIGIN = "hold.example/log"
BUILD = Path(__file__).parent / "build-goverify.sh"


@pytest.fixture(scope="session")
def goverify() -> str:
    """Path of the Go verifier (tests/tlog/goverify), built once and cached in GOPATH/bin."""
    require_tool("go")
    done = subprocess.run(
        ["bash", str(BUILD)], capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        missing(f"the Go log verifier (build failed: {done.stderr.strip()[-500:]})")
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture
def signer() -> Ed25519NoteSigner:
    """A fresh Ed25519 log key named after the origin."""
    return Ed25519NoteSigner(ORIGIN, MemoryEd25519Signer.generate())


def entries(n: int, tag: str = "e") -> list[bytes]:
    """``n`` distinct entries of varied lengths."""
    return [f"{tag}{i}:".encode() + b"x" * (i % 37) for i in range(n)]


def build_log(
    root: Path, signer: Ed25519NoteSigner, items: Sequence[bytes], batch: int = 10_000
) -> DirectoryLog:
    """Publish ``items`` to ``root`` in batches of ``batch``; an empty list publishes size 0."""
    writer = LogWriter.open(root, signer)
    if not items:
        writer.append([])
    for start in range(0, len(items), batch):
        writer.append(items[start : start + batch])
    return writer.log


def run_goverify(binary: str, log: Path, vkey: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the Go verifier on ``log``."""
    return subprocess.run(
        [binary, "-dir", str(log), "-vkey", vkey, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
