/* service/batch.h: group commit for a worker's writes. Every write of one loop
 * iteration runs as a unit inside one shared transaction; after the iteration's I/O
 * (a uv_check handle) the batch commits once and only then sends each unit's answer,
 * so every 2xx is durable and concurrent creates share a single WAL append.
 * One batch per worker, on the worker's loop and database connection. */
#ifndef CMESH_SERVICE_BATCH_H
#define CMESH_SERVICE_BATCH_H

#include <uv.h>

#include "core/http.h"
#include "store/db.h"

typedef struct cm_batch cm_batch_t; /* opaque */

/* db is borrowed and must outlive the batch. Caller owns *out; free with
 * cm_batch_free(), which commits and answers what is held, then closes its handle
 * (the memory goes in the close callback: run the loop once more). Returns 0 or -ENOMEM. */
int cm_batch_new(uv_loop_t *loop, cm_db_t *db, cm_batch_t **out);
void cm_batch_free(cm_batch_t *b); /* NULL is a no-op */

/* Starts a unit of work. Returns 0, or -EBUSY / -EIO (then nothing was started). */
int cm_batch_begin(cm_batch_t *b);
/* Ends the unit successfully: its writes stay in the batch, and req is answered with
 * status (res_body and headers as built) once the batch has committed; if the commit
 * fails it is answered 503 instead. req must not be touched afterwards. */
void cm_batch_answer(cm_batch_t *b, cm_req_t *req, int status);
/* Before a read: joins the open group, or opens a read-only one, so all reads of one
 * loop iteration share one snapshot (one lock round-trip, not one per request).
 * Reads inside a group with writes see those writes before they commit. Returns 0
 * or a store error. */
int cm_batch_read(cm_batch_t *b);
/* Ends the unit by taking back its writes; the caller answers req itself. */
void cm_batch_undo(cm_batch_t *b);

#endif
