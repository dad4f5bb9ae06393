/* service/batch.h: group commit for a worker's writes. Every write of one loop
 * iteration runs as a unit inside one shared transaction; after the iteration's I/O
 * (a uv_check handle) the batch commits once and only then sends each unit's answer,
 * so every 2xx is durable and concurrent creates share a single WAL append.
 * One batch per worker, on the worker's loop and its database connections.
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
 * ends them. (That is SQLite's, inline; PostgreSQL's store threads are below.) */
#ifndef CMESH_SERVICE_BATCH_H
#define CMESH_SERVICE_BATCH_H

#include <uv.h>

#include "core/http.h"
#include "core/router.h"
#include "store/db.h"

typedef struct cm_batch cm_batch_t; /* opaque */

/* Where the store is used. On SQLite (a local file, microseconds a statement) in the
 * worker's own loop, as above. On PostgreSQL every statement is a round trip to a server
 * that may be slow, far or gone, so the worker's loop never waits for one:
 * - a read handler (cm_batch_read with again) runs on the loop by replay
 *   (service/replay.h, store/pgasync.h): each run stops at the first statement without
 *   a result, which one of CM_BATCH_PG_ASYNC non-blocking connections runs, and runs
 *   again when it is in;
 * - everything else handed over with cm_batch_run runs on a store thread: a writer (the
 *   write connection: group commit over whatever queued while it committed the last
 *   group) or one of CM_BATCH_PG_READERS readers (a connection each, autocommit).
 * A request handed over is "away" (core/http.h): its answer is recorded and sent by the
 * worker's loop when it comes back; a connection's reads and writes stay in its order
 * (a read pipelined after a write sees it, one before it does not). */
#define CM_BATCH_PG_READERS 2
#define CM_BATCH_PG_ASYNC   4 /* asynchronous read connections on the loop */

typedef enum { CM_BATCH_READ, CM_BATCH_WRITE } cm_batch_kind_t;
typedef void (*cm_batch_fn)(void *data);

/* db is the write connection (borrowed, must outlive the batch) opened on target, on
 * which the batch opens its reader connection(s) (cm_db_open_reader). Caller owns *out;
 * free with cm_batch_free(), which finishes what the store threads hold, commits and
 * answers, then closes its handles (the memory goes in their close callbacks: run the
 * loop once more). Returns 0, -ENOMEM, or the reader's open error. */
int cm_batch_new(uv_loop_t *loop, cm_db_t *db, const char *target, cm_batch_t **out);
void cm_batch_free(cm_batch_t *b); /* NULL is a no-op */

/* Runs work(data) where the store of kind may be used, then done(data) (may be NULL) on
 * the worker's loop. req (NULL for the service's own work) is the request work may
 * answer. On SQLite: a read for a request waits for the check phase like cm_batch_read's
 * again, anything else runs now, done right after work. On PostgreSQL work runs on a store
 * thread, done after its group: for a write, after the commit (answers and kept units
 * told first). work must touch nothing of the loop's (timers, clients, lists the loop
 * walks): it leaves what the loop must do to done. A read's work gets its connection from
 * cm_batch_read(b, req, NULL, &rdb); a write's begins units with cm_batch_begin. */
void cm_batch_run(cm_batch_t *b, cm_batch_kind_t kind, cm_req_t *req, cm_batch_fn work,
                  cm_batch_fn done, void *data);

/* Why writes cannot be stored now, or NULL (for /readyz): cm_db_write_problem on
 * SQLite; on PostgreSQL what the writer last found (after each group, and a probe that
 * each call queues unless one is out). */
const char *cm_batch_write_problem(cm_batch_t *b);

/* Starts a unit of work on db (write context: see cm_batch_run). Returns 0, or a store
 * error or -ENOMEM (then nothing was started and nothing of this request is in the
 * group: the caller may answer 503 at once). */
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
 * its writes; done(data, ok) is called once, on the loop, after the group's commit (ok 0
 * when the unit could not be kept or the group did not commit). */
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
 * a store error. On PostgreSQL, on the loop: again(req) runs on a reader thread (returns
 * 1; without again it is a bug: -EINVAL); on a reader thread (inside again, or a read's
 * cm_batch_run work): 0 with that reader's connection, on the snapshot its batch of jobs
 * shares. */
int cm_batch_read(cm_batch_t *b, cm_req_t *req, cm_handler_fn again, cm_db_t **rdb);

#endif
