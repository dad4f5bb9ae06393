/* core/watch.h: follows services in the control plane's registry with blocking queries
 * (GET BASE/v1/services/NAME?index=N&wait=DUR, the index in X-Cmesh-Index), one query
 * loop per service on a libuv loop through core/client. Each new set of ready instance
 * URLs goes to a callback handed down; when the control plane is away the last set
 * stays (the caller keeps serving it) and queries retry with jittered backoff. Used by
 * the gateway (--registry) and orders (--users-registry). */
#ifndef CMESH_CORE_WATCH_H
#define CMESH_CORE_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define CM_WATCH_MAX_SERVICES 64
#define CM_WATCH_MAX_URLS     256 /* ready instances taken from one answer */

typedef struct cm_watch cm_watch_t; /* opaque; lives on one loop */

/* A new set for service (index i of the list given to cm_watch_new): urls[0..n) are
 * the ready instances' base URLs ("http://127.0.0.1:7001"), borrowed for the call. n
 * may be 0 (none ready). Fires on the watch's loop, never inside cm_watch_new. */
typedef void (*cm_watch_cb)(int i, const char *service, char **urls, int n, void *data);

/* Starts one query loop per service (copied). base is "http://HOST:PORT" (a trailing /
 * is fine). wait_ms is the blocking query's wait (0: 10 s). Caller owns *out; free with
 * cm_watch_free(). Returns 0, -EINVAL (bad base, no or too many services), -ENOMEM. */
int cm_watch_new(uv_loop_t *loop, const char *base, const char *const *services, int n,
                 unsigned wait_ms, cm_watch_cb cb, void *data, cm_watch_t **out);
/* Stops every query (the callback never fires again); memory goes once the loop ran
 * the handles' close callbacks. NULL is a no-op. */
void cm_watch_free(cm_watch_t *w);

/* Seconds since the last successful answer for service i (since the watch started
 * when none came yet). Safe from any thread. -1 for a bad i. */
double cm_watch_age_s(const cm_watch_t *w, int i);
/* The registry index of the set for service i being handed to the callback (inside it),
 * else of the last one handed on; 0 before any. The watch's loop only. */
uint64_t cm_watch_index(const cm_watch_t *w, int i);
/* Whether service i had a successful answer yet. Safe from any thread. */
int cm_watch_answered(const cm_watch_t *w, int i);

/* The desired instance count of service i from its last answer (X-Cmesh-Desired; 0:
 * scaled to zero on purpose), -1 when none said it. Read it in the callback to tell an
 * empty set that is meant from one that is not. Safe from any thread. */
int cm_watch_desired(const cm_watch_t *w, int i);

/* ---- pure parts (exported for tests) ------------------------------------------------ */

/* Parses an answer body (a JSON array of instances with "url" and "ready") into the
 * URLs of the ready ones. Caller owns *urls (free each, then the array; NULL when n is
 * 0). Returns 0, -EINVAL (not that shape), -ENOMEM. */
int cm_watch_parse(const char *body, size_t len, char ***urls, int *n);
/* The index rule. last: the index the query sent (0 = none yet), got: the answer's.
 * Sets *next to the index to send next and returns 1 when the answer is a new set to
 * hand on, else 0. An index that went backwards (a restarted registry) resets to 0, as
 * Consul advises: the next query then answers at once with the current set. */
int cm_watch_index_rule(uint64_t last, uint64_t got, uint64_t *next);
/* Delay before retry number attempt (0 = the first) : 250 ms doubling up to 10 s, with
 * "equal jitter" (half fixed, half drawn from rnd) so that many watchers do not come
 * back in step. */
unsigned cm_watch_backoff_ms(unsigned attempt, uint64_t rnd);

#endif
