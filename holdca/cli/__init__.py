"""The ``holdca`` command (see :mod:`holdca.cli.main`)."""

from __future__ import annotations

from holdca.cli.main import main, parser

__all__ = ["main", "parser"]
