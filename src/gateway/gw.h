/* gateway/gw.h: the gateway's runtime state, shared by its modules (not a public API).
 *
 *   gw_shared_t   one per process: the current snapshot (config + auth + metric series),
 *                 the rate limiter, the workers. Reloads and upstream replacements
 *                 build a new snapshot and wake every worker.
 *   gw_worker_t   one per worker loop: its routing table, exchange pool, read buffer.
 *   gw_table_t    a worker's view of one snapshot: routes with their instances; held
 *                 by every exchange that started on it, so a reload never pulls an
 *                 instance from under a request in flight.
 *   gw_inst_t     one upstream instance of one route in one worker: connection pool,
 *                 health, outlier state, balancer slot. Carried over to the next table
 *                 when the new config still names it (same route, same URL).
 *   gw_uconn_t    one keep-alive connection to an instance.
 *   gw_exch_t     one client request on its way through (proxy.c). */
#ifndef CMESH_GATEWAY_GW_H
#define CMESH_GATEWAY_GW_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <uv.h>

#include "core/buf.h"
#include "core/client.h"
#include "core/http.h"
#include "core/parser.h"
#include "core/timeout.h"
#include "gateway/auth.h"
#include "gateway/balancer.h"
#include "gateway/config.h"
#include "gateway/gwmetrics.h"
#include "gateway/ratelimit.h"

#define GW_MAX_WORKERS  64
#define GW_MAX_ATTEMPTS 10

typedef struct gw_shared gw_shared_t;
typedef struct gw_worker gw_worker_t;
typedef struct gw_table gw_table_t;
typedef struct gw_rt gw_rt_t;
typedef struct gw_inst gw_inst_t;
typedef struct gw_uconn gw_uconn_t;
typedef struct gw_exch gw_exch_t;

/* An exchange waiting for a connection slot of an instance (embedded in gw_exch_t). */
typedef struct gw_waiter {
    struct gw_waiter *next;
    gw_exch_t *ex;
    gw_uconn_t *connecting; /* the connection being opened for ex, if any */
    int queued;             /* in the instance's wait queue */
} gw_waiter_t;

/* An immutable config with what is derived from it; refcounted across threads. */
typedef struct gw_snap {
    atomic_int refs;
    gw_config_t *cfg;
    gw_auth_t *auth;           /* NULL when no key */
    gw_route_stats_t **rstats; /* [nroutes] */
    gw_up_stats_t ***ustats;   /* [nroutes][nupstreams] */
} gw_snap_t;

struct gw_shared {
    pthread_mutex_t mu;
    gw_snap_t *snap; /* current; under mu */
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
    uint64_t rng;
    int stopping;
    int closing; /* handle close callbacks still to come before it is freed */
};

typedef struct gw_budget_slot {
    uint64_t sec;
    uint32_t requests, retries;
} gw_budget_slot_t;
#define GW_BUDGET_SLOTS 10 /* the retry budget looks at the last 10 seconds */

struct gw_rt {
    const gw_route_cfg_t *cfg; /* in table->snap->cfg */
    gw_route_stats_t *stats;
    gw_inst_t **insts;
    int n;
    gw_lb_host_t *hosts; /* [n], balancer's view of insts[i] */
    gw_lb_t *lb;
    gw_budget_slot_t budget[GW_BUDGET_SLOTS];
};

struct gw_table {
    int refs; /* the worker's pointer + exchanges started on it */
    gw_worker_t *w;
    gw_snap_t *snap;
    gw_rt_t *routes;
    int n;
};

struct gw_inst {
    int refs; /* tables naming it */
    gw_worker_t *w;
    gw_rt_t *rt; /* the route of the newest table naming it */
    int index;   /* its slot in rt->hosts */
    char url[GW_URL_MAX];
    char route_name[GW_NAME_MAX];
    struct sockaddr_storage addr;
    int weight;
    gw_up_stats_t *stats;
    /* pool */
    gw_uconn_t *idle; /* most recently used first */
    int nidle, nconns, inflight;
    gw_waiter_t *pending, *pending_tail; /* waiting for a connection slot */
    int npending;
    /* health (active checks) */
    int healthy;
    int hc_ok, hc_fail;
    int hc_busy;
    uv_timer_t hc_timer;
    /* outlier ejection */
    int failures; /* consecutive */
    int times_ejected;
    uint64_t ejected_until_ns;   /* 0 = not ejected */
    uint64_t available_since_ns; /* slow start counts from here */
};

struct gw_uconn {
    uv_tcp_t tcp; /* first: handle data is the uconn */
    uv_connect_t creq;
    gw_inst_t *inst;
    gw_uconn_t *next;       /* idle list */
    gw_exch_t *ex;          /* the exchange using it; NULL when idle */
    gw_waiter_t *wt;        /* while connecting: the waiter to clear when done */
    cm_resparse_t rp;       /* the exchange's response */
    uint64_t idle_since_ms; /* loop time */
    size_t wpending;        /* bytes handed to uv_write, not yet written */
    int connected;
    int fd;     /* the socket's once connected: requests are sent with cm_sock_send */
    int reused; /* it served an earlier request */
    int closing;
    int reading;
};

/* shared.c-level helpers (gateway.c) */
gw_snap_t *gw_snap_acquire(gw_shared_t *g); /* the current snapshot, ref taken */
void gw_snap_release(gw_snap_t *s);
/* Builds a snapshot from cfg (takes ownership on success) and makes it current;
 * wakes every worker. Returns 0 or -errno with err set; cfg untouched on error. */
int gw_apply(gw_shared_t *g, gw_config_t *cfg, char *err, size_t err_cap);
/* Replaces the upstreams of route name (URLs, weight 1) and logs who ("token subject
 * S", "unix socket peer uid N", "peer ADDR") changed what (old -> new URLs). 0, -ENOENT,
 * -EINVAL (err). */
int gw_replace_upstreams(gw_shared_t *g, const char *name, char **urls, int n, const char *who,
                         char *err, size_t err_cap);

/* table.c */
/* Builds the worker's table for snap, carrying over instances of old (may be NULL). */
int gw_table_build(gw_worker_t *w, gw_snap_t *snap, gw_table_t *old, gw_table_t **out);
void gw_table_unref(gw_table_t *t);
/* Drops one reference; the last closes its idle connections and frees it. */
void gw_inst_unref(gw_inst_t *in);
/* Refreshes each host's availability and slow-start weight, then picks. */
gw_inst_t *gw_rt_pick(gw_rt_t *rt, const int *avoid, int navoid, uint64_t key_hash,
                      uint64_t now_ns);
/* The share of its weight in gets now: ramps from 0.1 to 1 over the route's slow_start
 * after it came back (health, ejection) or was added at run time; 1 otherwise. */
double gw_inst_slow_start(const gw_rt_t *rt, const gw_inst_t *in, uint64_t now_ns);
/* Outcome of one attempt, for outlier ejection and peak EWMA. */
void gw_inst_result(gw_inst_t *in, int failed, uint64_t rtt_us, uint64_t now_ns);

/* upstream.c */
/* Gets a connection to in for ex; gw_exch_on_conn() gets it: an idle one at once
 * (inside this call), a new one after connect (status 0 or a negative libuv error, from
 * the loop), or later when the instance is at max_connections and ex waits in wt.
 * Returns 0 (connecting or handed over), 1 (waiting), or -EBUSY (max_pending reached
 * too) / -ENOMEM / a libuv error (connect could not start), with no callback then. */
int gw_uconn_get(gw_inst_t *in, gw_exch_t *ex, gw_waiter_t *wt);
/* Gives the connection back: pooled when reusable (keep-alive, response complete),
 * else closed. Hands it to a waiting exchange first. */
void gw_uconn_release(gw_uconn_t *uc, int reusable);
/* The exchange gave up on its connection request: takes wt out of the wait queue, or
 * lets a connect in progress finish into the pool instead. */
void gw_uconn_cancel_wait(gw_inst_t *in, gw_waiter_t *wt);
/* Writes bytes (copied when they cannot be written at once). 0 or a libuv error. */
int gw_uconn_write(gw_uconn_t *uc, const char *data, size_t len);
void gw_uconn_read_start(gw_uconn_t *uc);
void gw_uconn_read_stop(gw_uconn_t *uc);
void gw_inst_close_idle(gw_inst_t *in, uint64_t older_than_ms); /* loop ms; 0 = all */
void gw_uconn_close(gw_uconn_t *uc);

/* proxy.c: called by upstream.c */
void gw_exch_on_conn(gw_exch_t *ex, gw_uconn_t *uc, int status);
void gw_exch_on_read(gw_exch_t *ex, const char *data, ssize_t nread);
void gw_exch_on_written(gw_exch_t *ex); /* upstream writes drained a bit */
/* The proxy handler (cm_service_t.fallback). */
void gw_proxy_handle(cm_req_t *req);
void gw_exch_pool_free(gw_worker_t *w);

/* health.c */
void gw_health_start(gw_inst_t *in);
void gw_health_stop(gw_inst_t *in, uv_close_cb done);

/* admin.c */
/* The admin listener's handler (cm_service_t.admin): /_cmesh/... and 404 for the rest. */
void gw_admin_serve(cm_req_t *req);

#endif
