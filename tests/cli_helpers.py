"""What the CLI tests share: a clean environment, and running ``holdca`` in-process."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from holdca.cli import main

__all__ = ["clean_environment", "run", "run_json"]


def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No HOLD_*, HOLDCA_HOME or NOTATION_CONFIG from the caller's environment."""
    for name in list(os.environ):
        if name.startswith("HOLD_") or name in ("HOLDCA_HOME", "NOTATION_CONFIG"):
            monkeypatch.delenv(name)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``holdca ARGV`` through main(): (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    """``holdca ARGV --json``, which must succeed and print a JSON object."""
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert isinstance(data, dict)
    return data
