#!/usr/bin/env bash
# Install what the tests need (SoftHSM, openssl, PostgreSQL, the notation CLI, the Python test
# dependencies), then lint, type-check and run the whole test suite.
# Extra arguments go to pytest, e.g.  scripts/test.sh tests/keys -x
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# 1. SoftHSM and openssl from Debian packages, only when absent.
if ! command -v softhsm2-util >/dev/null || ! command -v openssl >/dev/null; then
  echo "== installing softhsm2 and openssl (Debian packages)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 openssl >/dev/null
fi

# 1a. PostgreSQL for the ledger tests (the tests run initdb in a temporary directory).
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null; then
  echo "== installing postgresql (Debian package)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

# 2. The notation CLI that judges our signatures, pinned to v1.3.2 by
#    scripts/notation/go.mod and cached in GOPATH/bin.
if command -v go >/dev/null; then
  NOTATION="$(go env GOPATH)/bin/notation"
  if ! "$NOTATION" version 2>/dev/null | grep -q "v1.3.2"; then
    echo "== go install notation v1.3.2"
    (cd scripts/notation && GOBIN="$(go env GOPATH)/bin" GOFLAGS=-mod=mod \
      go install github.com/notaryproject/notation/cmd/notation)
  fi
  export HOLDCA_NOTATION="$NOTATION"
  # 2a. The reference OCI registry (distribution v3.0.0, no referrers API) and, for the
  #     referrers API form, go-containerregistry's registry pinned by
  #     scripts/referrers-registry/go.mod; both cached in GOPATH/bin.
  REGISTRY="$(go env GOPATH)/bin/registry"
  if ! "$REGISTRY" --version 2>/dev/null | grep -q "distribution/v3 v3.0.0"; then
    echo "== go install distribution registry v3.0.0"
    GOBIN="$(go env GOPATH)/bin" go install github.com/distribution/distribution/v3/cmd/registry@v3.0.0
  fi
  export HOLDCA_REGISTRY="$REGISTRY"
  REFERRERS_REGISTRY="$(go env GOPATH)/bin/referrers-registry"
  if ! "$REFERRERS_REGISTRY" -version 2>/dev/null | grep -q "go-containerregistry v0.21.5"; then
    echo "== go install referrers-registry (go-containerregistry v0.21.5)"
    (cd scripts/referrers-registry && GOBIN="$(go env GOPATH)/bin" GOFLAGS=-mod=mod go install .)
  fi
  export HOLDCA_REFERRERS_REGISTRY="$REFERRERS_REGISTRY"
else
  echo "== go not found: notation interop tests will skip (and fail when CI=true)"
fi

# 2b. The reference ATProto network (PLC directory + PDS, with Node 22) the integration tests
#     run, pinned by tests/atproto_net/package-lock.json and cached by scripts/atproto-net.sh
#     (minutes the first time, milliseconds after).
if command -v npm >/dev/null; then
  scripts/atproto-net.sh path >/dev/null 2>&1 || echo "== installing the ATProto reference network (npm)"
  if ATPROTO_NET="$(scripts/atproto-net.sh install)"; then
    export HOLDCA_ATPROTO_NET="$ATPROTO_NET"
  elif [ "$(echo "${CI:-}" | tr '[:upper:]' '[:lower:]')" = true ]; then
    echo "== scripts/atproto-net.sh install failed" >&2; exit 1
  else
    echo "== scripts/atproto-net.sh install failed: ATProto integration tests will skip"
  fi
else
  echo "== npm not found: ATProto integration tests will skip (and fail when CI=true)"
fi

# 3. Python environment.
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

# 4. Lint, types, tests.
echo "== ruff";  .venv/bin/ruff check holdca tests benchmarks examples
echo "== mypy";  .venv/bin/mypy
echo "== pytest"; .venv/bin/python -m pytest -n 2 "$@"
