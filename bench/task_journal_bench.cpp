// task_journal_bench.cpp: what the durable task journal costs one echo task: accept (QUEUED),
// RUNNING, SUCCEEDED with its result, and mark_published, each journaled before it is
// acknowledged. Once one call per step (4 commits, 3 of them fsync'd), once in batches of 64
// (group commit: the same 4 commits shared by 64 tasks). Reports tasks/s and the per-task
// latency (submit to journaled result; in a batch every task waits for its whole batch).
// Usage: cpn-bench-task-journal [count=2000] [dir] [group-normal|group-full|single|batched]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "tasks/task_journal.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using cpn::tasks::TaskJournal;
using cpn::tasks::TaskRecord;
using cpn::tasks::TaskState;
using cpn::tasks::Transition;

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

TaskRecord echo_task(const std::string& id) {
    TaskRecord r;
    r.id = id;
    r.kind = "echo";
    r.spec_json = "{\"id\":\"" + id + "\",\"kind\":\"echo\",\"input\":{\"text\":\"" + std::string(200, 'x') + "\"}}";
    r.reply_topic = "cpn/v1/clients/c1/replies";
    r.correlation = "corr-" + id;
    return r;
}

void report(const char* what, std::vector<double>& per_task_ms, double elapsed_s) {
    std::sort(per_task_ms.begin(), per_task_ms.end());
    size_t n = per_task_ms.size();
    std::printf("%-34s n=%zu  %8.0f tasks/s  p50 %.3f ms  p99 %.3f ms  max %.3f ms\n", what, n,
                static_cast<double>(n) / elapsed_s, per_task_ms[n / 2], per_task_ms[n * 99 / 100], per_task_ms.back());
}

bool fail(const cpn::Status& s) {
    std::fprintf(stderr, "%s\n", s.to_string().c_str());
    return false;
}

std::unique_ptr<TaskJournal> open_fresh(const std::string& path) {
    std::filesystem::remove(path);
    auto j = TaskJournal::open(path);
    if (!j.ok()) {
        fail(j.status());
        return nullptr;
    }
    return std::move(j).value();
}

bool single(const std::string& path, int n) {
    auto j = open_fresh(path);
    if (!j) return false;
    std::vector<double> per_task, step[4];
    auto start = Clock::now();
    for (int i = 0; i < n; ++i) {
        auto t = Clock::now();
        std::string id = "s" + std::to_string(i);
        auto a = j->accept(echo_task(id));
        if (!a.ok()) return fail(a.status());
        step[0].push_back(ms_since(t));
        auto t1 = Clock::now();
        auto r = j->transition(id, TaskState::running, "", "cpu0");
        if (!r.ok()) return fail(r.status());
        step[1].push_back(ms_since(t1));
        auto t2 = Clock::now();
        auto d = j->transition(id, TaskState::succeeded, "", "", "{\"output\":\"ref:1\",\"metrics\":{\"ms\":0}}");
        if (!d.ok()) return fail(d.status());
        step[2].push_back(ms_since(t2));
        auto t3 = Clock::now();
        if (auto s = j->mark_published(id, d->version); !s.ok()) return fail(s);
        step[3].push_back(ms_since(t3));
        per_task.push_back(ms_since(t));
    }
    report("one call per step", per_task, ms_since(start) / 1000.0);
    const char* names[4] = {"accept (fsync'd)", "-> RUNNING (fsync'd)", "-> SUCCEEDED (fsync'd)",
                            "mark_published (not fsync'd)"};
    for (int k = 0; k < 4; ++k) {
        std::sort(step[k].begin(), step[k].end());
        std::printf("  %-32s p50 %.3f ms  p99 %.3f ms\n", names[k], step[k][step[k].size() / 2],
                    step[k][step[k].size() * 99 / 100]);
    }
    return true;
}

bool batched(const std::string& path, int n, int batch) {
    auto j = open_fresh(path);
    if (!j) return false;
    std::vector<double> per_task;
    auto start = Clock::now();
    for (int base = 0; base < n; base += batch) {
        int m = std::min(batch, n - base);
        auto t = Clock::now();
        std::vector<TaskRecord> in;
        for (int i = 0; i < m; ++i) in.push_back(echo_task("b" + std::to_string(base + i)));
        auto a = j->accept_batch(std::move(in));
        if (!a.ok()) return fail(a.status());
        std::vector<Transition> run, done;
        for (int i = 0; i < m; ++i) {
            std::string id = "b" + std::to_string(base + i);
            run.push_back({id, TaskState::running, "", "cpu0", ""});
            done.push_back({id, TaskState::succeeded, "", "", "{\"output\":\"ref:1\",\"metrics\":{\"ms\":0}}"});
        }
        auto r = j->transition_batch(run);
        if (!r.ok()) return fail(r.status());
        auto d = j->transition_batch(done);
        if (!d.ok()) return fail(d.status());
        std::vector<std::pair<std::string, int64_t>> marks;
        for (auto& one : d.value()) {
            if (!one.ok()) return fail(one.status());
            marks.emplace_back(one->id, one->version);
        }
        if (auto s = j->mark_published_batch(marks); !s.ok()) return fail(s);
        double ms = ms_since(t);
        for (int i = 0; i < m; ++i) per_task.push_back(ms);
    }
    std::string what = "batches of " + std::to_string(batch);
    report(what.c_str(), per_task, ms_since(start) / 1000.0);
    return true;
}

/* The daemon's path for an inline echo: one commit_group per task that admits it, runs it and
 * ends it (the `then` callback), carrying the delivery mark of the task before it: one commit
 * per task. `full`: synchronous=FULL (fsync per commit) or NORMAL. */
bool grouped(const std::string& path, int n, bool full) {
    auto j = open_fresh(path);
    if (!j) return false;
    if (auto s = j->set_full_durability(full); !s.ok()) return fail(s);
    std::vector<double> per_task;
    std::vector<std::pair<std::string, int64_t>> marks;
    auto start = Clock::now();
    for (int i = 0; i < n; ++i) {
        auto t = Clock::now();
        std::string id = "g" + std::to_string(i);
        std::vector<TaskRecord> in;
        in.push_back(echo_task(id));
        auto then = [&](const std::vector<cpn::Result<std::pair<TaskRecord, bool>>>&) {
            return std::vector<Transition>{{id, TaskState::running, "", "cpu0", ""},
                                           {id, TaskState::succeeded, "", "", "{\"output\":\"ref:1\",\"metrics\":{\"ms\":0}}"}};
        };
        auto g = j->commit_group(std::move(in), {}, then, marks);
        if (!g.ok()) return fail(g.status());
        marks.clear();
        for (auto& one : g->transitioned) {
            if (!one.ok()) return fail(one.status());
            if (one->state == TaskState::succeeded) marks.emplace_back(one->id, one->version);
        }
        per_task.push_back(ms_since(t));
        j->checkpoint_if_due();
    }
    report(full ? "one group per task, FULL" : "one group per task, NORMAL", per_task, ms_since(start) / 1000.0);
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    int n = argc > 1 ? std::atoi(argv[1]) : 2000;
    if (n <= 0) n = 2000;
    std::string dir = argc > 2 ? argv[2] : (std::filesystem::temp_directory_path() / "cpn-bench-task-journal").string();
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    std::printf("task journal: accept + RUNNING + SUCCEEDED + mark_published per echo task, %s\n", dir.c_str());
    // A third argument runs one part alone (for a profiler): group-normal, group-full, single, batched.
    const std::string only = argc > 3 ? argv[3] : "";
    if (!only.empty()) {
        bool ok = only == "group-normal" ? grouped(dir + "/grouped-normal.db", n, false)
                  : only == "group-full" ? grouped(dir + "/grouped-full.db", n, true)
                  : only == "single"     ? single(dir + "/single.db", n)
                  : only == "batched"    ? batched(dir + "/batched-8.db", n, 8)
                                         : (std::fprintf(stderr, "unknown part '%s'\n", only.c_str()), false);
        std::filesystem::remove_all(dir);
        return ok ? 0 : 1;
    }
    bool ok = grouped(dir + "/grouped-normal.db", n * 2, false) && grouped(dir + "/grouped-full.db", n, true) &&
              single(dir + "/single.db", n) && batched(dir + "/batched-8.db", n * 4, 8) &&
              batched(dir + "/batched-64.db", n * 8, 64);
    std::filesystem::remove_all(dir);
    return ok ? 0 : 1;
}
