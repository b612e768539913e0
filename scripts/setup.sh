#!/usr/bin/env bash
# Installs everything vbpffs needs on a fresh Debian-like machine, then builds it.
#   - Debian's libfuse2 (the library fuse-native's prebuilt addon loads) and fuse (fusermount),
#     only when missing, and only as root (otherwise it says what to run);
#   - the npm packages exactly as package-lock.json pins them (isolated-vm is built from source);
#   - the libfuse3 binding (native/fuse3, the `--fuse libfuse3` backend) when libfuse3-dev is or can
#     be installed; it is optional: a failed build says why and setup goes on;
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

# Only the library and headers: Debian's fuse3 tools package (fusermount3) would remove fuse, whose
# fusermount fuse-native needs; the binding mounts as root without it (docs/DECISIONS.md).
if ! dpkg -s libfuse3-dev >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "setup: installing libfuse3-dev from Debian (for the libfuse3 binding)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libfuse3-dev pkg-config >/dev/null 2>&1; } ||
    echo "setup: could not install libfuse3-dev; the libfuse3 binding will not build" >&2
fi
gyp="$(npm root -g 2>/dev/null || true)/npm/node_modules/node-gyp/bin/node-gyp.js"
[ -f "$gyp" ] || gyp=node_modules/node-gyp/bin/node-gyp.js
if node "$gyp" rebuild --directory native/fuse3 >native/fuse3/build.log 2>&1; then
  echo "setup: built the libfuse3 binding (vbpffs mount --fuse libfuse3)"
else
  echo "setup: the libfuse3 binding did not build (native/fuse3/build.log); mounts use fuse-native" >&2
fi
npm run build
echo "setup: done. Try: npm start"
