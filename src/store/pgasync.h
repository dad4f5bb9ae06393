/* store/pgasync.h: reads on PostgreSQL that never wait, for a worker's loop, by replay.
 *
 * A read handler is ordinary synchronous code (cm_db_stmt, bind, step, columns). Run on
 * a replay database (cm_replay_db_open) between cm_replay_begin and cm_replay_end, its
 * statements are answered from the replay's results so far; the first one without a
 * result stops the run there (the step fails with -EAGAIN, and so does every later one)
 * and is the replay's wanted statement. The caller discards what that run answered,
 * hands the replay to an idle asynchronous connection (cm_pgasync_send), and when the
 * result is in, runs the handler again from the top: its statements repeat (a read
 * handler issues the same statements with the same parameters each run) and now find
 * their results, until a run completes. A statement that failed (the server's error, a
 * lost connection, a timeout) is answered with its error, so the handler answers it.
 *
 * An asynchronous connection (cm_pgasync_*) is one libpq connection in non-blocking mode,
 * one statement at a time, driven by the caller's poll of its socket: connect, prepare
 * (once per statement and connection), execute, result. Reads only (read-only
 * transactions, in autocommit: each statement sees what was committed when it began).
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
    CM_PGASYNC_IDLE,       /* ready for a statement */
    CM_PGASYNC_BUSY,       /* a statement in flight */
} cm_pgasync_state_t;

/* A connection to target (URI or keyword form), not yet started. Returns 0 or -ENOMEM. */
int cm_pgasync_open(const char *target, cm_pgasync_t **out);
void cm_pgasync_close(cm_pgasync_t *c); /* NULL is a no-op; a replay in flight is the caller's */
cm_pgasync_state_t cm_pgasync_state(const cm_pgasync_t *c);
/* The socket to poll and for what (CM_PGASYNC_IN | _OUT); -1 / 0 while down. The socket
 * may change whenever the state does. */
int cm_pgasync_fd(const cm_pgasync_t *c);
int cm_pgasync_events(const cm_pgasync_t *c);
/* Starts connecting when down and the backoff (50 ms doubling to 2 s, jittered) is over:
 * 0, or -EAGAIN (not yet: *retry_in_ms says when), or -EIO (could not even start). */
int cm_pgasync_start(cm_pgasync_t *c, uint64_t now_ms, uint64_t *retry_in_ms);
/* Sends rp's wanted statement (the connection must be idle). 0, or -EIO (the connection
 * broke: it is down, rp not taken). */
int cm_pgasync_send(cm_pgasync_t *c, cm_replay_t *rp);
/* Goes on after its socket was ready (or to check). Returns the replay whose statement
 * finished (its result or error is in it), or NULL. A connection that breaks is down
 * after, its replay finished with -EIO. */
cm_replay_t *cm_pgasync_advance(cm_pgasync_t *c, uint64_t now_ms);
/* Gives up the connection (its statement took too long): down, and its replay, if any,
 * returned finished with err. */
cm_replay_t *cm_pgasync_abort(cm_pgasync_t *c, int err, uint64_t now_ms);

#endif
