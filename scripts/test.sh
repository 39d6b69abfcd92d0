#!/usr/bin/env bash
# Every test on a fresh Debian 12 machine (as root): install, build with -Werror, run CTest;
# then the core and the CPU backend cross-built for arm64, their unit tests under qemu-user
# (docs/portability.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
cd build
ctest --output-on-failure -j"$(nproc)" --timeout 300
cd ..
bash scripts/cross-test.sh arm64
