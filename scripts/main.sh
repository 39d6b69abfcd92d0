#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine (as root): install, build, and discover this node.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
./build/bin/cpn-agent discover "$@"
