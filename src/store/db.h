/* store/db.h: the storage interface every service uses, on two backends: SQLite (a
 * file path) and PostgreSQL (libpq: a postgres:// or postgresql:// URI, or libpq's
 * keyword form "host=... dbname=..."), chosen by cm_db_open() from the target's form.
 * One cm_db_t is one connection, used by one thread at a time (a worker's loop, or one of
 * its store threads on PostgreSQL: service/batch.h).
 * SQL is written portably: `?` placeholders, INSERT ... RETURNING; on PostgreSQL `?`
 * becomes `$n` once, when the statement is prepared. */
#ifndef CMESH_STORE_DB_H
#define CMESH_STORE_DB_H

#include <stddef.h>
#include <stdint.h>

typedef struct cm_db cm_db_t;     /* opaque: one connection + its statement cache */
typedef struct cm_stmt cm_stmt_t; /* opaque: a prepared statement, owned by its cm_db_t */

/* One schema step. Migrations are numbered from 1 in array order; the applied
 * version is kept in the database (PRAGMA user_version on SQLite, the table
 * cmesh_schema on PostgreSQL, under a transaction-scoped advisory lock so that
 * instances starting together apply it once), and every pending step runs in one
 * transaction at open. */
typedef struct cm_migration {
    const char *sql; /* may hold several statements */
    const char *pg;  /* PostgreSQL's text where sql cannot be portable, else NULL */
} cm_migration_t;

/* True when target names a PostgreSQL database (URI or keyword form), not a file. */
int cm_db_is_postgres(const char *target);

typedef enum {
    CM_DB_SYNC_NORMAL, /* WAL + synchronous=NORMAL: a commit survives kill -9 of the process */
    CM_DB_SYNC_FULL,   /* synchronous=FULL: a commit also survives power loss */
} cm_db_sync_t;

#define CM_DB_ROW  1 /* cm_stmt_step(): a row is ready */
#define CM_DB_DONE 0 /* cm_stmt_step(): no more rows */

/* Process-wide SQLite settings; main calls it once before any thread or connection.
 * Turns off SQLite's memory statistics, whose global mutex every malloc would take.
 * Returns 0 or -EIO. */
int cm_db_global_init(void);

/* Opens (creating if needed) the database at path with WAL, the given sync mode,
 * foreign keys on, a 5 s busy timeout, and applies pending migrations.
 * Caller owns *out; close with cm_db_close(). Returns 0, -EIO when the file cannot
 * be opened, -EINVAL when a migration fails (logged with its number; no step of the
 * batch is kept) or when the file's schema is newer than n (an older binary), or -EBUSY.
 * A migration's SQL must not contain BEGIN/COMMIT: the batch is one transaction. */
int cm_db_open(const char *path, cm_db_sync_t sync, const cm_migration_t *migrations, int n,
               cm_db_t **out);
void cm_db_close(cm_db_t *db); /* finalizes every statement; NULL is a no-op */

/* Opens a second connection to a database another connection already opened (and
 * migrated), for reads only (query_only): its snapshots never see the writes of a group
 * open on the first connection. Caller owns *out. Returns 0 or -EIO. */
int cm_db_open_reader(const char *path, cm_db_t **out);

/* Why writes cannot be stored right now, or NULL: the file was opened read-only, or it
 * was moved or deleted since it was opened (writes would go to a file nobody finds
 * again). For readiness checks; costs one stat(2). */
const char *cm_db_write_problem(cm_db_t *db);

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
 * the busy timeout, -ENOSPC when the disk is full, -EROFS when the database is
 * read-only, -EIO else. -EEXIST and -EBUSY are not logged (the caller answers 409,
 * 503); the rest is, with SQLite's message. After an error the statement is already
 * reset. On a connection whose write group was lost (see below) nothing runs: -EIO. */
int cm_stmt_step(cm_stmt_t *st);
/* Runs st, whose rows nobody reads (an INSERT, UPDATE or DELETE), and resets it. In an
 * optimistic write group (cm_db_optimistic) it is not waited for: it goes with the next
 * round trip (the unit's next statement, the next unit's first one, or the COMMIT), in
 * order, so the server still runs every statement in the order they were issued; only
 * the client learns later how it went. Elsewhere, and on SQLite, it runs now. Returns 0
 * or the step's error. */
int cm_stmt_defer(cm_stmt_t *st);
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
 *
 * The contract (every backend keeps it):
 * - Nothing is durable until cm_db_group_commit() returned 0: answer a unit's client,
 *   whatever the answer says (2xx, or a 404/409/412 decided on the group's state), only
 *   after that.
 * - A group is lost when the backend rolled it back by itself (SQLite does after
 *   SQLITE_FULL or an I/O error, even in the middle of a statement: checked after every
 *   step) or when a unit could not be taken back (then it is rolled back here). A lost
 *   group stores nothing: no later unit joins it or starts a new transaction, no
 *   statement runs, until cm_db_group_commit() reports the loss with -EIO; every
 *   answer it held must then say 503.
 * - cm_db_group_commit() always ends the transaction: COMMIT, or ROLLBACK when COMMIT
 *   failed; a COMMIT into a file that was moved or deleted is refused (-ESTALE).
 * - -ETIMEDOUT (PostgreSQL only, from cm_db_group_commit and cm_db_commit): the outcome
 *   is unknown. The COMMIT was sent, the connection broke before its answer came, and
 *   the server could not be asked within 5 s whether it committed (when it could, the
 *   result is 0 or -EIO as it said). The group may or may not be stored: its answers
 *   must say so (not 503 "nothing was stored"), so that the client retries with the
 *   same Idempotency-Key.
 * - -EAGAIN (an optimistic group only, from cm_db_group_commit): something in it failed,
 *   so nothing of it was stored; run its units again in a new group with
 *   cm_db_optimistic() off, and answer from that run.
 * Return 0, or -EBUSY / -ENOSPC / -EROFS / -ESTALE / -EIO / -ETIMEDOUT / -EAGAIN. */
int cm_db_unit_begin(cm_db_t *db);
/* Opens a read group (BEGIN DEFERRED) unless a group is open: every read until
 * cm_db_group_commit() shares one snapshot and one set of file locks. Use it on a
 * reader connection (cm_db_open_reader): reads there see committed data only. A unit
 * begun on the same connection ends the read group first. */
int cm_db_read_begin(cm_db_t *db);
/* On failure the unit's writes were taken back, or the group is lost. */
int cm_db_unit_end(cm_db_t *db);
/* Returns 0 when the unit's writes are gone and the group goes on, -EIO when the group
 * is lost (it was, or the savepoint could not be rolled back: the whole group then is). */
int cm_db_unit_undo(cm_db_t *db);
int cm_db_group_commit(cm_db_t *db);
int cm_db_in_group(cm_db_t *db); /* a read or write group is open (not lost) */
/* Optimistic write groups (PostgreSQL; off by default, a no-op on SQLite): while on, a
 * unit has no savepoint and cm_stmt_defer() does not wait. Anything that fails inside the
 * group (a statement, a deferred statement, a unit taken back after it wrote) fails the
 * whole group, which stores nothing, and its commit says -EAGAIN: the caller then runs
 * the group's units again with this off, where each unit meets its own outcome (a
 * duplicate e-mail its -EEXIST) and the others commit. For a caller that can run its
 * units again (service/batch.c's writer). */
void cm_db_optimistic(cm_db_t *db, int on);

/* The id for the next row of table (its integer key column `id`, AUTOINCREMENT on SQLite,
 * an identity on PostgreSQL), for an INSERT that names it, inside a write unit: under the
 * write lock, so ids go out in commit order and are never reused, and the caller knows
 * the row's id without waiting for the INSERT. SQLite reads its AUTOINCREMENT counter;
 * PostgreSQL takes the identity's next value once per group, counts on by itself, and
 * sets the sequence with the COMMIT. An id a unit took back or a group lost may be left
 * unused. table is a literal. Returns 0 or the store's error. */
int cm_db_next_id(cm_db_t *db, const char *table, int64_t *id);

/* Rows changed by the last INSERT/UPDATE/DELETE on this connection. */
int cm_db_changes(cm_db_t *db);

#endif
