# Shared part of the Debian cross toolchain files (aarch64-linux-gnu.cmake, riscv64-linux-gnu.cmake).
# The including file sets CPN_CROSS_TRIPLET, CPN_CROSS_PROCESSOR and CPN_CROSS_QEMU first.
#
# The compilers are Debian's cross compilers (g++-<triplet>, from crossbuild-essential-<arch>).
# The target's libraries come from a sysroot: CPN_CROSS_SYSROOT (cache variable or environment
# variable) names a directory into which the target's Debian packages were unpacked, which is
# what scripts/cross-test.sh builds without touching the host's own packages (docs/portability.md
# says why it is not Debian multiarch, libfoo-dev:<arch> installed on the host).
# Test binaries run under qemu-user (CMAKE_CROSSCOMPILING_EMULATOR), so ctest works on an x86
# host without binfmt_misc.

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR ${CPN_CROSS_PROCESSOR})
set(CMAKE_LIBRARY_ARCHITECTURE ${CPN_CROSS_TRIPLET})

set(CMAKE_C_COMPILER ${CPN_CROSS_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${CPN_CROSS_TRIPLET}-g++)

# try_compile projects re-read this file without the cache: pass the sysroot on to them.
if(NOT CPN_CROSS_SYSROOT AND DEFINED ENV{CPN_CROSS_SYSROOT})
  set(CPN_CROSS_SYSROOT "$ENV{CPN_CROSS_SYSROOT}")
endif()
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES CPN_CROSS_SYSROOT)

if(NOT CPN_CROSS_SYSROOT)
  message(FATAL_ERROR "Set CPN_CROSS_SYSROOT to the ${CPN_CROSS_TRIPLET} sysroot (the unpacked target "
                      "packages); scripts/cross-test.sh makes one under build-cross/.")
endif()
set(CPN_CROSS_SYSROOT "${CPN_CROSS_SYSROOT}" CACHE PATH "Target sysroot (unpacked Debian packages)")
set(CMAKE_SYSROOT "${CPN_CROSS_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH "${CPN_CROSS_SYSROOT}")

# Libraries, headers and CMake packages from the target only; programs (python3, git) from the host.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# The host's pkg-config reading the target's .pc files.
set(ENV{PKG_CONFIG_LIBDIR} "${CPN_CROSS_SYSROOT}/usr/lib/${CPN_CROSS_TRIPLET}/pkgconfig:${CPN_CROSS_SYSROOT}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "${CPN_CROSS_SYSROOT}")
set(ENV{PKG_CONFIG_PATH} "")

# qemu-user-static (qemu-<cpu>-static) or qemu-user (qemu-<cpu>); -L is where it finds the
# target's dynamic loader and libraries.
find_program(CPN_CROSS_EMULATOR NAMES ${CPN_CROSS_QEMU}-static ${CPN_CROSS_QEMU}
             NO_CMAKE_FIND_ROOT_PATH)
if(CPN_CROSS_EMULATOR)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${CPN_CROSS_EMULATOR};-L;${CPN_CROSS_SYSROOT}")
else()
  message(WARNING "${CPN_CROSS_QEMU}-static / ${CPN_CROSS_QEMU} not found (apt-get install "
                  "qemu-user-static): the build works, ctest cannot run the tests")
endif()
