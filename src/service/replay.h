/* service/replay.h: a worker's read handlers on PostgreSQL, run by replay on its loop
 * (store/pgasync.h): each run of the handler stops at the first statement without a
 * result, which goes to one of the worker's non-blocking read connections, and the
 * handler runs again when the result is in, until a run completes. The statements that
 * become due together (the first runs of one check phase, the reruns after one read of
 * results) go out as one batch per connection, a few to a connection (one write, one
 * wakeup of the server's backend, their results back in one read). The loop polls the
 * connections; nothing here waits. service/batch.c uses it for cm_batch_read's again on
 * PostgreSQL. */
#ifndef CMESH_SERVICE_REPLAY_H
#define CMESH_SERVICE_REPLAY_H

#include <uv.h>

#include "core/http.h"
#include "core/router.h"
#include "store/db.h"

typedef struct cm_replays cm_replays_t; /* opaque */

/* nconns connections to target, connecting at once (without waiting). Caller owns *out;
 * free with cm_replays_free. Returns 0, -ENOMEM. */
int cm_replays_new(uv_loop_t *loop, const char *target, int nconns, cm_replays_t **out);
/* Runs again(req) by replay, its first run in the next check phase (not inside the
 * handler asking); req must be away (cm_req_away). done(arg) once a run completed: req's
 * answer is recorded (a store error as the handler answers it: 503 while every connection
 * is down, a statement's connection lost, or past its 15 s deadline). Returns 0 or
 * -ENOMEM. */
int cm_replays_add(cm_replays_t *r, cm_req_t *req, cm_handler_fn again, void (*done)(void *),
                   void *arg);
/* Inside a run: 1 with *rdb the replay database when the run is req's, else 0. */
int cm_replays_running(const cm_replays_t *r, const cm_req_t *req, cm_db_t **rdb);
/* For /readyz: "the database server is unreachable" when every connection went down and
 * none has connected since, else NULL. Asking also reconnects them (after their backoff). */
const char *cm_replays_problem(cm_replays_t *r);
/* From now on nothing is sent: every replay in flight or waiting, and every one added
 * later, completes at once with what it has (503 for what it lacks). */
void cm_replays_stop(cm_replays_t *r);
/* Stops (as above) and closes the connections and handles; the memory goes in the close
 * callbacks (run the loop once more). NULL is a no-op. */
void cm_replays_free(cm_replays_t *r);

#endif
