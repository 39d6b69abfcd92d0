#!/usr/bin/env bash
# device-kit.sh: pack what the GPU checks need for a machine that is not this one.
#
# The NVIDIA machine the CUDA checks run on (see docs/gpu-checks.md) is a CUDA image, not Debian:
# none of Debian's libraries the agent links (paho, yaml-cpp, spdlog, SQLite, hwloc, ONNX, ...),
# no libonnx-testdata, the repository at another path, and at most 64 MiB may travel with the
# working tree. This script builds the tree (BUILD, default build/), then writes KIT (default
# .device-kit/, git-ignored):
#
#   kit.tar.xz            stripped copies of the agent, the unit tests, the backend plugins
#                         and the test plugins, at their paths under build/,
#                         and lib/: every shared library they need that is not glibc or a vendor
#                         runtime (libcuda, libnvidia-ml, cuBLAS, OpenCL, Level Zero and XRT come
#                         from the machine, or the backend is skipped with the reason), and
#                         lib-fallback/: libstdc++ and libgcc_s, used there only when the
#                         machine's own are older than these
#   onnx-testdata.tar.xz  /usr/share/libonnx-testdata (the ONNX node, pytorch-converted,
#                         pytorch-operator and simple sets)
#   MANIFEST              the commit, the source directory compiled into the tests, the CUDA
#                         architectures, the sizes
#
# scripts/device-check.sh unpacks it there. Every library is checked here: with LD_LIBRARY_PATH
# set to the kit's lib/, each packed program must resolve every library it needs either from the
# kit or from the allowed system set, or this script fails naming the library.
#
# Usage: bash scripts/device-kit.sh [--no-build] [--without-cuda] [BUILD] [KIT]
#   --no-build      pack BUILD as it is (default: bring it up to date first)
#   --without-cuda  pack a build without CUDA kernels too (only for the OpenCL check of
#                   device-check.sh, as the tests do on machines without nvcc)
# Environment: CPN_DEVICE_KIT_XZ (xz preset, default 6).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd -P)
die() { echo "device-kit: $*" >&2; exit 1; }
do_build=1 need_cuda=1 pos=()
for a in "$@"; do
  case $a in
    --no-build) do_build=0 ;;
    --without-cuda) need_cuda=0 ;;
    -*) die "unknown option $a (--no-build, --without-cuda)" ;;
    *) pos+=("$a") ;;
  esac
done
[ ${#pos[@]} -le 2 ] || die "usage: device-kit.sh [--no-build] [--without-cuda] [BUILD] [KIT]"
build=$(realpath -m "${pos[0]:-$repo/build}")
kit=$(realpath -m "${pos[1]:-$repo/.device-kit}")
xz_preset=${CPN_DEVICE_KIT_XZ:-6}
limit_mib=64

[ -f "$build/CMakeCache.txt" ] || die "$build is not a configured build tree (run scripts/build.sh first)"
source_dir=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt")
archs=$(sed -n 's/^CPN_CUDA_ARCHITECTURES:STRING=//p' "$build/CMakeCache.txt")
if [ $need_cuda -eq 1 ]; then
  case ";$archs;" in *";90;"*) ;; *) die "$build builds CUDA for '$archs', not 90 (the H100 and H200): reconfigure with -DCPN_CUDA_ARCHITECTURES=75;80;90" ;; esac
  [ -f "$build/backends/cuda/bench_sm90a.fatbin" ] || die "$build has no CUDA kernels for sm_90a (CPN_NVCC: $(sed -n 's/^CPN_NVCC:FILEPATH=//p' "$build/CMakeCache.txt"))"
fi

if [ $do_build -eq 1 ]; then
  echo "device-kit: building $build"
  cmake --build "$build" -j"$(nproc)" >/dev/null
fi

multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
stage=$(mktemp -d /tmp/cpn-device-kit.XXXXXX)
trap 'rm -rf "$stage"' EXIT

# The programs and plugins, stripped, at their places under build/ (the tests have those paths
# compiled in; device-check.sh links build/ and the source directory to where they land).
files=(bin/cpn-agent bin/cpn-unit-tests)
for f in "$build"/lib/"$multiarch"/cpn-agent/backends/*.so "$build"/test-plugins/*.so; do
  files+=("${f#"$build"/}")
done
for f in "${files[@]}"; do
  [ -f "$build/$f" ] || die "$build/$f is missing"
  mkdir -p "$stage/build/$(dirname "$f")"
  strip --strip-debug -o "$stage/build/$f" "$build/$f"
done

# glibc and the dynamic loader always come from the machine; so do the vendor runtimes the
# plugins open or link, and the XRT plugin's own needs (their absence is a skipped backend, which
# is what such a machine says), and the runtime the test plugin needsruntime is built to miss.
system_re='^(linux-vdso|ld-linux-x86-64|libc|libm|libdl|libpthread|librt|libresolv|libutil)\.so'
vendor_re='^(libcpn-vanishing-runtime|libcuda|libnvidia-ml|libcublas|libcublasLt|libOpenCL|libze_loader|libxrt_coreutil|libxrt_core|libboost_filesystem|libuuid)\.so'
fallback_re='^(libstdc\+\+|libgcc_s)\.so'
mkdir -p "$stage/lib" "$stage/lib-fallback"
# ldd lists every library a program needs, its libraries' needs included.
while read -r name path; do
  if [[ $name =~ $system_re || $name =~ $vendor_re ]]; then continue; fi
  dest=lib; [[ $name =~ $fallback_re ]] && dest=lib-fallback
  cp -L "$path" "$stage/$dest/$name"
done < <(for f in "${files[@]}"; do ldd "$stage/build/$f"; done | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u)
strip --strip-unneeded "$stage"/lib/*.so* "$stage"/lib-fallback/*.so* 2>/dev/null || true

# Check: with only the kit's libraries added, each program finds everything outside the system
# and vendor sets inside the kit.
bad=""
for f in "${files[@]}" ; do
  while read -r name arrow path _; do
    [ "$arrow" = "=>" ] || continue
    if [ "$path" = "not" ]; then
      [[ $name =~ $vendor_re ]] || bad+=" $f:$name(not found)"
      continue
    fi
    [[ $name =~ $system_re || $name =~ $vendor_re || $name =~ $fallback_re ]] && continue
    case "$path" in "$stage"/lib/*) ;; *) bad+=" $f:$name($path)" ;; esac
  done < <(LD_LIBRARY_PATH="$stage/lib" ldd "$stage/build/$f")
done
[ -z "$bad" ] || die "libraries not taken from the kit:$bad"

mkdir -p "$kit"
rm -f "$kit/kit.tar.xz" "$kit/onnx-testdata.tar.xz" "$kit/MANIFEST"
tar -C "$stage" -cf - build lib lib-fallback | xz -T0 "-$xz_preset" > "$kit/kit.tar.xz"
if [ -d /usr/share/libonnx-testdata/data ]; then
  tar -C /usr/share -cf - libonnx-testdata | xz -T0 "-$xz_preset" > "$kit/onnx-testdata.tar.xz"
else
  echo "device-kit: /usr/share/libonnx-testdata is missing (apt-get install libonnx-testdata): the ONNX sets will skip there" >&2
fi

commit=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null | grep -c . || true)
tree_bytes=$(git -C "$repo" ls-files -z | (cd "$repo" && xargs -0 stat -c %s 2>/dev/null) | awk '{s += $1} END {print s + 0}')
kit_bytes=$(du -cb "$kit"/*.tar.xz | tail -1 | cut -f1)
{
  echo "commit=$commit"
  echo "uncommitted_changes=$dirty"
  echo "source_dir=$source_dir"
  echo "cuda_architectures=$archs$([ -f "$build/backends/cuda/bench_sm90a.fatbin" ] || echo ' (no kernels built)')"
  echo "multiarch=$multiarch"
  echo "made=$(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
  echo "kit_bytes=$kit_bytes"
  echo "tree_bytes=$tree_bytes"
  echo "libraries=$(cd "$stage/lib" && ls | tr '\n' ' ')"
} > "$kit/MANIFEST"
total_mib=$(( (kit_bytes + tree_bytes) / 1048576 ))
echo "device-kit: $kit: $(( kit_bytes / 1048576 )) MiB packed + $(( tree_bytes / 1048576 )) MiB working tree (limit $limit_mib MiB)"
[ "$total_mib" -lt "$limit_mib" ] || die "kit and working tree together are $total_mib MiB, over $limit_mib MiB"
echo "device-kit: carry '.device-kit' and run: bash scripts/device-check.sh"
