/* gateway/table_types.h: a worker's routing table (table.c builds it):
 *
 *   gw_table_t   a worker's view of one snapshot: routes with their instances; held by
 *                every exchange that started on it, so a reload never pulls an instance
 *                from under a request in flight.
 *   gw_rt_t      one route of it: its instances, balancer, retry budget.
 *   gw_inst_t    one upstream instance of one route in one worker: connection pool
 *                (upstream.c), health (health.c), outlier state. Carried over to the
 *                next table when the new config still names it (same route, same URL).
 *
 * Who owns what, until when (one worker's loop; no locks):
 *   - the worker holds its current table; every exchange holds the table it started on
 *     until it finishes (gw_table_t.refs). A table holds its snapshot and each instance
 *     it names (gw_inst_t.refs), and owns its routes (gw_rt_t): a route lives exactly as
 *     long as its table.
 *   - an instance may outlive the newest table that named it: a reload carries it into
 *     T2, the next drops it and frees T2 while an exchange of T1 still holds T1, hence
 *     the instance. So an instance points at no route and no table: what it needs of
 *     its route's config (pool limits, health checks) it reads from cfg, inside the
 *     snapshot snap, on which it holds a reference of its own until it is freed.
 *   - what needs a route (the balancer's slot, the sibling set for ejection) comes from
 *     the caller: the exchange's route, in the table it holds, and the slot it picked
 *     there (gw_rt_pick, gw_inst_result). An instance's slot differs between tables.
 *   - a connection points at its instance (gw_uconn_t.inst): idle ones are closed when
 *     the instance's last reference goes, busy ones belong to an exchange, which holds
 *     the instance through its table, and a connect the exchange gave up on (it lands
 *     in the pool) holds a reference of its own until it ends (upstream.c). */
#ifndef CMESH_GATEWAY_TABLE_TYPES_H
#define CMESH_GATEWAY_TABLE_TYPES_H

#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include "gateway/balancer.h"
#include "gateway/config.h"
#include "gateway/gateway_types.h"
#include "gateway/gwmetrics.h"
#include "gateway/hold.h"
#include "gateway/retry.h"

typedef struct gw_rt gw_rt_t;
typedef struct gw_inst gw_inst_t;
typedef struct gw_uconn gw_uconn_t;

struct gw_rt {
    const gw_route_cfg_t *cfg; /* in table->snap->cfg */
    gw_route_stats_t *stats;
    gw_inst_t **insts;
    int n;
    gw_lb_host_t *hosts; /* [n], balancer's view of insts[i] */
    gw_lb_t *lb;
    gw_budget_t budget; /* retries of this route in this worker */
    gw_holdq_t held;    /* requests held while its service is scaled to zero (proxy.c);
                           moved to the route of the same name in the worker's next table */
};

struct gw_table {
    int refs; /* the worker's pointer + exchanges started on it */
    gw_worker_t *w;
    gw_snap_t *snap;
    gw_rt_t *routes;
    int n;
};

struct gw_inst {
    int refs; /* tables naming it, its health check in flight, abandoned connects */
    gw_worker_t *w;
    gw_snap_t *snap;           /* held: the snapshot of the newest table that named it */
    const gw_route_cfg_t *cfg; /* its route there (in snap->cfg): valid while snap is */
    char url[GW_URL_MAX];
    char route_name[GW_NAME_MAX];
    struct sockaddr_storage addr;
    int weight;
    gw_up_stats_t *stats;
    /* pool */
    gw_uconn_t *idle; /* most recently used first */
    int nidle, nconns, inflight;
    struct gw_waiter *pending, *pending_tail; /* waiting for a connection slot */
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
    /* drain: dropped from the worker's current table (the registry took it out); it lives
     * on while old tables' exchanges use it, its connections are not pooled again */
    int removed;
    int drain_n; /* what it adds to the gateway's drain count (drain.h) */
};

#endif
