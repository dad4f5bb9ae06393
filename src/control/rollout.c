/* control/rollout.c: the rollout state machine (pure: cm_ro_begin / cm_ro_step) and its
 * glue on the control plane's loop (cm_rollouts_*), see rollout.h. */
#include "control/rollout.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/json.h"

const char *cm_ro_state_name(cm_ro_state_t s)
{
    static const char *const names[] = {"idle",  "surge", "publish", "replace",
                                        "leave", "done",  "failed"};
    return s <= CM_RO_FAILED ? names[s] : "?";
}

/* ---------------------------------------------------------------------------------- */
/* The state machine (pure)                                                           */
/* ---------------------------------------------------------------------------------- */

static void note(cm_ro_t *ro, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(cm_ro_t *ro, const char *fmt, ...)
{
    /* a step that moves twice (published, then the next replacement) says both */
    size_t len = strlen(ro->note);
    if (len && len + 3 < sizeof ro->note)
        memcpy(ro->note + len, "; ", 3), len += 2;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ro->note + len, sizeof ro->note - len, fmt, ap);
    va_end(ap);
}

static const cm_ro_action_t none = {CM_RO_ACT_NONE, -1};

static cm_ro_action_t act(cm_ro_act_t a, int index)
{
    return (cm_ro_action_t){a, index};
}

static int stale(const cm_ro_t *ro, const cm_ro_view_t *v, int i)
{
    return (ro->restart_set >> i & 1) || strcmp(v->inst[i].def, v->def) != 0;
}

/* Every path to FAILED: the surge goes (when it is still past the count), the rest stays. */
static cm_ro_action_t fail(cm_ro_t *ro, const cm_ro_view_t *v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static cm_ro_action_t fail(cm_ro_t *ro, const cm_ro_view_t *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ro->reason, sizeof ro->reason, fmt, ap);
    va_end(ap);
    ro->state = CM_RO_FAILED;
    note(ro, "rollout failed: %s", ro->reason);
    /* the surge leaves (unless a scale made it one of the count meanwhile) */
    if (ro->n < CM_SPEC_MAX_INST && ro->n >= v->count && v->inst[ro->n].pid > 0)
        return act(CM_RO_ACT_STOP, ro->n);
    return none;
}

static void start_wait(cm_ro_t *ro, const cm_ro_view_t *v, cm_ro_state_t st, int index)
{
    ro->state = st;
    ro->cur = index;
    ro->old_pid = v->inst[index].pid;
    ro->seen_running = 0;
    ro->deadline = v->now + ro->timeout_ms;
    ro->pub_want = v->watchers;
}

/* After a new instance is published: the next stale one, or the surge's leaving. */
static cm_ro_action_t next(cm_ro_t *ro, const cm_ro_view_t *v)
{
    for (int i = 0; i < ro->n; i++)
        if (stale(ro, v, i)) {
            ro->restart_set &= ~(1ull << i);
            start_wait(ro, v, CM_RO_REPLACE, i);
            note(ro, "replacing instance %d (pid %d) with the new definition %s (%d of %d)", i,
                 v->inst[i].pid, v->def, ro->replaced + 1, ro->total);
            return act(CM_RO_ACT_RESTART, i);
        }
    ro->state = CM_RO_LEAVE;
    ro->cur = ro->n;
    note(ro, "every instance runs %s: the surge instance %d leaves", v->def, ro->n);
    return act(CM_RO_ACT_STOP, ro->n);
}

cm_ro_action_t cm_ro_begin(cm_ro_t *ro, const cm_ro_view_t *v, uint64_t timeout_ms)
{
    memset(ro, 0, sizeof *ro);
    ro->n = v->count;
    ro->timeout_ms = timeout_ms;
    ro->cur = -1;
    if (ro->n == 0) {
        ro->state = CM_RO_DONE;
        snprintf(ro->reason, sizeof ro->reason, "nothing to replace: 0 instances");
        note(ro, "rollout: %s", ro->reason);
        return none;
    }
    if (ro->n >= CM_SPEC_MAX_INST)
        return fail(ro, v, "no room for a surge instance: %d instances is the maximum", ro->n);
    for (int i = 0; i < ro->n; i++)
        ro->total += strcmp(v->inst[i].def, v->def) != 0;
    if (ro->total == 0) { /* nothing stale: the user asked for a restart of every one */
        ro->restart_set = ro->n == 64 ? ~0ull : (1ull << ro->n) - 1;
        ro->total = ro->n;
    }
    start_wait(ro, v, CM_RO_SURGE, ro->n);
    note(ro, "rollout of %d instance%s to %s: surge instance %d starting", ro->total,
         ro->total == 1 ? "" : "s", v->def, ro->n);
    return act(CM_RO_ACT_SURGE, ro->n);
}

static void exit_text(const cm_sup_inst_t *in, char *out, size_t cap)
{
    if (in->last_exit >= 128)
        snprintf(out, cap, "killed by signal %d", in->last_exit - 128);
    else if (in->last_exit >= 0)
        snprintf(out, cap, "exited with status %d", in->last_exit);
    else
        snprintf(out, cap, "exited");
}

cm_ro_action_t cm_ro_step(cm_ro_t *ro, const cm_ro_view_t *v)
{
    if (ro->state == CM_RO_IDLE || ro->state == CM_RO_DONE || ro->state == CM_RO_FAILED)
        return none;
    if (v->count != ro->n)
        return fail(ro, v, "the instance count changed from %d to %d during the rollout", ro->n,
                    v->count);
    const cm_sup_inst_t *in = &v->inst[ro->cur];
    char why[64];
    switch (ro->state) {
    case CM_RO_SURGE:
        if (in->pid > 0)
            ro->seen_running = 1;
        if (in->pid > 0 && in->state == CM_INST_READY)
            break; /* → PUBLISH below */
        if (in->pid == 0 && (ro->seen_running || in->state == CM_INST_STOPPED)) {
            exit_text(in, why, sizeof why);
            return fail(ro, v, "the new instance %d %s before it was ready", ro->cur, why);
        }
        if (v->now >= ro->deadline)
            return fail(ro, v, "the new instance %d was not ready within %llu ms", ro->cur,
                        (unsigned long long)ro->timeout_ms);
        return none;
    case CM_RO_REPLACE:
        if (in->pid > 0 && in->pid != ro->old_pid && in->state == CM_INST_READY)
            break;
        if (in->pid == 0 && in->state == CM_INST_CRASHLOOP) {
            exit_text(in, why, sizeof why);
            return fail(ro, v,
                        "the new instance %d keeps exiting (last: %s); it is retried with "
                        "backoff, the others keep serving",
                        ro->cur, why);
        }
        if (v->now >= ro->deadline)
            return fail(ro, v,
                        "the new instance %d was not ready within %llu ms; it is retried, the "
                        "others keep serving",
                        ro->cur, (unsigned long long)ro->timeout_ms);
        return none;
    case CM_RO_PUBLISH:
        if (v->watchers_past >= ro->pub_want && v->gateways_past >= v->gateways) {
            note(ro,
                 "instance %d is in every follower's set (%d came back past index %" PRIu64
                 ", %d gateway(s) acknowledged it)",
                 ro->cur, v->watchers_past, ro->pub_index, v->gateways_past);
            return next(ro, v);
        }
        if (v->now >= ro->pub_until) {
            note(ro,
                 "instance %d: only %d of %d followers came back past index %" PRIu64
                 " and %d of %d gateways acknowledged it within %d ms; going on",
                 ro->cur, v->watchers_past, ro->pub_want, ro->pub_index, v->gateways_past,
                 v->gateways, CM_RO_PUBLISH_MS);
            return next(ro, v);
        }
        return none;
    case CM_RO_LEAVE:
        if (in->pid > 0)
            return none;
        ro->state = CM_RO_DONE;
        snprintf(ro->reason, sizeof ro->reason, "%d instance%s replaced; every one runs %s",
                 ro->replaced, ro->replaced == 1 ? "" : "s", v->def);
        note(ro, "rollout done: %s", ro->reason);
        return none;
    default:
        return none;
    }
    /* cur is ready: it is published at the registry's index now */
    if (ro->state == CM_RO_REPLACE)
        ro->replaced++;
    note(ro, "instance %d ready (pid %d, %s)%s", ro->cur, in->pid, in->def,
         ro->state == CM_RO_SURGE ? ": the surge holds capacity" : "");
    ro->state = CM_RO_PUBLISH;
    ro->pub_index = v->reg_index;
    ro->pub_until = v->now + CM_RO_PUBLISH_MS;
    return none;
}

/* ---------------------------------------------------------------------------------- */
/* The glue                                                                           */
/* ---------------------------------------------------------------------------------- */

typedef struct entry {
    char service[CM_SPEC_NAME_MAX];
    cm_ro_t ro;
    int64_t started_ms, finished_ms; /* wall clock */
    int surge_pending; /* the surge's slot still held an instance leaving (a reload that
                          scaled down too): its spawn is retried every tick until it left */
} entry_t;

struct cm_rollouts {
    uv_loop_t *loop;
    cm_sup_t *sup;
    cm_registry_t *reg;
    cm_events_t *events;
    uv_timer_t tick;
    entry_t e[CM_SPEC_MAX_SVCS * 2]; /* a service removed and another added: both kept */
    int n;
    int shutdown;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int active(const cm_ro_t *ro)
{
    return ro->state != CM_RO_IDLE && ro->state != CM_RO_DONE && ro->state != CM_RO_FAILED;
}

static entry_t *find(const cm_rollouts_t *r, const char *service)
{
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->e[i].service, service) == 0)
            return (entry_t *)&r->e[i];
    return NULL;
}

static void view_of(cm_rollouts_t *r, const char *service, const cm_ro_t *ro, cm_ro_view_t *v)
{
    memset(v, 0, sizeof *v);
    v->now = uv_now(r->loop);
    v->count = cm_sup_count(r->sup, service);
    cm_sup_def(r->sup, service, v->def);
    int top = ro->n > v->count ? ro->n : v->count;
    for (int i = 0; i <= top && i < CM_SPEC_MAX_INST; i++)
        cm_sup_inst(r->sup, service, i, &v->inst[i]);
    v->reg_index = cm_registry_service_index(r->reg, service);
    v->watchers_past = cm_registry_nwatchers_past(r->reg, service, ro->pub_index, &v->watchers);
    v->gateways_past = cm_sup_gateways_applied(r->sup, service, ro->pub_index, &v->gateways);
}

/* The instance's own last words (not the supervisor's notes) for a failure's reason. */
static void add_last_log(cm_rollouts_t *r, entry_t *e)
{
    char *tail = cm_sup_log_tail(r->sup, e->service, e->ro.cur, 12);
    const char *why = NULL;
    for (char *l = tail ? strtok(tail, "\n") : NULL; l; l = strtok(NULL, "\n"))
        if (!strstr(l, " cmesh: "))
            why = l;
    size_t len = strlen(e->ro.reason);
    if (why && len + 20 < sizeof e->ro.reason)
        snprintf(e->ro.reason + len, sizeof e->ro.reason - len, "; its last log line: %.300s", why);
    free(tail);
}

static void run_action(cm_rollouts_t *r, entry_t *e, cm_ro_action_t a)
{
    int rc = 0;
    if (a.act == CM_RO_ACT_SURGE)
        rc = cm_sup_surge(r->sup, e->service, a.index);
    else if (a.act == CM_RO_ACT_RESTART)
        rc = cm_sup_restart(r->sup, e->service, a.index);
    else if (a.act == CM_RO_ACT_STOP)
        rc = cm_sup_stop_one(r->sup, e->service, a.index);
    e->surge_pending = a.act == CM_RO_ACT_SURGE && rc == -EBUSY;
    if (e->surge_pending)
        return;
    if (rc < 0 && a.act != CM_RO_ACT_STOP && active(&e->ro)) {
        e->ro.state = CM_RO_FAILED;
        snprintf(e->ro.reason, sizeof e->ro.reason, "the supervisor refused instance %d: %s",
                 a.index, strerror(-rc));
        cm_events_add(r->events, "rollout", e->service, -1, NULL, "rollout failed: %s",
                      e->ro.reason);
    }
}

static void emit(cm_rollouts_t *r, entry_t *e)
{
    if (!e->ro.note[0])
        return;
    if (e->ro.state == CM_RO_FAILED)
        add_last_log(r, e),
            snprintf(e->ro.note, sizeof e->ro.note, "rollout failed: %.480s", e->ro.reason);
    char detail[256];
    snprintf(detail, sizeof detail,
             "{\"state\":\"%s\",\"instance\":%d,\"replaced\":%d,\"total\":%d}",
             cm_ro_state_name(e->ro.state), e->ro.cur, e->ro.replaced, e->ro.total);
    cm_events_add(r->events, "rollout", e->service, e->ro.cur, detail, "%s", e->ro.note);
    e->ro.note[0] = '\0';
    if (!active(&e->ro))
        e->finished_ms = wall_ms();
}

static void on_tick(uv_timer_t *t)
{
    cm_rollouts_t *r = t->data;
    int any = 0;
    for (int i = 0; i < r->n; i++) {
        entry_t *e = &r->e[i];
        if (!active(&e->ro))
            continue;
        if (e->surge_pending) { /* not stepped until the surge runs: its slot is busy */
            run_action(r, e, (cm_ro_action_t){CM_RO_ACT_SURGE, e->ro.n});
            any = 1;
            continue;
        }
        cm_ro_view_t v;
        view_of(r, e->service, &e->ro, &v);
        cm_ro_action_t a = cm_ro_step(&e->ro, &v);
        emit(r, e);
        run_action(r, e, a);
        any |= active(&e->ro);
    }
    if (!any)
        uv_timer_stop(&r->tick);
}

int cm_rollouts_new(uv_loop_t *loop, cm_sup_t *sup, cm_registry_t *reg, cm_events_t *events,
                    cm_rollouts_t **out)
{
    cm_rollouts_t *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->loop = loop;
    r->sup = sup;
    r->reg = reg;
    r->events = events;
    uv_timer_init(loop, &r->tick);
    r->tick.data = r;
    *out = r;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

void cm_rollouts_free(cm_rollouts_t *r)
{
    if (r)
        uv_close((uv_handle_t *)&r->tick, on_closed);
}

int cm_rollouts_start(cm_rollouts_t *r, const char *service)
{
    if (r->shutdown)
        return -ESHUTDOWN;
    if (cm_sup_count(r->sup, service) < 0)
        return -ENOENT;
    if (strcmp(service, CM_SPEC_GATEWAY) == 0)
        return -EINVAL;
    entry_t *e = find(r, service);
    if (e && active(&e->ro))
        return -EBUSY;
    if (!e) {
        if (r->n >= (int)(sizeof r->e / sizeof r->e[0]))
            return -ENOSPC;
        e = &r->e[r->n++];
        snprintf(e->service, sizeof e->service, "%s", service);
    }
    cm_ro_t fresh = {0};
    cm_ro_view_t v;
    view_of(r, service, &fresh, &v);
    e->started_ms = wall_ms();
    e->finished_ms = 0;
    cm_ro_action_t a = cm_ro_begin(&e->ro, &v, cm_sup_rollout_ms(r->sup, service));
    e->surge_pending = 0;
    emit(r, e);
    run_action(r, e, a);
    if (active(&e->ro) && !uv_is_active((uv_handle_t *)&r->tick))
        uv_timer_start(&r->tick, on_tick, CM_RO_TICK_MS, CM_RO_TICK_MS);
    return 0;
}

int cm_rollouts_running(const cm_rollouts_t *r, const char *service)
{
    const entry_t *e = find(r, service);
    return e && active(&e->ro);
}

void cm_rollouts_shutdown(cm_rollouts_t *r)
{
    r->shutdown = 1;
    uv_timer_stop(&r->tick);
    for (int i = 0; i < r->n; i++)
        if (active(&r->e[i].ro)) {
            r->e[i].ro.state = CM_RO_FAILED;
            snprintf(r->e[i].ro.reason, sizeof r->e[i].ro.reason, "the control plane is stopping");
            r->e[i].finished_ms = wall_ms();
            cm_events_add(r->events, "rollout", r->e[i].service, -1, NULL,
                          "rollout stopped: the control plane is stopping");
        }
}

void cm_rollouts_render(const cm_rollouts_t *r, const char *service, cm_buf_t *out)
{
    const entry_t *e = find(r, service);
    if (!e) {
        cm_buf_append_str(out, "null");
        return;
    }
    const cm_ro_t *ro = &e->ro;
    cm_buf_appendf(out,
                   "{\"state\":\"%s\",\"instance\":%d,\"replaced\":%d,\"total\":%d,"
                   "\"started_ms\":%lld,\"finished_ms\":",
                   cm_ro_state_name(ro->state), ro->cur, ro->replaced, ro->total,
                   (long long)e->started_ms);
    if (e->finished_ms)
        cm_buf_appendf(out, "%lld", (long long)e->finished_ms);
    else
        cm_buf_append_str(out, "null");
    cm_buf_append_str(out, ",\"reason\":");
    if (ro->reason[0])
        cm_json_str(out, ro->reason, strlen(ro->reason));
    else
        cm_buf_append_str(out, "null");
    cm_buf_append_str(out, "}");
}
