/* tests/unit/test_ratelimit.c: token buckets (gateway/ratelimit.h) on a simulated
 * monotonic clock: every take passes now_ns, so no test sleeps. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "gateway/ratelimit.h"

#define SEC 1000000000ULL /* ns */
#define T0  (1000 * SEC)  /* an arbitrary monotonic start */

static gw_ratelimit_t *new_limiter(size_t max_keys)
{
    gw_ratelimit_t *rl = NULL;
    cr_assert_eq(gw_ratelimit_new(max_keys, &rl), 0);
    return rl;
}

static gw_rate_result_t take(gw_ratelimit_t *rl, const char *key, const gw_rate_cfg_t *cfg,
                             uint64_t now)
{
    gw_rate_result_t r;
    cr_assert_eq(gw_ratelimit_take(rl, key, strlen(key), cfg, now, &r), 0);
    return r;
}

Test(ratelimit, burst_is_allowed_then_refused)
{
    gw_ratelimit_t *rl = new_limiter(1024);
    gw_rate_cfg_t cfg = {.rate = 1, .burst = 5};
    for (int i = 0; i < 5; i++) {
        gw_rate_result_t r = take(rl, "k", &cfg, T0);
        cr_assert(r.allowed, "take %d", i);
        cr_assert_eq(r.limit, 5);
        cr_assert_eq(r.remaining, 4 - i);
        cr_assert_eq(r.retry_after_s, 0);
    }
    gw_rate_result_t r = take(rl, "k", &cfg, T0);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.remaining, 0);
    gw_ratelimit_free(rl);
}

Test(ratelimit, tokens_refill_with_time_up_to_the_burst)
{
    gw_ratelimit_t *rl = new_limiter(1024);
    gw_rate_cfg_t cfg = {.rate = 2, .burst = 4};
    for (int i = 0; i < 4; i++)
        cr_assert(take(rl, "k", &cfg, T0).allowed);
    cr_assert_not(take(rl, "k", &cfg, T0).allowed);
    /* 0.5 s at 2/s brings one token back */
    gw_rate_result_t r = take(rl, "k", &cfg, T0 + SEC / 2);
    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, 0);
    cr_assert_not(take(rl, "k", &cfg, T0 + SEC / 2).allowed);
    /* a long pause refills to the burst, never beyond */
    r = take(rl, "k", &cfg, T0 + 100 * SEC);
    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, 3);
    gw_ratelimit_free(rl);
}

Test(ratelimit, keys_have_independent_buckets)
{
    gw_ratelimit_t *rl = new_limiter(1024);
    gw_rate_cfg_t cfg = {.rate = 1, .burst = 2};
    cr_assert(take(rl, "/users|10.0.0.1", &cfg, T0).allowed);
    cr_assert(take(rl, "/users|10.0.0.1", &cfg, T0).allowed);
    cr_assert_not(take(rl, "/users|10.0.0.1", &cfg, T0).allowed);
    gw_rate_result_t r = take(rl, "/users|10.0.0.2", &cfg, T0);
    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, 1);
    cr_assert(take(rl, "/orders|10.0.0.1", &cfg, T0).allowed);
    gw_ratelimit_free(rl);
}

Test(ratelimit, headers_values_follow_the_bucket)
{
    gw_ratelimit_t *rl = new_limiter(1024);
    gw_rate_cfg_t cfg = {.rate = 0.5, .burst = 3}; /* one token every 2 s */
    gw_rate_result_t r = take(rl, "k", &cfg, T0);
    cr_assert_eq(r.limit, 3);
    cr_assert_eq(r.remaining, 2);
    cr_assert_eq(r.reset_s, 2); /* one token short of full */
    take(rl, "k", &cfg, T0);
    r = take(rl, "k", &cfg, T0);
    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, 0);
    cr_assert_eq(r.reset_s, 6);
    r = take(rl, "k", &cfg, T0);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.retry_after_s, 2);
    r = take(rl, "k", &cfg, T0 + SEC + SEC / 2); /* 0.75 token: 0.5 s to go */
    cr_assert_not(r.allowed);
    cr_assert_eq(r.retry_after_s, 1); /* never 0 */
    gw_ratelimit_free(rl);
}

Test(ratelimit, burst_defaults_to_the_rate)
{
    gw_ratelimit_t *rl = new_limiter(1024);
    gw_rate_cfg_t cfg = {.rate = 3};
    for (int i = 0; i < 3; i++)
        cr_assert(take(rl, "k", &cfg, T0).allowed);
    gw_rate_result_t r = take(rl, "k", &cfg, T0);
    cr_assert_not(r.allowed);
    cr_assert_eq(r.limit, 3);
    gw_ratelimit_free(rl);
}

Test(ratelimit, bad_arguments_are_refused)
{
    gw_ratelimit_t *rl = NULL;
    cr_assert_eq(gw_ratelimit_new(15, &rl), -EINVAL);
    rl = new_limiter(16);
    gw_rate_cfg_t off = {0};
    gw_rate_result_t r;
    cr_assert_eq(gw_ratelimit_take(rl, "k", 1, &off, T0, &r), -EINVAL);
    cr_assert(r.allowed);
    gw_ratelimit_free(rl);
    gw_ratelimit_free(NULL);
}

Test(ratelimit, eviction_keeps_the_table_bounded)
{
    gw_ratelimit_t *rl = new_limiter(16);
    gw_rate_cfg_t cfg = {.rate = 0.001, .burst = 1};
    cr_assert(take(rl, "first", &cfg, T0).allowed);
    cr_assert_not(take(rl, "first", &cfg, T0).allowed);
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "client-%d", i);
        gw_rate_result_t r = take(rl, key, &cfg, T0 + (uint64_t)i);
        cr_assert(r.allowed, "%s", key);
    }
    /* the most recent key is still remembered */
    cr_assert_not(take(rl, "client-999", &cfg, T0 + 2000).allowed);
    /* at most 16 buckets live: "first" was forgotten, so it starts full again */
    cr_assert(take(rl, "first", &cfg, T0 + 2000).allowed);
    gw_ratelimit_free(rl);
}

Test(ratelimit, absurd_config_values_stay_in_range)
{
    gw_ratelimit_t *rl = new_limiter(1024);
    gw_rate_cfg_t cfg = {.rate = 1e-30, .burst = 10}; /* a refill takes 1e30 s */
    gw_rate_result_t r = take(rl, "k", &cfg, T0);
    cr_assert(r.allowed);
    cr_assert_eq(r.limit, 10);
    cr_assert_gt(r.reset_s, 1000000000L); /* clamped, not a wrapped negative */
    cr_assert_eq(take(rl, "huge", &(gw_rate_cfg_t){.rate = 1, .burst = 1e30}, T0).allowed, 1);
    gw_ratelimit_free(rl);
}

typedef struct hammer {
    gw_ratelimit_t *rl;
    const gw_rate_cfg_t *cfg;
    int allowed;
} hammer_t;

static void *hammer_one_key(void *arg)
{
    hammer_t *h = arg;
    for (int i = 0; i < 2000; i++) {
        gw_rate_result_t r;
        if (gw_ratelimit_take(h->rl, "shared", 6, h->cfg, T0, &r) == 0 && r.allowed)
            h->allowed++;
    }
    return NULL;
}

Test(ratelimit, threads_share_one_bucket_exactly)
{
    gw_ratelimit_t *rl = new_limiter(1024);
    gw_rate_cfg_t cfg = {.rate = 1, .burst = 3000};
    hammer_t h[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        h[i] = (hammer_t){.rl = rl, .cfg = &cfg};
        cr_assert_eq(pthread_create(&t[i], NULL, hammer_one_key, &h[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        total += h[i].allowed;
    }
    cr_assert_eq(total, 3000); /* 8000 attempts, no time passes: exactly the burst */
    gw_ratelimit_free(rl);
}
