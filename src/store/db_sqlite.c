/* store/db_sqlite.c: the SQLite backend of store/db.h (through db_int.h's table).
 * Opens one connection per worker with WAL and the tuning pragmas, runs pending
 * migrations under BEGIN IMMEDIATE, and keeps every prepared statement in a small
 * cache keyed by the address of its SQL literal. Maps SQLite codes to -errno. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "core/log.h"
#include "store/db.h"
#include "store/db_int.h"

#define DB_BUSY_TIMEOUT_MS 5000 /* ms: long enough to ride out another instance's commit */
#define DB_MMAP_SIZE       0    /* bytes: no mmap; RSS stays flat as the file grows */
#define DB_WAL_RETRY_MS    5    /* ms between tries to switch a new file to WAL */
#define DB_CACHE_MIN       32   /* slots: services use fewer than 32 statements */

typedef struct sq_db sq_db_t;
typedef struct sq_stmt sq_stmt_t;

struct sq_stmt {
    cm_stmt_t base;   /* first: the backend table */
    sqlite3_stmt *st; /* prepared once, finalized by sq_close() */
    const char *sql;  /* the key: the caller's literal, compared by address */
    sq_db_t *db;      /* owner, for error messages */
};

/* The connection's transaction as the group calls see it; one explicit state, so a
 * group SQLite rolled back by itself can never be mistaken for "nothing to commit". */
typedef enum {
    TX_NONE,  /* autocommit; a begin goes to READ or WRITE */
    TX_READ,  /* a read snapshot (BEGIN): sq_group_commit() ends it, back to NONE */
    TX_WRITE, /* BEGIN IMMEDIATE, units as savepoints: group_commit COMMITs (or ROLLBACKs) */
    TX_LOST,  /* the write group ended without COMMIT (SQLite's own rollback, or ours when
               * a unit could not be undone): nothing runs until group_commit says -EIO */
} tx_state_t;

struct sq_db {
    cm_db_t base; /* first: the backend table */
    sqlite3 *conn;
    char *path;             /* for error messages */
    struct sq_stmt **slots; /* open-addressing hash on the sql pointer; NULL = empty */
    size_t cap;             /* power of two */
    size_t count;
    sqlite3_stmt *begin; /* BEGIN IMMEDIATE, COMMIT, ROLLBACK: prepared once, hot path */
    sqlite3_stmt *commit;
    sqlite3_stmt *rollback;
    tx_state_t tx;
};

static void sq_close(sq_db_t *db);
static int sq_commit(sq_db_t *db);
static void sq_rollback(sq_db_t *db);
static sq_stmt_t *sq_stmt(sq_db_t *db, const char *sql);
static int sq_stmt_step(sq_stmt_t *st);
static void sq_stmt_reset(sq_stmt_t *st);
static int sq_unit_undo(sq_db_t *db);
static int sq_stmt_bind_null(sq_stmt_t *st, int idx);

/* ------------------------------------------------------------------------ */
/* Low level: error reporting and code mapping                              */
/* ------------------------------------------------------------------------ */

/* Constraint failures and lock conflicts are outcomes the caller handles (409, 503),
 * so only the rest is logged: there the SQLite message is the only clue. */
static int map_rc(sqlite3 *conn, int rc, const char *what)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
        return 0;
    case SQLITE_CONSTRAINT:
        return -EEXIST;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_FULL:
        cm_log_msg(CM_LOG_ERROR, "db: %s failed: %s; free disk space", what, sqlite3_errmsg(conn));
        return -ENOSPC;
    case SQLITE_READONLY:
        cm_log_msg(CM_LOG_ERROR, "db: %s failed: %s; make the file writable", what,
                   sqlite3_errmsg(conn));
        return -EROFS;
    default:
        cm_log_msg(CM_LOG_ERROR, "db: %s failed: %s (%s)", what, sqlite3_errmsg(conn),
                   sqlite3_errstr(rc));
        return -EIO;
    }
}

/* Runs a statement with no result rows, for pragmas and transaction control. */
static int exec_prepared(sqlite3 *conn, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    int err = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : map_rc(conn, rc, what);
    sqlite3_reset(st);
    return err;
}

static int exec_sql(sqlite3 *conn, const char *sql)
{
    int rc = sqlite3_exec(conn, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : map_rc(conn, rc, sql);
}

/* Reads a single-integer pragma such as user_version. */
static int pragma_int(sqlite3 *conn, const char *sql, int *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(conn, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return map_rc(conn, rc, sql);
    rc = sqlite3_step(st);
    int err = 0;
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int(st, 0);
    else
        err = rc == SQLITE_DONE ? -EIO : map_rc(conn, rc, sql);
    sqlite3_finalize(st);
    return err;
}

/* ------------------------------------------------------------------------ */
/* Open: pragmas and migrations                                             */
/* ------------------------------------------------------------------------ */

static int set_journal_wal(sq_db_t *db)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db->conn, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return map_rc(db->conn, rc, "PRAGMA journal_mode");
    /* Switching a new file to WAL needs an EXCLUSIVE lock while we already hold
     * SHARED; SQLite then skips the busy handler (it could deadlock) and returns
     * SQLITE_BUSY at once when another process is opening the same new file. So
     * retry here, within the same budget the busy handler would have had. */
    int waited = 0; /* ms */
    while ((rc = sqlite3_step(st)) == SQLITE_BUSY && waited < DB_BUSY_TIMEOUT_MS) {
        sqlite3_reset(st);
        sqlite3_sleep(DB_WAL_RETRY_MS);
        waited += DB_WAL_RETRY_MS;
    }
    int err = 0;
    if (rc == SQLITE_ROW) {
        /* The pragma answers with the mode in force; an in-memory database stays
         * "memory", anything else means WAL is unavailable (e.g. no shared memory). */
        const char *mode = (const char *)sqlite3_column_text(st, 0);
        if (!mode || (strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0)) {
            cm_log_msg(CM_LOG_ERROR,
                       "db: %s: journal_mode is \"%s\", not wal; put the file on a local disk",
                       db->path, mode ? mode : "");
            err = -EIO;
        }
    } else {
        err = map_rc(db->conn, rc, "PRAGMA journal_mode");
    }
    sqlite3_finalize(st);
    return err;
}

static int set_pragmas(sq_db_t *db, cm_db_sync_t sync)
{
    int err = set_journal_wal(db);
    if (err < 0)
        return err;
    char sql[256];
    snprintf(sql, sizeof sql,
             "PRAGMA synchronous=%s; PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY;"
             " PRAGMA mmap_size=%d;",
             sync == CM_DB_SYNC_FULL ? "FULL" : "NORMAL", DB_MMAP_SIZE);
    return exec_sql(db->conn, sql);
}

/* Applies migrations [version, n) in one transaction. The version is re-read
 * after BEGIN IMMEDIATE: another process may have migrated while we waited. */
static int migrate(sq_db_t *db, const cm_migration_t *migrations, int n)
{
    int version = 0;
    int err = pragma_int(db->conn, "PRAGMA user_version", &version);
    if (err < 0)
        return err;
    if (version == n)
        return 0;
    if (version < n) {
        err = exec_sql(db->conn, "BEGIN IMMEDIATE");
        if (err < 0)
            return err;
        err = pragma_int(db->conn, "PRAGMA user_version", &version);
        if (err < 0)
            goto rollback;
    }
    if (version > n) {
        /* An older binary must not write into a schema it does not know. */
        cm_log_msg(CM_LOG_ERROR,
                   "db: %s: schema version %d is newer than this binary's %d; upgrade cmesh",
                   db->path, version, n);
        err = -EINVAL;
        goto rollback;
    }
    for (int i = version; i < n; i++) {
        char *msg = NULL;
        int rc = sqlite3_exec(db->conn, migrations[i].sql, NULL, NULL, &msg);
        if (rc != SQLITE_OK) {
            cm_log_msg(CM_LOG_ERROR,
                       "db: %s: migration %d failed: %s; nothing of versions %d-%d applied",
                       db->path, i + 1, msg ? msg : sqlite3_errstr(rc), version + 1, n);
            sqlite3_free(msg);
            err = -EINVAL;
            goto rollback;
        }
    }
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", n);
    err = exec_sql(db->conn, sql);
    if (err < 0)
        goto rollback;
    err = exec_sql(db->conn, "COMMIT");
    if (err < 0)
        goto rollback;
    return 0;

rollback:
    if (!sqlite3_get_autocommit(db->conn))
        sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
    return err;
}

static int prepare_control(sq_db_t *db)
{
    static const char *const sql[3] = {"BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"};
    sqlite3_stmt **dst[3] = {&db->begin, &db->commit, &db->rollback};
    for (int i = 0; i < 3; i++) {
        int rc = sqlite3_prepare_v3(db->conn, sql[i], -1, SQLITE_PREPARE_PERSISTENT, dst[i], NULL);
        if (rc != SQLITE_OK)
            return map_rc(db->conn, rc, sql[i]);
    }
    return 0;
}

int cm_db_sqlite_global_init(void)
{
    if (sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) != SQLITE_OK)
        return -EIO;
    return sqlite3_initialize() == SQLITE_OK ? 0 : -EIO;
}

static int sq_open(const char *path, cm_db_sync_t sync, const cm_migration_t *migrations, int n,
                   sq_db_t **out)
{
    *out = NULL;
    if (!path || n < 0 || (n > 0 && !migrations))
        return -EINVAL;
    sq_db_t *db = calloc(1, sizeof *db);
    if (!db)
        return -ENOMEM;
    db->base.ops = &cm_db_sqlite_ops;
    db->path = strdup(path);
    if (!db->path) {
        free(db);
        return -ENOMEM;
    }

    /* NOMUTEX: a connection belongs to one worker thread, so SQLite's own
     * per-connection mutex would only cost time. */
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &db->conn, flags, NULL);
    int err = 0;
    if (rc != SQLITE_OK) {
        cm_log_msg(CM_LOG_ERROR,
                   "db: cannot open %s: %s; check the directory exists and is writable", path,
                   db->conn ? sqlite3_errmsg(db->conn) : sqlite3_errstr(rc));
        err = -EIO;
        goto fail;
    }
    sqlite3_extended_result_codes(db->conn, 1);
    /* First, so that the pragmas and migrations below wait for a concurrent opener. */
    sqlite3_busy_timeout(db->conn, DB_BUSY_TIMEOUT_MS);

    if ((err = set_pragmas(db, sync)) < 0)
        goto fail;
    if ((err = migrate(db, migrations, n)) < 0)
        goto fail;
    if ((err = prepare_control(db)) < 0)
        goto fail;
    *out = db;
    return 0;

fail:
    sq_close(db);
    return err;
}

static int sq_open_reader(const char *path, sq_db_t **out)
{
    *out = NULL;
    sq_db_t *db = calloc(1, sizeof *db);
    if (!db || !(db->path = strdup(path))) {
        free(db);
        return -ENOMEM;
    }
    db->base.ops = &cm_db_sqlite_ops;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX; /* WAL readers write the -shm */
    int rc = sqlite3_open_v2(path, &db->conn, flags, NULL);
    int err = 0;
    if (rc != SQLITE_OK) {
        cm_log_msg(CM_LOG_ERROR, "db: cannot open %s for reads: %s", path,
                   db->conn ? sqlite3_errmsg(db->conn) : sqlite3_errstr(rc));
        err = -EIO;
        goto fail;
    }
    sqlite3_extended_result_codes(db->conn, 1);
    sqlite3_busy_timeout(db->conn, DB_BUSY_TIMEOUT_MS);
    if ((err = exec_sql(db->conn, "PRAGMA query_only=ON; PRAGMA temp_store=MEMORY;"
                                  " PRAGMA mmap_size=0;")) < 0 ||
        (err = prepare_control(db)) < 0)
        goto fail;
    *out = db;
    return 0;
fail:
    sq_close(db);
    return err < 0 ? err : -EIO;
}

/* True when the file at db->path is no longer the one this connection writes to. */
static int file_moved(sq_db_t *db)
{
    int moved = 0;
    if (sqlite3_file_control(db->conn, "main", SQLITE_FCNTL_HAS_MOVED, &moved) != SQLITE_OK)
        return 0; /* in-memory databases have no file to lose */
    return moved;
}

static const char *sq_write_problem(sq_db_t *db)
{
    if (sqlite3_db_readonly(db->conn, "main") == 1)
        return "the database file is read-only";
    if (file_moved(db))
        return "the database file was moved or deleted";
    return NULL;
}

static void sq_close(sq_db_t *db)
{
    if (!db)
        return;
    for (size_t i = 0; i < db->cap; i++) {
        if (db->slots[i]) {
            sqlite3_finalize(db->slots[i]->st);
            free(db->slots[i]);
        }
    }
    free(db->slots);
    sqlite3_finalize(db->begin);
    sqlite3_finalize(db->commit);
    sqlite3_finalize(db->rollback);
    /* close_v2: never leaves the handle open even if a statement escaped us. */
    sqlite3_close_v2(db->conn);
    free(db->path);
    free(db);
}

static void sq_set_busy_timeout(sq_db_t *db, int ms)
{
    sqlite3_busy_timeout(db->conn, ms < 0 ? 0 : ms);
}

/* ------------------------------------------------------------------------ */
/* Statement cache                                                          */
/* ------------------------------------------------------------------------ */

static size_t slot_of(const char *sql, size_t cap)
{
    /* Fibonacci hashing of the address: literals sit close together, so the low
     * bits alone would cluster. */
    uint64_t h = (uint64_t)(uintptr_t)sql * UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(h >> 32) & (cap - 1);
}

static int cache_grow(sq_db_t *db)
{
    size_t cap = db->cap ? db->cap * 2 : DB_CACHE_MIN;
    struct sq_stmt **slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -ENOMEM;
    for (size_t i = 0; i < db->cap; i++) {
        struct sq_stmt *e = db->slots[i];
        if (!e)
            continue;
        size_t j = slot_of(e->sql, cap);
        while (slots[j])
            j = (j + 1) & (cap - 1);
        slots[j] = e;
    }
    free(db->slots);
    db->slots = slots;
    db->cap = cap;
    return 0;
}

static sq_stmt_t *sq_stmt(sq_db_t *db, const char *sql)
{
    if (db->cap) {
        for (size_t i = slot_of(sql, db->cap); db->slots[i]; i = (i + 1) & (db->cap - 1)) {
            if (db->slots[i]->sql == sql) {
                struct sq_stmt *e = db->slots[i];
                sqlite3_reset(e->st);
                sqlite3_clear_bindings(e->st);
                return e;
            }
        }
    }
    /* Keep the load at most 1/2 so probes stay short. */
    if ((db->count + 1) * 2 > db->cap && cache_grow(db) < 0) {
        cm_log_msg(CM_LOG_ERROR, "db: out of memory caching a statement");
        return NULL;
    }
    struct sq_stmt *e = calloc(1, sizeof *e);
    if (!e) {
        cm_log_msg(CM_LOG_ERROR, "db: out of memory caching a statement");
        return NULL;
    }
    int rc = sqlite3_prepare_v3(db->conn, sql, -1, SQLITE_PREPARE_PERSISTENT, &e->st, NULL);
    if (rc != SQLITE_OK || !e->st) {
        cm_log_msg(CM_LOG_ERROR, "db: %s: cannot prepare \"%s\": %s", db->path, sql,
                   sqlite3_errmsg(db->conn));
        sqlite3_finalize(e->st);
        free(e);
        return NULL;
    }
    e->base.ops = &cm_db_sqlite_ops;
    e->sql = sql;
    e->db = db;
    size_t i = slot_of(sql, db->cap);
    while (db->slots[i])
        i = (i + 1) & (db->cap - 1);
    db->slots[i] = e;
    db->count++;
    return e;
}

/* ------------------------------------------------------------------------ */
/* Statements: bind, step, columns                                          */
/* ------------------------------------------------------------------------ */

static int sq_stmt_bind_int(sq_stmt_t *st, int idx, int64_t v)
{
    return sqlite3_bind_int64(st->st, idx, v) == SQLITE_OK ? 0 : -EINVAL;
}

static int sq_stmt_bind_text(sq_stmt_t *st, int idx, const char *s, size_t len)
{
    if (!s)
        return sq_stmt_bind_null(st, idx);
    int rc = sqlite3_bind_text64(st->st, idx, s, len, SQLITE_TRANSIENT, SQLITE_UTF8);
    return rc == SQLITE_OK ? 0 : -EINVAL;
}

static int sq_stmt_bind_null(sq_stmt_t *st, int idx)
{
    return sqlite3_bind_null(st->st, idx) == SQLITE_OK ? 0 : -EINVAL;
}

/* After every step: SQLite may have rolled the whole transaction back by itself
 * (SQLITE_FULL, an I/O error, even when a cache spill failed mid-statement), and
 * sqlite3_get_autocommit() is the only way to learn it. */
static void note_rollback(sq_db_t *db)
{
    if ((db->tx != TX_READ && db->tx != TX_WRITE) || !sqlite3_get_autocommit(db->conn))
        return;
    if (db->tx == TX_WRITE)
        cm_log_msg(CM_LOG_ERROR, "db: %s: SQLite rolled back the open write group by itself",
                   db->path);
    db->tx = db->tx == TX_WRITE ? TX_LOST : TX_NONE;
}

static int sq_stmt_step(sq_stmt_t *st)
{
    /* a lost group's statements would run in autocommit, each its own transaction */
    if (st->db->tx == TX_LOST)
        return -EIO;
    int rc = sqlite3_step(st->st);
    if (rc == SQLITE_ROW)
        return CM_DB_ROW;
    if (rc == SQLITE_DONE)
        return CM_DB_DONE;
    note_rollback(st->db);
    sqlite3 *conn = st->db->conn;
    char what[160];
    snprintf(what, sizeof what, "%s: \"%.100s\"", st->db->path, st->sql);
    int err = map_rc(conn, rc, what);
    /* A failed statement keeps its read snapshot until reset; release it now so
     * a caller that only looks at the code does not pin the WAL. */
    sqlite3_reset(st->st);
    return err;
}

static int64_t sq_stmt_int(sq_stmt_t *st, int col)
{
    return sqlite3_column_int64(st->st, col);
}

static const char *sq_stmt_text(sq_stmt_t *st, int col, size_t *len)
{
    /* text before bytes: column_bytes then reports the UTF-8 length. */
    const char *s = (const char *)sqlite3_column_text(st->st, col);
    size_t n = s ? (size_t)sqlite3_column_bytes(st->st, col) : 0;
    if (len)
        *len = n;
    return s;
}

static int sq_stmt_is_null(sq_stmt_t *st, int col)
{
    return sqlite3_column_type(st->st, col) == SQLITE_NULL;
}

static void sq_stmt_reset(sq_stmt_t *st)
{
    sqlite3_reset(st->st);
}

/* ------------------------------------------------------------------------ */
/* Transactions                                                             */
/* ------------------------------------------------------------------------ */

static void reset_all(sq_db_t *db)
{
    for (sqlite3_stmt *s = sqlite3_next_stmt(db->conn, NULL); s; s = sqlite3_next_stmt(db->conn, s))
        if (sqlite3_stmt_busy(s))
            sqlite3_reset(s);
}

static int sq_begin(sq_db_t *db)
{
    if (db->tx == TX_LOST)
        return -EIO;
    if (sqlite3_db_readonly(db->conn, "main") == 1)
        return -EROFS; /* SQLite would begin, then fail every write */
    int rc = exec_prepared(db->conn, db->begin, "BEGIN IMMEDIATE");
    if (rc == 0)
        db->tx = TX_WRITE;
    return rc;
}

static int sq_commit(sq_db_t *db)
{
    reset_all(db);
    if (db->tx == TX_LOST || (db->tx != TX_NONE && sqlite3_get_autocommit(db->conn))) {
        db->tx = TX_NONE;
        return -EIO;
    }
    if (db->tx == TX_WRITE && file_moved(db)) {
        cm_log_msg(CM_LOG_ERROR, "db: %s was moved or deleted; refusing to commit into it",
                   db->path);
        return -ESTALE; /* still open: the caller rolls back */
    }
    int rc = exec_prepared(db->conn, db->commit, "COMMIT");
    if (sqlite3_get_autocommit(db->conn))
        db->tx = TX_NONE;
    return rc;
}

static void sq_rollback(sq_db_t *db)
{
    reset_all(db);
    /* SQLite may already have rolled back by itself (after SQLITE_FULL, IOERR...). */
    if (!sqlite3_get_autocommit(db->conn))
        exec_prepared(db->conn, db->rollback, "ROLLBACK");
    db->tx = TX_NONE;
}

static const char sql_begin_read[] = "BEGIN";
static const char sql_savepoint[] = "SAVEPOINT unit";
static const char sql_release[] = "RELEASE unit";
static const char sql_rollback_to[] = "ROLLBACK TO unit";

static int exec_cached(sq_db_t *db, const char *sql)
{
    sq_stmt_t *st = sq_stmt(db, sql);
    if (!st)
        return -EIO;
    int rc = sq_stmt_step(st);
    sq_stmt_reset(st);
    return rc < 0 ? rc : 0;
}

/* The group cannot be trusted any more: end it here, and fail it at the commit. */
static void lose_group(sq_db_t *db)
{
    sq_rollback(db);
    db->tx = TX_LOST;
}

static int sq_in_group(sq_db_t *db)
{
    return db->tx == TX_READ || db->tx == TX_WRITE;
}

static int sq_read_begin(sq_db_t *db)
{
    if (db->tx != TX_NONE)
        return db->tx == TX_LOST ? -EIO : 0;
    int rc = exec_cached(db, sql_begin_read);
    if (rc == 0)
        db->tx = TX_READ;
    return rc;
}

static int sq_unit_begin(sq_db_t *db)
{
    note_rollback(db);
    if (db->tx == TX_READ) {
        /* a read snapshot cannot always become a writer (another process may have
         * committed since): end it, its answers are already sent */
        int rc = sq_commit(db);
        if (rc < 0) {
            sq_rollback(db);
            return rc;
        }
    }
    if (db->tx == TX_NONE) {
        int rc = sq_begin(db);
        if (rc < 0)
            return rc;
    }
    if (db->tx != TX_WRITE)
        return -EIO; /* lost: stays lost until the batch hears it */
    return exec_cached(db, sql_savepoint);
}

static int sq_unit_end(sq_db_t *db)
{
    reset_all(db);
    int rc = exec_cached(db, sql_release);
    if (rc < 0)
        sq_unit_undo(db);
    return rc;
}

static int sq_unit_undo(sq_db_t *db)
{
    reset_all(db);
    if (db->tx != TX_WRITE)
        return -EIO;
    /* ROLLBACK TO keeps the savepoint open; RELEASE then drops it */
    if (exec_cached(db, sql_rollback_to) == 0 && exec_cached(db, sql_release) == 0)
        return 0;
    if (db->tx == TX_WRITE)
        lose_group(db); /* the unit's writes might stay in the group: none of it may commit */
    return -EIO;
}

static int sq_group_commit(sq_db_t *db)
{
    if (db->tx == TX_NONE)
        return 0;
    int rc = sq_commit(db);
    if (rc < 0)
        sq_rollback(db);
    return rc;
}

static int sq_changes(sq_db_t *db)
{
    return sqlite3_changes(db->conn);
}

/* ------------------------------------------------------------------------ */
/* The backend table: db.c hands every call here through cm_db_sqlite_ops   */
/* ------------------------------------------------------------------------ */

#define DB(h) ((sq_db_t *)(h))
#define ST(h) ((sq_stmt_t *)(h))

static int op_open(const char *path, cm_db_sync_t sync, const cm_migration_t *m, int n,
                   cm_db_t **out)
{
    sq_db_t *db = NULL;
    int rc = sq_open(path, sync, m, n, &db);
    *out = db ? &db->base : NULL;
    return rc;
}
static int op_open_reader(const char *path, cm_db_t **out)
{
    sq_db_t *db = NULL;
    int rc = sq_open_reader(path, &db);
    *out = db ? &db->base : NULL;
    return rc;
}
static void op_close(cm_db_t *h)
{
    sq_close(DB(h));
}
static const char *op_write_problem(cm_db_t *h)
{
    return sq_write_problem(DB(h));
}
static void op_set_busy_timeout(cm_db_t *h, int ms)
{
    sq_set_busy_timeout(DB(h), ms);
}
static cm_stmt_t *op_stmt(cm_db_t *h, const char *sql)
{
    sq_stmt_t *st = sq_stmt(DB(h), sql);
    return st ? &st->base : NULL;
}
static int op_bind_int(cm_stmt_t *h, int i, int64_t v)
{
    return sq_stmt_bind_int(ST(h), i, v);
}
static int op_bind_text(cm_stmt_t *h, int i, const char *s, size_t n)
{
    return sq_stmt_bind_text(ST(h), i, s, n);
}
static int op_bind_null(cm_stmt_t *h, int i)
{
    return sq_stmt_bind_null(ST(h), i);
}
static int op_step(cm_stmt_t *h)
{
    return sq_stmt_step(ST(h));
}
static int64_t op_col_int(cm_stmt_t *h, int c)
{
    return sq_stmt_int(ST(h), c);
}
static const char *op_col_text(cm_stmt_t *h, int c, size_t *n)
{
    return sq_stmt_text(ST(h), c, n);
}
static int op_col_is_null(cm_stmt_t *h, int c)
{
    return sq_stmt_is_null(ST(h), c);
}
static void op_reset(cm_stmt_t *h)
{
    sq_stmt_reset(ST(h));
}
static int op_begin(cm_db_t *h)
{
    return sq_begin(DB(h));
}
static int op_commit(cm_db_t *h)
{
    return sq_commit(DB(h));
}
static void op_rollback(cm_db_t *h)
{
    sq_rollback(DB(h));
}
static int op_unit_begin(cm_db_t *h)
{
    return sq_unit_begin(DB(h));
}
static int op_read_begin(cm_db_t *h)
{
    return sq_read_begin(DB(h));
}
static int op_unit_end(cm_db_t *h)
{
    return sq_unit_end(DB(h));
}
static int op_unit_undo(cm_db_t *h)
{
    return sq_unit_undo(DB(h));
}
static int op_group_commit(cm_db_t *h)
{
    return sq_group_commit(DB(h));
}
static int op_in_group(cm_db_t *h)
{
    return sq_in_group(DB(h));
}
static int op_changes(cm_db_t *h)
{
    return sq_changes(DB(h));
}
/* AUTOINCREMENT's counter: at least every id the table ever held; an INSERT naming a
 * larger id moves it there, inside the transaction (store/db.h's cm_db_next_id). */
static const char sql_next_id[] = "SELECT seq FROM sqlite_sequence WHERE name = ?";
static int op_next_id(cm_db_t *h, const char *table, int64_t *id)
{
    cm_stmt_t *st = op_stmt(h, sql_next_id);
    if (!st)
        return -EIO;
    op_bind_text(st, 1, table, strlen(table));
    int rc = op_step(st);
    *id = rc == CM_DB_ROW ? op_col_int(st, 0) + 1 : 1; /* no row: nothing was ever stored */
    op_reset(st);
    return rc < 0 ? rc : 0;
}

const cm_db_ops_t cm_db_sqlite_ops = {
    .open = op_open,
    .open_reader = op_open_reader,
    .close = op_close,
    .write_problem = op_write_problem,
    .set_busy_timeout = op_set_busy_timeout,
    .stmt = op_stmt,
    .bind_int = op_bind_int,
    .bind_text = op_bind_text,
    .bind_null = op_bind_null,
    .step = op_step,
    .col_int = op_col_int,
    .col_text = op_col_text,
    .col_is_null = op_col_is_null,
    .reset = op_reset,
    .begin = op_begin,
    .commit = op_commit,
    .rollback = op_rollback,
    .unit_begin = op_unit_begin,
    .read_begin = op_read_begin,
    .unit_end = op_unit_end,
    .unit_undo = op_unit_undo,
    .group_commit = op_group_commit,
    .in_group = op_in_group,
    .changes = op_changes,
    .next_id = op_next_id,
};
