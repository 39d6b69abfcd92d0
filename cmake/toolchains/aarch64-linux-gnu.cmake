# Cross build for arm64 with Debian's cross compiler (g++-aarch64-linux-gnu), tests under
# qemu-aarch64. Usage: scripts/cross-test.sh arm64, or
#   cmake -S . -B build-cross-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake \
#         -DCPN_CROSS_SYSROOT=<unpacked arm64 packages>
set(CPN_CROSS_TRIPLET aarch64-linux-gnu)
set(CPN_CROSS_PROCESSOR aarch64)
set(CPN_CROSS_QEMU qemu-aarch64)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
