/* tests/unit/test_table.c: the availability policy of gateway/table.c with the time
 * passed in: outlier ejection (base x times, capped share of the set, expiry), slow start
 * after a return, and the pick (unavailable instances skipped, in-flight limit). A route
 * is put together here by hand, with real metric series and a real balancer. */
#include <string.h>

#include <criterion/criterion.h>

#include "gateway/table.h"

#define MS 1000000ULL
#define S  1000000000ULL

enum { MAXN = 4 };

typedef struct fixture {
    gw_route_cfg_t cfg;
    gw_rt_t rt;
    gw_inst_t inst[MAXN];
    gw_inst_t *insts[MAXN];
    gw_lb_host_t hosts[MAXN];
    char keys[MAXN][32];
    gw_metrics_t *m;
} fixture_t;

static fixture_t fx;

/* n healthy instances of weight 1 under the route defaults, with balancer kind. */
static void route(int n, gw_lb_kind_t kind)
{
    memset(&fx, 0, sizeof fx);
    gw_route_defaults(&fx.cfg);
    fx.cfg.balancer = kind;
    cr_assert_eq(gw_metrics_new(&fx.m), 0);
    gw_route_stats_t *rs = gw_metrics_route(fx.m, "r");
    fx.rt.cfg = &fx.cfg;
    fx.rt.stats = rs;
    fx.rt.n = n;
    fx.rt.insts = fx.insts;
    fx.rt.hosts = fx.hosts;
    for (int i = 0; i < n; i++) {
        gw_inst_t *in = &fx.inst[i];
        snprintf(fx.keys[i], sizeof fx.keys[i], "http://10.0.0.%d:80", i + 1);
        snprintf(in->url, sizeof in->url, "%s", fx.keys[i]);
        in->cfg = &fx.cfg;
        in->weight = 1;
        in->healthy = 1;
        in->stats = gw_metrics_upstream(fx.m, rs, in->url);
        fx.insts[i] = in;
        fx.hosts[i] = (gw_lb_host_t){.key = fx.keys[i], .weight = 1, .available = 1};
    }
    cr_assert_eq(gw_lb_new(kind, fx.hosts, n, fx.cfg.panic_percent, 7, &fx.rt.lb), 0);
}

static void done(void)
{
    gw_lb_free(fx.rt.lb);
    gw_metrics_free(fx.m);
}

static int picks_of(int who, int tries, uint64_t now)
{
    int n = 0;
    for (int i = 0; i < tries; i++)
        if (gw_rt_pick(&fx.rt, NULL, 0, 0, now, NULL) == &fx.inst[who])
            n++;
    return n;
}

Test(table, consecutive_failures_eject_an_instance_for_the_base_time, .fini = done)
{
    route(3, GW_LB_ROUND_ROBIN);
    fx.cfg.outlier_failures = 3;
    fx.cfg.outlier_base_ms = 1000;
    uint64_t t = 100 * S;
    gw_inst_result(&fx.rt, 0, 1, 10, t);
    gw_inst_result(&fx.rt, 0, 1, 10, t);
    cr_assert_eq(fx.inst[0].ejected_until_ns, 0, "ejected before the third failure");
    gw_inst_result(&fx.rt, 0, 1, 10, t);
    cr_assert_eq(fx.inst[0].ejected_until_ns, t + 1000 * MS);
    cr_assert_eq(picks_of(0, 30, t + 999 * MS), 0, "an ejected instance was picked");
    cr_assert_gt(picks_of(0, 30, t + 1000 * MS), 0, "not back after its ejection time");
}

Test(table, a_success_resets_the_failure_count, .fini = done)
{
    route(3, GW_LB_ROUND_ROBIN);
    fx.cfg.outlier_failures = 2;
    uint64_t t = 100 * S;
    gw_inst_result(&fx.rt, 1, 1, 10, t);
    gw_inst_result(&fx.rt, 1, 0, 10, t);
    gw_inst_result(&fx.rt, 1, 1, 10, t);
    cr_assert_eq(fx.inst[1].ejected_until_ns, 0);
}

Test(table, each_ejection_lasts_longer_up_to_the_max, .fini = done)
{
    route(3, GW_LB_ROUND_ROBIN);
    fx.cfg.outlier_failures = 1;
    fx.cfg.outlier_base_ms = 1000;
    fx.cfg.outlier_max_ms = 2500;
    uint64_t t = 100 * S;
    uint64_t want[] = {1000, 2000, 2500, 2500};
    for (int k = 0; k < 4; k++) {
        gw_inst_result(&fx.rt, 0, 1, 10, t);
        cr_assert_eq(fx.inst[0].ejected_until_ns, t + want[k] * MS, "ejection %d", k + 1);
        t = fx.inst[0].ejected_until_ns;
        cr_assert_gt(picks_of(0, 30, t), 0); /* the pick notices it is back */
    }
}

Test(table, ejection_never_takes_more_than_the_allowed_share, .fini = done)
{
    route(2, GW_LB_ROUND_ROBIN); /* max_ejected 50 %: one of two */
    fx.cfg.outlier_failures = 1;
    uint64_t t = 100 * S;
    gw_inst_result(&fx.rt, 0, 1, 10, t);
    gw_inst_result(&fx.rt, 1, 1, 10, t);
    cr_assert_neq(fx.inst[0].ejected_until_ns, 0);
    cr_assert_eq(fx.inst[1].ejected_until_ns, 0, "both of two instances ejected");
    cr_assert_eq(picks_of(1, 10, t + MS), 10);
}

Test(table, slow_start_ramps_from_a_tenth_to_full_weight, .fini = done)
{
    route(2, GW_LB_WEIGHTED_ROUND_ROBIN);
    fx.cfg.slow_start_ms = 10000;
    uint64_t t = 100 * S;
    fx.inst[0].available_since_ns = t;
    cr_assert_float_eq(gw_inst_slow_start(&fx.rt, &fx.inst[0], t), 0.1, 1e-9);
    cr_assert_float_eq(gw_inst_slow_start(&fx.rt, &fx.inst[0], t + 5 * S), 0.5, 1e-9);
    cr_assert_float_eq(gw_inst_slow_start(&fx.rt, &fx.inst[0], t + 10 * S), 1.0, 1e-9);
    cr_assert_float_eq(gw_inst_slow_start(&fx.rt, &fx.inst[1], t), 1.0, 1e-9);
    fx.cfg.slow_start_ms = 0;
    cr_assert_float_eq(gw_inst_slow_start(&fx.rt, &fx.inst[0], t), 1.0, 1e-9);
}

Test(table, a_returning_instance_gets_a_share_that_grows_with_slow_start, .fini = done)
{
    route(2, GW_LB_WEIGHTED_ROUND_ROBIN);
    fx.cfg.slow_start_ms = 10000;
    fx.cfg.outlier_failures = 1;
    uint64_t t = 100 * S;
    gw_inst_result(&fx.rt, 0, 1, 10, t);
    uint64_t back = fx.inst[0].ejected_until_ns;
    int early = picks_of(0, 1000, back);         /* weight 0.1 of 1.1 */
    int late = picks_of(0, 1000, back + 5 * S);  /* 0.5 of 1.5 */
    int full = picks_of(0, 1000, back + 10 * S); /* 1 of 2 */
    cr_assert(early > 50 && early < 130, "early share %d of 1000", early);
    cr_assert(late > 280 && late < 390, "half-way share %d of 1000", late);
    cr_assert(full > 450 && full < 550, "full share %d of 1000", full);
}

Test(table, pick_skips_unhealthy_and_instances_at_their_in_flight_limit, .fini = done)
{
    route(4, GW_LB_ROUND_ROBIN); /* two of four out is not below the 50 % panic threshold */
    uint64_t t = 100 * S;
    fx.inst[0].healthy = 0;
    fx.cfg.max_requests = 2;
    fx.inst[1].inflight = 2;
    for (int i = 0; i < 40; i++) {
        gw_inst_t *in = gw_rt_pick(&fx.rt, NULL, 0, 0, t, NULL);
        cr_assert(in == &fx.inst[2] || in == &fx.inst[3], "picked instance %s", in->url);
    }
    fx.inst[1].inflight = 1;
    cr_assert_gt(picks_of(1, 20, t), 0);
}

Test(table, below_the_panic_threshold_every_instance_is_used, .fini = done)
{
    route(4, GW_LB_ROUND_ROBIN);
    uint64_t t = 100 * S;
    fx.inst[0].healthy = fx.inst[1].healthy = fx.inst[2].healthy = 0; /* 25 % < 50 % */
    cr_assert_gt(picks_of(0, 40, t), 0, "panic mode did not use the unhealthy ones");
}

Test(table, pick_avoids_the_instances_already_tried, .fini = done)
{
    route(3, GW_LB_ROUND_ROBIN);
    int avoid[] = {0, 2};
    for (int i = 0; i < 10; i++)
        cr_assert_eq(gw_rt_pick(&fx.rt, avoid, 2, 0, 100 * S, NULL), &fx.inst[1]);
}
