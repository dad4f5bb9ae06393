/* gateway/config_yaml.c: gw_config_load, the YAML front end of gateway/config. Parses a
 * file with libfyaml into a document, walks it key by key (unknown keys, wrong types and
 * out-of-range values are errors naming FILE:LINE), then hands the result to
 * gw_config_finish. The grammar is documented in docs/gateway-config.md. */
#include <ctype.h>
#include <errno.h>
#include <libfyaml.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/flags.h"
#include "gateway/balancer.h"
#include "gateway/config.h"

#define DAY_MS   (24ull * 3600 * 1000) /* cap on every duration: longer is a typo */
#define RATE_MAX 1e9                   /* tokens per second; far past any real limit */
#define WHAT_MAX (GW_URL_MAX + 160)    /* "route 'NAME' rate_limit.per_subject" and the like */

#define ERR_MORE_ROOM 48 /* bytes kept free in err for "(and N more errors)" */

/* Every error found is reported, not only the first: each key's value is checked
 * whatever became of the keys before it, one line per error in err. */
typedef struct yctx {
    const char *file; /* as given to gw_config_load, for messages */
    char *err;        /* "FILE:LINE: what\n..." without the last newline */
    size_t err_cap;
    size_t used; /* bytes of err written */
    int nerr;    /* errors found */
    int dropped; /* of them, those err had no room for */
} yctx_t;

/* ---------------------------------------------------------------------------------- */
/* Low level: positions, messages, scalars                                            */
/* ---------------------------------------------------------------------------------- */

static int fail(yctx_t *y, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(yctx_t *y, int line, const char *fmt, ...)
{
    y->nerr++;
    char msg[2048];
    int n = snprintf(msg, sizeof(msg), "%s:%d: ", y->file, line);
    if (n >= 0 && (size_t)n < sizeof(msg)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
        va_end(ap);
    }
    /* the first error always goes in (cut to fit); later ones only whole, with room
     * left for the count of those that did not fit */
    size_t len = strlen(msg), sep = y->used ? 1 : 0;
    if (y->used == 0) {
        snprintf(y->err, y->err_cap, "%s", msg);
        y->used = strlen(y->err);
    } else if (y->used + sep + len + ERR_MORE_ROOM < y->err_cap) {
        snprintf(y->err + y->used, y->err_cap - y->used, "\n%s", msg);
        y->used += sep + len;
    } else {
        y->dropped++;
    }
    return -EINVAL;
}

/* For loops over keys: the first error is what the caller returns, but the loop goes
 * on to the next key; only running out of memory stops it. Returns 1 to stop. */
static int note(int *first, int e)
{
    if (e < 0 && *first == 0)
        *first = e;
    return e < 0 && e != -EINVAL;
}

/* 1-based line of a node. libfyaml 0.7.12 exports marks only for tokens, so a mapping
 * or sequence is placed at its first scalar; an empty one at fallback (its key's line). */
static int node_line(struct fy_node *n, int fallback)
{
    if (!n)
        return fallback;
    if (fy_node_is_scalar(n)) {
        struct fy_token *t = fy_node_get_scalar_token(n);
        const struct fy_mark *m = t ? fy_token_start_mark(t) : NULL;
        return m ? m->line + 1 : fallback;
    }
    void *it = NULL;
    if (fy_node_is_sequence(n)) {
        struct fy_node *first = fy_node_sequence_iterate(n, &it);
        return first ? node_line(first, fallback) : fallback;
    }
    struct fy_node_pair *p = fy_node_mapping_iterate(n, &it);
    return p ? node_line(fy_node_pair_key(p), fallback) : fallback;
}

/* The text of a scalar value, or an error saying what was expected. A missing value
 * ("key:" alone) counts as absent, not as "". */
static int scalar(yctx_t *y, struct fy_node *n, int line, const char *what, const char *expect,
                  const char **out)
{
    if (n && !fy_node_is_scalar(n))
        return fail(y, node_line(n, line), "%s must be %s, not a %s", what, expect,
                    fy_node_is_mapping(n) ? "mapping" : "list");
    const char *s = n ? fy_node_get_scalar0(n) : NULL;
    if (!s || (s[0] == '\0' && fy_node_get_style(n) == FYNS_PLAIN))
        return fail(y, line, "%s needs a value (%s)", what, expect);
    *out = s;
    return 0;
}

static int get_string(yctx_t *y, struct fy_node *n, int line, const char *what, char *buf,
                      size_t cap)
{
    const char *s;
    int rc = scalar(y, n, line, what, "a string", &s);
    if (rc < 0)
        return rc;
    if (strlen(s) >= cap)
        return fail(y, node_line(n, line), "%s is longer than %zu bytes", what, cap - 1);
    memcpy(buf, s, strlen(s) + 1);
    return 0;
}

static int get_duration(yctx_t *y, struct fy_node *n, int line, const char *what, uint64_t min,
                        uint64_t *out)
{
    const char *s;
    int rc = scalar(y, n, line, what, "a duration like 500ms, 2s, 1m, 1h", &s);
    if (rc < 0)
        return rc;
    uint64_t ms;
    if (cm_parse_duration_ms(s, &ms) < 0)
        return fail(y, node_line(n, line), "%s '%s' is not a duration; write 500ms, 2s, 1m or 1h",
                    what, s);
    if (ms < min || ms > DAY_MS)
        return fail(y, node_line(n, line), "%s '%s' is out of range; use %s..24h", what, s,
                    min ? "1ms" : "0");
    *out = ms;
    return 0;
}

static int get_int(yctx_t *y, struct fy_node *n, int line, const char *what, long min, long max,
                   int *out)
{
    const char *s;
    int rc = scalar(y, n, line, what, "a whole number", &s);
    if (rc < 0)
        return rc;
    long v;
    if (cm_parse_int(s, min, max, &v) < 0)
        return fail(y, node_line(n, line), "%s '%s' must be a whole number in %ld..%ld", what, s,
                    min, max);
    *out = (int)v;
    return 0;
}

/* Parses a decimal number with an optional suffix (exactly one of suffixes, or none). */
static int number_suffix(const char *s, double *v, const char **suffix)
{
    char *end;
    if (!isdigit((unsigned char)s[0]))
        return -EINVAL;
    errno = 0;
    *v = strtod(s, &end);
    if (errno != 0 || end == s)
        return -EINVAL;
    *suffix = end;
    return 0;
}

/* "20%" or 20: a share in percent, 0..100. */
static int get_percent(yctx_t *y, struct fy_node *n, int line, const char *what, double *out)
{
    const char *s, *suf;
    int rc = scalar(y, n, line, what, "a percentage like 20%", &s);
    if (rc < 0)
        return rc;
    double v;
    if (number_suffix(s, &v, &suf) < 0 || (strcmp(suf, "%") != 0 && suf[0] != '\0') ||
        !(v >= 0 && v <= 100))
        return fail(y, node_line(n, line), "%s '%s' must be a percentage 0%%..100%% like 20%%",
                    what, s);
    *out = v;
    return 0;
}

/* "100", "100/s", "6000/m", "360000/h": tokens per second. */
static int get_rate(yctx_t *y, struct fy_node *n, int line, const char *what, double *out)
{
    const char *s, *suf;
    int rc = scalar(y, n, line, what, "a rate like 100/s", &s);
    if (rc < 0)
        return rc;
    double v, per = 0;
    if (number_suffix(s, &v, &suf) == 0) {
        if (suf[0] == '\0' || strcmp(suf, "/s") == 0)
            per = 1;
        else if (strcmp(suf, "/m") == 0)
            per = 60;
        else if (strcmp(suf, "/h") == 0)
            per = 3600;
    }
    if (per == 0 || !(v / per <= RATE_MAX))
        return fail(y, node_line(n, line), "%s '%s' must be a rate like 100, 100/s, 6000/m", what,
                    s);
    *out = v / per;
    return 0;
}

static int get_burst(yctx_t *y, struct fy_node *n, int line, const char *what, double *out)
{
    const char *s, *suf;
    int rc = scalar(y, n, line, what, "a number of requests", &s);
    if (rc < 0)
        return rc;
    double v;
    if (number_suffix(s, &v, &suf) < 0 || suf[0] != '\0' || !(v >= 1 && v <= RATE_MAX))
        return fail(y, node_line(n, line), "%s '%s' must be a number >= 1", what, s);
    *out = v;
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Mapping walker: one table of known keys per block                                  */
/* ---------------------------------------------------------------------------------- */

typedef enum {
    V_DURATION,  /* uint64_t ms, min = smallest allowed ms */
    V_INT,       /* int in [min, max] */
    V_PERCENT,   /* int percent 0..100 (whole) */
    V_FRACTION,  /* double 0..1 from a percentage */
    V_RATE,      /* double tokens per second */
    V_BURST,     /* double >= 1 */
    V_HTTP_PATH, /* char[GW_URL_MAX] starting with '/' */
} vkind_t;

typedef struct field {
    const char *key;
    vkind_t kind;
    size_t off; /* into the block's base struct */
    long min, max;
} field_t;

static int set_field(yctx_t *y, const field_t *f, struct fy_node *v, int line, const char *what,
                     void *base)
{
    void *dst = (char *)base + f->off;
    double d;
    int rc;
    switch (f->kind) {
    case V_DURATION:
        return get_duration(y, v, line, what, (uint64_t)f->min, dst);
    case V_INT:
        return get_int(y, v, line, what, f->min, f->max, dst);
    case V_PERCENT:
        rc = get_percent(y, v, line, what, &d);
        if (rc == 0 && d != (int)d)
            rc = fail(y, node_line(v, line), "%s must be a whole percentage", what);
        if (rc == 0)
            *(int *)dst = (int)d;
        return rc;
    case V_FRACTION:
        rc = get_percent(y, v, line, what, &d);
        if (rc == 0)
            *(double *)dst = d / 100;
        return rc;
    case V_RATE:
        return get_rate(y, v, line, what, dst);
    case V_BURST:
        return get_burst(y, v, line, what, dst);
    case V_HTTP_PATH:
        rc = get_string(y, v, line, what, dst, GW_URL_MAX);
        if (rc == 0 && ((char *)dst)[0] != '/')
            rc = fail(y, node_line(v, line), "%s must start with '/'", what);
        return rc;
    }
    return -EINVAL;
}

static void key_list(const field_t *f, size_t n, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", f[i].key);
}

/* Requires map to be a mapping (what names it in messages) and every key to be in f.
 * *given gets bit i set for each f[i] present, so callers can tell explicit from default. */
static int walk_fields(yctx_t *y, struct fy_node *map, int line, const char *what, const field_t *f,
                       size_t nf, void *base, unsigned *given)
{
    char keys[256];
    key_list(f, nf, keys, sizeof(keys));
    if (!fy_node_is_mapping(map))
        return fail(y, node_line(map, line), "%s must be a mapping with keys %s", what, keys);
    *given = 0;
    int first = 0;
    void *it = NULL;
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(map, &it))) {
        struct fy_node *k = fy_node_pair_key(p);
        int kline = node_line(k, line);
        const char *ks = fy_node_is_scalar(k) ? fy_node_get_scalar0(k) : NULL;
        size_t i = 0;
        while (ks && i < nf && strcmp(ks, f[i].key) != 0)
            i++;
        if (!ks || i == nf) {
            note(&first, fail(y, kline, "unknown key '%s' in %s; expected one of %s", ks ? ks : "?",
                              what, keys));
            continue;
        }
        char full[WHAT_MAX + 64];
        snprintf(full, sizeof(full), "%s.%s", what, ks);
        int rc = set_field(y, &f[i], fy_node_pair_value(p), kline, full, base);
        if (note(&first, rc))
            return rc;
        if (rc == 0)
            *given |= 1u << i;
    }
    return first;
}

#define ROUTE_FIELD(k, kind, member, min, max)                                                     \
    {                                                                                              \
        k, kind, offsetof(gw_route_cfg_t, member), min, max                                        \
    }

static const field_t timeout_fields[] = {
    ROUTE_FIELD("connect", V_DURATION, connect_timeout_ms, 1, 0),
    ROUTE_FIELD("try", V_DURATION, try_timeout_ms, 1, 0),
    ROUTE_FIELD("total", V_DURATION, timeout_ms, 1, 0),
};
static const field_t retry_fields[] = {
    ROUTE_FIELD("attempts", V_INT, attempts, 1, 10),
    ROUTE_FIELD("backoff", V_DURATION, backoff_base_ms, 0, 0),
    ROUTE_FIELD("backoff_max", V_DURATION, backoff_max_ms, 0, 0),
    ROUTE_FIELD("budget", V_FRACTION, retry_budget, 0, 100),
    ROUTE_FIELD("min_per_second", V_INT, retry_budget_min, 0, 1000000),
};
static const field_t health_fields[] = {
    ROUTE_FIELD("path", V_HTTP_PATH, health_path, 0, 0),
    ROUTE_FIELD("interval", V_DURATION, health_interval_ms, 1, 0),
    ROUTE_FIELD("timeout", V_DURATION, health_timeout_ms, 1, 0),
    ROUTE_FIELD("rise", V_INT, health_rise, 1, 100),
    ROUTE_FIELD("fall", V_INT, health_fall, 1, 100),
};
static const field_t outlier_fields[] = {
    ROUTE_FIELD("failures", V_INT, outlier_failures, 1, 1000),
    ROUTE_FIELD("base_ejection", V_DURATION, outlier_base_ms, 1, 0),
    ROUTE_FIELD("max_ejection", V_DURATION, outlier_max_ms, 1, 0),
    ROUTE_FIELD("max_ejected", V_PERCENT, outlier_max_percent, 0, 100),
    ROUTE_FIELD("panic_below", V_PERCENT, panic_percent, 0, 100),
};
static const field_t limit_fields[] = {
    ROUTE_FIELD("max_connections", V_INT, max_connections, 1, 1000000),
    ROUTE_FIELD("max_pending", V_INT, max_pending, 0, 1000000),
    ROUTE_FIELD("max_requests", V_INT, max_requests, 1, 1000000),
};
static const field_t pool_fields[] = {
    ROUTE_FIELD("max_idle", V_INT, pool_max_idle, 0, 1000000),
    ROUTE_FIELD("idle_timeout", V_DURATION, pool_idle_timeout_ms, 1, 0),
};
static const field_t rate_fields[] = {
    {"rate", V_RATE, offsetof(gw_rate_cfg_t, rate), 0, 0},
    {"burst", V_BURST, offsetof(gw_rate_cfg_t, burst), 0, 0},
};

#define NFIELDS(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------------------------- */
/* Route blocks                                                                       */
/* ---------------------------------------------------------------------------------- */

typedef struct route_ctx {
    gw_route_cfg_t *r;
    const gw_config_t *cfg;
    char label[GW_URL_MAX + 16]; /* "route 'users'" */
    int line;                    /* of the route's first key */
    int balancer_line, hash_line, prefix_line, upstreams_line, name_line;
    int subject_line; /* of rate_limit.per_subject, 0 when absent */
    bool name_given;
} route_ctx_t;

/* "what" for a block of the route: "route 'users' timeouts". */
static const char *block_name(route_ctx_t *rc, const char *block, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s %s", rc->label, block);
    return buf;
}

/* Walks a policy block of the route and applies the "explicit wins, implicit follows"
 * rule: a default that would contradict an explicit value is pulled along instead. */
static int route_block(yctx_t *y, route_ctx_t *rc, struct fy_node *v, int line, const char *block,
                       const field_t *f, size_t nf, unsigned *given)
{
    char what[WHAT_MAX];
    return walk_fields(y, v, line, block_name(rc, block, what, sizeof(what)), f, nf, rc->r, given);
}

static int on_timeouts(yctx_t *y, route_ctx_t *rc, struct fy_node *v, int line)
{
    unsigned g;
    int e = route_block(y, rc, v, line, "timeouts", timeout_fields, NFIELDS(timeout_fields), &g);
    gw_route_cfg_t *r = rc->r;
    if (e == 0 && r->try_timeout_ms > r->timeout_ms) {
        if (g & 1u << 1)
            return fail(y, node_line(v, line), "%s: timeouts.try must be <= timeouts.total",
                        rc->label);
        r->try_timeout_ms = r->timeout_ms; /* only total given: one try may use all of it */
    }
    return e;
}

static int on_retries(yctx_t *y, route_ctx_t *rc, struct fy_node *v, int line)
{
    unsigned g;
    int e = route_block(y, rc, v, line, "retries", retry_fields, NFIELDS(retry_fields), &g);
    gw_route_cfg_t *r = rc->r;
    if (e == 0 && r->backoff_max_ms < r->backoff_base_ms) {
        if (g & 1u << 2)
            return fail(y, node_line(v, line), "%s: retries.backoff_max must be >= backoff",
                        rc->label);
        r->backoff_max_ms = r->backoff_base_ms;
    }
    return e;
}

static int on_health(yctx_t *y, route_ctx_t *rc, struct fy_node *v, int line)
{
    if (v && fy_node_is_scalar(v)) {
        const char *s = fy_node_get_scalar0(v);
        if (s && (strcmp(s, "off") == 0 || strcmp(s, "false") == 0)) {
            rc->r->health_path[0] = '\0';
            return 0;
        }
        return fail(y, node_line(v, line),
                    "%s health must be 'off' or a mapping {path, interval, timeout, rise, fall}",
                    rc->label);
    }
    unsigned g;
    int e = route_block(y, rc, v, line, "health", health_fields, NFIELDS(health_fields), &g);
    gw_route_cfg_t *r = rc->r;
    if (e == 0 && r->health_timeout_ms > r->health_interval_ms) {
        if (g & 1u << 2)
            return fail(y, node_line(v, line), "%s: health.timeout must be <= health.interval",
                        rc->label);
        r->health_timeout_ms = r->health_interval_ms;
    }
    return e;
}

static int on_outlier(yctx_t *y, route_ctx_t *rc, struct fy_node *v, int line)
{
    unsigned g;
    int e = route_block(y, rc, v, line, "outlier", outlier_fields, NFIELDS(outlier_fields), &g);
    gw_route_cfg_t *r = rc->r;
    if (e == 0 && r->outlier_max_ms < r->outlier_base_ms) {
        if (g & 1u << 2)
            return fail(y, node_line(v, line), "%s: outlier.max_ejection must be >= base_ejection",
                        rc->label);
        r->outlier_max_ms = r->outlier_base_ms;
    }
    return e;
}

static int on_limits(yctx_t *y, route_ctx_t *rc, struct fy_node *v, int line)
{
    unsigned g;
    return route_block(y, rc, v, line, "limits", limit_fields, NFIELDS(limit_fields), &g);
}

static int on_pool(yctx_t *y, route_ctx_t *rc, struct fy_node *v, int line)
{
    unsigned g;
    return route_block(y, rc, v, line, "pool", pool_fields, NFIELDS(pool_fields), &g);
}

static int on_slow_start(yctx_t *y, route_ctx_t *rc, struct fy_node *v, int line)
{
    char what[WHAT_MAX];
    return get_duration(y, v, line, block_name(rc, "slow_start", what, sizeof(what)), 0,
                        &rc->r->slow_start_ms);
}

static int one_rate(yctx_t *y, route_ctx_t *rc, struct fy_node *v, int line, const char *which,
                    gw_rate_cfg_t *out)
{
    char what[WHAT_MAX], block[64];
    snprintf(block, sizeof(block), "rate_limit.%s", which);
    unsigned g;
    int e = walk_fields(y, v, line, block_name(rc, block, what, sizeof(what)), rate_fields,
                        NFIELDS(rate_fields), out, &g);
    if (e == 0 && !(g & 1u << 0))
        return fail(y, node_line(v, line), "%s needs a rate", what);
    if (e == 0 && !(g & 1u << 1))
        out->burst = out->rate > 1 ? out->rate : 1;
    return e;
}

static int on_rate_limit(yctx_t *y, route_ctx_t *rc, struct fy_node *v, int line)
{
    char what[WHAT_MAX];
    block_name(rc, "rate_limit", what, sizeof(what));
    if (!fy_node_is_mapping(v))
        return fail(y, node_line(v, line), "%s must be a mapping {per_client, per_subject}", what);
    int first = 0;
    void *it = NULL;
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(v, &it))) {
        struct fy_node *k = fy_node_pair_key(p);
        const char *ks = fy_node_is_scalar(k) ? fy_node_get_scalar0(k) : "?";
        int kline = node_line(k, line), e;
        if (strcmp(ks, "per_client") == 0)
            e = one_rate(y, rc, fy_node_pair_value(p), kline, ks, &rc->r->rate_client);
        else if (strcmp(ks, "per_subject") == 0) {
            rc->subject_line = kline;
            e = one_rate(y, rc, fy_node_pair_value(p), kline, ks, &rc->r->rate_subject);
        } else
            e = fail(y, kline, "unknown key '%s' in %s; expected one of per_client, per_subject",
                     ks, what);
        if (note(&first, e))
            return e;
    }
    return first;
}

/* ---------------------------------------------------------------------------------- */
/* Route identity: name, prefix, host, balancer, hash, upstreams, auth                */
/* ---------------------------------------------------------------------------------- */

static int on_name(yctx_t *y, route_ctx_t *rc, struct fy_node *v, int line)
{
    char what[WHAT_MAX];
    rc->name_given = true;
    rc->name_line = node_line(v, line);
    int e = get_string(y, v, line, block_name(rc, "name", what, sizeof(what)), rc->r->name,
                       sizeof(rc->r->name));
    if (e == 0 && rc->r->name[0] == '\0')
        e = fail(y, rc->name_line, "%s: name must not be empty", rc->label);
    for (const char *c = rc->r->name; e == 0 && *c; c++)
        if (isspace((unsigned char)*c) || iscntrl((unsigned char)*c))
            e = fail(y, rc->name_line, "route name '%s' must not contain spaces", rc->r->name);
    return e;
}

static int on_prefix(yctx_t *y, route_ctx_t *rc, struct fy_node *v, int line)
{
    char what[WHAT_MAX];
    gw_route_cfg_t *r = rc->r;
    rc->prefix_line = node_line(v, line);
    int e = get_string(y, v, line, block_name(rc, "prefix", what, sizeof(what)), r->prefix,
                       sizeof(r->prefix));
    if (e < 0)
        return e;
    if (r->prefix[0] != '/')
        return fail(y, rc->prefix_line, "%s: prefix '%s' must start with '/'", rc->label,
                    r->prefix);
    for (const char *c = r->prefix; *c; c++)
        if (*c == '?' || *c == '#' || isspace((unsigned char)*c) || iscntrl((unsigned char)*c))
            return fail(y, rc->prefix_line,
                        "%s: prefix '%s' must be a plain path (no space, '?' or '#')", rc->label,
                        r->prefix);
    size_t n = strlen(r->prefix);
    while (n > 1 && r->prefix[n - 1] == '/') /* "/users/" means "/users" */
        r->prefix[--n] = '\0';
    return 0;
}

static int on_host(yctx_t *y, route_ctx_t *rc, struct fy_node *v, int line)
{
    char what[WHAT_MAX];
    gw_route_cfg_t *r = rc->r;
    int e = get_string(y, v, line, block_name(rc, "host", what, sizeof(what)), r->host,
                       sizeof(r->host));
    for (char *c = r->host; e == 0 && *c; c++) {
        if (!isalnum((unsigned char)*c) && !strchr(".-_[]:", *c))
            return fail(y, node_line(v, line), "%s: host '%s' is not a host name", rc->label,
                        r->host);
        *c = (char)tolower((unsigned char)*c); /* matched case-insensitively anyway */
    }
    return e;
}

static int on_balancer(yctx_t *y, route_ctx_t *rc, struct fy_node *v, int line)
{
    static const gw_lb_kind_t kinds[] = {GW_LB_ROUND_ROBIN, GW_LB_WEIGHTED_ROUND_ROBIN,
                                         GW_LB_LEAST_REQUEST, GW_LB_PEAK_EWMA, GW_LB_HASH};
    const char *s;
    int e = scalar(y, v, line, "balancer", "a balancer name", &s);
    if (e < 0)
        return e;
    rc->balancer_line = node_line(v, line);
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strcmp(s, gw_lb_name(kinds[i])) == 0) {
            rc->r->balancer = kinds[i];
            return 0;
        }
    }
    return fail(y, rc->balancer_line,
                "%s: unknown balancer '%s'; use round_robin, weighted_round_robin, "
                "least_request, peak_ewma or hash",
                rc->label, s);
}

static int header_token(const char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return 0;
    return 1;
}

static int on_hash(yctx_t *y, route_ctx_t *rc, struct fy_node *v, int line)
{
    char what[WHAT_MAX];
    block_name(rc, "hash", what, sizeof(what));
    rc->hash_line = node_line(v, line);
    if (!fy_node_is_mapping(v) || fy_node_mapping_item_count(v) != 1)
        return fail(y, rc->hash_line, "%s must be { header: NAME } or { cookie: NAME }", what);
    void *it = NULL;
    struct fy_node_pair *p = fy_node_mapping_iterate(v, &it);
    struct fy_node *k = fy_node_pair_key(p);
    const char *ks = fy_node_is_scalar(k) ? fy_node_get_scalar0(k) : "?";
    char *dst = strcmp(ks, "header") == 0   ? rc->r->hash_header
                : strcmp(ks, "cookie") == 0 ? rc->r->hash_cookie
                                            : NULL;
    if (!dst)
        return fail(y, node_line(k, line), "unknown key '%s' in %s; expected header or cookie", ks,
                    what);
    int e = get_string(y, fy_node_pair_value(p), node_line(k, line), what, dst, GW_NAME_MAX);
    if (e == 0 && (dst[0] == '\0' || !header_token(dst)))
        return fail(y, rc->hash_line, "%s %s '%s' is not a valid name", what, ks, dst);
    return e;
}

static int one_upstream(yctx_t *y, route_ctx_t *rc, struct fy_node *item, gw_upstream_cfg_t *u)
{
    int line = node_line(item, rc->upstreams_line);
    struct fy_node *url = item, *weight = NULL;
    if (fy_node_is_mapping(item)) {
        url = NULL;
        void *it = NULL;
        struct fy_node_pair *p;
        while ((p = fy_node_mapping_iterate(item, &it))) {
            struct fy_node *k = fy_node_pair_key(p);
            const char *ks = fy_node_is_scalar(k) ? fy_node_get_scalar0(k) : "?";
            if (strcmp(ks, "url") == 0)
                url = fy_node_pair_value(p);
            else if (strcmp(ks, "weight") == 0)
                weight = fy_node_pair_value(p);
            else
                return fail(y, node_line(k, line),
                            "unknown key '%s' in %s upstream; expected url, weight", ks, rc->label);
        }
        if (!url)
            return fail(y, line, "%s upstream needs a url", rc->label);
    }
    const char *s;
    int e = scalar(y, url, line, "upstream", "http://HOST:PORT or {url, weight}", &s);
    char why[1024];
    if (e == 0 && gw_upstream_parse(s, u, why, sizeof(why)) < 0)
        e = fail(y, node_line(url, line), "%s: %s", rc->label, why);
    if (e == 0 && weight)
        e = get_int(y, weight, line, "upstream weight", 1, 1000, &u->weight);
    return e;
}

static int on_upstreams(yctx_t *y, route_ctx_t *rc, struct fy_node *v, int line)
{
    gw_route_cfg_t *r = rc->r;
    rc->upstreams_line = line;
    if (!fy_node_is_sequence(v) || fy_node_sequence_item_count(v) == 0)
        return fail(y, node_line(v, line), "%s: upstreams must be a non-empty list", rc->label);
    int n = fy_node_sequence_item_count(v);
    if (n > GW_LB_MAX_HOSTS)
        return fail(y, node_line(v, line), "%s: %d upstreams; at most %d", rc->label, n,
                    GW_LB_MAX_HOSTS);
    free(r->upstreams); /* a duplicate key is refused by libfyaml, but stay leak-free */
    r->nupstreams = 0;
    r->upstreams = calloc((size_t)n, sizeof(*r->upstreams));
    if (!r->upstreams)
        return -ENOMEM;
    int first = 0;
    void *it = NULL;
    struct fy_node *item;
    while ((item = fy_node_sequence_iterate(v, &it))) {
        gw_upstream_cfg_t *u = &r->upstreams[r->nupstreams];
        memset(u, 0, sizeof(*u));
        int e = one_upstream(y, rc, item, u);
        for (int i = 0; e == 0 && i < r->nupstreams; i++)
            if (r->upstreams[i].port == u->port && strcmp(r->upstreams[i].host, u->host) == 0)
                e = fail(y, node_line(item, line),
                         "%s: upstream '%s' is listed twice (same address as '%s')", rc->label,
                         u->url, r->upstreams[i].url);
        if (note(&first, e))
            return e;
        if (e == 0)
            r->nupstreams++;
    }
    return first;
}

/* Appends the scope tokens of v (a list, or one space-separated string) to buf. */
static int scopes(yctx_t *y, route_ctx_t *rc, struct fy_node *v, int line, const char *key,
                  char *buf, size_t cap)
{
    char what[WHAT_MAX], block[64];
    snprintf(block, sizeof(block), "auth.%s", key);
    block_name(rc, block, what, sizeof(what));
    void *it = NULL;
    struct fy_node *item = fy_node_is_sequence(v) ? fy_node_sequence_iterate(v, &it) : v;
    for (; item; item = fy_node_is_sequence(v) ? fy_node_sequence_iterate(v, &it) : NULL) {
        const char *s;
        int e = scalar(y, item, line, what, "a list of scopes", &s);
        if (e < 0)
            return e;
        for (const char *c = s; *c; c++) /* RFC 6749 3.3 scope-token, space-separated */
            if (*c != ' ' && (*c < 0x21 || *c > 0x7e || *c == '"' || *c == '\\'))
                return fail(y, node_line(item, line), "%s: '%s' is not a valid scope", what, s);
        size_t used = strlen(buf);
        if ((size_t)snprintf(buf + used, cap - used, "%s%s", used ? " " : "", s) >= cap - used)
            return fail(y, node_line(item, line), "%s: scopes are longer than %zu bytes", what,
                        cap - 1);
    }
    return 0;
}

static int on_auth(yctx_t *y, route_ctx_t *rc, struct fy_node *v, int line)
{
    gw_route_cfg_t *r = rc->r;
    int aline = node_line(v, line);
    if (v && fy_node_is_scalar(v)) {
        const char *s = fy_node_get_scalar0(v);
        if (s && strcmp(s, "public") == 0) {
            r->auth = 0;
            return 0;
        }
        if (!s || strcmp(s, "required") != 0)
            return fail(y, aline,
                        "%s auth must be public, required or { scopes, read_scopes, "
                        "write_scopes }",
                        rc->label);
    } else if (!fy_node_is_mapping(v)) {
        return fail(y, aline, "%s auth must be public, required or a mapping", rc->label);
    }
    void *it = NULL;
    struct fy_node_pair *p;
    while (fy_node_is_mapping(v) && (p = fy_node_mapping_iterate(v, &it))) {
        struct fy_node *k = fy_node_pair_key(p);
        const char *ks = fy_node_is_scalar(k) ? fy_node_get_scalar0(k) : "?";
        char *dst = strcmp(ks, "scopes") == 0         ? r->scopes
                    : strcmp(ks, "read_scopes") == 0  ? r->read_scopes
                    : strcmp(ks, "write_scopes") == 0 ? r->write_scopes
                                                      : NULL;
        if (!dst)
            return fail(y, node_line(k, line),
                        "unknown key '%s' in %s auth; expected scopes, read_scopes, "
                        "write_scopes",
                        ks, rc->label);
        int e = scopes(y, rc, fy_node_pair_value(p), node_line(k, line), ks, dst, 512);
        if (e < 0)
            return e;
    }
    if (rc->cfg->auth.key_file[0] == '\0')
        return fail(y, aline, "%s: auth needs auth.key_file", rc->label);
    r->auth = 1;
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Routes                                                                             */
/* ---------------------------------------------------------------------------------- */

typedef int (*route_key_fn)(yctx_t *y, route_ctx_t *rc, struct fy_node *v, int line);

static const struct {
    const char *key;
    route_key_fn fn;
} route_keys[] = {
    {"name", on_name},           {"prefix", on_prefix},         {"host", on_host},
    {"upstreams", on_upstreams}, {"balancer", on_balancer},     {"hash", on_hash},
    {"timeouts", on_timeouts},   {"retries", on_retries},       {"health", on_health},
    {"outlier", on_outlier},     {"slow_start", on_slow_start}, {"limits", on_limits},
    {"pool", on_pool},           {"rate_limit", on_rate_limit}, {"auth", on_auth},
};

#define ROUTE_KEYS                                                                                 \
    "name, prefix, host, upstreams, balancer, hash, timeouts, retries, health, outlier, "          \
    "slow_start, limits, pool, rate_limit, auth"

/* "route 'users'" from the name, else the prefix, else the position. */
static void route_label(struct fy_node *map, int index, char *buf, size_t cap)
{
    struct fy_node *n = fy_node_mapping_lookup_by_string(map, "name", -1);
    if (!n || !fy_node_is_scalar(n))
        n = fy_node_mapping_lookup_by_string(map, "prefix", -1);
    const char *s = n && fy_node_is_scalar(n) ? fy_node_get_scalar0(n) : NULL;
    if (s && s[0])
        snprintf(buf, cap, "route '%.*s'", GW_URL_MAX, s);
    else
        snprintf(buf, cap, "routes[%d]", index);
}

static int route_keys_walk(yctx_t *y, route_ctx_t *rc, struct fy_node *map)
{
    int first = 0;
    void *it = NULL;
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(map, &it))) {
        struct fy_node *k = fy_node_pair_key(p);
        const char *ks = fy_node_is_scalar(k) ? fy_node_get_scalar0(k) : "?";
        int kline = node_line(k, rc->line);
        size_t i = 0, n = sizeof(route_keys) / sizeof(route_keys[0]);
        while (i < n && strcmp(ks, route_keys[i].key) != 0)
            i++;
        int e = i == n ? fail(y, kline, "unknown key '%s' in %s; expected one of " ROUTE_KEYS, ks,
                              rc->label)
                       : route_keys[i].fn(y, rc, fy_node_pair_value(p), kline);
        if (note(&first, e))
            return e;
    }
    return first;
}

/* Defaults that depend on other keys, and keys that must come together. */
static int route_complete(yctx_t *y, route_ctx_t *rc)
{
    gw_route_cfg_t *r = rc->r;
    if (r->prefix[0] == '\0')
        return fail(y, rc->line, "%s needs a prefix (a path like /users)", rc->label);
    if (r->nupstreams == 0)
        return fail(y, rc->line, "%s needs upstreams (a list of http://HOST:PORT)", rc->label);
    bool keyed = r->hash_header[0] || r->hash_cookie[0];
    if (r->balancer == GW_LB_HASH && !keyed)
        return fail(y, rc->balancer_line,
                    "%s: balancer hash needs hash: { header: NAME } or { cookie: NAME }",
                    rc->label);
    if (r->balancer != GW_LB_HASH && keyed)
        return fail(y, rc->hash_line, "%s: hash is only used with balancer: hash", rc->label);
    if (rc->subject_line && r->rate_subject.rate > 0 && !r->auth)
        return fail(y, rc->subject_line,
                    "%s: rate_limit.per_subject needs a token; drop auth: public (or use "
                    "per_client)",
                    rc->label);
    if (!rc->name_given) {
        /* A host-specific route is named host + prefix so that the same prefix on two
         * hosts does not collide on the default name; no '/' in it (an admin URL). */
        rc->name_line = rc->prefix_line;
        if (gw_route_default_name(rc->cfg, rc->cfg->nroutes - 1, r) < 0)
            return fail(y, rc->prefix_line,
                        "%s: prefix is too long to name the route; add name:", rc->label);
    }
    return 0;
}

static int parse_route(yctx_t *y, gw_config_t *cfg, struct fy_node *map, int index, int line,
                       int *name_line)
{
    gw_route_cfg_t *r = &cfg->routes[cfg->nroutes];
    route_ctx_t rc = {.r = r, .cfg = cfg, .line = node_line(map, line)};
    route_label(map, index, rc.label, sizeof(rc.label));
    rc.balancer_line = rc.hash_line = rc.prefix_line = rc.name_line = rc.line;
    gw_route_defaults(r);
    r->auth = cfg->auth.key_file[0] != '\0'; /* a key makes every route private by default */
    cfg->nroutes++;                          /* counted now so that free sees its upstreams */
    if (!fy_node_is_mapping(map))
        return fail(y, rc.line, "routes[%d] must be a mapping with prefix and upstreams", index);
    int e = route_keys_walk(y, &rc, map);
    if (e == 0)
        e = route_complete(y, &rc);
    *name_line = rc.name_line;
    return e;
}

/* Same name or same (host, prefix) as an earlier route: refused at this route's line. */
static int route_unique(yctx_t *y, const gw_config_t *cfg, const int *lines)
{
    int last = cfg->nroutes - 1;
    const gw_route_cfg_t *r = &cfg->routes[last];
    for (int i = 0; i < last; i++) {
        const gw_route_cfg_t *o = &cfg->routes[i];
        if (strcmp(o->name, r->name) == 0)
            return fail(y, lines[last], "route name '%s' is already used on line %d", r->name,
                        lines[i]);
        if (strcmp(o->prefix, r->prefix) == 0 && strcasecmp(o->host, r->host) == 0)
            return fail(y, lines[last],
                        "route '%s' has the same host and prefix as route '%s' (line %d)", r->name,
                        o->name, lines[i]);
    }
    return 0;
}

static int parse_routes(yctx_t *y, gw_config_t *cfg, struct fy_node *v, int line)
{
    if (!fy_node_is_sequence(v))
        return fail(y, node_line(v, line), "routes must be a list of route mappings");
    int n = fy_node_sequence_item_count(v);
    cfg->routes = calloc(n > 0 ? (size_t)n : 1, sizeof(*cfg->routes));
    int *lines = calloc(n > 0 ? (size_t)n : 1, sizeof(int));
    int first = cfg->routes && lines ? 0 : -ENOMEM;
    void *it = NULL;
    struct fy_node *item;
    while (first != -ENOMEM && (item = fy_node_sequence_iterate(v, &it))) {
        int e = parse_route(y, cfg, item, cfg->nroutes, line, &lines[cfg->nroutes]);
        if (e == 0)
            e = route_unique(y, cfg, lines);
        if (note(&first, e))
            break;
    }
    free(lines);
    return first;
}

/* ---------------------------------------------------------------------------------- */
/* Top level: listen, auth                                                            */
/* ---------------------------------------------------------------------------------- */

static int parse_listen(yctx_t *y, gw_config_t *cfg, struct fy_node *v, int line)
{
    int e = get_string(y, v, line, "listen", cfg->listen, sizeof(cfg->listen));
    char host[256];
    int port;
    if (e == 0 && cm_parse_hostport(cfg->listen, host, sizeof(host), &port) < 0)
        return fail(y, node_line(v, line), "listen '%s' is not HOST:PORT (port 0-65535)",
                    cfg->listen);
    return e;
}

/* A relative key_file is relative to the directory of the config file. */
static int key_path(yctx_t *y, gw_config_t *cfg, int line, const char *raw)
{
    const char *slash = strrchr(cfg->path, '/');
    int dirlen = raw[0] != '/' && slash ? (int)(slash - cfg->path) + 1 : 0;
    int n =
        snprintf(cfg->auth.key_file, sizeof(cfg->auth.key_file), "%.*s%s", dirlen, cfg->path, raw);
    if (n < 0 || (size_t)n >= sizeof(cfg->auth.key_file))
        return fail(y, line, "auth.key_file path is too long");
    if (access(cfg->auth.key_file, R_OK) < 0)
        return fail(y, line, "auth.key_file '%s' cannot be read: %s", cfg->auth.key_file,
                    strerror(errno));
    return 0;
}

/* auth.issuer / auth.audience: a name, or the plain word any (the explicit opt-out). */
static int claim_name(yctx_t *y, struct fy_node *v, int line, const char *what, char *buf,
                      size_t cap, int *any)
{
    int e = get_string(y, v, line, what, buf, cap);
    if (e < 0)
        return e;
    *any = strcmp(buf, "any") == 0 && fy_node_get_style(v) == FYNS_PLAIN;
    if (*any)
        buf[0] = '\0';
    else if (buf[0] == '\0')
        return fail(y, node_line(v, line),
                    "%s must not be empty; write %s: any to accept every one", what,
                    what + strlen("auth."));
    return 0;
}

/* With a key, tokens must name their issuer and audience (RFC 7519 4.1.3: an aud the
 * gateway does not identify with is refused), so the file must say which, or any. */
static int auth_complete(yctx_t *y, const gw_config_t *cfg, int line, bool iss, bool aud)
{
    if (!cfg->auth.key_file[0])
        return 0;
    if (!iss)
        return fail(y, line,
                    "auth needs issuer: the iss your tokens carry (cmesh token --config mints "
                    "it), or issuer: any to accept every issuer");
    if (!aud)
        return fail(y, line,
                    "auth needs audience: the aud your tokens carry (cmesh token --config mints "
                    "it), or audience: any to accept every audience");
    return 0;
}

static int parse_auth(yctx_t *y, gw_config_t *cfg, struct fy_node *v, int line)
{
    if (!fy_node_is_mapping(v))
        return fail(y, node_line(v, line),
                    "auth must be a mapping with keys key_file, issuer, audience, leeway");
    bool iss = false, aud = false;
    int first = 0;
    void *it = NULL;
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(v, &it))) {
        struct fy_node *k = fy_node_pair_key(p), *val = fy_node_pair_value(p);
        const char *ks = fy_node_is_scalar(k) ? fy_node_get_scalar0(k) : "?";
        int kline = node_line(k, line), e;
        char raw[sizeof(cfg->auth.key_file)];
        if (strcmp(ks, "key_file") == 0) {
            e = get_string(y, val, kline, "auth.key_file", raw, sizeof(raw));
            if (e == 0)
                e = key_path(y, cfg, node_line(val, kline), raw);
        } else if (strcmp(ks, "issuer") == 0) {
            iss = true;
            e = claim_name(y, val, kline, "auth.issuer", cfg->auth.issuer, sizeof(cfg->auth.issuer),
                           &cfg->auth.any_issuer);
        } else if (strcmp(ks, "audience") == 0) {
            aud = true;
            e = claim_name(y, val, kline, "auth.audience", cfg->auth.audience,
                           sizeof(cfg->auth.audience), &cfg->auth.any_audience);
        } else if (strcmp(ks, "leeway") == 0) {
            e = get_duration(y, val, kline, "auth.leeway", 0, &cfg->auth.leeway_ms);
        } else {
            e = fail(y, kline,
                     "unknown key '%s' in auth; expected one of key_file, issuer, audience, "
                     "leeway",
                     ks);
        }
        if (note(&first, e))
            return e;
    }
    int e = auth_complete(y, cfg, line, iss, aud); /* reported with the others */
    return first < 0 ? first : e;
}

/* Top-level keys are collected first: auth must be known before any route is read
 * (it decides the routes' default), whatever order the file uses. */
static int parse_root(yctx_t *y, gw_config_t *cfg, struct fy_node *root)
{
    static const char *const keys[] = {"listen", "auth", "routes"};
    struct fy_node *val[3] = {NULL};
    int lines[3] = {1, 1, 1};
    if (!root || !fy_node_is_mapping(root))
        return fail(y, node_line(root, 1), "the file must be a mapping with listen, auth, routes");
    int first = 0;
    void *it = NULL;
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(root, &it))) {
        struct fy_node *k = fy_node_pair_key(p);
        const char *ks = fy_node_is_scalar(k) ? fy_node_get_scalar0(k) : "?";
        if (strncmp(ks, "x-", 2) == 0)
            continue; /* a place for anchors shared by routes (docker-compose style) */
        size_t i = 0;
        while (i < 3 && strcmp(ks, keys[i]) != 0)
            i++;
        if (i == 3) {
            note(&first,
                 fail(y, node_line(k, 1),
                      "unknown key '%s' at top level; expected listen, auth, routes or x-*", ks));
            continue;
        }
        val[i] = fy_node_pair_value(p);
        lines[i] = node_line(k, 1);
    }
    if (fy_node_mapping_lookup_pair_by_string(root, "listen", -1) &&
        note(&first, parse_listen(y, cfg, val[0], lines[0])))
        return first;
    if (fy_node_mapping_lookup_pair_by_string(root, "auth", -1) &&
        note(&first, parse_auth(y, cfg, val[1], lines[1])))
        return first;
    if (fy_node_mapping_lookup_pair_by_string(root, "routes", -1))
        note(&first, parse_routes(y, cfg, val[2], lines[2]));
    return first;
}

/* ---------------------------------------------------------------------------------- */
/* Loading                                                                            */
/* ---------------------------------------------------------------------------------- */

/* Reads the whole file; -errno when it cannot. */
static int slurp(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    int rc = 0;
    for (;;) {
        if (n == cap) {
            char *grown = realloc(buf, cap ? cap * 2 : 4096);
            if (!grown) {
                rc = -ENOMEM;
                break;
            }
            buf = grown;
            cap = cap ? cap * 2 : 4096;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            rc = ferror(f) ? -EIO : 0;
            break;
        }
    }
    fclose(f);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* Parses text into a document. libfyaml's diagnostics are collected, not printed, and
 * the first one becomes "FILE:LINE: YAML syntax error: ..." */
static int parse_yaml(yctx_t *y, const char *text, size_t len, struct fy_document **out)
{
    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.level = FYET_ERROR;
    struct fy_diag *diag = fy_diag_create(&dcfg);
    if (!diag)
        return -ENOMEM;
    fy_diag_set_collect_errors(diag, true);
    struct fy_parse_cfg pcfg = {
        .flags = FYPCF_QUIET | FYPCF_RESOLVE_DOCUMENT | FYPCF_DISABLE_RECYCLING,
        .diag = diag,
    };
    struct fy_document *doc = fy_document_build_from_string(&pcfg, text, len);
    int rc = 0;
    if (!doc) {
        void *it = NULL;
        struct fy_diag_error *de = fy_diag_errors_iterate(diag, &it);
        if (de)
            rc = fail(y, de->line > 0 ? de->line : 1, "YAML syntax error: %s (column %d)", de->msg,
                      de->column);
        else if (len == 0)
            rc = fail(y, 1, "the file is empty; it must be a mapping with listen, auth, routes");
        else
            rc = fail(y, 1, "YAML syntax error");
    }
    fy_diag_destroy(diag);
    *out = doc;
    return rc;
}

int gw_config_load(const char *path, gw_config_t **out, char *err, size_t err_cap)
{
    yctx_t y = {.file = path, .err = err, .err_cap = err_cap};
    gw_config_t *cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return -ENOMEM;
    cfg->auth.leeway_ms = 30000;
    if (strlen(path) >= sizeof(cfg->path)) {
        free(cfg);
        snprintf(err, err_cap, "%s: path is too long", path);
        return -ENAMETOOLONG;
    }
    snprintf(cfg->path, sizeof(cfg->path), "%s", path);
    char *text = NULL;
    size_t len = 0;
    int rc = slurp(path, &text, &len);
    if (rc < 0) {
        snprintf(err, err_cap, "%s: cannot read: %s", path, strerror(-rc));
        free(cfg);
        return rc;
    }
    struct fy_document *doc = NULL;
    rc = parse_yaml(&y, text, len, &doc);
    if (rc == 0)
        rc = parse_root(&y, cfg, fy_document_root(doc));
    if (rc == 0)
        rc = gw_config_finish(cfg, err, err_cap);
    if (y.dropped > 0)
        snprintf(err + y.used, err_cap - y.used, "\n%s: (and %d more errors)", path, y.dropped);
    fy_document_destroy(doc);
    free(text);
    if (rc < 0) {
        gw_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int gw_config_load_node(struct fy_node *root, const char *path, gw_config_t **out, char *err,
                        size_t err_cap)
{
    yctx_t y = {.file = path, .err = err, .err_cap = err_cap};
    gw_config_t *cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return -ENOMEM;
    cfg->auth.leeway_ms = 30000;
    if (strlen(path) >= sizeof(cfg->path)) {
        free(cfg);
        snprintf(err, err_cap, "%s: path is too long", path);
        return -ENAMETOOLONG;
    }
    snprintf(cfg->path, sizeof(cfg->path), "%s", path);
    int rc = parse_root(&y, cfg, root);
    if (rc == 0)
        rc = gw_config_finish(cfg, err, err_cap);
    if (rc < 0) {
        gw_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}
