/* gateway/gateway.c: `cmesh gateway`: flags, the process-wide and per-worker state
 * (gateway_types.h), building the config and reloading it on SIGHUP (snapshot.c makes
 * it current), and the glue to the core server (streaming service with a fallback
 * handler). */
#include "gateway/gateway.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/flags.h"
#include "core/log.h"
#include "core/server.h"
#include "gateway/admin.h"
#include "gateway/drain.h"
#include "gateway/follow.h"
#include "gateway/gateway_types.h"
#include "gateway/proxy.h"
#include "gateway/snapshot.h"
#include "gateway/table.h"
#include "gateway/upstream.h"

#define RATE_KEYS_MAX 100000
#define ERR_MAX       8192 /* a config's errors, one line each ("FILE:LINE: what") */
#define SWEEP_MS      1000

/* Builds the config from the file and/or the --route flags. */
static int build_config(gw_shared_t *g, gw_config_t **out, char *err, size_t cap)
{
    gw_config_t *cfg = NULL;
    int rc;
    if (g->config_path[0] && (rc = gw_config_load(g->config_path, &cfg, err, cap)) < 0)
        return rc;
    if (g->auth_key[0]) {
        if (!cfg && !(cfg = calloc(1, sizeof *cfg)))
            return -ENOMEM;
        snprintf(cfg->auth.key_file, sizeof cfg->auth.key_file, "%s", g->auth_key);
        if (!cfg->auth.leeway_ms)
            cfg->auth.leeway_ms = 30000;
    }
    for (int i = 0; i < g->nflag_routes; i++) {
        if ((rc = gw_config_add_flag_route(&cfg, g->flag_routes[i], err, cap)) < 0) {
            gw_config_free(cfg);
            return rc;
        }
    }
    if (!cfg) {
        snprintf(err, cap, "no routes: give --config FILE or --route /prefix=http://host:port");
        return -EINVAL;
    }
    if ((rc = gw_config_finish(cfg, err, cap)) < 0) {
        gw_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* workers                                                                    */

static void worker_take_snapshot(gw_worker_t *w)
{
    gw_snap_t *s = gw_snap_acquire(w->g);
    uint64_t gen = s->gen;
    if (w->table && w->table->snap == s) {
        gw_snap_release(s);
        atomic_store(&w->applied_gen, gen);
        gw_drain_poke(w->g->drain);
        return;
    }
    gw_table_t *t;
    if (gw_table_build(w, s, w->table, &t) < 0) {
        cm_log_msg(CM_LOG_ERROR, "gateway: out of memory applying a new config; keeping the old");
        return;
    }
    gw_table_t *old = w->table;
    w->table = t;
    /* what the registry took out is counted before the worker says it applied this */
    gw_table_mark_removed(old, t);
    gw_proxy_retable(w, old, t); /* held requests follow their route (and may go now) */
    gw_table_unref(old);         /* freed once the exchanges started on it are done */
    atomic_store(&w->applied_gen, gen);
    gw_drain_poke(w->g->drain);
}

static void on_wake(uv_async_t *a)
{
    worker_take_snapshot(a->data);
}

static void on_sweep(uv_timer_t *t)
{
    gw_worker_t *w = t->data;
    uint64_t now = uv_now(t->loop);
    for (int i = 0; w->table && i < w->table->n; i++) {
        gw_rt_t *rt = &w->table->routes[i];
        uint64_t idle = rt->cfg->pool_idle_timeout_ms;
        for (int j = 0; j < rt->n; j++) /* 0 would mean all: 1 means none yet */
            gw_inst_close_idle(rt->insts[j], now > idle ? now - idle : 1);
    }
}

static int worker_init(uv_loop_t *loop, void *config, void **state)
{
    gw_shared_t *g = config;
    gw_worker_t *w = calloc(1, sizeof *w);
    if (!w || !(w->rbuf = malloc(64 * 1024))) {
        free(w);
        return -ENOMEM;
    }
    w->g = g;
    w->loop = loop;
    w->rng = (uint64_t)uv_hrtime() * 0x9e3779b97f4a7c15ULL | 1;
    int rc = cm_client_new(loop, &w->hc);
    if (rc < 0) {
        free(w->rbuf);
        free(w);
        return rc;
    }
    uv_async_init(loop, &w->wake, on_wake);
    w->wake.data = w;
    uv_timer_init(loop, &w->sweep);
    w->sweep.data = w;
    uv_timer_start(&w->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    gw_upstream_worker_init(w);
    pthread_mutex_lock(&g->mu);
    if (g->nworkers < GW_MAX_WORKERS)
        g->workers[g->nworkers++] = w;
    pthread_mutex_unlock(&g->mu);
    worker_take_snapshot(w);
    *state = w;
    return w->table ? 0 : -ENOMEM;
}

static void worker_freed(uv_handle_t *h)
{
    gw_worker_t *w = h->data;
    if (--w->closing > 0) /* every handle closed (libuv gives no order) */
        return;
    free(w->rbuf);
    free(w);
}

static void worker_free(void *state)
{
    gw_worker_t *w = state;
    if (!w)
        return;
    gw_shared_t *g = w->g;
    pthread_mutex_lock(&g->mu);
    for (int i = 0; i < g->nworkers; i++)
        if (g->workers[i] == w)
            g->workers[i] = g->workers[--g->nworkers];
    pthread_mutex_unlock(&g->mu);
    w->stopping = 1;
    gw_proxy_drop_held(w);
    gw_table_t *t = w->table;
    w->table = NULL;
    gw_table_unref(t);
    cm_client_free(w->hc);
    gw_exch_pool_free(w);
    w->closing = 4;
    uv_close((uv_handle_t *)&w->wake, worker_freed);
    uv_close((uv_handle_t *)&w->sweep, worker_freed);
    gw_upstream_worker_close(w, worker_freed);
}

/* ------------------------------------------------------------------------- */
/* the command                                                                */

#define DEFAULT_LISTEN "127.0.0.1:8080"

/* A reload applies routes, auth and policies, but not a new listen: address: the
 * listeners belong to core's workers (one SO_REUSEPORT socket each), opened once at
 * start. Rather than ignore the change without a word, say what stays and what to do. */
static void warn_listen_change(const gw_shared_t *g, const gw_config_t *cfg)
{
    if (g->listen_flag)
        return; /* --listen wins over the file, now as at start */
    const char *l = cfg->listen[0] ? cfg->listen : DEFAULT_LISTEN;
    char host[256];
    int port;
    if (cm_parse_hostport(l, host, sizeof host, &port) == 0 && port == g->listen_port &&
        strcmp(host, g->listen_host) == 0)
        return;
    cm_log_msg(CM_LOG_WARN,
               "gateway: reload: listen changed from %s:%d to %s, which a reload cannot apply; "
               "still listening on %s:%d (restart the gateway to move it)",
               g->listen_host, g->listen_port, l, g->listen_host, g->listen_port);
}

/* The admin listener is fixed at start, as listen is: say so when a reload changes it. */
static void warn_admin_change(const gw_shared_t *g, const gw_config_t *cfg)
{
    if (g->admin_arg[0] || strcmp(cfg->admin, g->admin_spec) == 0)
        return;
    cm_log_msg(CM_LOG_WARN,
               "gateway: reload: admin changed from '%s' to '%s', which a reload cannot apply; "
               "the admin API stays where it is (restart the gateway to move it)",
               g->admin_spec, cfg->admin);
}

static int is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0;
}

/* Resolves where the admin API listens (--admin-listen, else the file's admin:) into g.
 * A non-loopback address without auth is refused: the admin API replaces upstreams, so
 * whoever reaches it can send the traffic anywhere. Returns 0 or -EINVAL (printed). */
static int admin_setup(gw_shared_t *g, const gw_config_t *cfg)
{
    const char *spec = g->admin_arg[0] ? g->admin_arg : cfg->admin;
    snprintf(g->admin_spec, sizeof g->admin_spec, "%s", spec);
    if (!spec[0])
        return 0;
    if (strncmp(spec, "unix:", 5) == 0) {
        if (!spec[5]) {
            fprintf(stderr, "cmesh gateway: admin: 'unix:' needs a socket path\n");
            return -EINVAL;
        }
        return 0;
    }
    if (cm_parse_hostport(spec, g->admin_host, sizeof g->admin_host, &g->admin_port) < 0) {
        fprintf(stderr, "cmesh gateway: admin: '%s' is not HOST:PORT or unix:PATH\n", spec);
        return -EINVAL;
    }
    g->admin_public = !is_loopback(g->admin_host);
    if (g->admin_public && !cfg->auth.key_file[0]) {
        fprintf(stderr,
                "cmesh gateway: admin: %s is not a loopback address and auth is off: anyone "
                "who reaches it could redirect every route. Configure auth (--auth-key or "
                "auth: in the file; the admin API then needs scope cmesh:admin), or use "
                "127.0.0.1:PORT or unix:PATH\n",
                spec);
        return -EINVAL;
    }
    return 0;
}

/* One log line per error: a file with several errors reports them all. */
static void log_refused(const char *err)
{
    const char *line = err;
    do {
        const char *nl = strchr(line, '\n');
        int len = nl ? (int)(nl - line) : (int)strlen(line);
        cm_log_msg(CM_LOG_ERROR, "gateway: reload refused, the running config stays: %.*s", len,
                   line);
        line = nl ? nl + 1 : NULL;
    } while (line);
}

static void on_sighup(void *config)
{
    gw_shared_t *g = config;
    gw_config_t *cfg;
    char err[ERR_MAX];
    int rc = build_config(g, &cfg, err, sizeof err);
    if (rc == 0) {
        warn_listen_change(g, cfg);
        warn_admin_change(g, cfg);
    }
    /* read before the apply: afterwards cfg is the snapshot's, which a registry update
     * on the watch thread may replace and free at any time */
    int nroutes = rc == 0 ? cfg->nroutes : 0;
    /* the file's upstreams may be older than what the registry said since */
    if (rc == 0 && (rc = gw_follow_apply(g->follow, g, cfg, err, sizeof err)) < 0)
        gw_config_free(cfg);
    if (rc < 0) {
        log_refused(err);
        return;
    }
    cm_log_msg(CM_LOG_INFO, "gateway: config reloaded (%d routes)", nroutes);
}

static void render_metrics(void *config, cm_buf_t *out)
{
    gw_shared_t *g = config;
    gw_metrics_render(g->metrics, out);
    gw_follow_metrics(g->follow, out);
}

typedef struct gw_opts {
    cm_server_opts_t server;
    gw_shared_t g; /* config path, auth key and --route values land in it */
    int listen_given;
} gw_opts_t;

/* --listen of the gateway: the server's, noting that it was given (then the config
 * file's listen: does not apply). The field is the whole gw_opts_t. */
static int listen_parse(const cm_flag_t *f, void *field, const char *v, char *err, size_t cap)
{
    gw_opts_t *o = field;
    o->listen_given = 1;
    return cm_server_listen_type.parse(f, &o->server, v, err, cap);
}

static void listen_show(const cm_flag_t *f, const void *field, char *out, size_t cap)
{
    cm_server_listen_type.show(f, &((const gw_opts_t *)field)->server, out, cap);
}

/* field_size 0: parsing also sets listen_given, so a parsed default is not the same bytes */
static const cm_flag_type_t listen_type = {listen_parse, listen_show, 0, NULL};

/* --route: each one adds a value, turned into a route when the config is built. */
static int route_parse(const cm_flag_t *f, void *field, const char *v, char *err, size_t cap)
{
    (void)f;
    gw_shared_t *g = field;
    char **r = realloc(g->flag_routes, sizeof *r * (size_t)(g->nflag_routes + 1));
    if (r)
        g->flag_routes = r;
    if (!r || !(r[g->nflag_routes] = strdup(v))) {
        snprintf(err, cap, "out of memory");
        return -ENOMEM;
    }
    g->nflag_routes++;
    return 0;
}

static void route_show(const cm_flag_t *f, const void *field, char *out, size_t cap)
{
    (void)f;
    (void)field;
    snprintf(out, cap, "%s", ""); /* none until given */
}

static const cm_flag_type_t route_type = {route_parse, route_show, sizeof(gw_shared_t), NULL};

#define O gw_opts_t
static const cm_flag_t gw_flags[] = {
    CM_FLAG_STR("config", "FILE", O, g.config_path, 0,
                "YAML routes and policies (see docs/gateway-config.md); SIGHUP reloads it"),
    CM_FLAG_CUSTOM("route", "/P=URL[,URL..]", route_type, O, g, CM_FLAG_REPEAT,
                   "a route from the command line, e.g. /users=http://127.0.0.1:7001; public "
                   "unless --auth-key is given"),
    CM_FLAG_STR("registry", "URL", O, g.registry, 0,
                "the control plane (http://HOST:PORT): every route follows the registry "
                "service its service: names, else the one of its name (its ready instances, in "
                "memory); when the control plane is away the last set stays"),
    CM_FLAG_STR("auth-key", "FILE", O, g.auth_key, 0,
                "JWT key: HS256 secret, or RSA / EC P-256 PEM key"),
    CM_FLAG_STR("admin-listen", "HOST:PORT|unix:PATH", O, g.admin_arg, 0,
                "serve the admin API (/_cmesh/routes) here, and nowhere else; off when not "
                "given (nor admin: in the config file). unix:PATH is a socket only its owner "
                "can use (mode 0600); a non-loopback HOST needs auth"),
    {.name = "listen",
     .arg = "HOST:PORT",
     .type = &listen_type,
     .offset = 0,
     .size = sizeof(O),
     .help = "address to serve on; when not given, the config file's listen: if it has one"},
    CM_FLAG_END,
};
#undef O

static void opts_defaults(void *opts)
{
    gw_opts_t *o = opts;
    memset(o, 0, sizeof *o);
    cm_server_opts_default(&o->server);
    o->server.port = 8080;
    o->server.max_body = (size_t)1 << 30; /* a proxy streams bodies: 1 GiB, not 1 MiB */
}

static void opts_release(void *opts)
{
    gw_shared_t *g = &((gw_opts_t *)opts)->g;
    for (int i = 0; i < g->nflag_routes; i++)
        free(g->flag_routes[i]);
    free(g->flag_routes);
    g->flag_routes = NULL;
    g->nflag_routes = 0;
}

static const cm_flag_table_t tables[] = {
    {"flags", gw_flags, 0},
    {"server flags", cm_server_flags, offsetof(gw_opts_t, server)},
    {0},
};

const cm_cmd_t gw_gateway_cmd = {
    .name = "gateway",
    .usage = "cmesh gateway [--config FILE] [--route /prefix=http://h:p,http://h2:p2]... [flags]",
    .about = "A load-balancing reverse proxy: routes by path prefix (and Host) to upstream "
             "instances with health checks, outlier ejection, retries inside a budget, timeouts, "
             "circuit breaking, rate limits and JWT auth. SIGHUP reloads the config.",
    .tables = tables,
    .opts_size = sizeof(gw_opts_t),
    .defaults = opts_defaults,
    .release = opts_release,
};

static void shared_free(gw_shared_t *g)
{
    gw_snap_release(g->snap);
    gw_ratelimit_free(g->rl);
    gw_metrics_free(g->metrics);
    pthread_mutex_destroy(&g->mu);
}

static int gateway_run(gw_opts_t *op);

int gw_gateway_main(int argc, char **argv)
{
    gw_opts_t o;
    opts_defaults(&o);
    int rc = cm_flags_parse(&gw_gateway_cmd, argc, argv, &o);
    if (rc == 0)
        rc = gateway_run(&o);
    else
        rc = rc > 0 ? 0 : 2;
    opts_release(&o);
    return rc;
}

static int gateway_run(gw_opts_t *op)
{
    gw_shared_t *g = &op->g;
    int rc;
    pthread_mutex_init(&g->mu, NULL);
    char err[ERR_MAX];
    gw_config_t *cfg;
    if (gw_metrics_new(&g->metrics) < 0 || gw_ratelimit_new(RATE_KEYS_MAX, &g->rl) < 0) {
        shared_free(g);
        return 1;
    }
    if ((rc = build_config(g, &cfg, err, sizeof err)) < 0) {
        for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n"))
            fprintf(stderr, "cmesh gateway: %s\n", line);
        shared_free(g);
        return 2;
    }
    if (!op->listen_given && cfg->listen[0]) { /* else the --listen default */
        const char *l = cfg->listen;
        if (cm_parse_hostport(l, op->server.host, sizeof op->server.host, &op->server.port) < 0) {
            fprintf(stderr, "cmesh gateway: %s: listen: bad address '%s'\n", g->config_path, l);
            gw_config_free(cfg);
            shared_free(g);
            return 2;
        }
    }
    if (admin_setup(g, cfg) < 0) {
        gw_config_free(cfg);
        shared_free(g);
        return 2;
    }
    snprintf(g->listen_host, sizeof g->listen_host, "%s", op->server.host);
    g->listen_port = op->server.port;
    g->listen_flag = op->listen_given;
    if ((rc = gw_apply(g, cfg, err, sizeof err)) < 0) {
        fprintf(stderr, "cmesh gateway: %s\n", err);
        gw_config_free(cfg);
        shared_free(g);
        return 2;
    }
    cm_service_t svc = {
        .name = "gateway",
        .worker_init = worker_init,
        .worker_free = worker_free,
        .config = g,
        .fallback = gw_proxy_handle,
        .stream = 1,
        .on_sighup = on_sighup,
        .render_metrics = render_metrics,
    };
    if (g->admin_spec[0]) {
        svc.admin = gw_admin_serve;
        if (strncmp(g->admin_spec, "unix:", 5) == 0)
            svc.admin_socket = g->admin_spec + 5;
        svc.admin_host = g->admin_host;
        svc.admin_port = g->admin_port;
    }
    if (g->registry[0] && (rc = gw_follow_start(g, g->registry, &g->follow)) < 0) {
        fprintf(stderr, "cmesh gateway: --registry %s: %s\n", g->registry,
                rc == -EINVAL ? "not an http:// or https:// URL" : strerror(-rc));
        shared_free(g);
        return 2;
    }
    rc = cm_server_run(&op->server, &svc);
    gw_follow_stop(g->follow);
    g->follow = NULL;
    shared_free(g);
    return rc < 0 ? 1 : 0;
}
