/* control/spec.c: cmesh.yaml (libfyaml) → cm_spec_t. Every key is checked: unknown keys,
 * wrong types, out-of-range values and dangling service names are errors naming
 * FILE:LINE. The `gateway:` section is the gateway's own grammar (docs/gateway-config.md)
 * plus `service: NAME` on a route; it is validated and rendered through the gateway's
 * loader (gw_config_load_node), the one place that grammar lives. Called by up.c and the
 * CLI commands. Node lines and the "FILE:LINE: " prefix come from core/yaml; fail() and
 * the scalar readers stay here because their messages (and the one-error buffer) differ
 * from gateway/config_yaml.c's. */
#include "control/spec.h"

#include <errno.h>
#include <libfyaml.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/flags.h"
#include "core/yaml.h"
#include "gateway/config.h"

#define DAY_MS (24ull * 3600 * 1000) /* longest duration accepted: longer is a typo */

typedef struct yctx {
    const char *file;
    char *err;
    size_t cap;
} yctx_t;

/* ---------------------------------------------------------------------------------- */
/* Low level: positions, messages, scalars                                            */
/* ---------------------------------------------------------------------------------- */

static int fail(yctx_t *y, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Appends one "FILE:LINE: ..." line to the errors (a file can have several: every bad key
 * of every service is reported, so a reload names them all at once). */
static int fail(yctx_t *y, int line, const char *fmt, ...)
{
    size_t len = strnlen(y->err, y->cap);
    if (len && len + 2 < y->cap)
        y->err[len++] = '\n';
    else if (len)
        return -EINVAL; /* full: the first errors are the ones to fix first */
    va_list ap;
    va_start(ap, fmt);
    cm_yaml_vmsg(y->err + len, y->cap - len, y->file, line, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int scalar(yctx_t *y, struct fy_node *n, int line, const char *what, const char **out)
{
    if (n && !fy_node_is_scalar(n))
        return fail(y, cm_yaml_line(n, line), "%s must be a single value, not a %s", what,
                    fy_node_is_mapping(n) ? "mapping" : "list");
    const char *s = n ? fy_node_get_scalar0(n) : NULL;
    if (!s || (s[0] == '\0' && fy_node_get_style(n) == FYNS_PLAIN))
        return fail(y, line, "%s needs a value", what);
    *out = s;
    return 0;
}

static int get_string(yctx_t *y, struct fy_node *n, int line, const char *what, char *buf,
                      size_t cap)
{
    const char *s = NULL; /* set by scalar() when it returns 0 (-O3 cannot see it) */
    int rc = scalar(y, n, line, what, &s);
    if (rc < 0)
        return rc;
    if (strlen(s) >= cap)
        return fail(y, cm_yaml_line(n, line), "%s is longer than %zu bytes", what, cap - 1);
    memcpy(buf, s, strlen(s) + 1);
    return 0;
}

static int get_int(yctx_t *y, struct fy_node *n, int line, const char *what, long min, long max,
                   int *out)
{
    const char *s = NULL; /* set by scalar() when it returns 0 (-O3 cannot see it) */
    long v;
    int rc = scalar(y, n, line, what, &s);
    if (rc < 0)
        return rc;
    if (cm_parse_int(s, min, max, &v) < 0)
        return fail(y, cm_yaml_line(n, line), "%s '%s' must be a whole number in %ld..%ld", what, s,
                    min, max);
    *out = (int)v;
    return 0;
}

static int get_duration(yctx_t *y, struct fy_node *n, int line, const char *what, uint64_t min,
                        uint64_t *out)
{
    const char *s = NULL; /* set by scalar() when it returns 0 (-O3 cannot see it) */
    uint64_t ms;
    int rc = scalar(y, n, line, what, &s);
    if (rc < 0)
        return rc;
    if (cm_parse_duration_ms(s, &ms) < 0)
        return fail(y, cm_yaml_line(n, line),
                    "%s '%s' is not a duration; write 500ms, 2s, 1m or 1h", what, s);
    if (ms < min || ms > DAY_MS)
        return fail(y, cm_yaml_line(n, line), "%s '%s' is out of range; use %llums..24h", what, s,
                    (unsigned long long)min);
    *out = ms;
    return 0;
}

static int get_hostport(yctx_t *y, struct fy_node *n, int line, const char *what, char *host,
                        size_t hcap, int *port)
{
    const char *s = NULL; /* set by scalar() when it returns 0 (-O3 cannot see it) */
    int rc = scalar(y, n, line, what, &s);
    if (rc < 0)
        return rc;
    if (cm_parse_hostport(s, host, hcap, port) < 0 || *port == 0)
        return fail(y, cm_yaml_line(n, line), "%s '%s' is not HOST:PORT with a port in 1..65535",
                    what, s);
    return 0;
}

static const char *key_of(struct fy_node_pair *p)
{
    struct fy_node *k = fy_node_pair_key(p);
    return k && fy_node_is_scalar(k) ? fy_node_get_scalar0(k) : "?";
}

static int want_mapping(yctx_t *y, struct fy_node *n, int line, const char *what)
{
    if (!n || !fy_node_is_mapping(n))
        return fail(y, cm_yaml_line(n, line), "%s must be a mapping", what);
    return 0;
}

/* A list of strings (a bare scalar is a list of one). *out is a NULL-free array the
 * caller frees with free_list. */
static int get_list(yctx_t *y, struct fy_node *n, int line, const char *what, char ***out,
                    int *nout)
{
    if (n && fy_node_is_scalar(n)) {
        const char *s = NULL;
        int rc = scalar(y, n, line, what, &s);
        if (rc < 0)
            return rc;
        char **l = malloc(sizeof *l);
        if (!l || !(l[0] = strdup(s))) {
            free(l);
            return -ENOMEM;
        }
        *out = l, *nout = 1;
        return 0;
    }
    if (!n || !fy_node_is_sequence(n))
        return fail(y, cm_yaml_line(n, line), "%s must be a list of strings", what);
    int cnt = fy_node_sequence_item_count(n), i = 0;
    char **l = calloc((size_t)(cnt ? cnt : 1), sizeof *l);
    if (!l)
        return -ENOMEM;
    void *it = NULL;
    struct fy_node *item;
    while ((item = fy_node_sequence_iterate(n, &it))) {
        if (!fy_node_is_scalar(item)) {
            for (int j = 0; j < i; j++)
                free(l[j]);
            free(l);
            return fail(y, cm_yaml_line(item, line), "%s[%d] must be a string", what, i);
        }
        l[i++] = strdup(fy_node_get_scalar0(item));
    }
    *out = l, *nout = i;
    return 0;
}

static void free_list(char **l, int n)
{
    for (int i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

/* ---------------------------------------------------------------------------------- */
/* Sections                                                                           */
/* ---------------------------------------------------------------------------------- */

/* `readiness:` / `liveness:`: off, or a mapping of path, interval, timeout, rise, fall. */
static int parse_probe(yctx_t *y, struct fy_node *n, int line, const char *what, cm_probe_spec_t *p)
{
    if (n && fy_node_is_scalar(n) && strcmp(fy_node_get_scalar0(n), "off") == 0) {
        p->path[0] = '\0';
        return 0;
    }
    int rc = want_mapping(y, n, line, what);
    if (rc < 0)
        return rc;
    if (!p->path[0])
        snprintf(p->path, sizeof p->path, "/healthz");
    void *it = NULL;
    struct fy_node_pair *kv;
    char w[128];
    while ((kv = fy_node_mapping_iterate(n, &it))) {
        const char *k = key_of(kv);
        struct fy_node *v = fy_node_pair_value(kv);
        int kl = cm_yaml_line(fy_node_pair_key(kv), line);
        snprintf(w, sizeof w, "%s.%s", what, k);
        if (strcmp(k, "path") == 0) {
            if ((rc = get_string(y, v, kl, w, p->path, sizeof p->path)) == 0 && p->path[0] != '/')
                rc = fail(y, cm_yaml_line(v, kl), "%s must start with '/'", w);
        } else if (strcmp(k, "interval") == 0)
            rc = get_duration(y, v, kl, w, 100, &p->interval_ms);
        else if (strcmp(k, "timeout") == 0)
            rc = get_duration(y, v, kl, w, 10, &p->timeout_ms);
        else if (strcmp(k, "rise") == 0)
            rc = get_int(y, v, kl, w, 1, 100, &p->rise);
        else if (strcmp(k, "fall") == 0)
            rc = get_int(y, v, kl, w, 1, 100, &p->fall);
        else
            rc = fail(y, kl, "unknown key '%s' in %s; expected path, interval, timeout, rise, fall",
                      k, what);
        if (rc < 0)
            return rc;
    }
    if (p->timeout_ms > p->interval_ms)
        return fail(y, line, "%s.timeout must not be longer than its interval", what);
    return 0;
}

/* A decimal number in [min, max] ("0.5", "16"); with pct, "10%" is 0.10 too. */
static int get_number(yctx_t *y, struct fy_node *n, int line, const char *what, double min,
                      double max, int pct, double *out)
{
    const char *s = NULL; /* set by scalar() when it returns 0 (-O3 cannot see it) */
    int rc = scalar(y, n, line, what, &s);
    if (rc < 0)
        return rc;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (pct && end != s && strcmp(end, "%") == 0)
        v /= 100, end++;
    /* digits only: strtod also takes "inf", "nan", hex and leading blanks */
    int plain = (s[0] >= '0' && s[0] <= '9') || s[0] == '.';
    if (!plain || end == s || *end || errno || !(v >= min && v <= max))
        return fail(y, cm_yaml_line(n, line), "%s '%s' must be a number in %g..%g%s", what, s, min,
                    max, pct ? " (or a percentage: 10%)" : "");
    *out = v;
    return 0;
}

/* `autoscale:` {min, max, target, stable_window, panic_window, tick, tolerance,
 * panic_threshold, flap_budget}; Knative's windows, shortened (30 s / 3 s, 1 s ticks). */
static int parse_autoscale(yctx_t *y, struct fy_node *n, int line, const char *what,
                           cm_autoscale_spec_t *a)
{
    int rc = want_mapping(y, n, line, what);
    if (rc < 0)
        return rc;
    *a = (cm_autoscale_spec_t){.on = 1,
                               .min = 1,
                               .max = 0,
                               .target = 0,
                               .tolerance = 0.10,
                               .stable_ms = 30000,
                               .panic_ms = 3000,
                               .tick_ms = 1000,
                               .panic_threshold = 2.0,
                               .flap_budget = 2,
                               .line = line};
    int has_max = 0;
    void *it = NULL;
    struct fy_node_pair *kv;
    char w[CM_SPEC_NAME_MAX + 128];
    while ((kv = fy_node_mapping_iterate(n, &it))) {
        const char *k = key_of(kv);
        struct fy_node *v = fy_node_pair_value(kv);
        int kl = cm_yaml_line(fy_node_pair_key(kv), line);
        snprintf(w, sizeof w, "%s.%s", what, k);
        if (strcmp(k, "min") == 0)
            rc = get_int(y, v, kl, w, 0, CM_SPEC_MAX_INST, &a->min);
        else if (strcmp(k, "max") == 0)
            rc = get_int(y, v, kl, w, 1, CM_SPEC_MAX_INST, &a->max), has_max = 1;
        else if (strcmp(k, "target") == 0) {
            if ((rc = get_number(y, v, kl, w, 0, 1e6, 0, &a->target)) == 0 && a->target <= 0)
                rc = fail(y, cm_yaml_line(v, kl),
                          "%s must be more than 0 (in-flight requests per instance)", w);
        } else if (strcmp(k, "tolerance") == 0)
            rc = get_number(y, v, kl, w, 0, 0.99, 1, &a->tolerance);
        else if (strcmp(k, "panic_threshold") == 0)
            rc = get_number(y, v, kl, w, 1, 100, 0, &a->panic_threshold);
        else if (strcmp(k, "flap_budget") == 0)
            rc = get_int(y, v, kl, w, 1, 100, &a->flap_budget);
        else if (strcmp(k, "stable_window") == 0)
            rc = get_duration(y, v, kl, w, 1, &a->stable_ms);
        else if (strcmp(k, "panic_window") == 0)
            rc = get_duration(y, v, kl, w, 1, &a->panic_ms);
        else if (strcmp(k, "tick") == 0)
            rc = get_duration(y, v, kl, w, 100, &a->tick_ms);
        else
            rc = fail(y, kl,
                      "unknown key '%s' in %s; expected min, max, target, stable_window, "
                      "panic_window, tick, tolerance, panic_threshold, flap_budget",
                      k, what);
        if (rc < 0)
            return rc;
    }
    if (!has_max)
        return fail(y, line, "%s needs max: the most instances it may scale to", what);
    if (a->target <= 0)
        return fail(y, line, "%s needs target: in-flight requests per instance (e.g. 8)", what);
    if (a->min > a->max)
        return fail(y, line, "%s.min (%d) must not be more than max (%d)", what, a->min, a->max);
    if (a->panic_ms < a->tick_ms || a->stable_ms < a->panic_ms)
        return fail(y, line, "%s: the windows must be tick <= panic_window <= stable_window", what);
    if (a->stable_ms / a->tick_ms > CM_AUTOSCALE_HIST)
        return fail(y, line, "%s.stable_window holds more than %d ticks; use a longer tick", what,
                    CM_AUTOSCALE_HIST);
    return 0;
}

static const char *const self_commands[] = {"users", "orders", "gateway", NULL};

static int parse_env(yctx_t *y, struct fy_node *n, int line, const char *what, cm_svc_spec_t *s)
{
    int rc = want_mapping(y, n, line, what);
    if (rc < 0)
        return rc;
    int cnt = fy_node_mapping_item_count(n);
    s->env = calloc((size_t)(cnt ? cnt : 1), sizeof *s->env);
    if (!s->env)
        return -ENOMEM;
    void *it = NULL;
    struct fy_node_pair *kv;
    while ((kv = fy_node_mapping_iterate(n, &it))) {
        const char *k = key_of(kv), *v;
        int kl = cm_yaml_line(fy_node_pair_key(kv), line);
        if (!k[0] || strchr(k, '='))
            return fail(y, kl, "%s: '%s' is not a variable name", what, k);
        if ((rc = scalar(y, fy_node_pair_value(kv), kl, what, &v)) < 0)
            return rc;
        size_t len = strlen(k) + strlen(v) + 2;
        if (!(s->env[s->nenv] = malloc(len)))
            return -ENOMEM;
        snprintf(s->env[s->nenv++], len, "%s=%s", k, v);
    }
    return 0;
}

static void svc_defaults(cm_svc_spec_t *s)
{
    s->instances = 1;
    snprintf(s->host, sizeof s->host, "127.0.0.1");
    s->drain_ms = 10000;
    s->rollout_ms = 60000;
    s->ready = (cm_probe_spec_t){"", 1000, 1000, 1, 3};
    s->live = (cm_probe_spec_t){"", 10000, 1000, 1, 3};
}

static int parse_service(yctx_t *y, cm_svc_spec_t *s, const char *name, struct fy_node *n, int line)
{
    char what[CM_SPEC_NAME_MAX + 64];
    svc_defaults(s);
    s->line = line;
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(what, sizeof what, "services.%s", name);
    int rc = want_mapping(y, n, line, what);
    if (rc < 0)
        return rc;
    struct fy_node *cmd = fy_node_mapping_lookup_by_string(n, "command", -1);
    if (!cmd)
        return fail(y, line, "%s needs a command (a cmesh command like users, or a path)", what);
    /* a cmesh service's probes are on by default: it serves /readyz and /healthz */
    const char *c = fy_node_is_scalar(cmd) ? fy_node_get_scalar0(cmd) : "";
    for (int i = 0; self_commands[i]; i++)
        if (strcmp(c, self_commands[i]) == 0)
            s->self = 1;
    if (s->self) {
        snprintf(s->ready.path, sizeof s->ready.path, "/readyz");
        snprintf(s->live.path, sizeof s->live.path, "/healthz");
    }
    int has_listen = 0, has_instances = 0, bad = 0;
    void *it = NULL;
    struct fy_node_pair *kv;
    while ((kv = fy_node_mapping_iterate(n, &it))) {
        const char *k = key_of(kv);
        struct fy_node *v = fy_node_pair_value(kv);
        int kl = cm_yaml_line(fy_node_pair_key(kv), line);
        char w[CM_SPEC_NAME_MAX + 80];
        snprintf(w, sizeof w, "%s.%s", what, k);
        if (strcmp(k, "command") == 0)
            rc = get_string(y, v, kl, w, s->command, sizeof s->command);
        else if (strcmp(k, "args") == 0)
            rc = get_list(y, v, kl, w, &s->args, &s->nargs);
        else if (strcmp(k, "env") == 0)
            rc = parse_env(y, v, kl, w, s);
        else if (strcmp(k, "instances") == 0)
            rc = get_int(y, v, kl, w, 0, CM_SPEC_MAX_INST, &s->instances), has_instances = 1;
        else if (strcmp(k, "autoscale") == 0)
            rc = parse_autoscale(y, v, kl, w, &s->autoscale);
        else if (strcmp(k, "listen") == 0)
            rc = get_hostport(y, v, kl, w, s->host, sizeof s->host, &s->port), has_listen = 1;
        else if (strcmp(k, "readiness") == 0)
            rc = parse_probe(y, v, kl, w, &s->ready);
        else if (strcmp(k, "liveness") == 0)
            rc = parse_probe(y, v, kl, w, &s->live);
        else if (strcmp(k, "drain_timeout") == 0)
            rc = get_duration(y, v, kl, w, 0, &s->drain_ms);
        else if (strcmp(k, "rollout_timeout") == 0)
            rc = get_duration(y, v, kl, w, 1, &s->rollout_ms);
        else
            rc = fail(y, kl,
                      "unknown key '%s' in %s; expected command, args, env, instances, "
                      "autoscale, listen, readiness, liveness, drain_timeout, rollout_timeout",
                      k, what);
        if (rc == -EINVAL)
            bad = rc; /* reported; the other keys are checked too */
        else if (rc < 0)
            return rc;
    }
    if (bad < 0)
        return bad;
    if (!has_listen)
        return fail(y, line, "%s needs listen: HOST:PORT (instance i listens on PORT + i)", what);
    const cm_autoscale_spec_t *a = &s->autoscale;
    if (a->on && has_instances && (s->instances < a->min || s->instances > a->max))
        return fail(y, line, "%s.instances (%d) must be within autoscale min..max (%d..%d)", what,
                    s->instances, a->min, a->max);
    if (a->on && !has_instances) /* start at min; a min of 0 starts one, idle takes it away */
        s->instances = a->min > 0 ? a->min : 1;
    if (s->port + CM_SPEC_MAX_INST - 1 > 65535)
        return fail(y, line, "%s.listen: the port must leave room for %d instances (<= %d)", what,
                    CM_SPEC_MAX_INST, 65535 - CM_SPEC_MAX_INST + 1);
    return 0;
}

static int parse_control(yctx_t *y, cm_spec_t *sp, struct fy_node *n, int line)
{
    int rc = want_mapping(y, n, line, "control");
    if (rc < 0)
        return rc;
    void *it = NULL;
    struct fy_node_pair *kv;
    while ((kv = fy_node_mapping_iterate(n, &it))) {
        const char *k = key_of(kv);
        struct fy_node *v = fy_node_pair_value(kv);
        int kl = cm_yaml_line(fy_node_pair_key(kv), line);
        if (strcmp(k, "listen") == 0)
            rc = get_hostport(y, v, kl, "control.listen", sp->control_host, sizeof sp->control_host,
                              &sp->control_port);
        else if (strcmp(k, "state_dir") == 0) {
            char raw[CM_SPEC_PATH_MAX];
            rc = get_string(y, v, kl, "control.state_dir", raw, sizeof raw);
            if (rc == 0 && raw[0] == '/')
                snprintf(sp->state_dir, sizeof sp->state_dir, "%s", raw);
            else if (rc == 0 && (size_t)snprintf(sp->state_dir, sizeof sp->state_dir, "%s/%s",
                                                 sp->dir, raw) >= sizeof sp->state_dir)
                rc = fail(y, kl, "control.state_dir is too long");
        } else
            rc = fail(y, kl, "unknown key '%s' in control; expected listen, state_dir", k);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* What the supervisor needs of the gateway (the rest is the gateway loader's): its
 * address, its auth key (absolute), and that every `service:` names a service. */
static int parse_gateway(yctx_t *y, cm_spec_t *sp, struct fy_node *n, int line)
{
    int rc = want_mapping(y, n, line, "gateway");
    if (rc < 0)
        return rc;
    cm_svc_spec_t *g = &sp->svcs[sp->nsvcs];
    svc_defaults(g);
    g->self = 1;
    g->line = line;
    snprintf(g->name, sizeof g->name, CM_SPEC_GATEWAY);
    snprintf(g->command, sizeof g->command, "gateway");
    snprintf(g->ready.path, sizeof g->ready.path, "/readyz");
    snprintf(g->live.path, sizeof g->live.path, "/healthz");
    struct fy_node *l = fy_node_mapping_lookup_by_string(n, "listen", -1);
    if (!l)
        return fail(y, line, "gateway needs listen: HOST:PORT");
    if ((rc = get_hostport(y, l, cm_yaml_line(l, line), "gateway.listen", g->host, sizeof g->host,
                           &g->port)) < 0)
        return rc;
    struct fy_node *auth = fy_node_mapping_lookup_by_string(n, "auth", -1);
    struct fy_node *kf = auth && fy_node_is_mapping(auth)
                             ? fy_node_mapping_lookup_by_string(auth, "key_file", -1)
                             : NULL;
    if (kf && fy_node_is_scalar(kf)) {
        const char *s = fy_node_get_scalar0(kf);
        if ((size_t)snprintf(sp->key_file, sizeof sp->key_file, "%s%s%s",
                             s[0] == '/' ? "" : sp->dir, s[0] == '/' ? "" : "/",
                             s) >= sizeof sp->key_file)
            return fail(y, cm_yaml_line(kf, line), "gateway.auth.key_file is too long");
    }
    struct fy_node *routes = fy_node_mapping_lookup_by_string(n, "routes", -1);
    void *it = NULL;
    struct fy_node *r;
    while (routes && fy_node_is_sequence(routes) && (r = fy_node_sequence_iterate(routes, &it))) {
        struct fy_node *sv =
            fy_node_is_mapping(r) ? fy_node_mapping_lookup_by_string(r, "service", -1) : NULL;
        if (!sv)
            continue;
        int sl = cm_yaml_line(sv, line);
        const char *name;
        if ((rc = scalar(y, sv, sl, "route service", &name)) < 0)
            return rc;
        if (!cm_spec_service(sp, name) || strcmp(name, CM_SPEC_GATEWAY) == 0)
            return fail(y, sl, "route service '%s' is not one of services:", name);
        if (fy_node_mapping_lookup_by_string(r, "upstreams", -1))
            return fail(y, sl, "a route has either service: or upstreams:, not both");
    }
    sp->nsvcs++;
    sp->has_gateway = 1;
    return 0;
}

static int parse_root(yctx_t *y, cm_spec_t *sp, struct fy_node *root)
{
    if (!root || !fy_node_is_mapping(root))
        return fail(y, cm_yaml_line(root, 1),
                    "the file must be a mapping with services, gateway, "
                    "control");
    struct fy_node *svcs = NULL, *gw = NULL, *ctl = NULL;
    int sline = 1, gline = 1, cline = 1;
    void *it = NULL;
    struct fy_node_pair *kv;
    while ((kv = fy_node_mapping_iterate(root, &it))) {
        const char *k = key_of(kv);
        int kl = cm_yaml_line(fy_node_pair_key(kv), 1);
        if (strcmp(k, "services") == 0)
            svcs = fy_node_pair_value(kv), sline = kl;
        else if (strcmp(k, "gateway") == 0)
            gw = fy_node_pair_value(kv), gline = kl;
        else if (strcmp(k, "control") == 0)
            ctl = fy_node_pair_value(kv), cline = kl;
        else if (strncmp(k, "x-", 2) != 0) /* x-*: room for shared anchors, as compose */
            return fail(y, kl,
                        "unknown key '%s' at top level; expected services, gateway, "
                        "control or x-*",
                        k);
    }
    int rc = 0;
    if (ctl && (rc = parse_control(y, sp, ctl, cline)) < 0)
        return rc;
    if (!svcs)
        return fail(y, 1, "the file needs services: (at least one)");
    if ((rc = want_mapping(y, svcs, sline, "services")) < 0)
        return rc;
    int n = fy_node_mapping_item_count(svcs);
    if (n < 1 || n > CM_SPEC_MAX_SVCS - 1)
        return fail(y, sline, "services: needs 1..%d entries", CM_SPEC_MAX_SVCS - 1);
    sp->svcs = calloc((size_t)n + 1, sizeof *sp->svcs);
    if (!sp->svcs)
        return -ENOMEM;
    it = NULL;
    int bad = 0;
    while ((kv = fy_node_mapping_iterate(svcs, &it))) {
        const char *name = key_of(kv);
        int kl = cm_yaml_line(fy_node_pair_key(kv), sline);
        size_t len = strlen(name);
        if (len == 0 || len >= CM_SPEC_NAME_MAX ||
            strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-") != len)
            return fail(y, kl, "service name '%s' must be 1..%d of a-z, 0-9, '-'", name,
                        CM_SPEC_NAME_MAX - 1);
        if (strcmp(name, CM_SPEC_GATEWAY) == 0)
            return fail(y, kl, "'gateway' is the gateway's name; configure it under gateway:");
        rc = parse_service(y, &sp->svcs[sp->nsvcs], name, fy_node_pair_value(kv), kl);
        sp->nsvcs++; /* counted now so that free sees its lists */
        if (rc == -EINVAL)
            bad = rc; /* reported; the other services are checked too */
        else if (rc < 0)
            return rc;
    }
    if (bad < 0)
        return bad;
    /* two services must not share a port range */
    for (int i = 0; i < sp->nsvcs; i++)
        for (int j = 0; j < i; j++) {
            const cm_svc_spec_t *a = &sp->svcs[i], *b = &sp->svcs[j];
            if (a->port < b->port + CM_SPEC_MAX_INST && b->port < a->port + CM_SPEC_MAX_INST)
                return fail(y, a->line,
                            "services.%s.listen: ports %d..%d overlap those of %s (%d..%d); each "
                            "service needs %d ports of its own",
                            a->name, a->port, a->port + CM_SPEC_MAX_INST - 1, b->name, b->port,
                            b->port + CM_SPEC_MAX_INST - 1, CM_SPEC_MAX_INST);
        }
    if (gw && (rc = parse_gateway(y, sp, gw, gline)) < 0)
        return rc;
    for (int i = 0; i < sp->nsvcs - sp->has_gateway; i++) {
        const cm_svc_spec_t *a = &sp->svcs[i];
        if ((a->port <= sp->control_port && sp->control_port < a->port + CM_SPEC_MAX_INST) ||
            (sp->has_gateway && a->port <= sp->svcs[sp->nsvcs - 1].port &&
             sp->svcs[sp->nsvcs - 1].port < a->port + CM_SPEC_MAX_INST))
            return fail(y, a->line,
                        "services.%s.listen: its ports %d..%d include the control "
                        "or gateway port",
                        a->name, a->port, a->port + CM_SPEC_MAX_INST - 1);
        for (int k = 0; k < a->nargs; k++) {
            char out[4096];
            if (cm_spec_expand(a, 0, a->args[k], NULL, (void *)sp, out, sizeof out) < 0)
                return fail(y, a->line,
                            "services.%s.args[%d] '%s': unknown placeholder; use "
                            "{addr} {host} {port} {index} {url:SERVICE} {registry}",
                            a->name, k, a->args[k]);
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Loading                                                                            */
/* ---------------------------------------------------------------------------------- */

static struct fy_document *parse_doc(yctx_t *y, const char *text, size_t len, int *rc)
{
    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.level = FYET_ERROR;
    struct fy_diag *diag = fy_diag_create(&dcfg);
    if (!diag) {
        *rc = -ENOMEM;
        return NULL;
    }
    fy_diag_set_collect_errors(diag, true);
    struct fy_parse_cfg pcfg = {
        .flags = FYPCF_QUIET | FYPCF_RESOLVE_DOCUMENT | FYPCF_DISABLE_RECYCLING,
        .diag = diag,
    };
    struct fy_document *doc = fy_document_build_from_string(&pcfg, text, len);
    *rc = 0;
    if (!doc) {
        void *it = NULL;
        struct fy_diag_error *de = fy_diag_errors_iterate(diag, &it);
        if (de)
            *rc = fail(y, de->line > 0 ? de->line : 1, "YAML syntax error: %s (column %d)", de->msg,
                       de->column);
        else
            *rc = fail(y, 1, len ? "YAML syntax error" : "the file is empty");
    }
    fy_diag_destroy(diag);
    return doc;
}

int cm_spec_parse(const char *path, const char *text, size_t len, cm_spec_t **out, char *err,
                  size_t cap)
{
    yctx_t y = {.file = path, .err = err, .cap = cap};
    if (cap)
        err[0] = '\0';
    cm_spec_t *sp = calloc(1, sizeof *sp);
    if (!sp || !(sp->text = malloc(len + 1))) {
        free(sp);
        return -ENOMEM;
    }
    memcpy(sp->text, text, len);
    sp->text[len] = '\0';
    sp->len = len;
    snprintf(sp->path, sizeof sp->path, "%s", path);
    /* the directory, absolute: instances and relative paths are anchored there */
    char absdir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    char dir[CM_SPEC_PATH_MAX];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    if (!dir[0])
        snprintf(dir, sizeof dir, "/");
    if (!realpath(dir, absdir) || strlen(absdir) >= sizeof sp->dir) {
        int rc = errno ? -errno : -ENAMETOOLONG;
        snprintf(err, cap, "%s: cannot resolve its directory: %s", path, strerror(-rc));
        cm_spec_free(sp);
        return rc;
    }
    memcpy(sp->dir, absdir, strlen(absdir) + 1); /* length checked above */
    snprintf(sp->control_host, sizeof sp->control_host, "127.0.0.1");
    sp->control_port = 9000;
    snprintf(sp->state_dir, sizeof sp->state_dir, "%.*s/data/state", (int)(sizeof sp->dir - 12),
             sp->dir);
    int rc;
    struct fy_document *doc = parse_doc(&y, text, len, &rc);
    if (rc == 0)
        rc = parse_root(&y, sp, fy_document_root(doc));
    fy_document_destroy(doc);
    if (rc < 0) {
        cm_spec_free(sp);
        return rc;
    }
    *out = sp;
    return 0;
}

int cm_spec_load(const char *path, cm_spec_t **out, char *err, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int rc = -errno;
        snprintf(err, cap, "%s: cannot read: %s", path, strerror(-rc));
        return rc;
    }
    char *buf = NULL;
    size_t n = 0, capb = 0;
    for (;;) {
        if (n == capb) {
            char *g = realloc(buf, capb ? capb * 2 : 8192);
            if (!g) {
                free(buf);
                fclose(f);
                return -ENOMEM;
            }
            buf = g, capb = capb ? capb * 2 : 8192;
        }
        size_t got = fread(buf + n, 1, capb - n, f);
        n += got;
        if (got == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        snprintf(err, cap, "%s: cannot read: I/O error", path);
        return -EIO;
    }
    int rc = cm_spec_parse(path, buf, n, out, err, cap);
    free(buf);
    return rc;
}

void cm_spec_free(cm_spec_t *s)
{
    if (!s)
        return;
    for (int i = 0; s->svcs && i < s->nsvcs; i++) {
        free_list(s->svcs[i].args, s->svcs[i].nargs);
        free_list(s->svcs[i].env, s->svcs[i].nenv);
    }
    free(s->svcs);
    free(s->text);
    free(s);
}

const cm_svc_spec_t *cm_spec_service(const cm_spec_t *s, const char *name)
{
    for (int i = 0; i < s->nsvcs; i++)
        if (strcmp(s->svcs[i].name, name) == 0)
            return &s->svcs[i];
    return NULL;
}

/* ---------------------------------------------------------------------------------- */
/* Instances: placeholders, the gateway's file                                        */
/* ---------------------------------------------------------------------------------- */

int cm_spec_expand(const cm_svc_spec_t *svc, int index, const char *arg, cm_spec_url_fn url_of,
                   void *ctx, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = arg; *p;) {
        char piece[1024];
        size_t plen;
        if (*p != '{') {
            piece[0] = *p++, plen = 1;
        } else {
            const char *end = strchr(p, '}');
            if (!end)
                return -EINVAL;
            size_t nlen = (size_t)(end - p - 1);
            const char *name = p + 1;
            int n;
            if (nlen == 4 && strncmp(name, "addr", 4) == 0)
                n = snprintf(piece, sizeof piece, "%s:%d", svc->host, svc->port + index);
            else if (nlen == 4 && strncmp(name, "host", 4) == 0)
                n = snprintf(piece, sizeof piece, "%s", svc->host);
            else if (nlen == 4 && strncmp(name, "port", 4) == 0)
                n = snprintf(piece, sizeof piece, "%d", svc->port + index);
            else if (nlen == 5 && strncmp(name, "index", 5) == 0)
                n = snprintf(piece, sizeof piece, "%d", index);
            else if (nlen == 8 && strncmp(name, "registry", 8) == 0) {
                if (!url_of)
                    n = snprintf(piece, sizeof piece, "http://x");
                else if (url_of("", index, piece, sizeof piece, ctx) < 0)
                    return -EINVAL;
                else
                    n = (int)strlen(piece);
            } else if (nlen > 4 && nlen < CM_SPEC_NAME_MAX + 4 && strncmp(name, "url:", 4) == 0) {
                char target[CM_SPEC_NAME_MAX];
                snprintf(target, sizeof target, "%.*s", (int)nlen - 4, name + 4);
                if (!url_of) { /* validating: the service must exist */
                    const cm_spec_t *sp = ctx;
                    if (!cm_spec_service(sp, target))
                        return -EINVAL;
                    n = snprintf(piece, sizeof piece, "http://x");
                } else if (url_of(target, index, piece, sizeof piece, ctx) < 0)
                    return -EINVAL;
                else
                    n = (int)strlen(piece);
            } else
                return -EINVAL;
            if (n < 0 || (size_t)n >= sizeof piece)
                return -EINVAL;
            plen = (size_t)n;
            p = end + 1;
        }
        if (o + plen >= cap)
            return -EINVAL;
        memcpy(out + o, piece, plen);
        o += plen;
    }
    out[o] = '\0';
    return 0;
}

/* Gives every route with `service:` its `upstreams:` (the service's instances now) and
 * key_file its absolute path, in place. */
static int rewrite_gateway(yctx_t *y, const cm_spec_t *sp, struct fy_document *doc,
                           struct fy_node *gw, cm_spec_urls_fn urls_of, void *arg)
{
    struct fy_node *auth = fy_node_mapping_lookup_by_string(gw, "auth", -1);
    struct fy_node_pair *kfp = auth && fy_node_is_mapping(auth)
                                   ? fy_node_mapping_lookup_pair_by_string(auth, "key_file", -1)
                                   : NULL;
    if (kfp && sp->key_file[0])
        fy_node_pair_set_value(kfp, fy_node_create_scalar_copy(doc, sp->key_file, FY_NT));
    struct fy_node *routes = fy_node_mapping_lookup_by_string(gw, "routes", -1);
    void *it = NULL;
    struct fy_node *r;
    while (routes && fy_node_is_sequence(routes) && (r = fy_node_sequence_iterate(routes, &it))) {
        struct fy_node_pair *p =
            fy_node_is_mapping(r) ? fy_node_mapping_lookup_pair_by_string(r, "service", -1) : NULL;
        if (!p)
            continue;
        struct fy_node *v = fy_node_pair_value(p);
        const char *name = fy_node_is_scalar(v) ? fy_node_get_scalar0(v) : "";
        char **urls = NULL;
        int n = 0;
        int rc = urls_of(name, &urls, &n, arg);
        if (rc < 0)
            return rc;
        if (n == 0) {
            free(urls);
            return fail(y, cm_yaml_line(v, 1), "route service '%s' has no instances to route to",
                        name);
        }
        struct fy_node *seq = fy_node_create_sequence(doc);
        for (int i = 0; i < n; i++) {
            fy_node_sequence_append(seq, fy_node_create_scalar_copy(doc, urls[i], FY_NT));
            free(urls[i]);
        }
        free(urls);
        /* service: stays: the gateway follows it in memory (--registry); upstreams:
         * is its set until the registry's first answer */
        if (fy_node_mapping_append(r, fy_node_create_scalar(doc, "upstreams", FY_NT), seq) < 0)
            return -ENOMEM;
    }
    return 0;
}

int cm_spec_gateway_yaml(const cm_spec_t *sp, cm_spec_urls_fn urls_of, void *arg, char **yaml,
                         char *err, size_t cap)
{
    yctx_t y = {.file = sp->path, .err = err, .cap = cap};
    if (cap)
        err[0] = '\0';
    int rc;
    struct fy_document *doc = parse_doc(&y, sp->text, sp->len, &rc);
    if (rc < 0)
        return rc;
    struct fy_node *gw = fy_node_mapping_lookup_by_string(fy_document_root(doc), "gateway", -1);
    if (!gw) {
        fy_document_destroy(doc);
        snprintf(err, cap, "%s: no gateway: section", sp->path);
        return -EINVAL;
    }
    rc = rewrite_gateway(&y, sp, doc, gw, urls_of, arg);
    gw_config_t *cfg = NULL;
    if (rc == 0)
        rc = gw_config_load_node(gw, sp->path, &cfg, err, cap);
    gw_config_free(cfg);
    if (rc == 0) {
        *yaml = fy_emit_node_to_string(gw, FYECF_MODE_BLOCK | FYECF_WIDTH_INF);
        rc = *yaml ? 0 : -ENOMEM;
    }
    fy_document_destroy(doc);
    return rc;
}
