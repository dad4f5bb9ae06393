/* service/batch.h: group commit for a worker's writes. Every write of one loop
 * iteration runs as a unit inside one shared transaction; after the iteration's I/O
 * (a uv_check handle) the batch commits once and only then sends each unit's answer,
 * so every 2xx is durable and concurrent creates share a single WAL append.
 * One batch per worker, on the worker's loop and its two database connections.
 *
 * What an answer promises (store/db.h has the rules the backend keeps):
 * - an answer decided inside a unit (2xx, or 404/409/412/422 read from the group's
 *   uncommitted state) is sent only after the group's COMMIT returned; if the group is
 *   rolled back (disk full, I/O error, a moved file) every such answer is 503 with
 *   Retry-After, and nothing of it is stored, then or later;
 * - no transaction outlives the loop iteration that opened it;
 * - reads (cm_batch_read) use the second connection and see committed data only, never
 *   older than the request's bytes.
 * Units begin from I/O or timer callbacks, so the check phase of the same iteration
 * ends them. */
#ifndef CMESH_SERVICE_BATCH_H
#define CMESH_SERVICE_BATCH_H

#include <uv.h>

#include "core/http.h"
#include "core/router.h"
#include "store/db.h"

typedef struct cm_batch cm_batch_t; /* opaque */

/* db (writes) and rdb (reads, cm_db_open_reader on the same file) are borrowed and
 * must outlive the batch. Caller owns *out; free with cm_batch_free(), which commits
 * and answers what is held, then closes its handle (the memory goes in the close
 * callback: run the loop once more). Returns 0 or -ENOMEM. */
int cm_batch_new(uv_loop_t *loop, cm_db_t *db, cm_db_t *rdb, cm_batch_t **out);
void cm_batch_free(cm_batch_t *b); /* NULL is a no-op */

/* Starts a unit of work on db. Returns 0, or a store error (then nothing was started
 * and nothing of this request is in the group: the caller may answer 503 at once). */
int cm_batch_begin(cm_batch_t *b);
/* Ends the unit successfully: its writes stay in the batch, and req is answered with
 * status (res_body and headers as built) once the batch has committed; if the commit
 * fails it is answered 503 instead. req must not be touched afterwards. */
void cm_batch_answer(cm_batch_t *b, cm_req_t *req, int status);
/* Ends the unit by taking back its writes; req's answer (built, not sent: e.g.
 * cm_res_error_body) is held like cm_batch_answer's, as it was decided on the group's
 * uncommitted state. req must not be touched afterwards. */
void cm_batch_refuse(cm_batch_t *b, cm_req_t *req, int status);
/* The error of every answer whose commit's outcome is unknown (db.h's -ETIMEDOUT),
 * answered 500: not 503, which says nothing was stored. */
#define CM_BATCH_UNKNOWN_OUTCOME                                                                   \
    "the database connection broke during the commit: whether the write was stored is "            \
    "unknown; retry with the same Idempotency-Key"
/* Told after the commit whether a unit (or, for cm_batch_on_commit, the group) was
 * stored: ok 1, or 0 when nothing of it was. */
typedef void (*cm_batch_done_fn)(void *data, int ok);
/* Ends a unit of the service's own (no request: the feed consumer, retention) keeping
 * its writes; done(data, ok) is called once, after the commit (or at once with 0 when
 * the unit could not be kept). */
void cm_batch_keep(cm_batch_t *b, cm_batch_done_fn done, void *data);
/* Ends a unit of the service's own by taking its writes back. */
void cm_batch_undo(cm_batch_t *b);
/* fn(data, 1) after every commit that stored at least one unit (one hook per batch):
 * the event feed wakes its long-polls there. */
void cm_batch_on_commit(cm_batch_t *b, cm_batch_done_fn fn, void *data);

/* Before a read: a read snapshot on the reader connection, written to *rdb. Committed
 * data only, and never older than req's bytes (read your writes across instances: a
 * write another instance answered before req was sent is seen). When again is not NULL
 * and req has a client, returns 1: again(req) is called, reading at once, when a write
 * unit of this iteration begins (so a GET pipelined before a POST does not see it) or
 * after the iteration's commit (so one snapshot, taken after every read of the
 * iteration, serves them all, and a read pipelined after a write of its connection
 * sees that write). Without again (or a client), reads now on a snapshot taken after
 * req's bytes were read, or a new one for no request (NULL). Returns 0 to read now, or
 * a store error. */
int cm_batch_read(cm_batch_t *b, cm_req_t *req, cm_handler_fn again, cm_db_t **rdb);

#endif
