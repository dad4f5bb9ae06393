/* control/autoscale.c: the autoscaler's decisions (see autoscale.h). Low level: windows
 * of timed values; then the decision of one tick; then rendering; then the set of every
 * autoscaled service of a spec, applied through the hooks up.c hands down. */
#include "control/autoscale.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

/* Slots per window: ticks come a little late on a busy loop, so a stable window may hold
 * more samples than stable_window / tick; twice the most the spec allows is plenty. */
#define RING (2 * CM_AUTOSCALE_HIST)
#define FLAPS                                                                                      \
    64               /* direction changes remembered (the budget is at most 100 per window,        \
                        but each needs a tick of its own and windows are short) */
#define EPSILON 1e-9 /* 16.0000001 / 8 must not ceil to 3 */

/* ---------------------------------------------------------------------------------- */
/* Windows                                                                            */
/* ---------------------------------------------------------------------------------- */

typedef struct ring {
    uint64_t t[RING];
    double v[RING];
    int head, n;
} ring_t;

static void ring_push(ring_t *r, uint64_t t, double v)
{
    if (r->n == RING) { /* full: the oldest goes */
        r->head = (r->head + 1) % RING;
        r->n--;
    }
    int i = (r->head + r->n) % RING;
    r->t[i] = t;
    r->v[i] = v;
    r->n++;
}

/* Drops what is older than the window (now - window, now]. */
static void ring_trim(ring_t *r, uint64_t now, uint64_t window)
{
    while (r->n > 0 && r->t[r->head] + window <= now) {
        r->head = (r->head + 1) % RING;
        r->n--;
    }
}

static double ring_mean(const ring_t *r, uint64_t now, uint64_t window)
{
    double sum = 0;
    int n = 0;
    for (int k = 0; k < r->n; k++) {
        int i = (r->head + k) % RING;
        if (r->t[i] + window > now)
            sum += r->v[i], n++;
    }
    return n ? sum / n : 0;
}

static double ring_max(const ring_t *r)
{
    double m = 0;
    for (int k = 0; k < r->n; k++)
        if (r->v[(r->head + k) % RING] > m)
            m = r->v[(r->head + k) % RING];
    return m;
}

struct cm_as_svc {
    const cm_autoscale_spec_t *spec;
    ring_t load;           /* L per tick, over the stable window */
    ring_t recs;           /* recommendations, over the stable window */
    uint64_t since_ms;     /* the first tick: a window is whole only after this + window */
    int started;           /* since_ms is set */
    uint64_t demand_ms;    /* the last tick (or wake) with demand */
    int has_demand;        /* demand_ms is set */
    int panicking;         /* Knative's panic mode */
    uint64_t over_ms;      /* the last tick over the panic threshold */
    int panic_max;         /* the highest count of this panic: never less while it lasts */
    int last_dir;          /* direction of the last change: +1 up, -1 down, 0 none yet */
    uint64_t flips[FLAPS]; /* times of direction changes, oldest first */
    int nflips;
    int pinned; /* -1 automatic */
};

int cm_as_svc_new(const cm_autoscale_spec_t *spec, cm_as_svc_t **out)
{
    cm_as_svc_t *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    st->spec = spec;
    st->pinned = -1;
    *out = st;
    return 0;
}

void cm_as_svc_free(cm_as_svc_t *st)
{
    free(st);
}

/* ---------------------------------------------------------------------------------- */
/* One tick                                                                           */
/* ---------------------------------------------------------------------------------- */

static int ceil_div(double load, double target)
{
    double q = load / target;
    if (q <= EPSILON)
        return 0;
    double c = ceil(q - EPSILON);
    return c > CM_SPEC_MAX_INST * 1000.0 ? CM_SPEC_MAX_INST * 1000 : (int)c;
}

static int clamp(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static int flips_in_window(cm_as_svc_t *st, uint64_t now)
{
    int k = 0;
    while (k < st->nflips && st->flips[k] + st->spec->stable_ms <= now)
        k++;
    memmove(st->flips, st->flips + k, sizeof st->flips[0] * (size_t)(st->nflips - k));
    st->nflips -= k;
    return st->nflips;
}

void cm_as_note_demand(cm_as_svc_t *st, uint64_t now_ms)
{
    st->demand_ms = now_ms;
    st->has_demand = 1;
    if (!st->started)
        st->since_ms = now_ms, st->started = 1;
    ring_trim(&st->recs, now_ms, st->spec->stable_ms);
    ring_push(&st->recs, now_ms, st->spec->min > 1 ? st->spec->min : 1);
}

void cm_as_pin(cm_as_svc_t *st, int count)
{
    st->pinned = count;
}

void cm_as_decide(cm_as_svc_t *st, const cm_as_input_t *in, uint64_t now, cm_as_decision_t *d)
{
    const cm_autoscale_spec_t *sp = st->spec;
    int cur = in->desired;
    memset(d, 0, sizeof *d);
    d->now_ms = now;
    d->in = *in;
    d->pinned = st->pinned;
    d->desired = cur;
    if (!st->started)
        st->since_ms = now, st->started = 1;
    if (in->valid) {
        ring_trim(&st->load, now, sp->stable_ms);
        ring_push(&st->load, now, in->load > 0 ? in->load : 0);
        if (in->load > 0)
            st->demand_ms = now, st->has_demand = 1;
    }
    d->stable_load = ring_mean(&st->load, now, sp->stable_ms);
    d->panic_load = ring_mean(&st->load, now, sp->panic_ms);
    d->stable_n = ceil_div(d->stable_load, sp->target);
    d->panic_n = ceil_div(d->panic_load, sp->target);

    /* panic: the short window's demand at threshold x what the ready ones can take (at
     * least one instance's worth, as Knative: no ready instance at all is not infinite
     * demand); it lasts until a whole stable window passed without it */
    int ready = in->ready > 0 ? in->ready : 1;
    d->over_panic =
        in->valid && d->panic_load > 0 && d->panic_load >= sp->panic_threshold * ready * sp->target;
    if (d->over_panic) {
        if (!st->panicking)
            st->panicking = 1, st->panic_max = 0;
        st->over_ms = now;
    } else if (st->panicking && st->over_ms + sp->stable_ms <= now) {
        st->panicking = 0;
        st->panic_max = 0;
    }
    d->panicking = st->panicking;

    cm_as_reason_t why = CM_AS_TARGET;
    int raw = d->stable_n;
    if (st->panicking && d->panic_n > raw)
        raw = d->panic_n;
    int rec = clamp(raw, sp->min, sp->max);
    if (rec != raw)
        why = raw < sp->min ? CM_AS_MIN : CM_AS_MAX;
    if (st->panicking) { /* never down while panicking */
        if (rec < st->panic_max)
            rec = st->panic_max;
        if (rec < cur && cur <= sp->max)
            rec = cur;
        st->panic_max = rec;
        if (rec > cur || why == CM_AS_TARGET)
            why = CM_AS_PANIC;
    }
    /* the idle test comes before the window is recorded: a whole window without demand
     * (and a whole window of history) is the one way down to min without the window's
     * highest recommendation, which demand older than the window made */
    int idle = in->valid && now - st->since_ms >= sp->stable_ms &&
               (!st->has_demand || st->demand_ms + sp->stable_ms <= now);
    if (rec == 0 && !idle) /* 0 only after a whole window without demand */
        rec = 1, why = CM_AS_STABLE_WINDOW;
    if (in->valid) {
        ring_trim(&st->recs, now, sp->stable_ms);
        ring_push(&st->recs, now, rec);
    }
    d->recommended = rec;
    d->window_max = (int)ring_max(&st->recs);
    if (d->window_max < rec)
        d->window_max = rec;

    /* scale-down is held to the window's highest recommendation (never below it while
     * the count is above it); scale-up follows this tick's */
    int want = rec;
    if (idle && !st->panicking)
        want = sp->min, why = CM_AS_IDLE;
    else if (d->window_max > rec) {
        int held = d->window_max < cur ? d->window_max : cur;
        if (held > want)
            want = held, why = CM_AS_STABLE_WINDOW;
    }

    if (st->pinned >= 0) {
        d->desired = st->pinned;
        d->reason = CM_AS_PINNED;
        return;
    }
    if (!in->valid) {
        d->reason = CM_AS_NO_DATA;
        return;
    }
    if (in->rollout) { /* before tolerance and flaps: a held count spends no budget */
        d->wanted = want;
        d->reason = CM_AS_ROLLOUT;
        return;
    }
    if (want != cur && cur > 0 && !st->panicking && !idle) {
        double ratio = d->stable_load / (cur * sp->target);
        if (fabs(ratio - 1) <= sp->tolerance && cur >= sp->min && cur <= sp->max) {
            d->reason = CM_AS_TOLERANCE;
            return;
        }
    }
    if (want != cur) {
        int dir = want > cur ? 1 : -1;
        int flip = st->last_dir != 0 && dir != st->last_dir;
        /* a real panic may always go up; everything else spends the budget */
        if (flip && !(st->panicking && dir > 0) && flips_in_window(st, now) >= sp->flap_budget) {
            d->reason = CM_AS_FLAP_BUDGET;
            return;
        }
        if (flip && st->nflips < FLAPS)
            st->flips[st->nflips++] = now;
        st->last_dir = dir;
        if (st->panicking)
            st->panic_max = want > st->panic_max ? want : st->panic_max;
    }
    d->desired = want;
    d->reason = why;
}

int cm_autoscale_capacity(const cm_reg_inst_t *inst, int n, int desired, int *surge)
{
    int ready = 0, extra = 0;
    for (int i = 0; i < n; i++) {
        const cm_reg_inst_t *in = &inst[i];
        int running = in->pid > 0 && in->state != CM_INST_DRAINING && in->state != CM_INST_STOPPED;
        if (!running || in->ext_id[0])
            continue;
        if (in->index >= desired)
            extra++;
        else if (in->state == CM_INST_READY)
            ready++;
    }
    if (surge)
        *surge = extra;
    return ready;
}

/* ---------------------------------------------------------------------------------- */
/* Rendering                                                                          */
/* ---------------------------------------------------------------------------------- */

static const char *const reason_names[] = {
    [CM_AS_TARGET] = "target",
    [CM_AS_MIN] = "min",
    [CM_AS_MAX] = "max",
    [CM_AS_TOLERANCE] = "tolerance",
    [CM_AS_PANIC] = "panic",
    [CM_AS_STABLE_WINDOW] = "stable_window",
    [CM_AS_FLAP_BUDGET] = "flap_budget",
    [CM_AS_IDLE] = "idle",
    [CM_AS_PINNED] = "pinned",
    [CM_AS_NO_DATA] = "no_data",
    [CM_AS_WAKE] = "wake",
    [CM_AS_ROLLOUT] = "rollout",
};

const char *cm_as_reason_name(cm_as_reason_t r)
{
    return (unsigned)r < sizeof reason_names / sizeof reason_names[0] ? reason_names[r] : "?";
}

void cm_as_render_json(const cm_as_decision_t *d, const cm_autoscale_spec_t *sp,
                       const char *service, cm_buf_t *out)
{
    cm_buf_append_str(out, "{\"service\":");
    cm_json_str(out, service, strlen(service));
    cm_buf_appendf(out,
                   ",\"now_ms\":%llu,\"inputs\":{\"load\":%.3f,\"ready\":%d,\"surge\":%d,"
                   "\"desired\":%d,\"valid\":%s},"
                   "\"policy\":{\"min\":%d,\"max\":%d,\"target\":%g,\"tolerance\":%g,"
                   "\"stable_window_ms\":%llu,\"panic_window_ms\":%llu,\"tick_ms\":%llu,"
                   "\"panic_threshold\":%g,\"flap_budget\":%d},"
                   "\"stable_load\":%.3f,\"panic_load\":%.3f,\"stable_n\":%d,\"panic_n\":%d,"
                   "\"over_panic\":%s,\"panicking\":%s,\"recommended\":%d,\"window_max\":%d,"
                   "\"desired\":%d,\"reason\":\"%s\",\"wanted\":%d,\"pinned\":",
                   (unsigned long long)d->now_ms, d->in.load, d->in.ready, d->in.surge,
                   d->in.desired, d->in.valid ? "true" : "false", sp->min, sp->max, sp->target,
                   sp->tolerance, (unsigned long long)sp->stable_ms,
                   (unsigned long long)sp->panic_ms, (unsigned long long)sp->tick_ms,
                   sp->panic_threshold, sp->flap_budget, d->stable_load, d->panic_load, d->stable_n,
                   d->panic_n, d->over_panic ? "true" : "false", d->panicking ? "true" : "false",
                   d->recommended, d->window_max, d->desired, cm_as_reason_name(d->reason),
                   d->reason == CM_AS_ROLLOUT ? d->wanted : d->desired);
    if (d->pinned >= 0)
        cm_buf_appendf(out, "%d}", d->pinned);
    else
        cm_buf_append_str(out, "null}");
}

static const char *reason_text(cm_as_reason_t r)
{
    switch (r) {
    case CM_AS_TARGET:
        return "the formula";
    case CM_AS_MIN:
        return "held at min";
    case CM_AS_MAX:
        return "held at max";
    case CM_AS_TOLERANCE:
        return "within the tolerance: count kept";
    case CM_AS_PANIC:
        return "panic: up at once, never down";
    case CM_AS_STABLE_WINDOW:
        return "the stable window's highest recommendation";
    case CM_AS_FLAP_BUDGET:
        return "flap budget spent: no change of direction";
    case CM_AS_IDLE:
        return "no demand for a whole stable window: min";
    case CM_AS_PINNED:
        return "pinned (cmesh scale SERVICE auto hands it back)";
    case CM_AS_NO_DATA:
        return "no load measured: count kept";
    case CM_AS_WAKE:
        return "woken by a request";
    case CM_AS_ROLLOUT:
        return "a rollout of the service runs: count held until it ends";
    }
    return "?";
}

void cm_as_render_text(const cm_as_decision_t *d, const cm_autoscale_spec_t *sp,
                       const char *service, cm_buf_t *out)
{
    double cap = (d->in.ready > 0 ? d->in.ready : 1) * sp->target * sp->panic_threshold;
    cm_buf_appendf(
        out,
        "%s: %d -> %d instances (%s: %s)\n"
        "  inputs:  in-flight L = %.2f this tick; %.2f over the stable window (%llu "
        "ms), %.2f over the panic window (%llu ms); %d ready, %d surge (not "
        "capacity), desired %d\n"
        "  formula: ceil(L / target) = ceil(%.2f / %g) = %d (stable), ceil(%.2f / "
        "%g) = %d (panic)\n"
        "  panic:   %.2f >= %g x %d ready x %g = %.2f? %s%s\n"
        "  limits:  min %d, max %d, tolerance %g%% (%.2f / (%d x %g) = %.2f), flap "
        "budget %d per window\n"
        "  window:  recommended %d now, highest over the stable window %d\n"
        "  result:  %d (%s)\n",
        service, d->in.desired, d->desired, cm_as_reason_name(d->reason), reason_text(d->reason),
        d->in.load, d->stable_load, (unsigned long long)sp->stable_ms, d->panic_load,
        (unsigned long long)sp->panic_ms, d->in.ready, d->in.surge, d->in.desired, d->stable_load,
        sp->target, d->stable_n, d->panic_load, sp->target, d->panic_n, d->panic_load,
        sp->panic_threshold, d->in.ready > 0 ? d->in.ready : 1, sp->target, cap,
        d->over_panic ? "yes" : "no", d->panicking ? " (panicking)" : "", sp->min, sp->max,
        sp->tolerance * 100, d->stable_load, d->in.desired, sp->target,
        d->in.desired > 0 ? d->stable_load / (d->in.desired * sp->target) : 0.0, sp->flap_budget,
        d->recommended, d->window_max, d->desired, cm_as_reason_name(d->reason));
    if (d->reason == CM_AS_ROLLOUT)
        cm_buf_appendf(out, "  rollout: in progress: held at %d (without it: %d)\n", d->desired,
                       d->wanted);
}

/* ---------------------------------------------------------------------------------- */
/* The set of a spec's autoscaled services                                            */
/* ---------------------------------------------------------------------------------- */

typedef struct as_entry {
    const cm_svc_spec_t *svc;
    cm_as_svc_t *st; /* NULL: not autoscaled */
    cm_as_decision_t last;
    int has_last;
} as_entry_t;

struct cm_autoscale {
    const cm_spec_t *spec;
    cm_autoscale_hooks_t hooks;
    as_entry_t e[CM_SPEC_MAX_SVCS];
    int n;
};

int cm_autoscale_new(const cm_spec_t *spec, const cm_autoscale_hooks_t *hooks, cm_autoscale_t **out)
{
    cm_autoscale_t *as = calloc(1, sizeof *as);
    if (!as)
        return -ENOMEM;
    as->spec = spec;
    as->hooks = *hooks;
    for (int i = 0; i < spec->nsvcs && i < CM_SPEC_MAX_SVCS; i++) {
        as->e[i].svc = &spec->svcs[i];
        if (spec->svcs[i].autoscale.on &&
            cm_as_svc_new(&spec->svcs[i].autoscale, &as->e[i].st) < 0) {
            as->n = i;
            cm_autoscale_free(as);
            return -ENOMEM;
        }
        as->n = i + 1;
    }
    *out = as;
    return 0;
}

void cm_autoscale_free(cm_autoscale_t *as)
{
    if (!as)
        return;
    for (int i = 0; i < as->n; i++)
        cm_as_svc_free(as->e[i].st);
    free(as);
}

/* Everything that makes a decision but the line it was written on. */
static int policy_same(const cm_autoscale_spec_t *a, const cm_autoscale_spec_t *b)
{
    return a->min == b->min && a->max == b->max && a->target == b->target &&
           a->tolerance == b->tolerance && a->stable_ms == b->stable_ms &&
           a->panic_ms == b->panic_ms && a->tick_ms == b->tick_ms &&
           a->panic_threshold == b->panic_threshold && a->flap_budget == b->flap_budget;
}

static as_entry_t *entry(const cm_autoscale_t *as, const char *service);

int cm_autoscale_respec(cm_autoscale_t *as, const cm_spec_t *spec)
{
    as_entry_t ne[CM_SPEC_MAX_SVCS];
    const char *what[CM_SPEC_MAX_SVCS];
    int n = spec->nsvcs < CM_SPEC_MAX_SVCS ? spec->nsvcs : CM_SPEC_MAX_SVCS;
    memset(ne, 0, sizeof ne);
    /* every allocation first, so that a failure changes nothing */
    for (int i = 0; i < n; i++) {
        const cm_svc_spec_t *sp = &spec->svcs[i];
        const as_entry_t *old = entry(as, sp->name);
        ne[i].svc = sp;
        what[i] = NULL;
        if (!sp->autoscale.on)
            continue;
        if (old && old->st && policy_same(old->st->spec, &sp->autoscale))
            continue; /* moved over below */
        if (cm_as_svc_new(&sp->autoscale, &ne[i].st) < 0) {
            for (int k = 0; k < i; k++)
                cm_as_svc_free(ne[k].st);
            return -ENOMEM;
        }
        if (old && old->st)
            ne[i].st->pinned = old->st->pinned,
            what[i] = "autoscale: policy changed: its windows start over";
        else
            what[i] = "autoscale: on: the autoscaler decides its count from now";
    }
    for (int i = 0; i < n; i++) {
        as_entry_t *old = entry(as, spec->svcs[i].name);
        if (!old || !old->st)
            continue;
        if (!ne[i].st) { /* kept as it was, or autoscale: removed */
            if (spec->svcs[i].autoscale.on) {
                ne[i].st = old->st;
                ne[i].st->spec = &spec->svcs[i].autoscale;
                ne[i].last = old->last;
                ne[i].has_last = old->has_last;
            } else {
                cm_as_svc_free(old->st);
                what[i] = "autoscale: off: the autoscaler no longer changes its count";
            }
        } else
            cm_as_svc_free(old->st);
        old->st = NULL;
    }
    for (int i = 0; i < as->n; i++)
        cm_as_svc_free(as->e[i].st); /* services that went away */
    memcpy(as->e, ne, sizeof ne);
    as->n = n;
    as->spec = spec;
    for (int i = 0; i < n; i++)
        if (what[i])
            cm_events_add(as->hooks.events, "scale", spec->svcs[i].name, -1, NULL, "%s (reload)",
                          what[i]);
    return 0;
}

static as_entry_t *entry(const cm_autoscale_t *as, const char *service)
{
    for (int i = 0; i < as->n; i++)
        if (strcmp(as->e[i].svc->name, service) == 0)
            return (as_entry_t *)&as->e[i];
    return NULL;
}

int cm_autoscale_on(const cm_autoscale_t *as, const char *service)
{
    const as_entry_t *e = entry(as, service);
    return e && e->st;
}

/* The count changed: applied, and recorded with its inputs. */
static int apply(cm_autoscale_t *as, as_entry_t *e, const cm_as_decision_t *d)
{
    int rc = as->hooks.scale(as->hooks.arg, e->svc->name, d->desired);
    cm_buf_t detail = {0};
    cm_as_render_json(d, &e->svc->autoscale, e->svc->name, &detail);
    cm_events_add(as->hooks.events, "scale", e->svc->name, -1, detail.data ? detail.data : "{}",
                  "%d -> %d instances (%s): L %.2f stable, %.2f panic, target %g, %d ready%s%s",
                  d->in.desired, d->desired, cm_as_reason_name(d->reason), d->stable_load,
                  d->panic_load, e->svc->autoscale.target, d->in.ready, rc < 0 ? ": failed: " : "",
                  rc < 0 ? strerror(-rc) : "");
    cm_buf_free(&detail);
    return rc;
}

int cm_autoscale_tick(cm_autoscale_t *as, const char *service, const cm_as_input_t *in,
                      cm_as_decision_t *out)
{
    as_entry_t *e = entry(as, service);
    if (!e || !e->st)
        return -ENOENT;
    cm_as_input_t with = *in;
    with.rollout = as->hooks.rolling && as->hooks.rolling(as->hooks.arg, service) == 1;
    /* a hold is recorded when it starts to matter, not every tick it lasts */
    int held_before = e->has_last && e->last.reason == CM_AS_ROLLOUT ? e->last.wanted : -1;
    cm_as_decide(e->st, &with, as->hooks.now_ms(as->hooks.arg), &e->last);
    e->has_last = 1;
    if (out)
        *out = e->last;
    const cm_as_decision_t *d = &e->last;
    if (d->reason == CM_AS_ROLLOUT && d->wanted != d->desired && d->wanted != held_before) {
        cm_buf_t detail = {0};
        cm_as_render_json(d, &e->svc->autoscale, e->svc->name, &detail);
        cm_events_add(as->hooks.events, "scale", e->svc->name, -1, detail.data ? detail.data : "{}",
                      "held at %d instances (rollout): would be %d (L %.2f stable, %.2f panic, "
                      "target %g, %d ready); acts when the rollout ends",
                      d->desired, d->wanted, d->stable_load, d->panic_load,
                      e->svc->autoscale.target, d->in.ready);
        cm_buf_free(&detail);
    }
    if (d->desired == in->desired || d->reason == CM_AS_PINNED)
        return 0;
    return apply(as, e, &e->last);
}

int cm_autoscale_wake(cm_autoscale_t *as, const char *service)
{
    as_entry_t *e = entry(as, service);
    if (!e)
        return -ENOENT;
    uint64_t now = as->hooks.now_ms(as->hooks.arg);
    if (e->st)
        cm_as_note_demand(e->st, now);
    int cur = as->hooks.count(as->hooks.arg, service);
    if (cur != 0 || (e->st && e->st->pinned == 0))
        return 0; /* running, or pinned at 0 by hand: a wake does not overrule the user */
    cm_as_decision_t d = {.now_ms = now,
                          .in = {.desired = 0, .valid = 1},
                          .recommended = 1,
                          .window_max = 1,
                          .desired = 1,
                          .reason = CM_AS_WAKE,
                          .pinned = -1};
    int rc = apply(as, e, &d);
    if (e->st) {
        e->last = d;
        e->has_last = 1;
    }
    return rc < 0 ? rc : 1;
}

int cm_autoscale_pin(cm_autoscale_t *as, const char *service, int count)
{
    as_entry_t *e = entry(as, service);
    if (!e || !e->st)
        return -ENOENT;
    if (count < -1 || count > CM_SPEC_MAX_INST)
        return -EINVAL;
    cm_as_pin(e->st, count);
    if (count < 0) {
        cm_events_add(as->hooks.events, "scale", service, -1, NULL,
                      "autoscaling handed back (cmesh scale %s auto)", service);
        return 0;
    }
    int rc = as->hooks.scale(as->hooks.arg, service, count);
    cm_events_add(as->hooks.events, "scale", service, -1, NULL,
                  "pinned at %d instances: autoscaling off until `cmesh scale %s auto`%s%s", count,
                  service, rc < 0 ? ": failed: " : "", rc < 0 ? strerror(-rc) : "");
    return rc;
}

int cm_autoscale_pinned(const cm_autoscale_t *as, const char *service)
{
    const as_entry_t *e = entry(as, service);
    return e && e->st ? e->st->pinned : -1;
}

int cm_autoscale_last(const cm_autoscale_t *as, const char *service, const cm_as_decision_t **d)
{
    const as_entry_t *e = entry(as, service);
    if (!e || !e->st || !e->has_last)
        return -ENOENT;
    *d = &e->last;
    return 0;
}
