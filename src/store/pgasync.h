/* store/pgasync.h: reads on PostgreSQL that never wait, for a worker's loop, by replay.
 *
 * A read handler is ordinary synchronous code (cm_db_stmt, bind, step, columns). Run on
 * a replay database (cm_replay_db_open) between cm_replay_begin and cm_replay_end, its
 * statements are answered from the replay's results so far; the first one without a
 * result stops the run there (the step fails with -EAGAIN, and so does every later one)
 * and is the replay's wanted statement. The caller discards what that run answered,
 * hands the replay to an asynchronous connection (cm_pgasync_send), and when the
 * result is in, runs the handler again from the top: its statements repeat (a read
 * handler issues the same statements with the same parameters each run) and now find
 * their results, until a run completes. A statement that failed (the server's error, a
 * lost connection, a timeout) is answered with its error, so the handler answers it.
 *
 * An asynchronous connection (cm_pgasync_*) is one libpq connection in non-blocking
 * pipeline mode, driven by the caller's poll of its socket: connect, session setup, then
 * any number of statements in flight. The statements sent between two cm_pgasync_flush
 * calls are one batch: one write, one Sync, one implicit transaction on the server, and
 * the server answers them together (one wakeup of the backend and one of the caller
 * serve them all). Their results come in the order sent. A server error fails only its
 * own statement: the statements after it in its batch, which the server skips, are sent
 * again (they are reads). A statement's first use on a connection is prepared in a batch
 * of its own, so the prepare never fails for another statement's error. A lost
 * connection fails every statement on it with -EIO. Reads only (read-only transactions:
 * each statement sees what was committed when it began).
 * Nothing here blocks or knows the loop; one thread uses a connection and its replays. */
#ifndef CMESH_STORE_PGASYNC_H
#define CMESH_STORE_PGASYNC_H

#include <stdint.h>

#include "store/db.h"

typedef struct cm_replay cm_replay_t;   /* one read's results so far */
typedef struct cm_pgasync cm_pgasync_t; /* one asynchronous connection */

/* The database a replayed read runs on (no connection of its own). Close with
 * cm_db_close(). Returns 0 or -ENOMEM. */
int cm_replay_db_open(cm_db_t **out);
/* A replay of one read; NULL when out of memory. */
cm_replay_t *cm_replay_new(void);
void cm_replay_free(cm_replay_t *rp); /* NULL is a no-op */
/* Statements on db read rp's results until cm_replay_end, from the first one. */
void cm_replay_begin(cm_db_t *db, cm_replay_t *rp);
/* Ends the run: 1 when it stopped at a statement with no result yet (send rp), 0 when it
 * ran to its end (its answer is the read's). */
int cm_replay_end(cm_db_t *db);
/* The wanted statement's result is the error err (negative errno): nothing could run it. */
void cm_replay_fail(cm_replay_t *rp, int err);

#define CM_PGASYNC_IN  1
#define CM_PGASYNC_OUT 2

typedef enum {
    CM_PGASYNC_DOWN,       /* no connection (cm_pgasync_start after the backoff) */
    CM_PGASYNC_CONNECTING, /* handshake and session setup on their way */
    CM_PGASYNC_IDLE,       /* ready, nothing in flight */
    CM_PGASYNC_BUSY,       /* ready, statements in flight (it takes more) */
} cm_pgasync_state_t;

/* A connection to target (URI or keyword form), not yet started. Returns 0 or -ENOMEM. */
int cm_pgasync_open(const char *target, cm_pgasync_t **out);
/* NULL is a no-op; the replays in flight or finished and not taken are the caller's. */
void cm_pgasync_close(cm_pgasync_t *c);
cm_pgasync_state_t cm_pgasync_state(const cm_pgasync_t *c);
/* The statements in flight (sent, not finished), and when the oldest of them was first
 * sent (its deadline counts from there; 0 with none). */
int cm_pgasync_inflight(const cm_pgasync_t *c);
uint64_t cm_pgasync_oldest(const cm_pgasync_t *c);
/* The socket to poll and for what (CM_PGASYNC_IN | _OUT); -1 / 0 while down. The socket
 * may change whenever the state does. */
int cm_pgasync_fd(const cm_pgasync_t *c);
int cm_pgasync_events(const cm_pgasync_t *c);
/* Starts connecting when down and the backoff (50 ms doubling to 2 s, jittered) is over:
 * 0, or -EAGAIN (not yet: *retry_in_ms says when), or -EIO (could not even start). */
int cm_pgasync_start(cm_pgasync_t *c, uint64_t now_ms, uint64_t *retry_in_ms);
/* Adds rp's wanted statement to the batch (the connection idle or busy); arg is handed
 * back by cm_pgasync_done when it finished. It goes out at the next cm_pgasync_flush.
 * 0, -EINVAL (not ready, or rp wants nothing), -ENOMEM, or -EIO (the connection broke:
 * it is down, rp not taken, every statement in flight finished with -EIO). */
int cm_pgasync_send(cm_pgasync_t *c, cm_replay_t *rp, void *arg, uint64_t now_ms);
/* Ends the batch: a Sync after the statements sent since the last flush, and one write
 * (what the socket does not take goes when it is writable: the events say OUT). 0, or
 * -EIO (the connection broke, as above). Nothing to end is a no-op. */
int cm_pgasync_flush(cm_pgasync_t *c);
/* Goes on after its socket was ready (or to check): reads what came, finishes the
 * statements whose results are in. A connection that breaks is down after, every
 * statement in flight finished with -EIO. Take the finished ones with cm_pgasync_done. */
void cm_pgasync_advance(cm_pgasync_t *c, uint64_t now_ms);
/* The arg of a statement that finished (its replay has its result or error), oldest
 * first, or NULL when none is left to take. */
void *cm_pgasync_done(cm_pgasync_t *c);
/* Gives up the connection (why is logged: "a statement took too long"): down, every
 * statement in flight finished with err. */
void cm_pgasync_abort(cm_pgasync_t *c, int err, const char *why);

#endif
