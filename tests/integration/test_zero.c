/* Integration tests for scale to zero: `cmesh up` with a gateway and a service at 0
 * instances. The gateway holds the first requests (not refused), the control plane wakes
 * the service on the gateway's POST /v1/services/NAME/wake, the held requests are answered
 * when its instance is ready, and /metrics counts the cold start. A service that cannot
 * start gets its held requests answered 503 + Retry-After past the route's bound; a client
 * that hangs up while held leaves nothing behind. Every system is stopped at the end and
 * no process of it is left (ctl_util.h). */
#include "ctl_util.h"

#include <pthread.h>

static sys_t sys;

TestSuite(zero, .fini = sys_fini, .timeout = 120);

/* users at 0 (readiness probes quick), a gateway routing /users to it (auth off) */
static const char users_at_zero[] =
    "services:\n"
    "  users:\n    command: users\n    instances: 0\n    listen: 127.0.0.1:%2$d\n"
    "    args: [--db, users.db, --access-log, 'off']\n"
    "    readiness: { path: /readyz, interval: 200ms, timeout: 200ms, fall: 1 }\n"
    "    drain_timeout: 2s\n"
    "gateway:\n  listen: 127.0.0.1:%1$d\n  routes:\n"
    "    - { prefix: /users, service: users }\n";

/* a service whose command exits at once (never ready), at 0; two routes follow it: /broken
 * holds for 1 s, /patient for 60 s (longer than any wait of the tests below) */
static const char broken_at_zero[] =
    "services:\n"
    "  broken:\n    command: /bin/sh\n    instances: 0\n    listen: 127.0.0.1:%2$d\n"
    "    args: [-c, 'echo cannot-start >&2; exit 3']\n"
    "gateway:\n  listen: 127.0.0.1:%1$d\n  admin: { listen: '127.0.0.1:%3$d' }\n  routes:\n"
    "    - { prefix: /broken, service: broken, timeouts: { cold_start: 1s } }\n"
    "    - { prefix: /patient, service: broken, timeouts: { cold_start: 60s } }\n";

static h_resp_t via_gateway(const char *method, const char *path, const char *body)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", sys.gw_port, path);
    static const char *const json_hdr[] = {"Content-Type: application/json", NULL};
    return h_http(method, url, body, body ? json_hdr : NULL);
}

/* The value of one series (its whole name with labels) on the gateway's /metrics; -1 when
 * it is not there. */
static double gw_metric(const char *series)
{
    h_resp_t r = via_gateway("GET", "/metrics", NULL);
    double v = -1;
    size_t n = strlen(series);
    for (const char *p = r.body; r.status == 200 && p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            v = strtod(p + n + 1, NULL);
            break;
        }
    h_resp_free(&r);
    return v;
}

static void wait_metric(const char *series, double want, int timeout_ms)
{
    double until = now_s() + timeout_ms / 1000.0, v = -1;
    while (now_s() < until) {
        if ((v = gw_metric(series)) == want)
            return;
        ms_sleep(50);
    }
    cr_assert_fail("%s is %g, not %g, after %d ms", series, v, want, timeout_ms);
}

/* Events of kind for service on /v1/events. */
static int events_of(const char *kind, const char *service)
{
    json_t *o = sys_json(&sys, "/v1/events"), *e;
    size_t i;
    int n = 0;
    json_array_foreach(json_object_get(o, "events"), i, e) n +=
        strcmp(json_string_value(json_object_get(e, "kind")), kind) == 0 &&
        strcmp(json_string_value(json_object_get(e, "service")), service) == 0;
    json_decref(o);
    return n;
}

/* The system is up and the gateway has heard from the registry that service is at zero. */
static void start_at_zero(const char *yaml, const char *service)
{
    sys_init(&sys, yaml);
    sys_start(&sys);
    sys_wait_ready(&sys, 20000); /* the gateway is its only instance */
    char series[128];
    snprintf(series, sizeof series, "cmesh_gateway_scaled_to_zero{service=\"%s\"}", service);
    wait_metric(series, 1, 20000);
}

typedef struct call {
    pthread_t t;
    const char *method, *path, *body;
    long status;
    char retry_after[32];
    char error[512];
} call_t;

static void *run_call(void *p)
{
    call_t *c = p;
    h_resp_t r = via_gateway(c->method, c->path, c->body);
    c->status = r.status;
    h_header(&r, "Retry-After", c->retry_after, sizeof c->retry_after);
    json_t *j = r.status >= 400 ? json_loadb(r.body, r.body_len, 0, NULL) : NULL;
    snprintf(c->error, sizeof c->error, "%s",
             j && json_string_value(json_object_get(j, "error"))
                 ? json_string_value(json_object_get(j, "error"))
                 : "");
    json_decref(j);
    h_resp_free(&r);
    return NULL;
}

/* Sends n requests at once (each waits up to 10 s: h_http's bound) and joins them. */
static void calls(call_t *c, int n)
{
    for (int i = 0; i < n; i++)
        cr_assert_eq(pthread_create(&c[i].t, NULL, run_call, &c[i]), 0);
    for (int i = 0; i < n; i++)
        pthread_join(c[i].t, NULL);
}

Test(zero, the_first_requests_from_zero_are_held_answered_and_the_cold_start_counted)
{
    start_at_zero(users_at_zero, "users");
    cr_assert_eq(sys_procs(sys.state, "users/0", 0), 0, "users runs no instance at 0");
    cr_assert_eq(events_of("wake", "users"), 0);
    /* the registry says so: no instance, desired 0, and a first query (index=0) is
     * answered at once although this service's index never moved from 0 */
    h_resp_t r = sys_get(&sys, "/v1/services/users?index=0&wait=30s");
    cr_assert_eq(r.status, 200);
    char desired[16];
    cr_assert_eq(h_header(&r, "X-Cmesh-Desired", desired, sizeof desired), 0);
    cr_assert_str_eq(desired, "0");
    cr_assert_str_eq(r.body, "[]");
    h_resp_free(&r);

    /* several first requests at once, a write among them (its body is read while held) */
    call_t c[5] = {{.method = "GET", .path = "/users"},
                   {.method = "POST",
                    .path = "/users",
                    .body = "{\"name\":\"Ada\",\"email\":\"ada@example.com\"}"},
                   {.method = "GET", .path = "/users?limit=1"},
                   {.method = "GET", .path = "/users"},
                   {.method = "GET", .path = "/users"}};
    calls(c, 5);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(c[i].status, i == 1 ? 201 : 200, "%s %s: %ld %s", c[i].method, c[i].path,
                     c[i].status, c[i].error);

    /* the wake started the instance, once; the cold start was counted once */
    cr_assert_gt(sys_pid(&sys, "users", 0), 0);
    cr_assert_eq(events_of("wake", "users"), 1);
    cr_assert_eq(gw_metric("cmesh_gateway_cold_start_seconds_count{route=\"users\"}"), 1);
    cr_assert_eq(gw_metric("cmesh_gateway_held_requests{route=\"users\"}"), 0);
    cr_assert_eq(gw_metric("cmesh_gateway_scaled_to_zero{service=\"users\"}"), 0);
    r = via_gateway("GET", "/users", NULL); /* served, not held */
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);

    /* scaled to zero by hand and back: a second cold start, the data still there */
    char url[256];
    snprintf(url, sizeof url, "%s/v1/services/users/scale", sys.ctl);
    r = h_http("PUT", url, "{\"instances\":0}", NULL);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    wait_metric("cmesh_gateway_scaled_to_zero{service=\"users\"}", 1, 20000);
    for (int i = 0; i < 200 && sys_procs(sys.state, "users/0", 0) > 0; i++)
        ms_sleep(50);
    cr_assert_eq(sys_procs(sys.state, "users/0", 0), 0, "users/0 stopped at 0");
    r = via_gateway("GET", "/users", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "ada@example.com"), "%s", r.body);
    h_resp_free(&r);
    cr_assert_eq(events_of("wake", "users"), 2);
    cr_assert_eq(gw_metric("cmesh_gateway_cold_start_seconds_count{route=\"users\"}"), 2);

    /* the wake itself: idempotent while the service wants instances, 404 for no service */
    snprintf(url, sizeof url, "%s/v1/services/users/wake", sys.ctl);
    r = h_http("POST", url, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *j = h_json(&r);
    cr_assert_eq(json_integer_value(json_object_get(j, "desired")), 1);
    cr_assert(json_is_false(json_object_get(j, "woken")));
    json_decref(j);
    h_resp_free(&r);
    snprintf(url, sizeof url, "%s/v1/services/nosuch/wake", sys.ctl);
    r = h_http("POST", url, NULL, NULL);
    cr_assert_eq(r.status, 404);
    h_resp_free(&r);
    cr_assert_eq(events_of("wake", "users"), 2);
}

Test(zero, a_service_that_cannot_start_gets_its_held_requests_503_with_retry_after)
{
    start_at_zero(broken_at_zero, "broken");
    call_t c[3] = {{.method = "GET", .path = "/broken"},
                   {.method = "GET", .path = "/broken/1"},
                   {.method = "GET", .path = "/broken"}};
    calls(c, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(c[i].status, 503, "%ld %s", c[i].status, c[i].error);
        cr_assert_eq(strcmp(c[i].retry_after, "1"), 0, "Retry-After '%s'", c[i].retry_after);
        cr_assert(strstr(c[i].error, "service broken is scaled to zero and did not start within "
                                     "1000 ms"),
                  "%s", c[i].error);
    }
    cr_assert_eq(events_of("wake", "broken"), 1, "woken once for the cold start");
    /* the admin view says why: the route is still at zero (no ready set came) */
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/_cmesh/routes", sys.port[1]);
    h_resp_t r = h_http("GET", url, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *j = h_json(&r), *rt;
    size_t i;
    int seen = 0;
    json_array_foreach(json_object_get(j, "routes"), i, rt)
    {
        cr_assert(json_is_true(json_object_get(rt, "scaled_to_zero")), "%s", r.body);
        cr_assert_eq(json_integer_value(json_object_get(rt, "held")), 0);
        seen++;
    }
    cr_assert_eq(seen, 2);
    json_decref(j);
    h_resp_free(&r);
    cr_assert_eq(gw_metric("cmesh_gateway_held_requests{route=\"broken\"}"), 0);
    cr_assert_eq(gw_metric("cmesh_gateway_cold_start_seconds_count{route=\"broken\"}"), -1,
                 "no cold start ended");
}

Test(zero, a_client_that_hangs_up_while_held_leaves_nothing_behind)
{
    start_at_zero(broken_at_zero, "broken");
    static const char get[] = "GET /patient HTTP/1.1\r\nHost: t\r\n\r\n";
    static const char post[] = "POST /patient HTTP/1.1\r\nHost: t\r\nContent-Type: "
                               "application/json\r\nContent-Length: 40\r\n\r\n{\"name\":";
    int a = h_connect(sys.gw_port), b = h_connect(sys.gw_port);
    h_send(a, get, sizeof get - 1);
    h_send(b, post, sizeof post - 1); /* a body that never completes */
    wait_metric("cmesh_gateway_held_requests{route=\"patient\"}", 2, 20000);
    close(a);
    close(b);
    /* dropped at the hang-up, long before the route's 60 s bound */
    wait_metric("cmesh_gateway_held_requests{route=\"patient\"}", 0, 20000);
    cr_assert_eq(gw_metric("cmesh_gateway_requests_total{route=\"patient\",code=\"499\"}"), 2);
    /* the gateway serves on: a held request still answered at its bound, on the other route */
    h_resp_t r = via_gateway("GET", "/broken", NULL);
    cr_assert_eq(r.status, 503);
    h_resp_free(&r);
    cr_assert_eq(gw_metric("cmesh_gateway_held_requests{route=\"broken\"}"), 0);
}
