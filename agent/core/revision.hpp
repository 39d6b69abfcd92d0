#pragma once
// revision.hpp: the git revision this binary was built from.

namespace cpn {

/* The abbreviated commit of the source tree at build time (12 hex digits), with "-dirty" when
 * tracked files differed from it; the configured CPN_GIT_REVISION for a build outside git
 * (a source tarball), else "unknown". Taken on every build (cmake/GitRevision.cmake), not only
 * when CMake configures. */
const char* git_revision();

}  // namespace cpn
