# Cross build for riscv64 with Debian's cross compiler (g++-riscv64-linux-gnu), tests under
# qemu-riscv64. Needs a riscv64 sysroot (CPN_CROSS_SYSROOT): bookworm's official archive has no
# riscv64 packages, see docs/portability.md.
set(CPN_CROSS_TRIPLET riscv64-linux-gnu)
set(CPN_CROSS_PROCESSOR riscv64)
set(CPN_CROSS_QEMU qemu-riscv64)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
