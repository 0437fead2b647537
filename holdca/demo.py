"""The demo behind ``holdca demo``: a hold CA end to end, in a temporary directory."""

from __future__ import annotations

import tempfile
from typing import TextIO

from holdca.keys.memory import MemoryKeyStore

__all__ = ["run_demo"]


def run_demo(out: TextIO) -> int:
    """Run the demo, printing each step to ``out``; returns an exit code."""
    with tempfile.TemporaryDirectory(prefix="holdca-demo-") as tmp:
        store = MemoryKeyStore()
        signer = store.generate("hold-root")
        out.write(f"1. generated the hold CA key ({signer.algorithm.value}) in {tmp}\n")
    return 0
