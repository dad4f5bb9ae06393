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
            char *brace = strchr(line, '{'), *close = brace ? strchr(brace, '}') : NULL;
            char *val = close ? close + 1 : strchr(line, ' ');
            double v = val ? strtod(val, NULL) : 0;
            size_t namelen = brace ? (size_t)(brace - line) : (val ? (size_t)(val - line) : n);
            const char *labels = brace ? brace : "";
            size_t llen = brace && close ? (size_t)(close - brace) : 0;
#define IS(NAME) (namelen == sizeof(NAME) - 1 && strncmp(line, NAME, namelen) == 0)
            if (IS("cmesh_http_requests_total") && !probe_route(labels, llen)) {
                out->requests += v;
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

int cm_load_rate(const cm_load_sample_t *prev, const cm_load_sample_t *cur, uint64_t dt_ms,
                 double *rps, double *p99_ms)
{
    if (!prev->valid || !cur->valid || dt_ms == 0 || cur->requests < prev->requests)
        return -EINVAL;
    *rps = (cur->requests - prev->requests) * 1000.0 / (double)dt_ms;
    *p99_ms = -1;
    if (cur->nb == 0 || cur->nb != prev->nb)
        return 0;
    double total = cur->bucket[cur->nb - 1] - prev->bucket[prev->nb - 1];
    if (total <= 0)
        return 0;
    /* histogram_quantile: the bucket holding rank 0.99·total, linear inside it */
    double rank = 0.99 * total, below = 0, lo = 0;
    for (int i = 0; i < cur->nb; i++) {
        double c = cur->bucket[i] - prev->bucket[i];
        if (c >= rank) {
            if (isinf(cur->le[i])) { /* above the last bound: its lower edge, as Prometheus */
                *p99_ms = lo * 1000;
                return 0;
            }
            double in = c - below;
            double f = in > 0 ? (rank - below) / in : 1;
            *p99_ms = (lo + (cur->le[i] - lo) * f) * 1000;
            return 0;
        }
        below = c;
        lo = cur->le[i];
    }
    return 0;
}
