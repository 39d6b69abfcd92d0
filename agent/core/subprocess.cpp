#include "core/subprocess.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

extern char** environ;

namespace cpn {
namespace {

using Clock = std::chrono::steady_clock;

struct Child {
    pid_t pid = -1;
    int out_fd = -1, err_fd = -1;
    bool exited = false;
    Clock::time_point start;
};

void close_fd(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
}

/* posix_spawn rather than fork: safe in a multi-threaded process, and the child gets its own
 * process group so a runtime that forked helpers is killed whole at the deadline. */
bool spawn(const std::vector<std::string>& argv, Child& c, std::string& error) {
    // Before posix_spawn: with vfork semantics a short child may finish before it returns.
    c.start = Clock::now();
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0) {
        error = std::string("pipe: ") + std::strerror(errno);
        return false;
    }
    if (::pipe2(err, O_CLOEXEC) != 0) {
        error = std::string("pipe: ") + std::strerror(errno);
        ::close(out[0]);
        ::close(out[1]);
        return false;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);

    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int rc = ::posix_spawn(&c.pid, args[0], &fa, &attr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    ::close(out[1]);
    ::close(err[1]);
    if (rc != 0) {
        error = "posix_spawn " + argv[0] + ": " + std::strerror(rc);
        ::close(out[0]);
        ::close(err[0]);
        return false;
    }
    c.out_fd = out[0];
    c.err_fd = err[0];
    return true;
}

void drain(int& fd, std::string& into) {
    char buf[65536];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
        size_t room = kMaxProcessOutput > into.size() ? kMaxProcessOutput - into.size() : 0;
        into.append(buf, std::min(room, static_cast<size_t>(n)));
    } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        close_fd(fd);
    }
}

}  // namespace

std::vector<ProcessResult> run_processes(const std::vector<std::vector<std::string>>& argvs,
                                         int timeout_ms, const std::atomic<bool>* abort) {
    std::vector<ProcessResult> results(argvs.size());
    std::vector<Child> children(argvs.size());
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);

    for (size_t i = 0; i < argvs.size(); ++i) {
        if (argvs[i].empty()) {
            results[i].start_error = "empty command";
            continue;
        }
        results[i].started = spawn(argvs[i], children[i], results[i].start_error);
    }

    for (;;) {
        std::vector<pollfd> fds;
        std::vector<std::pair<size_t, bool>> owner;  // child index, is stdout
        for (size_t i = 0; i < children.size(); ++i) {
            if (children[i].out_fd >= 0) {
                fds.push_back({children[i].out_fd, POLLIN, 0});
                owner.emplace_back(i, true);
            }
            if (children[i].err_fd >= 0) {
                fds.push_back({children[i].err_fd, POLLIN, 0});
                owner.emplace_back(i, false);
            }
        }
        // Reap whoever has exited, so a child that closed its pipes early is seen.
        bool all_done = true;
        for (size_t i = 0; i < children.size(); ++i) {
            Child& c = children[i];
            if (c.pid < 0 || c.exited) continue;
            int st = 0;
            pid_t r = ::waitpid(c.pid, &st, WNOHANG);
            if (r == c.pid) {
                c.exited = true;
                results[i].wall_ms =
                    std::chrono::duration<double, std::milli>(Clock::now() - c.start).count();
                if (WIFEXITED(st)) results[i].exit_code = WEXITSTATUS(st);
                if (WIFSIGNALED(st)) results[i].term_signal = WTERMSIG(st);
            } else {
                all_done = false;
            }
        }
        if (all_done && fds.empty()) break;

        auto now = Clock::now();
        if (now >= deadline || (abort != nullptr && abort->load())) {
            for (size_t i = 0; i < children.size(); ++i) {
                Child& c = children[i];
                if (c.pid > 0 && !c.exited) {
                    ::kill(-c.pid, SIGKILL);
                    ::kill(c.pid, SIGKILL);
                    int st = 0;
                    ::waitpid(c.pid, &st, 0);
                    c.exited = true;
                    results[i].timed_out = true;
                    results[i].term_signal = SIGKILL;
                    results[i].wall_ms =
                        std::chrono::duration<double, std::milli>(Clock::now() - c.start).count();
                }
                close_fd(c.out_fd);
                close_fd(c.err_fd);
            }
            break;
        }
        int wait_ms = static_cast<int>(
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count()) + 1;
        if (fds.empty()) {
            // Pipes closed but a child still runs (daemonised grandchild holds nothing): poll
            // for its exit in short steps.
            ::usleep(1000);
            continue;
        }
        // Short poll steps: a child can exit without closing inherited pipes (a grandchild
        // keeps them), and we still want to reap it promptly.
        int n = ::poll(fds.data(), fds.size(), std::min(wait_ms, 50));
        if (n < 0 && errno != EINTR) break;
        for (size_t k = 0; k < fds.size(); ++k) {
            if (fds[k].revents == 0) continue;
            Child& c = children[owner[k].first];
            if (owner[k].second) drain(c.out_fd, results[owner[k].first].out);
            else drain(c.err_fd, results[owner[k].first].err);
        }
        // A child that has exited and whose pipes stay open (held by a grandchild) must not
        // keep us waiting until the deadline.
        for (size_t i = 0; i < children.size(); ++i) {
            Child& c = children[i];
            if (c.exited && (c.out_fd >= 0 || c.err_fd >= 0)) {
                pollfd p[2];
                int m = 0;
                if (c.out_fd >= 0) p[m++] = {c.out_fd, POLLIN, 0};
                if (c.err_fd >= 0) p[m++] = {c.err_fd, POLLIN, 0};
                if (::poll(p, m, 0) == 0) {
                    close_fd(c.out_fd);
                    close_fd(c.err_fd);
                }
            }
        }
    }
    return results;
}

std::string describe_exit(const ProcessResult& r, int timeout_ms) {
    if (!r.started) return "could not start: " + r.start_error;
    if (r.timed_out) return "timed out after " + std::to_string(timeout_ms) + " ms and was killed";
    if (r.term_signal != 0)
        return "killed by signal " + std::to_string(r.term_signal) + " (" +
               ::strsignal(r.term_signal) + ")";
    return "exited with code " + std::to_string(r.exit_code);
}

}  // namespace cpn
