/* control/api.h: the control plane's HTTP API on core/router, served by core/server on
 * the control port:
 *   GET /v1/services              services with desired / running / ready counts
 *   GET /v1/services/{name}       its instances (address, state, pid, restarts, ...)
 *       both take ?index=N&wait=DUR: Consul's blocking query (answer as soon as the
 *       index passes N, or after wait: default 5m, at most 10m, plus up to wait/16 of
 *       jitter); the index is in the X-Cmesh-Index header of every answer, and a
 *       service's desired instance count in X-Cmesh-Desired (0: scaled to zero)
 *   PUT /v1/services/{name}/scale {"instances": N} (pins an autoscaled service) or
 *       {"auto": true} (hands it back to the autoscaler)
 *   GET /v1/services/{name}/autoscale  the last decision with its inputs (--explain)
 *   POST /v1/services/{name}/wake  one instance for a service at zero (202), or nothing
 *       to do (200: it already wants instances)
 *   PUT /v1/services/{name}/instances/{id} {"address","port","ttl"}: registers an
 *       instance started by hand (or, again, is its heartbeat); DELETE deregisters it
 *   GET /v1/targets               Prometheus HTTP service discovery
 *   GET /v1/status                everything `cmesh status` shows, with cpu, rss, log tails
 *   GET /v1/ready                 200 when every instance is ready, else 503 naming them
 *   GET /v1/events?after=N        recent events (restarts, scale decisions, rollouts)
 *   GET /v1/history?after=N       per service, a point per 2 s round (rps, p99, error
 *                                 rate, instance counts): the dashboard's charts
 *   GET /  (and /dashboard.js, /dashboard.css, /favicon.svg): the dashboard
 *   PUT /v1/gateways/{id}/ack {"pid","services":{NAME:INDEX},"inflight":{"H:P":N}}: a
 *       gateway (id: its instance id, "gateway%2F0") reports what it applied and what it
 *       still has in flight to instances it removed; leaving instances are checked again
 *   GET /v1/gateways              every gateway's last acknowledgement
 *   POST /v1/services/{name}/rollout  replaces its instances (rollout.h); 202
 *   POST /v1/reload               re-reads cmesh.yaml and applies the difference
 * The handlers find their context in req->state: a cm_api_ctx_t. */
#ifndef CMESH_CONTROL_API_H
#define CMESH_CONTROL_API_H

#include "control/acks.h"
#include "control/autoscale.h"
#include "control/events.h"
#include "control/external.h"
#include "control/history.h"
#include "control/registry.h"
#include "control/rollout.h"
#include "control/spec.h"
#include "control/supervise.h"
#include "core/router.h"

#define CM_API_WAIT_DEFAULT_MS (5ull * 60 * 1000)
#define CM_API_WAIT_MAX_MS     (10ull * 60 * 1000)

/* What the handlers read; the first member of up.c's state, so req->state points to it. */
typedef struct cm_api_ctx {
    const cm_spec_t *spec;
    cm_registry_t *reg;
    cm_sup_t *sup;
    cm_ext_t *ext;             /* instances registered by hand */
    cm_events_t *events;       /* recent events, for /v1/events */
    cm_history_t *history;     /* the charts' points, for /v1/history */
    cm_acks_t *acks;           /* gateways' acknowledgements, for /v1/gateways (drain) */
    cm_autoscale_t *autoscale; /* pins, hand-backs, wakes and --explain */
    cm_rollouts_t *ro;         /* rollouts: POST /v1/services/{name}/rollout */
    /* POST /v1/reload: re-reads cmesh.yaml and applies it (up.c); appends the answer's
     * JSON to out and returns its HTTP status. */
    int (*reload)(void *arg, cm_buf_t *out);
    void *reload_arg;
    int stopping; /* down in progress: scale is refused (409) */
} cm_api_ctx_t;

extern const cm_route_t cm_api_routes[];
extern const int cm_api_nroutes;

#endif
