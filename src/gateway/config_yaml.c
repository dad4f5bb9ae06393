/* gateway/config_yaml.c: gw_config_load, the YAML front end of gateway/config. Parses a
 * file with libfyaml into a document and walks it with one table of keys per block (each
 * row: parser, member, range, default, partner rule), so unknown keys, wrong types and
 * out-of-range values are errors naming FILE:LINE; then hands the result to
 * gw_config_finish. The same tables give gw_route_defaults() and the key lists of the
 * messages, and gw_config_describe() checks docs/gateway-config.md against them. */
#include <ctype.h>
#include <errno.h>
#include <libfyaml.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/flags.h"
#include "core/yaml.h"
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
    va_list ap;
    va_start(ap, fmt);
    cm_yaml_vmsg(msg, sizeof(msg), y->file, line, fmt, ap);
    va_end(ap);
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

/* The text of a scalar value, or an error saying what was expected. A missing value
 * ("key:" alone) counts as absent, not as "". */
static int scalar(yctx_t *y, struct fy_node *n, int line, const char *what, const char *expect,
                  const char **out)
{
    if (n && !fy_node_is_scalar(n))
        return fail(y, cm_yaml_line(n, line), "%s must be %s, not a %s", what, expect,
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
    const char *s = NULL; /* set by scalar() when it returns 0 (-O3 cannot see it) */
    int rc = scalar(y, n, line, what, "a string", &s);
    if (rc < 0)
        return rc;
    if (strlen(s) >= cap)
        return fail(y, cm_yaml_line(n, line), "%s is longer than %zu bytes", what, cap - 1);
    memcpy(buf, s, strlen(s) + 1);
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Key tables: one row per key, with its parser, member, range, default and partner   */
/* ---------------------------------------------------------------------------------- */

typedef enum {
    V_DURATION,  /* uint64_t ms in [min, 24h] */
    V_INT,       /* int in [min, max] */
    V_PERCENT,   /* int percent 0..100 (whole) */
    V_FRACTION,  /* double 0..1 from a percentage */
    V_RATE,      /* double tokens per second */
    V_BURST,     /* double >= 1 */
    V_HTTP_PATH, /* char[max] starting with '/' */
    V_TOKEN,     /* char[max], an HTTP token (a header or cookie name) */
    V_BALANCER,  /* gw_lb_kind_t, by its gw_lb_name() */
    V_BLOCK,     /* a mapping read with the row's sub table; off is that table's base */
    V_FN,        /* anything else: the row's fn reads the node */
    V_IGNORE,    /* "x-*": any value, not read */
} vkind_t;

#define SCALAR(k) ((k) <= V_BALANCER) /* read from one scalar's text, defaults too */

/* What a value of each scalar kind looks like, for "needs a value (...)" messages. */
static const char *const expect[] = {
    [V_DURATION] = "a duration like 500ms, 2s, 1m, 1h",
    [V_INT] = "a whole number",
    [V_PERCENT] = "a percentage like 20%",
    [V_FRACTION] = "a percentage like 20%",
    [V_RATE] = "a rate like 100/s",
    [V_BURST] = "a number of requests",
    [V_HTTP_PATH] = "a string",
    [V_TOKEN] = "a string",
    [V_BALANCER] = "a balancer name",
};

/* "Not given" for each scalar kind, set before a block is read: a member still holding
 * it afterwards gets the row's default (or follows its partner). Out of every range. */
#define UNSET_MS  UINT64_MAX         /* durations; at most DAY_MS when given */
#define UNSET_INT INT_MIN            /* ints and whole percentages */
#define UNSET_NUM (-1.0)             /* fractions, rates, bursts: >= 0 when given */
#define UNSET_LB  ((gw_lb_kind_t)-1) /* no balancer has this value */
/* strings: "" (a given path or token is never empty) */

typedef enum {
    REL_NONE,
    REL_LE,       /* value <= partner's: an error when given, else the default follows */
    REL_GE,       /* value >= partner's: likewise */
    REL_GE_UNSET, /* only a default below the partner is pulled up to it (burst) */
} rel_t;

typedef struct field field_t;
typedef struct table table_t;
typedef struct walk walk_t;

/* V_FN parser: v is the value node (may be NULL for "key:" alone), line its key's line,
 * what the key's full name for messages ("route 'users' upstreams"), base the table's. */
typedef int (*field_fn)(walk_t *w, const field_t *f, struct fy_node *v, int line, const char *what,
                        void *base);

struct field {
    const char *key; /* "x-*": every key starting with "x-" */
    vkind_t kind;
    size_t off;       /* of the member (V_BLOCK: of the sub table's base) in the base */
    long min, max;    /* V_INT range; V_DURATION smallest ms; strings: buffer size */
    const char *def;  /* default as a file writes it ("5s"), NULL = none; scalar kinds
                         are set from it, for V_FN it is only described (listen) */
    const char *need; /* required: "BLOCK needs NEED" when a written block lacks the
                         key (def is then what an absent block means) */
    rel_t rel;        /* with partner: a key of the same table without a partner */
    const char *partner;
    const table_t *sub; /* V_BLOCK, V_FN: the keys of the mapping inside */
    bool per_item;      /* sub is each list item's table, with a base of its own */
    field_fn fn;        /* V_FN */
};

struct table {
    const char *title; /* its heading in docs/gateway-config.md */
    const field_t *f;
    size_t n;
    bool spaced;   /* in messages a key follows the block's name after a space ("route
                      'users' timeouts"), not a dot ("... timeouts.try") */
    bool in_order; /* keys read in table order, not file order (top level: auth must be
                      known before the routes, whose default it decides) */
    /* Rules across keys, after the defaults; clean = no error in the block so far.
     * May be NULL. */
    int (*complete)(walk_t *w, struct fy_node *map, void *base, int line, bool clean);
};

#define ROW(k, kind_, type, member, ...)                                                           \
    {                                                                                              \
        .key = k, .kind = kind_, .off = offsetof(type, member), __VA_ARGS__                        \
    }
#define STR_(x) #x
#define STR(x)  STR_(x) /* a default shared with config.c, as the text a file writes */
#define TABLE(title_, rows, ...)                                                                   \
    {                                                                                              \
        .title = title_, .f = rows, .n = sizeof(rows) / sizeof((rows)[0]), __VA_ARGS__             \
    }

/* ---------------------------------------------------------------------------------- */
/* Scalar values: a value's (or a default's) text into its member                     */
/* ---------------------------------------------------------------------------------- */

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
static int percent(const char *s, double *out)
{
    const char *suf;
    double v;
    if (number_suffix(s, &v, &suf) < 0 || (strcmp(suf, "%") != 0 && suf[0] != '\0') ||
        !(v >= 0 && v <= 100))
        return -EINVAL;
    *out = v;
    return 0;
}

/* "100", "100/s", "6000/m", "360000/h": tokens per second. */
static int rate(const char *s, double *out)
{
    const char *suf;
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
        return -EINVAL;
    *out = v / per;
    return 0;
}

static int header_token(const char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return 0;
    return 1;
}

/* "round_robin, weighted_round_robin, ..." in enum order. */
static void balancer_names(char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int k = 0; k <= (int)GW_LB_HASH && used < cap; k++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", k ? ", " : "",
                                 gw_lb_name((gw_lb_kind_t)k));
}

/* Sets the member of a scalar row from text s (at line; block names the block, what the
 * key: "route 'users' timeouts", "route 'users' timeouts.try"). */
static int parse_text(yctx_t *y, const field_t *f, const char *s, int line, const char *block,
                      const char *what, void *dst)
{
    double d;
    long l;
    switch (f->kind) {
    case V_DURATION: {
        uint64_t ms;
        if (cm_parse_duration_ms(s, &ms) < 0)
            return fail(y, line, "%s '%s' is not a duration; write 500ms, 2s, 1m or 1h", what, s);
        if (ms < (uint64_t)f->min || ms > DAY_MS)
            return fail(y, line, "%s '%s' is out of range; use %s..24h", what, s,
                        f->min ? "1ms" : "0");
        *(uint64_t *)dst = ms;
        return 0;
    }
    case V_INT:
        if (cm_parse_int(s, f->min, f->max, &l) < 0)
            return fail(y, line, "%s '%s' must be a whole number in %ld..%ld", what, s, f->min,
                        f->max);
        *(int *)dst = (int)l;
        return 0;
    case V_PERCENT:
    case V_FRACTION:
        if (percent(s, &d) < 0)
            return fail(y, line, "%s '%s' must be a percentage 0%%..100%% like 20%%", what, s);
        if (f->kind == V_FRACTION) {
            *(double *)dst = d / 100;
            return 0;
        }
        if (d != (int)d)
            return fail(y, line, "%s must be a whole percentage", what);
        *(int *)dst = (int)d;
        return 0;
    case V_RATE:
        if (rate(s, &d) < 0)
            return fail(y, line, "%s '%s' must be a rate like 100, 100/s, 6000/m", what, s);
        *(double *)dst = d;
        return 0;
    case V_BURST: {
        const char *suf;
        if (number_suffix(s, &d, &suf) < 0 || suf[0] != '\0' || !(d >= 1 && d <= RATE_MAX))
            return fail(y, line, "%s '%s' must be a number >= 1", what, s);
        *(double *)dst = d;
        return 0;
    }
    case V_HTTP_PATH:
    case V_TOKEN:
        if (strlen(s) >= (size_t)f->max)
            return fail(y, line, "%s is longer than %ld bytes", what, f->max - 1);
        if (f->kind == V_HTTP_PATH && s[0] != '/')
            return fail(y, line, "%s must start with '/'", what);
        if (f->kind == V_TOKEN && (s[0] == '\0' || !header_token(s)))
            return fail(y, line, "%s '%s' is not a valid name", what, s);
        memcpy(dst, s, strlen(s) + 1);
        return 0;
    case V_BALANCER:
        for (int k = 0; k <= (int)GW_LB_HASH; k++) {
            if (strcmp(s, gw_lb_name((gw_lb_kind_t)k)) == 0) {
                *(gw_lb_kind_t *)dst = (gw_lb_kind_t)k;
                return 0;
            }
        }
        char names[256];
        balancer_names(names, sizeof(names));
        return fail(y, line, "%s: unknown balancer '%s'; use one of %s", block, s, names);
    default:
        return -EINVAL;
    }
}

static void unset_one(const field_t *f, void *dst)
{
    switch (f->kind) {
    case V_DURATION:
        *(uint64_t *)dst = UNSET_MS;
        break;
    case V_INT:
    case V_PERCENT:
        *(int *)dst = UNSET_INT;
        break;
    case V_FRACTION:
    case V_RATE:
    case V_BURST:
        *(double *)dst = UNSET_NUM;
        break;
    case V_HTTP_PATH:
    case V_TOKEN:
        *(char *)dst = '\0';
        break;
    case V_BALANCER:
        *(gw_lb_kind_t *)dst = UNSET_LB;
        break;
    default:
        break;
    }
}

static bool is_unset(const field_t *f, const void *dst)
{
    switch (f->kind) {
    case V_DURATION:
        return *(const uint64_t *)dst == UNSET_MS;
    case V_INT:
    case V_PERCENT:
        return *(const int *)dst == UNSET_INT;
    case V_FRACTION:
    case V_RATE:
    case V_BURST:
        return *(const double *)dst == UNSET_NUM;
    case V_HTTP_PATH:
    case V_TOKEN:
        return *(const char *)dst == '\0';
    case V_BALANCER:
        return *(const gw_lb_kind_t *)dst == UNSET_LB;
    default:
        return false;
    }
}

/* The numeric value of a member, to compare it with its partner's; its size, to copy. */
static double num(const field_t *f, const void *dst)
{
    if (f->kind == V_DURATION)
        return (double)*(const uint64_t *)dst;
    if (f->kind == V_INT || f->kind == V_PERCENT)
        return *(const int *)dst;
    return *(const double *)dst;
}

static size_t num_size(const field_t *f)
{
    return f->kind == V_DURATION                      ? sizeof(uint64_t)
           : f->kind == V_INT || f->kind == V_PERCENT ? sizeof(int)
                                                      : sizeof(double);
}

/* ---------------------------------------------------------------------------------- */
/* Mapping walker                                                                     */
/* ---------------------------------------------------------------------------------- */

typedef struct route_ctx {
    gw_route_cfg_t *r;
    char label[GW_URL_MAX + 16]; /* "route 'users'" */
    int line;                    /* of the route's first key */
} route_ctx_t;

struct walk {
    yctx_t *y;
    gw_config_t *cfg;
    route_ctx_t *rc; /* the route being read; NULL outside one */
};

static const field_t *find(const table_t *t, const char *key)
{
    for (size_t i = 0; i < t->n; i++) {
        size_t len = strlen(t->f[i].key);
        if (t->f[i].key[len - 1] == '*' ? strncmp(key, t->f[i].key, len - 1) == 0
                                        : strcmp(key, t->f[i].key) == 0)
            return &t->f[i];
    }
    return NULL;
}

/* "connect, try, total": the "expected one of" of a table. */
static const char *key_list(const table_t *t, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < t->n && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", t->f[i].key);
    return buf;
}

/* The line of key in map, or fallback when it is absent. */
static int key_line(struct fy_node *map, const char *key, int fallback)
{
    struct fy_node_pair *p =
        map && fy_node_is_mapping(map) ? fy_node_mapping_lookup_pair_by_string(map, key, -1) : NULL;
    return p ? cm_yaml_line(fy_node_pair_key(p), fallback) : fallback;
}

static void set_default(const field_t *f, void *dst)
{
    char ebuf[256];
    yctx_t scratch = {.file = "default", .err = ebuf, .err_cap = sizeof(ebuf)};
    if (f->def && parse_text(&scratch, f, f->def, 0, f->key, f->key, dst) < 0)
        abort(); /* a table's default that does not parse is a bug, caught by the tests */
}

static void unset_table(const table_t *t, void *base)
{
    for (size_t i = 0; i < t->n; i++)
        unset_one(&t->f[i], (char *)base + t->f[i].off);
}

/* After a block is read (map, at line; NULL for bare defaults): the keys not given get
 * their defaults, then rows with a partner are settled (a default follows it, a given
 * value that breaks the rule is an error), and with check, required keys are checked. */
static int settle(yctx_t *y, const table_t *t, struct fy_node *map, int line, const char *what,
                  void *base, bool check)
{
    int first = 0;
    for (int pass = 0; pass < 2; pass++) { /* partners settle after the keys they name */
        for (size_t i = 0; i < t->n; i++) {
            const field_t *f = &t->f[i];
            void *dst = (char *)base + f->off;
            if (!SCALAR(f->kind) || (f->partner != NULL) != pass)
                continue;
            bool unset = is_unset(f, dst);
            if (unset)
                set_default(f, dst);
            if (!pass)
                continue;
            const field_t *pf = find(t, f->partner);
            if (!pf || pf->partner || num_size(pf) != num_size(f))
                abort(); /* a partner must be a plain key of the same table and type */
            void *pdst = (char *)base + pf->off;
            double a = num(f, dst), b = num(pf, pdst);
            if (f->rel == REL_LE ? a <= b : a >= b)
                continue;
            if (unset)
                memcpy(dst, pdst, num_size(f)); /* only the partner given: follow it */
            else if (check && f->rel != REL_GE_UNSET)
                note(&first, fail(y, cm_yaml_line(map, line), "%s%s%s must be %s %s", what,
                                  t->spaced ? " " : ".", f->key,
                                  f->rel == REL_LE ? "<=" : ">=", f->partner));
        }
    }
    for (size_t i = 0; check && i < t->n; i++)
        if (t->f[i].need && !fy_node_mapping_lookup_pair_by_string(map, t->f[i].key, -1))
            note(&first, fail(y, cm_yaml_line(map, line), "%s needs %s", what, t->f[i].need));
    return first;
}

/* Fills base with the defaults of t and of every block inside it. */
static void defaults(const table_t *t, void *base)
{
    char ebuf[64];
    yctx_t none = {.file = "default", .err = ebuf, .err_cap = sizeof(ebuf)}; /* unused: no check */
    unset_table(t, base);
    settle(&none, t, NULL, 0, "", base, false);
    for (size_t i = 0; i < t->n; i++)
        if (t->f[i].sub && !t->f[i].per_item)
            defaults(t->f[i].sub, (char *)base + t->f[i].off);
}

static int walk_table(walk_t *w, const table_t *t, struct fy_node *map, int line, const char *what,
                      void *base);

static int read_key(walk_t *w, const table_t *t, const field_t *f, struct fy_node *v, int line,
                    const char *what, void *base)
{
    char full[WHAT_MAX + 64];
    snprintf(full, sizeof(full), "%s%s%s", what, !what[0] ? "" : t->spaced ? " " : ".", f->key);
    void *dst = (char *)base + f->off;
    const char *s = NULL; /* set by scalar() when it returns 0 (-O3 cannot see it) */
    switch (f->kind) {
    case V_IGNORE:
        return 0;
    case V_BLOCK:
        return walk_table(w, f->sub, v, line, full, dst);
    case V_FN:
        return f->fn(w, f, v, line, full, base);
    default:
        if (scalar(w->y, v, line, full, expect[f->kind], &s) < 0)
            return -EINVAL;
        return parse_text(w->y, f, s, cm_yaml_line(v, line), what, full, dst);
    }
}

/* Reads mapping map (what names it in messages) with table t into base: every key must
 * be one of t's, each key's value is checked whatever became of the keys before it. */
static int walk_table(walk_t *w, const table_t *t, struct fy_node *map, int line, const char *what,
                      void *base)
{
    char keys[512];
    key_list(t, keys, sizeof(keys));
    if (!fy_node_is_mapping(map))
        return fail(w->y, cm_yaml_line(map, line), "%s must be a mapping with keys %s", what, keys);
    unset_table(t, base);
    int first = 0;
    void *it = NULL;
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(map, &it))) {
        struct fy_node *k = fy_node_pair_key(p);
        const char *ks = fy_node_is_scalar(k) ? fy_node_get_scalar0(k) : NULL;
        const field_t *f = ks ? find(t, ks) : NULL;
        int kline = cm_yaml_line(k, line);
        if (!f)
            note(&first, fail(w->y, kline, "unknown key '%s' %s%s; expected one of %s",
                              ks ? ks : "?", what[0] ? "in " : "at top level", what, keys));
        else if (!t->in_order &&
                 note(&first, read_key(w, t, f, fy_node_pair_value(p), kline, what, base)))
            return first;
    }
    for (size_t i = 0; t->in_order && i < t->n; i++) {
        const field_t *f = &t->f[i];
        p = f->kind == V_IGNORE ? NULL : fy_node_mapping_lookup_pair_by_string(map, f->key, -1);
        if (p && note(&first, read_key(w, t, f, fy_node_pair_value(p),
                                       cm_yaml_line(fy_node_pair_key(p), line), what, base)))
            return first;
    }
    note(&first, settle(w->y, t, map, line, what, base, first == 0));
    if (t->complete && note(&first, t->complete(w, map, base, line, first == 0)))
        return first;
    return first;
}

/* ---------------------------------------------------------------------------------- */
/* Top level: listen, auth                                                            */
/* ---------------------------------------------------------------------------------- */

/* HOST:PORT or :PORT into the row's char[max] member. */
static int on_listen(walk_t *w, const field_t *f, struct fy_node *v, int line, const char *what,
                     void *base)
{
    char *dst = (char *)base + f->off;
    int e = get_string(w->y, v, line, what, dst, (size_t)f->max);
    char host[256];
    int port;
    if (e == 0 && cm_parse_hostport(dst, host, sizeof(host), &port) < 0)
        return fail(w->y, cm_yaml_line(v, line), "%s '%s' is not HOST:PORT (port 0-65535)", what,
                    dst);
    return e;
}

/* admin.listen: HOST:PORT, kept as --admin-listen spells it (the row's member). */
static int on_admin_listen(walk_t *w, const field_t *f, struct fy_node *v, int line,
                           const char *what, void *base)
{
    char *dst = (char *)base + f->off, raw[1024], host[256];
    int port;
    int e = get_string(w->y, v, line, what, raw, sizeof(raw));
    if (e == 0 && cm_parse_hostport(raw, host, sizeof(host), &port) < 0)
        return fail(w->y, cm_yaml_line(v, line), "%s '%s' is not HOST:PORT (port 0-65535)", what,
                    raw);
    if (e == 0)
        snprintf(dst, (size_t)f->max, "%s", raw);
    return e;
}

/* admin.socket: a path, relative to the config file's directory, kept as "unix:PATH". */
static int on_admin_socket(walk_t *w, const field_t *f, struct fy_node *v, int line,
                           const char *what, void *base)
{
    char *dst = (char *)base + f->off, raw[1024];
    int e = get_string(w->y, v, line, what, raw, sizeof(raw));
    if (e == 0 && !raw[0])
        return fail(w->y, cm_yaml_line(v, line), "%s must be a path", what);
    const char *path = w->cfg->path, *slash = strrchr(path, '/');
    int dirlen = raw[0] != '/' && slash ? (int)(slash - path) + 1 : 0;
    if (e == 0)
        snprintf(dst, (size_t)f->max, "unix:%.*s%s", dirlen, path, raw);
    return e;
}

/* One listener: listen and socket both write the member, so exactly one may be given. */
static int admin_complete(walk_t *w, struct fy_node *map, void *base, int line, bool clean)
{
    (void)base;
    int n = (fy_node_mapping_lookup_pair_by_string(map, "listen", -1) != NULL) +
            (fy_node_mapping_lookup_pair_by_string(map, "socket", -1) != NULL);
    if (clean && n != 1)
        return fail(w->y, cm_yaml_line(map, line),
                    "admin needs exactly one of listen (HOST:PORT) or socket (PATH)");
    return 0;
}

static int on_admin(walk_t *w, const field_t *f, struct fy_node *v, int line, const char *what,
                    void *base)
{
    return walk_table(w, f->sub, v, line, what, base);
}

/* A relative key_file is relative to the directory of the config file. */
static int on_key_file(walk_t *w, const field_t *f, struct fy_node *v, int line, const char *what,
                       void *base)
{
    (void)f;
    gw_auth_cfg_t *a = base;
    const gw_config_t *cfg = w->cfg;
    char raw[sizeof(a->key_file)];
    int e = get_string(w->y, v, line, what, raw, sizeof(raw));
    if (e < 0)
        return e;
    line = cm_yaml_line(v, line);
    const char *slash = strrchr(cfg->path, '/');
    int dirlen = raw[0] != '/' && slash ? (int)(slash - cfg->path) + 1 : 0;
    int n = snprintf(a->key_file, sizeof(a->key_file), "%.*s%s", dirlen, cfg->path, raw);
    if (n < 0 || (size_t)n >= sizeof(a->key_file))
        return fail(w->y, line, "%s path is too long", what);
    if (access(a->key_file, R_OK) < 0)
        return fail(w->y, line, "%s '%s' cannot be read: %s", what, a->key_file, strerror(errno));
    return 0;
}

/* auth.issuer / auth.audience: a name, or the plain word any (the explicit opt-out). */
static int claim_name(walk_t *w, const field_t *f, struct fy_node *v, int line, const char *what,
                      char *buf, int *any)
{
    int e = get_string(w->y, v, line, what, buf, (size_t)f->max);
    if (e < 0)
        return e;
    *any = strcmp(buf, "any") == 0 && fy_node_get_style(v) == FYNS_PLAIN;
    if (*any)
        buf[0] = '\0';
    else if (buf[0] == '\0')
        return fail(w->y, cm_yaml_line(v, line),
                    "%s must not be empty; write %s: any to accept every one", what, f->key);
    return 0;
}

static int on_issuer(walk_t *w, const field_t *f, struct fy_node *v, int line, const char *what,
                     void *base)
{
    gw_auth_cfg_t *a = base;
    return claim_name(w, f, v, line, what, a->issuer, &a->any_issuer);
}

static int on_audience(walk_t *w, const field_t *f, struct fy_node *v, int line, const char *what,
                       void *base)
{
    gw_auth_cfg_t *a = base;
    return claim_name(w, f, v, line, what, a->audience, &a->any_audience);
}

/* With a key, tokens must name their issuer and audience (RFC 7519 4.1.3: an aud the
 * gateway does not identify with is refused), so the file must say which, or any.
 * Reported even when other auth keys are wrong. */
static int auth_complete(walk_t *w, struct fy_node *map, void *base, int line, bool clean)
{
    (void)clean;
    const gw_auth_cfg_t *a = base;
    if (!a->key_file[0])
        return 0;
    if (!fy_node_mapping_lookup_pair_by_string(map, "issuer", -1))
        return fail(w->y, line,
                    "auth needs issuer: the iss your tokens carry (cmesh token --config mints "
                    "it), or issuer: any to accept every issuer");
    if (!fy_node_mapping_lookup_pair_by_string(map, "audience", -1))
        return fail(w->y, line,
                    "auth needs audience: the aud your tokens carry (cmesh token --config mints "
                    "it), or audience: any to accept every audience");
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Route keys that are more than one scalar                                           */
/* ---------------------------------------------------------------------------------- */

static int on_name(walk_t *w, const field_t *f, struct fy_node *v, int line, const char *what,
                   void *base)
{
    (void)f;
    gw_route_cfg_t *r = base;
    int vline = cm_yaml_line(v, line);
    int e = get_string(w->y, v, line, what, r->name, sizeof(r->name));
    if (e == 0 && r->name[0] == '\0')
        e = fail(w->y, vline, "%s: name must not be empty", w->rc->label);
    for (const char *c = r->name; e == 0 && *c; c++)
        if (isspace((unsigned char)*c) || iscntrl((unsigned char)*c))
            e = fail(w->y, vline, "route name '%s' must not contain spaces", r->name);
    return e;
}

/* A registry service name: one URL path segment (it goes into /v1/services/NAME). */
static int on_service(walk_t *w, const field_t *f, struct fy_node *v, int line, const char *what,
                      void *base)
{
    (void)f;
    gw_route_cfg_t *r = base;
    int vline = cm_yaml_line(v, line);
    int e = get_string(w->y, v, line, what, r->service, sizeof(r->service));
    if (e == 0 && r->service[0] == '\0')
        e = fail(w->y, vline, "%s: service must not be empty", w->rc->label);
    for (const char *c = r->service; e == 0 && *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_' && *c != '.')
            e = fail(w->y, vline,
                     "route service '%s': use letters, digits, '-', '_' and '.' (a registry "
                     "service name)",
                     r->service);
    return e;
}

/* The rule is a --route's too (gw_prefix_normalise); here it gets a line. */
static int on_prefix(walk_t *w, const field_t *f, struct fy_node *v, int line, const char *what,
                     void *base)
{
    (void)f;
    gw_route_cfg_t *r = base;
    char why[GW_URL_MAX + 80];
    int e = get_string(w->y, v, line, what, r->prefix, sizeof(r->prefix));
    if (e == 0 && gw_prefix_normalise(r->prefix, why, sizeof(why)) < 0)
        return fail(w->y, cm_yaml_line(v, line), "%s: %s", w->rc->label, why);
    return e;
}

static int on_host(walk_t *w, const field_t *f, struct fy_node *v, int line, const char *what,
                   void *base)
{
    (void)f;
    gw_route_cfg_t *r = base;
    int e = get_string(w->y, v, line, what, r->host, sizeof(r->host));
    for (char *c = r->host; e == 0 && *c; c++) {
        if (!isalnum((unsigned char)*c) && !strchr(".-_[]:", *c))
            return fail(w->y, cm_yaml_line(v, line), "%s: host '%s' is not a host name",
                        w->rc->label, r->host);
        *c = (char)tolower((unsigned char)*c); /* matched case-insensitively anyway */
    }
    return e;
}

static int on_hash(walk_t *w, const field_t *f, struct fy_node *v, int line, const char *what,
                   void *base)
{
    if (!fy_node_is_mapping(v) || fy_node_mapping_item_count(v) != 1)
        return fail(w->y, cm_yaml_line(v, line), "%s must be { header: NAME } or { cookie: NAME }",
                    what);
    return walk_table(w, f->sub, v, line, what, base);
}

/* upstream.url, or a list item that is only the URL (expect says which); the weight is
 * left as it was (given before the url, unset, or the default of a bare URL item). */
static int upstream_url(walk_t *w, struct fy_node *v, int line, const char *what,
                        const char *expect_, gw_upstream_cfg_t *u)
{
    const char *s = NULL; /* set by scalar() when it returns 0 (-O3 cannot see it) */
    int e = scalar(w->y, v, line, what, expect_, &s);
    char why[1024];
    int weight = u->weight;
    if (e == 0 && gw_upstream_parse(s, u, why, sizeof(why)) < 0)
        return fail(w->y, cm_yaml_line(v, line), "%s: %s", w->rc->label, why);
    u->weight = weight;
    return e;
}

static int on_url(walk_t *w, const field_t *f, struct fy_node *v, int line, const char *what,
                  void *base)
{
    (void)f;
    return upstream_url(w, v, line, what, "http://HOST:PORT", base);
}

static int on_upstreams(walk_t *w, const field_t *f, struct fy_node *v, int line, const char *what,
                        void *base)
{
    (void)what;
    gw_route_cfg_t *r = base;
    const char *label = w->rc->label;
    if (!fy_node_is_sequence(v) || fy_node_sequence_item_count(v) == 0)
        return fail(w->y, cm_yaml_line(v, line), "%s: upstreams must be a non-empty list", label);
    int n = fy_node_sequence_item_count(v);
    if (n > GW_LB_MAX_HOSTS)
        return fail(w->y, cm_yaml_line(v, line), "%s: %d upstreams; at most %d", label, n,
                    GW_LB_MAX_HOSTS);
    free(r->upstreams); /* a duplicate key is refused by libfyaml, but stay leak-free */
    r->nupstreams = 0;
    r->upstreams = calloc((size_t)n, sizeof(*r->upstreams));
    if (!r->upstreams)
        return -ENOMEM;
    char item_what[WHAT_MAX];
    snprintf(item_what, sizeof(item_what), "%s upstream", label);
    int first = 0;
    void *it = NULL;
    struct fy_node *item;
    while ((item = fy_node_sequence_iterate(v, &it))) {
        gw_upstream_cfg_t *u = &r->upstreams[r->nupstreams];
        memset(u, 0, sizeof(*u));
        int iline = cm_yaml_line(item, line);
        int e;
        if (fy_node_is_mapping(item)) {
            e = walk_table(w, f->sub, item, iline, item_what, u);
        } else {
            defaults(f->sub, u); /* weight */
            e = upstream_url(w, item, iline, "upstream", "http://HOST:PORT or {url, weight}", u);
        }
        for (int i = 0; e == 0 && i < r->nupstreams; i++)
            if (gw_upstream_same(&r->upstreams[i], u))
                e = fail(w->y, iline, "%s: upstream '%s' is listed twice (same address as '%s')",
                         label, u->url, r->upstreams[i].url);
        if (note(&first, e))
            return e;
        if (e == 0)
            r->nupstreams++;
    }
    return first;
}

/* Appends the scope tokens of v (a list, or one space-separated string) to the row's
 * member. */
static int on_scopes(walk_t *w, const field_t *f, struct fy_node *v, int line, const char *what,
                     void *base)
{
    char *buf = (char *)base + f->off;
    size_t cap = (size_t)f->max;
    void *it = NULL;
    struct fy_node *item = fy_node_is_sequence(v) ? fy_node_sequence_iterate(v, &it) : v;
    for (; item; item = fy_node_is_sequence(v) ? fy_node_sequence_iterate(v, &it) : NULL) {
        const char *s = NULL;
        int e = scalar(w->y, item, line, what, "a list of scopes", &s);
        if (e < 0)
            return e;
        for (const char *c = s; *c; c++) /* RFC 6749 3.3 scope-token, space-separated */
            if (*c != ' ' && (*c < 0x21 || *c > 0x7e || *c == '"' || *c == '\\'))
                return fail(w->y, cm_yaml_line(item, line), "%s: '%s' is not a valid scope", what,
                            s);
        size_t used = strlen(buf);
        if ((size_t)snprintf(buf + used, cap - used, "%s%s", used ? " " : "", s) >= cap - used)
            return fail(w->y, cm_yaml_line(item, line), "%s: scopes are longer than %zu bytes",
                        what, cap - 1);
    }
    return 0;
}

static int on_route_auth(walk_t *w, const field_t *f, struct fy_node *v, int line, const char *what,
                         void *base)
{
    gw_route_cfg_t *r = base;
    const char *label = w->rc->label;
    int aline = cm_yaml_line(v, line);
    char keys[256];
    if (v && fy_node_is_scalar(v)) {
        const char *s = fy_node_get_scalar0(v);
        if (s && strcmp(s, "public") == 0) {
            r->auth = 0;
            return 0;
        }
        if (!s || strcmp(s, "required") != 0)
            return fail(w->y, aline, "%s must be public, required or { %s }", what,
                        key_list(f->sub, keys, sizeof(keys)));
    } else if (!fy_node_is_mapping(v)) {
        return fail(w->y, aline, "%s must be public, required or a mapping", what);
    } else {
        int e = walk_table(w, f->sub, v, line, what, base);
        if (e < 0)
            return e;
    }
    if (w->cfg->auth.key_file[0] == '\0')
        return fail(w->y, aline, "%s: auth needs auth.key_file", label);
    r->auth = 1;
    return 0;
}

static int on_health(walk_t *w, const field_t *f, struct fy_node *v, int line, const char *what,
                     void *base)
{
    if (v && fy_node_is_scalar(v)) {
        const char *s = fy_node_get_scalar0(v);
        if (s && (strcmp(s, "off") == 0 || strcmp(s, "false") == 0)) {
            ((gw_route_cfg_t *)base)->health_path[0] = '\0';
            return 0;
        }
        char keys[256];
        return fail(w->y, cm_yaml_line(v, line), "%s must be 'off' or a mapping {%s}", what,
                    key_list(f->sub, keys, sizeof(keys)));
    }
    return walk_table(w, f->sub, v, line, what, base);
}

static int parse_routes(walk_t *w, const table_t *t, struct fy_node *v, int line);

static int on_routes(walk_t *w, const field_t *f, struct fy_node *v, int line, const char *what,
                     void *base)
{
    (void)what;
    (void)base;
    return parse_routes(w, f->sub, v, line);
}

/* Defaults that depend on other keys, and keys that must come together. */
static int route_complete(walk_t *w, struct fy_node *map, void *base, int line, bool clean)
{
    (void)line;
    gw_route_cfg_t *r = base;
    route_ctx_t *rc = w->rc;
    if (!clean)
        return 0;
    bool keyed = r->hash_header[0] || r->hash_cookie[0];
    if (r->balancer == GW_LB_HASH && !keyed)
        return fail(w->y, key_line(map, "balancer", rc->line),
                    "%s: balancer hash needs hash: { header: NAME } or { cookie: NAME }",
                    rc->label);
    if (r->balancer != GW_LB_HASH && keyed)
        return fail(w->y, key_line(map, "hash", rc->line),
                    "%s: hash is only used with balancer: hash", rc->label);
    if (r->rate_subject.rate > 0 && !r->auth)
        return fail(w->y,
                    key_line(fy_node_mapping_lookup_by_string(map, "rate_limit", -1), "per_subject",
                             rc->line),
                    "%s: rate_limit.per_subject needs a token; drop auth: public (or use "
                    "per_client)",
                    rc->label);
    if (!r->name[0] && gw_route_default_name(w->cfg, w->cfg->nroutes - 1, r) < 0)
        return fail(w->y, key_line(map, "prefix", rc->line),
                    "%s: prefix is too long to name the route; add name:", rc->label);
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* The tables: docs/gateway-config.md lists the same keys and defaults (unit-tested)  */
/* ---------------------------------------------------------------------------------- */

#define R(k, kind, member, ...) ROW(k, kind, gw_route_cfg_t, member, __VA_ARGS__)

static const field_t timeout_rows[] = {
    R("connect", V_DURATION, connect_timeout_ms, .min = 1, .def = "1s"),
    R("try", V_DURATION, try_timeout_ms, .min = 1, .def = "5s", .rel = REL_LE, .partner = "total"),
    R("total", V_DURATION, timeout_ms, .min = 1, .def = "15s"),
    R("cold_start", V_DURATION, cold_start_ms, .min = 1, .def = "30s"),
};
static const field_t retry_rows[] = {
    R("attempts", V_INT, attempts, .min = 1, .max = 10, .def = "3"),
    R("backoff", V_DURATION, backoff_base_ms, .def = "25ms"),
    R("backoff_max", V_DURATION, backoff_max_ms, .def = "250ms", .rel = REL_GE,
      .partner = "backoff"),
    R("budget", V_FRACTION, retry_budget, .def = "20%"),
    R("min_per_second", V_INT, retry_budget_min, .max = 1000000, .def = "3"),
};
static const field_t health_rows[] = {
    R("path", V_HTTP_PATH, health_path, .max = GW_URL_MAX, .def = "/readyz"),
    R("interval", V_DURATION, health_interval_ms, .min = 1, .def = "1s"),
    R("timeout", V_DURATION, health_timeout_ms, .min = 1, .def = "500ms", .rel = REL_LE,
      .partner = "interval"),
    R("rise", V_INT, health_rise, .min = 1, .max = 100, .def = "2"),
    R("fall", V_INT, health_fall, .min = 1, .max = 100, .def = "2"),
};
static const field_t outlier_rows[] = {
    R("failures", V_INT, outlier_failures, .min = 1, .max = 1000, .def = "5"),
    R("base_ejection", V_DURATION, outlier_base_ms, .min = 1, .def = "10s"),
    R("max_ejection", V_DURATION, outlier_max_ms, .min = 1, .def = "5m", .rel = REL_GE,
      .partner = "base_ejection"),
    R("max_ejected", V_PERCENT, outlier_max_percent, .def = "50%"),
    R("panic_below", V_PERCENT, panic_percent, .def = "50%"),
};
static const field_t limit_rows[] = {
    R("max_connections", V_INT, max_connections, .min = 1, .max = 1000000, .def = "1024"),
    R("max_pending", V_INT, max_pending, .max = 1000000, .def = "100000"),
    R("max_requests", V_INT, max_requests, .min = 1, .max = 1000000, .def = "100000"),
};
/* idle_timeout: below the services' 60 s idle close, so the gateway closes first */
static const field_t pool_rows[] = {
    R("max_idle", V_INT, pool_max_idle, .max = 1000000, .def = "64"),
    R("idle_timeout", V_DURATION, pool_idle_timeout_ms, .min = 1, .def = "30s"),
};
/* An absent bucket is rate 0 (no limit); burst defaults to max(rate, 1). */
static const field_t rate_rows[] = {
    ROW("rate", V_RATE, gw_rate_cfg_t, rate, .def = "0", .need = "a rate"),
    ROW("burst", V_BURST, gw_rate_cfg_t, burst, .def = "1", .rel = REL_GE_UNSET, .partner = "rate"),
};
static const table_t rate_table = TABLE("`per_client` and `per_subject`", rate_rows);
static const field_t rate_limit_rows[] = {
    R("per_client", V_BLOCK, rate_client, .sub = &rate_table),
    R("per_subject", V_BLOCK, rate_subject, .sub = &rate_table),
};
static const field_t hash_rows[] = {
    R("header", V_TOKEN, hash_header, .max = GW_NAME_MAX),
    R("cookie", V_TOKEN, hash_cookie, .max = GW_NAME_MAX),
};
static const field_t route_auth_rows[] = {
    R("scopes", V_FN, scopes, .max = sizeof(((gw_route_cfg_t *)0)->scopes), .fn = on_scopes),
    R("read_scopes", V_FN, read_scopes, .max = sizeof(((gw_route_cfg_t *)0)->read_scopes),
      .fn = on_scopes),
    R("write_scopes", V_FN, write_scopes, .max = sizeof(((gw_route_cfg_t *)0)->write_scopes),
      .fn = on_scopes),
};
static const field_t upstream_rows[] = {
    ROW("url", V_FN, gw_upstream_cfg_t, url, .need = "a url", .fn = on_url),
    ROW("weight", V_INT, gw_upstream_cfg_t, weight, .min = 1, .max = 1000,
        .def = STR(GW_WEIGHT_DEFAULT)),
};

static const table_t timeout_table = TABLE("`timeouts`", timeout_rows);
static const table_t retry_table = TABLE("`retries`", retry_rows);
static const table_t health_table = TABLE("`health`", health_rows);
static const table_t outlier_table = TABLE("`outlier`", outlier_rows);
static const table_t limit_table = TABLE("`limits`", limit_rows);
static const table_t pool_table = TABLE("`pool`", pool_rows);
static const table_t rate_limit_table = TABLE("`rate_limit`", rate_limit_rows);
static const table_t hash_table = TABLE("`hash`", hash_rows);
static const table_t route_auth_table = TABLE("Route `auth`", route_auth_rows);
static const table_t upstream_table = TABLE("`upstreams`", upstream_rows);

/* Blocks are read into the route itself (off 0): their rows name route members. */
static const field_t route_rows[] = {
    R("name", V_FN, name, .fn = on_name),
    R("prefix", V_FN, prefix, .need = "a prefix (a path like /users)", .fn = on_prefix),
    R("host", V_FN, host, .fn = on_host),
    R("upstreams", V_FN, upstreams, .need = "upstreams (a list of http://HOST:PORT)",
      .sub = &upstream_table, .per_item = true, .fn = on_upstreams),
    R("service", V_FN, service, .fn = on_service),
    R("balancer", V_BALANCER, balancer, .def = "peak_ewma"),
    R("hash", V_FN, hash_header, .sub = &hash_table, .fn = on_hash),
    {.key = "timeouts", .kind = V_BLOCK, .sub = &timeout_table},
    {.key = "retries", .kind = V_BLOCK, .sub = &retry_table},
    {.key = "health", .kind = V_FN, .sub = &health_table, .fn = on_health},
    {.key = "outlier", .kind = V_BLOCK, .sub = &outlier_table},
    R("slow_start", V_DURATION, slow_start_ms, .def = "0"),
    {.key = "limits", .kind = V_BLOCK, .sub = &limit_table},
    {.key = "pool", .kind = V_BLOCK, .sub = &pool_table},
    {.key = "rate_limit", .kind = V_BLOCK, .sub = &rate_limit_table},
    {.key = "auth", .kind = V_FN, .sub = &route_auth_table, .fn = on_route_auth},
};
static const table_t route_table =
    TABLE("Route keys", route_rows, .spaced = true, .complete = route_complete);

static const field_t auth_rows[] = {
    ROW("key_file", V_FN, gw_auth_cfg_t, key_file, .fn = on_key_file),
    ROW("issuer", V_FN, gw_auth_cfg_t, issuer, .max = sizeof(((gw_auth_cfg_t *)0)->issuer),
        .fn = on_issuer),
    ROW("audience", V_FN, gw_auth_cfg_t, audience, .max = sizeof(((gw_auth_cfg_t *)0)->audience),
        .fn = on_audience),
    ROW("leeway", V_DURATION, gw_auth_cfg_t, leeway_ms, .def = "30s"),
};
static const table_t auth_table = TABLE("`auth`", auth_rows, .complete = auth_complete);

#define ADMIN_MAX sizeof(((gw_config_t *)0)->admin)
static const field_t admin_rows[] = {
    ROW("listen", V_FN, gw_config_t, admin, .max = ADMIN_MAX, .fn = on_admin_listen),
    ROW("socket", V_FN, gw_config_t, admin, .max = ADMIN_MAX, .fn = on_admin_socket),
};
static const table_t admin_table = TABLE("`admin`", admin_rows, .complete = admin_complete);

/* In this order: auth decides the routes' default, whatever order the file uses. */
static const field_t root_rows[] = {
    ROW("listen", V_FN, gw_config_t, listen, .max = sizeof(((gw_config_t *)0)->listen),
        .def = GW_LISTEN_DEFAULT, .fn = on_listen),
    ROW("admin", V_FN, gw_config_t, admin, .sub = &admin_table, .fn = on_admin),
    ROW("auth", V_BLOCK, gw_config_t, auth, .sub = &auth_table),
    ROW("routes", V_FN, gw_config_t, routes, .sub = &route_table, .per_item = true,
        .fn = on_routes),
    {.key = "x-*", .kind = V_IGNORE}, /* anchors shared by routes (compose style); keep last */
};
static const table_t root_table = TABLE("Top level", root_rows, .in_order = true);

void gw_route_defaults(gw_route_cfg_t *r)
{
    memset(r, 0, sizeof(*r));
    defaults(&route_table, r);
}

void gw_config_defaults(gw_config_t *cfg)
{
    defaults(&root_table, cfg);
}

#define DESCRIBE_MAX 32 /* tables in all; there are 14 */

static void describe(const table_t *t, gw_describe_fn fn, void *arg, const table_t **seen,
                     size_t *nseen)
{
    for (size_t i = 0; i < *nseen; i++)
        if (seen[i] == t)
            return; /* per_client and per_subject share one table */
    if (*nseen == DESCRIBE_MAX)
        abort(); /* more tables than describe() was sized for: raise DESCRIBE_MAX */
    seen[(*nseen)++] = t;
    for (size_t i = 0; i < t->n; i++)
        fn(arg, t->title, t->f[i].key, t->f[i].need ? "required" : t->f[i].def ? t->f[i].def : "");
    for (size_t i = 0; i < t->n; i++)
        if (t->f[i].sub)
            describe(t->f[i].sub, fn, arg, seen, nseen);
}

void gw_config_describe(gw_describe_fn fn, void *arg)
{
    const table_t *seen[DESCRIBE_MAX] = {NULL};
    size_t nseen = 0;
    describe(&root_table, fn, arg, seen, &nseen);
}

/* ---------------------------------------------------------------------------------- */
/* Routes                                                                             */
/* ---------------------------------------------------------------------------------- */

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

static int parse_route(walk_t *w, const table_t *t, struct fy_node *map, int index, int line,
                       int *name_line)
{
    gw_config_t *cfg = w->cfg;
    gw_route_cfg_t *r = &cfg->routes[cfg->nroutes];
    route_ctx_t rc = {.r = r, .line = cm_yaml_line(map, line)};
    gw_route_defaults(r);
    r->auth = cfg->auth.key_file[0] != '\0'; /* a key makes every route private by default */
    cfg->nroutes++;                          /* counted now so that free sees its upstreams */
    *name_line = rc.line;
    if (!fy_node_is_mapping(map))
        return fail(w->y, rc.line, "routes[%d] must be a mapping with prefix and upstreams", index);
    route_label(map, index, rc.label, sizeof(rc.label));
    walk_t rw = {.y = w->y, .cfg = cfg, .rc = &rc};
    int e = walk_table(&rw, t, map, line, rc.label, r);
    *name_line = key_line(map, "name", key_line(map, "prefix", rc.line));
    return e;
}

/* Same name or same (host, prefix) as an earlier route: refused at this route's line. */
static int route_unique(yctx_t *y, const gw_config_t *cfg, const int *lines)
{
    int last = cfg->nroutes - 1;
    const gw_route_cfg_t *r = &cfg->routes[last];
    for (int i = 0; i < last; i++) {
        const gw_route_cfg_t *o = &cfg->routes[i];
        switch (gw_route_clash(o, r)) {
        case GW_CLASH_NAME:
            return fail(y, lines[last], "route name '%s' is already used on line %d", r->name,
                        lines[i]);
        case GW_CLASH_MATCH:
            return fail(y, lines[last],
                        "route '%s' has the same host and prefix as route '%s' (line %d)", r->name,
                        o->name, lines[i]);
        }
    }
    return 0;
}

static int parse_routes(walk_t *w, const table_t *t, struct fy_node *v, int line)
{
    gw_config_t *cfg = w->cfg;
    if (!fy_node_is_sequence(v))
        return fail(w->y, cm_yaml_line(v, line), "routes must be a list of route mappings");
    int n = fy_node_sequence_item_count(v);
    cfg->routes = calloc(n > 0 ? (size_t)n : 1, sizeof(*cfg->routes));
    int *lines = calloc(n > 0 ? (size_t)n : 1, sizeof(int));
    int first = cfg->routes && lines ? 0 : -ENOMEM;
    void *it = NULL;
    struct fy_node *item;
    while (first != -ENOMEM && (item = fy_node_sequence_iterate(v, &it))) {
        int e = parse_route(w, t, item, cfg->nroutes, line, &lines[cfg->nroutes]);
        if (e == 0)
            e = route_unique(w->y, cfg, lines);
        if (note(&first, e))
            break;
    }
    free(lines);
    return first;
}

/* ---------------------------------------------------------------------------------- */
/* Top level                                                                          */
/* ---------------------------------------------------------------------------------- */

static int parse_root(yctx_t *y, gw_config_t *cfg, struct fy_node *root)
{
    char keys[256];
    if (!root || !fy_node_is_mapping(root))
        return fail(y, cm_yaml_line(root, 1), "the file must be a mapping with keys %s",
                    key_list(&root_table, keys, sizeof(keys)));
    walk_t w = {.y = y, .cfg = cfg};
    return walk_table(&w, &root_table, root, 1, "", cfg);
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
    char keys[256];
    if (!doc) {
        void *it = NULL;
        struct fy_diag_error *de = fy_diag_errors_iterate(diag, &it);
        if (de)
            rc = fail(y, de->line > 0 ? de->line : 1, "YAML syntax error: %s (column %d)", de->msg,
                      de->column);
        else if (len == 0)
            rc = fail(y, 1, "the file is empty; it must be a mapping with keys %s",
                      key_list(&root_table, keys, sizeof(keys)));
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
    gw_config_defaults(cfg);
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
