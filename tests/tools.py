"""Gates for external tools: skip on a developer laptop, fail in CI.

In CI (``CI=true``) a missing SoftHSM, openssl or notation is a failure, not a skip: the
interop tests are the point.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"

SOFTHSM_MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


def missing(what: str) -> None:
    """Skip the current test because ``what`` is missing (a failure under CI=true)."""
    if IN_CI:
        pytest.fail(f"required in CI but missing: {what}")
    pytest.skip(f"requires {what}")


def require_tool(name: str, env: str | None = None) -> str:
    """Path of executable ``name`` (or of ``$env`` when set); skip/fail when absent."""
    if env and os.environ.get(env):
        path = os.environ[env]
        if Path(path).is_file():
            return path
    found = shutil.which(name)
    if found is None:
        missing(f"the {name} executable")
        raise AssertionError("unreachable")
    return found


def require_softhsm() -> tuple[str, str]:
    """(path of libsofthsm2.so, path of softhsm2-util); skip/fail when absent."""
    module = os.environ.get("HOLDCA_SOFTHSM_MODULE") or next(
        (p for p in SOFTHSM_MODULE_CANDIDATES if Path(p).is_file()), None
    )
    util = shutil.which("softhsm2-util")
    if module is None or util is None:
        missing("SoftHSM (Debian package softhsm2)")
        raise AssertionError("unreachable")
    return module, util


def require_notation() -> str:
    """Path of the notation v1.3.2 CLI; skip/fail when absent."""
    return require_tool("notation", env="HOLDCA_NOTATION")
