/* control/up.c: `cmesh up` and `cmesh down`. up loads the spec, takes the state
 * directory's lock, optionally detaches, becomes a child subreaper and runs the control
 * API with core/server (one worker: its loop is the control plane's only loop); the
 * worker's init wires registry, probes' client, supervisor and rollouts on that loop.
 * Ctrl-C and SIGTERM mean a graceful down; SIGHUP (or POST /v1/reload) re-reads the file
 * and applies the difference, as nginx and HAProxy do. down signals the control plane,
 * or, when it is gone, stops the recorded instances itself. */
#include "control/up.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "control/api.h"
#include "control/autoscale.h"
#include "control/defn.h"
#include "control/demand.h"
#include "control/external.h"
#include "control/registry.h"
#include "control/rollout.h"
#include "control/sample.h"
#include "control/spec.h"
#include "control/state.h"
#include "control/supervise.h"
#include "core/client.h"
#include "core/flags.h"
#include "core/json.h"
#include "core/log.h"
#include "core/server.h"

#define WAIT_TIMEOUT_MS 60000 /* --wait's default: long enough for a cold start */

typedef struct ctl {
    cm_api_ctx_t api; /* first: the API handlers' req->state */
    cm_spec_t *spec;
    char self[4096];
    uv_loop_t *loop;
    cm_client_t *client;
    uv_signal_t sig[3];
    uv_timer_t wait_timer;
    int notify_fd;  /* -d: the waiting parent's pipe, -1 once told */
    int wait_ready; /* --wait: tell the parent when everything is ready */
    uint64_t wait_ms;
    int foreground;
    int down_started, down_done, server_gone, finished;
    char *gw_last;       /* the gateway file as last written */
    cm_demand_t *demand; /* the autoscaler's tick (api.autoscale decides) */
    /* specs replaced by a reload: instances still running them point into them, so they
     * live until the end (a reload is rare; each costs one spec) */
    cm_spec_t **retired;
    int nretired;
} ctl_t;

static const char *const sig_names[3] = {"SIGTERM", "SIGINT", "SIGHUP"};
static const int sig_nums[3] = {SIGTERM, SIGINT, SIGHUP};

/* ---------------------------------------------------------------------------------- */
/* Telling the user (or the parent of -d)                                             */
/* ---------------------------------------------------------------------------------- */

static void notify(ctl_t *c, int ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void notify(ctl_t *c, int ok, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(buf, sizeof buf, "%s ", ok ? "ok" : "err");
    vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    if (c->notify_fd >= 0) {
        if (write(c->notify_fd, buf, strlen(buf)) < 0) {
            /* the parent is gone: nobody to tell */
        }
        close(c->notify_fd);
        c->notify_fd = -1;
    }
}

static void banner(ctl_t *c, FILE *out)
{
    const cm_spec_t *s = c->spec;
    fprintf(out, "cmesh is up: %d service%s", s->nsvcs, s->nsvcs == 1 ? "" : "s");
    if (s->has_gateway) {
        const cm_svc_spec_t *g = &s->svcs[s->nsvcs - 1];
        fprintf(out, "; gateway http://%s:%d", g->host, g->port);
    }
    fprintf(out, "; control API http://%s:%d/v1/services; state %s\n", s->control_host,
            s->control_port, s->state_dir);
    fflush(out);
}

/* ---------------------------------------------------------------------------------- */
/* The gateway's file                                                                 */
/* ---------------------------------------------------------------------------------- */

/* The gateway's instances of a service: the supervisor's and those registered by hand.
 * A service scaled to zero has none: the address its first instance will have keeps the
 * file valid (the gateway holds that route's requests until the registry's set comes). */
static int urls_of(const char *service, char ***urls, int *n, void *arg)
{
    ctl_t *c = arg;
    int rc = cm_sup_urls(c->api.sup, service, urls, n);
    if (rc == 0)
        rc = cm_ext_urls(c->api.ext, service, urls, n);
    const cm_svc_spec_t *sp = cm_spec_service(c->spec, service);
    if (rc == 0 && *n == 0 && sp && cm_sup_count(c->api.sup, service) == 0) {
        char buf[300];
        snprintf(buf, sizeof buf, "http://%s:%d", sp->host, sp->port);
        char **l = realloc(*urls, sizeof *l);
        if (!l || !(l[0] = strdup(buf))) {
            free(l ? l : *urls);
            *urls = NULL;
            return -ENOMEM;
        }
        *urls = l;
        *n = 1;
    }
    return rc;
}

/* Writes state/gateway.yaml for the current routing set. It is what a gateway reads
 * when it (re)starts; from then on the gateway follows the registry in memory
 * (--registry, given by supervise.c), so it is not signalled: a SIGHUP would only
 * re-read sets the watch already applied. */
static void write_gateway(ctl_t *c)
{
    if (!c->spec->has_gateway || !c->api.sup)
        return;
    char *yaml = NULL, err[1024];
    if (cm_spec_gateway_yaml(c->spec, urls_of, c, &yaml, err, sizeof err) < 0) {
        cm_log_msg(CM_LOG_ERROR, "control: gateway config not updated: %s", err);
        return;
    }
    if (c->gw_last && strcmp(c->gw_last, yaml) == 0) {
        free(yaml);
        return;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/gateway.yaml", c->spec->state_dir);
    int rc = cm_state_write_atomic(path, yaml, strlen(yaml));
    if (rc < 0) {
        cm_log_msg(CM_LOG_ERROR, "control: cannot write %s: %s", path, strerror(-rc));
        free(yaml);
        return;
    }
    free(c->gw_last);
    c->gw_last = yaml;
}

static void on_routing(void *arg, const char *service)
{
    ctl_t *c = arg;
    if (strcmp(service, CM_SPEC_GATEWAY) != 0)
        write_gateway(c);
}

static void on_all_ready(void *arg)
{
    ctl_t *c = arg;
    if (c->wait_ready) {
        uv_timer_stop(&c->wait_timer);
        notify(c, 1, "every instance is ready");
    }
    if (c->foreground) {
        printf("cmesh: every instance is ready\n");
        fflush(stdout);
    }
}

/* --wait ran out: name what is not ready, and why (its state, last exit, last line). */
static void on_wait_timeout(uv_timer_t *t)
{
    ctl_t *c = t->data;
    char msg[1800] = "", *p = msg;
    for (int i = 0; i < c->spec->nsvcs; i++) {
        const char *name = c->spec->svcs[i].name;
        int n = cm_registry_ninstances(c->api.reg, name);
        for (int j = 0; j < n; j++) {
            const cm_reg_inst_t *in = cm_registry_instance(c->api.reg, name, j);
            if (in->state == CM_INST_READY || p - msg > 1500)
                continue;
            /* the instance's own last words, not the supervisor's notes about it */
            char *tail = cm_sup_log_tail(c->api.sup, name, in->index, 8);
            const char *why = "";
            for (char *l = tail ? strtok(tail, "\n") : NULL; l; l = strtok(NULL, "\n"))
                if (!strstr(l, " cmesh: "))
                    why = l;
            p += snprintf(p, sizeof msg - (size_t)(p - msg), "\n  %s/%d %s (last exit %d): %.200s",
                          name, in->index, cm_inst_state_name(in->state), in->last_exit, why);
            free(tail);
        }
    }
    notify(c, 0,
           "not every instance became ready within %llu ms (the system stays up; "
           "cmesh down stops it):%s",
           (unsigned long long)c->wait_ms, msg);
}

/* ---------------------------------------------------------------------------------- */
/* Down                                                                               */
/* ---------------------------------------------------------------------------------- */

static void maybe_finish(ctl_t *c)
{
    if (!c->down_done || !c->server_gone || c->finished)
        return;
    c->finished = 1;
    for (int i = 0; i < 3; i++)
        uv_close((uv_handle_t *)&c->sig[i], NULL);
    uv_close((uv_handle_t *)&c->wait_timer, NULL);
    cm_demand_free(c->demand); /* before the client: its cancelled scrapes find it */
    cm_rollouts_free(c->api.ro);
    c->api.ro = NULL;
    cm_sup_free(c->api.sup);
    cm_ext_free(c->api.ext);
    cm_registry_free(c->api.reg);
    cm_history_free(c->api.history);
    cm_acks_free(c->api.acks);
    cm_client_free(c->client);
    cm_autoscale_free(c->api.autoscale);
    cm_events_free(c->api.events);
    c->demand = NULL;
    c->api.autoscale = NULL;
    c->api.events = NULL;
    c->api.history = NULL;
    c->api.acks = NULL;
    c->api.sup = NULL;
    c->api.reg = NULL;
}

static void on_down_done(void *arg)
{
    ctl_t *c = arg;
    c->down_done = 1;
    cm_state_clear_scale(c->spec->state_dir); /* the next up starts from the file */
    cm_log_msg(CM_LOG_INFO, "control: every instance stopped");
    maybe_finish(c);
}

static void start_down(ctl_t *c)
{
    if (c->down_started)
        return;
    c->down_started = 1;
    c->api.stopping = 1;
    uv_timer_stop(&c->wait_timer);
    cm_demand_stop(c->demand); /* no scale decisions while everything stops */
    if (c->api.ro)
        cm_rollouts_shutdown(c->api.ro);
    cm_registry_release_watchers(c->api.reg); /* parked watches answer now */
    cm_sup_stop_all(c->api.sup, on_down_done, c);
}

/* ---------------------------------------------------------------------------------- */
/* Reload                                                                             */
/* ---------------------------------------------------------------------------------- */

static int ensure_key(const char *path);
static int placeholder_urls(const char *service, char ***urls, int *n, void *arg);

static void json_list_add(cm_buf_t *b, int *first, const char *text)
{
    cm_buf_append_str(b, *first ? "" : ",");
    cm_json_str(b, text, strlen(text));
    *first = 0;
}

/* The whole file is checked before anything changes: a bad one keeps the running spec. */
static int reload_refuse(ctl_t *c, cm_buf_t *out, int status, const char *err)
{
    cm_log_msg(CM_LOG_ERROR, "control: reload refused, the running spec stays: %s", err);
    cm_events_add(c->api.events, "reload", "", -1, NULL, "refused, the running spec stays: %s",
                  err);
    cm_buf_append_str(out, "{\"error\":");
    cm_json_str(out, err, strlen(err));
    cm_buf_append_str(out, ",\"errors\":[");
    /* one FILE:LINE message per line of err */
    int first = 1;
    for (const char *p = err; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len) {
            cm_buf_append_str(out, first ? "" : ",");
            cm_json_str(out, p, len);
            first = 0;
        }
        p += len + (nl ? 1 : 0);
    }
    cm_buf_append_str(out, "]}");
    return status;
}

/* Re-reads the file and applies the difference (see cm_defn_diff): a changed definition
 * is rolled out, a changed count scaled, new services started, removed ones stopped, a
 * changed gateway: section rewritten and the gateway sent SIGHUP (it reloads in place,
 * keeping its connections). The control address and state dir cannot move under a
 * running system: a change of them is warned about and the running ones kept. */
static int do_reload(void *arg, cm_buf_t *out)
{
    ctl_t *c = arg;
    char err[4096];
    cm_spec_t *ns;
    if (c->down_started)
        return reload_refuse(c, out, 409, "the system is going down");
    if (cm_spec_load(c->spec->path, &ns, err, sizeof err) < 0)
        return reload_refuse(c, out, 422, err);
    char warn[4][512];
    int nwarn = 0;
    if (strcmp(ns->control_host, c->spec->control_host) != 0 ||
        ns->control_port != c->spec->control_port) {
        snprintf(
            warn[nwarn++], sizeof warn[0],
            "control.listen changed to %.200s:%d: kept %.200s:%d (cmesh down and up to move it)",
            ns->control_host, ns->control_port, c->spec->control_host, c->spec->control_port);
        snprintf(ns->control_host, sizeof ns->control_host, "%s", c->spec->control_host);
        ns->control_port = c->spec->control_port;
    }
    if (strcmp(ns->state_dir, c->spec->state_dir) != 0) {
        snprintf(warn[nwarn++], sizeof warn[0],
                 "control.state_dir changed to %.200s: kept %.200s (cmesh down and up to move it)",
                 ns->state_dir, c->spec->state_dir);
        snprintf(ns->state_dir, sizeof ns->state_dir, "%s", c->spec->state_dir);
    }
    int rc = 0;
    char *yaml = NULL;
    if (ns->has_gateway != c->spec->has_gateway)
        snprintf(err, sizeof err,
                 "%s: adding or removing the gateway: section needs cmesh down "
                 "and cmesh up",
                 ns->path),
            rc = -EINVAL;
    else if (ns->has_gateway &&
             (rc = cm_spec_gateway_yaml(ns, placeholder_urls, ns, &yaml, err, sizeof err)) == 0 &&
             ns->key_file[0] && (rc = ensure_key(ns->key_file)) < 0)
        snprintf(err, sizeof err, "cannot create the gateway key %s: %s", ns->key_file,
                 strerror(-rc));
    free(yaml);
    cm_spec_t **r = rc == 0 ? realloc(c->retired, sizeof *r * (size_t)(c->nretired + 1)) : NULL;
    if (rc == 0 && !r)
        snprintf(err, sizeof err, "out of memory"), rc = -ENOMEM;
    if (rc < 0) {
        cm_spec_free(ns);
        return reload_refuse(c, out, rc == -ENOMEM ? 503 : 422, err);
    }
    c->retired = r;
    cm_defn_diff_t rows[CM_SPEC_MAX_SVCS * 2];
    int gw_changed;
    int nrows = cm_defn_diff(c->spec, ns, rows, &gw_changed);
    if ((rc = cm_sup_respec(c->api.sup, ns)) < 0) {
        /* only -ENOSPC can come this far: more services than the supervisor holds */
        snprintf(err, sizeof err, "cannot apply: %s", strerror(-rc));
        c->retired[c->nretired++] = ns; /* respec may have pointed at it */
        return reload_refuse(c, out, 500, err);
    }
    c->retired[c->nretired++] = c->spec;
    c->spec = ns;
    c->api.spec = ns;
    /* the autoscaler and its tick follow (the old spec stays alive in c->retired) */
    if ((rc = cm_autoscale_respec(c->api.autoscale, ns)) < 0 ||
        (rc = cm_demand_respec(c->demand, ns)) < 0)
        snprintf(warn[nwarn++], sizeof warn[0],
                 "autoscale: sections not applied (%s): the old ones are kept", strerror(-rc));
    for (int i = 0; i < nwarn; i++) {
        cm_log_msg(CM_LOG_WARN, "control: reload: %s", warn[i]);
        cm_events_add(c->api.events, "reload", "", -1, NULL, "%s", warn[i]);
    }
    cm_buf_append_str(out, "{\"changes\":[");
    int first = 1, nchanged = 0;
    for (int i = 0; i < nrows; i++) {
        cm_defn_diff_t *d = &rows[i];
        char what[256];
        snprintf(what, sizeof what, "%s", cm_defn_change_name(d->change));
        if (d->change == CM_DEFN_SAME)
            continue;
        if (d->change == CM_DEFN_DEFINITION && strcmp(d->service, CM_SPEC_GATEWAY) == 0) {
            /* one instance owning its port cannot surge: restarted in place */
            cm_sup_restart(c->api.sup, d->service, 0);
            snprintf(what, sizeof what, "restarted (its listen address or command changed)");
        } else if (d->change == CM_DEFN_DEFINITION) {
            int r2 = cm_rollouts_start(c->api.ro, d->service);
            if (r2 == -EBUSY)
                snprintf(what, sizeof what,
                         "rolled out (the rollout in progress goes on to the "
                         "new definition)");
        }
        nchanged++;
        cm_events_add(c->api.events, "reload", d->service, -1, NULL, "reload: %s %s", d->service,
                      what);
        cm_buf_append_str(&*out, first ? "{\"service\":" : ",{\"service\":");
        first = 0;
        cm_json_str(out, d->service, strlen(d->service));
        cm_buf_append_str(out, ",\"change\":");
        cm_json_str(out, what, strlen(what));
        cm_buf_append_str(out, "}");
    }
    cm_buf_appendf(out, "],\"gateway\":\"%s\",\"warnings\":[",
                   gw_changed ? "reloaded" : "unchanged");
    if (gw_changed) {
        write_gateway(c); /* the file it reads on SIGHUP */
        int pid = cm_sup_pid(c->api.sup, CM_SPEC_GATEWAY, 0);
        if (pid > 0)
            kill(pid, SIGHUP);
        cm_events_add(c->api.events, "reload", CM_SPEC_GATEWAY, -1, NULL,
                      "reload: the gateway: section changed: file rewritten, SIGHUP to pid %d",
                      pid);
    }
    first = 1;
    for (int i = 0; i < nwarn; i++)
        json_list_add(out, &first, warn[i]);
    cm_buf_append_str(out, "]}");
    cm_log_msg(CM_LOG_INFO, "control: reloaded %s: %d service%s changed, gateway %s", ns->path,
               nchanged, nchanged == 1 ? "" : "s", gw_changed ? "reloaded" : "unchanged");
    cm_events_add(c->api.events, "reload", "", -1, NULL, "reloaded %s: %d service%s changed%s",
                  ns->path, nchanged, nchanged == 1 ? "" : "s",
                  gw_changed ? ", gateway reloaded" : "");
    return 200;
}

static void on_signal(uv_signal_t *h, int signum)
{
    ctl_t *c = h->data;
    if (signum == SIGHUP) { /* reload, as nginx, HAProxy and Consul do */
        cm_log_msg(CM_LOG_INFO, "control: SIGHUP received: reloading %s", c->spec->path);
        cm_buf_t b = {0};
        do_reload(c, &b); /* its result is logged and in the events */
        cm_buf_free(&b);
        return;
    }
    for (int i = 0; i < 3; i++)
        if (sig_nums[i] == signum)
            cm_log_msg(CM_LOG_INFO, "control: %s received: stopping everything gracefully",
                       sig_names[i]);
    start_down(c);
}

/* ---------------------------------------------------------------------------------- */
/* The API server's worker: the control plane's loop                                  */
/* ---------------------------------------------------------------------------------- */

/* The supervisor's 2 s round: a point per service for the dashboard's charts. */
static void on_tick(void *arg)
{
    ctl_t *c = arg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    cm_sample_round(c->api.history, c->spec, c->api.sup, c->api.reg,
                    (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* The autoscaler's hooks: the loop's clock and the supervisor's count. */
static uint64_t as_now(void *arg)
{
    return uv_now(((ctl_t *)arg)->loop);
}

static int as_scale(void *arg, const char *service, int count)
{
    return cm_sup_scale(((ctl_t *)arg)->api.sup, service, count);
}

static int as_count(void *arg, const char *service)
{
    return cm_sup_count(((ctl_t *)arg)->api.sup, service);
}

/* A running rollout holds the count (it fails on a changed one). */
static int as_rolling(void *arg, const char *service)
{
    return cm_rollouts_running(((ctl_t *)arg)->api.ro, service);
}

static int worker_init(uv_loop_t *loop, void *config, void **state)
{
    ctl_t *c = config;
    c->loop = loop;
    uint64_t epoch;
    int rc = cm_state_next_epoch(c->spec->state_dir, &epoch);
    if (rc < 0) {
        cm_log_msg(CM_LOG_ERROR, "control: %s/epoch: %s", c->spec->state_dir, strerror(-rc));
        return rc;
    }
    if ((rc = cm_registry_new(loop, epoch, &c->api.reg)) < 0 ||
        (rc = cm_client_new(loop, &c->client)) < 0)
        return rc;
    if ((rc = cm_ext_new(loop, c->api.reg, on_routing, c, &c->api.ext)) < 0 ||
        (rc = cm_events_new(&c->api.events)) < 0 || (rc = cm_history_new(&c->api.history)) < 0 ||
        (rc = cm_acks_new(&c->api.acks)) < 0)
        return rc;
    cm_sup_hooks_t hooks = {.on_routing = on_routing,
                            .on_all_ready = on_all_ready,
                            .on_tick = on_tick,
                            .arg = c,
                            .events = c->api.events,
                            .acks = c->api.acks};
    if ((rc = cm_sup_new(loop, c->spec, c->api.reg, c->client, c->self, &hooks, &c->api.sup)) < 0 ||
        (rc = cm_rollouts_new(loop, c->api.sup, c->api.reg, c->api.events, &c->api.ro)) < 0)
        return rc;
    c->api.reload = do_reload;
    c->api.reload_arg = c;
    cm_autoscale_hooks_t ah = {.now_ms = as_now,
                               .scale = as_scale,
                               .count = as_count,
                               .rolling = as_rolling,
                               .arg = c,
                               .events = c->api.events};
    if ((rc = cm_autoscale_new(c->spec, &ah, &c->api.autoscale)) < 0 ||
        (rc = cm_demand_new(loop, c->spec, c->api.reg, c->api.sup, c->client, c->api.autoscale,
                            &c->demand)) < 0)
        return rc;
    for (int i = 0; i < 3; i++) {
        uv_signal_init(loop, &c->sig[i]);
        c->sig[i].data = c;
        uv_signal_start(&c->sig[i], on_signal, sig_nums[i]);
    }
    uv_timer_init(loop, &c->wait_timer);
    c->wait_timer.data = c;
    write_gateway(c); /* before the gateway starts: it reads the file at once */
    if ((rc = cm_sup_start(c->api.sup)) < 0) {
        cm_log_msg(CM_LOG_ERROR, "control: cannot start: %s", strerror(-rc));
        return rc;
    }
    cm_demand_start(c->demand);
    if (c->wait_ready && c->notify_fd >= 0)
        uv_timer_start(&c->wait_timer, on_wait_timeout, c->wait_ms, 0);
    else if (c->notify_fd >= 0)
        notify(c, 1, "started");
    if (c->foreground)
        banner(c, stdout);
    *state = c;
    return 0;
}

static void worker_free(void *state)
{
    ctl_t *c = state;
    c->server_gone = 1;
    start_down(c);
    maybe_finish(c);
}

/* ---------------------------------------------------------------------------------- */
/* cmesh up                                                                           */
/* ---------------------------------------------------------------------------------- */

const char *cm_up_config_arg(int *argc, char **argv)
{
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < *argc) {
            const char *v = argv[i + 1];
            memmove(&argv[i], &argv[i + 2], sizeof *argv * (size_t)(*argc - i - 2));
            *argc -= 2;
            return v;
        }
        if (strncmp(argv[i], "--config=", 9) == 0) {
            const char *v = argv[i] + 9;
            memmove(&argv[i], &argv[i + 1], sizeof *argv * (size_t)(*argc - i - 1));
            *argc -= 1;
            return v;
        }
    }
    const char *e = getenv("CMESH_CONFIG");
    return e && e[0] ? e : "cmesh.yaml";
}

/* An HS256 secret for the shipped system's gateway, made on first start so that no key
 * is ever committed: 32 random bytes as 64 hex characters, mode 0600. */
static int ensure_key(const char *path)
{
    if (access(path, F_OK) == 0)
        return 0;
    unsigned char raw[32];
    if (getrandom(raw, sizeof raw, 0) != sizeof raw)
        return -EIO;
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        cm_state_init(dir); /* creates the directory (and harmless subdirectories) */
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int ok = write(fd, hex, 64) == 64;
    close(fd);
    return ok ? 0 : -EIO;
}

static int placeholder_urls(const char *service, char ***urls, int *n, void *arg)
{
    const cm_spec_t *s = arg;
    const cm_svc_spec_t *sp = cm_spec_service(s, service);
    int cnt = sp && sp->instances > 0 ? sp->instances : 1;
    char **l = calloc((size_t)cnt, sizeof *l);
    if (!l)
        return -ENOMEM;
    for (int i = 0; i < cnt; i++) {
        char buf[300];
        snprintf(buf, sizeof buf, "http://%s:%d", sp ? sp->host : "127.0.0.1",
                 sp ? sp->port + i : 1);
        l[i] = strdup(buf);
    }
    *urls = l, *n = cnt;
    return 0;
}

static const char up_help[] =
    "usage: cmesh up [--config FILE] [-d] [--wait] [--wait-timeout DUR]\n"
    "\n"
    "Runs the whole system of FILE (default ./cmesh.yaml, or $CMESH_CONFIG): every\n"
    "service's instances and the gateway, supervised (restarted with backoff, probed,\n"
    "replaced when hung), registered and served on the control API. Runs in the\n"
    "foreground: Ctrl-C or SIGTERM stops everything gracefully; SIGHUP re-reads FILE\n"
    "and applies the difference (as cmesh reload).\n"
    "\n"
    "  --config FILE       the system's spec (default cmesh.yaml)\n"
    "  -d, --detach        run in the background; return once everything was started\n"
    "  --wait              detach and return only when every instance is ready; exit 1\n"
    "                      naming what is not, after --wait-timeout\n"
    "  --wait-timeout DUR  default 60s\n"
    "\n"
    "Exit status: 0 stopped cleanly (or detached), 1 could not start, 2 bad spec or flags.\n";

static int parse_up(int argc, char **argv, int *detach, int *wait, uint64_t *wait_ms)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(up_help, stdout);
            return 1;
        } else if (strcmp(argv[i], "-d") == 0 || strcmp(argv[i], "--detach") == 0)
            *detach = 1;
        else if (strcmp(argv[i], "--wait") == 0)
            *wait = *detach = 1; /* as docker compose: --wait implies detached */
        else if (strcmp(argv[i], "--wait-timeout") == 0 && i + 1 < argc) {
            if (cm_parse_duration_ms(argv[++i], wait_ms) < 0 || *wait_ms == 0) {
                fprintf(stderr, "cmesh up: --wait-timeout '%s' is not a duration like 60s\n",
                        argv[i]);
                return -EINVAL;
            }
        } else {
            fprintf(stderr, "cmesh up: unknown argument '%s'; see cmesh up --help\n", argv[i]);
            return -EINVAL;
        }
    }
    return 0;
}

/* -d: the parent waits on a pipe for the child's first word ("ok ..." / "err ...").
 * Returns in the child (0) or exits in the parent. */
static int detach(ctl_t *c, uint64_t wait_ms)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        close(fds[0]);
        setsid();
        char p[4096];
        snprintf(p, sizeof p, "%s/control.log", c->spec->state_dir);
        int log = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null >= 0)
            dup2(null, 0);
        if (log >= 0) {
            dup2(log, 1);
            dup2(log, 2);
        }
        c->notify_fd = fds[1];
        return 0;
    }
    close(fds[1]);
    char buf[2048];
    size_t n = 0;
    struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
    /* the child answers within --wait-timeout; a margin for its own start */
    int timeout = (int)(wait_ms + 30000);
    while (n < sizeof buf - 1 && poll(&pfd, 1, timeout) > 0) {
        ssize_t r = read(fds[0], buf + n, sizeof buf - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    if (strncmp(buf, "ok ", 3) == 0) {
        printf("cmesh up: %s (control plane pid %d)\n", buf + 3, (int)pid);
        banner(c, stdout);
        exit(0);
    }
    if (strncmp(buf, "err ", 4) == 0)
        fprintf(stderr, "cmesh up: %s\n", buf + 4);
    else
        fprintf(stderr, "cmesh up: the control plane exited at start; see %s/control.log\n",
                c->spec->state_dir);
    exit(1);
}

int cm_up_main(int argc, char **argv)
{
    const char *config = cm_up_config_arg(&argc, argv);
    int det = 0, wait = 0;
    uint64_t wait_ms = WAIT_TIMEOUT_MS;
    int rc = parse_up(argc, argv, &det, &wait, &wait_ms);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    char err[2048];
    cm_spec_t *spec;
    if ((rc = cm_spec_load(config, &spec, err, sizeof err)) < 0) {
        fprintf(stderr, "cmesh up: %s\n", err);
        return 2;
    }
    if ((rc = cm_state_init(spec->state_dir)) < 0) {
        fprintf(stderr, "cmesh up: cannot create the state directory %s: %s\n", spec->state_dir,
                strerror(-rc));
        cm_spec_free(spec);
        return 1;
    }
    if (spec->key_file[0] && (rc = ensure_key(spec->key_file)) < 0) {
        fprintf(stderr, "cmesh up: cannot create the gateway key %s: %s\n", spec->key_file,
                strerror(-rc));
        cm_spec_free(spec);
        return 1;
    }
    char *yaml = NULL;
    if (spec->has_gateway &&
        cm_spec_gateway_yaml(spec, placeholder_urls, spec, &yaml, err, sizeof err) < 0) {
        fprintf(stderr, "cmesh up: %s\n", err);
        cm_spec_free(spec);
        return 2;
    }
    free(yaml);
    int lockfd;
    if ((rc = cm_state_lock(spec->state_dir, &lockfd)) < 0) {
        int pid = 0;
        uint64_t st;
        cm_state_get_control(spec->state_dir, &pid, &st);
        if (rc == -EWOULDBLOCK)
            fprintf(stderr,
                    "cmesh up: the system is already up (control plane pid %d holds %s): its "
                    "control address %s:%d is already in use; cmesh down stops it\n",
                    pid, spec->state_dir, spec->control_host, spec->control_port);
        else
            fprintf(stderr, "cmesh up: cannot lock %s: %s\n", spec->state_dir, strerror(-rc));
        cm_spec_free(spec);
        return 1;
    }
    static ctl_t c; /* static: a -d child's parent exits without returning */
    memset(&c, 0, sizeof c);
    c.spec = spec;
    c.api.spec = spec;
    c.notify_fd = -1;
    c.wait_ready = wait;
    c.wait_ms = wait_ms;
    c.foreground = !det;
    size_t sz = sizeof c.self;
    if (uv_exepath(c.self, &sz) < 0) {
        fprintf(stderr, "cmesh up: cannot find its own executable\n");
        cm_spec_free(spec);
        return 1;
    }
    if (det && (rc = detach(&c, wait_ms)) < 0) {
        fprintf(stderr, "cmesh up: cannot detach: %s\n", strerror(-rc));
        cm_spec_free(spec);
        return 1;
    }
    /* what instances fork and leave behind becomes ours to reap, not init's */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    uint64_t ticks = 0;
    cm_proc_start_ticks(getpid(), &ticks);
    cm_state_put_control(spec->state_dir, getpid(), ticks);

    cm_server_opts_t o;
    cm_server_opts_default(&o);
    snprintf(o.host, sizeof o.host, "%s", spec->control_host);
    o.port = spec->control_port;
    o.workers = 1;             /* the control plane is one loop */
    o.drain_timeout_ms = 2000; /* parked watches are answered at once on down */
    snprintf(o.access_log, sizeof o.access_log, "off");
    cm_service_t svc = {
        .name = "control",
        .routes = cm_api_routes,
        .nroutes = cm_api_nroutes,
        .worker_init = worker_init,
        .worker_free = worker_free,
        .config = &c,
    };
    rc = cm_server_run(&o, &svc);
    char p[4096];
    snprintf(p, sizeof p, "%s/control.json", spec->state_dir);
    unlink(p);
    if (rc < 0) {
        notify(&c, 0, "cannot run the control API on %s:%d: %s", spec->control_host,
               spec->control_port, rc == -EADDRINUSE ? "address already in use" : strerror(-rc));
        fprintf(stderr, "cmesh up: cannot run the control API on %s:%d: %s\n", spec->control_host,
                spec->control_port, rc == -EADDRINUSE ? "address already in use" : strerror(-rc));
    } else if (c.foreground) {
        printf("cmesh: down\n");
    }
    free(c.gw_last);
    cm_spec_free(c.spec); /* the newest (a reload replaced spec) */
    for (int i = 0; i < c.nretired; i++)
        cm_spec_free(c.retired[i]);
    free(c.retired);
    close(lockfd);
    return rc < 0 ? 1 : 0;
}

/* ---------------------------------------------------------------------------------- */
/* cmesh down                                                                         */
/* ---------------------------------------------------------------------------------- */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Stops recorded instances of one service: TERM (+CONT) to each group, KILL to what is
 * left after its drain timeout. */
static int stop_recorded(const cm_spec_t *s, const char *service, cm_inst_rec_t *recs, int n)
{
    const cm_svc_spec_t *sp = cm_spec_service(s, service);
    uint64_t drain = sp ? sp->drain_ms : 10000;
    int stopped = 0;
    for (int i = 0; i < n; i++)
        if (strcmp(recs[i].service, service) == 0 &&
            cm_proc_same(recs[i].pid, recs[i].start_ticks)) {
            kill(-recs[i].pid, SIGTERM);
            kill(-recs[i].pid, SIGCONT);
            stopped++;
        }
    for (uint64_t waited = 0; stopped && waited < drain; waited += 50) {
        int left = 0;
        for (int i = 0; i < n; i++)
            left += strcmp(recs[i].service, service) == 0 &&
                    cm_proc_same(recs[i].pid, recs[i].start_ticks);
        if (!left)
            break;
        sleep_ms(50);
    }
    for (int i = 0; i < n; i++)
        if (strcmp(recs[i].service, service) == 0) {
            if (cm_proc_same(recs[i].pid, recs[i].start_ticks))
                kill(-recs[i].pid, SIGKILL);
            cm_state_del(s->state_dir, recs[i].service, recs[i].index);
        }
    return stopped;
}

static const char down_help[] =
    "usage: cmesh down [--config FILE]\n"
    "\n"
    "Stops the system of FILE (default ./cmesh.yaml) gracefully: the gateway first, then\n"
    "the services, each out of routing, SIGTERM, SIGKILL after its drain timeout. Works\n"
    "from the state directory also when the control plane is no longer running.\n"
    "Exit status: 0 stopped (or nothing was running), 1 something could not be stopped,\n"
    "2 bad spec or flags.\n";

int cm_down_main(int argc, char **argv)
{
    const char *config = cm_up_config_arg(&argc, argv);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(down_help, stdout);
            return 0;
        }
        fprintf(stderr, "cmesh down: unknown argument '%s'; see cmesh down --help\n", argv[i]);
        return 2;
    }
    char err[2048];
    cm_spec_t *s;
    if (cm_spec_load(config, &s, err, sizeof err) < 0) {
        fprintf(stderr, "cmesh down: %s\n", err);
        return 2;
    }
    int pid = 0;
    uint64_t st = 0;
    uint64_t total = 5000;
    for (int i = 0; i < s->nsvcs; i++)
        total += s->svcs[i].drain_ms;
    if (cm_state_get_control(s->state_dir, &pid, &st) == 0 && cm_proc_same(pid, st)) {
        kill(pid, SIGTERM);
        uint64_t waited = 0;
        while (cm_proc_same(pid, st) && waited < total)
            sleep_ms(50), waited += 50;
        if (!cm_proc_same(pid, st)) {
            printf("cmesh down: stopped (control plane pid %d)\n", pid);
            cm_spec_free(s);
            return 0;
        }
        fprintf(stderr,
                "cmesh down: the control plane (pid %d) did not stop in %llu ms; "
                "killing it and stopping its instances directly\n",
                pid, (unsigned long long)total);
        kill(pid, SIGKILL);
    }
    cm_inst_rec_t *recs;
    int n;
    if (cm_state_list(s->state_dir, &recs, &n) < 0) {
        fprintf(stderr, "cmesh down: cannot read %s/instances\n", s->state_dir);
        cm_spec_free(s);
        return 1;
    }
    int stopped = 0;
    /* the gateway first, then the services from the last to the first (callers first) */
    for (int i = s->nsvcs - 1; i >= 0; i--)
        stopped += stop_recorded(s, s->svcs[i].name, recs, n);
    /* records of services no longer in the file */
    for (int i = 0; i < n; i++)
        if (!cm_spec_service(s, recs[i].service))
            stopped += stop_recorded(s, recs[i].service, recs, n);
    free(recs);
    cm_state_clear_scale(s->state_dir);
    if (stopped)
        printf("cmesh down: stopped %d instance%s (no control plane was running)\n", stopped,
               stopped == 1 ? "" : "s");
    else
        printf("cmesh down: nothing was running\n");
    cm_spec_free(s);
    return 0;
}
