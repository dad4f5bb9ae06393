/* core/metrics.h: the counters every process exposes on GET /metrics, rendered in
 * the Prometheus text exposition format (must pass `promtool check metrics`).
 * Shared by all worker threads: updates are relaxed atomics, never a lock. */
#ifndef CMESH_CORE_METRICS_H
#define CMESH_CORE_METRICS_H

#include <stdint.h>

#include "core/buf.h"

typedef struct cm_metrics cm_metrics_t; /* opaque */

/* route_names: the router's route patterns by index ("/users/{id}"); the index
 * nroutes means "no route matched". The array is copied. service names the process
 * ("users") and becomes a label. Caller owns *out; free with cm_metrics_free().
 * Returns 0, -EINVAL (NULL service, nroutes < 0) or -ENOMEM. */
int cm_metrics_new(const char *service, const char *const *route_names, int nroutes,
                   cm_metrics_t **out);
void cm_metrics_free(cm_metrics_t *m); /* NULL is a no-op */

/* One finished request. route outside 0..nroutes-1 counts as unmatched (label
 * route="unmatched"). method is the HTTP method's name ("GET"); names other than GET,
 * HEAD, POST, PUT, DELETE, PATCH, OPTIONS count as method="OTHER". status 100..599;
 * codes cmesh does not send count as code="other". */
void cm_metrics_observe(cm_metrics_t *m, int route, const char *method, int status,
                        uint64_t duration_us);
/* delta +1 when a request starts, -1 when its response is written. */
void cm_metrics_inflight_add(cm_metrics_t *m, int delta);
void cm_metrics_connections_add(cm_metrics_t *m, int delta);

/* Appends the exposition: cmesh_http_requests_total{service,route,method,code},
 * cmesh_http_request_duration_seconds histogram {service,route},
 * cmesh_http_requests_in_flight, cmesh_http_connections_open, process_resident_memory_bytes,
 * process_open_fds, process_start_time_seconds. Counter and histogram series that are
 * still zero are left out (HELP and TYPE always appear); histogram buckets are in
 * seconds: .0001 .00025 .0005 .001 .0025 .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10 +Inf.
 * Every cmesh_http_* series carries service (the two gauges only that label).
 * Returns 0 or -ENOMEM (out may then hold a partial page). */
int cm_metrics_render(cm_metrics_t *m, cm_buf_t *out);

#endif
