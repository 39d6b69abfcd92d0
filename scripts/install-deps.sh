#!/usr/bin/env bash
# Installs everything cpn-agent needs to build and test on Debian 12, from Debian's packages only.
# The CUDA toolkit is not a Debian package: where /usr/local/cuda exists the CUDA backend builds,
# elsewhere it is skipped (the plugin loads the driver at run time either way).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  # toolchain
  cmake g++ make pkg-config git
  # core libraries
  libhwloc-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev pci.ids
  # MQTT, the store, and the broker the main job and the tests run against
  libpaho-mqttpp-dev libpaho-mqtt-dev libssl-dev libsqlite3-dev mosquitto mosquitto-clients openssl
  # systemd integration (sd_notify, watchdog, journald) and the optional Prometheus endpoint
  libsystemd-dev prometheus-cpp-dev
  # the render workload: PNG images, Wavefront OBJ meshes
  libspng-dev libtinyobjloader-dev
  # the inference workload: ONNX's protobuf classes and type inference, OpenBLAS for GEMM,
  # oneDNN for convolutions; ONNX's own backend tests as test data
  libonnx-dev libprotobuf-dev libopenblas-dev libdnnl-dev libonnx-testdata
  # ... and CLBlast, the OpenCL backend's GEMM
  libclblast-dev
  # backends: OpenCL (PoCL gives a real CPU device), oneAPI Level Zero loader, Xilinx XRT
  ocl-icd-opencl-dev opencl-headers opencl-c-headers pocl-opencl-icd libze-dev libze1 libxrt-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev python3 python3-jsonschema python3-pytest python3-paho-mqtt python3-numpy
  # the Debian packages (CPack) and their install test in a clean Debian 12 root
  dpkg-dev fakeroot lintian debootstrap systemd man-db groff-base
  # the peers the benchmark figures are compared against (bench/, not the tests): clpeak for
  # OpenCL, Intel Embree for BVH traversal
  clpeak libembree-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
