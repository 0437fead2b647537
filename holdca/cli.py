"""The ``holdca`` command line.

``holdca demo`` runs the end-to-end demonstration on embedded defaults.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from holdca.demo import run_demo

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    return run_demo(out=sys.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``holdca`` command; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="holdca", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the end-to-end demo in a temporary directory")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
