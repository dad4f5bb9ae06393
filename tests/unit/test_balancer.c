/* tests/unit/test_balancer.c: each balancer's distribution, avoid and panic rules,
 * peak EWMA arithmetic and Maglev's key stability as hosts come and go. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "gateway/balancer.h"

#define MAX_TEST_HOSTS 8

static const gw_lb_kind_t all_kinds[] = {GW_LB_ROUND_ROBIN, GW_LB_WEIGHTED_ROUND_ROBIN,
                                         GW_LB_LEAST_REQUEST, GW_LB_PEAK_EWMA, GW_LB_HASH};

static const char *host_keys[MAX_TEST_HOSTS] = {
    "http://10.0.0.1:8080", "http://10.0.0.2:8080", "http://10.0.0.3:8080", "http://10.0.0.4:8080",
    "http://10.0.0.5:8080", "http://10.0.0.6:8080", "http://10.0.0.7:8080", "http://10.0.0.8:8080"};

/* n healthy, idle, weight-1 hosts with keys from host_keys[first..]. */
static void make_hosts(gw_lb_host_t *h, int n, int first)
{
    memset(h, 0, sizeof *h * (size_t)n);
    for (int i = 0; i < n; i++) {
        h[i].key = host_keys[first + i];
        h[i].weight = 1;
        h[i].available = 1;
    }
}

static gw_lb_t *balancer(gw_lb_kind_t kind, gw_lb_host_t *h, int n, int panic)
{
    gw_lb_t *lb = NULL;
    cr_assert_eq(gw_lb_new(kind, h, n, panic, 42, &lb), 0);
    return lb;
}

static uint64_t key_hash(int k)
{
    char key[32];
    int len = snprintf(key, sizeof key, "user-%d", k);
    return gw_lb_hash(key, (size_t)len);
}

/* Picks `picks` times (key k for pick k) and counts per host. */
static void count_picks(gw_lb_t *lb, const int *avoid, int navoid, int picks, int *counts, int n)
{
    memset(counts, 0, sizeof *counts * (size_t)n);
    for (int k = 0; k < picks; k++) {
        int i = gw_lb_pick(lb, avoid, navoid, key_hash(k), 0);
        cr_assert(i >= 0 && i < n, "pick %d out of range", i);
        counts[i]++;
    }
}

/* Which host key each of nkeys keys maps to. */
static void map_keys(gw_lb_t *lb, const gw_lb_host_t *h, int nkeys, const char **owner)
{
    for (int k = 0; k < nkeys; k++)
        owner[k] = h[gw_lb_pick(lb, NULL, 0, key_hash(k), 0)].key;
}

/* ---------------------------------------------------------------------------------
 * Construction, hash
 * --------------------------------------------------------------------------------- */

Test(balancer, new_rejects_bad_arguments)
{
    gw_lb_host_t h[1];
    gw_lb_t *lb = NULL;
    make_hosts(h, 1, 0);
    cr_assert_eq(gw_lb_new(GW_LB_ROUND_ROBIN, h, 0, 0, 1, &lb), -EINVAL);
    cr_assert_eq(gw_lb_new(GW_LB_ROUND_ROBIN, h, GW_LB_MAX_HOSTS + 1, 0, 1, &lb), -EINVAL);
    cr_assert_eq(gw_lb_new(GW_LB_ROUND_ROBIN, NULL, 1, 0, 1, &lb), -EINVAL);
    cr_assert_eq(gw_lb_new(GW_LB_ROUND_ROBIN, h, 1, 101, 1, &lb), -EINVAL);
    cr_assert_null(lb);
    gw_lb_free(NULL);
}

Test(balancer, hash_is_stable_and_spreads_similar_keys)
{
    cr_assert_eq(gw_lb_hash("abc", 3), gw_lb_hash("abc", 3));
    cr_assert_neq(gw_lb_hash("abc", 3), gw_lb_hash("abd", 3));
    /* consecutive keys must differ in about half their bits, also in the low ones */
    int low_bit_ones = 0;
    for (int k = 0; k < 1000; k++)
        low_bit_ones += (int)(key_hash(k) & 1);
    cr_assert(low_bit_ones > 430 && low_bit_ones < 570, "low bit set %d/1000", low_bit_ones);
}

/* ---------------------------------------------------------------------------------
 * Round robin, weighted round robin
 * --------------------------------------------------------------------------------- */

Test(balancer, round_robin_splits_exactly_equally)
{
    gw_lb_host_t h[3];
    int counts[3];
    make_hosts(h, 3, 0);
    gw_lb_t *lb = balancer(GW_LB_ROUND_ROBIN, h, 3, 0);
    count_picks(lb, NULL, 0, 3000, counts, 3);
    cr_log_info("round_robin 3000 picks: %d %d %d", counts[0], counts[1], counts[2]);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(counts[i], 1000, "host %d got %d", i, counts[i]);
    gw_lb_free(lb);
}

Test(balancer, weighted_round_robin_is_exact_and_smooth)
{
    gw_lb_host_t h[3];
    make_hosts(h, 3, 0);
    h[0].weight = 1;
    h[1].weight = 2;
    h[2].weight = 3;
    gw_lb_t *lb = balancer(GW_LB_WEIGHTED_ROUND_ROBIN, h, 3, 0);
    int seq[6000], counts[3] = {0}, longest_run = 1, run = 1;
    for (int k = 0; k < 6000; k++) {
        seq[k] = gw_lb_pick(lb, NULL, 0, 0, 0);
        counts[seq[k]]++;
        run = k > 0 && seq[k] == seq[k - 1] ? run + 1 : 1;
        longest_run = run > longest_run ? run : longest_run;
    }
    cr_log_info("wrr 1:2:3 6000 picks: %d %d %d, longest run %d", counts[0], counts[1], counts[2],
                longest_run);
    cr_assert_eq(counts[0], 1000);
    cr_assert_eq(counts[1], 2000);
    cr_assert_eq(counts[2], 3000);
    /* plain WRR would send 3 in a row to the heaviest host; smooth WRR at most 2 */
    cr_assert_leq(longest_run, 2);
    /* interleaved: every window of 6 consecutive picks holds exactly 1, 2 and 3 */
    for (int start = 0; start + 6 <= 6000; start++) {
        int w[3] = {0};
        for (int k = start; k < start + 6; k++)
            w[seq[k]]++;
        cr_assert(w[0] == 1 && w[1] == 2 && w[2] == 3, "window at %d: %d %d %d", start, w[0], w[1],
                  w[2]);
    }
    gw_lb_free(lb);
}

Test(balancer, weighted_round_robin_honours_fractional_slow_start_weights)
{
    gw_lb_host_t h[2];
    int counts[2];
    make_hosts(h, 2, 0);
    h[0].weight = 0.25; /* a host a quarter of the way through slow start */
    gw_lb_t *lb = balancer(GW_LB_WEIGHTED_ROUND_ROBIN, h, 2, 0);
    count_picks(lb, NULL, 0, 5000, counts, 2);
    cr_assert_eq(counts[0], 1000);
    cr_assert_eq(counts[1], 4000);
    gw_lb_free(lb);
}

/* ---------------------------------------------------------------------------------
 * Least request, peak EWMA
 * --------------------------------------------------------------------------------- */

Test(balancer, least_request_with_two_hosts_always_picks_the_idle_one)
{
    gw_lb_host_t h[2];
    int counts[2];
    make_hosts(h, 2, 0);
    h[0].inflight = 10;
    gw_lb_t *lb = balancer(GW_LB_LEAST_REQUEST, h, 2, 0);
    count_picks(lb, NULL, 0, 2000, counts, 2);
    cr_log_info("least_request inflight 10 vs 0: %d %d", counts[0], counts[1]);
    cr_assert_eq(counts[0], 0);
    cr_assert_eq(counts[1], 2000);
    gw_lb_free(lb);
}

Test(balancer, least_request_divides_inflight_by_weight_and_spreads_ties)
{
    gw_lb_host_t h[4];
    int counts[4];
    make_hosts(h, 4, 0);
    gw_lb_t *lb = balancer(GW_LB_LEAST_REQUEST, h, 4, 0);
    count_picks(lb, NULL, 0, 4000, counts, 4);
    for (int i = 0; i < 4; i++) /* all idle: random ties, 25% each */
        cr_assert(counts[i] > 850 && counts[i] < 1150, "host %d got %d", i, counts[i]);
    h[0].inflight = 4;
    h[0].weight = 8; /* 0.5 per unit of weight beats 1 */
    h[1].inflight = h[2].inflight = h[3].inflight = 1;
    count_picks(lb, NULL, 0, 3000, counts, 4);
    cr_assert(counts[0] > 1300, "weighted host got %d of 3000", counts[0]);
    gw_lb_free(lb);
}

Test(balancer, peak_ewma_starves_the_slow_host)
{
    gw_lb_host_t h[3];
    int counts[3];
    make_hosts(h, 3, 0);
    h[0].ewma_us = 1000;
    h[1].ewma_us = 1000;
    h[2].ewma_us = 10000;
    gw_lb_t *lb = balancer(GW_LB_PEAK_EWMA, h, 3, 0);
    count_picks(lb, NULL, 0, 3000, counts, 3);
    cr_log_info("peak_ewma 1ms/1ms/10ms 3000 picks: %d %d %d", counts[0], counts[1], counts[2]);
    cr_assert_lt(counts[2], 150);
    gw_lb_free(lb);
}

Test(balancer, peak_ewma_tries_new_hosts_without_flooding_them)
{
    gw_lb_host_t h[3];
    int counts[3];
    make_hosts(h, 3, 0);
    h[0].ewma_us = 1000;
    h[1].ewma_us = 5000; /* new host h[2] costs as much as h[0], the fastest */
    gw_lb_t *lb = balancer(GW_LB_PEAK_EWMA, h, 3, 0);
    count_picks(lb, NULL, 0, 3000, counts, 3);
    cr_log_info("peak_ewma 1ms/5ms/new 3000 picks: %d %d %d", counts[0], counts[1], counts[2]);
    /* pairs {0,1} -> 0, {1,2} -> 2, {0,2} tie: half each, so 0 and the new host get 50% */
    cr_assert(counts[2] > 1300 && counts[2] < 1700, "new host got %d", counts[2]);
    cr_assert_eq(counts[1], 0);
    /* once the new host is busy it loses to the idle fast one */
    h[2].inflight = 3;
    count_picks(lb, NULL, 0, 3000, counts, 3);
    cr_assert_lt(counts[2], counts[0]);
    gw_lb_free(lb);
}

Test(balancer, observe_takes_peaks_at_once_and_decays_with_10s_constant)
{
    gw_lb_host_t h = {.weight = 1, .available = 1};
    const uint64_t s = 1000000000ULL;
    gw_lb_observe(&h, 100, 1 * s);
    cr_assert_float_eq(h.ewma_us, 100, 1e-9);
    gw_lb_observe(&h, 200, 1 * s); /* peak */
    cr_assert_float_eq(h.ewma_us, 200, 1e-9);
    gw_lb_observe(&h, 100, 1 * s); /* no time passed: no decay */
    cr_assert_float_eq(h.ewma_us, 100 + 100, 1e-9);
    /* back-to-back 100 us answers (never idle) for 10 s: 1/e of the gap remains */
    uint64_t t = 1 * s;
    for (int i = 0; i < 100000; i++)
        gw_lb_observe(&h, 100, t += 100000);
    cr_assert_float_eq(h.ewma_us, 100 + 100 * exp(-1), 1e-6);
    cr_assert_eq(h.ewma_ns, 11 * s);
}

Test(balancer, observe_after_a_quiet_spell_starts_from_the_decayed_estimate)
{
    gw_lb_host_t h = {.weight = 1, .available = 1};
    const uint64_t s = 1000000000ULL;
    gw_lb_observe(&h, 50000, 1 * s); /* 50 ms: the host was slow */
    /* 10 s later a 100 us answer to a request sent 100 us before: the 50 ms estimate
     * had decayed for 10 s (1 s constant) to ~2 us, so the answer is a new peak */
    gw_lb_observe(&h, 100, 11 * s);
    cr_assert_float_eq(h.ewma_us, 100, 1e-9);
}

/* Two hosts, as the issue measured: one answered slowly for a while, then recovered.
 * While it is left alone its estimate decays, so it is tried again; one probe at a time
 * (a host with a request in flight does not decay); once its answers are fast it wins
 * back its share. */
Test(balancer, peak_ewma_tries_a_once_slow_host_again_as_time_passes)
{
    gw_lb_host_t h[2];
    int counts[2];
    const uint64_t ms = 1000000ULL, s = 1000 * ms;
    make_hosts(h, 2, 0);
    gw_lb_t *lb = balancer(GW_LB_PEAK_EWMA, h, 2, 0);
    uint64_t t = 10 * s;
    for (int i = 0; i < 20; i++) /* host 1 was slow: 200 ms answers, host 0 300 us */
        gw_lb_observe(&h[1], 200000, t - 2 * s + (uint64_t)i * 100 * ms);
    gw_lb_observe(&h[0], 300, t);

    /* right after: host 1 is never picked, also with host 0 busy */
    h[0].inflight = 3;
    memset(counts, 0, sizeof counts);
    for (int k = 0; k < 1000; k++)
        counts[gw_lb_pick(lb, NULL, 0, 0, t)]++;
    cr_assert_eq(counts[1], 0, "slow host picked %d times right after its slow spell", counts[1]);

    /* host 0 keeps answering fast (its estimate stays fresh); host 1 is left alone.
     * Within 10 s it is picked again. */
    h[0].inflight = 0;
    uint64_t probe_at = 0;
    for (uint64_t now = t; now < t + 10 * s && !probe_at; now += 10 * ms) {
        gw_lb_observe(&h[0], 300, now);
        if (gw_lb_pick(lb, NULL, 0, 0, now) == 1)
            probe_at = now;
    }
    cr_assert_neq(probe_at, 0, "the once-slow host was not tried again within 10 s");

    /* its probe is in flight: it gets no second request until the answer comes */
    h[1].inflight = 1;
    memset(counts, 0, sizeof counts);
    for (int k = 0; k < 1000; k++)
        counts[gw_lb_pick(lb, NULL, 0, 0, probe_at + ms)]++;
    cr_assert_eq(counts[1], 0, "a host with a probe in flight got %d more", counts[1]);

    /* the probe answers fast: from then on the two share the traffic */
    h[1].inflight = 0;
    gw_lb_observe(&h[1], 300, probe_at + ms);
    gw_lb_observe(&h[0], 300, probe_at + ms);
    memset(counts, 0, sizeof counts);
    for (int k = 0; k < 1000; k++)
        counts[gw_lb_pick(lb, NULL, 0, 0, probe_at + ms)]++;
    cr_assert(counts[1] > 300, "the recovered host got %d of 1000 picks", counts[1]);
    gw_lb_free(lb);
}

/* A host that is still slow when probed takes its peak back at once and is left alone
 * again: one slow request per decay cycle, not a share of the traffic. */
Test(balancer, peak_ewma_a_still_slow_host_gets_one_probe_per_cycle)
{
    gw_lb_host_t h[2];
    const uint64_t ms = 1000000ULL, s = 1000 * ms;
    make_hosts(h, 2, 0);
    gw_lb_t *lb = balancer(GW_LB_PEAK_EWMA, h, 2, 0);
    uint64_t t = 10 * s;
    gw_lb_observe(&h[1], 200000, t);
    int probes = 0;
    for (uint64_t now = t; now < t + 20 * s; now += 10 * ms) {
        gw_lb_observe(&h[0], 300, now);
        if (gw_lb_pick(lb, NULL, 0, 0, now) == 1) {
            probes++;
            gw_lb_observe(&h[1], 200000, now + 200 * ms); /* still slow */
        }
    }
    cr_log_info("still-slow host: %d probes in 20 s", probes);
    cr_assert(probes >= 1 && probes <= 10, "%d probes of a still-slow host in 20 s", probes);
    gw_lb_free(lb);
}

/* ---------------------------------------------------------------------------------
 * Maglev
 * --------------------------------------------------------------------------------- */

Test(balancer, maglev_same_key_same_host_and_even_spread)
{
    gw_lb_host_t h[5];
    int counts[5];
    make_hosts(h, 5, 0);
    gw_lb_t *lb = balancer(GW_LB_HASH, h, 5, 0);
    for (int k = 0; k < 100; k++)
        cr_assert_eq(gw_lb_pick(lb, NULL, 0, key_hash(k), 0),
                     gw_lb_pick(lb, NULL, 0, key_hash(k), 0));
    count_picks(lb, NULL, 0, 10000, counts, 5);
    cr_log_info("maglev 5 hosts 10000 keys: %d %d %d %d %d", counts[0], counts[1], counts[2],
                counts[3], counts[4]);
    for (int i = 0; i < 5; i++)
        cr_assert(counts[i] >= 1700 && counts[i] <= 2300, "host %d got %d", i, counts[i]);
    gw_lb_free(lb);
}

Test(balancer, maglev_honours_weights)
{
    gw_lb_host_t h[2];
    int counts[2];
    make_hosts(h, 2, 0);
    h[1].weight = 3;
    gw_lb_t *lb = balancer(GW_LB_HASH, h, 2, 0);
    count_picks(lb, NULL, 0, 10000, counts, 2);
    cr_log_info("maglev weights 1:3 10000 keys: %d %d", counts[0], counts[1]);
    cr_assert(counts[0] > 2200 && counts[0] < 2800, "light host got %d", counts[0]);
    gw_lb_free(lb);
}

Test(balancer, maglev_adding_a_host_moves_about_a_sixth_of_keys)
{
    enum { KEYS = 10000 };
    static const char *before[KEYS], *after[KEYS];
    gw_lb_host_t h5[5], h6[6];
    make_hosts(h5, 5, 0);
    make_hosts(h6, 6, 0);
    gw_lb_t *lb5 = balancer(GW_LB_HASH, h5, 5, 0);
    gw_lb_t *lb6 = balancer(GW_LB_HASH, h6, 6, 0);
    map_keys(lb5, h5, KEYS, before);
    map_keys(lb6, h6, KEYS, after);
    int moved = 0, moved_elsewhere = 0;
    for (int k = 0; k < KEYS; k++) {
        moved += before[k] != after[k];
        moved_elsewhere += before[k] != after[k] && after[k] != host_keys[5];
    }
    cr_log_info("maglev 5->6 hosts: %d of %d keys moved, %d not to the new host", moved, KEYS,
                moved_elsewhere);
    cr_assert(moved > KEYS / 10 && moved < KEYS / 4, "moved %d", moved);
    gw_lb_free(lb5);
    gw_lb_free(lb6);
}

Test(balancer, maglev_removing_a_host_moves_mostly_its_own_keys)
{
    enum { KEYS = 10000 };
    static const char *before[KEYS], *after[KEYS];
    gw_lb_host_t h5[5], h4[4];
    make_hosts(h5, 5, 0);
    make_hosts(h4, 2, 0); /* hosts 0, 1, 3, 4: host 2 is gone */
    make_hosts(h4 + 2, 2, 3);
    gw_lb_t *lb5 = balancer(GW_LB_HASH, h5, 5, 0);
    gw_lb_t *lb4 = balancer(GW_LB_HASH, h4, 4, 0);
    map_keys(lb5, h5, KEYS, before);
    map_keys(lb4, h4, KEYS, after);
    int removed_keys = 0, others_moved = 0;
    for (int k = 0; k < KEYS; k++) {
        if (before[k] == host_keys[2])
            removed_keys++;
        else
            others_moved += before[k] != after[k];
    }
    cr_log_info("maglev 5->4 hosts: %d keys of the removed host, %d others moved", removed_keys,
                others_moved);
    cr_assert_lt(others_moved, KEYS * 3 / 100);
    gw_lb_free(lb5);
    gw_lb_free(lb4);
}

Test(balancer, maglev_unavailable_host_keys_go_elsewhere_and_others_stay)
{
    enum { KEYS = 10000 };
    static const char *before[KEYS], *after[KEYS];
    gw_lb_host_t h[5];
    int counts[5];
    make_hosts(h, 5, 0);
    gw_lb_t *lb = balancer(GW_LB_HASH, h, 5, 0);
    map_keys(lb, h, KEYS, before);
    h[1].available = 0;
    map_keys(lb, h, KEYS, after);
    count_picks(lb, NULL, 0, KEYS, counts, 5);
    cr_log_info("maglev host 1 down: %d %d %d %d %d", counts[0], counts[1], counts[2], counts[3],
                counts[4]);
    for (int k = 0; k < KEYS; k++) {
        if (before[k] == h[1].key)
            cr_assert_neq(after[k], h[1].key);
        else
            cr_assert_eq(after[k], before[k], "key %d moved", k);
    }
    /* the walk forward spreads the down host's keys over the others, not onto one */
    for (int i = 0; i < 5; i++)
        if (i != 1)
            cr_assert(counts[i] > 2100 && counts[i] < 2900, "host %d got %d", i, counts[i]);
    gw_lb_free(lb);
}

/* ---------------------------------------------------------------------------------
 * Avoid and panic, every kind
 * --------------------------------------------------------------------------------- */

Test(balancer, avoid_is_honoured_by_every_kind)
{
    for (size_t k = 0; k < sizeof all_kinds / sizeof all_kinds[0]; k++) {
        gw_lb_host_t h[3];
        int counts[3];
        make_hosts(h, 3, 0);
        gw_lb_t *lb = balancer(all_kinds[k], h, 3, 0);
        const int avoid[] = {1};
        count_picks(lb, avoid, 1, 600, counts, 3);
        cr_assert_eq(counts[1], 0, "kind %d picked the avoided host", all_kinds[k]);
        cr_assert(counts[0] > 0 && counts[2] > 0, "kind %d: %d %d", all_kinds[k], counts[0],
                  counts[2]);
        /* everyone available is avoided: take an avoided one, never the down host */
        h[0].available = 0;
        const int avoid_all[] = {1, 2};
        count_picks(lb, avoid_all, 2, 600, counts, 3);
        cr_assert_eq(counts[0], 0, "kind %d picked the down host", all_kinds[k]);
        gw_lb_free(lb);
    }
}

Test(balancer, all_unavailable_still_returns_a_host_for_every_kind)
{
    for (size_t k = 0; k < sizeof all_kinds / sizeof all_kinds[0]; k++) {
        for (int panic = 0; panic <= 50; panic += 50) {
            gw_lb_host_t h[3];
            int counts[3];
            make_hosts(h, 3, 0);
            for (int i = 0; i < 3; i++)
                h[i].available = 0;
            gw_lb_t *lb = balancer(all_kinds[k], h, 3, panic);
            const int avoid[] = {0, 1, 2};
            count_picks(lb, avoid, 3, 300, counts, 3); /* asserts every pick is in range */
            count_picks(lb, NULL, 0, 300, counts, 3);
            gw_lb_free(lb);
        }
    }
}

Test(balancer, panic_makes_every_host_eligible_for_every_kind)
{
    for (size_t k = 0; k < sizeof all_kinds / sizeof all_kinds[0]; k++) {
        gw_lb_host_t h[4];
        int counts[4];
        make_hosts(h, 4, 0);
        h[1].available = h[2].available = h[3].available = 0; /* 25% < 50% */
        gw_lb_t *lb = balancer(all_kinds[k], h, 4, 50);
        count_picks(lb, NULL, 0, 2000, counts, 4);
        cr_log_info("panic kind %d: %d %d %d %d", all_kinds[k], counts[0], counts[1], counts[2],
                    counts[3]);
        for (int i = 0; i < 4; i++)
            cr_assert_gt(counts[i], 200, "kind %d host %d got %d", all_kinds[k], i, counts[i]);
        /* with panic off the down hosts get nothing */
        gw_lb_t *strict = balancer(all_kinds[k], h, 4, 0);
        count_picks(strict, NULL, 0, 500, counts, 4);
        cr_assert_eq(counts[0], 500, "kind %d", all_kinds[k]);
        gw_lb_free(lb);
        gw_lb_free(strict);
    }
}
