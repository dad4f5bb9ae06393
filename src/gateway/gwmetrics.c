/* gateway/gwmetrics.c: the gateway's per-route and per-upstream series. A registry
 * (one mutex) holds lists of series that are only ever appended to; each series is a
 * fixed table of relaxed atomics that workers update without a lock. Rendering reuses
 * core/metrics' code table, label escaper and histogram so both pages look alike. */
#include "gateway/gwmetrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"

/* ------------------------------------------------------------------------------------ */
/* State                                                                                */
/* ------------------------------------------------------------------------------------ */

#define CODE_NONE CM_METRICS_NCODES       /* upstream code index when no response came */
#define NCODES_UP (CM_METRICS_NCODES + 1) /* core's codes, "other", then "none" */
#define RELAXED   memory_order_relaxed
#define ADD(a, v) atomic_fetch_add_explicit((a), (v), RELAXED)
#define LOAD(a)   atomic_load_explicit((a), RELAXED)

static const char *const retry_reasons[GW_RETRY_NREASONS] = {
    [GW_RETRY_CONNECT] = "connect",
    [GW_RETRY_RESET] = "reset",
    [GW_RETRY_TIMEOUT] = "timeout",
    [GW_RETRY_503] = "503",
};

struct gw_up_stats {
    gw_up_stats_t *next;                  /* next upstream of the same route */
    char *url;                            /* raw, the lookup key */
    char *labels;                         /* pre-escaped `route="..",upstream=".."` */
    _Atomic uint64_t requests[NCODES_UP]; /* attempts by response code */
    cm_metrics_hist_t duration;           /* per attempt */
    _Atomic uint64_t ejections;           /* outlier ejections */
    _Atomic int64_t healthy;              /* worker views that see it healthy */
    _Atomic int64_t idle;                 /* pooled idle connections */
    _Atomic int64_t active;               /* connections carrying a request */
};

struct gw_route_stats {
    gw_route_stats_t *next;                       /* next route, in creation order */
    char *name;                                   /* raw, the lookup key */
    char *labels;                                 /* pre-escaped `route=".."` */
    _Atomic uint64_t requests[CM_METRICS_NCODES]; /* client answers by code */
    cm_metrics_hist_t duration;                   /* client request, all tries */
    _Atomic uint64_t retries[GW_RETRY_NREASONS];
    _Atomic uint64_t budget_exhausted;                 /* retries the budget refused */
    _Atomic uint64_t rate_limited;                     /* 429s from the rate limiter */
    _Atomic uint64_t auth_failures[CM_METRICS_NCODES]; /* 401 / 403 */
    _Atomic int64_t held;                              /* requests held (scaled to zero) */
    _Atomic uint64_t cold_since_ns; /* the first held request of this cold start; 0 = none */
    cm_metrics_hist_t cold_start;   /* per cold start: first held request to its dispatch */
    gw_up_stats_t *ups;             /* upstreams, in creation order */
};

struct gw_metrics {
    pthread_mutex_t lock;     /* guards the lists (not the counters) */
    gw_route_stats_t *routes; /* in creation order, so the page is stable */
};

/* ------------------------------------------------------------------------------------ */
/* Registry                                                                             */
/* ------------------------------------------------------------------------------------ */

int gw_metrics_new(gw_metrics_t **out)
{
    gw_metrics_t *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return -ENOMEM;
    }
    *out = m;
    return 0;
}

static void up_free(gw_up_stats_t *u)
{
    free(u->url);
    free(u->labels);
    free(u);
}

static void route_free(gw_route_stats_t *r)
{
    for (gw_up_stats_t *u = r->ups, *next; u; u = next) {
        next = u->next;
        up_free(u);
    }
    free(r->name);
    free(r->labels);
    free(r);
}

void gw_metrics_free(gw_metrics_t *m)
{
    if (!m)
        return;
    for (gw_route_stats_t *r = m->routes, *next; r; r = next) {
        next = r->next;
        route_free(r);
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* Appends `key="value"` (value escaped), preceded by a comma unless b is empty. */
static int append_label(cm_buf_t *b, const char *key, const char *value)
{
    int rc = cm_buf_appendf(b, "%s%s=\"", b->len ? "," : "", key);
    if (rc == 0)
        rc = cm_metrics_append_label_value(b, value);
    if (rc == 0)
        rc = cm_buf_append(b, "\"", 1);
    return rc;
}

/* Returns a malloc'd `route=".."` or `route="..",upstream=".."` (url NULL: route only),
 * or NULL on ENOMEM. */
static char *make_labels(const char *route, const char *url)
{
    cm_buf_t b = CM_BUF_INIT;
    int rc = append_label(&b, "route", route);
    if (rc == 0 && url)
        rc = append_label(&b, "upstream", url);
    if (rc < 0) {
        cm_buf_free(&b);
        return NULL;
    }
    return b.data;
}

/* A fresh, zeroed route series; NULL on ENOMEM. */
static gw_route_stats_t *route_new(const char *name)
{
    gw_route_stats_t *r = calloc(1, sizeof *r); /* zero bytes are zero atomics */
    if (!r)
        return NULL;
    r->name = strdup(name);
    r->labels = make_labels(name, NULL);
    if (!r->name || !r->labels) {
        route_free(r);
        return NULL;
    }
    return r;
}

static gw_up_stats_t *up_new(const char *route, const char *url)
{
    gw_up_stats_t *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    u->url = strdup(url);
    u->labels = make_labels(route, url);
    if (!u->url || !u->labels) {
        up_free(u);
        return NULL;
    }
    return u;
}

gw_route_stats_t *gw_metrics_route(gw_metrics_t *m, const char *route)
{
    pthread_mutex_lock(&m->lock);
    gw_route_stats_t **link = &m->routes;
    while (*link && strcmp((*link)->name, route) != 0)
        link = &(*link)->next;
    if (!*link)
        *link = route_new(route); /* stays NULL on ENOMEM: the list is unchanged */
    gw_route_stats_t *r = *link;
    pthread_mutex_unlock(&m->lock);
    return r;
}

gw_up_stats_t *gw_metrics_upstream(gw_metrics_t *m, gw_route_stats_t *r, const char *url)
{
    pthread_mutex_lock(&m->lock);
    gw_up_stats_t **link = &r->ups;
    while (*link && strcmp((*link)->url, url) != 0)
        link = &(*link)->next;
    if (!*link)
        *link = up_new(r->name, url);
    gw_up_stats_t *u = *link;
    pthread_mutex_unlock(&m->lock);
    return u;
}

/* ------------------------------------------------------------------------------------ */
/* Updates (any thread, no lock)                                                        */
/* ------------------------------------------------------------------------------------ */

void gw_route_observe(gw_route_stats_t *r, int status, uint64_t duration_us)
{
    ADD(&r->requests[cm_metrics_code_index(status)], 1);
    cm_metrics_hist_observe(&r->duration, duration_us);
}

void gw_route_retry(gw_route_stats_t *r, gw_retry_reason_t why)
{
    if ((unsigned)why < GW_RETRY_NREASONS)
        ADD(&r->retries[why], 1);
}

void gw_route_budget_exhausted(gw_route_stats_t *r)
{
    ADD(&r->budget_exhausted, 1);
}

void gw_route_rate_limited(gw_route_stats_t *r)
{
    ADD(&r->rate_limited, 1);
}

void gw_route_auth_failed(gw_route_stats_t *r, int status)
{
    ADD(&r->auth_failures[cm_metrics_code_index(status)], 1);
}

void gw_route_hold(gw_route_stats_t *r, uint64_t now_ns)
{
    ADD(&r->held, 1);
    uint64_t none = 0; /* only the first held request of a cold start, of any worker */
    atomic_compare_exchange_strong(&r->cold_since_ns, &none, now_ns);
}

void gw_route_unhold(gw_route_stats_t *r, int dispatched, uint64_t now_ns)
{
    int64_t left = atomic_fetch_sub_explicit(&r->held, 1, RELAXED) - 1;
    if (dispatched) { /* the first dispatch of any worker ends the cold start */
        uint64_t since = atomic_exchange(&r->cold_since_ns, 0);
        if (since && now_ns > since)
            cm_metrics_hist_observe(&r->cold_start, (now_ns - since) / 1000);
    } else if (left == 0) { /* nobody waits any more: the next held request starts anew */
        atomic_store(&r->cold_since_ns, 0);
    }
}

int64_t gw_route_held(gw_route_stats_t *r)
{
    return LOAD(&r->held);
}

void gw_up_observe(gw_up_stats_t *u, int status, uint64_t duration_us)
{
    ADD(&u->requests[status == 0 ? CODE_NONE : cm_metrics_code_index(status)], 1);
    cm_metrics_hist_observe(&u->duration, duration_us);
}

void gw_up_ejected(gw_up_stats_t *u)
{
    ADD(&u->ejections, 1);
}

void gw_up_healthy_add(gw_up_stats_t *u, int delta)
{
    ADD(&u->healthy, delta);
}

void gw_up_pool_add(gw_up_stats_t *u, int idle_delta, int active_delta)
{
    ADD(&u->idle, idle_delta);
    ADD(&u->active, active_delta);
}

/* ------------------------------------------------------------------------------------ */
/* Rendering (under the registry lock, so no series appears mid-walk)                   */
/* ------------------------------------------------------------------------------------ */

#define PREFIX "cmesh_gateway_"

static int help_type(cm_buf_t *out, const char *name, const char *help, const char *type)
{
    return cm_buf_appendf(out, "# HELP " PREFIX "%s %s\n# TYPE " PREFIX "%s %s\n", name, help, name,
                          type);
}

/* Appends one line per non-zero code of a code table; "none" past CM_METRICS_NCODES. */
static int render_codes(cm_buf_t *out, const char *name, const char *labels,
                        _Atomic uint64_t *table, int n)
{
    int rc = 0;
    for (int c = 0; rc == 0 && c < n; c++) {
        uint64_t v = LOAD(&table[c]);
        if (!v)
            continue; /* only codes that happened, as core/metrics does */
        const char *code = c == CODE_NONE ? "none" : cm_metrics_code_name(c);
        rc = cm_buf_appendf(out, PREFIX "%s{%s,code=\"%s\"} %llu\n", name, labels, code,
                            (unsigned long long)v);
    }
    return rc;
}

static int render_u64(cm_buf_t *out, const char *name, const char *labels, uint64_t v)
{
    return cm_buf_appendf(out, PREFIX "%s{%s} %llu\n", name, labels, (unsigned long long)v);
}

static int render_i64(cm_buf_t *out, const char *name, const char *labels, int64_t v)
{
    return cm_buf_appendf(out, PREFIX "%s{%s} %lld\n", name, labels, (long long)v);
}

static int render_routes(gw_metrics_t *m, cm_buf_t *out)
{
    gw_route_stats_t *r;
    int rc =
        help_type(out, "requests_total",
                  "Client requests answered by the gateway, by route and status code.", "counter");
    for (r = m->routes; rc == 0 && r; r = r->next)
        rc = render_codes(out, "requests_total", r->labels, r->requests, CM_METRICS_NCODES);

    if (rc == 0)
        rc = help_type(out, "request_duration_seconds",
                       "Time from client request start to response end, all tries included.",
                       "histogram");
    for (r = m->routes; rc == 0 && r; r = r->next)
        rc =
            cm_metrics_hist_render(&r->duration, PREFIX "request_duration_seconds", r->labels, out);

    if (rc == 0)
        rc = help_type(out, "retries_total", "Retries started, by route and reason.", "counter");
    for (r = m->routes; rc == 0 && r; r = r->next)
        for (int w = 0; rc == 0 && w < GW_RETRY_NREASONS; w++)
            rc = cm_buf_appendf(out, PREFIX "retries_total{%s,reason=\"%s\"} %llu\n", r->labels,
                                retry_reasons[w], (unsigned long long)LOAD(&r->retries[w]));

    if (rc == 0)
        rc = help_type(out, "retry_budget_exhausted_total",
                       "Retries the retry budget refused, by route.", "counter");
    for (r = m->routes; rc == 0 && r; r = r->next)
        rc = render_u64(out, "retry_budget_exhausted_total", r->labels, LOAD(&r->budget_exhausted));

    if (rc == 0)
        rc = help_type(out, "rate_limited_total", "Requests refused with 429 by the rate limiter.",
                       "counter");
    for (r = m->routes; rc == 0 && r; r = r->next)
        rc = render_u64(out, "rate_limited_total", r->labels, LOAD(&r->rate_limited));

    if (rc == 0)
        rc = help_type(out, "auth_failures_total",
                       "Requests refused by authentication (401) or authorization (403).",
                       "counter");
    for (r = m->routes; rc == 0 && r; r = r->next)
        rc = render_codes(out, "auth_failures_total", r->labels, r->auth_failures,
                          CM_METRICS_NCODES);

    if (rc == 0)
        rc = help_type(out, "cold_start_seconds",
                       "Per cold start of a route's service scaled to zero: time from the "
                       "first held request to its dispatch.",
                       "histogram");
    for (r = m->routes; rc == 0 && r; r = r->next)
        rc = cm_metrics_hist_render(&r->cold_start, PREFIX "cold_start_seconds", r->labels, out);

    if (rc == 0)
        rc = help_type(out, "held_requests",
                       "Requests held now while the route's service, scaled to zero, starts.",
                       "gauge");
    for (r = m->routes; rc == 0 && r; r = r->next)
        rc = render_i64(out, "held_requests", r->labels, LOAD(&r->held));
    return rc;
}

/* Calls fn for every upstream of every route, stopping at the first error. */
typedef int (*up_render_fn)(cm_buf_t *out, gw_up_stats_t *u);

static int each_upstream(gw_metrics_t *m, cm_buf_t *out, up_render_fn fn)
{
    int rc = 0;
    for (gw_route_stats_t *r = m->routes; rc == 0 && r; r = r->next)
        for (gw_up_stats_t *u = r->ups; rc == 0 && u; u = u->next)
            rc = fn(out, u);
    return rc;
}

static int up_requests(cm_buf_t *out, gw_up_stats_t *u)
{
    return render_codes(out, "upstream_requests_total", u->labels, u->requests, NCODES_UP);
}

static int up_duration(cm_buf_t *out, gw_up_stats_t *u)
{
    return cm_metrics_hist_render(&u->duration, PREFIX "upstream_request_duration_seconds",
                                  u->labels, out);
}

static int up_ejections(cm_buf_t *out, gw_up_stats_t *u)
{
    return render_u64(out, "upstream_ejections_total", u->labels, LOAD(&u->ejections));
}

static int up_healthy(cm_buf_t *out, gw_up_stats_t *u)
{
    return render_i64(out, "upstream_healthy", u->labels, LOAD(&u->healthy));
}

static int up_connections(cm_buf_t *out, gw_up_stats_t *u)
{
    int rc = cm_buf_appendf(out, PREFIX "upstream_connections{%s,state=\"idle\"} %lld\n", u->labels,
                            (long long)LOAD(&u->idle));
    if (rc == 0)
        rc = cm_buf_appendf(out, PREFIX "upstream_connections{%s,state=\"active\"} %lld\n",
                            u->labels, (long long)LOAD(&u->active));
    return rc;
}

static int render_upstreams(gw_metrics_t *m, cm_buf_t *out)
{
    static const struct {
        const char *name, *help, *type;
        up_render_fn fn;
    } families[] = {
        {"upstream_requests_total",
         "Attempts on an upstream instance, by response code (none: no response).", "counter",
         up_requests},
        {"upstream_request_duration_seconds", "Duration of one attempt on an upstream instance.",
         "histogram", up_duration},
        {"upstream_ejections_total", "Times the instance was ejected as an outlier.", "counter",
         up_ejections},
        {"upstream_healthy", "Worker views in which the instance is healthy.", "gauge", up_healthy},
        {"upstream_connections", "Connections to the instance, by state.", "gauge", up_connections},
    };
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof families / sizeof families[0]; i++) {
        rc = help_type(out, families[i].name, families[i].help, families[i].type);
        if (rc == 0)
            rc = each_upstream(m, out, families[i].fn);
    }
    return rc;
}

int gw_metrics_render(gw_metrics_t *m, cm_buf_t *out)
{
    pthread_mutex_lock(&m->lock);
    int rc = render_routes(m, out);
    if (rc == 0)
        rc = render_upstreams(m, out);
    pthread_mutex_unlock(&m->lock);
    return rc < 0 ? -ENOMEM : 0;
}
