// outbox.hpp: the durable store-and-forward queue. Everything the agent publishes that is not a
// retained state message is written here first, published when connected and removed only after
// the broker acknowledged it, so broker outages, restarts, kill -9 and power cuts lose at most
// the message being written. One SQLite file (WAL, synchronous=FULL), bounded in bytes and age.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/status.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace cpn {

struct OutboxLimits {
    int64_t max_bytes = 64ll << 20;          // payload + topic bytes; <= 0: no byte cap
    int64_t max_age_s = 7 * 24 * 3600;       // telemetry only; <= 0: no age cap
};

struct OutboxMessage {
    int64_t id = 0;            // strictly increasing in append order (AUTOINCREMENT: never reused)
    std::string kind;          // "telemetry" (droppable) or anything else (never dropped)
    std::string topic;
    std::string payload;       // bytes, binary-safe (stored as a BLOB)
    int qos = 1;
    int64_t created_ms = 0;    // wall clock at creation
};

/* The kind that the caps may drop; every other kind is kept until it is delivered. */
inline constexpr const char* kOutboxTelemetry = "telemetry";

class Outbox {
public:
    /* Opens or creates the store file (parent directory must exist). Recovers after a crash
     * (SQLite replays the committed part of the WAL). A corrupt file (not SQLite, or failing
     * `PRAGMA quick_check`) is renamed aside to <path>.corrupt-<unix ms> (its -wal too) and a
     * fresh store is created; recovered_from_corruption() then says so, so the daemon can log
     * it: nothing is silently discarded. The file is locked for this process (SQLite exclusive
     * locking mode): a second agent on the same file gets an error, not a shared queue. The
     * caps are applied before it returns. Never throws. */
    static Result<std::unique_ptr<Outbox>> open(const std::string& path, OutboxLimits limits);
    ~Outbox();
    Outbox(const Outbox&) = delete;
    Outbox& operator=(const Outbox&) = delete;

    /* Durable when it returns OK (the transaction is committed with synchronous=FULL in WAL
     * mode). In the same transaction it enforces the caps: telemetry older than max_age_s
     * (relative to created_ms of the newest message, i.e. this one) is dropped, then the oldest
     * telemetry while total payload+topic bytes > max_bytes. Drops are counted. Messages of any
     * other kind are never dropped; when they alone exceed the cap a warning is logged and
     * over_cap() turns true. Returns the new id. */
    Result<int64_t> append(const std::string& kind, const std::string& topic, const std::string& payload,
                           int qos, int64_t created_ms);

    /* Up to max_count messages with id > after_id, oldest first. */
    Result<std::vector<OutboxMessage>> peek(size_t max_count, int64_t after_id = 0);

    /* Removes a delivered message; removing an id that is not there is OK (idempotent). Not
     * fsynced on its own (the next append's commit makes it durable): a remove lost to a power
     * cut only means the message is sent again, which QoS 1 allows anyway. */
    Status remove(int64_t id);

    /* Messages stored, and their payload+topic bytes (kept in memory, read from the file at open). */
    size_t count();
    uint64_t bytes();

    /* Messages dropped by the caps since the store was created (persisted across restarts). */
    uint64_t dropped_total();

    /* Dropped since the last call (persisted: a drop before a crash is still reported after it).
     * When the reset cannot be made durable it returns 0 and keeps the count for the next call,
     * so a drop is neither lost nor reported twice. */
    uint64_t take_dropped_since_report();

    /* Persistent named counters (e.g. "telemetry_seq"): returns the next value, starting at 1,
     * durable before it returns, strictly increasing across restarts. */
    Result<int64_t> next_sequence(const std::string& name);

    /* Changes the caps at run time (SIGHUP reload) and applies them at once (age relative to
     * the newest message). A failure to apply is logged; the new caps still hold for the next
     * append. */
    void set_limits(OutboxLimits limits);

    /* True when open() found a corrupt file and moved it aside. */
    bool recovered_from_corruption() const;
    /* SQLite's PRAGMA synchronous in force (2 FULL between calls; -1 when closed or unreadable),
     * for tests and diagnostics. */
    int synchronous_mode();
    /* Where the corrupt file went (<path>.corrupt-<unix ms>); empty when nothing was moved. */
    const std::string& moved_aside_to() const { return moved_aside_to_; }

    /* True when, after dropping every telemetry message it could, the store is still over
     * max_bytes (only never-dropped kinds are left). */
    bool over_cap();

    const std::string& path() const { return path_; }

private:
    Outbox(std::string path, OutboxLimits limits);

    struct Drops {
        int64_t count = 0;
        int64_t bytes = 0;
    };
    Status open_impl();
    Status prepare_all();
    Status load_totals();
    Status apply_limits_locked(const char* what);
    Status enforce_locked(int64_t reference_ms, int64_t& pending_bytes, Drops& drops, const char* what);
    Status begin_locked(const char* what);
    Status commit_locked(const char* what);
    void rollback_locked();
    void after_commit_locked(int64_t added_count, int64_t pending_bytes, const Drops& drops);
    Status error(const char* what, int rc) const;
    void close_db();

    std::string path_;
    OutboxLimits limits_;
    bool recovered_ = false;
    std::string moved_aside_to_;

    std::mutex mu_;
    sqlite3* db_ = nullptr;
    // Prepared once at open, finalized in the destructor.
    sqlite3_stmt* begin_ = nullptr;
    sqlite3_stmt* commit_ = nullptr;
    sqlite3_stmt* rollback_ = nullptr;
    sqlite3_stmt* insert_ = nullptr;
    sqlite3_stmt* peek_ = nullptr;
    sqlite3_stmt* remove_ = nullptr;
    sqlite3_stmt* drop_old_ = nullptr;
    sqlite3_stmt* oldest_telemetry_ = nullptr;
    sqlite3_stmt* drop_upto_ = nullptr;
    sqlite3_stmt* newest_created_ = nullptr;
    sqlite3_stmt* add_dropped_ = nullptr;
    sqlite3_stmt* reset_unreported_ = nullptr;
    sqlite3_stmt* next_seq_ = nullptr;
    sqlite3_stmt* totals_ = nullptr;
    sqlite3_stmt* meta_ = nullptr;

    // Mirrors of the file, changed only after a commit succeeded (re-read after a failed one).
    int64_t count_ = 0;
    int64_t bytes_ = 0;
    int64_t dropped_total_ = 0;
    int64_t dropped_unreported_ = 0;
    bool over_cap_ = false;
};

}  // namespace cpn
