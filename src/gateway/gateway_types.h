/* gateway/gateway_types.h: the gateway's process-wide and per-worker state (gateway.c
 * owns both; snapshot.c, table.c, upstream.c, proxy.c and admin.c read them).
 *
 *   gw_shared_t   one per process: the current snapshot (snapshot.h), the rate limiter,
 *                 the workers. Reloads and upstream replacements build a new snapshot
 *                 and wake every worker.
 *   gw_worker_t   one per worker loop: its routing table (table_types.h), exchange pool
 *                 (proxy.c), read buffer and defer list (upstream.c). */
#ifndef CMESH_GATEWAY_GATEWAY_TYPES_H
#define CMESH_GATEWAY_GATEWAY_TYPES_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <uv.h>

#include "core/client.h"
#include "gateway/gwmetrics.h"
#include "gateway/ratelimit.h"

#define GW_MAX_WORKERS 64

typedef struct gw_shared gw_shared_t;
typedef struct gw_worker gw_worker_t;
typedef struct gw_snap gw_snap_t;
typedef struct gw_table gw_table_t;
typedef struct gw_exch gw_exch_t;
struct gw_waiter;

struct gw_shared {
    pthread_mutex_t mu;
    gw_snap_t *snap; /* current; under mu */
    uint64_t gen;    /* the last snapshot's generation; under mu */
    gw_ratelimit_t *rl;
    gw_metrics_t *metrics;
    gw_worker_t *workers[GW_MAX_WORKERS]; /* under mu */
    int nworkers;
    /* what a reload rebuilds from */
    char config_path[1024];
    char auth_key[1024];
    char **flag_routes;
    int nflag_routes;
    /* where the server listens (a reload cannot move it: core owns the listeners) */
    char listen_host[256];
    int listen_port;
    int listen_flag; /* --listen was given: it wins over the file's listen: */
    /* the admin API's own listener (admin.c), fixed at start like listen; off when
     * admin_spec is "" */
    char admin_arg[1100];  /* --admin-listen as given, "" when not */
    char admin_spec[1100]; /* in use: "HOST:PORT" or "unix:PATH" (flag, else the file's) */
    char admin_host[256];
    int admin_port;
    int admin_public; /* not loopback: a token with cmesh:admin on every request, always */
    /* --registry: routes follow the control plane's registry (follow.c); NULL when off */
    char registry[512];
    struct gw_follow *follow;
    /* drain reports (drain.h), made by follow.c before the workers start; NULL when off */
    struct gw_drain *drain;
};

struct gw_worker {
    gw_shared_t *g;
    uv_loop_t *loop;
    uv_async_t wake;   /* a new snapshot is there */
    uv_timer_t sweep;  /* closes pooled connections idle too long */
    gw_table_t *table; /* current */
    cm_client_t *hc;   /* active health checks */
    char *rbuf;        /* upstream reads (64 KiB), one per worker */
    gw_exch_t *free_exch;
    /* upstream.c's defer list: connections handed over inside a call, delivered from
     * defer_check (after the iteration's I/O); defer_idle keeps the poll from blocking
     * while it is not empty */
    struct gw_waiter *deferred, *deferred_tail;
    uv_check_t defer_check;
    uv_idle_t defer_idle;
    int defer_on;
    uint64_t rng;
    int stopping;
    int closing;                  /* handle close callbacks still to come before it is freed */
    _Atomic uint64_t applied_gen; /* the snapshot its table is built from (drain.h) */
};

#endif
