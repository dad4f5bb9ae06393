/* service/retention.h: background pruning of a service's Idempotency-Key records and
 * events (store/idempotency.h, service/outbox.h) past their retention. A timer on one
 * worker's loop (one per process: the first to start it) runs one unit per tick in the
 * worker's group commit, deleting at most CM_RETENTION_BATCH rows of each kind, so a
 * request never waits behind a big delete; a full batch brings the next tick forward
 * until the backlog is gone. Several instances on one database each prune: the rows
 * one deleted the other's DELETE simply does not find. */
#ifndef CMESH_SERVICE_RETENTION_H
#define CMESH_SERVICE_RETENTION_H

#include "service/batch.h"

#include <stdint.h>

#include <uv.h>

#include "store/db.h"

#define CM_RETENTION_BATCH   500  /* rows of each kind per tick */
#define CM_RETENTION_TICK_MS 1000 /* between ticks that found less than a batch */

typedef struct cm_retention cm_retention_t; /* opaque */

/* Starts pruning on loop through b (whose write connection is db), keeping keys key_ms
 * and events event_ms. *out is NULL (and 0 returned) when this process already prunes.
 * Returns 0 or -ENOMEM. */
int cm_retention_start(uv_loop_t *loop, cm_batch_t *b, cm_db_t *db, uint64_t key_ms,
                       uint64_t event_ms, cm_retention_t **out);
/* Stops it; the memory goes in the timer's close callback. NULL is a no-op. */
void cm_retention_free(cm_retention_t *r);

/* The cutoff for a retention: now - ms, RFC 3339 (what is stamped before it goes). */
void cm_retention_cutoff(uint64_t ms, char out[32]);

#endif
