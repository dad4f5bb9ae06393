/* tests/unit/test_metrics.c: counters, histogram buckets, label escaping and the
 * exposition's validity as judged by `promtool check metrics`. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "core/metrics.h"

static const char *const routes[] = {"/users", "/users/{id}"};

/* Renders m into a fresh malloc'd string. */
static char *render(cm_metrics_t *m)
{
    cm_buf_t b = CM_BUF_INIT;
    cr_assert_eq(cm_metrics_render(m, &b), 0);
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

Test(metrics, observe_counts_and_cumulative_buckets)
{
    cm_metrics_t *m;
    cr_assert_eq(cm_metrics_new("users", routes, 2, &m), 0);
    cm_metrics_observe(m, 1, "GET", 200, 50);       /* <= 0.0001 */
    cm_metrics_observe(m, 1, "GET", 200, 100);      /* <= 0.0001: bounds are inclusive */
    cm_metrics_observe(m, 1, "GET", 404, 300);      /* <= 0.0005 */
    cm_metrics_observe(m, 1, "PUT", 200, 2000000);  /* <= 2.5 */
    cm_metrics_observe(m, 1, "GET", 200, 20000000); /* +Inf only */
    cm_metrics_observe(m, 0, "POST", 201, 1000);
    char *page = render(m);

    assert_line(page, "# TYPE cmesh_http_requests_total counter");
    assert_line(page, "cmesh_http_requests_total{service=\"users\",route=\"/users/{id}\","
                      "method=\"GET\",code=\"200\"} 3");
    assert_line(page, "cmesh_http_requests_total{service=\"users\",route=\"/users/{id}\","
                      "method=\"GET\",code=\"404\"} 1");
    assert_line(page, "cmesh_http_requests_total{service=\"users\",route=\"/users/{id}\","
                      "method=\"PUT\",code=\"200\"} 1");
    assert_line(page, "cmesh_http_requests_total{service=\"users\",route=\"/users\","
                      "method=\"POST\",code=\"201\"} 1");
    assert_no_substr(page, "method=\"DELETE\"");

    const char *h = "cmesh_http_request_duration_seconds";
    char line[256];
    static const struct {
        const char *le;
        int n;
    } want[] = {{"0.0001", 2}, {"0.00025", 2}, {"0.0005", 3}, {"0.001", 3}, {"1", 3},
                {"2.5", 4},    {"5", 4},       {"10", 4},     {"+Inf", 5}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        snprintf(line, sizeof line,
                 "%s_bucket{service=\"users\",route=\"/users/{id}\",le=\"%s\"} %d", h, want[i].le,
                 want[i].n);
        assert_line(page, line);
    }
    snprintf(line, sizeof line, "%s_count{service=\"users\",route=\"/users/{id}\"} 5", h);
    assert_line(page, line);
    /* 50 + 100 + 300 + 2000000 + 20000000 us */
    snprintf(line, sizeof line, "%s_sum{service=\"users\",route=\"/users/{id}\"} 22.000450", h);
    assert_line(page, line);
    snprintf(line, sizeof line, "%s_count{service=\"users\",route=\"/users\"} 1", h);
    assert_line(page, line);
    snprintf(line, sizeof line, "%s_sum{service=\"users\",route=\"/users\"} 0.001000", h);
    assert_line(page, line);
    free(page);
    cm_metrics_free(m);
}

Test(metrics, zero_series_are_left_out_but_help_and_type_stay)
{
    cm_metrics_t *m;
    cr_assert_eq(cm_metrics_new("users", routes, 2, &m), 0);
    char *page = render(m);
    assert_line(page, "# TYPE cmesh_http_requests_total counter");
    assert_line(page, "# TYPE cmesh_http_request_duration_seconds histogram");
    assert_no_substr(page, "cmesh_http_requests_total{");
    assert_no_substr(page, "cmesh_http_request_duration_seconds_bucket");
    assert_line(page, "cmesh_http_requests_in_flight{service=\"users\"} 0");
    assert_line(page, "cmesh_http_connections_open{service=\"users\"} 0");
    cr_assert_not_null(strstr(page, "\nprocess_resident_memory_bytes "));
    cr_assert_not_null(strstr(page, "\nprocess_open_fds "));
    cr_assert_not_null(strstr(page, "\nprocess_start_time_seconds "));
    free(page);
    cm_metrics_free(m);
}

Test(metrics, unmatched_route_and_unknown_method_and_code)
{
    cm_metrics_t *m;
    cr_assert_eq(cm_metrics_new("orders", routes, 2, &m), 0);
    cm_metrics_observe(m, 2, "GET", 404, 10);  /* index nroutes */
    cm_metrics_observe(m, -1, "GET", 404, 10); /* out of range counts as unmatched too */
    cm_metrics_observe(m, 0, "BREW", 418, 10);
    cm_metrics_inflight_add(m, 1);
    cm_metrics_inflight_add(m, 1);
    cm_metrics_inflight_add(m, -1);
    cm_metrics_connections_add(m, 3);
    char *page = render(m);
    assert_line(page, "cmesh_http_requests_total{service=\"orders\",route=\"unmatched\","
                      "method=\"GET\",code=\"404\"} 2");
    assert_line(page, "cmesh_http_request_duration_seconds_count{service=\"orders\","
                      "route=\"unmatched\"} 2");
    assert_line(page, "cmesh_http_requests_total{service=\"orders\",route=\"/users\","
                      "method=\"OTHER\",code=\"other\"} 1");
    assert_line(page, "cmesh_http_requests_in_flight{service=\"orders\"} 1");
    assert_line(page, "cmesh_http_connections_open{service=\"orders\"} 3");
    free(page);
    cm_metrics_free(m);
}

Test(metrics, label_values_are_escaped)
{
    static const char *const odd[] = {"/a\"b\\c\nd"};
    cm_metrics_t *m;
    cr_assert_eq(cm_metrics_new("sv\"c", odd, 1, &m), 0);
    cm_metrics_observe(m, 0, "GET", 200, 10);
    char *page = render(m);
    assert_line(page, "cmesh_http_requests_total{service=\"sv\\\"c\",route=\"/a\\\"b\\\\c\\nd\","
                      "method=\"GET\",code=\"200\"} 1");
    free(page);
    cm_metrics_free(m);
}

#define OBS_PER_THREAD 200000

static void *observer(void *p)
{
    cm_metrics_t *m = p;
    for (int i = 0; i < OBS_PER_THREAD; i++)
        cm_metrics_observe(m, 1, "GET", 200, (uint64_t)(i % 3000));
    return NULL;
}

Test(metrics, concurrent_observe_from_two_threads_adds_up)
{
    cm_metrics_t *m;
    cr_assert_eq(cm_metrics_new("users", routes, 2, &m), 0);
    pthread_t th[2];
    for (int t = 0; t < 2; t++)
        cr_assert_eq(pthread_create(&th[t], NULL, observer, m), 0);
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
    char *page = render(m);
    char line[256];
    snprintf(line, sizeof line,
             "cmesh_http_requests_total{service=\"users\",route=\"/users/{id}\","
             "method=\"GET\",code=\"200\"} %d",
             2 * OBS_PER_THREAD);
    assert_line(page, line);
    snprintf(line, sizeof line,
             "cmesh_http_request_duration_seconds_count{service=\"users\",route=\"/users/{id}\"} "
             "%d",
             2 * OBS_PER_THREAD);
    assert_line(page, line);
    unsigned long long sum = 0; /* what both threads observed, in us */
    for (int i = 0; i < OBS_PER_THREAD; i++)
        sum += (unsigned long long)(i % 3000);
    sum *= 2;
    snprintf(line, sizeof line,
             "cmesh_http_request_duration_seconds_sum{service=\"users\",route=\"/users/{id}\"} "
             "%llu.%06llu",
             sum / 1000000, sum % 1000000);
    assert_line(page, line);
    free(page);
    cm_metrics_free(m);
}

Test(metrics, render_passes_promtool_check)
{
    cm_metrics_t *m;
    cr_assert_eq(cm_metrics_new("users", routes, 2, &m), 0);
    const char *methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "X"};
    const int statuses[] = {200, 201, 304, 404, 422, 500, 503, 299};
    for (int r = -1; r <= 2; r++)
        for (int i = 0; i < 8; i++)
            cm_metrics_observe(m, r, methods[i], statuses[i], (uint64_t)i * 12345);
    cm_metrics_inflight_add(m, 2);
    cm_metrics_connections_add(m, 5);
    char *page = render(m);
    cm_metrics_free(m);

    char path[] = "/tmp/cmesh-metrics-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    size_t len = strlen(page);
    cr_assert_eq(write(fd, page, len), (ssize_t)len);
    close(fd);
    free(page);

    char cmd[256];
    snprintf(cmd, sizeof cmd, "/usr/bin/promtool check metrics < %s >&2", path);
    int st = system(cmd);
    unlink(path);
    cr_assert(WIFEXITED(st), "promtool did not exit normally");
    cr_assert_eq(WEXITSTATUS(st), 0, "promtool check metrics failed (output above)");
}
