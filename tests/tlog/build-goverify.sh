#!/usr/bin/env bash
# Build the independent Go log verifier (tests/tlog/goverify: golang.org/x/mod v0.24.0,
# transparency-dev/merkle v0.0.2, pinned by its go.mod/go.sum) into GOPATH/bin, and
# print its path. Rebuilt only when a source file is newer than the binary.
set -euo pipefail
here="$(cd "$(dirname "$0")/goverify" && pwd)"
bin="$(go env GOPATH)/bin/holdca-goverify"
if [[ ! -x "$bin" || -n "$(find "$here" -newer "$bin" -type f 2>/dev/null)" ]]; then
  (cd "$here" && GOFLAGS=-mod=mod go build -o "$bin" .) >&2
fi
echo "$bin"
