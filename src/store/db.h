/* store/db.h: the storage interface every service uses; SQLite is the embedded backend.
 * One cm_db_t is one connection, owned by one worker thread (never shared).
 * SQL is written portably: `?` placeholders, INSERT ... RETURNING, so that a libpq
 * backend can implement the same calls without touching the services. */
#ifndef CMESH_STORE_DB_H
#define CMESH_STORE_DB_H

#include <stddef.h>
#include <stdint.h>

typedef struct cm_db cm_db_t;     /* opaque: one connection + its statement cache */
typedef struct cm_stmt cm_stmt_t; /* opaque: a prepared statement, owned by its cm_db_t */

/* One schema step. Migrations are numbered from 1 in array order; the applied
 * version is kept in the database (PRAGMA user_version on SQLite), and every
 * pending step runs in one transaction at open. */
typedef struct cm_migration {
    const char *sql; /* may hold several statements */
} cm_migration_t;

typedef enum {
    CM_DB_SYNC_NORMAL, /* WAL + synchronous=NORMAL: a commit survives kill -9 of the process */
    CM_DB_SYNC_FULL,   /* synchronous=FULL: a commit also survives power loss */
} cm_db_sync_t;

#define CM_DB_ROW  1 /* cm_stmt_step(): a row is ready */
#define CM_DB_DONE 0 /* cm_stmt_step(): no more rows */

/* Opens (creating if needed) the database at path with WAL, the given sync mode,
 * foreign keys on, a 5 s busy timeout, and applies pending migrations.
 * Caller owns *out; close with cm_db_close(). Returns 0, -EIO when the file cannot
 * be opened, -EINVAL when a migration fails (logged with its number; no step of the
 * batch is kept) or when the file's schema is newer than n (an older binary), or -EBUSY.
 * A migration's SQL must not contain BEGIN/COMMIT: the batch is one transaction. */
int cm_db_open(const char *path, cm_db_sync_t sync, const cm_migration_t *migrations, int n,
               cm_db_t **out);
void cm_db_close(cm_db_t *db); /* finalizes every statement; NULL is a no-op */

/* Replaces the 5 s busy timeout (ms; 0 fails at once with -EBUSY). Tests use a small
 * value so that a lock conflict is seen without waiting. */
void cm_db_set_busy_timeout(cm_db_t *db, int ms);

/* Returns the cached statement for sql (prepared on first use; sql must be a string
 * that lives as long as db, normally a literal), reset and with bindings cleared.
 * The statement is borrowed: never finalize it. Returns NULL on a SQL error (logged). */
cm_stmt_t *cm_db_stmt(cm_db_t *db, const char *sql);

/* Bind parameter idx (1-based). Text is copied. Return 0 or -EINVAL. */
int cm_stmt_bind_int(cm_stmt_t *st, int idx, int64_t v);
int cm_stmt_bind_text(cm_stmt_t *st, int idx, const char *s, size_t len);
int cm_stmt_bind_null(cm_stmt_t *st, int idx);

/* Runs one step. Returns CM_DB_ROW, CM_DB_DONE, -EEXIST on a UNIQUE/constraint
 * failure (NOT NULL and foreign keys too), -EBUSY when the database stayed locked past
 * the busy timeout, -EIO else. Only -EIO is logged (with SQLite's message): -EEXIST
 * and -EBUSY are the caller's to answer (409, 503). After an error the statement is
 * already reset. */
int cm_stmt_step(cm_stmt_t *st);
/* Column accessors for the current row (0-based). Text is borrowed until the next
 * step or reset; NULL columns give 0 / NULL with *len 0. */
int64_t cm_stmt_int(cm_stmt_t *st, int col);
const char *cm_stmt_text(cm_stmt_t *st, int col, size_t *len);
int cm_stmt_is_null(cm_stmt_t *st, int col);
/* Resets the statement so its locks are released; cm_db_stmt() also does it. */
void cm_stmt_reset(cm_stmt_t *st);

/* Transactions. begin takes the write lock at once (BEGIN IMMEDIATE on SQLite), so
 * a read-check-write sequence inside it cannot race another instance.
 * Return 0, -EBUSY, or -EIO. rollback is safe to call when no transaction is open.
 * commit and rollback first reset every statement of this connection (a statement
 * left mid-result, e.g. INSERT ... RETURNING stepped once, would block the COMMIT),
 * so read the row's columns before committing. When commit fails the transaction
 * may still be open: call rollback. */
int cm_db_begin(cm_db_t *db);
int cm_db_commit(cm_db_t *db);
void cm_db_rollback(cm_db_t *db);

/* Group commit: many units of work share one transaction, so one COMMIT (one WAL
 * append) serves them all. cm_db_unit_begin() opens the group's transaction if none is
 * open (BEGIN IMMEDIATE) and a savepoint for this unit; cm_db_unit_end() keeps the
 * unit's writes in the group; cm_db_unit_undo() takes back only this unit's writes.
 * Nothing is durable until cm_db_group_commit(): answer a unit's client only after it
 * returned 0. cm_db_in_group() tells whether the group is open (SQLite may roll the
 * whole group back by itself after an I/O error: then it is no longer open).
 * Return 0, -EBUSY, or -EIO like the calls above. */
int cm_db_unit_begin(cm_db_t *db);
/* Opens a read-only group (BEGIN DEFERRED) unless a group is open: every read until
 * cm_db_group_commit() shares one snapshot and one set of file locks. A unit begun
 * later ends it first. */
int cm_db_read_begin(cm_db_t *db);
int cm_db_unit_end(cm_db_t *db);
void cm_db_unit_undo(cm_db_t *db);
int cm_db_group_commit(cm_db_t *db);
int cm_db_in_group(cm_db_t *db);

/* Rows changed by the last INSERT/UPDATE/DELETE on this connection. */
int cm_db_changes(cm_db_t *db);

#endif
