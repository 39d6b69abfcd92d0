#include "tasks/task_journal.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>
#include <new>

#include <spdlog/spdlog.h>

#include "store/sqlite_store.hpp"

namespace cpn::tasks {
namespace {

// 'CPNT' in the database header: tells the journal from the outbox ('CPNO') and any other
// SQLite file at the same path.
constexpr int kApplicationId = 0x43504E54;
// 2: seq is assigned by the journal (no AUTOINCREMENT, whose sqlite_sequence row was one more
// page written by every admission).
// 3: the log table (commit_group() appends the rows it changed there, as one blob, and they are
// written into `tasks` later, many at a time); version 1 and 2 files are migrated at open.
constexpr int kSchemaVersion = 3;
// How long open() waits for a lock held by another process before saying so.
constexpr int kBusyTimeoutMs = 1000;

// States are stored by their wire names, so the file reads plainly in the sqlite3 shell. The
// partial indexes keep the two hot queries (what to run next, what to publish) free of sorts
// and of scans over finished tasks, however many the retention keeps. seq orders admissions
// (FIFO within a priority); it is max(seq) + 1 at admission and never leaves the node.
#define CPN_TASKS_TABLE(name)                                                                              \
    "CREATE TABLE " name "(\n"                                                                            \
    "    seq INTEGER PRIMARY KEY,\n"                                                                      \
    "    id TEXT NOT NULL UNIQUE,\n"                                                                      \
    "    kind TEXT NOT NULL,\n"                                                                           \
    "    spec BLOB NOT NULL,\n"                                                                           \
    "    state TEXT NOT NULL CHECK (state IN ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'TIMED_OUT',\n"  \
    "                                         'CANCELED', 'REJECTED')),\n"                                \
    "    version INTEGER NOT NULL,\n"                                                                     \
    "    priority INTEGER NOT NULL,\n"                                                                    \
    "    accepted_ms INTEGER NOT NULL,\n"                                                                 \
    "    started_ms INTEGER NOT NULL,\n"                                                                  \
    "    finished_ms INTEGER NOT NULL,\n"                                                                 \
    "    device_id TEXT NOT NULL,\n"                                                                      \
    "    reason TEXT NOT NULL,\n"                                                                         \
    "    result BLOB NOT NULL,\n"                                                                         \
    "    reply_topic TEXT NOT NULL,\n"                                                                    \
    "    correlation BLOB NOT NULL,\n"                                                                    \
    "    published_version INTEGER NOT NULL,\n"                                                           \
    "    attempts INTEGER NOT NULL\n"                                                                     \
    ");\n"

#define CPN_TASKS_INDEXES                                                                   \
    "CREATE INDEX tasks_runnable ON tasks(priority DESC, seq) WHERE state = 'QUEUED';\n"     \
    "CREATE INDEX tasks_unpublished ON tasks(seq) WHERE version > published_version;\n"    \
    "CREATE INDEX tasks_by_state ON tasks(state, finished_ms);\n"

// The log: each row is one group commit's changed tasks, as full images (encode_row()), in
// commit order. Appending one row writes one or two pages where updating `tasks` and its four
// B-trees wrote five; apply_pending_locked() moves them into `tasks` and empties the log in one
// transaction, and open() does the same with whatever a crash left.
#define CPN_LOG_TABLE "CREATE TABLE log(lsn INTEGER PRIMARY KEY, rows BLOB NOT NULL);\n"

const char* const kSchema = CPN_TASKS_TABLE("tasks") CPN_TASKS_INDEXES CPN_LOG_TABLE;

// Version 1 -> 2: the same rows and seq values in a table without AUTOINCREMENT (dropping the
// old table also drops its sqlite_sequence row and its indexes). One transaction.
const char* const kMigrate1to2 = "BEGIN IMMEDIATE;\n" CPN_TASKS_TABLE("tasks_v2") "INSERT INTO tasks_v2 SELECT "
                                 "seq, id, kind, spec, state, version, priority, accepted_ms, started_ms, finished_ms, "
                                 "device_id, reason, result, reply_topic, correlation, published_version, attempts "
                                 "FROM tasks;\n"
                                 "DROP TABLE tasks;\n"
                                 "ALTER TABLE tasks_v2 RENAME TO tasks;\n" CPN_TASKS_INDEXES
                                 "PRAGMA user_version=2;\n"
                                 "COMMIT;\n";

// Version 2 -> 3: the log table. One transaction.
const char* const kMigrate2to3 = "BEGIN IMMEDIATE;\n" CPN_LOG_TABLE "PRAGMA user_version=3;\nCOMMIT;\n";

#undef CPN_TASKS_TABLE
#undef CPN_TASKS_INDEXES
#undef CPN_LOG_TABLE

constexpr const char* kColumns =
    "seq, id, kind, spec, state, version, priority, accepted_ms, started_ms, finished_ms, device_id, reason, "
    "result, reply_topic, correlation, published_version, attempts";

constexpr TaskState kAllStates[] = {TaskState::queued,    TaskState::running,  TaskState::succeeded,
                                    TaskState::failed,    TaskState::timed_out, TaskState::canceled,
                                    TaskState::rejected};

using sqlite_store::now_ms;

size_t index_of(TaskState s) { return static_cast<size_t>(s); }

using sqlite_store::run;
using sqlite_store::StmtScope;

void bind_text(sqlite3_stmt* s, int i, const std::string& v) {
    sqlite3_bind_text64(s, i, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8);
}

/* data() is never null, so an empty string is a zero-length BLOB, not NULL (NOT NULL holds). */
void bind_blob(sqlite3_stmt* s, int i, const std::string& v) { sqlite3_bind_blob64(s, i, v.data(), v.size(), SQLITE_STATIC); }

std::string column_bytes(sqlite3_stmt* s, int col, bool blob) {
    const void* p = blob ? sqlite3_column_blob(s, col) : static_cast<const void*>(sqlite3_column_text(s, col));
    int n = sqlite3_column_bytes(s, col);
    if (p == nullptr || n <= 0) return {};
    return std::string(static_cast<const char*>(p), static_cast<size_t>(n));
}

/* Reads a row selected with kColumns; false when the stored state is not one we know (the
 * CHECK constraint makes that a damaged file). */
bool read_row(sqlite3_stmt* s, TaskRecord& r) {
    r.seq = sqlite3_column_int64(s, 0);
    r.id = column_bytes(s, 1, false);
    r.kind = column_bytes(s, 2, false);
    r.spec_json = column_bytes(s, 3, true);
    std::optional<TaskState> st = task_state_from_string(column_bytes(s, 4, false));
    if (!st) return false;
    r.state = *st;
    r.version = sqlite3_column_int64(s, 5);
    r.priority = sqlite3_column_int(s, 6);
    r.accepted_ms = sqlite3_column_int64(s, 7);
    r.started_ms = sqlite3_column_int64(s, 8);
    r.finished_ms = sqlite3_column_int64(s, 9);
    r.device_id = column_bytes(s, 10, false);
    r.reason = column_bytes(s, 11, false);
    r.result_json = column_bytes(s, 12, true);
    r.reply_topic = column_bytes(s, 13, false);
    r.correlation = column_bytes(s, 14, true);
    r.published_version = sqlite3_column_int64(s, 15);
    r.attempts = sqlite3_column_int(s, 16);
    return true;
}

/* The log's blob: a format byte (1), the row count (4 bytes), then per row every TaskRecord
 * field in the order encode_row() writes them; integers little-endian (int64 as 8 bytes, int as
 * 4, the state as 1: its TaskState value), strings as a 4-byte length and the bytes (the
 * admission limits keep every field far below 4 GiB; log_append_locked() refuses one that is
 * not). */
constexpr unsigned char kLogFormat = 1;

void put_u64(std::string& out, uint64_t v) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u32(std::string& out, uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_str(std::string& out, const std::string& s) {
    put_u32(out, static_cast<uint32_t>(s.size()));
    out.append(s);
}

size_t encoded_size(const TaskRecord& r) {
    // Six int64 fields, two int, the state byte, eight length-prefixed strings.
    return 6 * 8 + 2 * 4 + 1 + 8 * 4 + r.id.size() + r.kind.size() + r.spec_json.size() + r.device_id.size() +
           r.reason.size() + r.result_json.size() + r.reply_topic.size() + r.correlation.size();
}

void encode_row(std::string& out, const TaskRecord& r) {
    put_u64(out, static_cast<uint64_t>(r.seq));
    put_str(out, r.id);
    put_str(out, r.kind);
    put_str(out, r.spec_json);
    out.push_back(static_cast<char>(static_cast<unsigned char>(r.state)));
    put_u64(out, static_cast<uint64_t>(r.version));
    put_u32(out, static_cast<uint32_t>(r.priority));
    put_u64(out, static_cast<uint64_t>(r.accepted_ms));
    put_u64(out, static_cast<uint64_t>(r.started_ms));
    put_u64(out, static_cast<uint64_t>(r.finished_ms));
    put_str(out, r.device_id);
    put_str(out, r.reason);
    put_str(out, r.result_json);
    put_str(out, r.reply_topic);
    put_str(out, r.correlation);
    put_u64(out, static_cast<uint64_t>(r.published_version));
    put_u32(out, static_cast<uint32_t>(r.attempts));
}

/* Reads encode_row()'s fields back, never past `end`; false on a short or malformed blob. */
struct LogReader {
    const unsigned char* p;
    const unsigned char* end;
    bool u64(int64_t& v) {
        if (end - p < 8) return false;
        uint64_t x = 0;
        for (int i = 0; i < 8; ++i) x |= static_cast<uint64_t>(p[i]) << (8 * i);
        p += 8;
        v = static_cast<int64_t>(x);
        return true;
    }
    bool u32(uint32_t& v) {
        if (end - p < 4) return false;
        v = 0;
        for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(p[i]) << (8 * i);
        p += 4;
        return true;
    }
    bool i32(int& v) {
        uint32_t x = 0;
        if (!u32(x)) return false;
        v = static_cast<int>(x);
        return true;
    }
    bool str(std::string& s) {
        uint32_t n = 0;
        if (!u32(n) || static_cast<size_t>(end - p) < n) return false;
        s.assign(reinterpret_cast<const char*>(p), n);
        p += n;
        return true;
    }
    bool row(TaskRecord& r) {
        if (!u64(r.seq) || !str(r.id) || !str(r.kind) || !str(r.spec_json) || p == end) return false;
        const unsigned char st = *p++;
        if (st > static_cast<unsigned char>(TaskState::rejected)) return false;
        r.state = static_cast<TaskState>(st);
        return u64(r.version) && i32(r.priority) && u64(r.accepted_ms) && u64(r.started_ms) && u64(r.finished_ms) &&
               str(r.device_id) && str(r.reason) && str(r.result_json) && str(r.reply_topic) && str(r.correlation) &&
               u64(r.published_version) && i32(r.attempts) && !r.id.empty();
    }
};

int64_t clamp_limit(size_t limit) {
    constexpr size_t kMax = static_cast<size_t>(std::numeric_limits<int64_t>::max());
    return static_cast<int64_t>(limit > kMax ? kMax : limit);
}

/* Runs `f` and turns any exception into a Status naming the file and the operation: the
 * journal never throws. */
template <typename F>
auto guarded(const std::string& path, const char* what, F&& f) -> decltype(f()) {
    try {
        return f();
    } catch (const std::bad_alloc&) {
        return Status(Code::out_of_memory, path + ": " + what + ": out of memory");
    } catch (const std::exception& e) {
        return Status(Code::internal, path + ": " + what + ": " + e.what());
    } catch (...) {
        return Status(Code::internal, path + ": " + what + ": unknown exception");
    }
}

}  // namespace

const char* to_string(TaskState s) {
    switch (s) {
        case TaskState::queued: return "QUEUED";
        case TaskState::running: return "RUNNING";
        case TaskState::succeeded: return "SUCCEEDED";
        case TaskState::failed: return "FAILED";
        case TaskState::timed_out: return "TIMED_OUT";
        case TaskState::canceled: return "CANCELED";
        case TaskState::rejected: return "REJECTED";
    }
    return "UNKNOWN";
}

std::optional<TaskState> task_state_from_string(const std::string& name) {
    for (TaskState s : kAllStates)
        if (name == to_string(s)) return s;
    return std::nullopt;
}

bool is_terminal(TaskState s) {
    return s != TaskState::queued && s != TaskState::running;
}

bool is_allowed_transition(TaskState from, TaskState to) {
    switch (from) {
        case TaskState::queued:
            return to == TaskState::running || to == TaskState::canceled || to == TaskState::failed ||
                   to == TaskState::timed_out;
        case TaskState::running:
            return to == TaskState::succeeded || to == TaskState::failed || to == TaskState::timed_out ||
                   to == TaskState::canceled;
        default: return false;
    }
}

TaskJournal::TaskJournal(std::string path) : path_(std::move(path)) {}

TaskJournal::~TaskJournal() {
    std::lock_guard<std::mutex> lock(mu_);
    // Not needed for durability (open() replays the log), but leaves `tasks` complete for
    // anyone who reads the file.
    if (db_ != nullptr && !pending_.empty()) {
        if (Status s = apply_pending_locked("close: apply the log"); !s.ok()) spdlog::warn("{}", s.message());
    }
    close_db();
}

void TaskJournal::close_db() {
    for (sqlite3_stmt** s : {&begin_, &commit_, &rollback_, &by_id_, &queued_, &in_state_,
                             &unpublished_, &mark_, &purge_, &counts_stmt_, &log_insert_,
                             &log_read_, &log_clear_, &upsert_, &state_of_}) {
        sqlite3_finalize(*s);
        *s = nullptr;
    }
    // The last connection to close checkpoints the WAL into the main file and deletes it.
    if (db_ != nullptr) sqlite3_close_v2(db_);
    db_ = nullptr;
}

/* "<path>: <what>: <sqlite message>[ (<strerror>)]" (sqlite_store::error). */
Status TaskJournal::error(const char* what, int rc) const { return sqlite_store::error(path_, db_, what, rc); }

Result<std::unique_ptr<TaskJournal>> TaskJournal::open(const std::string& path) {
    return guarded(path, "open", [&]() -> Result<std::unique_ptr<TaskJournal>> {
        std::unique_ptr<TaskJournal> j(new TaskJournal(path));
        std::lock_guard<std::mutex> lock(j->mu_);
        Status s = j->open_impl();
        if (!s.ok()) {
            j->close_db();
            return s;
        }
        return Result<std::unique_ptr<TaskJournal>>(std::move(j));
    });
}

Status TaskJournal::open_impl() {
    if (path_.empty()) return Status(Code::invalid_argument, "task journal: empty journal path");
    static const sqlite_store::Spec kSpec = {"task journal", "journal", kApplicationId, kSchemaVersion, kSchema,
                                             kBusyTimeoutMs};
    sqlite_store::Opened opened;
    Status s = sqlite_store::open(path_, kSpec, &db_, opened);
    recovered_ = opened.recovered;
    moved_aside_to_ = opened.moved_aside_to;
    if (!s.ok()) return s;
    if (opened.version < 1 || opened.version > kSchemaVersion)
        return Status(Code::failed_precondition, path_ + ": open: journal schema version " +
                                                     std::to_string(opened.version) +
                                                     " cannot be read by this agent (it reads 1 to 3)");
    const struct {
        int from;
        const char* script;
    } migrations[] = {{1, kMigrate1to2}, {2, kMigrate2to3}};
    for (const auto& m : migrations) {
        if (opened.version != m.from) continue;
        if (int rc = sqlite3_exec(db_, m.script, nullptr, nullptr, nullptr); rc != SQLITE_OK) {
            const std::string what = "open: migrate the journal from schema version " + std::to_string(m.from) +
                                     " to " + std::to_string(m.from + 1);
            Status e = error(what.c_str(), rc);
            if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
            return e;
        }
        spdlog::info("{}: journal migrated from schema version {} to {}", path_, m.from, m.from + 1);
        opened.version = m.from + 1;
    }
    if (Status p = prepare_all(); !p.ok()) return p;
    if (Status r = replay_log_locked(); !r.ok()) return r;
    if (Status l = load_counts(); !l.ok()) return l;
    {
        sqlite3_stmt* st = nullptr;
        int rc = sqlite3_prepare_v2(db_, "SELECT coalesce(max(seq), 0) FROM tasks", -1, &st, nullptr);
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            next_seq_ = sqlite3_column_int64(st, 0) + 1;
            rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_OK) return error("open: read the last admission", rc);
    }
    // Replaces SQLite's automatic checkpoint (the default hook, at 1000 pages, inside a commit).
    sqlite3_wal_hook(db_, &TaskJournal::wal_hook, this);
    return {};
}

int TaskJournal::wal_hook(void* self, sqlite3* db, const char* name, int pages) {
    static_cast<TaskJournal*>(self)->wal_pages_ = pages;
    if (pages >= kInlineCheckpointPages) {
        static_cast<TaskJournal*>(self)->wal_pages_ = 0;
        (void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    }
    return SQLITE_OK;
}

bool TaskJournal::checkpoint_if_due() {
    std::lock_guard<std::mutex> lock(mu_);
    if (db_ == nullptr) return false;
    // One of the two per call: each stalls the scheduler for milliseconds, and an apply is what
    // most often makes the write-ahead log due.
    if (pending_.size() >= kApplyRows || pending_bytes_ >= kApplyBytes) {
        if (Status a = apply_pending_locked("apply the log"); !a.ok()) spdlog::warn("{}", a.message());
        return false;
    }
    if (wal_pages_ < kCheckpointPages) return false;
    wal_pages_ = 0;
    int rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    if (rc != SQLITE_OK) {
        spdlog::warn("{}", error("checkpoint", rc).message());
        wal_pages_ = kCheckpointPages;  // try again after the next commit
        return false;
    }
    return true;
}

Status TaskJournal::prepare_all() {
    const std::string cols = kColumns;
    const std::string select = "SELECT " + cols + " FROM tasks ";
    struct {
        sqlite3_stmt** stmt;
        std::string sql;
    } const all[] = {
        {&begin_, "BEGIN IMMEDIATE"},
        {&commit_, "COMMIT"},
        {&rollback_, "ROLLBACK"},
        {&by_id_, select + "WHERE id = ?1"},
        // The partial indexes are named: without ANALYZE statistics the planner would rather
        // sort every queued task through tasks_by_state. (The literals must match the indexes'
        // WHERE, or prepare fails, which the tests would catch.)
        {&queued_, "SELECT " + cols + " FROM tasks INDEXED BY tasks_runnable "
                   "WHERE state = 'QUEUED' ORDER BY priority DESC, seq LIMIT ?1"},
        {&in_state_, select + "WHERE state = ?1 ORDER BY seq"},
        {&unpublished_, "SELECT " + cols + " FROM tasks INDEXED BY tasks_unpublished "
                        "WHERE version > published_version ORDER BY seq LIMIT ?1"},
        // Only a version that was journaled can be marked; no row back tells the caller to look.
        {&mark_, "UPDATE tasks SET published_version = max(published_version, ?2) "
                 "WHERE id = ?1 AND version >= ?2 RETURNING seq"},
        {&purge_, "DELETE FROM tasks WHERE state IN ('SUCCEEDED', 'FAILED', 'TIMED_OUT', 'CANCELED', 'REJECTED') "
                  "AND finished_ms < ?1 AND version <= published_version RETURNING state"},
        {&counts_stmt_, "SELECT state, count(*) FROM tasks GROUP BY state"},
        {&log_insert_, "INSERT INTO log(rows) VALUES (?1)"},
        {&log_read_, "SELECT lsn, rows FROM log ORDER BY lsn"},
        {&log_clear_, "DELETE FROM log"},
        // Every write of a row (a new one, a transition, a row image from the log): inserted
        // when new, else its changing columns replaced (the others never change after admission).
        {&upsert_, "INSERT INTO tasks(" + cols + ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
                   "?14, ?15, ?16, ?17) ON CONFLICT(seq) DO UPDATE SET state = excluded.state, "
                   "version = excluded.version, started_ms = excluded.started_ms, finished_ms = excluded.finished_ms, "
                   "device_id = excluded.device_id, reason = excluded.reason, result = excluded.result, "
                   "published_version = excluded.published_version, attempts = excluded.attempts"},
        {&state_of_, "SELECT state FROM tasks WHERE id = ?1"},
    };
    for (const auto& p : all) {
        int rc = sqlite3_prepare_v3(db_, p.sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, p.stmt, nullptr);
        if (rc != SQLITE_OK) return error("open: prepare", rc);
    }
    return {};
}

/* Re-reads the per-state counts from the file: at open, and after a failed commit, when it is
 * not known what reached the disk. */
Status TaskJournal::load_counts() {
    Counts c{};
    int rc;
    {
        StmtScope scope(counts_stmt_);
        while ((rc = sqlite3_step(counts_stmt_)) == SQLITE_ROW) {
            std::optional<TaskState> st = task_state_from_string(column_bytes(counts_stmt_, 0, false));
            if (st) c[index_of(*st)] = sqlite3_column_int64(counts_stmt_, 1);
        }
        if (rc != SQLITE_DONE) return error("read counts", rc);
    }
    // Rows still in the log count in the state they have there.
    for (const auto& [id, r] : pending_) {
        StmtScope scope(state_of_);
        bind_text(state_of_, 1, id);
        rc = sqlite3_step(state_of_);
        if (rc == SQLITE_ROW) {
            if (std::optional<TaskState> st = task_state_from_string(column_bytes(state_of_, 0, false)))
                --c[index_of(*st)];
        } else if (rc != SQLITE_DONE) {
            return error("read counts", rc);
        }
        ++c[index_of(r.state)];
    }
    counts_ = c;
    return {};
}

Status TaskJournal::replay_log_locked() {
    {
        StmtScope scope(log_read_);
        int rc;
        while ((rc = sqlite3_step(log_read_)) == SQLITE_ROW) {
            const int64_t lsn = sqlite3_column_int64(log_read_, 0);
            const auto* p = static_cast<const unsigned char*>(sqlite3_column_blob(log_read_, 1));
            const int n = sqlite3_column_bytes(log_read_, 1);
            LogReader in{p, p + (p != nullptr && n > 0 ? n : 0)};
            uint32_t rows = 0;
            bool ok = p != nullptr && n > 0 && *in.p++ == kLogFormat && in.u32(rows);
            for (uint32_t i = 0; ok && i < rows; ++i) {
                TaskRecord r;
                ok = in.row(r);
                if (ok) put_pending(std::move(r));
            }
            if (!ok || in.p != in.end) {
                pending_.clear();
                pending_bytes_ = 0;
                return Status(Code::internal, path_ + ": open: log entry " + std::to_string(lsn) +
                                                  " is damaged (it does not decode as rows of format " +
                                                  std::to_string(kLogFormat) + ")");
            }
        }
        if (rc != SQLITE_DONE) return error("open: read the log", rc);
    }
    if (pending_.empty()) return {};
    const size_t n = pending_.size();
    if (Status s = apply_pending_locked("open: apply the log"); !s.ok()) return s;
    spdlog::info("{}: {} task row(s) from the journal's log written into the table", path_, n);
    return {};
}

void TaskJournal::put_pending(TaskRecord r) {
    auto [it, fresh] = pending_.try_emplace(r.id);
    if (!fresh) pending_bytes_ -= encoded_size(it->second);
    pending_bytes_ += encoded_size(r);
    it->second = std::move(r);
}

Status TaskJournal::upsert_locked(const TaskRecord& r, const char* what) {
    StmtScope scope(upsert_);
    bind_row(upsert_, r);
    int rc = run(upsert_);
    return rc == SQLITE_DONE ? Status() : error(what, rc);
}

Status TaskJournal::write_pending_locked(const char* what) {
    for (const auto& [id, r] : pending_)
        if (Status s = upsert_locked(r, what); !s.ok()) return s;
    StmtScope scope(log_clear_);
    int rc = run(log_clear_);
    return rc == SQLITE_DONE ? Status() : error(what, rc);
}

Status TaskJournal::apply_pending_locked(const char* what) {
    if (pending_.empty()) return {};
    if (Status s = begin_locked(what); !s.ok()) return s;
    if (Status s = write_pending_locked(what); !s.ok()) {
        rollback_locked(false);
        return s;
    }
    if (Status s = commit_locked(what); !s.ok()) {
        rollback_locked(false);  // counts include the pending rows either way
        return s;
    }
    pending_.clear();
    pending_bytes_ = 0;
    return {};
}

Status TaskJournal::log_append_locked(const StagedRows& staged) {
    size_t n = 0, bytes = 1 + 4;
    constexpr size_t kMaxField = std::numeric_limits<uint32_t>::max();
    for (const auto& [id, st] : staged) {
        if (!st.dirty) continue;
        ++n;
        bytes += encoded_size(st.rec);
        const TaskRecord& r = st.rec;
        for (const std::string* f : {&r.id, &r.kind, &r.spec_json, &r.device_id, &r.reason, &r.result_json,
                                     &r.reply_topic, &r.correlation})
            if (f->size() > kMaxField)
                return Status(Code::invalid_argument, path_ + ": commit: task '" + r.id + "': a field of " +
                                                          std::to_string(f->size()) + " bytes (at most 4 GiB)");
    }
    if (n == 0) return {};
    std::string blob;
    blob.reserve(bytes);
    blob.push_back(static_cast<char>(kLogFormat));
    put_u32(blob, static_cast<uint32_t>(n));
    for (const auto& [id, st] : staged)
        if (st.dirty) encode_row(blob, st.rec);
    StmtScope scope(log_insert_);
    bind_blob(log_insert_, 1, blob);
    int rc = run(log_insert_);
    return rc == SQLITE_DONE ? Status() : error("commit", rc);
}

Status TaskJournal::begin_locked(const char* what) {
    StmtScope scope(begin_);
    int rc = sqlite3_step(begin_);
    return rc == SQLITE_DONE ? Status() : error(what, rc);
}

Status TaskJournal::commit_locked(const char* what) {
    StmtScope scope(commit_);
    int rc = sqlite3_step(commit_);
    return rc == SQLITE_DONE ? Status() : error(what, rc);
}

/* Undoes an open transaction after a failure. A failed COMMIT (full disk, I/O error) may have
 * left part of it on disk, so the counts are re-read rather than trusted. */
void TaskJournal::rollback_locked(bool reload_counts) {
    if (!sqlite3_get_autocommit(db_)) {
        StmtScope scope(rollback_);
        sqlite3_step(rollback_);
    }
    if (!reload_counts) return;
    if (Status s = load_counts(); !s.ok()) spdlog::warn("{}", s.message());
}

Result<std::optional<TaskRecord>> TaskJournal::find_locked(const std::string& id, const char* what) {
    if (auto it = pending_.find(id); it != pending_.end()) return std::optional<TaskRecord>(it->second);
    StmtScope scope(by_id_);
    bind_text(by_id_, 1, id);
    int rc = sqlite3_step(by_id_);
    if (rc == SQLITE_DONE) return std::optional<TaskRecord>();
    if (rc != SQLITE_ROW) return error(what, rc);
    TaskRecord r;
    if (!read_row(by_id_, r))
        return Status(Code::internal, path_ + ": " + what + ": task '" + id + "' has an unknown state");
    return std::optional<TaskRecord>(std::move(r));
}

Result<std::vector<TaskRecord>> TaskJournal::select_locked(sqlite3_stmt* s, const char* what) {
    std::vector<TaskRecord> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        TaskRecord r;
        if (!read_row(s, r))
            return Status(Code::internal, path_ + ": " + what + ": task '" + r.id + "' has an unknown state");
        out.push_back(std::move(r));
    }
    if (rc != SQLITE_DONE) return error(what, rc);
    return out;
}

Result<std::pair<TaskRecord, bool>> TaskJournal::accept_locked(TaskRecord r, Counts& delta, bool& fatal,
                                                               StagedRows& staged) {
    fatal = false;
    if (r.id.empty()) return Status(Code::invalid_argument, path_ + ": accept: empty task id");
    if (r.kind.empty())
        return Status(Code::invalid_argument, path_ + ": accept: task '" + r.id + "': empty task kind");
    // The id is known (earlier in this transaction, or in the file): the idempotent re-submit.
    if (auto it = staged.find(r.id); it != staged.end()) return std::make_pair(it->second.rec, false);
    Result<std::optional<TaskRecord>> existing = find_locked(r.id, "accept");
    if (!existing.ok()) {
        fatal = true;
        return existing.status();
    }
    if (existing.value()) return std::make_pair(std::move(*existing.value()), false);
    const bool rejected = r.state == TaskState::rejected;
    r.state = rejected ? TaskState::rejected : TaskState::queued;
    r.version = 1;
    if (r.accepted_ms == 0) r.accepted_ms = now_ms();
    r.started_ms = 0;
    r.finished_ms = rejected ? r.accepted_ms : 0;
    r.result_json.clear();
    r.published_version = 0;
    r.attempts = 0;
    if (!rejected) r.reason.clear();
    r.seq = next_seq_++;  // a rolled-back transaction leaves a gap, which orders nothing wrongly
    // Written as it stands at the end of the transaction (write_staged_locked(), or
    // commit_group()'s log or direct write): a task the same group starts (or runs and ends)
    // is written once, and never enters the runnable index.
    Staged& st = staged[r.id];
    st.rec = r;
    st.dirty = true;
    ++delta[index_of(r.state)];
    return std::make_pair(std::move(r), true);
}

/* Binds a whole row in kColumns order (upsert_). */
void TaskJournal::bind_row(sqlite3_stmt* s, const TaskRecord& r) {
    sqlite3_bind_int64(s, 1, r.seq);
    bind_text(s, 2, r.id);
    bind_text(s, 3, r.kind);
    bind_blob(s, 4, r.spec_json);
    sqlite3_bind_text(s, 5, to_string(r.state), -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, r.version);
    sqlite3_bind_int(s, 7, r.priority);
    sqlite3_bind_int64(s, 8, r.accepted_ms);
    sqlite3_bind_int64(s, 9, r.started_ms);
    sqlite3_bind_int64(s, 10, r.finished_ms);
    bind_text(s, 11, r.device_id);
    bind_text(s, 12, r.reason);
    bind_blob(s, 13, r.result_json);
    bind_text(s, 14, r.reply_topic);
    bind_blob(s, 15, r.correlation);
    sqlite3_bind_int64(s, 16, r.published_version);
    sqlite3_bind_int(s, 17, r.attempts);
}

Result<std::pair<TaskRecord, bool>> TaskJournal::accept(TaskRecord r) {
    return guarded(path_, "accept", [&]() -> Result<std::pair<TaskRecord, bool>> {
        r.state = TaskState::queued;
        std::vector<TaskRecord> one;
        one.push_back(std::move(r));
        Result<std::vector<Result<std::pair<TaskRecord, bool>>>> out = accept_batch(std::move(one));
        if (!out.ok()) return out.status();
        return std::move(out.value().front());
    });
}

Result<std::pair<TaskRecord, bool>> TaskJournal::accept_rejected(TaskRecord r, const std::string& reason) {
    return guarded(path_, "accept", [&]() -> Result<std::pair<TaskRecord, bool>> {
        r.state = TaskState::rejected;
        r.reason = reason;
        std::vector<TaskRecord> one;
        one.push_back(std::move(r));
        Result<std::vector<Result<std::pair<TaskRecord, bool>>>> out = accept_batch(std::move(one));
        if (!out.ok()) return out.status();
        return std::move(out.value().front());
    });
}

Result<std::vector<Result<std::pair<TaskRecord, bool>>>> TaskJournal::accept_batch(std::vector<TaskRecord> records) {
    using Out = std::vector<Result<std::pair<TaskRecord, bool>>>;
    return guarded(path_, "accept", [&]() -> Result<Out> {
        Out out;
        out.reserve(records.size());
        if (records.empty()) return out;
        std::lock_guard<std::mutex> lock(mu_);
        if (db_ == nullptr) return Status(Code::failed_precondition, path_ + ": accept: journal is closed");
        if (Status a = apply_pending_locked("accept: apply the log"); !a.ok()) return a;
        if (Status s = begin_locked("accept"); !s.ok()) return s;
        Counts delta{};
        StagedRows staged;
        for (TaskRecord& r : records) {
            bool fatal = false;
            Result<std::pair<TaskRecord, bool>> one = accept_locked(std::move(r), delta, fatal, staged);
            if (fatal) {
                rollback_locked();
                return one.status();
            }
            out.push_back(std::move(one));
        }
        if (Status s = write_staged_locked(staged); !s.ok()) {
            rollback_locked();
            return s;
        }
        if (Status s = commit_locked("accept"); !s.ok()) {
            rollback_locked();
            return s;
        }
        for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += delta[i];
        return out;
    });
}

Result<TaskRecord> TaskJournal::transition_locked(const Transition& t, Counts& delta, bool& fatal, StagedRows* staged) {
    fatal = false;
    Staged* st = nullptr;
    if (staged != nullptr) {
        auto it = staged->find(t.id);
        if (it != staged->end()) st = &it->second;
    }
    TaskRecord r;
    if (st != nullptr) {
        r = st->rec;
    } else {
        Result<std::optional<TaskRecord>> found = find_locked(t.id, "transition");
        if (!found.ok()) {
            fatal = true;
            return found.status();
        }
        if (!found.value()) return Status(Code::not_found, path_ + ": transition: no task '" + t.id + "'");
        r = std::move(*found.value());
    }
    if (!is_allowed_transition(r.state, t.to))
        return Status(Code::failed_precondition, path_ + ": transition: task '" + t.id + "': cannot go from " +
                                                     to_string(r.state) + " to " + to_string(t.to));
    const int64_t now = now_ms();
    --delta[index_of(r.state)];
    r.state = t.to;
    ++r.version;
    if (t.to == TaskState::running) {
        r.started_ms = now;
        ++r.attempts;
    }
    if (is_terminal(t.to)) r.finished_ms = now;
    if (!t.reason.empty()) r.reason = t.reason;
    if (!t.device_id.empty()) r.device_id = t.device_id;
    if (!t.result_json.empty()) r.result_json = t.result_json;
    if (staged != nullptr) {
        // Written once at the end of the group (its log row, or write_staged_locked()), however
        // many steps the task takes here.
        if (st == nullptr) st = &(*staged)[t.id];
        st->rec = r;
        st->dirty = true;
    } else if (Status s = upsert_locked(r, "transition"); !s.ok()) {
        fatal = true;
        return s;
    }
    ++delta[index_of(r.state)];
    return r;
}

Status TaskJournal::write_staged_locked(StagedRows& staged) {
    for (auto& [id, st] : staged) {
        if (!st.dirty) continue;
        if (Status s = upsert_locked(st.rec, "commit"); !s.ok()) return s;
        st.dirty = false;
    }
    return {};
}

Result<TaskRecord> TaskJournal::transition(const std::string& id, TaskState to, const std::string& reason,
                                           const std::string& device_id, const std::string& result_json) {
    return guarded(path_, "transition", [&]() -> Result<TaskRecord> {
        std::vector<Transition> one{Transition{id, to, reason, device_id, result_json}};
        Result<std::vector<Result<TaskRecord>>> out = transition_batch(one);
        if (!out.ok()) return out.status();
        return std::move(out.value().front());
    });
}

Result<std::vector<Result<TaskRecord>>> TaskJournal::transition_batch(const std::vector<Transition>& changes) {
    using Out = std::vector<Result<TaskRecord>>;
    return guarded(path_, "transition", [&]() -> Result<Out> {
        Out out;
        out.reserve(changes.size());
        if (changes.empty()) return out;
        std::lock_guard<std::mutex> lock(mu_);
        if (db_ == nullptr) return Status(Code::failed_precondition, path_ + ": transition: journal is closed");
        if (Status a = apply_pending_locked("transition: apply the log"); !a.ok()) return a;
        if (Status s = begin_locked("transition"); !s.ok()) return s;
        Counts delta{};
        bool changed = false;
        for (const Transition& t : changes) {
            bool fatal = false;
            Result<TaskRecord> one = transition_locked(t, delta, fatal);
            if (fatal) {
                rollback_locked();
                return one.status();
            }
            changed = changed || one.ok();
            out.push_back(std::move(one));
        }
        // A batch whose every change was refused wrote nothing: no commit (and no fsync) needed.
        if (!changed) {
            rollback_locked(false);
            return out;
        }
        if (Status s = commit_locked("transition"); !s.ok()) {
            rollback_locked();
            return s;
        }
        for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += delta[i];
        return out;
    });
}

Result<std::optional<TaskRecord>> TaskJournal::get(const std::string& id) {
    return guarded(path_, "get", [&]() -> Result<std::optional<TaskRecord>> {
        std::lock_guard<std::mutex> lock(mu_);
        if (db_ == nullptr) return Status(Code::failed_precondition, path_ + ": get: journal is closed");
        return find_locked(id, "get");
    });
}

Result<std::vector<TaskRecord>> TaskJournal::queued(size_t limit) {
    return guarded(path_, "queued", [&]() -> Result<std::vector<TaskRecord>> {
        if (limit == 0) return std::vector<TaskRecord>();
        std::lock_guard<std::mutex> lock(mu_);
        if (db_ == nullptr) return Status(Code::failed_precondition, path_ + ": queued: journal is closed");
        if (Status a = apply_pending_locked("queued: apply the log"); !a.ok()) return a;
        StmtScope scope(queued_);
        sqlite3_bind_int64(queued_, 1, clamp_limit(limit));
        return select_locked(queued_, "queued");
    });
}

Result<std::vector<TaskRecord>> TaskJournal::in_state(TaskState s) {
    return guarded(path_, "in_state", [&]() -> Result<std::vector<TaskRecord>> {
        std::lock_guard<std::mutex> lock(mu_);
        if (db_ == nullptr) return Status(Code::failed_precondition, path_ + ": in_state: journal is closed");
        if (Status a = apply_pending_locked("in_state: apply the log"); !a.ok()) return a;
        StmtScope scope(in_state_);
        sqlite3_bind_text(in_state_, 1, to_string(s), -1, SQLITE_STATIC);
        return select_locked(in_state_, "in_state");
    });
}

int64_t TaskJournal::count(TaskState s) {
    std::lock_guard<std::mutex> lock(mu_);
    size_t i = index_of(s);
    return i < counts_.size() ? counts_[i] : 0;
}

Result<std::vector<TaskRecord>> TaskJournal::unpublished(size_t limit) {
    return guarded(path_, "unpublished", [&]() -> Result<std::vector<TaskRecord>> {
        if (limit == 0) return std::vector<TaskRecord>();
        std::lock_guard<std::mutex> lock(mu_);
        if (db_ == nullptr) return Status(Code::failed_precondition, path_ + ": unpublished: journal is closed");
        if (Status a = apply_pending_locked("unpublished: apply the log"); !a.ok()) return a;
        StmtScope scope(unpublished_);
        sqlite3_bind_int64(unpublished_, 1, clamp_limit(limit));
        return select_locked(unpublished_, "unpublished");
    });
}

Status TaskJournal::mark_locked(const std::string& id, int64_t version, bool* hit_out) {
    if (hit_out != nullptr) *hit_out = false;
    {
        StmtScope scope(mark_);
        bind_text(mark_, 1, id);
        sqlite3_bind_int64(mark_, 2, version);
        bool hit = false;
        int rc;
        while ((rc = sqlite3_step(mark_)) == SQLITE_ROW) hit = true;
        if (rc != SQLITE_DONE) return error("mark_published", rc);
        if (hit_out != nullptr) *hit_out = hit;
        if (hit) return {};
    }
    // Nothing updated: an unknown (purged) id is fine; a version never journaled is a bug.
    Result<std::optional<TaskRecord>> found = find_locked(id, "mark_published");
    if (!found.ok()) return found.status();
    if (!found.value()) return {};
    return Status(Code::invalid_argument, path_ + ": mark_published: task '" + id + "' has no version " +
                                              std::to_string(version) + " (its version is " +
                                              std::to_string(found.value()->version) + ")");
}

Status TaskJournal::mark_published(const std::string& id, int64_t version) {
    return mark_published_batch({{id, version}});
}

Status TaskJournal::mark_published_batch(const std::vector<std::pair<std::string, int64_t>>& marks) {
    return guarded(path_, "mark_published", [&]() -> Status {
        if (marks.empty()) return {};
        std::lock_guard<std::mutex> lock(mu_);
        if (db_ == nullptr) return Status(Code::failed_precondition, path_ + ": mark_published: journal is closed");
        if (Status a = apply_pending_locked("mark_published: apply the log"); !a.ok()) return a;
        // Not fsynced: see the header. WAL frames are checksummed in a chain, so a later FULL
        // commit makes this one durable too; a power cut before it only undoes the mark.
        // (Switching the mode expires every prepared statement, so only a FULL journal does.)
        if (full_durability_) {
            if (Status s = sqlite_store::set_synchronous(path_, db_, false, "mark_published: set synchronous=NORMAL");
                !s.ok())
                return s;
        }
        Status result = begin_locked("mark_published");
        if (result.ok()) {
            for (const auto& [id, version] : marks) {
                result = mark_locked(id, version);
                if (!result.ok()) break;
            }
            if (result.ok()) result = commit_locked("mark_published");
            if (!result.ok()) rollback_locked();
        }
        // Every other commit must stay as durable on return as configured.
        if (full_durability_) {
            Status r = sqlite_store::set_synchronous(path_, db_, true, "mark_published: restore synchronous=FULL");
            if (!r.ok() && result.ok()) result = std::move(r);
        }
        return result;
    });
}

Status TaskJournal::set_full_durability(bool full) {
    return guarded(path_, "set_full_durability", [&]() -> Status {
        std::lock_guard<std::mutex> lock(mu_);
        if (db_ == nullptr) return Status(Code::failed_precondition, path_ + ": journal is closed");
        if (Status s = sqlite_store::set_synchronous(path_, db_, full, "set synchronous mode"); !s.ok()) return s;
        full_durability_ = full;
        return Status();
    });
}

Result<TaskJournal::Group> TaskJournal::commit_group(std::vector<TaskRecord> accepts,
                                                     const std::vector<Transition>& transitions, const ThenFn& then,
                                                     const std::vector<std::pair<std::string, int64_t>>& marks) {
    return guarded(path_, "commit", [&]() -> Result<Group> {
        Group g;
        if (accepts.empty() && transitions.empty() && !then && marks.empty()) return g;
        std::lock_guard<std::mutex> lock(mu_);
        if (db_ == nullptr) return Status(Code::failed_precondition, path_ + ": commit: journal is closed");
        if (Status s = begin_locked("commit"); !s.ok()) return s;
        Counts delta{};
        bool changed = false;
        StagedRows staged;
        g.accepted.reserve(accepts.size());
        for (TaskRecord& r : accepts) {
            bool fatal = false;
            Result<std::pair<TaskRecord, bool>> one = accept_locked(std::move(r), delta, fatal, staged);
            if (fatal) {
                rollback_locked();
                return one.status();
            }
            changed = changed || (one.ok() && one.value().second);
            g.accepted.push_back(std::move(one));
        }
        auto apply = [&](const std::vector<Transition>& list) -> Status {
            for (const Transition& t : list) {
                bool fatal = false;
                Result<TaskRecord> one = transition_locked(t, delta, fatal, &staged);
                if (fatal) return one.status();
                changed = changed || one.ok();
                g.transitioned.push_back(std::move(one));
            }
            return Status();
        };
        Status s = apply(transitions);
        if (s.ok() && then) {
            try {
                s = apply(then(g.accepted));
            } catch (...) {
                rollback_locked();
                throw;
            }
        }
        // The marks, on the rows as they stand after this group's changes (which they compare
        // versions with).
        for (size_t i = 0; s.ok() && i < marks.size(); ++i) {
            const auto& [id, version] = marks[i];
            Staged* st = nullptr;
            if (auto it = staged.find(id); it != staged.end()) {
                st = &it->second;
            } else {
                Result<std::optional<TaskRecord>> found = find_locked(id, "mark_published");
                if (!found.ok()) {
                    s = found.status();
                    break;
                }
                if (!found.value()) continue;  // an unknown (purged) id is fine
                st = &staged[id];
                st->rec = std::move(*found.value());
            }
            if (version > st->rec.version) {
                g.mark_errors.push_back(Status(Code::invalid_argument,
                                               path_ + ": mark_published: task '" + id + "' has no version " +
                                                   std::to_string(version) + " (its version is " +
                                                   std::to_string(st->rec.version) + ")"));
            } else if (version > st->rec.published_version) {
                st->rec.published_version = version;
                st->dirty = true;
                changed = true;
            }
        }
        // A small group (a closed loop of short tasks: one admission and the previous task's
        // mark) goes to the log: one row instead of the rows and their index entries. A large
        // one (a burst) shares its table and index pages among its rows, which then costs less
        // than the log plus the apply: it writes its rows directly, and the pending ones first,
        // emptying the log in the same transaction (so no stale image is ever replayed over it).
        size_t dirty = 0;
        for (const auto& [id, st] : staged) dirty += st.dirty ? 1 : 0;
        const bool direct = dirty >= kDirectRows;
        if (s.ok() && changed && !direct) s = log_append_locked(staged);
        if (s.ok() && changed && direct) {
            s = write_pending_locked("commit");
            if (s.ok()) s = write_staged_locked(staged);
        }
        if (!s.ok()) {
            rollback_locked();
            return s;
        }
        if (!changed) {
            rollback_locked(false);
            return g;
        }
        if (Status c = commit_locked("commit"); !c.ok()) {
            rollback_locked();
            return c;
        }
        for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += delta[i];
        if (direct) {
            pending_.clear();
            pending_bytes_ = 0;
            return g;
        }
        for (auto& [id, st] : staged)
            if (st.dirty) put_pending(std::move(st.rec));
        // A caller that never calls checkpoint_if_due() still keeps the log (and memory) bounded.
        if (pending_.size() >= kInlineApplyRows || pending_bytes_ >= kInlineApplyBytes) {
            if (Status a = apply_pending_locked("commit: apply the log"); !a.ok()) spdlog::warn("{}", a.message());
        }
        return g;
    });
}

std::string reason_out_of_attempts(int attempts, int max_attempts) {
    return "agent_restarted: the agent stopped while this task was running, " + std::to_string(attempts) + " time(s) of " +
           std::to_string(max_attempts) + " allowed (tasks.max_attempts); it is not run again";
}

Result<std::vector<TaskRecord>> TaskJournal::recover(const std::function<bool(const std::string& kind)>& idempotent,
                                                     int max_attempts) {
    return guarded(path_, "recover", [&]() -> Result<std::vector<TaskRecord>> {
        std::lock_guard<std::mutex> lock(mu_);
        if (db_ == nullptr) return Status(Code::failed_precondition, path_ + ": recover: journal is closed");
        if (Status a = apply_pending_locked("recover: apply the log"); !a.ok()) return a;
        if (Status s = begin_locked("recover"); !s.ok()) return s;
        Result<std::vector<TaskRecord>> running = [&] {
            StmtScope scope(in_state_);
            sqlite3_bind_text(in_state_, 1, to_string(TaskState::running), -1, SQLITE_STATIC);
            return select_locked(in_state_, "recover");
        }();
        if (!running.ok()) {
            rollback_locked();
            return running.status();
        }
        std::vector<TaskRecord> changed = std::move(running.value());
        if (changed.empty()) {
            rollback_locked(false);
            return changed;
        }
        Counts delta{};
        const int64_t now = now_ms();
        for (TaskRecord& r : changed) {
            --delta[index_of(r.state)];
            ++r.version;
            const bool rerun = idempotent && idempotent(r.kind);
            if (rerun && (max_attempts <= 0 || r.attempts < max_attempts)) {
                r.state = TaskState::queued;
                r.started_ms = 0;
                r.device_id.clear();
            } else if (rerun) {
                r.state = TaskState::failed;
                r.finished_ms = now;
                r.reason = reason_out_of_attempts(r.attempts, max_attempts);
                spdlog::warn("{}: task '{}' ({}) was running when the agent stopped, for the {} time(s) allowed "
                             "(tasks.max_attempts): failed, not run again (a task that stops the agent "
                             "whenever it runs must not keep the node down)",
                             path_, r.id, r.kind, r.attempts);
            } else {
                r.state = TaskState::failed;
                r.finished_ms = now;
                r.reason = kReasonAgentRestarted;
            }
            ++delta[index_of(r.state)];
            if (Status s = upsert_locked(r, "recover"); !s.ok()) {
                rollback_locked();
                return s;
            }
        }
        if (Status s = commit_locked("recover"); !s.ok()) {
            rollback_locked();
            return s;
        }
        for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += delta[i];
        size_t requeued = 0;
        for (const TaskRecord& r : changed) requeued += r.state == TaskState::queued ? 1 : 0;
        spdlog::info("{}: {} task(s) were running when the agent stopped: {} re-queued, {} failed ({})", path_,
                     changed.size(), requeued, changed.size() - requeued, kReasonAgentRestarted);
        return changed;
    });
}

Result<int64_t> TaskJournal::purge(int64_t older_than_ms) {
    return guarded(path_, "purge", [&]() -> Result<int64_t> {
        std::lock_guard<std::mutex> lock(mu_);
        if (db_ == nullptr) return Status(Code::failed_precondition, path_ + ": purge: journal is closed");
        if (Status a = apply_pending_locked("purge: apply the log"); !a.ok()) return a;
        if (Status s = begin_locked("purge"); !s.ok()) return s;
        Counts delta{};
        int64_t removed = 0;
        {
            StmtScope scope(purge_);
            sqlite3_bind_int64(purge_, 1, older_than_ms);
            int rc;
            while ((rc = sqlite3_step(purge_)) == SQLITE_ROW) {
                ++removed;
                if (std::optional<TaskState> st = task_state_from_string(column_bytes(purge_, 0, false)))
                    --delta[index_of(*st)];
            }
            if (rc != SQLITE_DONE) {
                Status s = error("purge", rc);
                rollback_locked();
                return s;
            }
        }
        if (removed == 0) {
            rollback_locked(false);
            return removed;
        }
        if (Status s = commit_locked("purge"); !s.ok()) {
            rollback_locked();
            return s;
        }
        for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += delta[i];
        return removed;
    });
}

bool TaskJournal::recovered_from_corruption() const { return recovered_; }

size_t TaskJournal::pending_rows() {
    std::lock_guard<std::mutex> lock(mu_);
    return pending_.size();
}

int TaskJournal::synchronous_mode() {
    std::lock_guard<std::mutex> lock(mu_);
    return db_ == nullptr ? -1 : sqlite_store::synchronous(db_);
}

}  // namespace cpn::tasks
