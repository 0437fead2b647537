"""Placeholder for the ``watch`` command group (filled in by its own change)."""

from __future__ import annotations

import argparse

from holdca.cli import common as c

__all__ = ["register"]


def register(
    add: c.Adder, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser
) -> None:
    """Add this module's commands to the parser (none yet)."""
