/* service/outbox.h: the transactional outbox. Every change a service stores writes a
 * domain event into its own `events` table inside the same unit of work (store/db.h),
 * so an event exists if and only if its change committed. Ids are gap-free and in
 * commit order: each is MAX(id) + 1, assigned inside the group transaction, which holds
 * the database's write lock from its first unit to its COMMIT (SQLite: BEGIN IMMEDIATE,
 * shared by every instance of the service on one file), so no two groups ever interleave
 * their ids, and a unit taken back (a savepoint undone) takes its event with it, leaving
 * the next unit the same id. A backend without such a lock must take one (PostgreSQL:
 * a transaction-level advisory lock, or LOCK TABLE events, before the first insert).
 * Portable SQL only. Used by users and orders (writes), service/feed.c (reads) and
 * service/retention.c (pruning). */
#ifndef CMESH_SERVICE_OUTBOX_H
#define CMESH_SERVICE_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "store/db.h"

/* A step for each service's migration list. data holds the event's JSON as text. */
#define CM_OUTBOX_MIGRATION                                                                        \
    "CREATE TABLE events(id INTEGER PRIMARY KEY, type TEXT NOT NULL, time TEXT NOT NULL, "         \
    "data TEXT NOT NULL);"
/* PostgreSQL: the same with 64-bit ids (SQLite's INTEGER is 64-bit already) */
#define CM_OUTBOX_MIGRATION_PG                                                                     \
    "CREATE TABLE events(id BIGINT PRIMARY KEY, type TEXT NOT NULL, time TEXT NOT NULL, "          \
    "data TEXT NOT NULL);"

/* Inside a unit of work on the write connection: appends event type with data (JSON
 * text, len bytes) stamped now. Returns 0 or the store's error (then the caller refuses
 * the unit, so the change is not stored either). Deferred (cm_stmt_defer): in an
 * optimistic group a failure shows later, as the whole group's (which then runs again). */
int cm_outbox_add(cm_db_t *db, const char *type, const char *data, size_t len);

/* Appends to out the events with id > after, at most limit, as a JSON array of
 * {"id","type","time","data"}; *last gets the last id written (after when none), *n
 * how many. Returns 0 or the store's error. */
int cm_outbox_page(cm_db_t *db, int64_t after, int limit, cm_buf_t *out, int64_t *last, int *n);

/* The newest event's id (0 when there is none). Returns 0 or the store's error. */
int cm_outbox_head(cm_db_t *db, int64_t *head);

/* Inside a unit: deletes at most max of the oldest events stamped before cutoff (an
 * RFC 3339 text, core/timefmt.h), never the newest (the next id is MAX(id) + 1: the feed's
 * ids go on where they were). Looks at max rows at most, so the work is bounded.
 * Returns the number deleted or the store's error. */
int cm_outbox_prune(cm_db_t *db, const char *cutoff, int max);

#endif
