// subprocess.hpp: runs helper processes with a deadline and captured output. Used to isolate
// vendor runtimes, which are known to hang or crash on broken drivers, from the agent.
#pragma once

#include <atomic>
#include <string>
#include <vector>

namespace cpn {

struct ProcessResult {
    bool started = false;
    std::string start_error;  // why it could not be started
    int exit_code = -1;       // valid when it exited
    int term_signal = 0;      // non-zero when a signal ended it
    bool timed_out = false;   // killed by us at the deadline
    std::string out, err;     // captured, each capped at kMaxOutput bytes
    double wall_ms = 0;
};

constexpr size_t kMaxProcessOutput = 16u << 20;

/* Runs every argv concurrently; `abort`, when given and set, kills them as the deadline would; each is killed (with its process group) when it has not
 * finished within timeout_ms. Returns one result per argv, in order. Never throws. */
std::vector<ProcessResult> run_processes(const std::vector<std::vector<std::string>>& argvs,
                                         int timeout_ms, const std::atomic<bool>* abort = nullptr);

/* "exited with code 3", "killed by signal 11 (Segmentation fault)", "timed out after 5000 ms". */
std::string describe_exit(const ProcessResult& r, int timeout_ms);

}  // namespace cpn
