#!/usr/bin/env bash
# Installs everything vbpffs needs on a fresh Debian-like machine, then builds it.
#   - Debian's libfuse2 (the library fuse-native's prebuilt addon loads) and fuse (fusermount),
#     only when missing, and only as root (otherwise it says what to run);
#   - the npm packages exactly as package-lock.json pins them (isolated-vm is built from source);
#   - the TypeScript build in dist/.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
dpkg -s libfuse2 >/dev/null 2>&1 || need+=(libfuse2)
dpkg -s fuse >/dev/null 2>&1 || command -v fusermount >/dev/null 2>&1 || need+=(fuse)
if ((${#need[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${need[*]} from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "setup: FUSE is missing; run as root: apt-get install ${need[*]}" >&2
    echo "setup: continuing without it (the library, demo and unit tests work; mount tests skip)" >&2
  fi
fi

# isolated-vm has no prebuilt binary for Node 20: node-gyp builds it against Node's headers. Only the
# npm registry may be reachable, so use the headers installed with Node when npm names none.
if [ -z "${npm_config_nodedir:-}" ] && ! grep -qs '^nodedir' ~/.npmrc && [ -f /usr/include/node/node.h ]; then
  export npm_config_nodedir=/usr
fi
npm ci --no-audit --no-fund
npm run build
echo "setup: done. Try: npm start"
