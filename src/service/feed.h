/* service/feed.h: GET /events, a service's outbox (service/outbox.h) as a long-poll feed.
 *   GET /events?after=N&limit=L&wait=D
 * answers {"events":[{"id","type","time","data"},...],"last":ID,"head":ID}: the events
 * with id > after in id order (gap-free, commit order), at most limit (default 100, max
 * 1000); last is the cursor for the next call (the last id returned, or after when none),
 * head the newest id stored. When none is past after and wait (a duration, "30s",
 * "500ms"; default 0, capped at 60 s) is given, the request is parked and answered as
 * soon as a commit adds some (one of this worker at once; another worker's or another
 * instance's within a 100 ms re-query), or empty when the wait ends. A cursor past the
 * head is answered at once (empty, with the head): the feed it counted on is not this
 * one. Reads committed data on the worker's read connection: any instance serves it.
 * One cm_feed_t per worker, on its loop. */
#ifndef CMESH_SERVICE_FEED_H
#define CMESH_SERVICE_FEED_H

#include "service/batch.h"

#include <uv.h>

#include "core/http.h"
#include "core/router.h"

#define CM_FEED_WAIT_MAX_MS 60000

typedef struct cm_feed cm_feed_t; /* opaque */

/* b is the worker's batch (borrowed; outlives the feed): reads go through it, and its
 * commits wake the parked requests. Caller owns *out. Returns 0 or -ENOMEM. */
int cm_feed_new(uv_loop_t *loop, cm_batch_t *b, cm_feed_t **out);
/* Answers every parked request (what is there, else empty), closes the timers; the
 * memory goes in their close callbacks (run the loop once more). NULL is a no-op. */
void cm_feed_free(cm_feed_t *f);
/* The handler of GET /events: the service's route calls it with its worker's feed (a
 * read after a held write of the same connection runs after that commit, see
 * service/batch.h). */
void cm_feed_get(cm_feed_t *f, cm_req_t *req);

#endif
