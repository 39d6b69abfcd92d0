// task_journal.hpp: the durable journal of the remote-task path. Every accepted (or rejected)
// submit, every state change and every terminal result is written here before it is
// acknowledged or published, so that after a crash, kill -9 or power cut the agent knows, even
// with the broker unreachable, which tasks to run, which were cut off while running, and which
// state changes the broker has not been handed yet. One SQLite file in the state directory
// (WAL, synchronous=FULL unless set_full_durability(false), exclusively locked), built like the
// outbox (store/outbox.hpp). A small group commit appends its rows to the file's log table
// (schema 3) instead of the task table and its indexes; see pending_rows().
//
// States follow AWS IoT Jobs: QUEUED -> RUNNING -> SUCCEEDED | FAILED | TIMED_OUT | CANCELED, and
// REJECTED at admission. Every state change raises the task's version by exactly one; consumers
// de-duplicate by (task id, version).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <unordered_map>
#include <vector>

#include "core/status.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace cpn::tasks {

// The values are stored in the journal's log (task_journal.cpp, encode_row): append new states
// at the end, never reorder.
enum class TaskState { queued, running, succeeded, failed, timed_out, canceled, rejected };

/* The wire (and file) name of a state, upper case: "QUEUED", "RUNNING", "SUCCEEDED", "FAILED",
 * "TIMED_OUT", "CANCELED", "REJECTED". */
const char* to_string(TaskState s);

/* The state named by an upper-case wire name; nullopt for anything else (case matters). */
std::optional<TaskState> task_state_from_string(const std::string& name);

/* SUCCEEDED, FAILED, TIMED_OUT, CANCELED and REJECTED: no transition leaves them. */
bool is_terminal(TaskState s);

/* True when `from -> to` is a transition TaskJournal::transition() accepts:
 * QUEUED -> RUNNING | CANCELED | FAILED | TIMED_OUT and
 * RUNNING -> SUCCEEDED | FAILED | TIMED_OUT | CANCELED. (RUNNING -> QUEUED happens only in
 * TaskJournal::recover(); REJECTED only at admission.) */
bool is_allowed_transition(TaskState from, TaskState to);

struct TaskRecord {
    std::string id;                // the submitter's id: the idempotency key (validated by the caller)
    std::string kind;              // "echo", "bench", "render", "infer"
    std::string spec_json;         // the accepted submit as received (binary-safe)
    TaskState state = TaskState::queued;
    int64_t version = 0;           // 1 at acceptance, +1 on every state change
    int priority = 0;              // higher runs first
    int64_t accepted_ms = 0;       // wall clock; 0 = not yet
    int64_t started_ms = 0;        // last start (RUNNING); 0 = not started (or re-queued)
    int64_t finished_ms = 0;       // when it became terminal; 0 = not yet
    int64_t seq = 0;               // acceptance order (FIFO within a priority), assigned by the journal
    std::string device_id;         // where it runs / ran
    std::string reason;            // why FAILED / REJECTED / TIMED_OUT / CANCELED
    std::string result_json;       // terminal result (binary-safe), "" until then
    std::string reply_topic;       // MQTT 5 response topic of the submit ("" on 3.1.1)
    std::string correlation;       // MQTT 5 correlation data (binary-safe)
    int64_t published_version = 0; // highest version handed to the outbox for publication
    int attempts = 0;              // how many times it was started (re-runs after a restart count)
};

/* One state change of a batch (TaskJournal::transition_batch); the fields mean what the
 * arguments of TaskJournal::transition() mean. */
struct Transition {
    std::string id;
    TaskState to = TaskState::running;
    std::string reason;
    std::string device_id;
    std::string result_json;
};

/* The reason recover() gives a non-idempotent task that was RUNNING when the agent stopped. */
inline constexpr const char* kReasonAgentRestarted = "agent restarted";
/* The reason recover() gives an idempotent task that has used up its attempts: "agent_restarted:
 * the agent stopped while this task was running, 3 time(s) of 3 allowed (tasks.max_attempts); it
 * is not run again". */
std::string reason_out_of_attempts(int attempts, int max_attempts);

class TaskJournal {
public:
    /* Opens or creates the journal file (the parent directory must exist). Recovers after a
     * crash (SQLite replays the committed part of the WAL). A corrupt file (not SQLite, or
     * failing `PRAGMA quick_check`) is renamed aside to <path>.corrupt-<unix ms> (its -wal too)
     * and a fresh journal is created; recovered_from_corruption() then says so, so the daemon
     * can log it. Any other SQLite database at the path is left untouched (failed_precondition).
     * The file is locked for this process (exclusive locking mode): a second agent on the same
     * file gets `unavailable`. Errors name the path and the cause (permission_denied, not_found,
     * unavailable, ...). Never throws. */
    static Result<std::unique_ptr<TaskJournal>> open(const std::string& path);
    ~TaskJournal();
    TaskJournal(const TaskJournal&) = delete;
    TaskJournal& operator=(const TaskJournal&) = delete;

    /* Admits a task. A new id is inserted QUEUED with version 1, attempts 0 and the next seq
     * (accepted_ms = now when the caller left it 0; state, version, seq, started/finished_ms,
     * result_json, published_version and attempts of `r` are ignored); returns {record, true}.
     * An id already in the journal changes nothing and returns {the stored record, false},
     * whatever its state and whatever the new spec says: a re-sent submit gets the same task,
     * also after a restart or kill -9 (until purge() removes it). Durable when it returns OK.
     * Errors: invalid_argument (empty id or kind), and the store's (unavailable on a full
     * disk or I/O error, ...), after which nothing was written. */
    Result<std::pair<TaskRecord, bool>> accept(TaskRecord r);

    /* Like accept(), but records the submit as REJECTED at admission (version 1,
     * finished_ms = accepted_ms, reason as given), so a re-sent bad submit gets the same answer
     * instead of being judged again. An existing id is returned unchanged ({record, false}). */
    Result<std::pair<TaskRecord, bool>> accept_rejected(TaskRecord r, const std::string& reason);

    /* accept() for many submits in one transaction (one fsync: group commit). The outer error
     * means nothing was written. Otherwise one entry per input, in order: {record, created}, or
     * that submit's own error (invalid_argument) while the others are written. An id given twice
     * in one batch is created by its first occurrence and returned with created=false by the
     * later ones. Set r.state to REJECTED (and r.reason) to record a rejection as
     * accept_rejected() does. */
    Result<std::vector<Result<std::pair<TaskRecord, bool>>>> accept_batch(std::vector<TaskRecord> records);

    /* Moves a task to `to` (see is_allowed_transition()). Raises the version by one; RUNNING
     * sets started_ms (now) and attempts+1; a terminal state sets finished_ms (now). reason,
     * device_id and result_json replace the stored ones when not empty (an empty argument keeps
     * the stored value, so the device a task ran on survives its SUCCEEDED). Durable when it
     * returns OK; returns the new record. Errors: not_found (no such id), failed_precondition
     * ("task '<id>': cannot go from <FROM> to <TO>", also for any move to QUEUED or REJECTED),
     * and the store's, after which nothing changed. */
    Result<TaskRecord> transition(const std::string& id, TaskState to, const std::string& reason = "",
                                  const std::string& device_id = "", const std::string& result_json = "");

    /* transition() for many state changes in one transaction (one fsync). Applied in order, so
     * one task may take several steps in one batch (QUEUED -> RUNNING -> SUCCEEDED). The outer
     * error means nothing changed. Otherwise one entry per input: the new record, or that
     * change's own error (not_found, failed_precondition: e.g. a CANCELED that lost the race
     * with SUCCEEDED) while the others are applied: a refused change never fails its batch. */
    Result<std::vector<Result<TaskRecord>>> transition_batch(const std::vector<Transition>& changes);

    /* One group commit of the scheduler: `accepts` as accept_batch(), then `transitions`, then
     * the transitions `then` returns when called (inside the transaction, under the journal's
     * lock) with the accept results, so admitting a task and starting (or, for a pure in-memory
     * kind, finishing) it cost one commit. Nothing is visible to another caller before the
     * commit; the outer error means nothing was written. `then` may be empty; it must not call
     * back into the journal. `marks` are mark_published() pairs written in the same
     * transaction (a delivered result costs no commit of its own while tasks keep coming); a
     * mark refused as invalid_argument is reported in Group::mark_errors and skipped, the
     * others are written. */
    struct Group {
        std::vector<Result<std::pair<TaskRecord, bool>>> accepted;
        std::vector<Result<TaskRecord>> transitioned;  // `transitions`, then what `then` returned
        std::vector<Status> mark_errors;               // refused marks (a version never journaled)
    };
    using ThenFn = std::function<std::vector<Transition>(const std::vector<Result<std::pair<TaskRecord, bool>>>&)>;
    Result<Group> commit_group(std::vector<TaskRecord> accepts, const std::vector<Transition>& transitions,
                               const ThenFn& then, const std::vector<std::pair<std::string, int64_t>>& marks = {});

    /* Durability of every commit except mark_published(): true (the default) fsyncs each commit
     * (SQLite synchronous=FULL: survives a power cut); false keeps commits in the WAL without
     * fsync (synchronous=NORMAL: survives a crash or kill -9 of the process, not a power cut). */
    Status set_full_durability(bool full);

    /* The task with this id, or nullopt when there is none (never accepted, or purged). */
    Result<std::optional<TaskRecord>> get(const std::string& id);

    /* Up to `limit` QUEUED tasks in the order they should run: priority descending, then
     * acceptance order (seq ascending). */
    Result<std::vector<TaskRecord>> queued(size_t limit);

    /* Every task in state `s`, in acceptance order. */
    Result<std::vector<TaskRecord>> in_state(TaskState s);

    /* How many tasks are in state `s` (kept in memory, read from the file at open). */
    int64_t count(TaskState s);

    /* Up to `limit` tasks with a state change not yet handed to the outbox
     * (version > published_version), in acceptance order. After a restart these are exactly
     * the changes that must be published (again). */
    Result<std::vector<TaskRecord>> unpublished(size_t limit);

    /* Records that `version` of task `id` was handed to the (durable) outbox:
     * published_version = max(published_version, version). An unknown (e.g. purged) id is OK.
     * Not fsynced on its own (the next durable commit carries it): losing it to a power cut only
     * means the change is published again, which consumers de-duplicate by (id, version).
     * Errors: invalid_argument when `version` is above the task's current version (it was never
     * journaled), and the store's. */
    Status mark_published(const std::string& id, int64_t version);

    /* mark_published() for many (id, version) pairs in one transaction; on any error nothing
     * is marked (the changes are then simply published again). */
    Status mark_published_batch(const std::vector<std::pair<std::string, int64_t>>& marks);

    /* Call once after open, before running anything: every task still RUNNING was cut off by
     * the restart. One whose kind `idempotent(kind)` accepts goes back to QUEUED (started_ms and
     * device_id cleared, attempts kept, so the runner sees it is a re-run); any other becomes
     * FAILED with reason "agent restarted" and finished_ms = now. Version +1 either way, so the
     * change is published. An idempotent task that has already started `max_attempts` times
     * (0: no limit) fails too, with a reason that says so: a task that kills the agent whenever
     * it runs (a model that crashes a vendor library, a driver fault) must not take the node
     * down again at every restart. One transaction; returns the records changed, in acceptance
     * order. */
    Result<std::vector<TaskRecord>> recover(const std::function<bool(const std::string& kind)>& idempotent,
                                            int max_attempts = 0);

    /* Retention: deletes every terminal task with finished_ms < older_than_ms whose last version
     * was handed to the outbox (version == published_version); unpublished and non-terminal
     * tasks are always kept. Returns how many were deleted. After this the id is no longer an
     * idempotency key: a re-sent submit with it is a new task, starting again at version 1, so
     * the retention must be longer than any submitter retries and any consumer's
     * de-duplication memory. */
    Result<int64_t> purge(int64_t older_than_ms);

    /* The scheduler's housekeeping, called after it has published what it committed so that
     * none of this is on a task's way to its result. One of, per call:
     * - writes the rows commit_group() left in the journal's log into the tasks table (see
     *   pending_rows()) once there are kApplyRows of them or kApplyBytes, in one transaction
     *   (about 10 ms for 1024 echo tasks on the reference VM);
     * - copies SQLite's write-ahead log back into the file (a passive checkpoint) once it holds
     *   kCheckpointPages or more pages (about 5 ms). Commits never do that on their own below
     *   kInlineCheckpointPages.
     * Rare and long rather than frequent and short: a closed loop of echo tasks meets one of
     * them about every 400 tasks, so they stay out of its 99th percentile
     * (bench/results/task-roundtrip-*). Returns whether the checkpoint ran; a failure of either
     * is logged and retried next time. */
    bool checkpoint_if_due();
    static constexpr int kCheckpointPages = 1000;
    static constexpr int kInlineCheckpointPages = 4000;  // a caller that never calls the above
    static constexpr size_t kApplyRows = 1024;
    static constexpr size_t kApplyBytes = size_t{4} << 20;
    // A group commit changing this many rows or more writes them into the table directly.
    static constexpr size_t kDirectRows = 8;
    // commit_group() applies the log itself beyond these (a caller that never calls the above).
    static constexpr size_t kInlineApplyRows = 4096;
    static constexpr size_t kInlineApplyBytes = size_t{16} << 20;

    /* How many tasks commit_group() has journaled in the log (one appended row per commit,
     * durable like any commit) whose rows in the tasks table are not yet written. get() and
     * commit_group() read them from memory; every other call writes them first; open() writes
     * what a crash left. For tests and diagnostics. */
    size_t pending_rows();

    /* SQLite's PRAGMA synchronous in force (1 NORMAL, 2 FULL; -1 when closed or unreadable): what
     * set_full_durability() set, for tests and diagnostics. */
    int synchronous_mode();

    /* True when open() found a corrupt file and moved it aside. */
    bool recovered_from_corruption() const;
    /* Where the corrupt file went (<path>.corrupt-<unix ms>); empty when nothing was moved. */
    const std::string& moved_aside_to() const { return moved_aside_to_; }

    const std::string& path() const { return path_; }

private:
    explicit TaskJournal(std::string path);

    using Counts = std::array<int64_t, 7>;
    Status open_impl();
    Status prepare_all();
    Status load_counts();
    Status begin_locked(const char* what);
    Status commit_locked(const char* what);
    // reload_counts=false: only when the transaction is known to have written nothing.
    void rollback_locked(bool reload_counts = true);
    Status error(const char* what, int rc) const;
    void close_db();

    // Inside an open transaction. A non-OK Result with a store error (anything but the
    // caller's own invalid_argument / not_found / failed_precondition) aborts the transaction;
    // `fatal` tells which.

    /* Rows one commit_group() created or changed, as they stand in the transaction: a task's
     * later steps in the same group read it here rather than from the file, and its row is
     * written once at the end (write_staged_locked(), or commit_group()'s log row) instead of
     * once per step. */
    struct Staged {
        TaskRecord rec;
        bool dirty = false;  // changed since it was written
    };
    using StagedRows = std::unordered_map<std::string, Staged>;
    Result<std::pair<TaskRecord, bool>> accept_locked(TaskRecord r, Counts& delta, bool& fatal, StagedRows& staged);
    static void bind_row(sqlite3_stmt* s, const TaskRecord& r);
    // The log (schema 3): appended by commit_group(), written into `tasks` by apply_pending_locked().
    Status log_append_locked(const StagedRows& staged);  // the dirty rows, as one log row
    Status upsert_locked(const TaskRecord& r, const char* what);  // a whole row into `tasks`
    Status write_pending_locked(const char* what);  // inside a transaction: pending rows in, log emptied
    void put_pending(TaskRecord r);                        // the latest image of a logged row
    /* Writes every pending row into `tasks` and empties the log, in one transaction; on failure
     * nothing changed (the rows stay pending and logged). */
    Status apply_pending_locked(const char* what);
    Status replay_log_locked();  // open(): the log a crash left, into `tasks`
    Result<TaskRecord> transition_locked(const Transition& t, Counts& delta, bool& fatal, StagedRows* staged = nullptr);
    Status write_staged_locked(StagedRows& staged);
    Result<std::optional<TaskRecord>> find_locked(const std::string& id, const char* what);
    /* Sets published_version; `hit` tells whether a row changed. invalid_argument for a version
     * never journaled (nothing changed), the store's errors otherwise. */
    Status mark_locked(const std::string& id, int64_t version, bool* hit = nullptr);
    Result<std::vector<TaskRecord>> select_locked(sqlite3_stmt* s, const char* what);

    std::string path_;
    bool recovered_ = false;
    std::string moved_aside_to_;

    std::mutex mu_;
    sqlite3* db_ = nullptr;
    // Prepared once at open, finalized in the destructor.
    sqlite3_stmt* begin_ = nullptr;
    sqlite3_stmt* commit_ = nullptr;
    sqlite3_stmt* rollback_ = nullptr;
    sqlite3_stmt* by_id_ = nullptr;
    sqlite3_stmt* queued_ = nullptr;
    sqlite3_stmt* in_state_ = nullptr;
    sqlite3_stmt* unpublished_ = nullptr;
    sqlite3_stmt* mark_ = nullptr;
    sqlite3_stmt* purge_ = nullptr;
    sqlite3_stmt* counts_stmt_ = nullptr;
    sqlite3_stmt* log_insert_ = nullptr;
    sqlite3_stmt* log_read_ = nullptr;
    sqlite3_stmt* log_clear_ = nullptr;
    sqlite3_stmt* upsert_ = nullptr;
    sqlite3_stmt* state_of_ = nullptr;

    // Rows journaled in the log and not yet in `tasks`: the latest image of each, by id.
    std::unordered_map<std::string, TaskRecord> pending_;
    size_t pending_bytes_ = 0;  // their encoded size

    bool full_durability_ = true;
    int wal_pages_ = 0;
    int64_t next_seq_ = 1;  // the next admission's seq: max(seq) + 1 at open  // pages in the write-ahead log after the last commit (its hook)
    static int wal_hook(void* self, struct sqlite3* db, const char* name, int pages);
    // Tasks per state, indexed by TaskState; changed only after a commit succeeded (re-read
    // after a failed one).
    Counts counts_{};
};

}  // namespace cpn::tasks
