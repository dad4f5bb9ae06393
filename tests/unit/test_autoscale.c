/* Unit tests for control/autoscale: the decision on a virtual clock (1 s ticks), as
 * tables of load phases: steady load, step up, step down (waits the window, takes the
 * highest), spike (panic), oscillation (flap budget), rollout in progress (surge not
 * capacity; a running rollout holds the count), an instance that never becomes ready,
 * min 0 idle -> 0 and wake -> 1, pin, respec on a reload. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "control/autoscale.h"

#define TICK 1000

/* min 2, max 8, target 10 in flight per instance, 10 %, stable 10 s, panic 3 s, 1 s */
static cm_autoscale_spec_t policy(void)
{
    return (cm_autoscale_spec_t){.on = 1,
                                 .min = 2,
                                 .max = 8,
                                 .target = 10,
                                 .tolerance = 0.10,
                                 .stable_ms = 10000,
                                 .panic_ms = 3000,
                                 .tick_ms = TICK,
                                 .panic_threshold = 2.0,
                                 .flap_budget = 2};
}

/* A phase: `ticks` ticks at `load`; ready = desired - unready (never below 0). At its
 * end the count must be in [lo, hi] (and, with reason, the last reason is that one);
 * throughout it the count stays in [always_lo, always_hi] (0, 0: no bound). */
typedef struct phase {
    int ticks;
    double load;
    int unready;
    int lo, hi;
    const char *reason;
    int always_lo, always_hi;
} phase_t;

typedef struct sim {
    cm_as_svc_t *st;
    uint64_t now;
    int desired;
    int changes, flips, last_dir;
    int rollout; /* a rollout of the service runs (the inputs say so) */
    cm_as_decision_t d;
} sim_t;

static void sim_init(sim_t *s, const cm_autoscale_spec_t *sp, int desired)
{
    memset(s, 0, sizeof *s);
    cr_assert_eq(cm_as_svc_new(sp, &s->st), 0);
    s->now = 100000;
    s->desired = desired;
}

static void sim_tick(sim_t *s, double load, int unready)
{
    int ready = s->desired - unready;
    cm_as_input_t in = {.load = load,
                        .ready = ready > 0 ? ready : 0,
                        .desired = s->desired,
                        .valid = 1,
                        .rollout = s->rollout};
    s->now += TICK;
    cm_as_decide(s->st, &in, s->now, &s->d);
    if (s->d.desired != s->desired) {
        int dir = s->d.desired > s->desired ? 1 : -1;
        if (s->last_dir && dir != s->last_dir)
            s->flips++;
        s->last_dir = dir;
        s->changes++;
    }
    s->desired = s->d.desired;
}

static void run(sim_t *s, const phase_t *ph, int n)
{
    for (int i = 0; i < n; i++) {
        for (int t = 0; t < ph[i].ticks; t++) {
            sim_tick(s, ph[i].load, ph[i].unready);
            if (ph[i].always_hi)
                cr_assert(s->desired >= ph[i].always_lo && s->desired <= ph[i].always_hi,
                          "phase %d tick %d: %d instances, outside %d..%d (%s)", i, t, s->desired,
                          ph[i].always_lo, ph[i].always_hi, cm_as_reason_name(s->d.reason));
        }
        cr_assert(s->desired >= ph[i].lo && s->desired <= ph[i].hi,
                  "phase %d: %d instances, want %d..%d (%s)", i, s->desired, ph[i].lo, ph[i].hi,
                  cm_as_reason_name(s->d.reason));
        if (ph[i].reason)
            cr_assert_str_eq(cm_as_reason_name(s->d.reason), ph[i].reason, "phase %d", i);
    }
}

Test(autoscale, steady_load_keeps_the_count)
{
    cm_autoscale_spec_t sp = policy();
    sim_t s;
    sim_init(&s, &sp, 4);
    const phase_t ph[] = {
        {60, 40, 0, 4, 4, "target", 4, 4}, /* exactly 4 x target */
        {60, 42.5, 0, 4, 4, NULL, 4, 4},   /* 6 % over: within the tolerance */
        {1, 42.5, 0, 4, 4, "tolerance", 0, 0},
    };
    run(&s, ph, 3);
    cr_assert_eq(s.changes, 0);
    cm_as_svc_free(s.st);
}

Test(autoscale, step_up_follows_the_stable_mean_to_ceil_load_over_target)
{
    cm_autoscale_spec_t sp = policy();
    sim_t s;
    sim_init(&s, &sp, 2);
    const phase_t ph[] = {
        {20, 20, 0, 2, 2, NULL, 2, 2},
        /* 35 in flight: 1.75 x capacity, under panic; ceil(35 / 10) = 4, never more */
        {30, 35, 0, 4, 4, "target", 2, 4},
    };
    run(&s, ph, 2);
    cr_assert_eq(s.d.panicking, 0);
    cr_assert_eq(s.flips, 0);
    cm_as_svc_free(s.st);
}

Test(autoscale, step_down_waits_the_window_and_takes_the_highest)
{
    cm_autoscale_spec_t sp = policy();
    sim_t s;
    sim_init(&s, &sp, 6);
    const phase_t ph[] = {
        {30, 60, 0, 6, 6, NULL, 6, 6},
        /* the load drops to 2 instances' worth: nothing moves for a whole window */
        {10, 20, 0, 6, 6, NULL, 6, 6},
        /* then down, one recommendation at a time, never back up */
        {30, 20, 0, 2, 2, NULL, 2, 6},
    };
    run(&s, ph, 3);
    cr_assert_eq(s.flips, 0);
    cm_as_svc_free(s.st);

    /* every tick of the way down takes the window's highest recommendation */
    sim_init(&s, &sp, 6);
    const phase_t up[] = {{30, 60, 0, 6, 6, NULL, 6, 6}};
    run(&s, up, 1);
    int held = 0;
    for (int t = 0; t < 40; t++) {
        sim_tick(&s, t % 7 == 3 ? 35 : 20, 0); /* bumps inside the window */
        if (s.d.in.desired >= s.d.window_max && !s.d.panicking) {
            cr_assert_eq(s.d.desired, s.d.window_max, "tick %d", t);
            held |= s.d.window_max > s.d.recommended;
        }
    }
    cr_assert(held, "no tick was held by the window");
    cr_assert_eq(s.flips, 0);
    cm_as_svc_free(s.st);
}

Test(autoscale, spike_panics_up_at_once_and_never_down_while_panicking)
{
    cm_autoscale_spec_t sp = policy();
    sim_t s;
    sim_init(&s, &sp, 2);
    const phase_t ph[] = {
        {15, 10, 0, 2, 2, NULL, 2, 2},
        /* 100 in flight against 2 ready x 10: up within the panic window */
        {2, 100, 0, 7, 8, "panic", 2, 8},
        {1, 100, 0, 8, 8, NULL, 0, 0},
        /* gone again: panic holds the count for a whole stable window */
        {7, 0, 0, 8, 8, "panic", 8, 8},
    };
    run(&s, ph, 4);
    cr_assert_eq(s.d.panicking, 1);
    const phase_t after[] = {{40, 0, 0, 2, 2, NULL, 2, 8}};
    run(&s, after, 1);
    cr_assert_eq(s.d.panicking, 0);
    cr_assert_eq(s.flips, 1); /* up, then down once */
    cm_as_svc_free(s.st);
}

Test(autoscale, oscillation_is_bounded_by_the_flap_budget)
{
    cm_autoscale_spec_t sp = policy();
    sp.stable_ms = 4000;
    sp.panic_ms = 2000;
    sp.flap_budget = 1;
    sp.panic_threshold = 100; /* no panic: the budget is what holds */
    sim_t s;
    sim_init(&s, &sp, 2);
    int flap = 0;
    uint64_t flip_at[256];
    int nflip = 0, last = 0;
    for (int cycle = 0; cycle < 12; cycle++)
        for (int t = 0; t < 10; t++) {
            int before = s.desired;
            sim_tick(&s, t < 5 ? 80 : 0, 0);
            flap |= s.d.reason == CM_AS_FLAP_BUDGET;
            if (s.desired != before) {
                int dir = s.desired > before ? 1 : -1;
                if (last && dir != last && nflip < 256)
                    flip_at[nflip++] = s.now;
                last = dir;
            }
        }
    cr_assert(flap, "the budget never held a change");
    /* never more than flap_budget direction changes in any stable window */
    for (int i = 1; i < nflip; i++)
        cr_assert_geq(flip_at[i] - flip_at[i - 1], sp.stable_ms, "flips at %llu and %llu",
                      (unsigned long long)flip_at[i - 1], (unsigned long long)flip_at[i]);
    cm_as_svc_free(s.st);
}

static cm_reg_inst_t inst(int index, cm_inst_state_t st)
{
    cm_reg_inst_t r;
    memset(&r, 0, sizeof r);
    r.index = index;
    r.state = st;
    r.pid = st == CM_INST_STOPPED || st == CM_INST_BACKOFF ? 0 : 1000 + index;
    return r;
}

Test(autoscale, rollout_surge_is_not_capacity_and_no_load_means_no_scale_up)
{
    /* desired 2: the rollout's surge instance at index 2 is ready, 0 is draining */
    cm_reg_inst_t set[] = {inst(0, CM_INST_DRAINING), inst(1, CM_INST_READY),
                           inst(2, CM_INST_READY), inst(3, CM_INST_STARTING)};
    int surge = -1;
    cr_assert_eq(cm_autoscale_capacity(set, 4, 2, &surge), 1);
    cr_assert_eq(surge, 2);
    cm_reg_inst_t all[] = {inst(0, CM_INST_READY), inst(1, CM_INST_READY),
                           inst(2, CM_INST_BACKOFF)};
    cr_assert_eq(cm_autoscale_capacity(all, 3, 2, &surge), 2);
    cr_assert_eq(surge, 0);

    cm_autoscale_spec_t sp = policy();
    sim_t s;
    sim_init(&s, &sp, 2);
    /* no load, one of the two counted instances leaving: nothing to scale up for */
    const phase_t ph[] = {{40, 0, 1, 2, 2, NULL, 2, 2}, {40, 12, 1, 2, 2, NULL, 2, 2}};
    run(&s, ph, 2);
    cr_assert_eq(s.changes, 0);
    cm_as_svc_free(s.st);
}

Test(autoscale, a_running_rollout_holds_the_count_and_it_acts_after)
{
    cm_autoscale_spec_t sp = policy();
    sim_t s;
    sim_init(&s, &sp, 2);
    /* a rollout runs during the first two phases */
    const phase_t during[] = {
        {10, 5, 0, 2, 2, NULL, 2, 2},
        /* load rising to 4 x target (and to panic) while the rollout runs: held */
        {20, 40, 0, 2, 2, "rollout", 2, 2},
    };
    /* the rollout ended: it acts at once (panic: up to what the load asks) */
    const phase_t after[] = {{3, 40, 0, 4, 4, NULL, 2, 4}};
    s.rollout = 1;
    run(&s, during, 2);
    cr_assert_eq(s.changes, 0);
    s.rollout = 0;
    run(&s, after, 1);
    cr_assert_eq(s.changes, 1);
    cm_as_svc_free(s.st);
    /* a held decision says what it would have done */
    sim_init(&s, &sp, 2);
    s.rollout = 1;
    for (int i = 0; i < 5; i++)
        sim_tick(&s, 60, 0);
    cr_assert_eq(s.d.reason, CM_AS_ROLLOUT);
    cr_assert_eq(s.d.desired, 2);
    cr_assert_eq(s.d.wanted, 6);
    cm_buf_t t = {0};
    cm_as_render_text(&s.d, &sp, "users", &t);
    cr_assert(strstr(t.data, "held at 2 (without it: 6)"), "%s", t.data);
    cm_buf_free(&t);
    cm_as_svc_free(s.st);
}

Test(autoscale, an_instance_that_never_becomes_ready_is_not_scaled_around_forever)
{
    cm_autoscale_spec_t sp = policy();
    sim_t s;
    sim_init(&s, &sp, 2);
    /* 30 in flight wants 3; the third never becomes ready: still 3, not more */
    const phase_t ph[] = {{100, 30, 1, 3, 3, NULL, 2, 3}};
    run(&s, ph, 1);
    cm_as_svc_free(s.st);
    /* none ready at all: panic, but only up to what the load asks for */
    sim_init(&s, &sp, 2);
    const phase_t none[] = {{100, 30, 99, 3, 3, NULL, 2, 3}};
    run(&s, none, 1);
    cm_as_svc_free(s.st);
    /* a count below min or above max from elsewhere comes back within the limits */
    sim_init(&s, &sp, 12);
    const phase_t big[] = {{60, 500, 0, 8, 8, "max", 8, 12}};
    run(&s, big, 1);
    cm_as_svc_free(s.st);
}

Test(autoscale, no_data_keeps_the_count)
{
    cm_autoscale_spec_t sp = policy();
    sim_t s;
    sim_init(&s, &sp, 5);
    for (int i = 0; i < 40; i++) {
        cm_as_input_t in = {.ready = 5, .desired = 5, .valid = 0};
        s.now += TICK;
        cm_as_decide(s.st, &in, s.now, &s.d);
        cr_assert_eq(s.d.desired, 5);
        cr_assert_eq(s.d.reason, CM_AS_NO_DATA);
    }
    cm_as_svc_free(s.st);
}

/* The set, on a virtual clock, with a scale hook that records. */
typedef struct world {
    uint64_t now;
    int count[2];
    int calls;
    int rolling; /* a rollout of users runs */
} world_t;

static uint64_t w_now(void *arg)
{
    return ((world_t *)arg)->now;
}

static int w_scale(void *arg, const char *service, int count)
{
    world_t *w = arg;
    w->count[strcmp(service, "users") == 0 ? 0 : 1] = count;
    w->calls++;
    return 0;
}

static int w_count(void *arg, const char *service)
{
    world_t *w = arg;
    return w->count[strcmp(service, "users") == 0 ? 0 : 1];
}

static int w_rolling(void *arg, const char *service)
{
    return ((world_t *)arg)->rolling && strcmp(service, "users") == 0;
}

static void two_services(cm_spec_t *spec, cm_svc_spec_t svcs[2])
{
    memset(spec, 0, sizeof *spec);
    memset(svcs, 0, 2 * sizeof svcs[0]);
    snprintf(svcs[0].name, sizeof svcs[0].name, "users");
    svcs[0].autoscale = policy();
    svcs[0].autoscale.min = 0;
    snprintf(svcs[1].name, sizeof svcs[1].name, "orders");
    svcs[1].instances = 2;
    spec->svcs = svcs;
    spec->nsvcs = 2;
}

static int tick(cm_autoscale_t *as, world_t *w, double load)
{
    w->now += TICK;
    cm_as_input_t in = {.load = load, .ready = w->count[0], .desired = w->count[0], .valid = 1};
    return cm_autoscale_tick(as, "users", &in, NULL);
}

Test(autoscale, min_zero_idles_to_zero_after_a_window_and_wake_brings_one)
{
    cm_spec_t spec;
    cm_svc_spec_t svcs[2];
    two_services(&spec, svcs);
    world_t w = {.now = 5000, .count = {1, 0}};
    cm_events_t *ev;
    cr_assert_eq(cm_events_new(&ev), 0);
    cm_autoscale_hooks_t h = {
        .now_ms = w_now, .scale = w_scale, .count = w_count, .arg = &w, .events = ev};
    cm_autoscale_t *as;
    cr_assert_eq(cm_autoscale_new(&spec, &h, &as), 0);
    cr_assert(cm_autoscale_on(as, "users"));
    cr_assert(!cm_autoscale_on(as, "orders"));
    cr_assert_eq(cm_autoscale_tick(as, "orders", &(cm_as_input_t){0}, NULL), -ENOENT);

    /* some demand, then none: 1 until a whole window without demand, then 0 */
    for (int i = 0; i < 5; i++)
        cr_assert_eq(tick(as, &w, 3), 0);
    for (int i = 0; i < 9; i++) {
        cr_assert_eq(tick(as, &w, 0), 0);
        cr_assert_eq(w.count[0], 1, "tick %d after the demand", i);
    }
    for (int i = 0; i < 2; i++)
        tick(as, &w, 0);
    cr_assert_eq(w.count[0], 0);
    const cm_as_decision_t *d;
    cr_assert_eq(cm_autoscale_last(as, "users", &d), 0);
    cr_assert_eq(d->reason, CM_AS_IDLE);
    cr_assert_gt(cm_events_last(ev), 0);

    /* a request: 1 at once; the wake is demand, so it stays for a window */
    cr_assert_eq(cm_autoscale_wake(as, "users"), 1);
    cr_assert_eq(w.count[0], 1);
    cr_assert_eq(cm_autoscale_wake(as, "users"), 0); /* already up */
    for (int i = 0; i < 9; i++) {
        tick(as, &w, 0);
        cr_assert_eq(w.count[0], 1, "tick %d after the wake", i);
    }
    for (int i = 0; i < 2; i++)
        tick(as, &w, 0);
    cr_assert_eq(w.count[0], 0);
    /* a service without autoscale: is woken too; an unknown one is not */
    cr_assert_eq(cm_autoscale_wake(as, "orders"), 1);
    cr_assert_eq(w.count[1], 1);
    cr_assert_eq(cm_autoscale_wake(as, "nope"), -ENOENT);
    cm_autoscale_free(as);
    cm_events_free(ev);
}

Test(autoscale, pin_holds_the_count_until_handed_back)
{
    cm_spec_t spec;
    cm_svc_spec_t svcs[2];
    two_services(&spec, svcs);
    svcs[0].autoscale.min = 2;
    world_t w = {.now = 5000, .count = {2, 2}};
    cm_autoscale_hooks_t h = {.now_ms = w_now, .scale = w_scale, .count = w_count, .arg = &w};
    cm_autoscale_t *as;
    cr_assert_eq(cm_autoscale_new(&spec, &h, &as), 0);
    cr_assert_eq(cm_autoscale_pin(as, "users", 5), 0);
    cr_assert_eq(w.count[0], 5);
    cr_assert_eq(cm_autoscale_pinned(as, "users"), 5);
    for (int i = 0; i < 30; i++)
        tick(as, &w, 0);
    cr_assert_eq(w.count[0], 5);
    const cm_as_decision_t *d;
    cr_assert_eq(cm_autoscale_last(as, "users", &d), 0);
    cr_assert_eq(d->reason, CM_AS_PINNED);
    cr_assert_eq(cm_autoscale_pin(as, "users", 65), -EINVAL);
    cr_assert_eq(cm_autoscale_pin(as, "orders", 3), -ENOENT);
    cr_assert_eq(cm_autoscale_pin(as, "users", -1), 0);
    for (int i = 0; i < 30; i++)
        tick(as, &w, 0);
    cr_assert_eq(w.count[0], 2);
    cm_autoscale_free(as);
}

Test(autoscale, decision_renders_as_json_and_text)
{
    cm_autoscale_spec_t sp = policy();
    sim_t s;
    sim_init(&s, &sp, 2);
    for (int i = 0; i < 3; i++)
        sim_tick(&s, 100, 0);
    cm_buf_t b = {0};
    cm_as_render_json(&s.d, &sp, "users", &b);
    cr_assert(strstr(b.data, "\"service\":\"users\""), "%s", b.data);
    cr_assert(strstr(b.data, "\"panicking\":true"), "%s", b.data);
    cr_assert(strstr(b.data, "\"inputs\":{\"load\":100.000"), "%s", b.data);
    cm_buf_free(&b);
    cm_buf_t t = {0};
    cm_as_render_text(&s.d, &sp, "users", &t);
    cr_assert(strstr(t.data, "ceil(L / target)"), "%s", t.data);
    cr_assert(strstr(t.data, "result:"), "%s", t.data);
    cm_buf_free(&t);
    cm_as_svc_free(s.st);
}

/* How many times text occurs in the recorded events. */
static int events_with(cm_events_t *ev, const char *text)
{
    cm_buf_t b = {0};
    cm_events_render(ev, 0, 1000, &b);
    int n = 0;
    for (const char *p = b.data; p && (p = strstr(p, text)); p += strlen(text))
        n++;
    cm_buf_free(&b);
    return n;
}

Test(autoscale, the_rollout_hook_holds_and_is_recorded_once)
{
    cm_spec_t spec;
    cm_svc_spec_t svcs[2];
    two_services(&spec, svcs);
    svcs[0].autoscale.min = 2;
    world_t w = {.now = 5000, .count = {2, 2}, .rolling = 1};
    cm_events_t *ev;
    cr_assert_eq(cm_events_new(&ev), 0);
    cm_autoscale_hooks_t h = {.now_ms = w_now,
                              .scale = w_scale,
                              .count = w_count,
                              .rolling = w_rolling,
                              .arg = &w,
                              .events = ev};
    cm_autoscale_t *as;
    cr_assert_eq(cm_autoscale_new(&spec, &h, &as), 0);
    for (int i = 0; i < 10; i++) /* no load: nothing would change, nothing recorded */
        tick(as, &w, 0);
    cr_assert_eq(events_with(ev, "(rollout)"), 0);
    for (int i = 0; i < 10; i++)
        tick(as, &w, 50);
    cr_assert_eq(w.count[0], 2);
    cr_assert_eq(w.calls, 0);
    cr_assert_eq(events_with(ev, "held at 2 instances (rollout)"), 1);
    const cm_as_decision_t *d;
    cr_assert_eq(cm_autoscale_last(as, "users", &d), 0);
    cr_assert_eq(d->reason, CM_AS_ROLLOUT);
    w.rolling = 0;
    tick(as, &w, 50);
    cr_assert_eq(w.count[0], 5);
    cm_autoscale_free(as);
    cm_events_free(ev);
}

Test(autoscale, respec_keeps_an_unchanged_policy_resets_a_changed_one)
{
    cm_spec_t spec;
    cm_svc_spec_t svcs[2];
    two_services(&spec, svcs);
    svcs[0].autoscale.min = 2;
    svcs[0].autoscale.max = 4;
    world_t w = {.now = 5000, .count = {2, 2}};
    cm_events_t *ev;
    cr_assert_eq(cm_events_new(&ev), 0);
    cm_autoscale_hooks_t h = {
        .now_ms = w_now, .scale = w_scale, .count = w_count, .arg = &w, .events = ev};
    cm_autoscale_t *as;
    cr_assert_eq(cm_autoscale_new(&spec, &h, &as), 0);
    for (int i = 0; i < 20; i++)
        tick(as, &w, 60);
    cr_assert_eq(w.count[0], 4); /* held at max */

    /* the same policy in a new spec (another line, orders now first): history kept, so
     * the load's drop still sees the stable window's mean and stays at 4 */
    cm_spec_t same;
    cm_svc_spec_t s2[2];
    two_services(&same, s2);
    s2[0] = svcs[1], s2[1] = svcs[0];
    s2[1].autoscale.line = 99;
    cr_assert_eq(cm_autoscale_respec(as, &same), 0);
    cr_assert(cm_autoscale_on(as, "users"));
    const cm_as_decision_t *d;
    cr_assert_eq(cm_autoscale_last(as, "users", &d), 0); /* its last decision kept */
    tick(as, &w, 0);
    cr_assert_eq(w.count[0], 4);
    cr_assert_eq(cm_autoscale_last(as, "users", &d), 0);
    cr_assert_gt(d->stable_load, 40); /* a fresh history would say 0 and go to 2 */
    cr_assert_eq(events_with(ev, "(reload)"), 0);

    /* max 8 and pinned at 3: the windows start over, the pin stays */
    cr_assert_eq(cm_autoscale_pin(as, "users", 3), 0);
    cm_spec_t wider;
    cm_svc_spec_t s3[2];
    two_services(&wider, s3);
    s3[0].autoscale.min = 2;
    s3[0].autoscale.max = 8;
    cr_assert_eq(cm_autoscale_respec(as, &wider), 0);
    cr_assert_eq(cm_autoscale_pinned(as, "users"), 3);
    cr_assert_eq(cm_autoscale_last(as, "users", &d), -ENOENT); /* no decision yet */
    cr_assert_eq(events_with(ev, "policy changed"), 1);
    cr_assert_eq(cm_autoscale_pin(as, "users", -1), 0);
    for (int i = 0; i < 10; i++)
        tick(as, &w, 60);
    cr_assert_eq(w.count[0], 6); /* ceil(60 / 10): the new max lets it */

    /* orders gains autoscale:, users loses it */
    cm_spec_t swap;
    cm_svc_spec_t s4[2];
    two_services(&swap, s4);
    s4[1].autoscale = policy();
    s4[0].autoscale.on = 0;
    cr_assert_eq(cm_autoscale_respec(as, &swap), 0);
    cr_assert(!cm_autoscale_on(as, "users"));
    cr_assert(cm_autoscale_on(as, "orders"));
    cr_assert_eq(cm_autoscale_tick(as, "users", &(cm_as_input_t){.valid = 1}, NULL), -ENOENT);
    cr_assert_eq(events_with(ev, "autoscale: on"), 1);
    cr_assert_eq(events_with(ev, "autoscale: off"), 1);
    cm_as_input_t in = {.load = 45, .ready = 2, .desired = 2, .valid = 1};
    for (int i = 0; i < 10; i++) {
        w.now += TICK;
        in.desired = in.ready = w.count[1];
        cr_assert_eq(cm_autoscale_tick(as, "orders", &in, NULL), 0);
    }
    cr_assert_eq(w.count[1], 5);

    /* a service that went away is dropped */
    cm_spec_t one;
    cm_svc_spec_t s5[2];
    two_services(&one, s5);
    one.nsvcs = 1;
    cr_assert_eq(cm_autoscale_respec(as, &one), 0);
    cr_assert(!cm_autoscale_on(as, "orders"));
    cr_assert_eq(cm_autoscale_wake(as, "orders"), -ENOENT);
    cm_autoscale_free(as);
    cm_events_free(ev);
}
