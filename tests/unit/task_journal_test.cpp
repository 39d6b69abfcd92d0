// The durable task journal: idempotent admission (also across restarts), versioned state
// changes, run order, publication bookkeeping, recovery after a restart, retention, batches, and
// what survives kill -9 and a corrupt file.
#include "tasks/task_journal.hpp"

#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "store/outbox.hpp"
#include "test_support.hpp"

namespace cpn::tasks {
namespace {

using test::TempDir;

constexpr TaskState kStates[] = {TaskState::queued,    TaskState::running,  TaskState::succeeded,
                                 TaskState::failed,    TaskState::timed_out, TaskState::canceled,
                                 TaskState::rejected};

std::unique_ptr<TaskJournal> open_journal(const std::string& path) {
    Result<std::unique_ptr<TaskJournal>> r = TaskJournal::open(path);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return r.ok() ? std::move(r).value() : nullptr;
}

TaskRecord task(const std::string& id, const std::string& kind = "echo", int priority = 0) {
    TaskRecord r;
    r.id = id;
    r.kind = kind;
    r.spec_json = "{\"id\":\"" + id + "\",\"kind\":\"" + kind + "\"}";
    r.priority = priority;
    r.reply_topic = "cpn/v1/clients/c1/replies";
    r.correlation = "corr-" + id;
    return r;
}

/* accept() that must create the task; returns the stored record. */
TaskRecord accept_new(TaskJournal& j, TaskRecord r) {
    Result<std::pair<TaskRecord, bool>> a = j.accept(std::move(r));
    EXPECT_TRUE(a.ok()) << a.status().to_string();
    if (!a.ok()) return {};
    EXPECT_TRUE(a->second);
    return a->first;
}

TaskRecord must_transition(TaskJournal& j, const std::string& id, TaskState to, const std::string& reason = "",
                           const std::string& device = "", const std::string& result = "") {
    Result<TaskRecord> r = j.transition(id, to, reason, device, result);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return r.ok() ? r.value() : TaskRecord{};
}

TaskRecord must_get(TaskJournal& j, const std::string& id) {
    Result<std::optional<TaskRecord>> r = j.get(id);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_TRUE(r.ok() && r.value().has_value()) << "no task " << id;
    return r.ok() && r.value() ? *r.value() : TaskRecord{};
}

std::vector<std::string> ids_of(const std::vector<TaskRecord>& v) {
    std::vector<std::string> out;
    for (const TaskRecord& r : v) out.push_back(r.id);
    return out;
}

/* Every field that the journal stores, compared. */
void expect_same(const TaskRecord& a, const TaskRecord& b) {
    EXPECT_EQ(a.id, b.id);
    EXPECT_EQ(a.kind, b.kind);
    EXPECT_EQ(a.spec_json, b.spec_json);
    EXPECT_EQ(a.state, b.state);
    EXPECT_EQ(a.version, b.version);
    EXPECT_EQ(a.priority, b.priority);
    EXPECT_EQ(a.accepted_ms, b.accepted_ms);
    EXPECT_EQ(a.started_ms, b.started_ms);
    EXPECT_EQ(a.finished_ms, b.finished_ms);
    EXPECT_EQ(a.seq, b.seq);
    EXPECT_EQ(a.device_id, b.device_id);
    EXPECT_EQ(a.reason, b.reason);
    EXPECT_EQ(a.result_json, b.result_json);
    EXPECT_EQ(a.reply_topic, b.reply_topic);
    EXPECT_EQ(a.correlation, b.correlation);
    EXPECT_EQ(a.published_version, b.published_version);
    EXPECT_EQ(a.attempts, b.attempts);
}

std::string read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::vector<std::string> files_starting_with(const std::string& dir, const std::string& prefix) {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        std::string name = e.path().filename().string();
        if (name.rfind(prefix, 0) == 0) out.push_back(e.path().string());
    }
    std::sort(out.begin(), out.end());
    return out;
}

/* A forked child that reports int64 values through a pipe, for the kill -9 test. The child runs
 * `body` (which must only use the journal and write(2)) and _exits: no gtest, no atexit. */
struct Reporter {
    pid_t pid = -1;
    int fd = -1;
    bool eof = false;

    template <typename Body>
    static Reporter start(Body body) {
        Reporter r;
        int p[2];
        if (::pipe(p) != 0) return r;
        r.pid = ::fork();
        if (r.pid == 0) {
            ::close(p[0]);
            int code = body(p[1]);
            ::_exit(code);
        }
        ::close(p[1]);
        r.fd = p[0];
        return r;
    }
    /* Reads one reported value; false at EOF or after timeout_ms without one. */
    bool read(int64_t& v, int timeout_ms = 10000) {
        size_t have = 0;
        char* b = reinterpret_cast<char*>(&v);
        while (have < sizeof v) {
            pollfd pfd{fd, POLLIN, 0};
            if (::poll(&pfd, 1, timeout_ms) <= 0) return false;
            ssize_t n = ::read(fd, b + have, sizeof v - have);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                eof = true;
                return false;
            }
            have += static_cast<size_t>(n);
        }
        return true;
    }
    /* SIGKILL, reap; returns the wait status. */
    int kill() {
        ::kill(pid, SIGKILL);
        int st = 0;
        ::waitpid(pid, &st, 0);
        return st;
    }
    ~Reporter() {
        if (fd >= 0) ::close(fd);
    }
};

bool report(int fd, int64_t v) { return ::write(fd, &v, sizeof v) == static_cast<ssize_t>(sizeof v); }

/* The first column of the first row of `sql` as an integer; -1 when there is none. */
int64_t query_int(sqlite3* db, const char* sql) {
    sqlite3_stmt* st = nullptr;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* One group commit as the scheduler makes it for an inline echo: admitted, run and ended,
 * carrying the delivery marks given. Returns the SUCCEEDED record. */
TaskRecord inline_echo(TaskJournal& j, const std::string& id, const std::vector<std::pair<std::string, int64_t>>& marks = {}) {
    std::vector<TaskRecord> acc;
    acc.push_back(task(id));
    auto g = j.commit_group(std::move(acc), {}, [&](const auto&) {
        return std::vector<Transition>{{id, TaskState::running, "", "cpu0", ""},
                                       {id, TaskState::succeeded, "", "", "{\"echo\":\"" + id + "\"}"}};
    }, marks);
    EXPECT_TRUE(g.ok()) << g.status().to_string();
    if (!g.ok() || g->transitioned.size() != 2 || !g->transitioned[1].ok()) return {};
    return g->transitioned[1].value();
}

TEST(TaskJournal, StateNamesAndTransitionTable) {
    for (TaskState s : kStates) {
        std::optional<TaskState> back = task_state_from_string(to_string(s));
        ASSERT_TRUE(back.has_value()) << to_string(s);
        EXPECT_EQ(*back, s);
    }
    EXPECT_STREQ(to_string(TaskState::timed_out), "TIMED_OUT");
    EXPECT_STREQ(to_string(TaskState::canceled), "CANCELED");
    EXPECT_FALSE(task_state_from_string("queued").has_value()) << "wire names are upper case";
    EXPECT_FALSE(task_state_from_string("").has_value());
    EXPECT_FALSE(is_terminal(TaskState::queued));
    EXPECT_FALSE(is_terminal(TaskState::running));
    for (TaskState s : {TaskState::succeeded, TaskState::failed, TaskState::timed_out, TaskState::canceled,
                        TaskState::rejected})
        EXPECT_TRUE(is_terminal(s)) << to_string(s);
    EXPECT_FALSE(is_allowed_transition(TaskState::running, TaskState::queued)) << "only recover() re-queues";
    EXPECT_FALSE(is_allowed_transition(TaskState::queued, TaskState::succeeded));
}

// tasks.journal_sync: normal must really leave commits without fsync, and full must really
// fsync them. SQLite applies PRAGMA synchronous when the statement is prepared: a prepared copy
// stepped again changed nothing the first time, so a journal set to NORMAL right after open kept
// fsyncing every commit (and the round-trip benchmark's "normal" rows measured FULL).
TEST(TaskJournal, DurabilitySettingIsWhatSQLiteUses) {
    TempDir dir;
    auto j = open_journal(dir.file("tasks.db"));
    ASSERT_NE(j, nullptr);
    EXPECT_EQ(j->synchronous_mode(), 2) << "a new journal is FULL";
    ASSERT_TRUE(j->set_full_durability(false).ok());
    EXPECT_EQ(j->synchronous_mode(), 1) << "set_full_durability(false) left SQLite at another level";
    accept_new(*j, task("d1"));
    must_transition(*j, "d1", TaskState::running);
    TaskRecord done = must_transition(*j, "d1", TaskState::succeeded);
    ASSERT_TRUE(j->mark_published_batch({{"d1", done.version}}).ok());
    EXPECT_EQ(j->synchronous_mode(), 1) << "a delivery mark changed a NORMAL journal's level";
    ASSERT_TRUE(j->set_full_durability(true).ok());
    EXPECT_EQ(j->synchronous_mode(), 2);
    // A mark is written without fsync, and every later commit is FULL again.
    accept_new(*j, task("d2"));
    ASSERT_TRUE(j->mark_published_batch({{"d2", 1}}).ok());
    EXPECT_EQ(j->synchronous_mode(), 2) << "a delivery mark left a FULL journal at NORMAL";
    ASSERT_TRUE(j->set_full_durability(false).ok());
    ASSERT_TRUE(j->set_full_durability(false).ok());
    EXPECT_EQ(j->synchronous_mode(), 1);
    auto got = j->get("d2");
    ASSERT_TRUE(got.ok() && got.value().has_value());
    EXPECT_EQ(got.value()->published_version, 1);
}

TEST(TaskJournal, AcceptIsIdempotentAlsoAfterARestart) {
    TempDir dir;
    const std::string path = dir.file("tasks.db");
    auto j = open_journal(path);
    ASSERT_NE(j, nullptr);
    EXPECT_FALSE(j->recovered_from_corruption());

    TaskRecord in = task("t-1", "echo", 5);
    in.accepted_ms = 1'700'000'000'123;
    in.state = TaskState::succeeded;  // ignored: admission always starts QUEUED, version 1
    in.version = 42;
    in.attempts = 9;
    Result<std::pair<TaskRecord, bool>> a = j->accept(in);
    ASSERT_TRUE(a.ok()) << a.status().to_string();
    EXPECT_TRUE(a->second);
    const TaskRecord first = a->first;
    EXPECT_EQ(first.state, TaskState::queued);
    EXPECT_EQ(first.version, 1);
    EXPECT_EQ(first.attempts, 0);
    EXPECT_EQ(first.published_version, 0);
    EXPECT_GT(first.seq, 0);
    EXPECT_EQ(first.accepted_ms, 1'700'000'000'123);
    EXPECT_EQ(first.priority, 5);
    EXPECT_EQ(first.spec_json, in.spec_json);
    expect_same(must_get(*j, "t-1"), first);

    // The same id again, even with another spec: the stored task, unchanged, no second row.
    TaskRecord again = task("t-1", "bench", 0);
    again.spec_json = "{\"different\":true}";
    Result<std::pair<TaskRecord, bool>> b = j->accept(again);
    ASSERT_TRUE(b.ok()) << b.status().to_string();
    EXPECT_FALSE(b->second);
    expect_same(b->first, first);
    EXPECT_EQ(j->count(TaskState::queued), 1);
    Result<std::vector<TaskRecord>> q = j->in_state(TaskState::queued);
    ASSERT_TRUE(q.ok());
    EXPECT_EQ(q->size(), 1u);

    // The default accepted_ms is now.
    TaskRecord second = accept_new(*j, task("t-2"));
    EXPECT_GT(second.accepted_ms, 1'700'000'000'000);
    EXPECT_GT(second.seq, first.seq);

    // A restart: the id is still the key, whatever state the task reached.
    must_transition(*j, "t-2", TaskState::running, "", "cpu0");
    TaskRecord done = must_transition(*j, "t-2", TaskState::succeeded, "", "", "{\"out\":1}");
    j.reset();
    j = open_journal(path);
    ASSERT_NE(j, nullptr);
    b = j->accept(again);
    ASSERT_TRUE(b.ok()) << b.status().to_string();
    EXPECT_FALSE(b->second);
    expect_same(b->first, first);
    b = j->accept(task("t-2"));
    ASSERT_TRUE(b.ok());
    EXPECT_FALSE(b->second) << "a finished task is not run twice";
    expect_same(b->first, done);
    EXPECT_EQ(j->count(TaskState::queued), 1);
    EXPECT_EQ(j->count(TaskState::succeeded), 1);
    // New ids keep their place after the old ones.
    EXPECT_GT(accept_new(*j, task("t-3")).seq, done.seq);
}

TEST(TaskJournal, AcceptRejectsEmptyIdOrKind) {
    TempDir dir;
    auto j = open_journal(dir.file("tasks.db"));
    ASSERT_NE(j, nullptr);
    EXPECT_EQ(j->accept(task("")).status().code(), Code::invalid_argument);
    Result<std::pair<TaskRecord, bool>> r = j->accept(task("x", ""));
    EXPECT_EQ(r.status().code(), Code::invalid_argument);
    EXPECT_NE(r.status().message().find("'x'"), std::string::npos) << r.status().message();
    EXPECT_EQ(j->count(TaskState::queued), 0);
}

TEST(TaskJournal, RejectedSubmitIsRecordedAndAnsweredTheSameWay) {
    TempDir dir;
    const std::string path = dir.file("tasks.db");
    auto j = open_journal(path);
    ASSERT_NE(j, nullptr);
    Result<std::pair<TaskRecord, bool>> r = j->accept_rejected(task("bad", "warp-drive"), "unknown kind 'warp-drive'");
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_TRUE(r->second);
    EXPECT_EQ(r->first.state, TaskState::rejected);
    EXPECT_EQ(r->first.version, 1);
    EXPECT_EQ(r->first.reason, "unknown kind 'warp-drive'");
    EXPECT_EQ(r->first.finished_ms, r->first.accepted_ms);
    EXPECT_EQ(j->count(TaskState::rejected), 1);
    j.reset();
    j = open_journal(path);
    ASSERT_NE(j, nullptr);
    // Re-sent, even as a plain accept: the same rejection, never queued.
    Result<std::pair<TaskRecord, bool>> again = j->accept(task("bad", "warp-drive"));
    ASSERT_TRUE(again.ok());
    EXPECT_FALSE(again->second);
    expect_same(again->first, r->first);
    EXPECT_EQ(j->count(TaskState::queued), 0);
    EXPECT_EQ(j->transition("bad", TaskState::running).status().code(), Code::failed_precondition);
    // And an accepted id cannot be turned into a rejected one.
    accept_new(*j, task("good"));
    again = j->accept_rejected(task("good"), "late");
    ASSERT_TRUE(again.ok());
    EXPECT_FALSE(again->second);
    EXPECT_EQ(again->first.state, TaskState::queued);
}

TEST(TaskJournal, VersionGrowsByOnePerTransitionAndIsNeverReused) {
    TempDir dir;
    const std::string path = dir.file("tasks.db");
    auto j = open_journal(path);
    ASSERT_NE(j, nullptr);
    TaskRecord a = accept_new(*j, task("v"));
    EXPECT_EQ(a.version, 1);
    EXPECT_EQ(a.started_ms, 0);
    TaskRecord r = must_transition(*j, "v", TaskState::running, "", "gpu:0");
    EXPECT_EQ(r.version, 2);
    EXPECT_EQ(r.state, TaskState::running);
    EXPECT_EQ(r.attempts, 1);
    EXPECT_EQ(r.device_id, "gpu:0");
    EXPECT_GT(r.started_ms, 0);
    EXPECT_EQ(r.finished_ms, 0);
    EXPECT_EQ(r.seq, a.seq);

    // A refused change leaves the version where it was.
    Result<TaskRecord> bad = j->transition("v", TaskState::running);
    EXPECT_EQ(bad.status().code(), Code::failed_precondition);
    EXPECT_EQ(must_get(*j, "v").version, 2);

    TaskRecord done = must_transition(*j, "v", TaskState::succeeded, "", "", "{\"metrics\":{\"ms\":3}}");
    EXPECT_EQ(done.version, 3);
    EXPECT_EQ(done.device_id, "gpu:0") << "an empty argument keeps the stored device";
    EXPECT_EQ(done.result_json, "{\"metrics\":{\"ms\":3}}");
    EXPECT_GE(done.finished_ms, done.started_ms);
    EXPECT_EQ(done.started_ms, r.started_ms);
    expect_same(must_get(*j, "v"), done);

    j.reset();
    j = open_journal(path);
    ASSERT_NE(j, nullptr);
    expect_same(must_get(*j, "v"), done);
    EXPECT_EQ(j->transition("v", TaskState::failed).status().code(), Code::failed_precondition);
    EXPECT_EQ(must_get(*j, "v").version, 3);

    // Queued straight to a terminal state: one step, version 2.
    accept_new(*j, task("c"));
    TaskRecord c = must_transition(*j, "c", TaskState::canceled, "canceled by submitter");
    EXPECT_EQ(c.version, 2);
    EXPECT_EQ(c.reason, "canceled by submitter");
    EXPECT_GT(c.finished_ms, 0);
    EXPECT_EQ(c.attempts, 0);
}

TEST(TaskJournal, IllegalTransitionsAreRefusedNamingFromToAndId) {
    TempDir dir;
    auto j = open_journal(dir.file("tasks.db"));
    ASSERT_NE(j, nullptr);
    // One task per (from, to) pair, brought to `from` through legal steps.
    int n = 0;
    for (TaskState from : kStates) {
        for (TaskState to : kStates) {
            const std::string id = std::string("t-") + to_string(from) + "-" + to_string(to) + "-" + std::to_string(n++);
            if (from == TaskState::rejected) {
                ASSERT_TRUE(j->accept_rejected(task(id), "no").ok());
            } else {
                accept_new(*j, task(id));
                if (from != TaskState::queued) must_transition(*j, id, TaskState::running);
                if (from != TaskState::queued && from != TaskState::running) must_transition(*j, id, from);
            }
            const TaskRecord before = must_get(*j, id);
            ASSERT_EQ(before.state, from);
            Result<TaskRecord> r = j->transition(id, to);
            if (is_allowed_transition(from, to)) {
                ASSERT_TRUE(r.ok()) << id << ": " << r.status().to_string();
                EXPECT_EQ(r->version, before.version + 1);
                EXPECT_EQ(r->state, to);
            } else {
                ASSERT_FALSE(r.ok()) << id;
                EXPECT_EQ(r.status().code(), Code::failed_precondition) << r.status().to_string();
                const std::string& m = r.status().message();
                EXPECT_NE(m.find(id), std::string::npos) << m;
                EXPECT_NE(m.find(std::string("from ") + to_string(from)), std::string::npos) << m;
                EXPECT_NE(m.find(std::string("to ") + to_string(to)), std::string::npos) << m;
                expect_same(must_get(*j, id), before);
            }
        }
    }
    // The allowed set, exactly as the issue lists it.
    int allowed = 0;
    for (TaskState from : kStates)
        for (TaskState to : kStates) allowed += is_allowed_transition(from, to) ? 1 : 0;
    EXPECT_EQ(allowed, 8);

    Result<TaskRecord> missing = j->transition("nope", TaskState::running);
    EXPECT_EQ(missing.status().code(), Code::not_found);
    EXPECT_NE(missing.status().message().find("'nope'"), std::string::npos) << missing.status().message();
}

TEST(TaskJournal, QueuedRunsByPriorityThenFifo) {
    TempDir dir;
    auto j = open_journal(dir.file("tasks.db"));
    ASSERT_NE(j, nullptr);
    accept_new(*j, task("a", "echo", 0));
    accept_new(*j, task("b", "echo", 5));
    accept_new(*j, task("c", "echo", 0));
    accept_new(*j, task("d", "echo", -3));
    accept_new(*j, task("e", "echo", 5));
    accept_new(*j, task("f", "echo", 9));
    Result<std::vector<TaskRecord>> q = j->queued(100);
    ASSERT_TRUE(q.ok()) << q.status().to_string();
    EXPECT_EQ(ids_of(q.value()), (std::vector<std::string>{"f", "b", "e", "a", "c", "d"}));
    q = j->queued(2);
    ASSERT_TRUE(q.ok());
    EXPECT_EQ(ids_of(q.value()), (std::vector<std::string>{"f", "b"}));
    EXPECT_TRUE(j->queued(0)->empty());
    // Running and finished tasks are not runnable.
    must_transition(*j, "f", TaskState::running);
    must_transition(*j, "b", TaskState::canceled);
    q = j->queued(100);
    ASSERT_TRUE(q.ok());
    EXPECT_EQ(ids_of(q.value()), (std::vector<std::string>{"e", "a", "c", "d"}));
    EXPECT_EQ(j->count(TaskState::queued), 4);
    EXPECT_EQ(j->count(TaskState::running), 1);
    EXPECT_EQ(j->count(TaskState::canceled), 1);
    Result<std::vector<TaskRecord>> running = j->in_state(TaskState::running);
    ASSERT_TRUE(running.ok());
    EXPECT_EQ(ids_of(running.value()), (std::vector<std::string>{"f"}));
}

TEST(TaskJournal, UnpublishedUntilMarked) {
    TempDir dir;
    const std::string path = dir.file("tasks.db");
    auto j = open_journal(path);
    ASSERT_NE(j, nullptr);
    accept_new(*j, task("a"));
    accept_new(*j, task("b"));
    accept_new(*j, task("c"));
    Result<std::vector<TaskRecord>> u = j->unpublished(100);
    ASSERT_TRUE(u.ok()) << u.status().to_string();
    EXPECT_EQ(ids_of(u.value()), (std::vector<std::string>{"a", "b", "c"}));
    ASSERT_TRUE(j->mark_published("a", 1).ok());
    ASSERT_TRUE(j->mark_published("b", 1).ok());
    EXPECT_EQ(ids_of(j->unpublished(100).value()), (std::vector<std::string>{"c"}));
    EXPECT_EQ(ids_of(j->unpublished(1).value()), (std::vector<std::string>{"c"}));

    // A state change makes it unpublished again; marking an older version does not hide it,
    // and marking never lowers published_version.
    must_transition(*j, "a", TaskState::running);
    must_transition(*j, "a", TaskState::succeeded);
    EXPECT_EQ(ids_of(j->unpublished(100).value()), (std::vector<std::string>{"a", "c"}));
    ASSERT_TRUE(j->mark_published("a", 2).ok());
    EXPECT_EQ(must_get(*j, "a").published_version, 2);
    EXPECT_EQ(ids_of(j->unpublished(100).value()), (std::vector<std::string>{"a", "c"}));
    ASSERT_TRUE(j->mark_published("a", 3).ok());
    ASSERT_TRUE(j->mark_published("a", 1).ok());
    EXPECT_EQ(must_get(*j, "a").published_version, 3);
    EXPECT_EQ(ids_of(j->unpublished(100).value()), (std::vector<std::string>{"c"}));

    // Unknown ids are fine (purged); a version that was never journaled is a caller's bug.
    EXPECT_TRUE(j->mark_published("gone", 7).ok());
    Status s = j->mark_published("c", 2);
    EXPECT_EQ(s.code(), Code::invalid_argument);
    EXPECT_NE(s.message().find("'c'"), std::string::npos) << s.message();
    EXPECT_EQ(must_get(*j, "c").published_version, 0);

    // What was marked survives a restart; what was not is still to publish.
    j.reset();
    j = open_journal(path);
    ASSERT_NE(j, nullptr);
    EXPECT_EQ(ids_of(j->unpublished(100).value()), (std::vector<std::string>{"c"}));
    EXPECT_EQ(must_get(*j, "a").published_version, 3);
}

TEST(TaskJournal, RecoverRequeuesIdempotentKindsAndFailsTheRest) {
    TempDir dir;
    const std::string path = dir.file("tasks.db");
    {
        auto j = open_journal(path);
        ASSERT_NE(j, nullptr);
        accept_new(*j, task("q", "render"));           // queued: untouched
        accept_new(*j, task("e", "echo"));             // running, idempotent
        accept_new(*j, task("r", "render"));           // running, not idempotent
        accept_new(*j, task("done", "render"));        // finished: untouched
        must_transition(*j, "e", TaskState::running, "", "cpu0");
        must_transition(*j, "r", TaskState::running, "", "gpu1");
        must_transition(*j, "done", TaskState::running);
        must_transition(*j, "done", TaskState::succeeded);
        ASSERT_TRUE(j->mark_published("e", 2).ok());
        ASSERT_TRUE(j->mark_published("r", 2).ok());
    }
    auto j = open_journal(path);
    ASSERT_NE(j, nullptr);
    EXPECT_EQ(j->count(TaskState::running), 2);
    const TaskRecord q_before = must_get(*j, "q");
    const TaskRecord done_before = must_get(*j, "done");
    std::vector<std::string> asked;
    Result<std::vector<TaskRecord>> changed = j->recover([&](const std::string& kind) {
        asked.push_back(kind);
        return kind == "echo";
    });
    ASSERT_TRUE(changed.ok()) << changed.status().to_string();
    ASSERT_EQ(changed->size(), 2u);
    EXPECT_EQ(asked, (std::vector<std::string>{"echo", "render"}));
    const TaskRecord& e = (*changed)[0];
    const TaskRecord& r = (*changed)[1];
    EXPECT_EQ(e.id, "e");
    EXPECT_EQ(e.state, TaskState::queued);
    EXPECT_EQ(e.version, 3);
    EXPECT_EQ(e.attempts, 1) << "attempts kept, so the runner sees a re-run";
    EXPECT_EQ(e.started_ms, 0);
    EXPECT_EQ(e.finished_ms, 0);
    EXPECT_EQ(r.id, "r");
    EXPECT_EQ(r.state, TaskState::failed);
    EXPECT_EQ(r.version, 3);
    EXPECT_EQ(r.reason, "agent restarted");
    EXPECT_EQ(r.device_id, "gpu1");
    EXPECT_GT(r.finished_ms, 0);
    expect_same(must_get(*j, "e"), e);
    expect_same(must_get(*j, "r"), r);
    expect_same(must_get(*j, "q"), q_before);
    expect_same(must_get(*j, "done"), done_before);
    EXPECT_EQ(j->count(TaskState::running), 0);
    EXPECT_EQ(j->count(TaskState::queued), 2);
    EXPECT_EQ(j->count(TaskState::failed), 1);
    // Both changes are to be published; the re-queued task runs again, in its old place.
    std::vector<std::string> unpub = ids_of(j->unpublished(100).value());
    EXPECT_NE(std::find(unpub.begin(), unpub.end(), "e"), unpub.end());
    EXPECT_NE(std::find(unpub.begin(), unpub.end(), "r"), unpub.end());
    EXPECT_EQ(ids_of(j->queued(10).value()), (std::vector<std::string>{"q", "e"}));
    TaskRecord rerun = must_transition(*j, "e", TaskState::running);
    EXPECT_EQ(rerun.attempts, 2);
    EXPECT_EQ(rerun.version, 4);
    // Nothing left to recover.
    j.reset();
    j = open_journal(path);
    ASSERT_NE(j, nullptr);
    // (e is RUNNING again: a second restart treats it the same way.)
    changed = j->recover(nullptr);
    ASSERT_TRUE(changed.ok());
    ASSERT_EQ(changed->size(), 1u);
    EXPECT_EQ((*changed)[0].state, TaskState::failed) << "no predicate: nothing is idempotent";
    changed = j->recover([](const std::string&) { return true; });
    ASSERT_TRUE(changed.ok());
    EXPECT_TRUE(changed->empty());
}

TEST(TaskJournal, RecoverFailsAnIdempotentTaskThatUsedUpItsAttempts) {
    // A task that kills the agent whenever it runs must not bring the node down at every
    // restart: after max_attempts starts, recover() fails it instead of re-queueing it.
    TempDir dir;
    const std::string path = dir.file("tasks.db");
    auto all_idempotent = [](const std::string&) { return true; };
    {
        auto j = open_journal(path);
        ASSERT_NE(j, nullptr);
        accept_new(*j, task("poison", "echo"));
        accept_new(*j, task("fresh", "echo"));
        must_transition(*j, "poison", TaskState::running, "", "cpu0");  // attempt 1
        must_transition(*j, "fresh", TaskState::running, "", "cpu0");   // attempt 1
    }
    for (int restart = 1; restart <= 2; ++restart) {
        auto j = open_journal(path);
        ASSERT_NE(j, nullptr);
        Result<std::vector<TaskRecord>> changed = j->recover(all_idempotent, 3);
        ASSERT_TRUE(changed.ok()) << changed.status().to_string();
        ASSERT_EQ(changed->size(), restart == 1 ? 2u : 1u);
        EXPECT_EQ(must_get(*j, "poison").state, TaskState::queued) << "restart " << restart << ": attempts left";
        EXPECT_EQ(must_transition(*j, "poison", TaskState::running).attempts, restart + 1);
        if (restart == 1) {
            must_transition(*j, "fresh", TaskState::running);
            must_transition(*j, "fresh", TaskState::succeeded);
        }
    }
    auto j = open_journal(path);
    ASSERT_NE(j, nullptr);
    Result<std::vector<TaskRecord>> changed = j->recover(all_idempotent, 3);
    ASSERT_TRUE(changed.ok()) << changed.status().to_string();
    ASSERT_EQ(changed->size(), 1u);
    const TaskRecord& p = (*changed)[0];
    EXPECT_EQ(p.state, TaskState::failed);
    EXPECT_EQ(p.attempts, 3);
    EXPECT_EQ(p.reason, reason_out_of_attempts(3, 3));
    EXPECT_NE(p.reason.find("agent_restarted: "), std::string::npos) << p.reason;
    EXPECT_NE(p.reason.find("3 time(s) of 3 allowed (tasks.max_attempts)"), std::string::npos) << p.reason;
    EXPECT_GT(p.finished_ms, 0);
    expect_same(must_get(*j, "poison"), p);
    EXPECT_EQ(must_get(*j, "fresh").state, TaskState::succeeded);
    EXPECT_EQ(j->count(TaskState::running), 0);
}

TEST(TaskJournal, RecoverWithoutALimitRequeuesWhateverTheAttempts) {
    TempDir dir;
    const std::string path = dir.file("tasks.db");
    {
        auto j = open_journal(path);
        ASSERT_NE(j, nullptr);
        accept_new(*j, task("t", "echo"));
        must_transition(*j, "t", TaskState::running);
    }
    for (int restart = 0; restart < 5; ++restart) {
        auto j = open_journal(path);
        ASSERT_NE(j, nullptr);
        ASSERT_TRUE(j->recover([](const std::string&) { return true; }).ok());
        ASSERT_EQ(must_get(*j, "t").state, TaskState::queued);
        must_transition(*j, "t", TaskState::running);
    }
    auto j = open_journal(path);
    EXPECT_EQ(must_get(*j, "t").attempts, 6);
}

TEST(TaskJournal, PurgeKeepsUnpublishedAndUnfinishedTasks) {
    TempDir dir;
    const std::string path = dir.file("tasks.db");
    auto j = open_journal(path);
    ASSERT_NE(j, nullptr);
    accept_new(*j, task("queued"));
    accept_new(*j, task("running"));
    must_transition(*j, "running", TaskState::running);
    accept_new(*j, task("done-published"));
    must_transition(*j, "done-published", TaskState::running);
    must_transition(*j, "done-published", TaskState::succeeded);
    accept_new(*j, task("done-unpublished"));
    must_transition(*j, "done-unpublished", TaskState::running);
    must_transition(*j, "done-unpublished", TaskState::failed, "boom");
    accept_new(*j, task("done-half-published"));
    must_transition(*j, "done-half-published", TaskState::timed_out);
    ASSERT_TRUE(j->accept_rejected(task("rejected"), "bad").ok());
    for (const char* id : {"queued", "running", "done-published", "rejected"})
        ASSERT_TRUE(j->mark_published(id, must_get(*j, id).version).ok()) << id;
    ASSERT_TRUE(j->mark_published("done-half-published", 1).ok());

    // Nothing finished before the cutoff.
    Result<int64_t> n = j->purge(must_get(*j, "done-published").finished_ms);
    ASSERT_TRUE(n.ok()) << n.status().to_string();
    EXPECT_EQ(n.value(), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    n = j->purge(std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::system_clock::now().time_since_epoch()).count() + 1);
    ASSERT_TRUE(n.ok()) << n.status().to_string();
    EXPECT_EQ(n.value(), 2);
    for (const char* gone : {"done-published", "rejected"}) EXPECT_FALSE(j->get(gone).value().has_value()) << gone;
    for (const char* kept : {"queued", "running", "done-unpublished", "done-half-published"})
        EXPECT_TRUE(j->get(kept).value().has_value()) << kept;
    EXPECT_EQ(j->count(TaskState::succeeded), 0);
    EXPECT_EQ(j->count(TaskState::rejected), 0);
    EXPECT_EQ(j->count(TaskState::failed), 1);
    EXPECT_EQ(j->count(TaskState::queued), 1);
    // After a purge the id is free again: a new task, version 1 (documented).
    Result<std::pair<TaskRecord, bool>> again = j->accept(task("done-published"));
    ASSERT_TRUE(again.ok());
    EXPECT_TRUE(again->second);
    EXPECT_EQ(again->first.version, 1);
    j.reset();
    j = open_journal(path);
    ASSERT_NE(j, nullptr);
    EXPECT_FALSE(j->get("rejected").value().has_value());
    EXPECT_EQ(j->count(TaskState::queued), 2);
    EXPECT_EQ(j->count(TaskState::failed), 1);
    EXPECT_EQ(j->count(TaskState::timed_out), 1);
}

TEST(TaskJournal, BinarySafeSpecCorrelationAndResult) {
    TempDir dir;
    const std::string path = dir.file("tasks.db");
    auto j = open_journal(path);
    ASSERT_NE(j, nullptr);
    const std::string spec("{\"a\":\"\0\xff\x01\"}\0tail", 16);
    const std::string corr("\0\0\x7f\x80\xfe\xff\0", 7);
    const std::string result("r\0s\xffz", 5);
    TaskRecord in = task("bin");
    in.spec_json = spec;
    in.correlation = corr;
    in.reply_topic = "";
    TaskRecord a = accept_new(*j, in);
    EXPECT_EQ(a.spec_json, spec);
    must_transition(*j, "bin", TaskState::running);
    must_transition(*j, "bin", TaskState::succeeded, "", "", result);
    j.reset();
    j = open_journal(path);
    ASSERT_NE(j, nullptr);
    TaskRecord got = must_get(*j, "bin");
    EXPECT_EQ(got.spec_json.size(), spec.size());
    EXPECT_TRUE(got.spec_json == spec);
    EXPECT_EQ(got.correlation.size(), 7u);
    EXPECT_TRUE(got.correlation == corr);
    EXPECT_TRUE(got.result_json == result);
    EXPECT_EQ(got.reply_topic, "");
    // Empty binary fields come back empty (not missing).
    TaskRecord e = task("empty");
    e.spec_json.clear();
    e.correlation.clear();
    accept_new(*j, e);
    EXPECT_EQ(must_get(*j, "empty").spec_json, "");
    EXPECT_EQ(must_get(*j, "empty").correlation, "");
}

TEST(TaskJournal, CorruptFileIsMovedAsideAndAFreshJournalStarts) {
    TempDir dir;
    std::string garbage = "this is not an SQLite database\n";
    for (int i = 0; i < 5000; ++i) garbage += static_cast<char>((i * 7919) & 0xff);
    dir.write("tasks.db", garbage);
    auto j = open_journal(dir.file("tasks.db"));
    ASSERT_NE(j, nullptr);
    EXPECT_TRUE(j->recovered_from_corruption());
    std::vector<std::string> aside = files_starting_with(dir.path(), "tasks.db.corrupt-");
    ASSERT_EQ(aside.size(), 1u);
    EXPECT_EQ(j->moved_aside_to(), aside[0]);
    EXPECT_TRUE(read_all(aside[0]) == garbage) << "the corrupt file must be kept as it was";
    EXPECT_EQ(j->count(TaskState::queued), 0);
    accept_new(*j, task("after"));
    j.reset();
    j = open_journal(dir.file("tasks.db"));
    ASSERT_NE(j, nullptr);
    EXPECT_FALSE(j->recovered_from_corruption());
    EXPECT_EQ(j->count(TaskState::queued), 1);
}

TEST(TaskJournal, DamagedPagesAreDetectedByQuickCheck) {
    TempDir dir;
    const std::string path = dir.file("tasks.db");
    {
        auto j = open_journal(path);
        ASSERT_NE(j, nullptr);
        std::vector<TaskRecord> many;
        for (int i = 0; i < 300; ++i) {
            TaskRecord r = task("t" + std::to_string(i));
            r.spec_json.resize(300, 'x');
            many.push_back(std::move(r));
        }
        ASSERT_TRUE(j->accept_batch(std::move(many)).ok());
    }
    std::string db = read_all(path);
    ASSERT_GT(db.size(), 3 * 4096u);
    for (size_t i = 4096; i < db.size(); ++i) db[i] = static_cast<char>((i * 31) & 0xff);
    dir.write("tasks.db", db);
    auto j = open_journal(path);
    ASSERT_NE(j, nullptr);
    EXPECT_TRUE(j->recovered_from_corruption());
    EXPECT_EQ(files_starting_with(dir.path(), "tasks.db.corrupt-").size(), 1u);
    accept_new(*j, task("after"));
}

TEST(TaskJournal, OtherDatabasesAreLeftAlone) {
    TempDir dir;
    // The agent's own outbox is not a journal: refused, untouched, not moved aside.
    const std::string path = dir.file("outbox.db");
    {
        Result<std::unique_ptr<Outbox>> ob = Outbox::open(path, OutboxLimits{});
        ASSERT_TRUE(ob.ok()) << ob.status().to_string();
        ASSERT_TRUE(ob.value()->append("ack", "t", "p", 1, 1).ok());
    }
    std::string before = read_all(path);
    Result<std::unique_ptr<TaskJournal>> r = TaskJournal::open(path);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::failed_precondition);
    EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("not a cpn-agent task journal"), std::string::npos) << r.status().message();
    EXPECT_TRUE(read_all(path) == before);
    EXPECT_TRUE(files_starting_with(dir.path(), "outbox.db.corrupt-").empty());

    Result<std::unique_ptr<TaskJournal>> missing = TaskJournal::open(dir.file("no/such/dir/tasks.db"));
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.status().code(), Code::not_found);
    EXPECT_EQ(TaskJournal::open("").status().code(), Code::invalid_argument);
}

/* A journal written by an agent of schema version 1 (seq AUTOINCREMENT) is migrated at open:
 * every row, state, version and order kept; new admissions continue after the highest seq; a
 * re-sent submit of an old id is still recognised. A version from the future is refused. */
TEST(TaskJournal, SchemaVersion1IsMigrated) {
    TempDir dir;
    const std::string path = dir.file("tasks.db");
    {
        sqlite3* db = nullptr;
        ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
        const char* v1 = R"sql(
PRAGMA journal_mode=WAL;
BEGIN;
CREATE TABLE tasks(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    spec BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'TIMED_OUT',
                                         'CANCELED', 'REJECTED')),
    version INTEGER NOT NULL, priority INTEGER NOT NULL, accepted_ms INTEGER NOT NULL,
    started_ms INTEGER NOT NULL, finished_ms INTEGER NOT NULL, device_id TEXT NOT NULL,
    reason TEXT NOT NULL, result BLOB NOT NULL, reply_topic TEXT NOT NULL, correlation BLOB NOT NULL,
    published_version INTEGER NOT NULL, attempts INTEGER NOT NULL
);
CREATE INDEX tasks_runnable ON tasks(priority DESC, seq) WHERE state = 'QUEUED';
CREATE INDEX tasks_unpublished ON tasks(seq) WHERE version > published_version;
CREATE INDEX tasks_by_state ON tasks(state, finished_ms);
INSERT INTO tasks VALUES (3, 'done', 'echo', '{}', 'SUCCEEDED', 3, 0, 10, 11, 12, 'cpu', '', '{"r":1}', 'cpn/v1/replies/x', X'00FF', 3, 1);
INSERT INTO tasks VALUES (5, 'low', 'echo', '{}', 'QUEUED', 1, -5, 20, 0, 0, '', '', '', '', '', 0, 0);
INSERT INTO tasks VALUES (7, 'high', 'echo', '{}', 'QUEUED', 1, 9, 30, 0, 0, '', '', '', '', '', 1, 0);
INSERT INTO tasks VALUES (9, 'cut', 'render', '{}', 'RUNNING', 2, 0, 40, 41, 0, 'gpu0', '', '', '', '', 2, 1);
UPDATE sqlite_sequence SET seq = 42 WHERE name = 'tasks';
PRAGMA application_id=1129336404;
PRAGMA user_version=1;
COMMIT;
)sql";
        char* err = nullptr;
        ASSERT_EQ(sqlite3_exec(db, v1, nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
        sqlite3_close(db);
    }
    auto j = open_journal(path);
    ASSERT_NE(j, nullptr);
    EXPECT_EQ(j->count(TaskState::queued), 2);
    EXPECT_EQ(j->count(TaskState::running), 1);
    EXPECT_EQ(j->count(TaskState::succeeded), 1);
    auto done = j->get("done");
    ASSERT_TRUE(done.ok() && done.value());
    EXPECT_EQ(done.value()->version, 3);
    EXPECT_EQ(done.value()->result_json, "{\"r\":1}");
    EXPECT_EQ(done.value()->correlation, std::string("\x00\xff", 2));
    auto q = j->queued(10);
    ASSERT_TRUE(q.ok());
    ASSERT_EQ(q->size(), 2u);
    EXPECT_EQ(q->at(0).id, "high");
    EXPECT_EQ(q->at(1).id, "low");
    auto un = j->unpublished(10);
    ASSERT_TRUE(un.ok());
    ASSERT_EQ(un->size(), 1u);
    EXPECT_EQ(un->front().id, "low");
    auto again = j->accept(task("done"));
    ASSERT_TRUE(again.ok());
    EXPECT_FALSE(again->second);
    TaskRecord fresh = accept_new(*j, task("fresh", "echo", 9));
    EXPECT_GT(fresh.seq, 9);
    q = j->queued(10);
    ASSERT_TRUE(q.ok());
    ASSERT_EQ(q->size(), 3u);
    EXPECT_EQ(q->at(1).id, "fresh");  // after "high": same priority, admitted later
    auto rec = j->recover([](const std::string&) { return false; });
    ASSERT_TRUE(rec.ok());
    ASSERT_EQ(rec->size(), 1u);
    EXPECT_EQ(rec->front().id, "cut");
    // The log (version 3) is there: a group commit goes through it.
    std::vector<TaskRecord> grp;
    grp.push_back(task("grouped"));
    ASSERT_TRUE(j->commit_group(std::move(grp), {}, nullptr).ok());
    EXPECT_EQ(j->pending_rows(), 1u);
    j.reset();
    {
        // The file is now version 3, without AUTOINCREMENT and its sqlite_sequence row, and the
        // closing journal wrote its log into the table.
        sqlite3* db = nullptr;
        ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
        sqlite3_stmt* st = nullptr;
        ASSERT_EQ(sqlite3_prepare_v2(db,
                                     "SELECT (SELECT user_version FROM pragma_user_version), "
                                     "(SELECT sql FROM sqlite_schema WHERE name = 'tasks'), "
                                     "(SELECT count(*) FROM sqlite_schema WHERE name = 'sqlite_sequence' "
                                     "AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'tasks'))",
                                     -1, &st, nullptr),
                  SQLITE_OK);
        ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
        EXPECT_EQ(sqlite3_column_int(st, 0), 3);
        const std::string sql = reinterpret_cast<const char*>(sqlite3_column_text(st, 1));
        EXPECT_EQ(sql.find("AUTOINCREMENT"), std::string::npos) << sql;
        EXPECT_EQ(sqlite3_column_int(st, 2), 0);
        sqlite3_finalize(st);
        EXPECT_EQ(query_int(db, "SELECT count(*) FROM log"), 0);
        EXPECT_EQ(query_int(db, "SELECT count(*) FROM tasks WHERE id = 'grouped'"), 1);
        // A version from a newer agent is refused, and left as it is.
        ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=4", nullptr, nullptr, nullptr), SQLITE_OK);
        sqlite3_close(db);
    }
    Result<std::unique_ptr<TaskJournal>> newer = TaskJournal::open(path);
    ASSERT_FALSE(newer.ok());
    EXPECT_EQ(newer.status().code(), Code::failed_precondition);
    EXPECT_NE(newer.status().message().find("schema version 4"), std::string::npos) << newer.status().message();
}

TEST(TaskJournal, BatchFormsCommitTogetherAndReportPerEntry) {
    TempDir dir;
    const std::string path = dir.file("tasks.db");
    auto j = open_journal(path);
    ASSERT_NE(j, nullptr);
    accept_new(*j, task("old"));

    std::vector<TaskRecord> batch;
    batch.push_back(task("b1", "echo", 1));
    batch.push_back(task(""));  // invalid: its own error, the rest still written
    batch.push_back(task("old"));
    batch.push_back(task("b2", "bench", 2));
    batch.push_back(task("b1", "render"));  // twice in one batch: the first wins
    TaskRecord rej = task("b3");
    rej.state = TaskState::rejected;
    rej.reason = "over quota";
    batch.push_back(rej);
    auto acc = j->accept_batch(std::move(batch));
    ASSERT_TRUE(acc.ok()) << acc.status().to_string();
    ASSERT_EQ(acc->size(), 6u);
    auto& out = acc.value();
    ASSERT_TRUE(out[0].ok());
    EXPECT_TRUE(out[0]->second);
    EXPECT_EQ(out[1].status().code(), Code::invalid_argument);
    ASSERT_TRUE(out[2].ok());
    EXPECT_FALSE(out[2]->second);
    ASSERT_TRUE(out[3].ok());
    EXPECT_TRUE(out[3]->second);
    EXPECT_GT(out[3]->first.seq, out[0]->first.seq);
    ASSERT_TRUE(out[4].ok());
    EXPECT_FALSE(out[4]->second);
    EXPECT_EQ(out[4]->first.kind, "echo");
    expect_same(out[4]->first, out[0]->first);
    ASSERT_TRUE(out[5].ok());
    EXPECT_TRUE(out[5]->second);
    EXPECT_EQ(out[5]->first.state, TaskState::rejected);
    EXPECT_EQ(out[5]->first.reason, "over quota");
    EXPECT_EQ(j->count(TaskState::queued), 3);
    EXPECT_EQ(j->count(TaskState::rejected), 1);
    EXPECT_TRUE(j->accept_batch({}).ok());

    // Several steps of one task in one batch, a refused entry that fails alone, an unknown id.
    std::vector<Transition> changes = {
        {"b1", TaskState::running, "", "cpu0", ""},
        {"b1", TaskState::succeeded, "", "", "{\"r\":1}"},
        {"b1", TaskState::canceled, "too late", "", ""},  // lost the race with SUCCEEDED
        {"missing", TaskState::running, "", "", ""},
        {"b2", TaskState::running, "", "gpu0", ""},
    };
    auto tr = j->transition_batch(changes);
    ASSERT_TRUE(tr.ok()) << tr.status().to_string();
    ASSERT_EQ(tr->size(), 5u);
    auto& t = tr.value();
    ASSERT_TRUE(t[0].ok());
    EXPECT_EQ(t[0]->version, 2);
    ASSERT_TRUE(t[1].ok());
    EXPECT_EQ(t[1]->version, 3);
    EXPECT_EQ(t[1]->device_id, "cpu0");
    EXPECT_EQ(t[2].status().code(), Code::failed_precondition);
    EXPECT_NE(t[2].status().message().find("from SUCCEEDED to CANCELED"), std::string::npos) << t[2].status().message();
    EXPECT_EQ(t[3].status().code(), Code::not_found);
    ASSERT_TRUE(t[4].ok());
    EXPECT_EQ(t[4]->state, TaskState::running);
    EXPECT_EQ(j->count(TaskState::succeeded), 1);
    EXPECT_EQ(j->count(TaskState::running), 1);
    EXPECT_EQ(j->count(TaskState::queued), 1);

    // A batch whose every entry is refused changes nothing.
    auto none = j->transition_batch({{"b1", TaskState::running, "", "", ""}});
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(none.value()[0].ok());
    EXPECT_EQ(must_get(*j, "b1").version, 3);

    ASSERT_TRUE(j->mark_published_batch({{"b1", 3}, {"b2", 2}, {"old", 1}, {"b3", 1}}).ok());
    EXPECT_TRUE(j->unpublished(10)->empty());
    // On an error nothing in the batch is marked.
    must_transition(*j, "b2", TaskState::succeeded);
    EXPECT_EQ(j->mark_published_batch({{"b2", 3}, {"b1", 99}}).code(), Code::invalid_argument);
    EXPECT_EQ(must_get(*j, "b2").published_version, 2);

    j.reset();
    j = open_journal(path);
    ASSERT_NE(j, nullptr);
    EXPECT_EQ(must_get(*j, "b1").state, TaskState::succeeded);
    EXPECT_EQ(must_get(*j, "b1").result_json, "{\"r\":1}");
    EXPECT_EQ(must_get(*j, "b2").state, TaskState::succeeded);
    EXPECT_EQ(j->count(TaskState::succeeded), 2);
}

TEST(TaskJournal, ConcurrentCallersAreSerialized) {
    TempDir dir;
    auto j = open_journal(dir.file("tasks.db"));
    ASSERT_NE(j, nullptr);
    constexpr int kThreads = 3, kEach = 20;
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < kEach; ++i) {
                std::string id = "w" + std::to_string(t) + "-" + std::to_string(i);
                if (!j->accept(task(id)).ok()) ++failures;
                // Every thread also re-submits another thread's ids: never a second task.
                (void)j->accept(task("w0-" + std::to_string(i)));
                if (!j->transition(id, TaskState::running).ok()) ++failures;
                Result<TaskRecord> r = j->transition(id, TaskState::succeeded);
                if (!r.ok() || r->version != 3) ++failures;
            }
        });
    }
    for (std::thread& th : threads) th.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(j->count(TaskState::succeeded) + j->count(TaskState::queued) + j->count(TaskState::running),
              kThreads * kEach);
    EXPECT_EQ(j->count(TaskState::succeeded), kThreads * kEach);
}

TEST(TaskJournal, AcknowledgedAcceptsAndStartsSurviveKill9) {
    TempDir dir;
    const std::string path = dir.file("tasks.db");
    // The child reports 2i once task i is accepted and 2i+1 once it is RUNNING (every 2nd task).
    Reporter child = Reporter::start([&](int fd) {
        Result<std::unique_ptr<TaskJournal>> r = TaskJournal::open(path);
        if (!r.ok()) return 2;
        TaskJournal& j = *r.value();
        for (int64_t i = 0;; ++i) {
            TaskRecord t = task("k" + std::to_string(i), i % 4 == 0 ? "echo" : "render");
            Result<std::pair<TaskRecord, bool>> a = j.accept(t);
            if (!a.ok() || !a->second) return 3;
            if (!report(fd, 2 * i)) return 4;
            if (i % 2 == 0) {
                if (!j.transition(t.id, TaskState::running).ok()) return 5;
                if (!report(fd, 2 * i + 1)) return 4;
            }
        }
    });
    ASSERT_GT(child.pid, 0);
    std::set<int64_t> accepted, started;
    int64_t v = -1;
    for (int n = 0; n < 150; ++n) {
        ASSERT_TRUE(child.read(v)) << "child stopped early";
        (v % 2 == 0 ? accepted : started).insert(v / 2);
    }
    int st = child.kill();  // mid-stream: wherever it is, maybe inside a commit
    EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    while (child.read(v, 1000)) (v % 2 == 0 ? accepted : started).insert(v / 2);
    ASSERT_TRUE(child.eof);
    ASSERT_FALSE(accepted.empty());
    const int64_t last = *accepted.rbegin();

    auto j = open_journal(path);
    ASSERT_NE(j, nullptr);
    EXPECT_FALSE(j->recovered_from_corruption());
    // Every acknowledged accept and start is there; at most the one being written beyond.
    for (int64_t i : accepted) {
        Result<std::optional<TaskRecord>> r = j->get("k" + std::to_string(i));
        ASSERT_TRUE(r.ok() && r.value().has_value()) << "acknowledged task k" << i << " was lost";
        if (started.count(i)) {
            EXPECT_EQ(r.value()->state, TaskState::running) << "k" << i;
            EXPECT_EQ(r.value()->version, 2);
        }
    }
    const int64_t total = j->count(TaskState::queued) + j->count(TaskState::running);
    EXPECT_GE(total, last + 1);
    EXPECT_LE(total, last + 2);
    EXPECT_FALSE(j->get("k" + std::to_string(last + 2)).value().has_value());

    // Restart recovery: echo re-queued, the rest failed; every change still to publish.
    Result<std::vector<TaskRecord>> changed = j->recover([](const std::string& kind) { return kind == "echo"; });
    ASSERT_TRUE(changed.ok()) << changed.status().to_string();
    EXPECT_GE(changed->size(), started.size());
    for (const TaskRecord& r : changed.value()) {
        EXPECT_EQ(r.state, r.kind == "echo" ? TaskState::queued : TaskState::failed) << r.id;
        EXPECT_EQ(r.version, 3);
    }
    EXPECT_EQ(j->count(TaskState::running), 0);
    Result<std::vector<TaskRecord>> unpub = j->unpublished(1000000);
    ASSERT_TRUE(unpub.ok());
    EXPECT_EQ(static_cast<int64_t>(unpub->size()), total);
    // And a re-sent submit of an acknowledged task never creates a second one.
    Result<std::pair<TaskRecord, bool>> again = j->accept(task("k0", "echo"));
    ASSERT_TRUE(again.ok());
    EXPECT_FALSE(again->second);
}

/* The scheduler's group commit: admissions, outcomes and the starts decided from the admission
 * results, all in one transaction; a failure inside leaves nothing written. */
TEST(TaskJournal, GroupCommitAdmitsAndStartsTogether) {
    TempDir dir;
    const std::string path = dir.file("tasks.db");
    auto j = open_journal(path);
    ASSERT_NE(j, nullptr);
    accept_new(*j, task("running-before"));
    must_transition(*j, "running-before", TaskState::running);

    std::vector<TaskRecord> acc;
    acc.push_back(task("g1"));
    acc.push_back(task("running-before"));  // a re-sent submit: unchanged
    TaskRecord rej = task("g2");
    rej.state = TaskState::rejected;
    rej.reason = "unknown_kind: no such kind";
    acc.push_back(rej);
    std::vector<Transition> outcomes = {{"running-before", TaskState::succeeded, "", "", "{\"ok\":true}"}};
    int calls = 0;
    auto g = j->commit_group(std::move(acc), outcomes, [&](const std::vector<Result<std::pair<TaskRecord, bool>>>& a) {
        ++calls;
        EXPECT_EQ(a.size(), 3u);
        std::vector<Transition> starts;
        for (const auto& r : a)
            if (r.ok() && r->second && r->first.state == TaskState::queued) {
                starts.push_back({r->first.id, TaskState::running, "", "cpu", ""});
                starts.push_back({r->first.id, TaskState::succeeded, "", "", "{\"echo\":1}"});
            }
        return starts;
    });
    ASSERT_TRUE(g.ok()) << g.status().to_string();
    EXPECT_EQ(calls, 1);
    ASSERT_EQ(g->accepted.size(), 3u);
    EXPECT_TRUE(g->accepted[0]->second);
    EXPECT_FALSE(g->accepted[1]->second);
    EXPECT_EQ(g->accepted[2]->first.state, TaskState::rejected);
    ASSERT_EQ(g->transitioned.size(), 3u);
    EXPECT_EQ(g->transitioned[0]->state, TaskState::succeeded);
    EXPECT_EQ(g->transitioned[1]->version, 2);
    EXPECT_EQ(g->transitioned[2]->version, 3);
    EXPECT_EQ(g->transitioned[2]->device_id, "cpu");

    // All of it is durable: a fresh open sees the same.
    j.reset();
    j = open_journal(path);
    ASSERT_NE(j, nullptr);
    auto g1 = j->get("g1");
    ASSERT_TRUE(g1.ok() && g1.value());
    EXPECT_EQ(g1.value()->state, TaskState::succeeded);
    EXPECT_EQ(g1.value()->result_json, "{\"echo\":1}");
    // Its three steps were one row write: the row holds every step's effect.
    EXPECT_EQ(g1.value()->version, 3);
    EXPECT_EQ(g1.value()->attempts, 1);
    EXPECT_EQ(g1.value()->device_id, "cpu");
    EXPECT_GT(g1.value()->started_ms, 0);
    EXPECT_GE(g1.value()->finished_ms, g1.value()->started_ms);
    auto q = j->queued(10);
    ASSERT_TRUE(q.ok());
    EXPECT_TRUE(q->empty()) << q->size() << " task(s) still listed as runnable";
    auto un = j->unpublished(10);
    ASSERT_TRUE(un.ok());
    EXPECT_EQ(un->size(), 3u);
    EXPECT_EQ(j->count(TaskState::succeeded), 2);
    EXPECT_EQ(j->count(TaskState::rejected), 1);

    // A callback that throws rolls everything back, the admissions too.
    ASSERT_TRUE(j->set_full_durability(false).ok());
    std::vector<TaskRecord> acc2;
    acc2.push_back(task("g3"));
    auto bad = j->commit_group(std::move(acc2), {}, [](const auto&) -> std::vector<Transition> {
        throw std::runtime_error("scheduler bug");
    });
    EXPECT_FALSE(bad.ok());
    EXPECT_NE(bad.status().message().find("scheduler bug"), std::string::npos) << bad.status().message();
    auto g3 = j->get("g3");
    ASSERT_TRUE(g3.ok());
    EXPECT_FALSE(g3.value().has_value());
    EXPECT_EQ(j->count(TaskState::queued), 0);
    // ... and the journal keeps working.
    std::vector<TaskRecord> acc3;
    acc3.push_back(task("g3"));
    auto ok = j->commit_group(std::move(acc3), {}, nullptr);
    ASSERT_TRUE(ok.ok()) << ok.status().to_string();
    EXPECT_TRUE(ok->accepted[0]->second);
    EXPECT_EQ(j->count(TaskState::queued), 1);
}

/* Several steps of one task in one group are read back from the transaction, not the file: a
 * step the state machine refuses there is refused (the earlier steps stand), and a step of a
 * task admitted in an earlier group still reads the file. */
TEST(TaskJournal, GroupCommitStepsOfOneTaskSeeEachOther) {
    TempDir dir;
    auto j = open_journal(dir.file("tasks.db"));
    ASSERT_NE(j, nullptr);
    accept_new(*j, task("old"));
    std::vector<TaskRecord> acc;
    acc.push_back(task("new"));
    std::vector<Transition> fixed = {{"old", TaskState::running, "", "gpu0", ""}};
    auto g = j->commit_group(std::move(acc), fixed, [](const auto&) {
        return std::vector<Transition>{{"new", TaskState::running, "", "cpu", ""},
                                       {"new", TaskState::succeeded, "", "", "{}"},
                                       {"new", TaskState::canceled, "canceled: too late", "", ""},
                                       {"old", TaskState::failed, "failed: it broke", "", ""},
                                       {"nobody", TaskState::running, "", "", ""}};
    });
    ASSERT_TRUE(g.ok()) << g.status().to_string();
    ASSERT_EQ(g->transitioned.size(), 6u);
    EXPECT_TRUE(g->transitioned[0].ok());
    EXPECT_TRUE(g->transitioned[2].ok());
    EXPECT_EQ(g->transitioned[3].status().code(), Code::failed_precondition) << g->transitioned[3].status().to_string();
    EXPECT_EQ(g->transitioned[4]->version, 3);
    EXPECT_EQ(g->transitioned[4]->device_id, "gpu0");
    EXPECT_EQ(g->transitioned[5].status().code(), Code::not_found);
    auto n = j->get("new");
    ASSERT_TRUE(n.ok() && n.value());
    EXPECT_EQ(n.value()->state, TaskState::succeeded);
    EXPECT_EQ(n.value()->version, 3);
    auto o = j->get("old");
    ASSERT_TRUE(o.ok() && o.value());
    EXPECT_EQ(o.value()->state, TaskState::failed);
    EXPECT_EQ(o.value()->reason, "failed: it broke");
    EXPECT_EQ(j->count(TaskState::succeeded), 1);
    EXPECT_EQ(j->count(TaskState::failed), 1);
    EXPECT_EQ(j->count(TaskState::queued), 0);
    EXPECT_EQ(j->count(TaskState::running), 0);
}

/* Delivered states are marked published inside the next group commit; a mark of a version
 * never journaled is reported and skipped, the others are written; marks alone commit too. */
TEST(TaskJournal, GroupCommitCarriesPublicationMarks) {
    TempDir dir;
    const std::string path = dir.file("tasks.db");
    auto j = open_journal(path);
    ASSERT_NE(j, nullptr);
    accept_new(*j, task("a"));
    accept_new(*j, task("b"));
    std::vector<TaskRecord> acc;
    acc.push_back(task("c"));
    auto g = j->commit_group(std::move(acc), {}, nullptr, {{"a", 1}, {"b", 7}, {"purged", 1}, {"c", 1}});
    ASSERT_TRUE(g.ok()) << g.status().to_string();
    ASSERT_EQ(g->mark_errors.size(), 1u);
    EXPECT_EQ(g->mark_errors[0].code(), Code::invalid_argument);
    EXPECT_NE(g->mark_errors[0].message().find("'b' has no version 7"), std::string::npos) << g->mark_errors[0].message();
    j.reset();
    j = open_journal(path);
    ASSERT_NE(j, nullptr);
    auto un = j->unpublished(10);
    ASSERT_TRUE(un.ok());
    ASSERT_EQ(un->size(), 1u);  // "c" was marked in the same transaction that created it
    EXPECT_EQ(un->front().id, "b");
    auto only = j->commit_group({}, {}, nullptr, {{"b", 1}});
    ASSERT_TRUE(only.ok()) << only.status().to_string();
    un = j->unpublished(10);
    ASSERT_TRUE(un.ok());
    EXPECT_TRUE(un->empty());
}

/* commit_group() appends one row to the journal's log instead of writing the task rows; the
 * rows are read from memory until checkpoint_if_due() (or any other call) writes them into the
 * table, and every answer is the same before and after. */
TEST(TaskJournal, GroupCommitsAreLoggedAndWrittenIntoTheTableLater) {
    TempDir dir;
    const std::string path = dir.file("tasks.db");
    auto j = open_journal(path);
    ASSERT_NE(j, nullptr);
    ASSERT_TRUE(j->set_full_durability(false).ok());
    TaskRecord prev = inline_echo(*j, "e0");
    EXPECT_EQ(prev.version, 3);
    for (int i = 1; i < 10; ++i) {
        TaskRecord r = inline_echo(*j, "e" + std::to_string(i), {{prev.id, prev.version}});
        EXPECT_EQ(r.state, TaskState::succeeded);
        prev = r;
    }
    // A queued task and a transition of a logged one, in later groups.
    std::vector<TaskRecord> acc;
    acc.push_back(task("q1", "render", 5));
    ASSERT_TRUE(j->commit_group(std::move(acc), {}, nullptr).ok());
    ASSERT_TRUE(j->commit_group({}, {{"q1", TaskState::running, "", "gpu0", ""}}, nullptr).ok());
    EXPECT_EQ(j->pending_rows(), 11u);
    EXPECT_EQ(j->count(TaskState::succeeded), 10);
    EXPECT_EQ(j->count(TaskState::running), 1);
    // get() and an idempotent re-submit read the logged rows.
    auto e3 = j->get("e3");
    ASSERT_TRUE(e3.ok() && e3.value().has_value());
    EXPECT_EQ(e3.value()->state, TaskState::succeeded);
    EXPECT_EQ(e3.value()->published_version, 3);  // marked by the group of e4
    EXPECT_EQ(e3.value()->result_json, "{\"echo\":\"e3\"}");
    EXPECT_EQ(e3.value()->device_id, "cpu0");
    std::vector<TaskRecord> again;
    again.push_back(task("e3"));
    auto g = j->commit_group(std::move(again), {}, nullptr);
    ASSERT_TRUE(g.ok());
    ASSERT_TRUE(g->accepted[0].ok());
    EXPECT_FALSE(g->accepted[0]->second);
    EXPECT_EQ(g->accepted[0]->first.version, 3);
    // A mark of a version never journaled is refused, on a logged row too.
    auto bad = j->commit_group({}, {}, nullptr, {{"e9", 4}});
    ASSERT_TRUE(bad.ok());
    ASSERT_EQ(bad->mark_errors.size(), 1u);
    EXPECT_NE(bad->mark_errors[0].message().find("'e9' has no version 4 (its version is 3)"), std::string::npos)
        << bad->mark_errors[0].message();
    // unpublished() writes the log into the table first: e9 (never marked) and q1.
    auto un = j->unpublished(100);
    ASSERT_TRUE(un.ok()) << un.status().to_string();
    EXPECT_EQ(j->pending_rows(), 0u);
    ASSERT_EQ(un->size(), 2u);
    EXPECT_EQ(un->at(0).id, "e9");
    EXPECT_EQ(un->at(1).id, "q1");
    EXPECT_EQ(un->at(1).state, TaskState::running);
    EXPECT_EQ(un->at(1).version, 2);
    EXPECT_EQ(un->at(1).attempts, 1);
    EXPECT_EQ(j->count(TaskState::succeeded), 10);
    EXPECT_EQ(j->count(TaskState::running), 1);
    // The scheduler's housekeeping writes the log once kApplyRows rows wait.
    for (size_t i = 0; i < TaskJournal::kApplyRows - 1; ++i) inline_echo(*j, "f" + std::to_string(i));
    (void)j->checkpoint_if_due();  // may checkpoint SQLite's write-ahead log: 1023 commits
    EXPECT_EQ(j->pending_rows(), TaskJournal::kApplyRows - 1);
    inline_echo(*j, "f-last");
    EXPECT_FALSE(j->checkpoint_if_due()) << "the apply and a checkpoint in one call";
    EXPECT_EQ(j->pending_rows(), 0u);
    j.reset();
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    EXPECT_EQ(query_int(db, "SELECT count(*) FROM log"), 0);
    EXPECT_EQ(query_int(db, "SELECT count(*) FROM tasks WHERE state = 'SUCCEEDED'"),
              static_cast<int64_t>(10 + TaskJournal::kApplyRows));
    sqlite3_close(db);
}

/* A kill -9 leaves committed groups in the log only: open() writes them into the table, with
 * every step and mark the child was told was journaled. */
TEST(TaskJournal, LoggedGroupsSurviveKill9AndAreReplayedAtOpen) {
    TempDir dir;
    const std::string path = dir.file("tasks.db");
    // The child reports i once the group of echo i (which marks echo i-1 published) committed.
    Reporter child = Reporter::start([&](int fd) {
        Result<std::unique_ptr<TaskJournal>> r = TaskJournal::open(path);
        if (!r.ok()) return 2;
        TaskJournal& j = *r.value();
        if (!j.set_full_durability(false).ok()) return 3;
        std::vector<std::pair<std::string, int64_t>> marks;
        for (int64_t i = 0;; ++i) {
            TaskRecord done = inline_echo(j, "k" + std::to_string(i), marks);
            if (done.state != TaskState::succeeded) return 5;
            marks = {{done.id, done.version}};
            if (!report(fd, i)) return 4;
            if (i % 100 == 99) (void)j.checkpoint_if_due();  // some applied, the rest still logged
        }
    });
    ASSERT_GT(child.pid, 0);
    int64_t v = -1, last = -1;
    for (int n = 0; n < 420; ++n) {
        ASSERT_TRUE(child.read(v)) << "child stopped early";
        last = v;
    }
    int st = child.kill();
    EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    while (child.read(v, 1000)) last = v;
    ASSERT_TRUE(child.eof);

    auto j = open_journal(path);
    ASSERT_NE(j, nullptr);
    EXPECT_FALSE(j->recovered_from_corruption());
    EXPECT_EQ(j->pending_rows(), 0u);  // replayed into the table at open
    for (int64_t i = 0; i <= last; ++i) {
        auto r = j->get("k" + std::to_string(i));
        ASSERT_TRUE(r.ok() && r.value().has_value()) << "acknowledged task k" << i << " was lost";
        EXPECT_EQ(r.value()->state, TaskState::succeeded) << "k" << i;
        EXPECT_EQ(r.value()->version, 3) << "k" << i;
        EXPECT_EQ(r.value()->result_json, "{\"echo\":\"k" + std::to_string(i) + "\"}");
        if (i < last) {
            EXPECT_EQ(r.value()->published_version, 3) << "k" << i << ": its mark was acknowledged";
        }
    }
    const int64_t total = j->count(TaskState::succeeded);
    EXPECT_GE(total, last + 1);
    EXPECT_LE(total, last + 2);  // at most the group being committed when the signal came
    auto un = j->unpublished(10);
    ASSERT_TRUE(un.ok());
    EXPECT_LE(un->size(), 2u);
    EXPECT_EQ(j->count(TaskState::queued) + j->count(TaskState::running), 0);
}

/* A group of kDirectRows changed rows or more (a burst) writes the table directly, with the
 * rows still pending before it, and empties the log in the same commit: after a kill -9 nothing
 * older is replayed over what it wrote. */
TEST(TaskJournal, LargeGroupsWriteTheTableDirectlyAndEmptyTheLog) {
    TempDir dir;
    const std::string path = dir.file("tasks.db");
    Reporter child = Reporter::start([&](int fd) {
        Result<std::unique_ptr<TaskJournal>> r = TaskJournal::open(path);
        if (!r.ok()) return 2;
        TaskJournal& j = *r.value();
        TaskRecord x = inline_echo(j, "x");                     // logged, pending
        TaskRecord y = inline_echo(j, "y", {{"x", x.version}});  // x's mark logged too
        if (x.state != TaskState::succeeded || y.state != TaskState::succeeded || j.pending_rows() != 2) return 3;
        std::vector<TaskRecord> acc;
        for (int i = 0; i < static_cast<int>(TaskJournal::kDirectRows); ++i) acc.push_back(task("b" + std::to_string(i)));
        auto g = j.commit_group(std::move(acc), {}, nullptr, {{"y", y.version}});
        if (!g.ok() || j.pending_rows() != 0) return 4;
        if (!report(fd, 1)) return 5;
        for (;;) ::pause();  // killed here: no destructor writes anything
    });
    ASSERT_GT(child.pid, 0);
    int64_t v = 0;
    ASSERT_TRUE(child.read(v)) << "child failed before the large group";
    int st = child.kill();
    EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    auto j = open_journal(path);
    ASSERT_NE(j, nullptr);
    for (const char* id : {"x", "y"}) {
        auto r = j->get(id);
        ASSERT_TRUE(r.ok() && r.value().has_value()) << id;
        EXPECT_EQ(r.value()->state, TaskState::succeeded) << id;
        EXPECT_EQ(r.value()->published_version, 3) << id << ": a mark was lost or an older image replayed";
    }
    EXPECT_EQ(j->count(TaskState::queued), static_cast<int64_t>(TaskJournal::kDirectRows));
    auto q = j->queued(100);
    ASSERT_TRUE(q.ok());
    ASSERT_EQ(q->size(), TaskJournal::kDirectRows);
    EXPECT_EQ(q->front().id, "b0");
    auto un = j->unpublished(100);
    ASSERT_TRUE(un.ok());
    EXPECT_EQ(un->size(), TaskJournal::kDirectRows);  // x and y delivered
}

/* A log row that does not decode (written by hand here; SQLite's checks passed) stops open()
 * with a message naming the entry, and the file is left for a person to look at. */
TEST(TaskJournal, DamagedLogEntryIsReportedAtOpen) {
    TempDir dir;
    const std::string path = dir.file("tasks.db");
    {
        auto j = open_journal(path);
        ASSERT_NE(j, nullptr);
        inline_echo(*j, "a");
    }
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "INSERT INTO log(lsn, rows) VALUES (7, X'0102000000FFFF')", nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
    Result<std::unique_ptr<TaskJournal>> r = TaskJournal::open(path);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::internal);
    EXPECT_NE(r.status().message().find("log entry 7 is damaged"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().message();
    EXPECT_TRUE(files_starting_with(dir.path(), "tasks.db.corrupt").empty());
}

/* Commits leave the write-ahead log alone below kInlineCheckpointPages; checkpoint_if_due()
 * copies it back once it holds kCheckpointPages, and nothing is lost either way. */
TEST(TaskJournal, CheckpointWaitsForTheScheduler) {
    TempDir dir;
    const std::string path = dir.file("tasks.db");
    auto j = open_journal(path);
    ASSERT_NE(j, nullptr);
    ASSERT_TRUE(j->set_full_durability(false).ok());
    EXPECT_FALSE(j->checkpoint_if_due());
    auto wal_bytes = [&] {
        std::error_code ec;
        auto n = std::filesystem::file_size(path + "-wal", ec);
        return ec ? uintmax_t{0} : n;
    };
    int n = 0;
    uintmax_t peak = 0;
    // Every commit adds at least one page: well before 4000 commits the log holds 1000 pages.
    for (; n < 4000 && !j->checkpoint_if_due(); ++n) {
        std::vector<TaskRecord> acc;
        acc.push_back(task("t" + std::to_string(n)));
        ASSERT_TRUE(j->commit_group(std::move(acc), {}, nullptr).ok());
        peak = std::max(peak, wal_bytes());
    }
    ASSERT_LT(n, 4000) << "checkpoint_if_due() never found the log due";
    // Nothing checkpointed inside a commit before that: the log only grew.
    EXPECT_GE(peak, uintmax_t{TaskJournal::kCheckpointPages} * 4096) << "after " << n << " commits";
    EXPECT_FALSE(j->checkpoint_if_due());  // just done
    // The log is reused from its start after the checkpoint: it does not keep growing.
    for (int i = 0; i < 50; ++i) {
        std::vector<TaskRecord> acc;
        acc.push_back(task("u" + std::to_string(i)));
        ASSERT_TRUE(j->commit_group(std::move(acc), {}, nullptr).ok());
    }
    EXPECT_LE(wal_bytes(), peak);
    j.reset();
    j = open_journal(path);
    ASSERT_NE(j, nullptr);
    EXPECT_EQ(j->count(TaskState::queued), n + 50);
}

}  // namespace
}  // namespace cpn::tasks
