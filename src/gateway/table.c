/* gateway/table.c: a worker's routing table for one config snapshot (table_types.h), the
 * instance state that survives reloads, and what decides an instance's availability:
 * active health, outlier ejection (with its cap), slow start. */
#include "gateway/table.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "gateway/drain.h"
#include "gateway/health.h"
#include "gateway/upstream.h"

#define SLOW_START_FLOOR 0.1 /* a returning instance starts at a tenth of its weight */

static void inst_freed(uv_handle_t *h)
{
    gw_inst_t *in = h->data;
    if (in->snap)
        gw_snap_release(in->snap);
    free(in);
}

void gw_inst_drain_note(gw_inst_t *in)
{
    if (!in->removed)
        return;
    int v = in->refs <= 0 ? 0 : in->inflight > in->nconns ? in->inflight : in->nconns;
    if (v == in->drain_n)
        return;
    gw_drain_count(in->w->g->drain, in->url, v - in->drain_n);
    in->drain_n = v;
}

void gw_table_mark_removed(gw_table_t *old, gw_table_t *t)
{
    for (int i = 0; old && i < old->n; i++)
        for (int j = 0; j < old->routes[i].n; j++) {
            gw_inst_t *in = old->routes[i].insts[j];
            int kept = 0;
            for (int a = 0; a < t->n && !kept; a++)
                for (int b = 0; b < t->routes[a].n && !kept; b++)
                    kept = t->routes[a].insts[b] == in;
            if (kept || in->removed)
                continue;
            in->removed = 1;
            gw_inst_close_idle(in, 0); /* before the report: no idle socket meets the TERM */
            gw_inst_drain_note(in);
        }
}

void gw_inst_unref(gw_inst_t *in)
{
    if (--in->refs > 0)
        return;
    gw_inst_close_idle(in, 0);
    gw_inst_drain_note(in); /* refs 0: its share goes */
    if (in->stats && in->healthy)
        gw_up_healthy_add(in->stats, -1);
    gw_health_stop(in, inst_freed);
}

static gw_inst_t *inst_new(gw_worker_t *w, const gw_route_cfg_t *rc, const gw_upstream_cfg_t *u)
{
    gw_inst_t *in = calloc(1, sizeof *in);
    if (!in)
        return NULL;
    in->w = w;
    snprintf(in->url, sizeof in->url, "%s", u->url);
    snprintf(in->route_name, sizeof in->route_name, "%s", rc->name);
    /* numeric address already resolved when the config was loaded: no DNS here */
    if (uv_ip4_addr(u->host, u->port, (struct sockaddr_in *)&in->addr) != 0 &&
        uv_ip6_addr(u->host, u->port, (struct sockaddr_in6 *)&in->addr) != 0) {
        free(in);
        return NULL;
    }
    in->healthy = 1; /* optimistic: serve at once, active checks correct it */
    uv_timer_init(w->loop, &in->hc_timer);
    in->hc_timer.data = in;
    return in;
}

static gw_inst_t *find_inst(gw_table_t *old, const char *route, const char *url)
{
    if (!old)
        return NULL;
    for (int i = 0; i < old->n; i++) {
        gw_rt_t *rt = &old->routes[i];
        if (strcmp(rt->cfg->name, route) != 0)
            continue;
        for (int j = 0; j < rt->n; j++)
            if (strcmp(rt->insts[j]->url, url) == 0)
                return rt->insts[j];
    }
    return NULL;
}

static void table_free(gw_table_t *t)
{
    for (int i = 0; i < t->n; i++) {
        gw_rt_t *rt = &t->routes[i];
        for (int j = 0; j < rt->n; j++)
            if (rt->insts[j])
                gw_inst_unref(rt->insts[j]);
        free(rt->insts);
        free(rt->hosts);
        gw_lb_free(rt->lb);
    }
    free(t->routes);
    if (t->snap)
        gw_snap_release(t->snap);
    free(t);
}

void gw_table_unref(gw_table_t *t)
{
    if (t && --t->refs == 0)
        table_free(t);
}

static int route_build(gw_worker_t *w, gw_table_t *t, int ri, gw_table_t *old)
{
    const gw_route_cfg_t *rc = &t->snap->cfg->routes[ri];
    gw_rt_t *rt = &t->routes[ri];
    rt->cfg = rc;
    rt->stats = t->snap->rstats[ri];
    rt->n = rc->nupstreams;
    rt->insts = calloc((size_t)rt->n, sizeof *rt->insts);
    rt->hosts = calloc((size_t)rt->n, sizeof *rt->hosts);
    if (!rt->insts || !rt->hosts)
        return -ENOMEM;
    for (int j = 0; j < rt->n; j++) {
        const gw_upstream_cfg_t *u = &rc->upstreams[j];
        gw_inst_t *in = find_inst(old, rc->name, u->url);
        int fresh = !in;
        if (fresh && !(in = inst_new(w, rc, u)))
            return -ENOMEM;
        in->refs++;
        rt->insts[j] = in;
        if (in->snap != t->snap) { /* the newest config is the one it follows */
            gw_snap_hold(t->snap);
            if (in->snap)
                gw_snap_release(in->snap);
            in->snap = t->snap;
        }
        in->cfg = rc;
        in->weight = u->weight;
        in->stats = t->snap->ustats[ri][j];
        rt->hosts[j] = (gw_lb_host_t){.key = in->url, .weight = u->weight, .available = 1};
        if (fresh)
            gw_up_healthy_add(in->stats, 1);
        if (fresh && old) /* added at run time: ramps up like a returning one (Envoy too) */
            in->available_since_ns = uv_hrtime();
        gw_health_start(in); /* (re)started: the interval may have changed */
    }
    /* the balancer's latency view carries over with the instances */
    for (int j = 0; j < rt->n; j++) {
        gw_inst_t *in = rt->insts[j];
        if (in->refs > 1 && old) {
            for (int i = 0; i < old->n; i++) {
                gw_rt_t *ort = &old->routes[i];
                if (strcmp(ort->cfg->name, rc->name) == 0) {
                    for (int k = 0; k < ort->n; k++)
                        if (ort->insts[k] == in) {
                            rt->hosts[j].ewma_us = ort->hosts[k].ewma_us;
                            rt->hosts[j].ewma_ns = ort->hosts[k].ewma_ns;
                        }
                }
            }
        }
    }
    return gw_lb_new(rc->balancer, rt->hosts, rt->n, rc->panic_percent,
                     w->rng++ * 0x9e3779b97f4a7c15ULL, &rt->lb);
}

int gw_table_build(gw_worker_t *w, gw_snap_t *snap, gw_table_t *old, gw_table_t **out)
{
    gw_table_t *t = calloc(1, sizeof *t);
    if (!t) {
        gw_snap_release(snap);
        return -ENOMEM;
    }
    t->refs = 1;
    t->w = w;
    t->snap = snap;
    t->n = snap->cfg->nroutes;
    t->routes = calloc((size_t)(t->n ? t->n : 1), sizeof *t->routes);
    if (!t->routes) {
        table_free(t);
        return -ENOMEM;
    }
    for (int i = 0; i < t->n; i++) {
        int rc = route_build(w, t, i, old);
        if (rc < 0) {
            t->n = i + 1;
            table_free(t);
            return rc;
        }
    }
    *out = t;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* availability                                                               */

static int ejected(gw_inst_t *in, uint64_t now)
{
    if (!in->ejected_until_ns)
        return 0;
    if (now < in->ejected_until_ns)
        return 1;
    in->ejected_until_ns = 0; /* back: slow start from now */
    in->available_since_ns = now;
    in->failures = 0;
    return 0;
}

double gw_inst_slow_start(const gw_rt_t *rt, const gw_inst_t *in, uint64_t now)
{
    uint64_t ramp = rt->cfg->slow_start_ms * 1000000ULL;
    if (!ramp || !in->available_since_ns || now >= in->available_since_ns + ramp)
        return 1.0;
    double f = (double)(now - in->available_since_ns) / (double)ramp;
    return f < SLOW_START_FLOOR ? SLOW_START_FLOOR : f;
}

gw_inst_t *gw_rt_pick(gw_rt_t *rt, const int *avoid, int navoid, uint64_t key_hash, uint64_t now,
                      int *slot)
{
    for (int i = 0; i < rt->n; i++) {
        gw_inst_t *in = rt->insts[i];
        gw_lb_host_t *h = &rt->hosts[i];
        int over = in->inflight >= rt->cfg->max_requests;
        h->available = !in->removed && in->healthy && !ejected(in, now) && !over;
        h->inflight = in->inflight;
        h->weight = in->weight * gw_inst_slow_start(rt, in, now);
    }
    int i = gw_lb_pick(rt->lb, avoid, navoid, key_hash, now);
    if (slot)
        *slot = i;
    return rt->insts[i];
}

/* Ejects in for base x times ejected (capped), unless that would put more than the
 * allowed share of the set out: with one or two instances a route keeps at least one. */
static void maybe_eject(gw_rt_t *rt, gw_inst_t *in, uint64_t now)
{
    const gw_route_cfg_t *rc = rt->cfg;
    int out = 0;
    for (int i = 0; i < rt->n; i++)
        if (rt->insts[i] != in && ejected(rt->insts[i], now))
            out++;
    if ((out + 1) * 100 > rc->outlier_max_percent * rt->n)
        return;
    in->times_ejected++;
    uint64_t ms = rc->outlier_base_ms * (uint64_t)in->times_ejected;
    if (ms > rc->outlier_max_ms)
        ms = rc->outlier_max_ms;
    in->ejected_until_ns = now + ms * 1000000ULL;
    in->failures = 0;
    gw_up_ejected(in->stats);
    cm_log_msg(CM_LOG_WARN, "gateway: route %s: ejected %s for %llu ms (%d consecutive failures)",
               in->route_name, in->url, (unsigned long long)ms, rc->outlier_failures);
}

void gw_inst_result(gw_rt_t *rt, int slot, int failed, uint64_t rtt_us, uint64_t now)
{
    gw_inst_t *in = rt->insts[slot];
    gw_lb_observe(&rt->hosts[slot], rtt_us, now);
    if (!failed) {
        in->failures = 0;
        if (in->times_ejected && !in->ejected_until_ns && in->available_since_ns &&
            now > in->available_since_ns + rt->cfg->outlier_max_ms * 1000000ULL)
            in->times_ejected = 0; /* a long good spell forgets the history */
        return;
    }
    if (rt->cfg->outlier_failures > 0 && ++in->failures >= rt->cfg->outlier_failures &&
        !in->ejected_until_ns)
        maybe_eject(rt, in, now);
}
