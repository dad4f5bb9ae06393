/* control/load.h: an instance's load from its own /metrics (Prometheus text, as every
 * cmesh process serves it): requests per second, the p99 latency and the error rate (5xx
 * share) between two scrapes, computed from the counters and the latency histogram as Prometheus'
 * rate() and histogram_quantile() would. Probe and scrape routes (/healthz, /readyz, /metrics) are
 * left out: they are the control plane's own traffic. Pure functions, no I/O; the supervisor
 * scrapes, `cmesh status` shows RPS and P99; windows of several instances add up to a service's
 * (histogram_quantile over sum by (le)). The autoscaler (demand.c) reads the time sums: by Little's
 * law the mean number of requests in the system over an interval is exactly the time they spent in
 * it divided by the interval, i.e. the rate of a duration histogram's _sum; the gateway's
 * per-instance series include the time a request waited at the gateway. */
#ifndef CMESH_CONTROL_LOAD_H
#define CMESH_CONTROL_LOAD_H

#include <stddef.h>
#include <stdint.h>

#define CM_LOAD_BUCKETS 24 /* histogram bounds kept (core/metrics has 16) */

typedef struct cm_load_sample {
    double requests;                /* cmesh_http_requests_total, summed */
    double errors;                  /* of those, code="5xx" (the server failed) */
    int nb;                         /* bounds seen, ascending */
    double le[CM_LOAD_BUCKETS];     /* upper bounds in seconds (+Inf last) */
    double bucket[CM_LOAD_BUCKETS]; /* cumulative counts, summed over routes */
    double inflight;                /* cmesh_http_requests_in_flight */
    double time_sum;                /* cmesh_http_request_duration_seconds_sum: seconds */
    int valid;                      /* the text had the request counter */
} cm_load_sample_t;

/* Parses a /metrics answer. Returns 0, or -EINVAL when it holds no cmesh request series. */
int cm_load_parse(const char *text, size_t len, cm_load_sample_t *out);

/* The gateway's time spent per upstream instance: one row per `upstream` label of
 * cmesh_gateway_upstream_request_duration_seconds_sum, summed over routes. */
typedef struct cm_load_up {
    char url[128];   /* "http://127.0.0.1:7001" */
    double time_sum; /* seconds of attempts on it since the gateway started */
} cm_load_up_t;

/* Fills up to cap rows from a gateway's /metrics; returns how many. */
int cm_load_parse_upstreams(const char *text, size_t len, cm_load_up_t *up, int cap);

/* From two samples dt_ms apart: *rps, and *p99_ms (-1 when no request came). Returns 0, or
 * -EINVAL when the samples do not fit (a restart reset the counters, dt 0). */
int cm_load_rate(const cm_load_sample_t *prev, const cm_load_sample_t *cur, uint64_t dt_ms,
                 double *rps, double *p99_ms);

/* The window between two samples: out = cur - prev (counters and buckets). Returns 0, or
 * -EINVAL when they do not fit (a restart reset the counters, other bucket bounds). */
int cm_load_window(const cm_load_sample_t *prev, const cm_load_sample_t *cur,
                   cm_load_sample_t *out);
/* Adds window w into acc (acc zeroed first, or an earlier sum): a service's windows from
 * its instances, so its p99 is the merged histogram's. Every cmesh process has the same
 * bounds; a bound missing from acc is inserted. */
void cm_load_window_add(cm_load_sample_t *acc, const cm_load_sample_t *w);
/* A window's p99 latency in ms, -1 when it has no request (or no histogram). */
double cm_load_window_p99(const cm_load_sample_t *w);
/* A window's error rate: errors / requests in 0..1, -1 when it has no request. */
double cm_load_window_errors(const cm_load_sample_t *w);

#endif
