/* Integration tests for following the registry in memory: a real `cmesh up` holds the
 * registry, a gateway started by the test with --registry (and a route whose only
 * upstream is a dead port) learns the instances from it, follows a `cmesh scale`, and
 * keeps serving its last set after the control plane is SIGKILLed (static stability),
 * its age metric growing. */
#include "ctl_util.h"
#include "h_util.h"

static sys_t sys;
static h_proc_t gw, ord;

static void fini(void)
{
    if (gw.pid > 0)
        h_stop(&gw);
    if (ord.pid > 0)
        h_stop(&ord);
    sys_fini();
}

TestSuite(follow, .fini = fini, .timeout = 120);

/* users only, no gateway: the test's own gateway is the one that follows */
static const char users_only[] =
    "services:\n"
    "  users:\n    command: users\n    instances: 1\n    listen: 127.0.0.1:%2$d\n"
    "    args: [--db, users.db, --access-log, 'off']\n"
    "    readiness: { path: /readyz, interval: 200ms, timeout: 200ms, fall: 1 }\n"
    "    drain_timeout: 1s\n";

/* The value of the first /metrics line of gw that starts with prefix, or -1. */
static double metric(h_proc_t *p, const char *prefix)
{
    h_resp_t r = h_req(p, "GET", "/metrics", NULL, NULL);
    double v = -1;
    const char *at = r.body ? strstr(r.body, prefix) : NULL;
    if (at)
        v = strtod(at + strlen(prefix), NULL);
    h_resp_free(&r);
    return v;
}

/* Waits until GET /users/1 through the gateway answers 200 or 404 (reached users). */
static void wait_routed(int timeout_ms)
{
    double until = now_s() + timeout_ms / 1000.0;
    while (now_s() < until) {
        h_resp_t r = h_req(&gw, "GET", "/users/1", NULL, NULL);
        long st = r.status;
        h_resp_free(&r);
        if (st == 200 || st == 404)
            return;
        ms_sleep(50);
    }
    cr_assert_fail("the gateway never reached users through the registry");
}

static void start_gateway(void)
{
    char route[64];
    snprintf(route, sizeof route, "/users=http://127.0.0.1:%d", h_free_port());
    h_start(&gw, "gateway", "--route", route, "--registry", sys.ctl, "--access-log", "off",
            (char *)NULL);
}

Test(follow, gateway_learns_instances_and_follows_a_scale)
{
    sys_init(&sys, users_only);
    sys_start(&sys);
    sys_wait_ready(&sys, 20000);
    start_gateway();
    wait_routed(10000); /* its only configured upstream is a dead port: the registry's */

    char *out = NULL;
    const char *const scale[] = {"scale", "users", "2", NULL};
    cr_assert_eq(sys_cmd(&sys, &out, scale), 0, "%s", out);
    free(out);
    sys_wait_state(&sys, "users", 1, "ready", 0, 20000);
    /* the new instance gets traffic within a bound: its series counts requests */
    char series[160];
    snprintf(series, sizeof series,
             "cmesh_gateway_upstream_request_duration_seconds_count{route=\"users\","
             "upstream=\"http://127.0.0.1:%d\"} ",
             sys.port[0] + 1);
    double until = now_s() + 15, got = -1;
    while (now_s() < until && got <= 0) {
        for (int i = 0; i < 10; i++) {
            h_resp_t r = h_req(&gw, "GET", "/users/1", NULL, NULL);
            cr_assert(r.status == 200 || r.status == 404, "%ld %s", r.status, r.body);
            h_resp_free(&r);
        }
        got = metric(&gw, series);
        if (got <= 0)
            ms_sleep(100);
    }
    cr_assert_gt(got, 0, "users/1 (port %d) never got a request", sys.port[0] + 1);
}

/* A gateway from a file whose route names the service with service: (its own name is
 * another) and lists a dead port as its first set. */
static void start_gateway_file(void)
{
    char file[400];
    snprintf(file, sizeof file, "%s/gw.yaml", sys.dir);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "routes:\n  - name: people\n    prefix: /users\n    service: users\n"
            "    upstreams: [http://127.0.0.1:%d]\n",
            h_free_port());
    fclose(f);
    h_start(&gw, "gateway", "--config", file, "--registry", sys.ctl, "--access-log", "off",
            (char *)NULL);
}

Test(follow, gateway_keeps_serving_the_last_set_when_the_control_plane_dies)
{
    sys_init(&sys, users_only);
    sys_start(&sys);
    sys_wait_ready(&sys, 20000);
    start_gateway_file();
    wait_routed(10000);
    /* a reload re-reads the file (its dead port) and puts the registry's set back */
    kill(gw.pid, SIGHUP);
    char *text = NULL;
    cr_assert_eq(h_wait_for_text(gw.log, "config reloaded", 5000, &text), 1, "no reload");
    free(text);
    for (int i = 0; i < 20; i++) {
        h_resp_t r = h_req(&gw, "GET", "/users/1", NULL, NULL);
        cr_assert(r.status == 200 || r.status == 404, "after the reload: %ld %s", r.status, r.body);
        h_resp_free(&r);
    }
    const char *age = "cmesh_gateway_registry_age_seconds{service=\"users\"} ";
    double a0 = metric(&gw, age);
    cr_assert_geq(a0, 0, "the age metric is exported");

    sys_kill9_up(&sys); /* the instances stay (their own process groups) */
    /* serve through the outage: every request answered by users, none an error */
    double until = now_s() + 3;
    int n = 0;
    while (now_s() < until) {
        h_resp_t r = h_req(&gw, "GET", "/users/1", NULL, NULL);
        cr_assert(r.status == 200 || r.status == 404, "request %d: %ld %s", n, r.status, r.body);
        h_resp_free(&r);
        n++;
        ms_sleep(20);
    }
    double a1 = metric(&gw, age);
    cr_assert_gt(a1, 2.0, "the set's age grows while the registry is away: %f", a1);
    cr_assert_gt(a1, a0);
}

/* two users instances sharing one database */
static const char two_users[] =
    "services:\n"
    "  users:\n    command: users\n    instances: 2\n    listen: 127.0.0.1:%2$d\n"
    "    args: [--db, users.db, --access-log, 'off']\n"
    "    readiness: { path: /readyz, interval: 200ms, timeout: 200ms, fall: 1 }\n"
    "    drain_timeout: 1s\n";

static long post_order(const char *body)
{
    h_resp_t r = h_req(&ord, "POST", "/orders", body, NULL);
    long st = r.status;
    if (st != 201 && st != 503 && st != 422)
        cr_log_error("POST /orders: %ld %s", st, r.body);
    h_resp_free(&r);
    return st;
}

Test(follow, orders_checks_users_through_the_watched_set_and_survives_a_dead_instance)
{
    sys_init(&sys, two_users);
    sys_start(&sys);
    sys_wait_ready(&sys, 20000);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/users", sys.port[0]);
    static const char *const json_hdr[] = {"Content-Type: application/json", NULL};
    h_resp_t r = h_http("POST", url, "{\"name\":\"Ann\",\"email\":\"ann@x.io\"}", json_hdr);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    /* no --users-url: the users instances come from the registry only */
    h_start(&ord, "orders", "--db", "{dir}/orders.db", "--users-registry", sys.ctl, "--access-log",
            "off", (char *)NULL);
    double until = now_s() + 10;
    long st = 0;
    while (now_s() < until && (st = post_order("{\"userId\":1}")) == 503)
        ms_sleep(50);
    cr_assert_eq(st, 201, "an order checked against a watched users instance");
    cr_assert_eq(post_order("{\"userId\":99}"), 422, "unknown users are still refused");

    /* the control plane goes (its set stays in orders), then users/0 dies: the set still
     * names it, and every check falls through to users/1 */
    sys_kill9_up(&sys);
    cr_assert_eq(sys_procs(sys.state, "users/0", 1), 1, "users/0 SIGKILLed");
    ms_sleep(100);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(post_order("{\"userId\":1}"), 201, "order %d after users/0 died", i);
    h_resp_t m = h_req(&ord, "GET", "/metrics", NULL, NULL);
    const char *name = "\ncmesh_orders_registry_age_seconds ";
    const char *age = m.body ? strstr(m.body, name) : NULL;
    cr_assert_not_null(age, "the age metric is exported");
    cr_assert_gt(strtod(age + strlen(name), NULL), 0.0);
    h_resp_free(&m);
}

/* the whole system as cmesh.yaml ships it: the supervised gateway with --registry (no
 * SIGHUP any more) and orders with --users-registry {registry} */
static const char whole[] =
    "services:\n"
    "  users:\n    command: users\n    instances: 1\n    listen: 127.0.0.1:%2$d\n"
    "    args: [--db, users.db, --access-log, 'off']\n"
    "    readiness: { path: /readyz, interval: 200ms, timeout: 200ms, fall: 1 }\n"
    "    drain_timeout: 1s\n"
    "  orders:\n    command: orders\n    instances: 1\n    listen: 127.0.0.1:%3$d\n"
    "    args: [--db, orders.db, --users-registry, '{registry}', --access-log, 'off']\n"
    "    readiness: { path: /readyz, interval: 200ms, timeout: 200ms, fall: 1 }\n"
    "    drain_timeout: 1s\n"
    "gateway:\n  listen: 127.0.0.1:%1$d\n  routes:\n"
    "    - { prefix: /users, service: users }\n"
    "    - { prefix: /orders, service: orders }\n";

static h_resp_t via_gw(const char *method, const char *path, const char *body)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", sys.gw_port, path);
    static const char *const json_hdr[] = {"Content-Type: application/json", NULL};
    return h_http(method, url, body, body ? json_hdr : NULL);
}

static double gw_metric(const char *prefix)
{
    h_resp_t r = via_gw("GET", "/metrics", NULL);
    double v = -1;
    const char *at = r.body ? strstr(r.body, prefix) : NULL;
    if (at)
        v = strtod(at + strlen(prefix), NULL);
    h_resp_free(&r);
    return v;
}

Test(follow, cmesh_up_gateway_and_orders_follow_the_registry_and_outlive_it)
{
    sys_init(&sys, whole);
    sys_start(&sys);
    sys_wait_ready(&sys, 20000);
    h_resp_t r = via_gw("POST", "/users", "{\"name\":\"Ann\",\"email\":\"ann@x.io\"}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    double until = now_s() + 10;
    long st = 0;
    while (now_s() < until) { /* orders' first answer from the registry may still come */
        r = via_gw("POST", "/orders", "{\"userId\":1}");
        st = r.status;
        h_resp_free(&r);
        if (st != 503)
            break;
        ms_sleep(50);
    }
    cr_assert_eq(st, 201, "orders checks users through the registry");

    char *out = NULL;
    const char *const scale[] = {"scale", "users", "2", NULL};
    cr_assert_eq(sys_cmd(&sys, &out, scale), 0, "%s", out);
    free(out);
    sys_wait_state(&sys, "users", 1, "ready", 0, 20000);
    char series[160];
    snprintf(series, sizeof series,
             "cmesh_gateway_upstream_request_duration_seconds_count{route=\"users\","
             "upstream=\"http://127.0.0.1:%d\"} ",
             sys.port[0] + 1);
    until = now_s() + 15;
    double got = -1;
    while (now_s() < until && got <= 0) {
        for (int i = 0; i < 10; i++) {
            r = via_gw("GET", "/users/1", NULL);
            cr_assert_eq(r.status, 200, "%s", r.body);
            h_resp_free(&r);
        }
        if ((got = gw_metric(series)) <= 0)
            ms_sleep(100);
    }
    cr_assert_gt(got, 0, "the supervised gateway follows the scale in memory");

    sys_kill9_up(&sys);
    until = now_s() + 2.5;
    int n = 0;
    while (now_s() < until) {
        r = via_gw("GET", "/users/1", NULL);
        cr_assert_eq(r.status, 200, "request %d without the control plane: %s", n, r.body);
        h_resp_free(&r);
        r = via_gw("POST", "/orders", "{\"userId\":1}");
        cr_assert_eq(r.status, 201, "order %d without the control plane: %s", n, r.body);
        h_resp_free(&r);
        n++;
    }
    cr_assert_gt(gw_metric("cmesh_gateway_registry_age_seconds{service=\"users\"} "), 2.0);

    /* a new control plane adopts the instances; the watch finds it again (backoff <= 10 s)
     * and follows what it does: scaled back to 1, users/1 leaves the gateway's set */
    sys_start(&sys);
    sys_wait_ready(&sys, 20000);
    const char *const scale1[] = {"scale", "users", "1", NULL};
    cr_assert_eq(sys_cmd(&sys, &out, scale1), 0, "%s", out);
    free(out);
    /* series of a removed upstream stay on /metrics: its log line says what changed */
    char glog[400], want[200], *text = NULL;
    snprintf(glog, sizeof glog, "%s/logs/gateway.0.log", sys.state);
    snprintf(want, sizeof want, "http://127.0.0.1:%d] -> [http://127.0.0.1:%d]", sys.port[0] + 1,
             sys.port[0]);
    cr_assert_eq(h_wait_for_text(glog, want, 30000, &text), 1,
                 "users/1 never left the gateway's set:\n%s", text);
    free(text);
    cr_assert_lt(gw_metric("cmesh_gateway_registry_age_seconds{service=\"users\"} "), 12.0,
                 "the registry answers again");
    r = via_gw("GET", "/users/1", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
}
