#!/usr/bin/env bash
# Configures and builds cpn-agent into ./build (warnings are errors).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCPN_WERROR=ON "$@"
cmake --build build -j"$(nproc)"
