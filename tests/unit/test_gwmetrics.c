/* tests/unit/test_gwmetrics.c: the gateway's per-route and per-upstream series:
 * counters, cumulative histograms, gauges, label escaping, series identity, exact sums
 * under concurrent updates, and the page's validity as judged by `promtool check`. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "core/metrics.h"
#include "gateway/gwmetrics.h"

#define PROMTOOL "/usr/bin/promtool"

/* Renders m into a fresh malloc'd string. */
static char *render(gw_metrics_t *m)
{
    cm_buf_t b = CM_BUF_INIT;
    cr_assert_eq(gw_metrics_render(m, &b), 0);
    cr_assert_not_null(b.data);
    return b.data;
}

/* Asserts that page holds line as a whole line. */
static void assert_line(const char *page, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = page; (p = strstr(p, line)) != NULL; p++)
        if ((p == page || p[-1] == '\n') && p[n] == '\n')
            return;
    cr_assert_fail("missing line\n  %s\nin page:\n%s", line, page);
}

static void assert_no_substr(const char *page, const char *s)
{
    cr_assert_null(strstr(page, s), "unexpected %s in page:\n%s", s, page);
}

static int count_substr(const char *page, const char *s)
{
    int n = 0;
    for (const char *p = page; (p = strstr(p, s)) != NULL; p += strlen(s))
        n++;
    return n;
}

static gw_metrics_t *new_metrics(void)
{
    gw_metrics_t *m;
    cr_assert_eq(gw_metrics_new(&m), 0);
    return m;
}

Test(gwmetrics, route_observe_counts_by_code_and_leaves_zero_codes_out)
{
    gw_metrics_t *m = new_metrics();
    gw_route_stats_t *r = gw_metrics_route(m, "users");
    cr_assert_not_null(r);
    gw_route_observe(r, 200, 10);
    gw_route_observe(r, 200, 10);
    gw_route_observe(r, 502, 10);
    gw_route_observe(r, 418, 10); /* not a code cmesh sends */
    char *page = render(m);
    assert_line(page, "# TYPE cmesh_gateway_requests_total counter");
    assert_line(page, "cmesh_gateway_requests_total{route=\"users\",code=\"200\"} 2");
    assert_line(page, "cmesh_gateway_requests_total{route=\"users\",code=\"502\"} 1");
    assert_line(page, "cmesh_gateway_requests_total{route=\"users\",code=\"other\"} 1");
    assert_no_substr(page, "code=\"404\"");
    free(page);
    gw_metrics_free(m);
}

Test(gwmetrics, route_histogram_is_cumulative_with_sum_in_seconds)
{
    gw_metrics_t *m = new_metrics();
    gw_route_stats_t *r = gw_metrics_route(m, "users");
    gw_route_observe(r, 200, 50);       /* <= 0.0001 */
    gw_route_observe(r, 200, 100);      /* <= 0.0001: bounds are inclusive */
    gw_route_observe(r, 200, 300);      /* <= 0.0005 */
    gw_route_observe(r, 200, 2000000);  /* <= 2.5 */
    gw_route_observe(r, 504, 20000000); /* +Inf only */
    char *page = render(m);

    const char *h = "cmesh_gateway_request_duration_seconds";
    char line[256];
    static const struct {
        const char *le;
        int n;
    } want[] = {{"0.0001", 2}, {"0.00025", 2}, {"0.0005", 3}, {"0.001", 3}, {"1", 3},
                {"2.5", 4},    {"5", 4},       {"10", 4},     {"+Inf", 5}};
    assert_line(page, "# TYPE cmesh_gateway_request_duration_seconds histogram");
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        snprintf(line, sizeof line, "%s_bucket{route=\"users\",le=\"%s\"} %d", h, want[i].le,
                 want[i].n);
        assert_line(page, line);
    }
    snprintf(line, sizeof line, "%s_count{route=\"users\"} 5", h);
    assert_line(page, line);
    /* 50 + 100 + 300 + 2000000 + 20000000 us */
    snprintf(line, sizeof line, "%s_sum{route=\"users\"} 22.000450", h);
    assert_line(page, line);
    free(page);
    gw_metrics_free(m);
}

Test(gwmetrics, retries_by_reason_budget_rate_limit_and_auth)
{
    gw_metrics_t *m = new_metrics();
    gw_route_stats_t *r = gw_metrics_route(m, "orders");
    gw_route_retry(r, GW_RETRY_CONNECT);
    gw_route_retry(r, GW_RETRY_CONNECT);
    gw_route_retry(r, GW_RETRY_503);
    gw_route_retry(r, GW_RETRY_TIMEOUT);
    gw_route_budget_exhausted(r);
    gw_route_rate_limited(r);
    gw_route_rate_limited(r);
    gw_route_auth_failed(r, 401);
    gw_route_auth_failed(r, 401);
    gw_route_auth_failed(r, 403);
    char *page = render(m);
    assert_line(page, "# TYPE cmesh_gateway_retries_total counter");
    assert_line(page, "cmesh_gateway_retries_total{route=\"orders\",reason=\"connect\"} 2");
    assert_line(page, "cmesh_gateway_retries_total{route=\"orders\",reason=\"reset\"} 0");
    assert_line(page, "cmesh_gateway_retries_total{route=\"orders\",reason=\"timeout\"} 1");
    assert_line(page, "cmesh_gateway_retries_total{route=\"orders\",reason=\"503\"} 1");
    assert_line(page, "cmesh_gateway_retry_budget_exhausted_total{route=\"orders\"} 1");
    assert_line(page, "cmesh_gateway_rate_limited_total{route=\"orders\"} 2");
    assert_line(page, "cmesh_gateway_auth_failures_total{route=\"orders\",code=\"401\"} 2");
    assert_line(page, "cmesh_gateway_auth_failures_total{route=\"orders\",code=\"403\"} 1");
    /* no request was observed: the histogram is left out, its HELP and TYPE stay */
    assert_line(page, "# TYPE cmesh_gateway_request_duration_seconds histogram");
    assert_no_substr(page, "cmesh_gateway_request_duration_seconds_bucket");
    free(page);
    gw_metrics_free(m);
}

Test(gwmetrics, upstream_codes_none_histogram_and_ejections)
{
    gw_metrics_t *m = new_metrics();
    gw_route_stats_t *r = gw_metrics_route(m, "users");
    gw_up_stats_t *u = gw_metrics_upstream(m, r, "http://127.0.0.1:7001");
    cr_assert_not_null(u);
    gw_up_observe(u, 200, 1000);
    gw_up_observe(u, 503, 2000);
    gw_up_observe(u, 0, 3000); /* connect failure: no response */
    gw_up_observe(u, 0, 4000);
    gw_up_ejected(u);
    char *page = render(m);
    const char *l = "route=\"users\",upstream=\"http://127.0.0.1:7001\"";
    char line[256];
    snprintf(line, sizeof line, "cmesh_gateway_upstream_requests_total{%s,code=\"200\"} 1", l);
    assert_line(page, line);
    snprintf(line, sizeof line, "cmesh_gateway_upstream_requests_total{%s,code=\"503\"} 1", l);
    assert_line(page, line);
    snprintf(line, sizeof line, "cmesh_gateway_upstream_requests_total{%s,code=\"none\"} 2", l);
    assert_line(page, line);
    snprintf(line, sizeof line,
             "cmesh_gateway_upstream_request_duration_seconds_bucket{%s,le=\"0.001\"} 1", l);
    assert_line(page, line);
    snprintf(line, sizeof line,
             "cmesh_gateway_upstream_request_duration_seconds_bucket{%s,le=\"0.0025\"} 2", l);
    assert_line(page, line);
    snprintf(line, sizeof line,
             "cmesh_gateway_upstream_request_duration_seconds_bucket{%s,le=\"0.005\"} 4", l);
    assert_line(page, line);
    snprintf(line, sizeof line, "cmesh_gateway_upstream_request_duration_seconds_count{%s} 4", l);
    assert_line(page, line);
    snprintf(line, sizeof line, "cmesh_gateway_upstream_request_duration_seconds_sum{%s} 0.010000",
             l);
    assert_line(page, line);
    snprintf(line, sizeof line, "cmesh_gateway_upstream_ejections_total{%s} 1", l);
    assert_line(page, line);
    free(page);
    gw_metrics_free(m);
}

Test(gwmetrics, gauges_sum_their_deltas)
{
    gw_metrics_t *m = new_metrics();
    gw_route_stats_t *r = gw_metrics_route(m, "users");
    gw_up_stats_t *u = gw_metrics_upstream(m, r, "http://a:1");
    gw_up_healthy_add(u, 1);
    gw_up_healthy_add(u, 1);
    gw_up_healthy_add(u, -1);
    gw_up_pool_add(u, 3, 2);
    gw_up_pool_add(u, -1, 1);
    gw_up_pool_add(u, 0, -3);
    char *page = render(m);
    assert_line(page, "# TYPE cmesh_gateway_upstream_healthy gauge");
    assert_line(page, "cmesh_gateway_upstream_healthy{route=\"users\",upstream=\"http://a:1\"} 1");
    assert_line(page, "# TYPE cmesh_gateway_upstream_connections gauge");
    assert_line(page, "cmesh_gateway_upstream_connections{route=\"users\",upstream=\"http://a:1\","
                      "state=\"idle\"} 2");
    assert_line(page, "cmesh_gateway_upstream_connections{route=\"users\",upstream=\"http://a:1\","
                      "state=\"active\"} 0");
    free(page);
    gw_metrics_free(m);
}

Test(gwmetrics, one_cold_start_observation_from_the_first_held_request_to_the_first_dispatch)
{
    gw_metrics_t *m = new_metrics();
    gw_route_stats_t *r = gw_metrics_route(m, "users");
    const uint64_t S = 1000000000ULL;
    gw_route_hold(r, 10 * S); /* the first held request of the cold start */
    gw_route_hold(r, 11 * S); /* another worker's, later */
    cr_assert_eq(gw_route_held(r), 2);
    gw_route_unhold(r, 1, 12 * S); /* first dispatch: 2 s from the first held */
    gw_route_unhold(r, 1, 13 * S); /* the rest of the same cold start: not observed */
    cr_assert_eq(gw_route_held(r), 0);
    /* a cold start whose requests all expire is not observed, and the next one starts anew */
    gw_route_hold(r, 20 * S);
    gw_route_unhold(r, 0, 50 * S);
    gw_route_hold(r, 60 * S);
    gw_route_unhold(r, 1, 60 * S + S / 2);
    char *page = render(m);
    assert_line(page, "cmesh_gateway_cold_start_seconds_count{route=\"users\"} 2");
    assert_line(page, "cmesh_gateway_cold_start_seconds_sum{route=\"users\"} 2.500000");
    assert_line(page, "cmesh_gateway_cold_start_seconds_bucket{route=\"users\",le=\"1\"} 1");
    assert_line(page, "cmesh_gateway_held_requests{route=\"users\"} 0");
    free(page);
    gw_metrics_free(m);
}

Test(gwmetrics, empty_registry_still_has_every_help_and_type)
{
    gw_metrics_t *m = new_metrics();
    char *page = render(m);
    static const char *const families[] = {
        "requests_total counter",
        "request_duration_seconds histogram",
        "retries_total counter",
        "retry_budget_exhausted_total counter",
        "rate_limited_total counter",
        "auth_failures_total counter",
        "cold_start_seconds histogram",
        "held_requests gauge",
        "upstream_requests_total counter",
        "upstream_request_duration_seconds histogram",
        "upstream_ejections_total counter",
        "upstream_healthy gauge",
        "upstream_connections gauge",
    };
    char line[128];
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        snprintf(line, sizeof line, "# TYPE cmesh_gateway_%s", families[i]);
        assert_line(page, line);
    }
    cr_assert_eq(count_substr(page, "# HELP cmesh_gateway_"), 13);
    cr_assert_eq(count_substr(page, "\ncmesh_gateway_"), 0, "series in an empty page:\n%s", page);
    free(page);
    gw_metrics_free(m);
}

Test(gwmetrics, label_values_are_escaped)
{
    gw_metrics_t *m = new_metrics();
    gw_route_stats_t *r = gw_metrics_route(m, "/a\"b\\c\nd");
    gw_up_stats_t *u = gw_metrics_upstream(m, r, "http://h/\"x\"");
    gw_route_observe(r, 200, 10);
    gw_up_ejected(u);
    char *page = render(m);
    assert_line(page, "cmesh_gateway_requests_total{route=\"/a\\\"b\\\\c\\nd\",code=\"200\"} 1");
    assert_line(page, "cmesh_gateway_upstream_ejections_total{route=\"/a\\\"b\\\\c\\nd\","
                      "upstream=\"http://h/\\\"x\\\"\"} 1");
    free(page);
    gw_metrics_free(m);
}

Test(gwmetrics, same_name_gives_the_same_series)
{
    gw_metrics_t *m = new_metrics();
    gw_route_stats_t *r1 = gw_metrics_route(m, "users");
    gw_route_stats_t *other = gw_metrics_route(m, "orders");
    gw_route_stats_t *r2 = gw_metrics_route(m, "users"); /* a reload applies it again */
    cr_assert_eq(r1, r2);
    cr_assert_neq(r1, other);
    gw_up_stats_t *u1 = gw_metrics_upstream(m, r1, "http://a:1");
    gw_up_stats_t *u2 = gw_metrics_upstream(m, r2, "http://a:1");
    gw_up_stats_t *u3 = gw_metrics_upstream(m, other, "http://a:1"); /* other route */
    cr_assert_eq(u1, u2);
    cr_assert_neq(u1, u3);
    gw_route_observe(r1, 200, 10);
    gw_route_observe(r2, 200, 10);
    gw_up_observe(u1, 200, 10);
    gw_up_observe(u2, 200, 10);
    char *page = render(m);
    assert_line(page, "cmesh_gateway_requests_total{route=\"users\",code=\"200\"} 2");
    assert_line(page,
                "cmesh_gateway_upstream_requests_total{route=\"users\",upstream=\"http://a:1\","
                "code=\"200\"} 2");
    cr_assert_eq(count_substr(page, "cmesh_gateway_requests_total{route=\"users\""), 1);
    cr_assert_eq(count_substr(page, "cmesh_gateway_upstream_healthy{route=\"users\""), 1);
    free(page);
    gw_metrics_free(m);
}

#define OBS_PER_THREAD 100000
#define NTHREADS       4

typedef struct {
    gw_route_stats_t *r;
    gw_up_stats_t *u;
} pair_t;

static void *observer(void *p)
{
    pair_t *s = p;
    for (int i = 0; i < OBS_PER_THREAD; i++) {
        gw_route_observe(s->r, 200, (uint64_t)(i % 3000));
        gw_up_observe(s->u, i % 2 ? 0 : 200, 7);
        gw_route_retry(s->r, GW_RETRY_RESET);
        gw_up_pool_add(s->u, 1, -1);
    }
    return NULL;
}

Test(gwmetrics, concurrent_observes_from_four_threads_add_up)
{
    gw_metrics_t *m = new_metrics();
    pair_t s = {gw_metrics_route(m, "users"), NULL};
    s.u = gw_metrics_upstream(m, s.r, "http://a:1");
    pthread_t th[NTHREADS];
    for (int t = 0; t < NTHREADS; t++)
        cr_assert_eq(pthread_create(&th[t], NULL, observer, &s), 0);
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(th[t], NULL);
    char *page = render(m);
    char line[256];
    snprintf(line, sizeof line, "cmesh_gateway_requests_total{route=\"users\",code=\"200\"} %d",
             NTHREADS * OBS_PER_THREAD);
    assert_line(page, line);
    snprintf(line, sizeof line, "cmesh_gateway_request_duration_seconds_count{route=\"users\"} %d",
             NTHREADS * OBS_PER_THREAD);
    assert_line(page, line);
    unsigned long long sum = 0; /* what all threads observed, in us */
    for (int i = 0; i < OBS_PER_THREAD; i++)
        sum += (unsigned long long)(i % 3000);
    sum *= NTHREADS;
    snprintf(line, sizeof line,
             "cmesh_gateway_request_duration_seconds_sum{route=\"users\"} %llu.%06llu",
             sum / 1000000, sum % 1000000);
    assert_line(page, line);
    snprintf(line, sizeof line, "cmesh_gateway_retries_total{route=\"users\",reason=\"reset\"} %d",
             NTHREADS * OBS_PER_THREAD);
    assert_line(page, line);
    snprintf(line, sizeof line,
             "cmesh_gateway_upstream_requests_total{route=\"users\",upstream=\"http://a:1\","
             "code=\"none\"} %d",
             NTHREADS * OBS_PER_THREAD / 2);
    assert_line(page, line);
    snprintf(line, sizeof line,
             "cmesh_gateway_upstream_connections{route=\"users\",upstream=\"http://a:1\","
             "state=\"idle\"} %d",
             NTHREADS * OBS_PER_THREAD);
    assert_line(page, line);
    snprintf(line, sizeof line,
             "cmesh_gateway_upstream_connections{route=\"users\",upstream=\"http://a:1\","
             "state=\"active\"} %d",
             -NTHREADS * OBS_PER_THREAD);
    assert_line(page, line);
    free(page);
    gw_metrics_free(m);
}

Test(gwmetrics, shared_code_table_maps_like_core)
{
    cr_assert_str_eq(cm_metrics_code_name(cm_metrics_code_index(100)), "100");
    cr_assert_str_eq(cm_metrics_code_name(cm_metrics_code_index(200)), "200");
    cr_assert_str_eq(cm_metrics_code_name(cm_metrics_code_index(429)), "429");
    cr_assert_str_eq(cm_metrics_code_name(cm_metrics_code_index(504)), "504");
    cr_assert_eq(cm_metrics_code_index(418), CM_METRICS_NCODES - 1);
    cr_assert_eq(cm_metrics_code_index(-1), CM_METRICS_NCODES - 1);
    cr_assert_eq(cm_metrics_code_index(600), CM_METRICS_NCODES - 1);
    cr_assert_str_eq(cm_metrics_code_name(CM_METRICS_NCODES - 1), "other");
}

/* Writes page to a temporary file and returns promtool's exit status (-1: abnormal). */
static int promtool_check(const char *page)
{
    char path[] = "/tmp/cmesh-gwmetrics-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    size_t len = strlen(page);
    cr_assert_eq(write(fd, page, len), (ssize_t)len);
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof cmd, PROMTOOL " check metrics < %s >&2", path);
    int st = system(cmd);
    unlink(path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(gwmetrics, render_passes_promtool_check)
{
    if (access(PROMTOOL, X_OK) != 0)
        cr_skip("promtool not installed at " PROMTOOL);
    gw_metrics_t *m = new_metrics();
    const char *const names[] = {"users", "orders", "we\"ird\\route\n"};
    const int statuses[] = {200, 201, 304, 404, 422, 500, 503, 299, 0};
    for (int i = 0; i < 3; i++) {
        gw_route_stats_t *r = gw_metrics_route(m, names[i]);
        gw_up_stats_t *a = gw_metrics_upstream(m, r, "http://127.0.0.1:7001");
        gw_up_stats_t *b = gw_metrics_upstream(m, r, "http://127.0.0.1:7002");
        for (int s = 0; s < 9; s++) {
            gw_route_observe(r, statuses[s] ? statuses[s] : 502, (uint64_t)s * 12345);
            gw_up_observe(a, statuses[s], (uint64_t)s * 1000);
        }
        gw_route_retry(r, GW_RETRY_503);
        gw_route_budget_exhausted(r);
        gw_route_rate_limited(r);
        gw_route_auth_failed(r, 401);
        gw_up_ejected(b);
        gw_up_healthy_add(a, 2);
        gw_up_pool_add(b, 4, 1);
    }
    char *page = render(m);
    gw_metrics_free(m);
    int rc = promtool_check(page);
    cr_assert_eq(rc, 0, "promtool check metrics failed (output above) on:\n%s", page);
    free(page);
}
