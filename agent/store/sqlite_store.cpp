// sqlite_store.cpp: see sqlite_store.hpp.
#include "store/sqlite_store.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <spdlog/spdlog.h>

namespace cpn::sqlite_store {

namespace {

bool is_corruption(int rc) {
    return (rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB;
}

enum class Connect { ok, corrupt, failed };

/* Opens the connection and reads the whole file once (quick_check). Corruption is told apart
 * from every other failure (locked, unreadable, I/O error), because only corruption may lead to
 * moving the file aside: a file that is merely busy or unreadable must be left as it is. */
Connect connect(const std::string& path, const Spec& spec, sqlite3** db, Status& err) {
    // NOMUTEX: every use is under the owner's mutex, so SQLite's own would be redundant.
    int rc = sqlite3_open_v2(path.c_str(), db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             nullptr);
    if (rc != SQLITE_OK) {
        err = error(path, *db, "open", rc);
        return Connect::failed;
    }
    sqlite3_extended_result_codes(*db, 1);
    sqlite3_busy_timeout(*db, spec.busy_timeout_ms);
    if (sqlite3_db_readonly(*db, "main") == 1) {
        err = Status(Code::permission_denied, path + ": open: the file is not writable");
        return Connect::failed;
    }
    // Before the first read: one process owns the file (counters kept in memory are only right
    // for a single writer), and the WAL index lives in heap memory, not in a -shm file.
    rc = sqlite3_exec(*db, "PRAGMA locking_mode=EXCLUSIVE", nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) {
        err = error(path, *db, "open: locking_mode", rc);
        return Connect::failed;
    }
    sqlite3_stmt* check = nullptr;
    rc = sqlite3_prepare_v2(*db, "PRAGMA quick_check", -1, &check, nullptr);
    if (rc == SQLITE_OK) {
        std::string first;
        int rows = 0;
        while ((rc = sqlite3_step(check)) == SQLITE_ROW) {
            if (rows++ == 0) {
                const unsigned char* t = sqlite3_column_text(check, 0);
                first = t ? reinterpret_cast<const char*>(t) : "";
            }
        }
        if (rc == SQLITE_DONE && !(rows == 1 && first == "ok")) {
            sqlite3_finalize(check);
            err = Status(Code::internal, path + ": open: quick_check failed: " + first);
            return Connect::corrupt;
        }
    }
    if (rc != SQLITE_DONE) {
        err = error(path, *db, "open: quick_check", rc);
        sqlite3_finalize(check);
        if (is_corruption(rc)) return Connect::corrupt;
        if ((rc & 0xff) == SQLITE_BUSY)
            err = Status(Code::unavailable,
                         err.message() + " (is another cpn-agent using this " + spec.word + "?)");
        return Connect::failed;
    }
    sqlite3_finalize(check);
    return Connect::ok;
}

/* Switches to WAL and sets the per-connection pragmas; only on a file known to be ours (or
 * empty), since switching the journal mode rewrites the database header. */
Status configure(const std::string& path, sqlite3* db) {
    // WAL: a commit is one sequential append plus one fsync, and a torn write at the tail is
    // simply ignored at recovery. FULL: that fsync happens on every commit (durable on return).
    sqlite3_stmt* jm = nullptr;
    int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &jm, nullptr);
    std::string mode;
    if (rc == SQLITE_OK && (rc = sqlite3_step(jm)) == SQLITE_ROW) {
        const unsigned char* t = sqlite3_column_text(jm, 0);
        mode = t ? reinterpret_cast<const char*>(t) : "";
        rc = SQLITE_OK;
    }
    sqlite3_finalize(jm);
    if (rc != SQLITE_OK) return error(path, db, "open: journal_mode", rc);
    if (mode != "wal")
        return Status(Code::unavailable, path + ": open: cannot switch to WAL mode (journal mode is '" + mode + "')");
    // journal_size_limit: the WAL is truncated back after a checkpoint instead of staying at its
    // high-water mark.
    rc = sqlite3_exec(db,
                      "PRAGMA synchronous=FULL; PRAGMA journal_size_limit=4194304; "
                      "PRAGMA foreign_keys=OFF; PRAGMA temp_store=MEMORY;",
                      nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return error(path, db, "open: pragmas", rc);
    return {};
}

/* Renames the corrupt file (and the journal files that belong to it) to
 * <path>.corrupt-<unix ms>[-wal|-journal], so an operator can still look at it. The -shm file is
 * derived data and only removed. */
Status move_aside(const std::string& path, const Spec& spec, const std::string& why, std::string& aside) {
    int64_t ms = now_ms();
    for (;; ++ms) {
        aside = path + ".corrupt-" + std::to_string(ms);
        if (!exists(aside) && !exists(aside + "-wal") && !exists(aside + "-journal")) break;
    }
    if (::rename(path.c_str(), aside.c_str()) != 0)
        return Status(Code::unavailable, path + ": open: the file is corrupt and cannot be moved aside to " + aside +
                                             ": " + std::strerror(errno));
    for (const char* suffix : {"-wal", "-journal"}) {
        std::string from = path + suffix;
        if (exists(from) && ::rename(from.c_str(), (aside + suffix).c_str()) != 0)
            return Status(Code::unavailable, path + ": open: cannot move " + from + " aside: " + std::strerror(errno));
    }
    ::unlink((path + "-shm").c_str());
    fsync_dir(parent_dir(path));
    spdlog::error("{}; moved aside to {}, starting a new {}", why, aside, spec.noun);
    return {};
}

/* Tells our file from an empty one (to be initialized) and from any other SQLite database at
 * the same path (an error: not ours to rewrite or move aside). Reads only. */
Status check_identity(const std::string& path, const Spec& spec, sqlite3* db, bool& fresh, int& found_version) {
    sqlite3_stmt* s = nullptr;
    int app = 0, version = 0, tables = 0;
    const char* q = "SELECT (SELECT application_id FROM pragma_application_id), "
                    "(SELECT user_version FROM pragma_user_version), "
                    "(SELECT count(*) FROM sqlite_schema)";
    int rc = sqlite3_prepare_v2(db, q, -1, &s, nullptr);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        app = sqlite3_column_int(s, 0);
        version = sqlite3_column_int(s, 1);
        tables = sqlite3_column_int(s, 2);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_OK) return error(path, db, "open: read schema", rc);
    fresh = app == 0 && tables == 0;
    found_version = fresh ? spec.schema_version : version;
    if (fresh) return {};
    if (app != spec.application_id)
        return Status(Code::failed_precondition, path + ": open: not a cpn-agent " + spec.noun +
                                                     " (a different SQLite database); left untouched");
    if (version > spec.schema_version)
        return Status(Code::failed_precondition,
                      path + ": open: " + spec.word + " schema version " + std::to_string(version) +
                          " is newer than this agent understands (" + std::to_string(spec.schema_version) + ")");
    return {};
}

Status create_schema(const std::string& path, const Spec& spec, sqlite3* db) {
    std::string script = std::string("BEGIN IMMEDIATE;") + spec.schema_sql + "PRAGMA application_id=" +
                         std::to_string(spec.application_id) + "; PRAGMA user_version=" +
                         std::to_string(spec.schema_version) + "; COMMIT;";
    int rc = sqlite3_exec(db, script.c_str(), nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) {
        Status st = error(path, db, "open: create schema", rc);
        if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
        return st;
    }
    return {};
}

}  // namespace

int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

Code code_for(int rc, int sys_errno) {
    switch (rc & 0xff) {
        case SQLITE_FULL: return Code::unavailable;
        case SQLITE_BUSY:
        case SQLITE_LOCKED: return Code::unavailable;
        case SQLITE_NOMEM: return Code::out_of_memory;
        case SQLITE_PERM:
        case SQLITE_READONLY:
        case SQLITE_AUTH: return Code::permission_denied;
        case SQLITE_CANTOPEN:
            if (sys_errno == EACCES || sys_errno == EPERM || sys_errno == EROFS) return Code::permission_denied;
            if (sys_errno == ENOENT || sys_errno == ENOTDIR) return Code::not_found;
            return Code::unavailable;
        case SQLITE_IOERR: return Code::unavailable;
        default: return Code::internal;
    }
}

Status error(const std::string& path, sqlite3* db, const char* what, int rc) {
    std::string msg = path + ": " + what + ": ";
    int sys = 0;
    if (db != nullptr) {
        msg += sqlite3_errmsg(db);
        sys = sqlite3_system_errno(db);
    } else {
        msg += sqlite3_errstr(rc);
    }
    const int primary = rc & 0xff;
    if (sys != 0 && (primary == SQLITE_CANTOPEN || primary == SQLITE_IOERR || primary == SQLITE_FULL))
        msg += std::string(" (") + std::strerror(sys) + ")";
    return Status(code_for(rc, sys), msg);
}

StmtScope::~StmtScope() {
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

Status set_synchronous(const std::string& path, sqlite3* db, bool full, const char* what) {
    int rc = sqlite3_exec(db, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", nullptr, nullptr, nullptr);
    return rc == SQLITE_OK ? Status() : error(path, db, what, rc);
}

int synchronous(sqlite3* db) {
    sqlite3_stmt* s = nullptr;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA synchronous", -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

int run(sqlite3_stmt* s) {
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    }
    return rc;
}

std::string parent_dir(const std::string& path) {
    size_t slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

bool fsync_dir(const std::string& dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = ::fsync(fd) == 0;
    ::close(fd);
    return ok;
}

bool exists(const std::string& p) {
    struct stat st;
    return ::lstat(p.c_str(), &st) == 0;
}

Status open(const std::string& path, const Spec& spec, sqlite3** db, Opened& out) {
    if (path.empty()) return Status(Code::invalid_argument, std::string(spec.noun) + ": empty path");
    const std::string dir = parent_dir(path);
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0)
        return Status(errno == EACCES ? Code::permission_denied : Code::not_found,
                      path + ": open: parent directory " + dir + ": " + std::strerror(errno));
    if (!S_ISDIR(st.st_mode)) return Status(Code::not_found, path + ": open: parent " + dir + " is not a directory");
    // SQLite needs to create the -wal file next to the file, even when the file exists; and
    // when it cannot create the file its own error falls back to a misleading ENOENT.
    if (::faccessat(AT_FDCWD, dir.c_str(), W_OK | X_OK, AT_EACCESS) != 0)
        return Status(errno == ENOENT ? Code::not_found : Code::permission_denied,
                      path + ": open: directory " + dir + " is not writable: " + std::strerror(errno));
    const bool existed = exists(path);

    Status err;
    Connect c = connect(path, spec, db, err);
    if (c == Connect::corrupt) {
        sqlite3_close_v2(*db);
        *db = nullptr;
        if (Status s = move_aside(path, spec, err.message(), out.moved_aside_to); !s.ok()) return s;
        out.recovered = true;
        c = connect(path, spec, db, err);
        if (c == Connect::corrupt) return Status(Code::internal, err.message() + " (in a freshly created file)");
    }
    if (c != Connect::ok) return err;

    bool fresh = false;
    if (Status s = check_identity(path, spec, *db, fresh, out.version); !s.ok()) return s;
    if (Status s = configure(path, *db); !s.ok()) return s;
    if (fresh) {
        if (Status s = create_schema(path, spec, *db); !s.ok()) return s;
    }
    if ((!existed || out.recovered) && !fsync_dir(dir))
        return Status(Code::unavailable, path + ": open: fsync of directory " + dir + ": " + std::strerror(errno));
    return {};
}

}  // namespace cpn::sqlite_store
