#include "store/outbox.hpp"

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

namespace cpn {
namespace {

// 'CPNO' in the database header: tells our file from any other SQLite file at the same path.
constexpr int kApplicationId = 0x43504E4F;
constexpr int kSchemaVersion = 1;
// How long open() waits for a lock held by another process before saying so.
constexpr int kBusyTimeoutMs = 1000;

const char* const kSchema = R"sql(
CREATE TABLE messages(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX messages_by_kind ON messages(kind);
CREATE INDEX messages_by_kind_age ON messages(kind, created_ms);
CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta(key, value) VALUES ('dropped_total', 0), ('dropped_unreported', 0);
CREATE TABLE sequences(name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
)sql";

using sqlite_store::now_ms;

using sqlite_store::run;
using sqlite_store::StmtScope;

}  // namespace

Outbox::Outbox(std::string path, OutboxLimits limits) : path_(std::move(path)), limits_(limits) {}

Outbox::~Outbox() {
    std::lock_guard<std::mutex> lock(mu_);
    close_db();
}

void Outbox::close_db() {
    for (sqlite3_stmt** s : {&begin_, &commit_, &rollback_, &insert_, &peek_, &remove_, &drop_old_,
                             &oldest_telemetry_, &drop_upto_, &newest_created_, &add_dropped_,
                             &reset_unreported_, &next_seq_, &totals_, &meta_}) {
        sqlite3_finalize(*s);
        *s = nullptr;
    }
    // The last connection to close checkpoints the WAL into the main file and deletes it.
    if (db_ != nullptr) sqlite3_close_v2(db_);
    db_ = nullptr;
}

/* "<path>: <what>: <sqlite message>[ (<strerror>)]" (sqlite_store::error). */
Status Outbox::error(const char* what, int rc) const { return sqlite_store::error(path_, db_, what, rc); }

Result<std::unique_ptr<Outbox>> Outbox::open(const std::string& path, OutboxLimits limits) {
    try {
        std::unique_ptr<Outbox> ob(new Outbox(path, limits));
        std::lock_guard<std::mutex> lock(ob->mu_);
        Status s = ob->open_impl();
        if (!s.ok()) {
            ob->close_db();
            return s;
        }
        return Result<std::unique_ptr<Outbox>>(std::move(ob));
    } catch (const std::bad_alloc&) {
        return Status(Code::out_of_memory, path + ": open: out of memory");
    } catch (const std::exception& e) {
        return Status(Code::internal, path + ": open: " + e.what());
    } catch (...) {
        return Status(Code::internal, path + ": open: unknown exception");
    }
}

Status Outbox::open_impl() {
    if (path_.empty()) return Status(Code::invalid_argument, "outbox: empty store path");
    static const sqlite_store::Spec kSpec = {"outbox", "store", kApplicationId, kSchemaVersion, kSchema,
                                             kBusyTimeoutMs};
    sqlite_store::Opened opened;
    Status s = sqlite_store::open(path_, kSpec, &db_, opened);
    recovered_ = opened.recovered;
    moved_aside_to_ = opened.moved_aside_to;
    if (!s.ok()) return s;
    if (Status p = prepare_all(); !p.ok()) return p;
    if (Status l = load_totals(); !l.ok()) return l;
    // The caps may have been lowered while the agent was down.
    if (Status a = apply_limits_locked("open: apply limits"); !a.ok()) return a;
    return {};
}

Status Outbox::prepare_all() {
    struct {
        sqlite3_stmt** stmt;
        const char* sql;
    } const all[] = {
        {&begin_, "BEGIN IMMEDIATE"},
        {&commit_, "COMMIT"},
        {&rollback_, "ROLLBACK"},
        {&insert_, "INSERT INTO messages(kind, topic, payload, qos, created_ms, size) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"},
        {&peek_, "SELECT id, kind, topic, payload, qos, created_ms FROM messages WHERE id > ?1 ORDER BY id LIMIT ?2"},
        {&remove_, "DELETE FROM messages WHERE id = ?1 RETURNING size"},
        {&drop_old_, "DELETE FROM messages WHERE kind = 'telemetry' AND created_ms < ?1 RETURNING size"},
        {&oldest_telemetry_, "SELECT id, size FROM messages WHERE kind = 'telemetry' ORDER BY id"},
        {&drop_upto_, "DELETE FROM messages WHERE kind = 'telemetry' AND id <= ?1 RETURNING size"},
        {&newest_created_, "SELECT created_ms FROM messages ORDER BY id DESC LIMIT 1"},
        {&add_dropped_, "UPDATE meta SET value = value + ?1 WHERE key IN ('dropped_total', 'dropped_unreported')"},
        {&reset_unreported_, "UPDATE meta SET value = 0 WHERE key = 'dropped_unreported'"},
        {&next_seq_, "INSERT INTO sequences(name, value) VALUES (?1, 1) "
                     "ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value"},
        {&totals_, "SELECT count(*), coalesce(sum(size), 0) FROM messages"},
        {&meta_, "SELECT key, value FROM meta"},
    };
    for (const auto& p : all) {
        int rc = sqlite3_prepare_v3(db_, p.sql, -1, SQLITE_PREPARE_PERSISTENT, p.stmt, nullptr);
        if (rc != SQLITE_OK) return error("open: prepare", rc);
    }
    return {};
}

/* Re-reads the in-memory mirrors from the file: at open, and after a failed commit, when it is
 * not known what reached the disk. */
Status Outbox::load_totals() {
    {
        StmtScope scope(totals_);
        int rc = sqlite3_step(totals_);
        if (rc != SQLITE_ROW) return error("read totals", rc);
        count_ = sqlite3_column_int64(totals_, 0);
        bytes_ = sqlite3_column_int64(totals_, 1);
    }
    StmtScope scope(meta_);
    int rc;
    while ((rc = sqlite3_step(meta_)) == SQLITE_ROW) {
        const unsigned char* k = sqlite3_column_text(meta_, 0);
        std::string key = k ? reinterpret_cast<const char*>(k) : "";
        if (key == "dropped_total") dropped_total_ = sqlite3_column_int64(meta_, 1);
        if (key == "dropped_unreported") dropped_unreported_ = sqlite3_column_int64(meta_, 1);
    }
    if (rc != SQLITE_DONE) return error("read counters", rc);
    over_cap_ = limits_.max_bytes > 0 && bytes_ > limits_.max_bytes;
    return {};
}

Status Outbox::begin_locked(const char* what) {
    StmtScope scope(begin_);
    int rc = sqlite3_step(begin_);
    return rc == SQLITE_DONE ? Status() : error(what, rc);
}

Status Outbox::commit_locked(const char* what) {
    StmtScope scope(commit_);
    int rc = sqlite3_step(commit_);
    return rc == SQLITE_DONE ? Status() : error(what, rc);
}

/* Undoes an open transaction after a failure. A failed COMMIT (full disk, I/O error) may have
 * left part of it on disk, so the mirrors are re-read rather than trusted. */
void Outbox::rollback_locked() {
    if (!sqlite3_get_autocommit(db_)) {
        StmtScope scope(rollback_);
        sqlite3_step(rollback_);
    }
    if (Status s = load_totals(); !s.ok()) spdlog::warn("{}", s.message());
}

/* Inside an open transaction: drops telemetry by age, then by bytes. `pending_bytes` is the
 * total including what this transaction added; it is lowered by what was dropped. */
Status Outbox::enforce_locked(int64_t reference_ms, int64_t& pending_bytes, Drops& drops, const char* what) {
    auto drain_sizes = [&](sqlite3_stmt* s) {
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            ++drops.count;
            drops.bytes += sqlite3_column_int64(s, 0);
            pending_bytes -= sqlite3_column_int64(s, 0);
        }
        return rc;
    };
    int64_t age_ms = 0, cutoff = 0;
    // An age (or a caller's created_ms) so extreme that the cutoff overflows means "no cutoff".
    if (limits_.max_age_s > 0 && !__builtin_mul_overflow(limits_.max_age_s, int64_t{1000}, &age_ms) &&
        !__builtin_sub_overflow(reference_ms, age_ms, &cutoff)) {
        StmtScope scope(drop_old_);
        sqlite3_bind_int64(drop_old_, 1, cutoff);
        if (int rc = drain_sizes(drop_old_); rc != SQLITE_DONE) return error(what, rc);
    }
    if (limits_.max_bytes > 0 && pending_bytes > limits_.max_bytes) {
        // Find how far the oldest telemetry must go, then delete that range in one statement.
        int64_t excess = pending_bytes - limits_.max_bytes;
        int64_t upto = 0, freed = 0;
        {
            StmtScope scope(oldest_telemetry_);
            int rc = SQLITE_DONE;
            while (freed < excess && (rc = sqlite3_step(oldest_telemetry_)) == SQLITE_ROW) {
                upto = sqlite3_column_int64(oldest_telemetry_, 0);
                freed += sqlite3_column_int64(oldest_telemetry_, 1);
            }
            if (freed < excess && rc != SQLITE_DONE) return error(what, rc);
        }
        if (upto > 0) {
            StmtScope scope(drop_upto_);
            sqlite3_bind_int64(drop_upto_, 1, upto);
            if (int rc = drain_sizes(drop_upto_); rc != SQLITE_DONE) return error(what, rc);
        }
    }
    if (drops.count > 0) {
        StmtScope scope(add_dropped_);
        sqlite3_bind_int64(add_dropped_, 1, drops.count);
        if (int rc = run(add_dropped_); rc != SQLITE_DONE) return error(what, rc);
    }
    return {};
}

void Outbox::after_commit_locked(int64_t added_count, int64_t pending_bytes, const Drops& drops) {
    count_ += added_count - drops.count;
    bytes_ = pending_bytes;
    dropped_total_ += drops.count;
    dropped_unreported_ += drops.count;
    bool over = limits_.max_bytes > 0 && bytes_ > limits_.max_bytes;
    if (over && !over_cap_)
        spdlog::warn("{}: {} bytes stored, over the cap of {} bytes: no telemetry is left to drop and the "
                     "other messages (acks, results) are never dropped",
                     path_, bytes_, limits_.max_bytes);
    over_cap_ = over;
}

/* One transaction: age the store relative to its newest message, then the byte cap. */
Status Outbox::apply_limits_locked(const char* what) {
    if (Status s = begin_locked(what); !s.ok()) return s;
    int64_t reference = 0;
    bool any = false;
    {
        StmtScope scope(newest_created_);
        int rc = sqlite3_step(newest_created_);
        if (rc == SQLITE_ROW) {
            reference = sqlite3_column_int64(newest_created_, 0);
            any = true;
        } else if (rc != SQLITE_DONE) {
            Status s = error(what, rc);
            rollback_locked();
            return s;
        }
    }
    int64_t pending = bytes_;
    Drops drops;
    if (any) {
        if (Status s = enforce_locked(reference, pending, drops, what); !s.ok()) {
            rollback_locked();
            return s;
        }
    }
    if (Status s = commit_locked(what); !s.ok()) {
        rollback_locked();
        return s;
    }
    after_commit_locked(0, pending, drops);
    if (drops.count > 0)
        spdlog::info("{}: dropped {} telemetry message(s) ({} bytes) to fit the limits", path_, drops.count,
                     drops.bytes);
    return {};
}

Result<int64_t> Outbox::append(const std::string& kind, const std::string& topic, const std::string& payload,
                               int qos, int64_t created_ms) {
    try {
        if (kind.empty()) return Status(Code::invalid_argument, path_ + ": append: empty message kind");
        if (topic.empty()) return Status(Code::invalid_argument, path_ + ": append: empty topic");
        if (qos < 0 || qos > 2)
            return Status(Code::invalid_argument,
                          path_ + ": append: qos must be 0, 1 or 2, got " + std::to_string(qos));
        const int64_t size = static_cast<int64_t>(topic.size() + payload.size());

        std::lock_guard<std::mutex> lock(mu_);
        if (db_ == nullptr) return Status(Code::failed_precondition, path_ + ": append: store is closed");
        if (Status s = begin_locked("append"); !s.ok()) return s;
        int64_t id = 0;
        {
            StmtScope scope(insert_);
            sqlite3_bind_text64(insert_, 1, kind.data(), kind.size(), SQLITE_STATIC, SQLITE_UTF8);
            sqlite3_bind_text64(insert_, 2, topic.data(), topic.size(), SQLITE_STATIC, SQLITE_UTF8);
            // data() is never null, so an empty payload is a zero-length BLOB, not NULL.
            sqlite3_bind_blob64(insert_, 3, payload.data(), payload.size(), SQLITE_STATIC);
            sqlite3_bind_int(insert_, 4, qos);
            sqlite3_bind_int64(insert_, 5, created_ms);
            sqlite3_bind_int64(insert_, 6, size);
            int rc = sqlite3_step(insert_);
            if (rc != SQLITE_DONE) {
                Status s = error("append", rc);
                rollback_locked();
                return s;
            }
            id = sqlite3_last_insert_rowid(db_);
        }
        int64_t pending = bytes_ + size;
        Drops drops;
        if (Status s = enforce_locked(created_ms, pending, drops, "append"); !s.ok()) {
            rollback_locked();
            return s;
        }
        if (Status s = commit_locked("append"); !s.ok()) {
            rollback_locked();
            return s;
        }
        after_commit_locked(1, pending, drops);
        return id;
    } catch (const std::bad_alloc&) {
        return Status(Code::out_of_memory, path_ + ": append: out of memory");
    } catch (const std::exception& e) {
        return Status(Code::internal, path_ + ": append: " + e.what());
    } catch (...) {
        return Status(Code::internal, path_ + ": append: unknown exception");
    }
}

Result<std::vector<OutboxMessage>> Outbox::peek(size_t max_count, int64_t after_id) {
    try {
        std::vector<OutboxMessage> out;
        if (max_count == 0) return out;
        std::lock_guard<std::mutex> lock(mu_);
        if (db_ == nullptr) return Status(Code::failed_precondition, path_ + ": peek: store is closed");
        StmtScope scope(peek_);
        sqlite3_bind_int64(peek_, 1, after_id);
        constexpr size_t kMax = static_cast<size_t>(std::numeric_limits<int64_t>::max());
        sqlite3_bind_int64(peek_, 2, static_cast<int64_t>(max_count > kMax ? kMax : max_count));
        int rc;
        while ((rc = sqlite3_step(peek_)) == SQLITE_ROW) {
            OutboxMessage m;
            m.id = sqlite3_column_int64(peek_, 0);
            auto text = [&](int col) {
                const char* p = reinterpret_cast<const char*>(sqlite3_column_text(peek_, col));
                return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(peek_, col))) : std::string();
            };
            m.kind = text(1);
            m.topic = text(2);
            const void* blob = sqlite3_column_blob(peek_, 3);
            int n = sqlite3_column_bytes(peek_, 3);
            if (blob != nullptr && n > 0) m.payload.assign(static_cast<const char*>(blob), static_cast<size_t>(n));
            m.qos = sqlite3_column_int(peek_, 4);
            m.created_ms = sqlite3_column_int64(peek_, 5);
            out.push_back(std::move(m));
        }
        if (rc != SQLITE_DONE) return error("peek", rc);
        return out;
    } catch (const std::bad_alloc&) {
        return Status(Code::out_of_memory, path_ + ": peek: out of memory");
    } catch (const std::exception& e) {
        return Status(Code::internal, path_ + ": peek: " + e.what());
    } catch (...) {
        return Status(Code::internal, path_ + ": peek: unknown exception");
    }
}

Status Outbox::remove(int64_t id) {
    try {
        std::lock_guard<std::mutex> lock(mu_);
        if (db_ == nullptr) return Status(Code::failed_precondition, path_ + ": remove: store is closed");
        // Not fsynced: see the header. WAL frames are checksummed in a chain, so a later FULL
        // commit makes this one durable too, and a power cut before it only undoes the remove.
        if (Status s = sqlite_store::set_synchronous(path_, db_, false, "remove: set synchronous=NORMAL"); !s.ok())
            return s;
        int64_t removed = 0, freed = 0;
        int rc;
        {
            StmtScope scope(remove_);
            sqlite3_bind_int64(remove_, 1, id);
            while ((rc = sqlite3_step(remove_)) == SQLITE_ROW) {
                ++removed;
                freed += sqlite3_column_int64(remove_, 0);
            }
        }
        Status result;
        if (rc == SQLITE_DONE) {
            count_ -= removed;
            bytes_ -= freed;
            over_cap_ = over_cap_ && limits_.max_bytes > 0 && bytes_ > limits_.max_bytes;
        } else {
            result = error("remove", rc);
            if (Status t = load_totals(); !t.ok()) spdlog::warn("{}", t.message());
        }
        // Every other commit must stay durable on return.
        Status r = sqlite_store::set_synchronous(path_, db_, true, "remove: restore synchronous=FULL");
        if (!r.ok() && result.ok()) result = std::move(r);
        return result;
    } catch (const std::bad_alloc&) {
        return Status(Code::out_of_memory, path_ + ": remove: out of memory");
    } catch (const std::exception& e) {
        return Status(Code::internal, path_ + ": remove: " + e.what());
    } catch (...) {
        return Status(Code::internal, path_ + ": remove: unknown exception");
    }
}

size_t Outbox::count() {
    std::lock_guard<std::mutex> lock(mu_);
    return count_ > 0 ? static_cast<size_t>(count_) : 0;
}

uint64_t Outbox::bytes() {
    std::lock_guard<std::mutex> lock(mu_);
    return bytes_ > 0 ? static_cast<uint64_t>(bytes_) : 0;
}

uint64_t Outbox::dropped_total() {
    std::lock_guard<std::mutex> lock(mu_);
    return dropped_total_ > 0 ? static_cast<uint64_t>(dropped_total_) : 0;
}

uint64_t Outbox::take_dropped_since_report() {
    try {
        std::lock_guard<std::mutex> lock(mu_);
        if (dropped_unreported_ <= 0 || db_ == nullptr) return 0;
        StmtScope scope(reset_unreported_);
        int rc = run(reset_unreported_);
        if (rc != SQLITE_DONE) {
            spdlog::warn("{}", error("reset the dropped counter", rc).message());
            return 0;  // kept, so it is reported by the next call instead of being lost
        }
        uint64_t n = static_cast<uint64_t>(dropped_unreported_);
        dropped_unreported_ = 0;
        return n;
    } catch (...) {
        return 0;
    }
}

Result<int64_t> Outbox::next_sequence(const std::string& name) {
    try {
        if (name.empty()) return Status(Code::invalid_argument, path_ + ": next_sequence: empty counter name");
        std::lock_guard<std::mutex> lock(mu_);
        if (db_ == nullptr) return Status(Code::failed_precondition, path_ + ": next_sequence: store is closed");
        StmtScope scope(next_seq_);
        sqlite3_bind_text64(next_seq_, 1, name.data(), name.size(), SQLITE_STATIC, SQLITE_UTF8);
        int rc = sqlite3_step(next_seq_);
        if (rc != SQLITE_ROW) return error("next_sequence", rc);
        int64_t v = sqlite3_column_int64(next_seq_, 0);
        // The statement commits (and fsyncs) only when it runs to its end; the value is not
        // handed out before that.
        rc = run(next_seq_);
        if (rc != SQLITE_DONE) return error("next_sequence", rc);
        return v;
    } catch (const std::bad_alloc&) {
        return Status(Code::out_of_memory, path_ + ": next_sequence: out of memory");
    } catch (const std::exception& e) {
        return Status(Code::internal, path_ + ": next_sequence: " + e.what());
    } catch (...) {
        return Status(Code::internal, path_ + ": next_sequence: unknown exception");
    }
}

void Outbox::set_limits(OutboxLimits limits) {
    try {
        std::lock_guard<std::mutex> lock(mu_);
        limits_ = limits;
        if (db_ == nullptr) return;
        if (Status s = apply_limits_locked("set_limits"); !s.ok()) spdlog::error("{}", s.message());
    } catch (...) {
    }
}

bool Outbox::recovered_from_corruption() const { return recovered_; }

int Outbox::synchronous_mode() {
    std::lock_guard<std::mutex> lock(mu_);
    return db_ == nullptr ? -1 : sqlite_store::synchronous(db_);
}

bool Outbox::over_cap() {
    std::lock_guard<std::mutex> lock(mu_);
    return over_cap_;
}

}  // namespace cpn
