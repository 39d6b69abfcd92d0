#!/usr/bin/env bash
# device-check.sh: the GPU checks of the benchmark, inference and rendering issues, in one run on
# an NVIDIA machine that is not a Debian build host (docs/gpu-checks.md).
#
# Needs the kit scripts/device-kit.sh wrote into .device-kit/ here (built elsewhere, carried
# along). Unpacks it under /tmp, points the source directory compiled into the tests and build/
# at this checkout and the kit, finds cuBLAS (PyTorch's wheels or the CUDA toolkit), then runs
# the steps named (default: all, in this order), each under its share of one time budget:
#
#   env     nvidia-smi, the agent's version and `cpn-agent discover`
#   tests   the CUDA cases of cpn-unit-tests: the backend, its bench kernels, inference (the
#           digits CNN, CPU fallback, the ONNX sets with their pass/fail/unsupported counts),
#           rendering (CUDA against the CPU), NVML telemetry, the saxpy conformance
#   bench   `cpn-agent bench --quick`, then `--full`, on the GPU (fp32/fp64/tensor/int8, memory
#           triad, transfers, launch latency beside their peaks): capacity-full.json
#   render  bench/render_devices.py on CUDA (primary and secondary rays/s on the reference scene)
#   infer   bench/infer/bench_infer.py --backend cuda --fp16 against PyTorch on the same GPU
#
# Writes into $OUT (default /tmp/cpn-device-check): device-check.log (everything),
# summary.txt, unit-tests.xml, capacity-full.json, render.md, infer.md.
# Exit status: 0 every step ran and passed, 1 a step failed, 3 no CUDA device was found (the
# GPU steps are skipped with the reason; the tests still run and skip their CUDA cases).
#
# CPN_DEVICE_CHECK_BACKEND=opencl runs the same steps through OpenCL instead (its unit tests, the
# first OpenCL GPU, else PoCL's CPU device; PyTorch on the CPU, no fp16 column): that is how the
# script itself is checked on a machine without an NVIDIA GPU.
#
# Usage: bash scripts/device-check.sh [env] [tests] [bench] [render] [infer]
# Environment: OUT, CPN_DEVICE_CHECK_BUDGET (seconds for all steps, default 420),
#              CPN_PYTHON (default python3), CPN_DEVICE_CHECK_BACKEND (cuda or opencl),
#              CPN_DEVICE_CHECK_SPP (render samples per pixel, default 32),
#              CPN_DEVICE_CHECK_MODELS (default resnet18,mobilenet_v2,squeezenet1_1),
#              CPN_DEVICE_KIT_ROOT (where the kit is unpacked, default /tmp/cpn-device-kit).
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$repo"
out=${OUT:-/tmp/cpn-device-check}
budget=${CPN_DEVICE_CHECK_BUDGET:-420}
py=${CPN_PYTHON:-python3}
backend=${CPN_DEVICE_CHECK_BACKEND:-cuda}
case $backend in
  cuda) filter='*Cuda*:*cuda*'; fp16=(--fp16) ;;
  opencl) filter='*OpenCl*:*Opencl*:*opencl*'; fp16=() ;;
  *) echo "device-check: CPN_DEVICE_CHECK_BACKEND=$backend: cuda or opencl"; exit 2 ;;
esac
kit=$repo/.device-kit
root=${CPN_DEVICE_KIT_ROOT:-/tmp/cpn-device-kit}
started=$SECONDS
mkdir -p "$out"
exec > >(tee -a "$out/device-check.log") 2>&1

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(env tests bench render infer)
for s in "${steps[@]}"; do
  case $s in env|tests|bench|render|infer) ;; *) echo "device-check: unknown step '$s' (env, tests, bench, render, infer)"; exit 2 ;; esac
done

summary=()
failed=0
note() { summary+=("$1"); echo "== $1"; }
die() { echo "device-check: $*"; exit 2; }
# The seconds a step may take: its share, never past the budget (at least 10 s, so a step
# started late still says why it stopped).
left() { local l=$(( budget - (SECONDS - started) )); [ "$1" -lt "$l" ] && l=$1; [ "$l" -lt 10 ] && l=10; echo "$l"; }
stamp() { echo "--- $(date -u +%H:%M:%S) [$(( SECONDS - started )) s] $*"; }

# --- the kit ---------------------------------------------------------------------------------
[ -f "$kit/MANIFEST" ] || die "$kit/MANIFEST is missing: run 'bash scripts/device-kit.sh' on the build machine and carry .device-kit"
manifest() { sed -n "s/^$1=//p" "$kit/MANIFEST"; }
# Unpacks a .tar.xz into a directory: xz(1) where the image has it, else Python's tarfile.
unpack() {
  if command -v xz >/dev/null; then
    xz -dc "$1" | tar -C "$2" -xf -
  else
    "$py" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"
  fi
}
stamp "kit: $(manifest commit) ($(manifest uncommitted_changes) uncommitted files), made $(manifest made); here: $(pwd)"
# Unpacked afresh each run; a directory there that is not an earlier unpacked kit is left alone.
if [ -e "$root" ] && [ ! -f "$root/.cpn-device-kit" ] && [ -n "$(ls -A "$root" 2>/dev/null)" ]; then
  die "$root exists and is not an unpacked kit: set CPN_DEVICE_KIT_ROOT elsewhere"
fi
rm -rf "$root" && mkdir -p "$root" && touch "$root/.cpn-device-kit"
unpack "$kit/kit.tar.xz" "$root" || die "could not unpack $kit/kit.tar.xz"

src=$(manifest source_dir)
if [ "$(realpath -m "$src")" != "$repo" ]; then
  if [ -L "$src" ] || [ ! -e "$src" ]; then
    mkdir -p "$(dirname "$src")" && ln -sfn "$repo" "$src" || die "cannot link $src (compiled into the tests) to $repo"
    echo "linked $src -> $repo"
  else
    die "$src (the source directory compiled into the tests) exists here and is not this checkout"
  fi
fi
if [ -L build ] || [ ! -e build ]; then
  ln -sfn "$root/build" build
else
  die "$repo/build exists and is not the kit's: move it away (the tests read the plugins under build/)"
fi

libs=$root/lib
if LD_LIBRARY_PATH=$libs ldd build/bin/cpn-agent 2>&1 | grep -q 'not found'; then
  libs=$libs:$root/lib-fallback
  echo "this machine's libstdc++ or libgcc_s is older than the build's: using the kit's"
fi
# cuBLAS: a CUDA toolkit's, or PyTorch's nvidia-cublas wheel.
cublas=$(ldconfig -p 2>/dev/null | awk '/libcublas\.so\.[0-9]+ /{print $NF; exit}')
if [ -z "$cublas" ]; then
  cublas=$("$py" - 2>/dev/null <<'EOF'
import glob, os, site, sys
bases = [p for p in sys.path if p.endswith("-packages")]
try:
    bases += site.getsitepackages()
except AttributeError:
    pass
hits = []
for b in bases:
    hits += sorted(glob.glob(os.path.join(b, "nvidia", "**", "libcublas.so.*"), recursive=True))
print(hits[0] if hits else "")
EOF
)
fi
[ -n "$cublas" ] || cublas=$(ls /usr/local/cuda/lib64/libcublas.so.* /usr/local/cuda/targets/x86_64-linux/lib/libcublas.so.* 2>/dev/null | head -1)
if [ -n "$cublas" ]; then
  libs=$libs:$(dirname "$cublas")
  echo "cuBLAS: $cublas"
else
  echo "cuBLAS: not found (the CUDA inference backend uses its built-in GEMM and says so)"
fi
export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if [ ! -d /usr/share/libonnx-testdata/data ] && [ -f "$kit/onnx-testdata.tar.xz" ]; then
  unpack "$kit/onnx-testdata.tar.xz" /usr/share || echo "could not unpack the ONNX test data into /usr/share: the ONNX sets will skip"
fi
agent=$repo/build/bin/cpn-agent
plugins=$repo/build/lib/$(manifest multiarch)/cpn-agent/backends
"$agent" --version >/dev/null || die "build/bin/cpn-agent does not start here (see above; it needs glibc 2.34 or later, this is $(ldd --version 2>&1 | head -1))"

# The first device the backend reaches (a CPU device last), or why there is none.
gpu=$("$py" bench/first_device.py "$agent" "$backend" --plugin-dir "$plugins" 2>"$root/no-device") || gpu=""
gpu_why=$(cat "$root/no-device")

run_step() {  # name, budget s, log file, command...: its output goes to the log file too
  local name=$1 secs log=$3; secs=$(left "$2"); shift 3
  stamp "$name (at most $secs s): $*"
  local t0=$SECONDS rc
  timeout --kill-after=10 "$secs" "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  if [ $rc -eq 0 ]; then note "$name: ok ($(( SECONDS - t0 )) s)"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then note "$name: stopped at its $secs s limit"; failed=1
  else note "$name: failed, exit $rc ($(( SECONDS - t0 )) s)"; failed=1
  fi
  return $rc
}
gtest_counts() {  # the GoogleTest summary lines of a log section
  grep -E '^\[ +(PASSED|FAILED|SKIPPED) +\] [0-9]+ tests?' "$1" | tr -s ' ' | tr '\n' ' ' | sed 's/ $//'
}

for s in "${steps[@]}"; do
  case $s in
  env)
    stamp "env"
    nvidia-smi || echo "nvidia-smi: not available"
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,power.limit,temperature.gpu --format=csv 2>/dev/null
    "$agent" --version
    "$agent" discover --plugin-dir "$plugins"
    "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tail -1
    note "env: $backend device ${gpu:-none ($gpu_why)}"
    ;;
  tests)
    run_step "unit tests ($backend)" 240 "$root/unit.log" build/bin/cpn-unit-tests \
      --gtest_filter="$filter" \
      --gtest_output="xml:$out/unit-tests.xml"
    note "  cpn-unit-tests: $(gtest_counts "$root/unit.log")"
    while read -r line; do note "  $line"; done < <(grep '^onnx backend tests' "$root/unit.log")
    ;;
  bench)
    if [ -z "$gpu" ]; then note "bench: skipped, no $backend device ($gpu_why)"; continue; fi
    run_step "bench --quick on $gpu" 60 "$root/bench-quick.log" "$agent" bench --quick --device "$gpu" --no-store --plugin-dir "$plugins"
    run_step "bench --full on $gpu" 150 "$root/bench-full.log" "$agent" bench --full --device "$gpu" --no-store --plugin-dir "$plugins" \
      -o "$out/capacity-full.json"
    ;;
  render)
    if [ -z "$gpu" ]; then note "render: skipped, no $backend device ($gpu_why)"; continue; fi
    run_step "render rays/s through $backend" 150 "$root/render.log" "$py" bench/render_devices.py --agent "$agent" --backends "$backend" \
      --spp "${CPN_DEVICE_CHECK_SPP:-32}" --reps 3 --markdown "$out/render.md"
    ;;
  infer)
    if [ -z "$gpu" ]; then note "infer: skipped, no $backend device ($gpu_why)"; continue; fi
    run_step "ONNX models through $backend against PyTorch" 240 "$root/infer-bench.log" "$py" bench/infer/bench_infer.py \
      --backend "$backend" --device "$gpu" "${fp16[@]}" --agent "$agent" --plugin-dir "$plugins" --model-dir /tmp/cpn-bench-models \
      --models "${CPN_DEVICE_CHECK_MODELS:-resnet18,mobilenet_v2,squeezenet1_1}" \
      --min-seconds 1 --max-wait 5 --out "$out/infer.md"
    ;;
  esac
done

stamp "done"
{
  echo "device-check $(date -u +%Y-%m-%dT%H:%M:%SZ), kit $(manifest commit), $(( SECONDS - started )) s"
  printf '%s\n' "${summary[@]}"
} | tee "$out/summary.txt"
[ $failed -eq 0 ] || exit 1
[ -n "$gpu" ] || exit 3
exit 0
