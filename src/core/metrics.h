/* core/metrics.h: the counters every process exposes on GET /metrics, rendered in
 * the Prometheus text exposition format (must pass `promtool check metrics`).
 * Shared by all worker threads: updates are relaxed atomics, never a lock. */
#ifndef CMESH_CORE_METRICS_H
#define CMESH_CORE_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
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
/* +1 when a connection takes a request, parser or write state from its worker's pool,
 * -1 when it gives it back: cmesh_http_request_states_in_use. */
void cm_metrics_states_add(cm_metrics_t *m, int delta);

/* Appends the exposition: cmesh_http_requests_total{service,route,method,code},
 * cmesh_http_request_duration_seconds histogram {service,route},
 * cmesh_http_requests_in_flight, cmesh_http_connections_open,
 * cmesh_http_request_states_in_use, process_resident_memory_bytes,
 * process_open_fds, process_start_time_seconds. Counter and histogram series that are
 * still zero are left out (HELP and TYPE always appear); histogram buckets are in
 * seconds: .0001 .00025 .0005 .001 .0025 .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10 +Inf.
 * Every cmesh_http_* series carries service (the gauges only that label).
 * Returns 0 or -ENOMEM (out may then hold a partial page). */
int cm_metrics_render(cm_metrics_t *m, cm_buf_t *out);

/* ------------------------------------------------------------------------------------ */
/* Shared pieces, so other registries (gateway/gwmetrics) label and bucket the same way */
/* ------------------------------------------------------------------------------------ */

/* The fixed code table: the status codes cmesh sends, plus "other" at the last index
 * (CM_METRICS_NCODES - 1), so a table indexed by code can never grow. */
#define CM_METRICS_NCODES 29
/* status -> 0..CM_METRICS_NCODES - 1 (codes cmesh does not send, or out of range,
 * map to the last index, "other"). */
int cm_metrics_code_index(int status);
/* The label value of a code index: "200", ..., "other". Static storage; ix outside the
 * table gives "other". */
const char *cm_metrics_code_name(int ix);

/* Appends v escaped as a Prometheus label value (backslash, double quote, newline).
 * Returns 0 or -ENOMEM. */
int cm_metrics_append_label_value(cm_buf_t *b, const char *v);

/* A latency histogram with the bounds listed at cm_metrics_render. All zero bytes is
 * an empty histogram (calloc it). Updated with relaxed atomics from any thread. */
#define CM_METRICS_NBUCKETS 17 /* 16 bounds + +Inf */
typedef struct cm_metrics_hist {
    _Atomic uint64_t bucket[CM_METRICS_NBUCKETS]; /* per bucket, not cumulative */
    _Atomic uint64_t sum_us;                      /* us; rendered as seconds */
} cm_metrics_hist_t;

void cm_metrics_hist_observe(cm_metrics_hist_t *h, uint64_t duration_us);
/* Appends name_bucket{labels,le=".."} (cumulative), name_sum{labels} in seconds and
 * name_count{labels}; nothing when the histogram is still empty. labels is a
 * pre-escaped, non-empty `k="v",...` list. Returns 0 or -ENOMEM. */
int cm_metrics_hist_render(cm_metrics_hist_t *h, const char *name, const char *labels,
                           cm_buf_t *out);

#endif
