/* Unit tests for control/load: /metrics text → sample; two samples → rps and p99 as
 * Prometheus' rate() and histogram_quantile() compute them; probe routes left out. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "control/load.h"

static void sample(cm_load_sample_t *s, int users, int fast, int slow, int probes)
{
    char text[4096];
    /* users requests: fast ones under 1 ms, slow ones in (0.01, 0.025] */
    snprintf(text, sizeof text,
             "# HELP cmesh_http_requests_total requests\n"
             "cmesh_http_requests_total{service=\"users\",route=\"/users\",method=\"GET\","
             "code=\"200\"} %d\n"
             "cmesh_http_requests_total{service=\"users\",route=\"/readyz\",method=\"GET\","
             "code=\"200\"} %d\n"
             "cmesh_http_request_duration_seconds_bucket{service=\"users\",route=\"/users\","
             "le=\"0.001\"} %d\n"
             "cmesh_http_request_duration_seconds_bucket{service=\"users\",route=\"/users\","
             "le=\"0.01\"} %d\n"
             "cmesh_http_request_duration_seconds_bucket{service=\"users\",route=\"/users\","
             "le=\"0.025\"} %d\n"
             "cmesh_http_request_duration_seconds_bucket{service=\"users\",route=\"/users\","
             "le=\"+Inf\"} %d\n"
             "cmesh_http_request_duration_seconds_bucket{service=\"users\",route=\"/readyz\","
             "le=\"+Inf\"} %d\n"
             "cmesh_http_requests_in_flight{service=\"users\"} 3\n"
             "process_open_fds 12\n",
             users, probes, fast, fast, fast + slow, fast + slow, probes);
    cr_assert_eq(cm_load_parse(text, strlen(text), s), 0);
}

Test(load, rate_and_p99_between_two_scrapes)
{
    cm_load_sample_t a, b;
    sample(&a, 100, 100, 0, 50);
    sample(&b, 1100, 1090, 10, 5000);
    cr_assert_eq(a.requests, 100, "probe traffic is not load");
    cr_assert_eq(b.inflight, 3);
    double rps, p99;
    cr_assert_eq(cm_load_rate(&a, &b, 2000, &rps, &p99), 0);
    cr_assert_float_eq(rps, 500.0, 1e-9);
    /* 1000 new requests, rank 990 falls in the first bucket (990 of them below 1 ms) */
    cr_assert(p99 > 0 && p99 <= 1.0, "p99 %f ms", p99);
    cm_load_sample_t c;
    sample(&c, 1200, 1090, 110, 5000);
    cr_assert_eq(cm_load_rate(&b, &c, 1000, &rps, &p99), 0);
    cr_assert_float_eq(rps, 100.0, 1e-9);
    /* all 100 new ones were slow: p99 inside (10, 25] ms */
    cr_assert(p99 > 10 && p99 <= 25, "p99 %f ms", p99);
}

Test(load, idle_and_restarted_instances)
{
    cm_load_sample_t a, b;
    sample(&a, 100, 100, 0, 50);
    sample(&b, 100, 100, 0, 80);
    double rps, p99;
    cr_assert_eq(cm_load_rate(&a, &b, 1000, &rps, &p99), 0);
    cr_assert_eq(rps, 0);
    cr_assert_eq(p99, -1, "no request: no p99");
    sample(&b, 5, 5, 0, 1); /* counters went back: a new process */
    cr_assert_eq(cm_load_rate(&a, &b, 1000, &rps, &p99), -EINVAL);
    cm_load_sample_t none;
    cr_assert_eq(cm_load_parse("process_open_fds 3\n", 19, &none), -EINVAL);
}

/* An instance of users as its /metrics reads: ok GETs of /users/{id} (the pattern has
 * braces of its own inside the label value), 5xx answers, probes. */
static void users_text(char *text, size_t cap, int ok, int failed, int probes_failed)
{
    snprintf(text, cap,
             "cmesh_http_requests_total{service=\"users\",route=\"/users/{id}\",method=\"GET\","
             "code=\"200\"} %d\n"
             "cmesh_http_requests_total{service=\"users\",route=\"/users/{id}\",method=\"PUT\","
             "code=\"503\"} %d\n"
             "cmesh_http_requests_total{service=\"users\",route=\"/users\",method=\"POST\","
             "code=\"500\"} 0\n"
             "cmesh_http_requests_total{service=\"users\",route=\"/users\",method=\"POST\","
             "code=\"422\"} 7\n"
             "cmesh_http_requests_total{service=\"users\",route=\"/readyz\",method=\"GET\","
             "code=\"503\"} %d\n"
             "cmesh_http_request_duration_seconds_bucket{service=\"users\",route=\"/users/{id}\","
             "le=\"0.001\"} %d\n"
             "cmesh_http_request_duration_seconds_bucket{service=\"users\",route=\"/users/{id}\","
             "le=\"+Inf\"} %d\n",
             ok, failed, probes_failed, ok + failed, ok + failed);
}

Test(load, route_patterns_with_braces_are_counted)
{
    char text[4096];
    users_text(text, sizeof text, 90, 10, 4);
    cm_load_sample_t s;
    cr_assert_eq(cm_load_parse(text, strlen(text), &s), 0);
    /* the '}' of {id} is inside a quoted value: not the end of the label set */
    cr_assert_float_eq(s.requests, 90 + 10 + 7, 1e-9);
    cr_assert_eq(s.nb, 2);
    cr_assert_float_eq(s.bucket[1], 100, 1e-9);
}

Test(load, error_rate_is_the_5xx_share_without_probes)
{
    char text[4096];
    cm_load_sample_t a, b, w;
    users_text(text, sizeof text, 100, 0, 0);
    cr_assert_eq(cm_load_parse(text, strlen(text), &a), 0);
    cr_assert_float_eq(a.errors, 0, 1e-9);
    /* 80 more requests, 20 of them 503; the failing readiness probe does not count */
    users_text(text, sizeof text, 160, 20, 500);
    cr_assert_eq(cm_load_parse(text, strlen(text), &b), 0);
    cr_assert_float_eq(b.errors, 20, 1e-9);
    cr_assert_eq(cm_load_window(&a, &b, &w), 0);
    cr_assert_float_eq(w.requests, 80, 1e-9);
    cr_assert_float_eq(cm_load_window_errors(&w), 0.25, 1e-9);
    /* no request in the window: no error rate (not 0 %) */
    cr_assert_eq(cm_load_window(&b, &b, &w), 0);
    cr_assert_eq(cm_load_window_errors(&w), -1);
    /* a restarted process: counters went back, no window */
    cr_assert_eq(cm_load_window(&b, &a, &w), -EINVAL);
}

Test(load, windows_of_instances_merge_into_the_service_p99)
{
    cm_load_sample_t a0, a1, b0, b1, w0, w1, sum;
    /* instance 0: 1000 fast requests; instance 1: 100 slow ones (0.01..0.025 s) */
    sample(&a0, 0, 0, 0, 0);
    sample(&b0, 1000, 1000, 0, 10);
    sample(&a1, 0, 0, 0, 0);
    sample(&b1, 100, 0, 100, 10);
    cr_assert_eq(cm_load_window(&a0, &b0, &w0), 0);
    cr_assert_eq(cm_load_window(&a1, &b1, &w1), 0);
    cr_assert(cm_load_window_p99(&w0) <= 1.0);
    cr_assert(cm_load_window_p99(&w1) > 10);
    memset(&sum, 0, sizeof sum);
    cm_load_window_add(&sum, &w0);
    cm_load_window_add(&sum, &w1);
    cr_assert_float_eq(sum.requests, 1100, 1e-9);
    /* 1100 requests, rank 1089: past the 1000 fast ones, inside the slow bucket; the
     * merged histogram's p99, not the slower instance's and not an average */
    double p99 = cm_load_window_p99(&sum);
    cr_assert(p99 > 10 && p99 <= 25, "p99 %f ms", p99);
    cr_assert_lt(p99, cm_load_window_p99(&w1));
    cm_load_sample_t empty;
    memset(&empty, 0, sizeof empty);
    cr_assert_eq(cm_load_window_p99(&empty), -1, "no request: no p99");
}

Test(load, time_sums_of_requests_leave_probes_out)
{
    const char text[] =
        "cmesh_http_requests_total{service=\"users\",route=\"/users\",method=\"GET\","
        "code=\"200\"} 10\n"
        "cmesh_http_request_duration_seconds_sum{service=\"users\",route=\"/users\"} 1.250000\n"
        "cmesh_http_request_duration_seconds_sum{service=\"users\",route=\"/users/{id}\"} "
        "0.75\n"
        "cmesh_http_request_duration_seconds_sum{service=\"users\",route=\"/readyz\"} 9\n";
    cm_load_sample_t s;
    cr_assert_eq(cm_load_parse(text, strlen(text), &s), 0);
    cr_assert_float_eq(s.time_sum, 2.0, 1e-9);
}

Test(load, gateway_time_per_upstream_summed_over_routes)
{
    const char text[] = "# TYPE cmesh_gateway_upstream_request_duration_seconds histogram\n"
                        "cmesh_gateway_upstream_request_duration_seconds_bucket{route=\"users\","
                        "upstream=\"http://127.0.0.1:7001\",le=\"+Inf\"} 4\n"
                        "cmesh_gateway_upstream_request_duration_seconds_sum{route=\"users\","
                        "upstream=\"http://127.0.0.1:7001\"} 3.5\n"
                        "cmesh_gateway_upstream_request_duration_seconds_sum{route=\"api\","
                        "upstream=\"http://127.0.0.1:7001\"} 0.5\n"
                        "cmesh_gateway_upstream_request_duration_seconds_sum{route=\"users\","
                        "upstream=\"http://127.0.0.1:7002\"} 1\n"
                        "cmesh_gateway_request_duration_seconds_sum{route=\"users\"} 99\n";
    cm_load_up_t up[4];
    cr_assert_eq(cm_load_parse_upstreams(text, strlen(text), up, 4), 2);
    cr_assert_str_eq(up[0].url, "http://127.0.0.1:7001");
    cr_assert_float_eq(up[0].time_sum, 4.0, 1e-9);
    cr_assert_str_eq(up[1].url, "http://127.0.0.1:7002");
    cr_assert_float_eq(up[1].time_sum, 1.0, 1e-9);
    cr_assert_eq(cm_load_parse_upstreams(text, strlen(text), up, 1), 1);
}
