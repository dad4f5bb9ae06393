/* gateway/snapshot.h: config snapshots: an immutable config with what is derived from
 * it (verifier, metric series), refcounted across threads; made current by gw_apply,
 * which wakes every worker to build its table from it (snapshot.c). Used by gateway.c
 * (start, SIGHUP) and admin.c (upstream replacement). */
#ifndef CMESH_GATEWAY_SNAPSHOT_H
#define CMESH_GATEWAY_SNAPSHOT_H

#include <stdatomic.h>
#include <stddef.h>

#include "gateway/auth.h"
#include "gateway/config.h"
#include "gateway/gateway_types.h"
#include "gateway/gwmetrics.h"

/* An immutable config with what is derived from it; refcounted across threads. */
struct gw_snap {
    atomic_int refs;
    gw_config_t *cfg;
    gw_auth_t *auth;           /* NULL when no key */
    gw_route_stats_t **rstats; /* [nroutes] */
    gw_up_stats_t ***ustats;   /* [nroutes][nupstreams] */
    uint64_t gen;              /* 1, 2, ... in the order they were made current */
};

gw_snap_t *gw_snap_acquire(gw_shared_t *g); /* the current snapshot, ref taken */
uint64_t gw_snap_gen(gw_shared_t *g);       /* the current snapshot's generation */
void gw_snap_hold(gw_snap_t *s);            /* one more reference on a snapshot already held */
void gw_snap_release(gw_snap_t *s);
/* Builds a snapshot from cfg (takes ownership on success) and makes it current;
 * wakes every worker. Returns 0 or -errno with err set; cfg untouched on error. */
int gw_apply(gw_shared_t *g, gw_config_t *cfg, char *err, size_t err_cap);
/* Replaces the upstreams of route name (URLs, weight 1) and logs who ("token subject
 * S", "unix socket peer uid N", "peer ADDR") changed what (old -> new URLs). 0, -ENOENT,
 * -EINVAL (err). */
int gw_replace_upstreams(gw_shared_t *g, const char *name, char **urls, int n, const char *who,
                         char *err, size_t err_cap);

/* Marks route name as scaled to zero (on: its requests are held) or not, keeping its
 * upstreams; a replacement of the upstreams ends it too. 0, -ENOENT, -ENOMEM. */
int gw_set_scaled_to_zero(gw_shared_t *g, const char *name, int on);

#endif
