/* control/history.h: the dashboard's charts' memory: per service, one point per scrape
 * round (every 2 s: requests per second, p99, error rate, desired / running / ready
 * instances), the newest CM_HISTORY_KEEP kept, so a page opened late still draws the
 * last minutes. Point ids grow by one per point over every service and never go back,
 * so a reader asks for what came after the last id it has (`GET /v1/history?after=N`).
 * Pure: the caller passes each point's time; no I/O, no clock. One loop; no lock. */
#ifndef CMESH_CONTROL_HISTORY_H
#define CMESH_CONTROL_HISTORY_H

#include <stdint.h>

#include "core/buf.h"

#define CM_HISTORY_KEEP 450 /* points per service: 15 min at one per 2 s round */
#define CM_HISTORY_SERIES                                                                          \
    32 /* services followed (spec's CM_SPEC_MAX_SVCS); past it the                                 \
          one updated longest ago (a service a reload removed) goes */

typedef struct cm_history_point {
    int64_t t_ms;  /* wall clock of the round */
    double rps;    /* requests per second over the service's instances; -1 unknown */
    double p99_ms; /* p99 of the instances' merged latency windows; -1 no request */
    double errors; /* 5xx share of the requests, 0..1; -1 no request */
    int desired;   /* the count the supervisor aims at */
    int running;   /* instances with a process */
    int ready;     /* instances in the routing set */
} cm_history_point_t;

typedef struct cm_history cm_history_t; /* opaque */

/* Caller owns *out (cm_history_free). Returns 0 or -ENOMEM. */
int cm_history_new(cm_history_t **out);
void cm_history_free(cm_history_t *h); /* NULL is a no-op */

/* Appends service's point (copied). Returns its id (from 1), 0 when h is NULL or memory
 * for a new service ran out (the point is dropped). */
uint64_t cm_history_add(cm_history_t *h, const char *service, const cm_history_point_t *p);
uint64_t cm_history_last(const cm_history_t *h); /* the newest id, 0 none */

/* Appends {"last":N,"keep":K,"services":[{"name":S,"t":[ms...],"rps":[...],
 * "p99_ms":[...],"error_rate":[...],"desired":[...],"running":[...],"ready":[...]}...]}:
 * per service (in the order first seen) the points with id > after, oldest first, as
 * columns; unknown values are null. A service with no such point has empty columns. */
void cm_history_render(const cm_history_t *h, uint64_t after, cm_buf_t *out);

#endif
