#!/usr/bin/env bash
# Run the hardening suite with the big budget and regenerate docs/reliability.md.
# Extra arguments go to scripts/reliability.py (e.g. --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/reliability.py "$@"
