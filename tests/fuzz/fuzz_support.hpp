// fuzz_support.hpp: what every fuzz target shares (docs/fuzzing.md). A target feeds one input to
// one of the agent's readers of outside data and checks the reader's contract: it returns its
// documented error (or throws its documented error type) or a value; anything else (another
// exception type escaping, a crash, a sanitizer report) is a finding. The same target builds two
// ways: as a libFuzzer program (-DCPN_FUZZ=ON, clang, scripts/fuzz.sh) and, in every build, with
// replay_main.cpp as a CTest that runs the committed corpus plus seeded mutations of it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <typeinfo>

namespace cpn::fuzz {

/* A broken contract: say which, then abort so libFuzzer (or CTest) records the input. */
[[noreturn]] inline void broken(const char* target, const std::string& what) {
    std::fprintf(stderr, "FUZZ FINDING in %s: %s\n", target, what.c_str());
    std::fflush(stderr);
    std::abort();
}

/* Runs `f`; an exception other than the ones `f` is allowed to throw is a finding. */
template <class F>
void expect_no_escape(const char* target, F&& f) {
    try {
        f();
    } catch (const std::exception& e) {
        broken(target, std::string("an exception escaped the reader (") + typeid(e).name() + "): " + e.what());
    } catch (...) {
        broken(target, "a non-standard exception escaped the reader");
    }
}

inline std::string as_string(const uint8_t* data, size_t size) {
    return std::string(reinterpret_cast<const char*>(data), size);
}

}  // namespace cpn::fuzz
