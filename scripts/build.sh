#!/usr/bin/env bash
# Configures and builds cpn-agent into ./build (warnings are errors). The prefix is /usr, as in the
# Debian packages (`cpack -G DEB` in build/ makes them): the build tree mirrors that layout.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr -DCPN_WERROR=ON "$@"
cmake --build build -j"$(nproc)"
