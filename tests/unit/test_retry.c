/* tests/unit/test_retry.c: the retry rules (gateway/retry.c) with the time passed in:
 * which failures and methods may be retried, the deadline, the budget's window and
 * floor, the backoff's bounds. */
#include <criterion/criterion.h>

#include "gateway/retry.h"

#define S  1000000000ULL
#define MS 1000000ULL

static gw_route_cfg_t route(void)
{
    gw_route_cfg_t r;
    gw_route_defaults(&r); /* attempts 3, timeout 15 s, budget 20 %, 3 per second */
    return r;
}

static gw_retry_ask_t ask(gw_fail_t why)
{
    return (gw_retry_ask_t){.why = why,
                            .attempts = 1,
                            .method_safe = 1,
                            .now_ns = 100 * S,
                            .start_ns = 100 * S,
                            .wait_ms = 10};
}

Test(retry, connect_failure_is_retried_for_any_method)
{
    gw_route_cfg_t r = route();
    gw_budget_t b = {0};
    gw_retry_ask_t a = ask(GW_FAIL_CONNECT);
    a.method_safe = 0;
    const char *why;
    cr_assert_eq(gw_retry_decide(&r, &b, &a, &why), GW_RETRY_YES);
    cr_assert_null(why);
}

Test(retry, reset_timeout_and_503_need_a_safe_method_or_idempotency_key)
{
    gw_route_cfg_t r = route();
    gw_fail_t kinds[] = {GW_FAIL_RESET, GW_FAIL_TIMEOUT, GW_FAIL_503};
    for (int i = 0; i < 3; i++) {
        gw_budget_t b = {0};
        gw_retry_ask_t a = ask(kinds[i]);
        const char *why;
        cr_assert_eq(gw_retry_decide(&r, &b, &a, &why), GW_RETRY_YES);
        a.method_safe = 0;
        cr_assert_eq(gw_retry_decide(&r, &b, &a, &why), GW_RETRY_NO);
        cr_assert_str_eq(why, "method not idempotent and no Idempotency-Key");
    }
}

Test(retry, methods_safe_to_retry_follow_rfc9110_or_the_forwarded_key)
{
    cr_assert(gw_retry_method_safe(CM_GET, 0));
    cr_assert(gw_retry_method_safe(CM_HEAD, 0));
    cr_assert(gw_retry_method_safe(CM_PUT, 0));
    cr_assert(gw_retry_method_safe(CM_DELETE, 0));
    cr_assert(gw_retry_method_safe(CM_OPTIONS, 0));
    cr_assert_not(gw_retry_method_safe(CM_POST, 0));
    cr_assert(gw_retry_method_safe(CM_POST, 1));
}

Test(retry, never_after_the_answer_started_nor_past_attempts_nor_on_a_protocol_error)
{
    gw_route_cfg_t r = route();
    gw_budget_t b = {0};
    const char *why;
    gw_retry_ask_t a = ask(GW_FAIL_RESET);
    a.answered = 1;
    cr_assert_eq(gw_retry_decide(&r, &b, &a, &why), GW_RETRY_NO);
    cr_assert_null(why);
    a = ask(GW_FAIL_RESET);
    a.attempts = r.attempts;
    cr_assert_eq(gw_retry_decide(&r, &b, &a, &why), GW_RETRY_NO);
    a = ask(GW_FAIL_PROTOCOL);
    cr_assert_eq(gw_retry_decide(&r, &b, &a, &why), GW_RETRY_NO);
    cr_assert_null(why);
}

Test(retry, a_body_that_did_not_fit_the_replay_buffer_is_not_replayed)
{
    gw_route_cfg_t r = route();
    gw_budget_t b = {0};
    gw_retry_ask_t a = ask(GW_FAIL_CONNECT);
    a.body_lost = 1;
    const char *why;
    cr_assert_eq(gw_retry_decide(&r, &b, &a, &why), GW_RETRY_NO);
    cr_assert_str_eq(why, "body too large to replay");
}

Test(retry, a_backoff_that_would_end_past_the_route_timeout_is_refused)
{
    gw_route_cfg_t r = route();
    gw_budget_t b = {0};
    gw_retry_ask_t a = ask(GW_FAIL_CONNECT);
    a.now_ns = a.start_ns + r.timeout_ms * MS - 5 * MS;
    a.wait_ms = 4;
    const char *why;
    cr_assert_eq(gw_retry_decide(&r, &b, &a, &why), GW_RETRY_YES);
    a.wait_ms = 5;
    cr_assert_eq(gw_retry_decide(&r, &b, &a, &why), GW_RETRY_NO);
    cr_assert_str_eq(why, "deadline");
}

Test(retry, budget_allows_its_share_of_requests_plus_the_floor_over_ten_seconds)
{
    gw_budget_t b = {0};
    uint64_t t = 1000 * S;
    for (int i = 0; i < 100; i++)
        gw_budget_request(&b, t);
    /* 20 % of 100 + 1 per second x 10 s = 30 */
    int taken = 0;
    while (gw_budget_take(&b, 0.2, 1, t + 500 * MS))
        taken++;
    cr_assert_eq(taken, 30);
    /* 9 s later the same window still holds them */
    cr_assert_not(gw_budget_take(&b, 0.2, 1, t + 9 * S));
    /* 10 s later those seconds have left the window: the floor alone again */
    taken = 0;
    while (gw_budget_take(&b, 0.2, 1, t + 10 * S))
        taken++;
    cr_assert_eq(taken, 10);
}

Test(retry, budget_refusal_is_reported_as_such)
{
    gw_route_cfg_t r = route();
    r.retry_budget = 0;
    r.retry_budget_min = 0;
    gw_budget_t b = {0};
    gw_retry_ask_t a = ask(GW_FAIL_CONNECT);
    const char *why;
    cr_assert_eq(gw_retry_decide(&r, &b, &a, &why), GW_RETRY_NO_BUDGET);
    cr_assert_str_eq(why, "budget");
}

Test(retry, backoff_is_full_jitter_under_a_doubling_cap)
{
    gw_route_cfg_t r = route();
    r.backoff_base_ms = 25;
    r.backoff_max_ms = 250;
    cr_assert_eq(gw_retry_backoff_ms(&r, 1, 25), 25);
    cr_assert_eq(gw_retry_backoff_ms(&r, 1, 26), 0); /* in [0, 25] */
    cr_assert_eq(gw_retry_backoff_ms(&r, 2, 50), 50);
    cr_assert_eq(gw_retry_backoff_ms(&r, 3, 100), 100);
    cr_assert_eq(gw_retry_backoff_ms(&r, 5, 250), 250); /* 400 capped at 250 */
    cr_assert_eq(gw_retry_backoff_ms(&r, 9, 251), 0);
    for (uint64_t x = 0; x < 1000; x++)
        cr_assert_leq(gw_retry_backoff_ms(&r, 4, x * 7919), 200);
    r.backoff_base_ms = 0;
    cr_assert_eq(gw_retry_backoff_ms(&r, 3, 12345), 0);
}
