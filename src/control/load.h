/* control/load.h: an instance's load from its own /metrics (Prometheus text, as every
 * cmesh process serves it): requests per second and the p99 latency between two
 * scrapes, computed from the counters and the latency histogram as Prometheus' rate()
 * and histogram_quantile() would. Probe and scrape routes (/healthz, /readyz, /metrics)
 * are left out: they are the control plane's own traffic. Pure functions, no I/O; the
 * supervisor scrapes, `cmesh status` shows RPS and P99 (and the autoscaler will read
 * them). */
#ifndef CMESH_CONTROL_LOAD_H
#define CMESH_CONTROL_LOAD_H

#include <stddef.h>
#include <stdint.h>

#define CM_LOAD_BUCKETS 24 /* histogram bounds kept (core/metrics has 16) */

typedef struct cm_load_sample {
    double requests;                /* cmesh_http_requests_total, summed */
    int nb;                         /* bounds seen, ascending */
    double le[CM_LOAD_BUCKETS];     /* upper bounds in seconds (+Inf last) */
    double bucket[CM_LOAD_BUCKETS]; /* cumulative counts, summed over routes */
    double inflight;                /* cmesh_http_requests_in_flight */
    int valid;                      /* the text had the request counter */
} cm_load_sample_t;

/* Parses a /metrics answer. Returns 0, or -EINVAL when it holds no cmesh request series. */
int cm_load_parse(const char *text, size_t len, cm_load_sample_t *out);

/* From two samples dt_ms apart: *rps, and *p99_ms (-1 when no request came). Returns 0, or
 * -EINVAL when the samples do not fit (a restart reset the counters, dt 0). */
int cm_load_rate(const cm_load_sample_t *prev, const cm_load_sample_t *cur, uint64_t dt_ms,
                 double *rps, double *p99_ms);

#endif
