/* control/load.c: requests per second and p99 from two /metrics scrapes (see load.h). */
#include "control/load.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The control plane's own traffic to an instance, not its load. */
static int probe_route(const char *labels, size_t len)
{
    static const char *const skip[] = {"route=\"/healthz\"", "route=\"/readyz\"",
                                       "route=\"/metrics\"", NULL};
    for (int i = 0; skip[i]; i++)
        if (memmem(labels, len, skip[i], strlen(skip[i])))
            return 1;
    return 0;
}

static int le_of(const char *labels, size_t len, double *le)
{
    const char *p = memmem(labels, len, "le=\"", 4);
    if (!p)
        return -1;
    p += 4;
    if (strncmp(p, "+Inf\"", 5) == 0) {
        *le = INFINITY;
        return 0;
    }
    char *end;
    *le = strtod(p, &end);
    return end != p && *end == '"' ? 0 : -1;
}

static void add_bucket(cm_load_sample_t *s, double le, double v)
{
    int i = 0;
    while (i < s->nb && s->le[i] < le)
        i++;
    if (i < s->nb && s->le[i] == le) {
        s->bucket[i] += v;
        return;
    }
    if (s->nb == CM_LOAD_BUCKETS)
        return;
    memmove(&s->le[i + 1], &s->le[i], sizeof s->le[0] * (size_t)(s->nb - i));
    memmove(&s->bucket[i + 1], &s->bucket[i], sizeof s->bucket[0] * (size_t)(s->nb - i));
    s->le[i] = le;
    s->bucket[i] = v;
    s->nb++;
}

/* The '}' that closes a label set: label values hold route patterns ("/users/{id}"). */
static char *labels_end(char *p)
{
    int quoted = 0;
    for (p++; *p; p++)
        if (quoted && *p == '\\' && p[1])
            p++;
        else if (*p == '"')
            quoted = !quoted;
        else if (!quoted && *p == '}')
            return p;
    return NULL;
}

/* Calls fn for every sample line: its metric name, its labels ("{...}" or "") and value. */
typedef void (*series_fn)(const char *name, size_t namelen, const char *labels, size_t llen,
                          double v, void *arg);

static void each_series(const char *text, size_t len, series_fn fn, void *arg)
{
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        size_t n = (size_t)(le - p);
        char line[1024];
        if (n > 0 && n < sizeof line && p[0] != '#') {
            memcpy(line, p, n);
            line[n] = '\0';
            char *brace = strchr(line, '{'), *close = brace ? labels_end(brace) : NULL;
            char *val = close ? close + 1 : strchr(line, ' ');
            double v = val ? strtod(val, NULL) : 0;
            size_t namelen = brace ? (size_t)(brace - line) : (val ? (size_t)(val - line) : n);
            const char *labels = brace ? brace : "";
            size_t llen = brace && close ? (size_t)(close - brace) : 0;
            fn(line, namelen, labels, llen, v, arg);
        }
        p = nl ? nl + 1 : end;
    }
}

#define IS(NAME) (namelen == sizeof(NAME) - 1 && strncmp(name, NAME, namelen) == 0)

static void instance_series(const char *name, size_t namelen, const char *labels, size_t llen,
                            double v, void *arg)
{
    cm_load_sample_t *out = arg;
    if (IS("cmesh_http_requests_total") && !probe_route(labels, llen)) {
        out->requests += v;
        if (memmem(labels, llen, "code=\"5", 7))
            out->errors += v;
        out->valid = 1;
    } else if (IS("cmesh_http_request_duration_seconds_bucket") && !probe_route(labels, llen)) {
        double b;
        if (le_of(labels, llen, &b) == 0)
            add_bucket(out, b, v);
    } else if (IS("cmesh_http_request_duration_seconds_sum") && !probe_route(labels, llen)) {
        out->time_sum += v;
    } else if (IS("cmesh_http_requests_in_flight")) {
        out->inflight += v;
    }
}

int cm_load_parse(const char *text, size_t len, cm_load_sample_t *out)
{
    memset(out, 0, sizeof *out);
    each_series(text, len, instance_series, out);
    return out->valid ? 0 : -EINVAL;
}

typedef struct ups {
    cm_load_up_t *up;
    int cap, n;
} ups_t;

static void upstream_series(const char *name, size_t namelen, const char *labels, size_t llen,
                            double v, void *arg)
{
    ups_t *u = arg;
    if (!IS("cmesh_gateway_upstream_request_duration_seconds_sum"))
        return;
    const char *p = memmem(labels, llen, "upstream=\"", 10);
    const char *q = p ? memchr(p + 10, '"', llen - (size_t)(p + 10 - labels)) : NULL;
    if (!q || (size_t)(q - p - 10) >= sizeof u->up[0].url)
        return;
    size_t ulen = (size_t)(q - p - 10);
    int i = 0;
    while (i < u->n && !(strlen(u->up[i].url) == ulen && memcmp(u->up[i].url, p + 10, ulen) == 0))
        i++;
    if (i == u->n) { /* a new instance (the same one on two routes is summed) */
        if (u->n == u->cap)
            return;
        memcpy(u->up[i].url, p + 10, ulen);
        u->up[i].url[ulen] = '\0';
        u->up[i].time_sum = 0;
        u->n++;
    }
    u->up[i].time_sum += v;
}

#undef IS

int cm_load_parse_upstreams(const char *text, size_t len, cm_load_up_t *up, int cap)
{
    ups_t u = {up, cap, 0};
    each_series(text, len, upstream_series, &u);
    return u.n;
}

int cm_load_window(const cm_load_sample_t *prev, const cm_load_sample_t *cur, cm_load_sample_t *out)
{
    memset(out, 0, sizeof *out);
    if (!prev->valid || !cur->valid || cur->requests < prev->requests ||
        cur->errors < prev->errors || cur->nb != prev->nb)
        return -EINVAL;
    for (int i = 0; i < cur->nb; i++)
        if (cur->le[i] != prev->le[i] || cur->bucket[i] < prev->bucket[i])
            return -EINVAL;
    out->valid = 1;
    out->requests = cur->requests - prev->requests;
    out->errors = cur->errors - prev->errors;
    out->inflight = cur->inflight;
    out->time_sum = cur->time_sum - prev->time_sum;
    out->nb = cur->nb;
    for (int i = 0; i < cur->nb; i++) {
        out->le[i] = cur->le[i];
        out->bucket[i] = cur->bucket[i] - prev->bucket[i];
    }
    return 0;
}

void cm_load_window_add(cm_load_sample_t *acc, const cm_load_sample_t *w)
{
    if (!w->valid)
        return;
    acc->valid = 1;
    acc->requests += w->requests;
    acc->errors += w->errors;
    acc->inflight += w->inflight;
    acc->time_sum += w->time_sum;
    for (int i = 0; i < w->nb; i++)
        add_bucket(acc, w->le[i], w->bucket[i]);
}

double cm_load_window_p99(const cm_load_sample_t *w)
{
    if (w->nb == 0)
        return -1;
    double total = w->bucket[w->nb - 1];
    if (total <= 0)
        return -1;
    /* histogram_quantile: the bucket holding rank 0.99·total, linear inside it */
    double rank = 0.99 * total, below = 0, lo = 0;
    for (int i = 0; i < w->nb; i++) {
        double c = w->bucket[i];
        if (c >= rank) {
            if (isinf(w->le[i])) /* above the last bound: its lower edge, as Prometheus */
                return lo * 1000;
            double in = c - below;
            double f = in > 0 ? (rank - below) / in : 1;
            return (lo + (w->le[i] - lo) * f) * 1000;
        }
        below = c;
        lo = w->le[i];
    }
    return -1;
}

double cm_load_window_errors(const cm_load_sample_t *w)
{
    return w->requests > 0 ? w->errors / w->requests : -1;
}

int cm_load_rate(const cm_load_sample_t *prev, const cm_load_sample_t *cur, uint64_t dt_ms,
                 double *rps, double *p99_ms)
{
    if (!prev->valid || !cur->valid || dt_ms == 0 || cur->requests < prev->requests)
        return -EINVAL;
    *rps = (cur->requests - prev->requests) * 1000.0 / (double)dt_ms;
    cm_load_sample_t w;
    *p99_ms = cm_load_window(prev, cur, &w) == 0 ? cm_load_window_p99(&w) : -1;
    return 0;
}
