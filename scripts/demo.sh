#!/usr/bin/env bash
# Run the holdca demo on embedded defaults (PEM key store, SQLite ledger, a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/holdca demo "$@"
