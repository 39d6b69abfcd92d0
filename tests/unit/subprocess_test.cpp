#include "core/subprocess.hpp"

#include <gtest/gtest.h>

#include <chrono>

namespace cpn {
namespace {

TEST(Subprocess, CapturesOutputAndExitCodes) {
    auto r = run_processes({{"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}}, 10000);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_TRUE(r[0].started);
    EXPECT_EQ(r[0].exit_code, 3);
    EXPECT_EQ(r[0].out, "out\n");
    EXPECT_EQ(r[0].err, "err\n");
    EXPECT_EQ(describe_exit(r[0], 10000), "exited with code 3");
}

TEST(Subprocess, KillsAtTheDeadlineIncludingGrandchildren) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = run_processes({{"/bin/sh", "-c", "sleep 60 & sleep 60"}, {"/bin/true"}}, 300);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(s, 20.0);
    EXPECT_TRUE(r[0].timed_out);
    EXPECT_EQ(describe_exit(r[0], 300), "timed out after 300 ms and was killed");
    EXPECT_FALSE(r[1].timed_out);
    EXPECT_EQ(r[1].exit_code, 0);
}

TEST(Subprocess, ExitedChildWhosePipeAGrandchildHoldsIsNotWaitedFor) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = run_processes({{"/bin/sh", "-c", "echo hi; (sleep 30 &) ; exit 0"}}, 20000);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(s, 15.0);
    EXPECT_FALSE(r[0].timed_out);
    EXPECT_EQ(r[0].exit_code, 0);
}

TEST(Subprocess, SignalIsNamed) {
    auto r = run_processes({{"/bin/sh", "-c", "kill -SEGV $$"}}, 10000);
    EXPECT_EQ(r[0].term_signal, 11);
    EXPECT_EQ(describe_exit(r[0], 10000), "killed by signal 11 (Segmentation fault)");
}

TEST(Subprocess, MissingProgramIsAStartError) {
    auto r = run_processes({{"/nonexistent/program"}}, 1000);
    EXPECT_FALSE(r[0].started);
    EXPECT_EQ(describe_exit(r[0], 1000), "could not start: posix_spawn /nonexistent/program: No such file or directory");
}

}  // namespace
}  // namespace cpn
