/* Unit tests for control/rollout's state machine (cm_ro_begin / cm_ro_step): tables of
 * views (the service as the supervisor shows it) on a virtual clock, checking each
 * step's state and action. No processes. */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "control/rollout.h"

#define OLD "00000000000000aa"
#define NEW "00000000000000bb"

static cm_ro_view_t v;
static cm_ro_t ro;

/* n instances 0..n-1 ready with definition def (pids 100+i); the service wants NEW. */
static void service(int n, const char *def)
{
    memset(&v, 0, sizeof v);
    v.count = n;
    snprintf(v.def, sizeof v.def, NEW);
    for (int i = 0; i < n; i++) {
        v.inst[i] = (cm_sup_inst_t){1, 100 + i, CM_INST_READY, -1, ""};
        snprintf(v.inst[i].def, sizeof v.inst[i].def, "%s", def);
    }
    v.watchers = 2; /* a gateway and orders follow the service */
}

static void inst(int i, int pid, cm_inst_state_t st, const char *def)
{
    v.inst[i] = (cm_sup_inst_t){1, pid, st, -1, ""};
    snprintf(v.inst[i].def, sizeof v.inst[i].def, "%s", def);
}

static cm_ro_action_t step(uint64_t now)
{
    v.now = now;
    ro.note[0] = '\0';
    return cm_ro_step(&ro, &v);
}

static void expect(cm_ro_action_t a, cm_ro_act_t act, int index, cm_ro_state_t st)
{
    cr_assert_eq(a.act, act, "action %d, want %d (note: %s)", a.act, act, ro.note);
    if (act != CM_RO_ACT_NONE)
        cr_assert_eq(a.index, index);
    cr_assert_eq(ro.state, st, "state %s, want %s (note: %s)", cm_ro_state_name(ro.state),
                 cm_ro_state_name(st), ro.note);
}

/* The followers come back past the index: the watchers parked again. */
static void published(void)
{
    v.watchers_past = v.watchers;
}

Test(rollout, replaces_every_stale_instance_one_at_a_time_with_one_surge)
{
    service(2, OLD);
    expect(cm_ro_begin(&ro, &v, 5000), CM_RO_ACT_SURGE, 2, CM_RO_SURGE);
    cr_assert_eq(ro.total, 2);
    expect(step(100), CM_RO_ACT_NONE, 0, CM_RO_SURGE); /* not spawned yet */
    inst(2, 200, CM_INST_STARTING, NEW);
    expect(step(200), CM_RO_ACT_NONE, 0, CM_RO_SURGE);
    inst(2, 200, CM_INST_READY, NEW);
    v.reg_index = 42;
    v.watchers = 0, v.watchers_past = 0; /* the change answered every parked watch */
    expect(step(300), CM_RO_ACT_NONE, 0, CM_RO_PUBLISH);
    cr_assert_eq(ro.pub_index, 42);
    expect(step(400), CM_RO_ACT_NONE, 0, CM_RO_PUBLISH); /* not back yet */
    v.watchers = 2;
    published();
    expect(step(500), CM_RO_ACT_RESTART, 0, CM_RO_REPLACE);
    expect(step(600), CM_RO_ACT_NONE, 0, CM_RO_REPLACE); /* old pid draining */
    inst(0, 0, CM_INST_DRAINING, OLD);
    expect(step(700), CM_RO_ACT_NONE, 0, CM_RO_REPLACE);
    inst(0, 300, CM_INST_STARTING, NEW);
    expect(step(800), CM_RO_ACT_NONE, 0, CM_RO_REPLACE);
    inst(0, 300, CM_INST_READY, NEW);
    expect(step(900), CM_RO_ACT_NONE, 0, CM_RO_PUBLISH);
    cr_assert_eq(ro.replaced, 1);
    expect(step(1000), CM_RO_ACT_RESTART, 1, CM_RO_REPLACE);
    inst(1, 301, CM_INST_READY, NEW);
    expect(step(1100), CM_RO_ACT_NONE, 0, CM_RO_PUBLISH);
    expect(step(1200), CM_RO_ACT_STOP, 2, CM_RO_LEAVE); /* every one new: the surge goes */
    expect(step(1300), CM_RO_ACT_NONE, 0, CM_RO_LEAVE);
    inst(2, 0, CM_INST_STOPPED, NEW);
    expect(step(1400), CM_RO_ACT_NONE, 0, CM_RO_DONE);
    cr_assert_eq(ro.replaced, 2);
}

Test(rollout, replaces_only_the_stale_instances)
{
    service(3, NEW);
    inst(1, 101, CM_INST_READY, OLD);
    expect(cm_ro_begin(&ro, &v, 5000), CM_RO_ACT_SURGE, 3, CM_RO_SURGE);
    cr_assert_eq(ro.total, 1);
    inst(3, 200, CM_INST_READY, NEW);
    published();
    expect(step(100), CM_RO_ACT_NONE, 0, CM_RO_PUBLISH);
    expect(step(200), CM_RO_ACT_RESTART, 1, CM_RO_REPLACE);
    inst(1, 300, CM_INST_READY, NEW);
    expect(step(300), CM_RO_ACT_NONE, 0, CM_RO_PUBLISH);
    expect(step(400), CM_RO_ACT_STOP, 3, CM_RO_LEAVE);
}

Test(rollout, nothing_stale_restarts_every_instance)
{
    service(2, NEW);
    expect(cm_ro_begin(&ro, &v, 5000), CM_RO_ACT_SURGE, 2, CM_RO_SURGE);
    cr_assert_eq(ro.total, 2);
    inst(2, 200, CM_INST_READY, NEW);
    published();
    step(100);
    expect(step(200), CM_RO_ACT_RESTART, 0, CM_RO_REPLACE);
    inst(0, 300, CM_INST_READY, NEW);
    step(300);
    expect(step(400), CM_RO_ACT_RESTART, 1, CM_RO_REPLACE);
    inst(1, 301, CM_INST_READY, NEW);
    step(500);
    expect(step(600), CM_RO_ACT_STOP, 2, CM_RO_LEAVE);
}

Test(rollout, surge_never_ready_fails_and_stops_the_surge)
{
    service(2, OLD);
    cm_ro_begin(&ro, &v, 5000);
    inst(2, 200, CM_INST_STARTING, NEW);
    expect(step(4999), CM_RO_ACT_NONE, 0, CM_RO_SURGE);
    expect(step(5000), CM_RO_ACT_STOP, 2, CM_RO_FAILED);
    cr_assert(strstr(ro.reason, "not ready within 5000 ms"), "%s", ro.reason);
    expect(step(6000), CM_RO_ACT_NONE, 0, CM_RO_FAILED); /* ended: nothing more */
}

Test(rollout, surge_that_exits_fails_at_once_with_its_status)
{
    service(2, OLD);
    cm_ro_begin(&ro, &v, 60000);
    inst(2, 200, CM_INST_STARTING, NEW);
    step(100);
    inst(2, 0, CM_INST_STOPPED, NEW);
    v.inst[2].last_exit = 2;
    expect(step(200), CM_RO_ACT_NONE, 0, CM_RO_FAILED); /* no process left to stop */
    cr_assert(strstr(ro.reason, "exited with status 2"), "%s", ro.reason);
}

Test(rollout, replacement_that_crash_loops_fails_and_stops_the_surge)
{
    service(2, OLD);
    cm_ro_begin(&ro, &v, 60000);
    inst(2, 200, CM_INST_READY, NEW);
    published();
    step(100);
    expect(step(200), CM_RO_ACT_RESTART, 0, CM_RO_REPLACE);
    inst(0, 0, CM_INST_BACKOFF, NEW);
    expect(step(300), CM_RO_ACT_NONE, 0, CM_RO_REPLACE); /* one exit: retried */
    inst(0, 0, CM_INST_CRASHLOOP, NEW);
    v.inst[0].last_exit = 128 + 11;
    expect(step(400), CM_RO_ACT_STOP, 2, CM_RO_FAILED);
    cr_assert(strstr(ro.reason, "signal 11"), "%s", ro.reason);
}

Test(rollout, followers_that_never_come_back_delay_a_step_by_the_bound_only)
{
    service(1, OLD);
    cm_ro_begin(&ro, &v, 60000);
    inst(1, 200, CM_INST_READY, NEW);
    v.watchers_past = 1; /* one of two came back */
    expect(step(100), CM_RO_ACT_NONE, 0, CM_RO_PUBLISH);
    expect(step(100 + CM_RO_PUBLISH_MS - 1), CM_RO_ACT_NONE, 0, CM_RO_PUBLISH);
    expect(step(100 + CM_RO_PUBLISH_MS), CM_RO_ACT_RESTART, 0, CM_RO_REPLACE);
    cr_assert(strstr(ro.note, "only 1 of 2"), "%s", ro.note);
}

Test(rollout, a_count_change_midway_fails_the_rollout)
{
    service(2, OLD);
    cm_ro_begin(&ro, &v, 60000);
    inst(2, 200, CM_INST_STARTING, NEW);
    v.count = 3; /* a scale made the surge one of the count: it stays */
    expect(step(100), CM_RO_ACT_NONE, 0, CM_RO_FAILED);
    cr_assert(strstr(ro.reason, "from 2 to 3"), "%s", ro.reason);
}

Test(rollout, zero_instances_is_done_and_the_maximum_has_no_room)
{
    service(0, OLD);
    expect(cm_ro_begin(&ro, &v, 60000), CM_RO_ACT_NONE, 0, CM_RO_DONE);
    service(CM_SPEC_MAX_INST, OLD);
    expect(cm_ro_begin(&ro, &v, 60000), CM_RO_ACT_NONE, 0, CM_RO_FAILED);
    cr_assert(strstr(ro.reason, "no room"), "%s", ro.reason);
}
