/* gateway/snapshot.c: config snapshots (snapshot.h): built from a config with their
 * verifier and metric series, made current under the shared lock, every worker woken
 * to rebuild its table; the run-time replacement of a route's upstreams (admin.c). */
#include "gateway/snapshot.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "gateway/balancer.h"

static void snap_free(gw_snap_t *s)
{
    if (s->ustats)
        for (int i = 0; i < s->cfg->nroutes; i++)
            free(s->ustats[i]);
    free(s->ustats);
    free(s->rstats);
    gw_auth_free(s->auth);
    gw_config_free(s->cfg);
    free(s);
}

void gw_snap_hold(gw_snap_t *s)
{
    atomic_fetch_add(&s->refs, 1);
}

void gw_snap_release(gw_snap_t *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1)
        snap_free(s);
}

gw_snap_t *gw_snap_acquire(gw_shared_t *g)
{
    pthread_mutex_lock(&g->mu);
    gw_snap_t *s = g->snap;
    atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&g->mu);
    return s;
}

uint64_t gw_snap_gen(gw_shared_t *g)
{
    pthread_mutex_lock(&g->mu);
    uint64_t gen = g->snap ? g->snap->gen : 0;
    pthread_mutex_unlock(&g->mu);
    return gen;
}

static int snap_new(gw_shared_t *g, gw_config_t *cfg, gw_snap_t **out, char *err, size_t cap)
{
    gw_snap_t *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    atomic_init(&s->refs, 1);
    s->cfg = cfg;
    int rc = 0;
    if (cfg->auth.key_file[0] && (rc = gw_auth_new(&cfg->auth, &s->auth, err, cap)) < 0)
        goto fail;
    rc = -ENOMEM;
    s->rstats = calloc((size_t)cfg->nroutes + 1, sizeof *s->rstats);
    s->ustats = calloc((size_t)cfg->nroutes + 1, sizeof *s->ustats);
    if (!s->rstats || !s->ustats)
        goto fail;
    for (int i = 0; i < cfg->nroutes; i++) {
        const gw_route_cfg_t *r = &cfg->routes[i];
        if (!(s->rstats[i] = gw_metrics_route(g->metrics, r->name)) ||
            !(s->ustats[i] = calloc((size_t)r->nupstreams, sizeof *s->ustats[i])))
            goto fail;
        for (int j = 0; j < r->nupstreams; j++)
            if (!(s->ustats[i][j] =
                      gw_metrics_upstream(g->metrics, s->rstats[i], r->upstreams[j].url)))
                goto fail;
    }
    *out = s;
    return 0;
fail:
    if (rc == -ENOMEM)
        snprintf(err, cap, "out of memory");
    s->cfg = NULL; /* the caller keeps cfg on failure */
    if (s->ustats)
        for (int i = 0; i < cfg->nroutes; i++)
            free(s->ustats[i]);
    free(s->ustats);
    free(s->rstats);
    gw_auth_free(s->auth);
    free(s);
    return rc;
}

int gw_apply(gw_shared_t *g, gw_config_t *cfg, char *err, size_t cap)
{
    gw_snap_t *s;
    int rc = snap_new(g, cfg, &s, err, cap);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&g->mu);
    gw_snap_t *old = g->snap;
    s->gen = ++g->gen;
    g->snap = s;
    for (int i = 0; i < g->nworkers; i++)
        uv_async_send(&g->workers[i]->wake);
    pthread_mutex_unlock(&g->mu);
    gw_snap_release(old);
    return 0;
}

/* "a, b, c" of the n URLs (cut short with "..." when out is full). */
static void url_list(char *out, size_t cap, const gw_upstream_cfg_t *u, int n)
{
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < n && len < cap; i++) {
        int k = snprintf(out + len, cap - len, "%s%s", i ? ", " : "", u[i].url);
        if (k < 0 || (size_t)k >= cap - len) {
            snprintf(out + (cap > 4 ? cap - 4 : 0), cap > 4 ? 4 : cap, "...");
            break;
        }
        len += (size_t)k;
    }
}

/* one edit at a time: read the current config, apply the edited copy */
static pthread_mutex_t edit = PTHREAD_MUTEX_INITIALIZER;

int gw_set_scaled_to_zero(gw_shared_t *g, const char *name, int on)
{
    pthread_mutex_lock(&edit);
    gw_snap_t *cur = gw_snap_acquire(g);
    int rc = -ENOENT, found = -1;
    for (int i = 0; i < cur->cfg->nroutes; i++)
        if (strcmp(cur->cfg->routes[i].name, name) == 0)
            found = i;
    if (found >= 0 && cur->cfg->routes[found].scaled_to_zero == !!on)
        rc = 0; /* already so: no new snapshot, no worker woken */
    gw_config_t *cfg = found >= 0 && rc < 0 ? gw_config_dup(cur->cfg) : NULL;
    gw_snap_release(cur);
    if (cfg) {
        cfg->routes[found].scaled_to_zero = !!on;
        char err[256];
        rc = gw_apply(g, cfg, err, sizeof err);
        if (rc < 0)
            gw_config_free(cfg);
    } else if (found >= 0 && rc < 0) {
        rc = -ENOMEM;
    }
    pthread_mutex_unlock(&edit);
    return rc;
}

int gw_replace_upstreams(gw_shared_t *g, const char *name, char **urls, int n, const char *who,
                         char *err, size_t cap)
{
    if (n < 1 || n > GW_LB_MAX_HOSTS) {
        snprintf(err, cap, "give 1 to %d upstream URLs", GW_LB_MAX_HOSTS);
        return -EINVAL;
    }
    gw_upstream_cfg_t *ups = calloc((size_t)n, sizeof *ups);
    if (!ups)
        return -ENOMEM;
    for (int i = 0; i < n; i++) {
        if (gw_upstream_parse(urls[i], &ups[i], err, cap) < 0) {
            free(ups);
            return -EINVAL;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(ups[j].url, ups[i].url) == 0) {
                snprintf(err, cap, "upstream %s given twice", ups[i].url);
                free(ups);
                return -EINVAL;
            }
    }
    pthread_mutex_lock(&edit);
    gw_snap_t *cur = gw_snap_acquire(g);
    gw_config_t *cfg = gw_config_dup(cur->cfg);
    gw_snap_release(cur);
    int rc = cfg ? -ENOENT : -ENOMEM;
    for (int i = 0; cfg && i < cfg->nroutes; i++) {
        gw_route_cfg_t *r = &cfg->routes[i];
        if (strcmp(r->name, name) != 0)
            continue;
        for (int j = 0; j < n; j++) /* an instance that stays keeps its weight */
            for (int k = 0; k < r->nupstreams; k++)
                if (strcmp(r->upstreams[k].url, ups[j].url) == 0)
                    ups[j].weight = r->upstreams[k].weight;
        char before[2048], after[2048];
        url_list(before, sizeof before, r->upstreams, r->nupstreams);
        url_list(after, sizeof after, ups, n);
        free(r->upstreams);
        r->upstreams = ups;
        r->nupstreams = n;
        r->scaled_to_zero = 0; /* a set to route to: its held requests go now */
        ups = NULL;
        rc = gw_apply(g, cfg, err, cap);
        if (rc == 0) {
            cfg = NULL;
            cm_log_msg(CM_LOG_INFO,
                       "gateway: admin: route %s: upstreams replaced by %s: [%s] -> [%s]", name,
                       who, before, after);
        }
        break;
    }
    gw_config_free(cfg);
    free(ups);
    pthread_mutex_unlock(&edit);
    return rc;
}
