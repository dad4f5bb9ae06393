/* service/subscribe.h: following another service's event feed (service/feed.h) with a
 * durable cursor, each event applied exactly once. A long-poll GET BASE/events?after=
 * CURSOR through core/client on one worker's loop (one subscriber per process: the first
 * worker to start it); each page is one unit of the worker's group commit that reads the
 * stored cursor, applies the events past it (apply, handed down by the service) and
 * stores the new cursor, so the effect and the cursor commit together or not at all, and
 * several instances sharing the database never apply an event twice (the unit holds the
 * write lock from the cursor read to its COMMIT). A failed page is taken back whole and
 * asked again after a backoff (250 ms doubling to 5 s), at the next instance base names.
 * Used by orders (the users feed). */
#ifndef CMESH_SERVICE_SUBSCRIBE_H
#define CMESH_SERVICE_SUBSCRIBE_H

#include "service/batch.h"

#include <stdatomic.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "store/db.h"

/* A step for the consuming service's migration list: one row per followed feed. */
#define CM_SUB_MIGRATION                                                                           \
    "CREATE TABLE feed_cursors(name TEXT PRIMARY KEY, last_id INTEGER NOT NULL);"
#define CM_SUB_MIGRATION_PG                                                                        \
    "CREATE TABLE feed_cursors(name TEXT PRIMARY KEY, last_id BIGINT NOT NULL);"

/* Inside the page's unit on db: applies event id of type with its data. Returns 0, or a
 * negative errno that takes the whole page back (asked again later). */
typedef int (*cm_sub_apply_fn)(void *data, cm_db_t *db, int64_t id, const char *type,
                               json_t *payload);
/* The feed's base URL (no trailing slash) for try `tries` of a page; 0 or -ENOENT. */
typedef int (*cm_sub_base_fn)(void *data, int tries, char *out, size_t cap);

typedef struct cm_sub_cfg {
    const char *name; /* the feed's row in feed_cursors, e.g. "users" */
    cm_sub_base_fn base;
    cm_sub_apply_fn apply;
    void *data;         /* for base and apply */
    unsigned wait_ms;   /* the long-poll's wait */
    atomic_llong *head; /* process-wide: the feed's newest id last seen (any worker reads) */
} cm_sub_cfg_t;

typedef struct cm_sub cm_sub_t; /* opaque */

/* Starts following on loop through b (whose write connection is db). *out is
 * NULL (and 0 returned) when this process already follows a feed. cfg is copied (its
 * strings and head are borrowed). Returns 0 or -ENOMEM. */
int cm_sub_start(uv_loop_t *loop, cm_batch_t *b, cm_db_t *db, const cm_sub_cfg_t *cfg,
                 cm_sub_t **out);
/* Stops: the poll in flight is cancelled (free the subscriber before the client loop
 * goes); memory goes in the close callbacks. NULL is a no-op. */
void cm_sub_free(cm_sub_t *s);

/* The stored cursor of feed name (0 when none yet), read on db. 0 or the store's error. */
int cm_sub_cursor(cm_db_t *db, const char *name, int64_t *cursor);

#endif
