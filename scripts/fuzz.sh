#!/usr/bin/env bash
# fuzz.sh: fuzz the agent's readers of outside input with libFuzzer, AddressSanitizer and
# UndefinedBehaviorSanitizer (docs/fuzzing.md).
#
# The targets are tests/fuzz/fuzz_<target>.cpp: onnx_model, tensor, scene, image, task_submit,
# command, config. This script configures BUILD (default build-fuzz/) with clang and
# -DCPN_FUZZ=ON, builds only the fuzz targets, then runs each for SECONDS. A target's working
# corpus starts from the committed seeds (tests/fuzz/corpus/<target>/) and grows under
# BUILD/fuzz-work/<target>/corpus; whatever libFuzzer finds (crash-*, leak-*, timeout-*, oom-*)
# lands in BUILD/fuzz-work/<target>/findings/. To keep a finding as a regression input, minimise
# it (cpn-fuzz-<target> -minimize_crash=1 FILE), fix the reader, and commit the input to
# tests/fuzz/corpus/<target>/: every build's fuzz.<target> CTest then replays it.
#
# Usage: bash scripts/fuzz.sh [--seconds N] [--build DIR] [TARGET...]
#   --seconds N   per target (default 60)
#   --build DIR   the build directory (default build-fuzz)
#   TARGET        the targets to run (default: all)
# Exit status: 0 no findings, 1 findings (listed), 2 usage or build error.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
seconds=60
build="$src/build-fuzz"
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
    --build) build=${2:?--build needs a directory}; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1 (--seconds N, --build DIR)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
    esac
done
case "$seconds" in ''|*[!0-9]*) echo "fuzz.sh: --seconds wants a whole number, not '$seconds'" >&2; exit 2 ;; esac
all=(onnx_model tensor scene image task_submit command config)
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
for t in "${targets[@]}"; do
    [ -d "$src/tests/fuzz/corpus/$t" ] || { echo "fuzz.sh: unknown target '$t' (known: ${all[*]})" >&2; exit 2; }
done

if ! command -v clang++ > /dev/null; then
    echo "fuzz.sh: clang++ not found: apt-get install clang (libFuzzer comes with it)" >&2
    exit 2
fi

if [ ! -f "$build/CMakeCache.txt" ]; then
    # Only the fuzz targets are built, so the vendor backends and the benchmarks are off.
    CC=clang CXX=clang++ cmake -S "$src" -B "$build" -DCPN_FUZZ=ON -DCPN_HARDENING=OFF \
        -DCPN_BACKEND_CUDA=OFF -DCPN_BACKEND_OPENCL=OFF -DCPN_BACKEND_LEVELZERO=OFF -DCPN_BACKEND_FPGA=OFF \
        -DCPN_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo > "$build.configure.log" 2>&1 ||
        { cat "$build.configure.log" >&2; exit 2; }
fi
cmake --build "$build" -j"$(nproc)" --target cpn-fuzz-targets > "$build/fuzz-build.log" 2>&1 ||
    { tail -40 "$build/fuzz-build.log" >&2; echo "fuzz.sh: build failed (log: $build/fuzz-build.log)" >&2; exit 2; }

# Leaks are findings too; the ONNX and protobuf libraries' one-time registrations are not.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
found=0
for t in "${targets[@]}"; do
    work="$build/fuzz-work/$t"
    mkdir -p "$work/corpus" "$work/findings"
    log="$work/last-run.log"
    echo "== $t: ${seconds}s"
    set +e
    "$build/bin/cpn-fuzz-$t" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="$work/findings/" "$work/corpus" "$src/tests/fuzz/corpus/$t" > "$log" 2>&1
    rc=$?
    set -e
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+.*DONE" "$log" | sed 's/^/   /' || true
    n=$(find "$work/findings" -type f | wc -l)
    if [ "$rc" -ne 0 ] || [ "$n" -gt 0 ]; then
        found=1
        echo "   FINDINGS (exit $rc): $(find "$work/findings" -type f | tr '\n' ' ')"
        grep -m3 -E "ERROR: |FUZZ FINDING|runtime error" "$log" | sed 's/^/   /' || true
        echo "   log: $log"
    fi
done
exit $found
