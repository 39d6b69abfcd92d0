#!/usr/bin/env bash
# Builds the Debian packages (docs/packaging.md) into build/packages/: install the build
# dependencies, build (prefix /usr, -Werror), then CPack.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
cd build
cpack -G DEB
ls -l packages/*.deb
