/* control/supervise.c: the supervisor (see supervise.h). One slot per instance with an
 * explicit state (registry.h's cm_inst_state_t):
 *   STARTING  → READY      readiness passed (then liveness starts: a slow start is not
 *                          a dead process, as Kubernetes' startupProbe)
 *   READY    ⇄ CRITICAL    readiness failed / passed again
 *   any running → LEAVING  stop asked (scale, down, rollout, liveness): out of routing,
 *                          not signalled, until every running gateway acknowledged the
 *                          registry index it left at with nothing in flight to it, or
 *                          its drain timeout passed (never a sleep: acks.h)
 *   LEAVING  → DRAINING    SIGTERM (at once when no gateway runs), SIGKILL after the
 *                          drain timeout
 *   DRAINING → STOPPED     exited (or → STARTING again when it was a restart)
 *   running  → BACKOFF     exited unexpectedly; → CRASHLOOP when it keeps doing so
 *   BACKOFF/CRASHLOOP → STARTING when its timer fires
 * Exits come from libuv (our children) or from a pidfd (adopted instances, which are
 * not our children). Orphans that instances leave behind are ours too (subreaper):
 * reaped on SIGCHLD, killed at the end of stop_all. */
#include "control/supervise.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "control/defn.h"
#include "control/load.h"
#include "control/logfile.h"
#include "control/probe.h"
#include "control/reap.h"
#include "control/state.h"
#include "core/json.h"
#include "core/log.h"

extern char **environ;

#define MAINT_MS 2000 /* log size check and orphan reaping */
#define MIN_UP_MS                                                                                  \
    1000 /* without a readiness check, running this long is ready: a process                       \
            that exits at once must not count as up (for --wait) */

typedef enum { AFTER_STOP, AFTER_RESTART } after_t;

typedef struct svc svc_t;
typedef struct inst {
    cm_sup_t *sup;
    svc_t *svc;
    /* what this instance was spawned from: a reload may give svc a new spec while the
     * instance still runs the old one (its port, probes, drain timeout); the old spec
     * outlives it (up.c keeps every spec until the end) */
    const cm_svc_spec_t *spec;
    char def[CM_DEFN_LEN]; /* its definition hash (defn.h); "" unknown (adopted, unrecorded) */
    int index;
    cm_inst_state_t state;
    after_t after; /* DRAINING: what its exit leads to */
    int pid;       /* 0: no process */
    uint64_t start_ticks;
    int64_t started_ms;  /* wall clock */
    uint64_t started_at; /* loop time (ms) of the spawn: how long it ran */
    uv_process_t *proc;  /* our child; freed in its close callback */
    uv_poll_t *poll;     /* adopted: readable pidfd when it exits */
    int pidfd;
    uv_timer_t timer;    /* BACKOFF: restart; LEAVING: drain timeout; DRAINING: SIGKILL */
    uint64_t left_index; /* LEAVING: the service's registry index when it left routing */
    uint64_t left_at;    /* LEAVING: loop time (ms) it left */
    uint32_t acked;      /* LEAVING: gateways (bit = index) whose acknowledgement is logged */
    uint32_t busy;       /* LEAVING: of those, the ones that had requests in flight to it */
    cm_probe_t *ready, *live;
    int restarts, streak, last_exit, adopted;
    int surge; /* started by a rollout past the count: the rollout stops it, not a scale */
    int logfd;
    int scraping;          /* a GET /metrics is outstanding */
    cm_load_sample_t load; /* the last scrape (of this pid) */
    uint64_t load_at;      /* loop time (ms) of that scrape */
    int load_pid;          /* whose it was */
    double rps, p99_ms;    /* between the last two scrapes; p99 -1 = no request */
    cm_load_sample_t win;  /* the same window: its requests, 5xx and latency buckets */
    uint64_t win_ms;       /* its length */
    int has_load;
} inst_t;

struct svc {
    const cm_svc_spec_t *spec; /* the current definition: what new spawns run */
    int count;                 /* desired */
    int removed;               /* gone from the spec at a reload: stopping, never restarted */
    inst_t *inst[CM_SPEC_MAX_INST];
};

struct cm_sup {
    uv_loop_t *loop;
    const cm_spec_t *spec;
    cm_registry_t *reg;
    cm_client_t *client;
    char self[4096];
    cm_sup_hooks_t hooks;
    svc_t svcs[CM_SPEC_MAX_SVCS];
    int nsvcs;
    uv_timer_t maint;
    uv_signal_t sigchld;
    int open_handles; /* closing ones counted down by on_closed; freed at 0 */
    int freeing;
    int all_ready; /* on_all_ready was called and it is still true */
    int stopping;  /* stop_all: stage in progress */
    int stage;     /* 0 = the gateway, then services from the last to the first */
    void (*stop_done)(void *);
    void *stop_arg;
};

static void spawn(inst_t *in);
static void stop(inst_t *in, after_t after);
static void recheck_leaving(cm_sup_t *s);
static int is_gateway(const inst_t *in);
static void forget_ack(inst_t *in);
static void stage_check(cm_sup_t *s);

/* ---------------------------------------------------------------------------------- */
/* Low level: time, backoff, logs, signals                                            */
/* ---------------------------------------------------------------------------------- */

uint64_t cm_sup_backoff_ms(int failures, uint32_t rnd)
{
    if (failures <= 0)
        return 0;
    uint64_t d = CM_SUP_BACKOFF_BASE_MS;
    for (int i = 1; i < failures && d < CM_SUP_BACKOFF_CAP_MS; i++)
        d *= 2;
    if (d > CM_SUP_BACKOFF_CAP_MS)
        d = CM_SUP_BACKOFF_CAP_MS;
    /* equal jitter: restarts of instances that died together spread out */
    return d / 2 + rnd % (d / 2 + 1);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t rnd32(void)
{
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r)
        r = (uint32_t)wall_ms();
    return r;
}

/* One line into the instance's log, so `cmesh logs` shows what the supervisor did. */
static void log_note(inst_t *in, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_note(inst_t *in, const char *fmt, ...)
{
    if (in->logfd < 0)
        return;
    char buf[1024];
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int n = snprintf(buf, sizeof buf, "%s cmesh: %s/%d: ", ts, in->spec->name, in->index);
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 2)
        n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    if (write(in->logfd, buf, (size_t)n) < 0) {
        /* a full disk: the note is lost, the instance runs on */
    }
}

static void log_path(const inst_t *in, char *out, size_t cap)
{
    cm_state_log_path(in->sup->spec->state_dir, in->spec->name, in->index, out, cap);
}

static void rotate(inst_t *in)
{
    char p[4096];
    log_path(in, p, sizeof p);
    cm_logfile_rotate(in->logfd, p, CM_SUP_LOG_MAX, CM_SUP_LOG_KEEP);
}

static int open_log(inst_t *in)
{
    if (in->logfd >= 0)
        return 0;
    char p[4096];
    log_path(in, p, sizeof p);
    in->logfd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    return in->logfd < 0 ? -errno : 0;
}

/* The instance is the leader of its own session and process group: a signal to the
 * group reaches what it forked too (unless that made a session of its own). */
static void signal_group(inst_t *in, int sig)
{
    if (in->pid > 0 && kill(-in->pid, sig) < 0 && errno == ESRCH)
        kill(in->pid, sig);
}

/* ---------------------------------------------------------------------------------- */
/* Publishing                                                                         */
/* ---------------------------------------------------------------------------------- */

static int running(const inst_t *in)
{
    return in->pid > 0;
}

static void publish(inst_t *in)
{
    cm_reg_inst_t r;
    memset(&r, 0, sizeof r); /* the registry compares whole entries */
    r.index = in->index;
    snprintf(r.host, sizeof r.host, "%s", in->spec->host);
    r.port = in->spec->port + in->index;
    r.pid = in->pid;
    r.state = in->state;
    r.restarts = in->restarts;
    r.last_exit = in->last_exit;
    r.started_ms = in->started_ms;
    r.adopted = in->adopted;
    snprintf(r.def, sizeof r.def, "%s", in->def);
    cm_registry_put(in->sup->reg, in->spec->name, &r);
    cm_sup_t *s = in->sup;
    int all = !s->stopping;
    for (int i = 0; all && i < s->nsvcs; i++)
        for (int j = 0; all && j < s->svcs[i].count; j++)
            all = s->svcs[i].inst[j] && s->svcs[i].inst[j]->state == CM_INST_READY;
    if (all && !s->all_ready) {
        s->all_ready = 1;
        if (s->hooks.on_all_ready)
            s->hooks.on_all_ready(s->hooks.arg);
    } else if (!all)
        s->all_ready = 0;
}

static void routing_changed(inst_t *in)
{
    if (in->sup->hooks.on_routing)
        in->sup->hooks.on_routing(in->sup->hooks.arg, in->spec->name);
}

static void set_state(inst_t *in, cm_inst_state_t st)
{
    int was_routed = in->state == CM_INST_READY;
    int changed = in->state != st;
    in->state = st;
    publish(in);
    if (was_routed != (st == CM_INST_READY))
        routing_changed(in);
    if (changed && is_gateway(in))
        recheck_leaving(in->sup); /* a gateway that stops running is not waited for */
}

/* ---------------------------------------------------------------------------------- */
/* Probes                                                                             */
/* ---------------------------------------------------------------------------------- */

static void on_live(cm_probe_t *p, int passing, void *data)
{
    (void)p;
    inst_t *in = data;
    if (passing || !running(in) || in->state == CM_INST_DRAINING)
        return;
    log_note(in, "liveness %s failed %d times: restarting", in->spec->live.path,
             in->spec->live.fall);
    cm_events_add(in->sup->hooks.events, "restart", in->spec->name, in->index, NULL,
                  "liveness %s failed %d times: restarting", in->spec->live.path,
                  in->spec->live.fall);
    in->restarts++;
    stop(in, AFTER_RESTART);
}

static void on_ready(cm_probe_t *p, int passing, void *data)
{
    (void)p;
    inst_t *in = data;
    if (!running(in) || in->state == CM_INST_DRAINING)
        return;
    if (passing) {
        if (in->streak > 0 && uv_now(in->sup->loop) - in->started_at >= CM_SUP_STABLE_MS)
            in->streak = 0;
        set_state(in, CM_INST_READY);
        const cm_svc_spec_t *sp = in->spec;
        if (!in->live && sp->live.path[0])
            cm_probe_new(in->sup->loop, in->sup->client, &sp->live, sp->host, sp->port + in->index,
                         1, on_live, in, &in->live);
    } else if (in->state == CM_INST_READY) {
        log_note(in, "readiness %s failed: out of routing", in->spec->ready.path);
        set_state(in, CM_INST_CRITICAL);
    }
}

static void on_min_up(uv_timer_t *t)
{
    inst_t *in = t->data;
    if (!running(in) || in->state != CM_INST_STARTING)
        return;
    const cm_svc_spec_t *sp = in->spec;
    set_state(in, CM_INST_READY);
    if (sp->live.path[0])
        cm_probe_new(in->sup->loop, in->sup->client, &sp->live, sp->host, sp->port + in->index, 1,
                     on_live, in, &in->live);
}

static void probes_start(inst_t *in)
{
    const cm_svc_spec_t *sp = in->spec;
    if (sp->ready.path[0])
        cm_probe_new(in->sup->loop, in->sup->client, &sp->ready, sp->host, sp->port + in->index, 0,
                     on_ready, in, &in->ready);
    else /* no readiness check: still running after MIN_UP_MS is ready */
        uv_timer_start(&in->timer, on_min_up, in->adopted ? 0 : MIN_UP_MS, 0);
}

static void probes_stop(inst_t *in)
{
    cm_probe_free(in->ready);
    cm_probe_free(in->live);
    in->ready = in->live = NULL;
}

/* ---------------------------------------------------------------------------------- */
/* Exits                                                                              */
/* ---------------------------------------------------------------------------------- */

static void on_restart_timer(uv_timer_t *t)
{
    inst_t *in = t->data;
    if (!running(in) && (in->state == CM_INST_BACKOFF || in->state == CM_INST_CRASHLOOP))
        spawn(in);
}

static void inst_exited(inst_t *in, int code)
{
    cm_sup_t *s = in->sup;
    /* whatever the instance forked into its group goes with it */
    signal_group(in, SIGKILL);
    probes_stop(in);
    uv_timer_stop(&in->timer);
    cm_state_del(s->spec->state_dir, in->spec->name, in->index);
    int was_draining = in->state == CM_INST_DRAINING || in->state == CM_INST_LEAVING;
    if (is_gateway(in))
        forget_ack(in); /* its acknowledgements die with it */
    uint64_t ran = uv_now(s->loop) - in->started_at;
    in->pid = 0;
    in->last_exit = code;
    in->adopted = 0;
    if (code >= 128)
        log_note(in, "exited on signal %d", code - 128);
    else if (code >= 0)
        log_note(in, "exited with status %d", code);
    else
        log_note(in, "exited");
    if (was_draining && in->after == AFTER_RESTART && !s->stopping) {
        spawn(in);
        return;
    }
    if (was_draining || s->stopping || in->index >= in->svc->count) {
        set_state(in, CM_INST_STOPPED);
        if (in->index >= in->svc->count)
            cm_registry_remove(s->reg, in->spec->name, in->index);
        if (s->stopping)
            stage_check(s);
        return;
    }
    /* unexpected: at once the first time, then backoff; a stable run starts over */
    if (ran >= CM_SUP_STABLE_MS)
        in->streak = 0;
    uint64_t delay = cm_sup_backoff_ms(in->streak, rnd32());
    in->streak++;
    in->restarts++;
    log_note(in, "restarting in %llu ms (restart %d)", (unsigned long long)delay, in->restarts);
    cm_events_add(s->hooks.events, "restart", in->spec->name, in->index, NULL,
                  "exited (status %d): restarting in %llu ms (restart %d)", in->last_exit,
                  (unsigned long long)delay, in->restarts);
    set_state(in, in->streak >= 3 ? CM_INST_CRASHLOOP : CM_INST_BACKOFF);
    uv_timer_start(&in->timer, on_restart_timer, delay, 0);
}

static void handle_gone(cm_sup_t *s)
{
    s->open_handles--;
    if (s->freeing && s->open_handles == 0)
        free(s);
}

/* For handles allocated on their own (processes, polls): data is the supervisor. */
static void on_handle_closed(uv_handle_t *h)
{
    cm_sup_t *s = h->data;
    free(h);
    handle_gone(s);
}

/* For a slot's embedded timer: the slot goes with it. */
static void on_slot_closed(uv_handle_t *h)
{
    inst_t *in = h->data;
    cm_sup_t *s = in->sup;
    free(in);
    handle_gone(s);
}

/* For the handles embedded in the supervisor itself. */
static void on_own_closed(uv_handle_t *h)
{
    handle_gone(h->data);
}

static void on_proc_exit(uv_process_t *p, int64_t status, int sig)
{
    inst_t *in = p->data;
    in->proc = NULL;
    p->data = in->sup;
    uv_close((uv_handle_t *)p, on_handle_closed);
    inst_exited(in, sig ? 128 + sig : (int)status);
}

static void close_poll(inst_t *in)
{
    if (!in->poll)
        return;
    uv_poll_stop(in->poll);
    in->poll->data = in->sup;
    uv_close((uv_handle_t *)in->poll, on_handle_closed);
    in->poll = NULL;
    close(in->pidfd);
    in->pidfd = -1;
}

static void on_pidfd(uv_poll_t *p, int status, int events)
{
    (void)status, (void)events;
    inst_t *in = p->data;
    close_poll(in);
    inst_exited(in, -1); /* not our child: its status went to whoever reaps it */
}

/* ---------------------------------------------------------------------------------- */
/* Spawning and adopting                                                              */
/* ---------------------------------------------------------------------------------- */

static int control_url(const cm_sup_t *s, char *out, size_t cap)
{
    const char *h = s->spec->control_host;
    int v6 = strchr(h, ':') != NULL;
    int n = snprintf(out, cap, "http://%s%s%s:%d", v6 ? "[" : "", h, v6 ? "]" : "",
                     s->spec->control_port);
    return n < 0 || (size_t)n >= cap ? -EINVAL : 0;
}

static int url_of(const char *service, int index, char *out, size_t cap, void *arg)
{
    cm_sup_t *s = arg;
    if (!service[0]) /* {registry}: the control API, which serves the registry */
        return control_url(s, out, cap);
    for (int i = 0; i < s->nsvcs; i++) {
        const svc_t *v = &s->svcs[i];
        if (strcmp(v->spec->name, service) != 0)
            continue;
        /* instance i of a caller talks to instance i mod n of the service it calls:
         * callers spread over the callees until the registry watch replaces this */
        int n = v->count > 0 ? v->count : 1;
        snprintf(out, cap, "http://%s:%d", v->spec->host, v->spec->port + index % n);
        return 0;
    }
    return -ENOENT;
}

static int has_listen_placeholder(const cm_svc_spec_t *sp)
{
    for (int i = 0; i < sp->nargs; i++)
        if (strstr(sp->args[i], "{addr}") || strstr(sp->args[i], "{port}"))
            return 1;
    return 0;
}

/* argv and envp of one instance, in one allocation each (freed by the caller). */
static int build_argv(inst_t *in, char ***argv_out, char ***env_out)
{
    cm_sup_t *s = in->sup;
    const cm_svc_spec_t *sp = in->spec;
    int n = 0, cap = sp->nargs + 8;
    char **argv = calloc((size_t)cap, sizeof *argv);
    int nenv = 0;
    while (environ[nenv])
        nenv++;
    char **env = calloc((size_t)(nenv + sp->nenv + 4), sizeof *env);
    if (!argv || !env) {
        free(argv);
        free(env);
        return -ENOMEM;
    }
    char buf[4096];
    if (sp->self) {
        argv[n++] = strdup(s->self);
        argv[n++] = strdup(sp->command);
        if (strcmp(sp->name, CM_SPEC_GATEWAY) == 0) {
            argv[n++] = strdup("--config");
            snprintf(buf, sizeof buf, "%s/gateway.yaml", s->spec->state_dir);
            argv[n++] = strdup(buf);
            /* the file gives the first sets; the registry watch keeps them current in
             * memory, also while this control plane is away (static stability) */
            if (control_url(s, buf, sizeof buf) == 0) {
                argv[n++] = strdup("--registry");
                argv[n++] = strdup(buf);
            }
        } else if (!has_listen_placeholder(sp)) {
            argv[n++] = strdup("--listen");
            snprintf(buf, sizeof buf, "%s:%d", sp->host, sp->port + in->index);
            argv[n++] = strdup(buf);
        }
    } else
        argv[n++] = strdup(sp->command);
    int rc = 0;
    for (int i = 0; i < sp->nargs && rc == 0; i++) {
        rc = cm_spec_expand(sp, in->index, sp->args[i], url_of, s, buf, sizeof buf);
        argv[n++] = strdup(buf);
    }
    int e = 0;
    for (int i = 0; i < nenv; i++)
        if (strncmp(environ[i], "CMESH_INSTANCE=", 15) != 0 &&
            strncmp(environ[i], "CMESH_STATE=", 12) != 0)
            env[e++] = strdup(environ[i]);
    for (int i = 0; i < sp->nenv; i++)
        env[e++] = strdup(sp->env[i]);
    /* how a restarted control plane recognises its instances in /proc */
    snprintf(buf, sizeof buf, "CMESH_INSTANCE=%s/%d", sp->name, in->index);
    env[e++] = strdup(buf);
    snprintf(buf, sizeof buf, "CMESH_STATE=%s", s->spec->state_dir);
    env[e++] = strdup(buf);
    *argv_out = argv;
    *env_out = env;
    return rc;
}

static void free_vec(char **v)
{
    for (int i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static void watch_pid(inst_t *in)
{
    in->pidfd = pidfd_open(in->pid, 0);
    if (in->pidfd < 0)
        return;
    in->poll = malloc(sizeof *in->poll);
    if (!in->poll || uv_poll_init(in->sup->loop, in->poll, in->pidfd) < 0) {
        free(in->poll);
        in->poll = NULL;
        close(in->pidfd);
        in->pidfd = -1;
        return;
    }
    in->sup->open_handles++;
    in->poll->data = in;
    uv_poll_start(in->poll, UV_READABLE, on_pidfd);
}

static void record(inst_t *in)
{
    cm_inst_rec_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.service, sizeof r.service, "%s", in->spec->name);
    r.index = in->index;
    r.pid = in->pid;
    r.start_ticks = in->start_ticks;
    r.port = in->spec->port + in->index;
    r.started_ms = in->started_ms;
    snprintf(r.def, sizeof r.def, "%s", in->def);
    int rc = cm_state_put(in->sup->spec->state_dir, &r);
    if (rc < 0)
        cm_log_msg(CM_LOG_ERROR, "control: cannot record %s/%d: %s", r.service, r.index,
                   strerror(-rc));
}

static void spawn(inst_t *in)
{
    cm_sup_t *s = in->sup;
    in->spec = in->svc->spec; /* a (re)start runs the current definition */
    cm_defn_hash(in->spec, s->self, s->spec->dir, in->def);
    open_log(in);
    char **argv = NULL, **env = NULL;
    int rc = build_argv(in, &argv, &env);
    in->started_at = uv_now(s->loop);
    in->started_ms = wall_ms();
    if (rc == 0) {
        uv_process_t *p = calloc(1, sizeof *p);
        uv_stdio_container_t stdio[3] = {
            {.flags = UV_IGNORE},
            {.flags = in->logfd >= 0 ? UV_INHERIT_FD : UV_IGNORE, .data.fd = in->logfd},
            {.flags = in->logfd >= 0 ? UV_INHERIT_FD : UV_IGNORE, .data.fd = in->logfd},
        };
        uv_process_options_t o = {
            .exit_cb = on_proc_exit,
            .file = argv[0],
            .args = argv,
            .env = env,
            .cwd = s->spec->dir,
            .flags = UV_PROCESS_DETACHED, /* setsid: its own session and group */
            .stdio_count = 3,
            .stdio = stdio,
        };
        rc = p ? uv_spawn(s->loop, p, &o) : -ENOMEM;
        if (rc == 0) {
            s->open_handles++;
            p->data = in;
            in->proc = p;
            in->pid = p->pid;
            if (cm_proc_start_ticks(in->pid, &in->start_ticks) < 0)
                in->start_ticks = 0;
        } else if (p) {
            /* uv_spawn's handle must still be closed after a failed spawn */
            p->data = s;
            s->open_handles++;
            uv_close((uv_handle_t *)p, on_handle_closed);
        }
    }
    if (rc < 0) {
        log_note(in, "cannot start %s: %s", argv && argv[0] ? argv[0] : "?", uv_strerror(rc));
        free_vec(argv);
        free_vec(env);
        in->state = CM_INST_STARTING;
        inst_exited(in, 127);
        return;
    }
    log_note(in, "started pid %d: %s", in->pid, argv[0]);
    if (is_gateway(in))
        forget_ack(in); /* a new process acknowledges afresh */
    free_vec(argv);
    free_vec(env);
    record(in);
    set_state(in, CM_INST_STARTING);
    probes_start(in);
}

static void adopt(inst_t *in, const cm_inst_rec_t *r)
{
    open_log(in);
    in->pid = r->pid;
    in->start_ticks = r->start_ticks;
    in->started_ms = r->started_ms;
    in->started_at = uv_now(in->sup->loop);
    in->adopted = 1;
    snprintf(in->def, sizeof in->def, "%s", r->def);
    watch_pid(in);
    log_note(in, "adopted pid %d", in->pid);
    set_state(in, CM_INST_STARTING);
    probes_start(in); /* adopted means running; ready means its readiness passed again */
}

/* ---------------------------------------------------------------------------------- */
/* Stopping                                                                           */
/* ---------------------------------------------------------------------------------- */

static void on_kill_timer(uv_timer_t *t)
{
    inst_t *in = t->data;
    if (!running(in))
        return;
    log_note(in, "still running after its drain timeout: SIGKILL");
    signal_group(in, SIGKILL);
}

/* LEAVING (or straight from running) → DRAINING: SIGTERM now, SIGKILL after the drain
 * timeout. why says what the SIGTERM waited for; detail is the event's JSON. */
static void terminate(inst_t *in, const char *detail, const char *why)
{
    cm_sup_t *s = in->sup;
    uv_timer_stop(&in->timer);
    /* out of routing first (when it was not already): set_state tells the gateway */
    set_state(in, CM_INST_DRAINING);
    log_note(in, "stopping: SIGTERM %s (SIGKILL in %llu ms)", why,
             (unsigned long long)in->spec->drain_ms);
    cm_events_add(s->hooks.events, "drain", in->spec->name, in->index, detail, "SIGTERM %s", why);
    signal_group(in, SIGTERM);
    signal_group(in, SIGCONT); /* a stopped (SIGSTOP) process acts on the TERM only then */
    uv_timer_start(&in->timer, on_kill_timer, in->spec->drain_ms, 0);
}

/* ---- drain by acknowledgement ----------------------------------------------------- */

static svc_t *gateway_svc(cm_sup_t *s)
{
    return s->spec->has_gateway && s->nsvcs > 0 ? &s->svcs[s->nsvcs - 1] : NULL;
}

static int is_gateway(const inst_t *in)
{
    return in->sup->spec->has_gateway && in->svc == &in->sup->svcs[in->sup->nsvcs - 1];
}

/* A gateway instance whose acknowledgement a leaving instance waits for: its process
 * runs and it is not being stopped itself (a draining gateway takes no new request). */
static int must_ack(const inst_t *g)
{
    return g && running(g) && g->state != CM_INST_DRAINING && g->state != CM_INST_LEAVING;
}

static void gateway_id(const inst_t *g, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%d", g->spec->name, g->index);
}

static void forget_ack(inst_t *in)
{
    char id[CM_ACKS_ID_MAX];
    gateway_id(in, id, sizeof id);
    cm_acks_forget(in->sup->hooks.acks, id);
}

int cm_sup_gateways_applied(const cm_sup_t *s, const char *service, uint64_t index, int *total)
{
    const svc_t *g = gateway_svc((cm_sup_t *)s);
    int applied = 0;
    *total = 0;
    for (int j = 0; g && s->hooks.acks && j < CM_SPEC_MAX_INST && j < 32; j++) {
        if (!must_ack(g->inst[j]))
            continue;
        char id[CM_ACKS_ID_MAX];
        gateway_id(g->inst[j], id, sizeof id);
        (*total)++;
        applied += cm_ack_applied(cm_acks_get(s->hooks.acks, id), service, index);
    }
    return applied;
}

/* "HOST:PORT" as a gateway reports it (its upstream URL without the scheme). */
static void inst_addr(const inst_t *in, char *out, size_t cap)
{
    const char *h = in->spec->host;
    int v6 = strchr(h, ':') != NULL;
    snprintf(out, cap, "%s%s%s:%d", v6 ? "[" : "", h, v6 ? "]" : "", in->spec->port + in->index);
}

static int gateways_waited(cm_sup_t *s, const inst_t *in)
{
    svc_t *g = gateway_svc(s);
    int n = 0;
    if (!g || is_gateway(in) || !s->hooks.acks)
        return 0;
    for (int j = 0; j < CM_SPEC_MAX_INST && j < 32; j++)
        n += must_ack(g->inst[j]);
    return n;
}

/* Checks a leaving instance against every running gateway's last acknowledgement; logs
 * each gateway's first one (and its drain, when it had requests in flight); SIGTERM
 * once all have applied the index it left at and have nothing in flight to it. */
static void leave_check(inst_t *in)
{
    cm_sup_t *s = in->sup;
    svc_t *g = gateway_svc(s);
    if (in->state != CM_INST_LEAVING)
        return;
    const char *name = in->spec->name;
    char addr[CM_ACKS_ADDR_MAX], id[CM_ACKS_ID_MAX], detail[256];
    inst_addr(in, addr, sizeof addr);
    int all = 1;
    for (int j = 0; g && j < CM_SPEC_MAX_INST && j < 32; j++) {
        if (!must_ack(g->inst[j]))
            continue;
        gateway_id(g->inst[j], id, sizeof id);
        const cm_ack_t *a = cm_acks_get(s->hooks.acks, id);
        int m;
        cm_ack_verdict_t v = cm_ack_check(a, name, in->left_index, addr, &m);
        uint32_t bit = 1u << j;
        if (v != CM_ACK_BEHIND && !(in->acked & bit)) {
            in->acked |= bit;
            in->busy |= m > 0 ? bit : 0;
            snprintf(detail, sizeof detail, "{\"gateway\":\"%s\",\"index\":%llu,\"inflight\":%d}",
                     id, (unsigned long long)cm_ack_index(a, name), m);
            log_note(in, "acknowledged by %s at index %llu with %d in flight", id,
                     (unsigned long long)cm_ack_index(a, name), m);
            cm_events_add(s->hooks.events, "drain", name, in->index, detail,
                          "acknowledged by %s at index %llu with %d in flight", id,
                          (unsigned long long)cm_ack_index(a, name), m);
        } else if (v == CM_ACK_DRAINED && (in->busy & bit)) {
            in->busy &= ~bit;
            snprintf(detail, sizeof detail, "{\"gateway\":\"%s\",\"inflight\":0}", id);
            log_note(in, "drained by %s: nothing in flight to it any more", id);
            cm_events_add(s->hooks.events, "drain", name, in->index, detail,
                          "drained by %s: nothing in flight to it any more", id);
        }
        all &= v == CM_ACK_DRAINED;
    }
    if (!all)
        return;
    int n = gateways_waited(s, in);
    snprintf(detail, sizeof detail, "{\"after\":\"%s\",\"left_index\":%llu,\"waited_ms\":%llu}",
             n ? "acknowledgements" : "no_gateway", (unsigned long long)in->left_index,
             (unsigned long long)(uv_now(s->loop) - in->left_at));
    terminate(in, detail,
              n ? "after every gateway's acknowledgement" : "now that no gateway is running");
}

static void recheck_leaving(cm_sup_t *s)
{
    for (int i = 0; i < s->nsvcs; i++)
        for (int j = 0; j < CM_SPEC_MAX_INST; j++)
            if (s->svcs[i].inst[j] && s->svcs[i].inst[j]->state == CM_INST_LEAVING)
                leave_check(s->svcs[i].inst[j]);
}

void cm_sup_acked(cm_sup_t *s)
{
    recheck_leaving(s);
}

/* The drain timeout passed while LEAVING: SIGTERM anyway, naming every gateway that had
 * not acknowledged (dead, wedged, cut off) or still had requests in flight. */
static void on_leave_timeout(uv_timer_t *t)
{
    inst_t *in = t->data;
    cm_sup_t *s = in->sup;
    svc_t *g = gateway_svc(s);
    if (in->state != CM_INST_LEAVING)
        return;
    const char *name = in->spec->name;
    char why[1024], addr[CM_ACKS_ADDR_MAX], id[CM_ACKS_ID_MAX], detail[1400];
    size_t len = 0;
    inst_addr(in, addr, sizeof addr);
    why[0] = '\0';
    for (int j = 0; g && j < CM_SPEC_MAX_INST && j < 32 && len < sizeof why; j++) {
        if (!must_ack(g->inst[j]))
            continue;
        gateway_id(g->inst[j], id, sizeof id);
        const cm_ack_t *a = cm_acks_get(s->hooks.acks, id);
        int m, k = 0;
        cm_ack_verdict_t v = cm_ack_check(a, name, in->left_index, addr, &m);
        if (v == CM_ACK_BEHIND && a)
            k = snprintf(why + len, sizeof why - len,
                         "%s%s did not acknowledge index %llu (its last: %llu)", len ? "; " : "",
                         id, (unsigned long long)in->left_index,
                         (unsigned long long)cm_ack_index(a, name));
        else if (v == CM_ACK_BEHIND)
            k = snprintf(why + len, sizeof why - len, "%s%s did not acknowledge index %llu",
                         len ? "; " : "", id, (unsigned long long)in->left_index);
        else if (v == CM_ACK_BUSY)
            k = snprintf(why + len, sizeof why - len, "%s%s still had %d in flight to it",
                         len ? "; " : "", id, m);
        if (k > 0)
            len += (size_t)k < sizeof why - len ? (size_t)k : sizeof why - len - 1;
    }
    char msg[1200];
    snprintf(msg, sizeof msg, "after the drain timeout (%llu ms): %s",
             (unsigned long long)in->spec->drain_ms, why[0] ? why : "no acknowledgement");
    cm_buf_t d = CM_BUF_INIT;
    cm_buf_appendf(&d, "{\"after\":\"timeout\",\"left_index\":%llu,\"timeout_ms\":%llu,\"reason\":",
                   (unsigned long long)in->left_index, (unsigned long long)in->spec->drain_ms);
    cm_json_str(&d, why, strlen(why));
    cm_buf_append_str(&d, "}");
    snprintf(detail, sizeof detail, "%s", d.data ? d.data : "{}");
    cm_buf_free(&d);
    terminate(in, detail, msg);
}

static void stop(inst_t *in, after_t after)
{
    cm_sup_t *s = in->sup;
    if (!running(in)) {
        uv_timer_stop(&in->timer);
        if (in->state != CM_INST_STOPPED)
            set_state(in, CM_INST_STOPPED);
        return;
    }
    if (in->state == CM_INST_DRAINING || in->state == CM_INST_LEAVING) {
        if (after == AFTER_STOP)
            in->after = AFTER_STOP;
        return;
    }
    in->after = after;
    probes_stop(in);
    int n = gateways_waited(s, in);
    if (n == 0) {
        terminate(in, "{\"after\":\"nothing\",\"gateways\":0}",
                  is_gateway(in) ? "at once (a gateway waits for no gateway)"
                                 : "at once (no gateway is running)");
        return;
    }
    uv_timer_stop(&in->timer);
    /* out of routing, still serving what it has: the gateways say when it is theirs no more */
    set_state(in, CM_INST_LEAVING);
    in->left_index = cm_registry_service_index(s->reg, in->spec->name);
    in->left_at = uv_now(s->loop);
    in->acked = in->busy = 0;
    char detail[128];
    snprintf(detail, sizeof detail, "{\"left_index\":%llu,\"gateways\":%d,\"timeout_ms\":%llu}",
             (unsigned long long)in->left_index, n, (unsigned long long)in->spec->drain_ms);
    log_note(in,
             "left routing at index %llu: waiting for %d gateway(s) to acknowledge (at most "
             "%llu ms)",
             (unsigned long long)in->left_index, n, (unsigned long long)in->spec->drain_ms);
    cm_events_add(s->hooks.events, "drain", in->spec->name, in->index, detail,
                  "left routing at index %llu: waiting for %d gateway(s) to acknowledge",
                  (unsigned long long)in->left_index, n);
    uv_timer_start(&in->timer, on_leave_timeout, in->spec->drain_ms, 0);
    leave_check(in); /* a gateway may have acknowledged a later index already */
}

int cm_sup_leaving(const cm_sup_t *s, const char *service, int index, uint64_t *left_index,
                   char *waiting, size_t cap)
{
    waiting[0] = '\0';
    for (int i = 0; i < s->nsvcs; i++) {
        const svc_t *v = &s->svcs[i];
        if (strcmp(v->spec->name, service) != 0 || index < 0 || index >= CM_SPEC_MAX_INST ||
            !v->inst[index] || v->inst[index]->state != CM_INST_LEAVING)
            continue;
        const inst_t *in = v->inst[index];
        *left_index = in->left_index;
        const svc_t *g = s->spec->has_gateway ? &s->svcs[s->nsvcs - 1] : NULL;
        char addr[CM_ACKS_ADDR_MAX], id[CM_ACKS_ID_MAX];
        inst_addr(in, addr, sizeof addr);
        size_t len = 0;
        for (int j = 0; g && j < CM_SPEC_MAX_INST && j < 32 && len < cap; j++) {
            int m;
            if (!must_ack(g->inst[j]))
                continue;
            gateway_id(g->inst[j], id, sizeof id);
            if (cm_ack_check(cm_acks_get(s->hooks.acks, id), service, in->left_index, addr, &m) ==
                CM_ACK_DRAINED)
                continue;
            int k = snprintf(waiting + len, cap - len, "%s%s", len ? " " : "", id);
            if (k > 0)
                len += (size_t)k < cap - len ? (size_t)k : cap - len - 1;
        }
        return 1;
    }
    return 0;
}

/* Stage k of stop_all: the gateway first (when there is one), then the other services
 * from the last in the file to the first (callers before what they call). */
/* An instance's own process (libuv reaps it and tells us), not an orphan. */
static int is_instance(int pid, void *arg)
{
    cm_sup_t *s = arg;
    for (int i = 0; i < s->nsvcs; i++)
        for (int j = 0; j < CM_SPEC_MAX_INST; j++)
            if (s->svcs[i].inst[j] && s->svcs[i].inst[j]->proc && s->svcs[i].inst[j]->pid == pid)
                return 1;
    return 0;
}

static void sweep_orphans(cm_sup_t *s, int kill_live)
{
    cm_reap_orphans(is_instance, s, kill_live);
}

static svc_t *stage_svc(cm_sup_t *s, int stage, int *last)
{
    int gw = s->spec->has_gateway;
    *last = stage >= s->nsvcs;
    if (*last)
        return NULL;
    if (gw && stage == 0)
        return &s->svcs[s->nsvcs - 1];
    return &s->svcs[s->nsvcs - 1 - gw - (gw ? stage - 1 : stage)];
}

static void stage_begin(cm_sup_t *s)
{
    for (;;) {
        int last;
        svc_t *v = stage_svc(s, s->stage, &last);
        if (last) {
            s->stopping = 2;
            sweep_orphans(s, 1);
            if (s->stop_done)
                s->stop_done(s->stop_arg);
            return;
        }
        int busy = 0;
        for (int j = 0; j < CM_SPEC_MAX_INST; j++)
            if (v->inst[j]) {
                stop(v->inst[j], AFTER_STOP);
                busy |= running(v->inst[j]);
            }
        if (busy)
            return; /* stage_check continues when the last exits */
        s->stage++;
    }
}

static void stage_check(cm_sup_t *s)
{
    if (s->stopping != 1)
        return;
    int last;
    svc_t *v = stage_svc(s, s->stage, &last);
    for (int j = 0; v && j < CM_SPEC_MAX_INST; j++)
        if (v->inst[j] && running(v->inst[j]))
            return;
    s->stage++;
    stage_begin(s);
}

void cm_sup_stop_all(cm_sup_t *s, void (*done)(void *), void *arg)
{
    if (s->stopping)
        return;
    s->stopping = 1;
    s->stop_done = done;
    s->stop_arg = arg;
    s->stage = 0;
    for (int i = 0; i < s->nsvcs; i++)
        for (int j = 0; j < CM_SPEC_MAX_INST; j++)
            if (s->svcs[i].inst[j] && (s->svcs[i].inst[j]->state == CM_INST_BACKOFF ||
                                       s->svcs[i].inst[j]->state == CM_INST_CRASHLOOP))
                uv_timer_stop(&s->svcs[i].inst[j]->timer); /* no restarts from here */
    stage_begin(s);
}

/* ---------------------------------------------------------------------------------- */
/* Life cycle                                                                         */
/* ---------------------------------------------------------------------------------- */

static void on_metrics(int status, const char *body, size_t len, void *data)
{
    inst_t *in = data;
    in->scraping = 0;
    if (in->sup->freeing || status != 200)
        return;
    cm_load_sample_t cur;
    if (cm_load_parse(body, len, &cur) < 0)
        return;
    uint64_t now = uv_now(in->sup->loop);
    if (in->load_pid == in->pid &&
        cm_load_rate(&in->load, &cur, now - in->load_at, &in->rps, &in->p99_ms) == 0) {
        in->has_load = 1;
        in->win_ms = now - in->load_at;
        if (cm_load_window(&in->load, &cur, &in->win) < 0)
            in->win.valid = 0;
    }
    in->load = cur;
    in->load_at = now;
    in->load_pid = in->pid;
}

/* Every cmesh process serves /metrics: its counters give RPS and P99 for status. */
static void scrape(inst_t *in)
{
    const cm_svc_spec_t *sp = in->spec;
    if (!sp->self || !running(in) || in->scraping)
        return;
    if (in->load_pid != in->pid)
        in->has_load = 0;
    char url[300];
    int v6 = strchr(sp->host, ':') != NULL;
    snprintf(url, sizeof url, "http://%s%s%s:%d/metrics", v6 ? "[" : "", sp->host, v6 ? "]" : "",
             sp->port + in->index);
    if (cm_client_get(in->sup->client, url, 1000, NULL, on_metrics, in) == 0)
        in->scraping = 1;
}

static void on_maint(uv_timer_t *t)
{
    cm_sup_t *s = t->data;
    if (s->hooks.on_tick) /* the last round's answers are in; the next round starts below */
        s->hooks.on_tick(s->hooks.arg);
    for (int i = 0; i < s->nsvcs; i++)
        for (int j = 0; j < CM_SPEC_MAX_INST; j++)
            if (s->svcs[i].inst[j]) {
                rotate(s->svcs[i].inst[j]);
                scrape(s->svcs[i].inst[j]);
            }
    sweep_orphans(s, 0);
}

static void on_sigchld(uv_signal_t *h, int sig)
{
    (void)sig;
    sweep_orphans(h->data, 0);
}

static inst_t *slot(cm_sup_t *s, svc_t *v, int index)
{
    if (v->inst[index])
        return v->inst[index];
    inst_t *in = calloc(1, sizeof *in);
    if (!in)
        return NULL;
    in->sup = s;
    in->svc = v;
    in->spec = v->spec;
    in->index = index;
    in->state = CM_INST_STOPPED;
    in->last_exit = -1;
    in->logfd = -1;
    in->pidfd = -1;
    uv_timer_init(s->loop, &in->timer);
    in->timer.data = in;
    v->inst[index] = in;
    return in;
}

int cm_sup_new(uv_loop_t *loop, const cm_spec_t *spec, cm_registry_t *reg, cm_client_t *client,
               const char *self, const cm_sup_hooks_t *hooks, cm_sup_t **out)
{
    cm_sup_t *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->loop = loop;
    s->spec = spec;
    s->reg = reg;
    s->client = client;
    snprintf(s->self, sizeof s->self, "%s", self);
    if (hooks)
        s->hooks = *hooks;
    s->nsvcs = spec->nsvcs;
    for (int i = 0; i < spec->nsvcs; i++) {
        s->svcs[i].spec = &spec->svcs[i];
        int c;
        s->svcs[i].count = cm_state_get_scale(spec->state_dir, spec->svcs[i].name, &c) == 0 &&
                                   c >= 0 && c <= CM_SPEC_MAX_INST
                               ? c
                               : spec->svcs[i].instances;
    }
    uv_timer_init(loop, &s->maint);
    s->maint.data = s;
    uv_signal_init(loop, &s->sigchld);
    s->sigchld.data = s;
    *out = s;
    return 0;
}

static svc_t *find_svc(cm_sup_t *s, const char *name)
{
    for (int i = 0; i < s->nsvcs; i++)
        if (strcmp(s->svcs[i].spec->name, name) == 0)
            return &s->svcs[i];
    return NULL;
}

int cm_sup_start(cm_sup_t *s)
{
    /* adopt first: what runs keeps running, and its port is never bound twice */
    cm_inst_rec_t *recs;
    int n;
    int rc = cm_state_list(s->spec->state_dir, &recs, &n);
    if (rc < 0)
        return rc;
    for (int i = 0; i < n; i++) {
        cm_inst_rec_t *r = &recs[i];
        svc_t *v = find_svc(s, r->service);
        int alive = cm_proc_same(r->pid, r->start_ticks);
        if (alive && v && r->index >= 0 && r->index < CM_SPEC_MAX_INST &&
            r->port == v->spec->port + r->index) {
            inst_t *in = slot(s, v, r->index);
            if (in && !running(in)) {
                adopt(in, r);
                continue;
            }
        }
        if (alive) { /* a service no longer in the file (or moved): stop it */
            kill(-r->pid, SIGTERM);
            kill(-r->pid, SIGCONT);
        }
        cm_state_del(s->spec->state_dir, r->service, r->index);
    }
    free(recs);
    for (int i = 0; i < s->nsvcs; i++) {
        svc_t *v = &s->svcs[i];
        for (int j = 0; j < CM_SPEC_MAX_INST; j++) {
            inst_t *in = v->inst[j];
            /* no record, but maybe a process: the last control plane died between its
             * spawn and its record. Found by the environment every instance carries. */
            cm_inst_rec_t r = {.index = j, .port = v->spec->port + j};
            char id[CM_SPEC_NAME_MAX + 16];
            snprintf(id, sizeof id, "%s/%d", v->spec->name, j);
            if (j < v->count && !(in && running(in)) &&
                cm_proc_find_instance(s->spec->state_dir, id, &r.pid, &r.start_ticks) == 0 &&
                (in = slot(s, v, j))) {
                snprintf(r.service, sizeof r.service, "%s", v->spec->name);
                r.started_ms = wall_ms();
                adopt(in, &r);
                record(in);
                continue;
            }
            if (j < v->count && !(in && running(in)) && (in = slot(s, v, j)))
                spawn(in);
            else if (j >= v->count && in && running(in))
                stop(in, AFTER_STOP);
        }
    }
    uv_timer_start(&s->maint, on_maint, MAINT_MS, MAINT_MS);
    uv_signal_start(&s->sigchld, on_sigchld, SIGCHLD);
    return 0;
}

int cm_sup_scale(cm_sup_t *s, const char *service, int count)
{
    svc_t *v = find_svc(s, service);
    if (!v)
        return -ENOENT;
    if (count < 0 || count > CM_SPEC_MAX_INST || s->stopping)
        return -EINVAL;
    int old = v->count;
    v->count = count;
    cm_state_put_scale(s->spec->state_dir, service, count);
    for (int j = CM_SPEC_MAX_INST - 1; j >= count; j--)
        if (v->inst[j] && v->inst[j]->surge && running(v->inst[j]))
            continue; /* its rollout fails on the changed count and stops it */
        else if (v->inst[j] && v->inst[j]->state != CM_INST_STOPPED)
            stop(v->inst[j], AFTER_STOP);
        else if (v->inst[j] && j >= old)
            cm_registry_remove(s->reg, service, j);
    for (int j = 0; j < count; j++) {
        inst_t *in = slot(s, v, j);
        if (in)
            in->surge = 0; /* within the count: one of them now */
        if (in && !running(in) && in->state == CM_INST_STOPPED)
            spawn(in);
    }
    /* stopped slots above the count leave the registry */
    for (int j = count; j < CM_SPEC_MAX_INST; j++)
        if (v->inst[j] && v->inst[j]->state == CM_INST_STOPPED)
            cm_registry_remove(s->reg, service, j);
    return 0;
}

int cm_sup_count(const cm_sup_t *s, const char *service)
{
    for (int i = 0; i < s->nsvcs; i++)
        if (strcmp(s->svcs[i].spec->name, service) == 0)
            return s->svcs[i].count;
    return -1;
}

int cm_sup_urls(const cm_sup_t *s, const char *service, char ***urls, int *n)
{
    const svc_t *v = NULL;
    for (int i = 0; i < s->nsvcs; i++)
        if (strcmp(s->svcs[i].spec->name, service) == 0)
            v = &s->svcs[i];
    *urls = NULL, *n = 0;
    if (!v)
        return -ENOENT;
    char **l = calloc(CM_SPEC_MAX_INST, sizeof *l);
    if (!l)
        return -ENOMEM;
    for (int pass = 0; pass < 2 && *n == 0; pass++)
        for (int j = 0; j < CM_SPEC_MAX_INST; j++) {
            const inst_t *in = v->inst[j];
            if (!in || j >= v->count)
                continue;
            /* pass 0: ready ones; pass 1 (none ready): every slot that should run, so
             * the file stays valid and the gateway's checks find the first to come up */
            if (pass == 0 && in->state != CM_INST_READY)
                continue;
            char buf[300];
            snprintf(buf, sizeof buf, "http://%s:%d", in->spec->host, in->spec->port + j);
            l[(*n)++] = strdup(buf);
        }
    if (*n == 0 && v->count > 0) { /* not spawned yet: the addresses they will have */
        for (int j = 0; j < v->count; j++) {
            char buf[300];
            snprintf(buf, sizeof buf, "http://%s:%d", v->spec->host, v->spec->port + j);
            l[(*n)++] = strdup(buf);
        }
    }
    *urls = l;
    return 0;
}

int cm_sup_pid(const cm_sup_t *s, const char *service, int index)
{
    for (int i = 0; i < s->nsvcs; i++)
        if (strcmp(s->svcs[i].spec->name, service) == 0 && index >= 0 && index < CM_SPEC_MAX_INST &&
            s->svcs[i].inst[index])
            return s->svcs[i].inst[index]->pid;
    return 0;
}

int cm_sup_load(const cm_sup_t *s, const char *service, int index, double *rps, double *p99_ms)
{
    for (int i = 0; i < s->nsvcs; i++)
        if (strcmp(s->svcs[i].spec->name, service) == 0 && index >= 0 && index < CM_SPEC_MAX_INST &&
            s->svcs[i].inst[index]) {
            const inst_t *in = s->svcs[i].inst[index];
            if (!in->has_load || in->load_pid != in->pid || !running(in))
                return -ENOENT;
            *rps = in->rps;
            *p99_ms = in->p99_ms;
            return 0;
        }
    return -ENOENT;
}

int cm_sup_window(const cm_sup_t *s, const char *service, int index, cm_load_sample_t *w,
                  uint64_t *dt_ms)
{
    for (int i = 0; i < s->nsvcs; i++)
        if (strcmp(s->svcs[i].spec->name, service) == 0 && index >= 0 && index < CM_SPEC_MAX_INST &&
            s->svcs[i].inst[index]) {
            const inst_t *in = s->svcs[i].inst[index];
            if (!in->has_load || !in->win.valid || in->load_pid != in->pid || !running(in))
                return -ENOENT;
            *w = in->win;
            *dt_ms = in->win_ms;
            return 0;
        }
    return -ENOENT;
}

int cm_sup_ready(const cm_sup_t *s, const char *service, int index)
{
    for (int i = 0; i < s->nsvcs; i++)
        if (strcmp(s->svcs[i].spec->name, service) == 0 && index >= 0 && index < CM_SPEC_MAX_INST &&
            s->svcs[i].inst[index])
            return s->svcs[i].inst[index]->pid > 0 &&
                   s->svcs[i].inst[index]->state == CM_INST_READY;
    return 0;
}

void cm_sup_free(cm_sup_t *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->nsvcs; i++)
        for (int j = 0; j < CM_SPEC_MAX_INST; j++) {
            inst_t *in = s->svcs[i].inst[j];
            if (!in)
                continue;
            probes_stop(in);
            close_poll(in);
            if (in->proc) { /* detach: it runs on, for the next control plane to adopt */
                in->proc->data = s;
                uv_close((uv_handle_t *)in->proc, on_handle_closed);
                in->proc = NULL;
            }
            if (in->logfd >= 0)
                close(in->logfd);
            /* the timer is embedded in the slot: the slot is freed in its close cb */
            s->open_handles++;
            uv_close((uv_handle_t *)&in->timer, on_slot_closed);
        }
    s->open_handles += 2;
    s->maint.data = s->sigchld.data = s;
    s->freeing = 1;
    uv_close((uv_handle_t *)&s->maint, on_own_closed);
    uv_close((uv_handle_t *)&s->sigchld, on_own_closed);
}

char *cm_sup_log_tail(const cm_sup_t *s, const char *service, int index, int lines)
{
    char p[4096];
    cm_state_log_path(s->spec->state_dir, service, index, p, sizeof p);
    return cm_logfile_tail(p, lines);
}

/* ---------------------------------------------------------------------------------- */
/* One instance at a time (rollouts) and a new spec (reload)                          */
/* ---------------------------------------------------------------------------------- */

static inst_t *find_inst(cm_sup_t *s, const char *service, int index)
{
    svc_t *v = find_svc(s, service);
    return v && index >= 0 && index < CM_SPEC_MAX_INST ? v->inst[index] : NULL;
}

int cm_sup_inst(const cm_sup_t *s, const char *service, int index, cm_sup_inst_t *out)
{
    memset(out, 0, sizeof *out);
    out->last_exit = -1;
    const inst_t *in = find_inst((cm_sup_t *)s, service, index);
    if (!in)
        return -ENOENT;
    out->exists = 1;
    out->pid = in->pid;
    out->state = in->state;
    out->last_exit = in->last_exit;
    snprintf(out->def, sizeof out->def, "%s", in->def);
    return 0;
}

int cm_sup_def(const cm_sup_t *s, const char *service, char out[CM_DEFN_LEN])
{
    svc_t *v = find_svc((cm_sup_t *)s, service);
    if (!v)
        return -ENOENT;
    cm_defn_hash(v->spec, s->self, s->spec->dir, out);
    return 0;
}

uint64_t cm_sup_rollout_ms(const cm_sup_t *s, const char *service)
{
    svc_t *v = find_svc((cm_sup_t *)s, service);
    return v ? v->spec->rollout_ms : 60000;
}

int cm_sup_surge(cm_sup_t *s, const char *service, int index)
{
    svc_t *v = find_svc(s, service);
    if (!v || v->removed || index < v->count || index >= CM_SPEC_MAX_INST)
        return -EINVAL;
    if (s->stopping)
        return -ESHUTDOWN;
    inst_t *in = slot(s, v, index);
    if (!in)
        return -ENOMEM;
    if (running(in))
        return -EBUSY;
    uv_timer_stop(&in->timer);
    in->restarts = in->streak = 0;
    in->surge = 1;
    spawn(in);
    return 0;
}

int cm_sup_restart(cm_sup_t *s, const char *service, int index)
{
    inst_t *in = find_inst(s, service, index);
    if (!in || in->index >= in->svc->count)
        return -EINVAL;
    if (s->stopping)
        return -ESHUTDOWN;
    if (!running(in)) {
        uv_timer_stop(&in->timer);
        spawn(in);
        return 0;
    }
    stop(in, AFTER_RESTART); /* the graceful stop; its exit spawns the current spec */
    return 0;
}

int cm_sup_stop_one(cm_sup_t *s, const char *service, int index)
{
    inst_t *in = find_inst(s, service, index);
    if (!in || in->index < in->svc->count)
        return -EINVAL; /* one within the count is restarted, not stopped */
    stop(in, AFTER_STOP);
    if (!running(in))
        cm_registry_remove(s->reg, service, index);
    return 0;
}

/* A service gone from the spec: every instance leaves gracefully (and the registry
 * once it exited: its index is past the count of 0). */
static void retire(cm_sup_t *s, svc_t *v)
{
    v->count = 0;
    for (int j = 0; j < CM_SPEC_MAX_INST; j++)
        if (v->inst[j] && v->inst[j]->state != CM_INST_STOPPED)
            stop(v->inst[j], AFTER_STOP);
        else if (v->inst[j])
            cm_registry_remove(s->reg, v->spec->name, j);
}

/* The gateway stays the last service (stop_all stops it first); returns its slot. */
static svc_t *add_svc(cm_sup_t *s, const cm_svc_spec_t *sp)
{
    if (s->nsvcs >= CM_SPEC_MAX_SVCS)
        return NULL;
    int at = s->nsvcs;
    if (s->spec->has_gateway && s->nsvcs > 0 &&
        strcmp(s->svcs[s->nsvcs - 1].spec->name, CM_SPEC_GATEWAY) == 0) {
        at = s->nsvcs - 1;
        s->svcs[s->nsvcs] = s->svcs[at]; /* moved: its instances point at their svc */
        for (int j = 0; j < CM_SPEC_MAX_INST; j++)
            if (s->svcs[s->nsvcs].inst[j])
                s->svcs[s->nsvcs].inst[j]->svc = &s->svcs[s->nsvcs];
    }
    s->nsvcs++;
    svc_t *v = &s->svcs[at];
    memset(v, 0, sizeof *v);
    v->spec = sp;
    return v;
}

int cm_sup_respec(cm_sup_t *s, const cm_spec_t *spec)
{
    if (s->stopping)
        return -ESHUTDOWN;
    if (spec->has_gateway != s->spec->has_gateway)
        return -EINVAL;
    const cm_spec_t *old = s->spec;
    s->spec = spec;
    for (int i = 0; i < s->nsvcs; i++) {
        svc_t *v = &s->svcs[i];
        const cm_svc_spec_t *sp = cm_spec_service(spec, v->spec->name);
        if (!sp) { /* removed: its instances stop; their spec (old's) outlives them */
            if (!v->removed) {
                v->removed = 1;
                retire(s, v);
            }
            continue;
        }
        v->removed = 0;
        v->spec = sp;
        /* the file's count changed: it wins over a count set at run time */
        const cm_svc_spec_t *was = cm_spec_service(old, sp->name);
        if (!was || was->instances != sp->instances)
            cm_sup_scale(s, sp->name, sp->instances);
    }
    for (int i = 0; i < spec->nsvcs; i++) {
        const cm_svc_spec_t *sp = &spec->svcs[i];
        if (find_svc(s, sp->name))
            continue;
        svc_t *v = add_svc(s, sp);
        if (!v)
            return -ENOSPC;
        cm_sup_scale(s, sp->name, sp->instances);
    }
    return 0;
}
