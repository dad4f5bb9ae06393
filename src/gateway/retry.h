/* gateway/retry.h: the retry rules as pure functions: which failure may be tried again,
 * for which method, how long to back off, and the route's retry budget. No I/O, no clock:
 * every time is passed in (ns, monotonic), so tests/unit/test_retry.c drives them.
 * proxy.c asks them once per failed attempt. */
#ifndef CMESH_GATEWAY_RETRY_H
#define CMESH_GATEWAY_RETRY_H

#include <stdint.h>

#include "core/http.h"
#include "gateway/config.h"

/* Why an attempt failed. */
typedef enum gw_fail {
    GW_FAIL_CONNECT,  /* no connection: the request provably never left */
    GW_FAIL_RESET,    /* the connection broke before a response byte */
    GW_FAIL_TIMEOUT,  /* the per-try timeout ran out before the head */
    GW_FAIL_503,      /* the instance answered 503 */
    GW_FAIL_PROTOCOL, /* the response was not HTTP: never retried */
} gw_fail_t;

/* The budget's window: one slot per second over the last GW_BUDGET_SLOTS seconds. */
typedef struct gw_budget_slot {
    uint64_t sec;               /* which second the counts are for */
    uint32_t requests, retries; /* in that second */
} gw_budget_slot_t;
#define GW_BUDGET_SLOTS 10 /* s: long enough to smooth a burst, short enough to recover */
typedef struct gw_budget {
    gw_budget_slot_t slot[GW_BUDGET_SLOTS];
} gw_budget_t; /* one per route and worker; all zero is empty */

/* Counts one client request at now. */
void gw_budget_request(gw_budget_t *b, uint64_t now_ns);
/* Takes one retry if retries over the window stay below ratio x requests plus
 * min_per_second per second of the window. Returns 1 (taken, counted) or 0. */
int gw_budget_take(gw_budget_t *b, double ratio, int min_per_second, uint64_t now_ns);

/* The backoff before try attempt + 1 (attempt >= 1 tries made): full jitter, a value in
 * [0, min(base << (attempt - 1), max)] chosen by rnd (any 64-bit random value). ms. */
uint64_t gw_retry_backoff_ms(const gw_route_cfg_t *rc, int attempt, uint64_t rnd);

/* A request may be retried after a reset, a timeout or a 503 when its method is
 * idempotent (RFC 9110 9.2.2) or when it is forwarded with an Idempotency-Key (idem_key:
 * what reaches the upstream, which is what the services dedupe on). */
int gw_retry_method_safe(cm_method_t m, int idem_key);

/* What the decision looks at, for one failed attempt. */
typedef struct gw_retry_ask {
    gw_fail_t why;
    int answered;      /* the client's answer already started */
    int attempts;      /* tries made so far (>= 1) */
    int method_safe;   /* gw_retry_method_safe() of the request */
    int body_lost;     /* it had a body that did not fit the replay buffer */
    uint64_t now_ns;   /* when it failed */
    uint64_t start_ns; /* when the request arrived: the route's timeout counts from here */
    uint64_t wait_ms;  /* the backoff that would come first */
} gw_retry_ask_t;

#define GW_RETRY_NO        0 /* not retried */
#define GW_RETRY_YES       1 /* retried: the budget was charged */
#define GW_RETRY_NO_BUDGET 2 /* it would be, but the budget is spent (counted in metrics) */

/* Decides whether the failure may be retried: GW_RETRY_*. When not, *refused names why
 * for the access log ("budget", "deadline", ...), or is NULL when no retry was possible
 * anyway (answered, out of attempts, a protocol error). */
int gw_retry_decide(const gw_route_cfg_t *rc, gw_budget_t *b, const gw_retry_ask_t *a,
                    const char **refused);

#endif
