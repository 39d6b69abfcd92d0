// sqlite_store.hpp: opening a durable single-writer SQLite file, shared by the outbox and the
// task journal: exclusive locking, a full read (quick_check) before use, WAL with
// synchronous=FULL, a corrupt file moved aside (never silently discarded) and a fresh one made,
// another program's database left untouched, and errors that name the file, the operation and
// the OS reason.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace cpn::sqlite_store {

/* Which kind of file: how it is named in messages and how it is told apart from others. */
struct Spec {
    const char* noun;        // "outbox", "task journal": "not a cpn-agent <noun>"
    const char* word;        // "store", "journal": "<word> schema version", "using this <word>"
    int application_id;      // PRAGMA application_id of our files
    int schema_version;      // PRAGMA user_version this code writes and understands
    const char* schema_sql;  // CREATE statements run once in a new file
    int busy_timeout_ms;     // how long open waits for a lock held by another process
};

struct Opened {
    bool recovered = false;        // the file was corrupt and a new one was started
    std::string moved_aside_to;    // where the corrupt file went
    int version = 0;               // its schema version (user_version): spec's for a new file; an
                                   // older one is the owner's to migrate
};

/* Opens (creating when absent) `path`: the parent directory must exist and be writable. On
 * success `*db` is open, in WAL mode with synchronous=FULL, exclusively locked, with the schema
 * in place, and the directory entry is durable. On failure `*db` may be left open for the caller
 * to close. Never throws. */
Status open(const std::string& path, const Spec& spec, sqlite3** db, Opened& out);

/* "<path>: <what>: <sqlite message>[ (<strerror>)]" with the canonical code for `rc`. */
Status error(const std::string& path, sqlite3* db, const char* what, int rc);

/* The canonical code for an SQLite result, so the daemon can tell a full disk from a bug. */
Code code_for(int rc, int sys_errno);

std::string parent_dir(const std::string& path);
/* Makes a rename or a file creation in `dir` durable. */
bool fsync_dir(const std::string& dir);
bool exists(const std::string& path);
int64_t now_ms();

/* Resets a statement (and drops its bindings) when the scope ends, so that a read statement
 * never keeps a read transaction open and the next use starts clean. */
struct StmtScope {
    sqlite3_stmt* s;
    explicit StmtScope(sqlite3_stmt* st) : s(st) {}
    ~StmtScope();
    StmtScope(const StmtScope&) = delete;
    StmtScope& operator=(const StmtScope&) = delete;
};

/* Sets PRAGMA synchronous: FULL when `full` (each commit fsyncs the WAL), else NORMAL (commits
 * stay in the WAL without fsync; checkpoints still sync). Run fresh each time on purpose: SQLite
 * applies this pragma while it *prepares* the statement, and a prepared copy stepped again only
 * expires the other statements, so `PRAGMA synchronous=NORMAL` kept prepared changed nothing
 * the first time it ran. Expires the connection's prepared statements (they re-prepare on their
 * next step), so callers skip it when the mode is already the one they want. */
Status set_synchronous(const std::string& path, sqlite3* db, bool full, const char* what);

/* PRAGMA synchronous in force: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA; -1 when it cannot be read. */
int synchronous(sqlite3* db);

/* Steps a statement that returns no rows (or whose rows are not needed) to its end. */
int run(sqlite3_stmt* s);

}  // namespace cpn::sqlite_store
