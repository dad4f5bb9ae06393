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

/* The '}' closing the label set at brace: the first one outside a quoted value (route
 * patterns have braces of their own: route="/users/{id}"); NULL when there is none. */
static char *labels_end(char *brace)
{
    int quoted = 0;
    for (char *p = brace + 1; *p; p++) {
        if (quoted && *p == '\\' && p[1])
            p++; /* \" \\ \n: escaped, never the end of the value */
        else if (*p == '"')
            quoted = !quoted;
        else if (*p == '}' && !quoted)
            return p;
    }
    return NULL;
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

int cm_load_parse(const char *text, size_t len, cm_load_sample_t *out)
{
    memset(out, 0, sizeof *out);
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
#define IS(NAME) (namelen == sizeof(NAME) - 1 && strncmp(line, NAME, namelen) == 0)
            if (IS("cmesh_http_requests_total") && !probe_route(labels, llen)) {
                out->requests += v;
                if (memmem(labels, llen, "code=\"5", 7))
                    out->errors += v;
                out->valid = 1;
            } else if (IS("cmesh_http_request_duration_seconds_bucket") &&
                       !probe_route(labels, llen)) {
                double b;
                if (le_of(labels, llen, &b) == 0)
                    add_bucket(out, b, v);
            } else if (IS("cmesh_http_requests_in_flight")) {
                out->inflight += v;
            }
#undef IS
        }
        p = nl ? nl + 1 : end;
    }
    return out->valid ? 0 : -EINVAL;
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
