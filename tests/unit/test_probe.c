/* Unit tests for control/probe: the rise/fall counting (a pure function), and one real
 * probe against a port nobody listens on (failing verdict reported once). */
#include <criterion/criterion.h>
#include <uv.h>

#include "control/probe.h"

Test(probe, readiness_passes_after_rise_successes_in_a_row)
{
    cm_probe_counter_t c;
    cm_probe_counter_init(&c, 2, 3, 0);
    cr_assert_eq(cm_probe_count(&c, 1), 0);
    cr_assert_eq(cm_probe_count(&c, 0), 0, "a failure resets the run");
    cr_assert_eq(cm_probe_count(&c, 1), 0);
    cr_assert_eq(cm_probe_count(&c, 1), 1);
    cr_assert_eq(c.passing, 1);
    cr_assert_eq(cm_probe_count(&c, 1), 0, "reported once");
}

Test(probe, fails_after_fall_failures_in_a_row)
{
    cm_probe_counter_t c;
    cm_probe_counter_init(&c, 1, 3, 1);
    cr_assert_eq(cm_probe_count(&c, 0), 0);
    cr_assert_eq(cm_probe_count(&c, 0), 0);
    cr_assert_eq(cm_probe_count(&c, 1), 0, "a success resets the run");
    cr_assert_eq(cm_probe_count(&c, 0), 0);
    cr_assert_eq(cm_probe_count(&c, 0), 0);
    cr_assert_eq(cm_probe_count(&c, 0), -1);
    cr_assert_eq(c.passing, 0);
    cr_assert_eq(cm_probe_count(&c, 0), 0);
    cr_assert_eq(cm_probe_count(&c, 1), 1, "rise 1: back at once");
}

typedef struct got {
    int calls, passing;
    cm_probe_t *p;
} got_t;

static void on_verdict(cm_probe_t *p, int passing, void *data)
{
    got_t *g = data;
    cr_assert_eq(p, g->p);
    g->calls++;
    g->passing = passing;
    cm_probe_free(p); /* freeing from the callback is allowed */
}

Test(probe, a_closed_port_fails_liveness)
{
    cr_assert_eq(cm_client_global_init(), 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    cm_client_t *c;
    cr_assert_eq(cm_client_new(&loop, &c), 0);
    /* port 1 on loopback: connection refused at once */
    cm_probe_spec_t spec = {"/healthz", 100, 100, 1, 2};
    got_t g = {0};
    cr_assert_eq(cm_probe_new(&loop, c, &spec, "127.0.0.1", 1, 1, on_verdict, &g, &g.p), 0);
    while (g.calls == 0)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert_eq(g.passing, 0);
    cm_client_free(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
}
