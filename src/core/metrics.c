/* core/metrics.c: request counters, latency histograms and gauges in fixed tables of
 * relaxed atomics, rendered in the Prometheus text exposition format (version 0.0.4).
 * Workers call cm_metrics_observe per request; the /metrics handler calls render.
 * Calls only libc (/proc/self for the process metrics). */
#include "core/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------ */
/* Fixed label sets                                                                     */
/* ------------------------------------------------------------------------------------ */

static const char *const methods[] = {"GET",    "HEAD",  "POST",    "PUT",
                                      "DELETE", "PATCH", "OPTIONS", "OTHER"};
#define NMETHODS ((int)(sizeof methods / sizeof methods[0]))

/* The status codes cmesh sends, in ascending order (code_index searches them); anything
 * else is counted under code="other" so the table stays fixed and a client cannot grow
 * it. CODE() keeps each number and its label from drifting apart. */
#define CODE(n)                                                                                    \
    {                                                                                              \
        n, #n                                                                                      \
    }
static const struct {
    int status;
    const char *name;
} codes[] = {CODE(100), CODE(200), CODE(201), CODE(204), CODE(301), CODE(302), CODE(304),
             CODE(400), CODE(401), CODE(403), CODE(404), CODE(405), CODE(408), CODE(409),
             CODE(412), CODE(413), CODE(414), CODE(415), CODE(417), CODE(422), CODE(429),
             CODE(431), CODE(499), CODE(500), CODE(501), CODE(502), CODE(503), CODE(504)};
#undef CODE
#define NCODES_KNOWN ((int)(sizeof codes / sizeof codes[0]))
#define NCODES       (NCODES_KNOWN + 1) /* last = "other" */
_Static_assert(NCODES == CM_METRICS_NCODES, "CM_METRICS_NCODES must match the codes table");

/* Histogram upper bounds in microseconds, and the same bounds as the `le` labels in
 * seconds. From 100 us (a cached point read) to 10 s (the default request timeout). */
static const uint64_t bounds_us[] = {100,     250,     500,     1000,    2500,   5000,
                                     10000,   25000,   50000,   100000,  250000, 500000,
                                     1000000, 2500000, 5000000, 10000000};
static const char *const bounds_le[] = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
                                        "0.01",   "0.025",   "0.05",   "0.1",   "0.25",   "0.5",
                                        "1",      "2.5",     "5",      "10"};
#define NBOUNDS  ((int)(sizeof bounds_us / sizeof bounds_us[0]))
#define NBUCKETS (NBOUNDS + 1) /* last = +Inf */
_Static_assert(NBUCKETS == CM_METRICS_NBUCKETS, "CM_METRICS_NBUCKETS must match the bounds");

#define UNMATCHED_LABEL "unmatched"

/* ------------------------------------------------------------------------------------ */
/* State                                                                                */
/* ------------------------------------------------------------------------------------ */

struct cm_metrics {
    int nroutes;              /* route patterns; index nroutes = unmatched */
    char **labels;            /* nroutes + 1 pre-escaped `service="..",route=".."` */
    char *service_label;      /* pre-escaped `service=".."` */
    _Atomic uint64_t *total;  /* [(nroutes + 1) * NMETHODS * NCODES] requests */
    cm_metrics_hist_t *hist;  /* [nroutes + 1] */
    _Atomic int64_t inflight; /* requests started, response not yet written */
    _Atomic int64_t conns;    /* open connections */
    _Atomic int64_t states;   /* request, parser and write states out of the worker pools */
    struct timespec start;    /* wall clock at cm_metrics_new */
};

/* ------------------------------------------------------------------------------------ */
/* Shared pieces (declared in metrics.h for other registries)                           */
/* ------------------------------------------------------------------------------------ */

int cm_metrics_code_index(int status)
{
    int lo = 0, hi = NCODES_KNOWN - 1; /* binary search: 5 steps over 27 codes */
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (codes[mid].status == status)
            return mid;
        if (codes[mid].status < status)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NCODES_KNOWN;
}

const char *cm_metrics_code_name(int ix)
{
    return ix >= 0 && ix < NCODES_KNOWN ? codes[ix].name : "other";
}

/* Backslash, double quote and newline are the three characters the exposition format
 * escapes in a label value. */
int cm_metrics_append_label_value(cm_buf_t *b, const char *v)
{
    for (const char *p = v; *p; p++) {
        int rc;
        if (*p == '\\')
            rc = cm_buf_append(b, "\\\\", 2);
        else if (*p == '"')
            rc = cm_buf_append(b, "\\\"", 2);
        else if (*p == '\n')
            rc = cm_buf_append(b, "\\n", 2);
        else
            rc = cm_buf_append(b, p, 1);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Returns a malloc'd `service="svc",route="route"` (route NULL: service only). */
static char *make_labels(const char *service, const char *route)
{
    cm_buf_t b = CM_BUF_INIT;
    int rc = cm_buf_append_str(&b, "service=\"");
    if (rc == 0)
        rc = cm_metrics_append_label_value(&b, service);
    if (rc == 0)
        rc = cm_buf_append(&b, "\"", 1);
    if (rc == 0 && route) {
        rc = cm_buf_append_str(&b, ",route=\"");
        if (rc == 0)
            rc = cm_metrics_append_label_value(&b, route);
        if (rc == 0)
            rc = cm_buf_append(&b, "\"", 1);
    }
    if (rc < 0) {
        cm_buf_free(&b);
        return NULL;
    }
    return b.data;
}

int cm_metrics_new(const char *service, const char *const *route_names, int nroutes,
                   cm_metrics_t **out)
{
    if (!service || nroutes < 0 || (nroutes > 0 && !route_names))
        return -EINVAL;
    cm_metrics_t *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    m->nroutes = nroutes;
    size_t nr = (size_t)nroutes + 1;
    m->labels = calloc(nr, sizeof *m->labels);
    m->total = calloc(nr * NMETHODS * NCODES, sizeof *m->total);
    m->hist = calloc(nr, sizeof *m->hist);
    m->service_label = make_labels(service, NULL);
    if (!m->labels || !m->total || !m->hist || !m->service_label)
        goto fail;
    for (size_t i = 0; i < nr; i++) {
        m->labels[i] = make_labels(service, i < (size_t)nroutes ? route_names[i] : UNMATCHED_LABEL);
        if (!m->labels[i])
            goto fail;
    }
    /* calloc's zero bytes are valid zero atomics on every target cmesh builds for. */
    clock_gettime(CLOCK_REALTIME, &m->start);
    *out = m;
    return 0;
fail:
    cm_metrics_free(m);
    return -ENOMEM;
}

void cm_metrics_free(cm_metrics_t *m)
{
    if (!m)
        return;
    if (m->labels)
        for (int i = 0; i <= m->nroutes; i++)
            free(m->labels[i]);
    free(m->labels);
    free(m->service_label);
    free(m->total);
    free(m->hist);
    free(m);
}

/* ------------------------------------------------------------------------------------ */
/* Updates (any thread, no lock)                                                        */
/* ------------------------------------------------------------------------------------ */

static int method_index(const char *method)
{
    if (!method)
        return NMETHODS - 1;
    for (int i = 0; i < NMETHODS - 1; i++)
        if (strcmp(method, methods[i]) == 0)
            return i;
    return NMETHODS - 1;
}

void cm_metrics_observe(cm_metrics_t *m, int route, const char *method, int status,
                        uint64_t duration_us)
{
    if (route < 0 || route > m->nroutes)
        route = m->nroutes;
    int code = cm_metrics_code_index(status);
    size_t ix = ((size_t)route * NMETHODS + (size_t)method_index(method)) * NCODES + (size_t)code;
    atomic_fetch_add_explicit(&m->total[ix], 1, memory_order_relaxed);
    cm_metrics_hist_observe(&m->hist[route], duration_us);
}

void cm_metrics_hist_observe(cm_metrics_hist_t *h, uint64_t duration_us)
{
    int b = 0;
    while (b < NBOUNDS && duration_us > bounds_us[b])
        b++;
    atomic_fetch_add_explicit(&h->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, duration_us, memory_order_relaxed);
}

void cm_metrics_inflight_add(cm_metrics_t *m, int delta)
{
    atomic_fetch_add_explicit(&m->inflight, delta, memory_order_relaxed);
}

void cm_metrics_connections_add(cm_metrics_t *m, int delta)
{
    atomic_fetch_add_explicit(&m->conns, delta, memory_order_relaxed);
}

void cm_metrics_states_add(cm_metrics_t *m, int delta)
{
    atomic_fetch_add_explicit(&m->states, delta, memory_order_relaxed);
}

/* ------------------------------------------------------------------------------------ */
/* Rendering                                                                            */
/* ------------------------------------------------------------------------------------ */

/* Resident set size in bytes from /proc/self/statm (second field, in pages); -1 if
 * unreadable. */
static long long resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "re");
    if (!f)
        return -1;
    unsigned long long size, rss;
    int n = fscanf(f, "%llu %llu", &size, &rss);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    if (n != 2 || page <= 0)
        return -1;
    return (long long)(rss * (unsigned long long)page);
}

/* Open descriptors, counted in /proc/self/fd without the one opendir holds; -1 if
 * unreadable. */
static long long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n > 0 ? n - 1 : 0;
}

static int help_type(cm_buf_t *out, const char *name, const char *help, const char *type)
{
    return cm_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static int render_requests(cm_metrics_t *m, cm_buf_t *out)
{
    int rc =
        help_type(out, "cmesh_http_requests_total",
                  "HTTP requests finished, by route pattern, method and status code.", "counter");
    for (int r = 0; rc == 0 && r <= m->nroutes; r++) {
        for (int me = 0; rc == 0 && me < NMETHODS; me++) {
            for (int c = 0; rc == 0 && c < NCODES; c++) {
                size_t ix = ((size_t)r * NMETHODS + (size_t)me) * NCODES + (size_t)c;
                uint64_t v = atomic_load_explicit(&m->total[ix], memory_order_relaxed);
                if (!v)
                    continue; /* only series that happened, to keep the page small */
                rc = cm_buf_appendf(
                    out, "cmesh_http_requests_total{%s,method=\"%s\",code=\"%s\"} %llu\n",
                    m->labels[r], methods[me], cm_metrics_code_name(c), (unsigned long long)v);
            }
        }
    }
    return rc;
}

static int render_durations(cm_metrics_t *m, cm_buf_t *out)
{
    static const char name[] = "cmesh_http_request_duration_seconds";
    int rc = help_type(out, name, "Time from request start to response written, by route pattern.",
                       "histogram");
    for (int r = 0; rc == 0 && r <= m->nroutes; r++)
        rc = cm_metrics_hist_render(&m->hist[r], name, m->labels[r], out);
    return rc;
}

int cm_metrics_hist_render(cm_metrics_hist_t *h, const char *name, const char *labels,
                           cm_buf_t *out)
{
    uint64_t cum[NBUCKETS];
    uint64_t total = 0;
    /* Each bucket is read once and summed here, so the rendered buckets are
     * cumulative and _count equals the +Inf bucket even while workers observe. */
    for (int b = 0; b < NBUCKETS; b++) {
        total += atomic_load_explicit(&h->bucket[b], memory_order_relaxed);
        cum[b] = total;
    }
    if (!total)
        return 0;
    uint64_t sum = atomic_load_explicit(&h->sum_us, memory_order_relaxed);
    int rc = 0;
    for (int b = 0; rc == 0 && b < NBUCKETS; b++)
        rc = cm_buf_appendf(out, "%s_bucket{%s,le=\"%s\"} %llu\n", name, labels,
                            b < NBOUNDS ? bounds_le[b] : "+Inf", (unsigned long long)cum[b]);
    if (rc == 0)
        rc =
            cm_buf_appendf(out, "%s_sum{%s} %llu.%06llu\n%s_count{%s} %llu\n", name, labels,
                           (unsigned long long)(sum / 1000000), (unsigned long long)(sum % 1000000),
                           name, labels, (unsigned long long)total);
    return rc;
}

int cm_metrics_render(cm_metrics_t *m, cm_buf_t *out)
{
    int rc = render_requests(m, out);
    if (rc == 0)
        rc = render_durations(m, out);
    if (rc == 0)
        rc = help_type(out, "cmesh_http_requests_in_flight",
                       "Requests started whose response is not yet written.", "gauge");
    if (rc == 0)
        rc = cm_buf_appendf(out, "cmesh_http_requests_in_flight{%s} %lld\n", m->service_label,
                            (long long)atomic_load_explicit(&m->inflight, memory_order_relaxed));
    if (rc == 0)
        rc = help_type(out, "cmesh_http_connections_open", "Open client connections.", "gauge");
    if (rc == 0)
        rc = cm_buf_appendf(out, "cmesh_http_connections_open{%s} %lld\n", m->service_label,
                            (long long)atomic_load_explicit(&m->conns, memory_order_relaxed));
    if (rc == 0)
        rc = help_type(out, "cmesh_http_request_states_in_use",
                       "Request objects, parser tables and pending writes held by connections "
                       "(taken per request, given back once it is answered; 0 when all are idle).",
                       "gauge");
    if (rc == 0)
        rc = cm_buf_appendf(out, "cmesh_http_request_states_in_use{%s} %lld\n", m->service_label,
                            (long long)atomic_load_explicit(&m->states, memory_order_relaxed));

    long long rss = resident_bytes();
    if (rc == 0)
        rc = help_type(out, "process_resident_memory_bytes", "Resident memory size in bytes.",
                       "gauge");
    if (rc == 0 && rss >= 0)
        rc = cm_buf_appendf(out, "process_resident_memory_bytes %lld\n", rss);
    long long fds = open_fds();
    if (rc == 0)
        rc = help_type(out, "process_open_fds", "Number of open file descriptors.", "gauge");
    if (rc == 0 && fds >= 0)
        rc = cm_buf_appendf(out, "process_open_fds %lld\n", fds);
    if (rc == 0)
        rc = help_type(out, "process_start_time_seconds",
                       "Start time of the process since unix epoch in seconds.", "gauge");
    if (rc == 0)
        rc = cm_buf_appendf(out, "process_start_time_seconds %lld.%03ld\n",
                            (long long)m->start.tv_sec, m->start.tv_nsec / 1000000);
    return rc < 0 ? -ENOMEM : 0;
}
