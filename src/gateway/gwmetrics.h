/* gateway/gwmetrics.h: the gateway's own series on GET /metrics, per route and per
 * upstream instance. Series objects are created when a config is applied (never on
 * the request path) and live until exit, so a reload keeps counting into the same
 * series; updates are relaxed atomics from any worker. */
#ifndef CMESH_GATEWAY_GWMETRICS_H
#define CMESH_GATEWAY_GWMETRICS_H

#include <stdint.h>

#include "core/buf.h"

typedef struct gw_metrics gw_metrics_t;         /* the registry, one per process */
typedef struct gw_route_stats gw_route_stats_t; /* one route */
typedef struct gw_up_stats gw_up_stats_t;       /* one upstream instance of one route */

typedef enum {
    GW_RETRY_CONNECT, /* connect failed */
    GW_RETRY_RESET,   /* connection reset / closed before a response */
    GW_RETRY_TIMEOUT, /* per-try timeout */
    GW_RETRY_503,     /* the upstream answered 503 */
    GW_RETRY_NREASONS
} gw_retry_reason_t;

int gw_metrics_new(gw_metrics_t **out); /* 0 or -ENOMEM */
void gw_metrics_free(gw_metrics_t *m);  /* NULL is a no-op; frees every series */

/* Finds or creates the series of a route (by name) / of an upstream URL within it.
 * Thread-safe (a mutex: called when configs are applied, not per request).
 * Returns NULL on ENOMEM. */
gw_route_stats_t *gw_metrics_route(gw_metrics_t *m, const char *route);
gw_up_stats_t *gw_metrics_upstream(gw_metrics_t *m, gw_route_stats_t *r, const char *url);

/* A client request answered by the gateway on this route (any status, including its
 * own 401/429/502/504), with its total duration. */
void gw_route_observe(gw_route_stats_t *r, int status, uint64_t duration_us);
void gw_route_retry(gw_route_stats_t *r, gw_retry_reason_t why);
void gw_route_budget_exhausted(gw_route_stats_t *r); /* a retry the budget refused */
void gw_route_rate_limited(gw_route_stats_t *r);
void gw_route_auth_failed(gw_route_stats_t *r, int status); /* 401 or 403 */

/* A request held while the route's service is scaled to zero (now: uv_hrtime), and its
 * end: dispatched (the first dispatch of a cold start observes the cold start histogram,
 * from the first request held) or not (expired, client gone). Any worker. */
void gw_route_hold(gw_route_stats_t *r, uint64_t now_ns);
void gw_route_unhold(gw_route_stats_t *r, int dispatched, uint64_t now_ns);
int64_t gw_route_held(gw_route_stats_t *r); /* requests held now, all workers */

/* One attempt on an upstream: status 100..599 of its response, or 0 when none came
 * (connect failure, reset, timeout), with the attempt's duration. */
void gw_up_observe(gw_up_stats_t *u, int status, uint64_t duration_us);
void gw_up_ejected(gw_up_stats_t *u);
/* Gauges (absolute values are summed over workers, so these are deltas). */
void gw_up_healthy_add(gw_up_stats_t *u, int delta); /* instances (worker views) healthy */
void gw_up_pool_add(gw_up_stats_t *u, int idle_delta, int active_delta);

/* Appends (Prometheus text 0.0.4, promtool-clean; HELP and TYPE always present):
 *  cmesh_gateway_requests_total{route,code}                         counter
 *  cmesh_gateway_request_duration_seconds{route}                    histogram
 *  cmesh_gateway_retries_total{route,reason=connect|reset|timeout|503} counter
 *  cmesh_gateway_retry_budget_exhausted_total{route}                counter
 *  cmesh_gateway_rate_limited_total{route}                          counter
 *  cmesh_gateway_auth_failures_total{route,code}                    counter
 *  cmesh_gateway_cold_start_seconds{route}                          histogram
 *  cmesh_gateway_held_requests{route}                               gauge
 *  cmesh_gateway_upstream_requests_total{route,upstream,code}       counter (code "none"
 *                                                                     when no response)
 *  cmesh_gateway_upstream_request_duration_seconds{route,upstream}  histogram
 *  cmesh_gateway_upstream_ejections_total{route,upstream}           counter
 *  cmesh_gateway_upstream_healthy{route,upstream}                   gauge
 *  cmesh_gateway_upstream_connections{route,upstream,state=idle|active} gauge
 * Series of upstreams no longer configured keep their last values.
 * Returns 0 or -ENOMEM. */
int gw_metrics_render(gw_metrics_t *m, cm_buf_t *out);

#endif
