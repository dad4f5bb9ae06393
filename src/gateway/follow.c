/* gateway/follow.c: the registry watch of `cmesh gateway --registry` (follow.h): each
 * route follows its `service:` (else the service of its name). It runs
 * on a loop and thread of its own: the workers' loops belong to core's server, and
 * gw_replace_upstreams may be called from any thread (it serialises edits and wakes
 * every worker). The last set per service is kept so a SIGHUP reload, which rebuilds
 * from the file, does not undo what the registry said. */
#include "gateway/follow.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "core/client.h"
#include "core/log.h"
#include "core/watch.h"
#include "gateway/drain.h"
#include "gateway/gwmetrics.h"
#include "gateway/snapshot.h"

#define WAKE_TIMEOUT_MS 5000 /* one POST .../wake */
#define WAKE_RETRY_MS   1000 /* a failed wake is asked again while requests wait */

/* A service at zero and the wake its held requests need, once per cold start. */
typedef enum wake {
    WAKE_NONE,   /* not asked in this cold start: the first held request asks */
    WAKE_ASKING, /* POST .../wake in flight -> WAKE_ASKED (2xx), WAKE_NONE + retry timer */
    WAKE_ASKED,  /* the control plane said yes; waits for the ready set (or a new zero) */
} wake_t;

typedef struct last {
    char **urls; /* the last non-empty ready set, NULL before one came */
    int n;
    int zero; /* scaled to zero on purpose (desired 0, none ready), no ready set since */
    wake_t wake;
} last_t;

struct gw_follow {
    gw_shared_t *g;
    char base[512];
    char who[600];
    uv_loop_t loop;
    uv_async_t stop;
    pthread_t thread;
    cm_watch_t *watch;
    cm_client_t *hc;    /* the wakes */
    uv_async_t kick;    /* a worker held a request: see whether a wake is due */
    uv_timer_t retry;   /* a wake that failed is asked again */
    gw_drain_t *drain;  /* acknowledgements of what was applied (drain.h) */
    pthread_mutex_t mu; /* guards last[]; held while a set or a reload is applied */
    int n;              /* services watched (each once, however many routes follow it) */
    char **names;       /* [n] the services */
    last_t *last;       /* [n] */
    int nroutes;
    char **routes;             /* [nroutes] route names */
    int *route_svc;            /* [nroutes] the service index each follows */
    gw_route_stats_t **rstats; /* [nroutes] their held-request gauges */
};

static void free_set(char **u, int n)
{
    for (int i = 0; i < n; i++)
        free(u[i]);
    free(u);
}

/* Gives service i's set to every route that follows it. */
static void apply(gw_follow_t *f, int i, char **urls, int n)
{
    for (int r = 0; r < f->nroutes; r++) {
        if (f->route_svc[r] != i)
            continue;
        char err[512];
        int rc = gw_replace_upstreams(f->g, f->routes[r], urls, n, f->who, err, sizeof err);
        if (rc < 0)
            cm_log_msg(CM_LOG_WARN, "gateway: registry: route %s: new set refused: %s",
                       f->routes[r], rc == -ENOENT ? "the route is gone" : err);
    }
}

/* ------------------------------------------------------------------------- */
/* scale to zero: the wake                                                    */

static void on_retry(uv_timer_t *t);

/* Requests the routes of service i hold now, over every worker. */
static int64_t held(gw_follow_t *f, int i)
{
    int64_t n = 0;
    for (int r = 0; r < f->nroutes; r++)
        if (f->route_svc[r] == i && f->rstats[r])
            n += gw_route_held(f->rstats[r]);
    return n;
}

typedef struct wake_req {
    gw_follow_t *f;
    int i;
} wake_req_t;

static void on_woken(int status, const char *body, size_t len, void *data)
{
    wake_req_t *wr = data;
    gw_follow_t *f = wr->f;
    int i = wr->i;
    free(wr);
    if (status == -ECANCELED)
        return; /* stopping */
    pthread_mutex_lock(&f->mu);
    last_t *l = &f->last[i];
    int ok = status >= 200 && status < 300;
    if (l->wake == WAKE_ASKING)
        l->wake = ok ? WAKE_ASKED : WAKE_NONE;
    pthread_mutex_unlock(&f->mu);
    if (ok) {
        cm_log_msg(CM_LOG_INFO, "gateway: registry: service %s: wake asked (%d): %.*s", f->names[i],
                   status, (int)(len > 200 ? 200 : len), body);
        return;
    }
    cm_log_msg(CM_LOG_WARN,
               "gateway: registry: service %s: wake refused (%s %d); asking again in %d ms "
               "while requests wait",
               f->names[i], status < 0 ? strerror(-status) : "status", status, WAKE_RETRY_MS);
    if (f->hc && !uv_is_active((uv_handle_t *)&f->retry))
        uv_timer_start(&f->retry, on_retry, WAKE_RETRY_MS, 0);
}

/* Asks the control plane for an instance of service i when it is at zero, not asked in
 * this cold start, and requests wait for it. Runs on the follow loop. */
static void maybe_wake(gw_follow_t *f, int i)
{
    if (!f->hc)
        return; /* stopping */
    pthread_mutex_lock(&f->mu);
    last_t *l = &f->last[i];
    int due = l->zero && l->wake == WAKE_NONE && held(f, i) > 0;
    if (due)
        l->wake = WAKE_ASKING;
    pthread_mutex_unlock(&f->mu);
    if (!due)
        return;
    char url[700];
    snprintf(url, sizeof url, "%s/v1/services/%s/wake", f->base, f->names[i]);
    wake_req_t *wr = malloc(sizeof *wr);
    if (wr)
        *wr = (wake_req_t){f, i};
    int rc = wr ? cm_client_post(f->hc, url, WAKE_TIMEOUT_MS, on_woken, wr) : -ENOMEM;
    if (rc < 0) {
        free(wr);
        pthread_mutex_lock(&f->mu);
        l->wake = WAKE_NONE;
        pthread_mutex_unlock(&f->mu);
        uv_timer_start(&f->retry, on_retry, WAKE_RETRY_MS, 0);
        return;
    }
    cm_log_msg(CM_LOG_INFO,
               "gateway: registry: service %s is scaled to zero and %lld requests wait: "
               "asking %s to wake it",
               f->names[i], (long long)held(f, i), f->base);
}

static void wake_all(gw_follow_t *f)
{
    for (int i = 0; i < f->n; i++)
        maybe_wake(f, i);
}

static void on_kick(uv_async_t *a)
{
    wake_all(a->data);
}

static void on_retry(uv_timer_t *t)
{
    wake_all(t->data);
}

void gw_follow_demand(gw_follow_t *f)
{
    if (f)
        uv_async_send(&f->kick);
}

/* Marks (or unmarks) every route of service i scaled to zero. Under f->mu. */
static void set_zero(gw_follow_t *f, int i, int on)
{
    for (int r = 0; r < f->nroutes; r++)
        if (f->route_svc[r] == i && gw_set_scaled_to_zero(f->g, f->routes[r], on) < 0)
            cm_log_msg(CM_LOG_WARN, "gateway: registry: route %s: cannot mark it %s", f->routes[r],
                       on ? "scaled to zero" : "serving");
}

static void on_set(int i, const char *service, char **urls, int n, void *data)
{
    gw_follow_t *f = data;
    if (n == 0) {
        int desired = cm_watch_desired(f->watch, i);
        pthread_mutex_lock(&f->mu);
        last_t *l = &f->last[i];
        int was = l->zero;
        if (desired == 0) { /* on purpose: hold and wake, a new cold start */
            l->zero = 1;
            l->wake = WAKE_NONE;
            set_zero(f, i, 1);
        }
        pthread_mutex_unlock(&f->mu);
        /* at zero no new request reaches the last instances (they are held here), so the
         * control plane may stop them once every worker holds: acknowledged as a set */
        if (desired == 0)
            gw_drain_applied(f->drain, i, cm_watch_index(f->watch, i));
        if (desired == 0 && !was)
            cm_log_msg(CM_LOG_INFO,
                       "gateway: registry: service %s is scaled to zero: its routes hold "
                       "requests (up to their cold_start timeout) and wake it",
                       service);
        else if (desired != 0 && !was)
            /* An empty route answers 503 to everyone; the last set may still serve (its
             * instances are health-checked and ejected by the gateway on its own). */
            cm_log_msg(CM_LOG_WARN,
                       "gateway: registry: service %s has no ready instance; its routes keep "
                       "their last upstreams",
                       service);
        maybe_wake(f, i);
        return;
    }
    char **copy = calloc((size_t)n, sizeof *copy);
    for (int k = 0; copy && k < n; k++)
        if (!(copy[k] = strdup(urls[k]))) {
            free_set(copy, k);
            copy = NULL;
        }
    pthread_mutex_lock(&f->mu); /* a reload applies either before or after this set */
    if (copy) {
        free_set(f->last[i].urls, f->last[i].n);
        f->last[i].urls = copy;
        f->last[i].n = n;
    }
    int was_zero = f->last[i].zero;
    f->last[i].zero = 0; /* the replacement ends it in the config too: held requests go */
    f->last[i].wake = WAKE_NONE;
    apply(f, i, urls, n);
    pthread_mutex_unlock(&f->mu);
    /* acknowledged to the control plane once every worker routes on it (drain.h) */
    gw_drain_applied(f->drain, i, cm_watch_index(f->watch, i));
    if (was_zero)
        cm_log_msg(CM_LOG_INFO,
                   "gateway: registry: service %s is back from zero with %d ready instance%s: "
                   "its held requests go",
                   service, n, n == 1 ? "" : "s");
}

static void on_stop(uv_async_t *a)
{
    gw_follow_t *f = a->data;
    cm_watch_free(f->watch); /* the pointer stays: the age is read until f is freed */
    gw_drain_close(f->drain);
    cm_client_free(f->hc); /* a wake in flight ends with -ECANCELED */
    f->hc = NULL;
    uv_close((uv_handle_t *)&f->stop, NULL);
    uv_close((uv_handle_t *)&f->kick, NULL);
    uv_close((uv_handle_t *)&f->retry, NULL);
}

static void *run(void *arg)
{
    gw_follow_t *f = arg;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void follow_free(gw_follow_t *f)
{
    if (f->g->drain == f->drain)
        f->g->drain = NULL;
    gw_drain_free(f->drain);
    for (int i = 0; i < f->n; i++) {
        free(f->names[i]);
        free_set(f->last[i].urls, f->last[i].n);
    }
    free(f->names);
    free(f->last);
    for (int r = 0; r < f->nroutes; r++)
        free(f->routes[r]);
    free(f->routes);
    free(f->route_svc);
    free(f->rstats);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

int gw_follow_start(gw_shared_t *g, const char *base, gw_follow_t **out)
{
    gw_follow_t *f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    pthread_mutex_init(&f->mu, NULL);
    f->g = g;
    snprintf(f->base, sizeof f->base, "%s", base);
    snprintf(f->who, sizeof f->who, "registry %s", base);
    gw_snap_t *s = gw_snap_acquire(g);
    int n = s->cfg->nroutes;
    f->names = calloc((size_t)n + 1, sizeof *f->names);
    f->last = calloc((size_t)n + 1, sizeof *f->last);
    f->routes = calloc((size_t)n + 1, sizeof *f->routes);
    f->route_svc = calloc((size_t)n + 1, sizeof *f->route_svc);
    f->rstats = calloc((size_t)n + 1, sizeof *f->rstats);
    int rc = f->names && f->last && f->routes && f->route_svc && f->rstats ? 0 : -ENOMEM;
    for (int r = 0; rc == 0 && r < n; r++) {
        const gw_route_cfg_t *rt = &s->cfg->routes[r];
        const char *svc = rt->service[0] ? rt->service : rt->name;
        int i = 0;
        while (i < f->n && strcmp(f->names[i], svc) != 0)
            i++;
        if (i == f->n && (f->names[i] = strdup(svc)))
            f->n++;
        if (!(f->routes[r] = strdup(rt->name)) || i == f->n) {
            free(f->routes[r]);
            rc = -ENOMEM;
            break;
        }
        f->route_svc[r] = i;
        f->rstats[r] = s->rstats[r]; /* series live until exit, whatever the snapshot */
        f->nroutes++;
    }
    gw_snap_release(s);
    if (rc == 0 && (rc = uv_loop_init(&f->loop)) == 0) {
        rc = cm_client_new(&f->loop, &f->hc);
        if (rc == 0 && (rc = gw_drain_new(&f->loop, g, base, getenv("CMESH_INSTANCE"), f->names,
                                          f->n, &f->drain)) < 0)
            cm_client_free(f->hc);
        if (rc == 0 && (rc = cm_watch_new(&f->loop, base, (const char *const *)f->names, f->n, 0,
                                          on_set, f, &f->watch)) < 0) {
            cm_client_free(f->hc);
            gw_drain_close(f->drain); /* its handles close on the loop */
        }
        if (rc < 0)
            uv_run(&f->loop, UV_RUN_DEFAULT);
        if (rc == 0)
            g->drain = f->drain; /* before the workers start: they only read it */
        if (rc == 0) {
            uv_async_init(&f->loop, &f->stop, on_stop);
            f->stop.data = f;
            uv_async_init(&f->loop, &f->kick, on_kick);
            f->kick.data = f;
            uv_timer_init(&f->loop, &f->retry);
            f->retry.data = f;
            rc = -pthread_create(&f->thread, NULL, run, f);
            if (rc < 0) {
                on_stop(&f->stop);
                uv_run(&f->loop, UV_RUN_DEFAULT);
            }
        }
        if (rc < 0)
            uv_loop_close(&f->loop);
    }
    if (rc < 0) {
        follow_free(f);
        return rc;
    }
    cm_log_msg(CM_LOG_INFO, "gateway: following the registry at %s (%d routes, %d services)", base,
               f->nroutes, f->n);
    *out = f;
    return 0;
}

void gw_follow_stop(gw_follow_t *f)
{
    if (!f)
        return;
    uv_async_send(&f->stop);
    pthread_join(f->thread, NULL);
    uv_loop_close(&f->loop);
    follow_free(f);
}

/* Replaces r's upstreams by set (n >= 1), keeping the weight of those that stay.
 * 0, or -EINVAL / -ENOMEM with r untouched. */
static int patch_route(gw_route_cfg_t *r, char **set, int n)
{
    char err[256];
    gw_upstream_cfg_t *ups = calloc((size_t)n, sizeof *ups);
    if (!ups)
        return -ENOMEM;
    for (int j = 0; j < n; j++) {
        if (gw_upstream_parse(set[j], &ups[j], err, sizeof err) < 0) {
            free(ups);
            return -EINVAL;
        }
        for (int k = 0; k < r->nupstreams; k++)
            if (strcmp(r->upstreams[k].url, ups[j].url) == 0)
                ups[j].weight = r->upstreams[k].weight;
    }
    free(r->upstreams);
    r->upstreams = ups;
    r->nupstreams = n;
    return 0;
}

int gw_follow_apply(gw_follow_t *f, gw_shared_t *g, gw_config_t *cfg, char *err, size_t cap)
{
    if (!f)
        return gw_apply(g, cfg, err, cap);
    /* held across the apply: a new set arriving meanwhile is applied after this one, not
     * overwritten by the older set patched in here */
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < cfg->nroutes; i++) {
        gw_route_cfg_t *r = &cfg->routes[i];
        for (int k = 0; k < f->nroutes; k++) {
            last_t *l = &f->last[f->route_svc[k]];
            if (strcmp(f->routes[k], r->name) != 0)
                continue;
            if (l->n > 0)
                patch_route(r, l->urls, l->n); /* on failure the file's set stays */
            r->scaled_to_zero = l->zero;
        }
    }
    int rc = gw_apply(g, cfg, err, cap);
    pthread_mutex_unlock(&f->mu);
    return rc;
}

void gw_follow_metrics(gw_follow_t *f, cm_buf_t *out)
{
    if (!f)
        return;
    cm_buf_append_str(out, "# HELP cmesh_gateway_registry_age_seconds Seconds since the registry "
                           "last answered for the service (the set in use is that old)\n"
                           "# TYPE cmesh_gateway_registry_age_seconds gauge\n");
    for (int i = 0; i < f->n; i++)
        cm_buf_appendf(out, "cmesh_gateway_registry_age_seconds{service=\"%s\"} %.3f\n",
                       f->names[i], cm_watch_age_s(f->watch, i));
    cm_buf_append_str(out, "# HELP cmesh_gateway_scaled_to_zero 1 while the service is scaled "
                           "to zero on purpose (its routes hold requests and wake it)\n"
                           "# TYPE cmesh_gateway_scaled_to_zero gauge\n");
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < f->n; i++)
        cm_buf_appendf(out, "cmesh_gateway_scaled_to_zero{service=\"%s\"} %d\n", f->names[i],
                       f->last[i].zero);
    pthread_mutex_unlock(&f->mu);
}
