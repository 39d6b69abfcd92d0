// paths.hpp: where the agent finds its own files, relative to its binary, so the build tree and
// an installed tree (<prefix>/bin, <prefix>/<libdir>/cpn-agent/backends) work the same way.
#pragma once

#include <string>

namespace cpn {

/* Absolute path of the running executable (/proc/self/exe). */
std::string executable_path();

/* The program that runs this agent again (the probe-plugin and bench children): $CPN_AGENT_SELF_EXEC
 * when set to an absolute path, else executable_path(). Lets a launcher stand in for the binary,
 * e.g. one that runs a cross-built agent under qemu-user, which the kernel cannot exec without
 * binfmt_misc (tests/CMakeLists.txt, docs/portability.md). */
std::string self_exec_path();

/* <dir of the executable>/../<libdir>/cpn-agent/backends, normalised. */
std::string default_plugin_dir();

/* Reads a whole small text file; "" when it cannot be read. */
std::string read_text_file(const std::string& path, size_t max_bytes = 1 << 20);

}  // namespace cpn
