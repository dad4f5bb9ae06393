/* Integration tests for the control plane: `cmesh up` runs real services and a real
 * gateway from a cmesh.yaml in a temp dir; instances are killed, stopped, hung and made
 * to misbehave for real; every test ends with no process of its system left (a /proc
 * scan of the environment every instance inherits). */
#include "ctl_util.h"

#include <pthread.h>
#include <stdatomic.h>

static sys_t sys;

TestSuite(control, .fini = sys_fini, .timeout = 90);

/* 2 users, 1 orders calling them, a gateway routing both (auth off). */
static const char basic[] =
    "services:\n"
    "  users:\n    command: users\n    instances: 2\n    listen: 127.0.0.1:%2$d\n"
    "    args: [--db, users.db, --access-log, 'off']\n"
    "    readiness: { path: /readyz, interval: 200ms, timeout: 200ms, fall: 1 }\n"
    "    liveness: { path: /healthz, interval: 500ms, timeout: 400ms, fall: 2 }\n"
    "    drain_timeout: 2s\n"
    "  orders:\n    command: orders\n    instances: 1\n    listen: 127.0.0.1:%3$d\n"
    "    args: [--db, orders.db, --users-url, '{url:users}', --access-log, 'off']\n"
    "    readiness: { path: /readyz, interval: 200ms, timeout: 200ms, fall: 1 }\n"
    "    drain_timeout: 2s\n"
    "gateway:\n  listen: 127.0.0.1:%1$d\n  routes:\n"
    "    - { prefix: /users, service: users }\n"
    "    - { prefix: /orders, service: orders }\n";

static h_resp_t via_gateway(const char *method, const char *path, const char *body)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", sys.gw_port, path);
    static const char *const json_hdr[] = {"Content-Type: application/json", NULL};
    return h_http(method, url, body, body ? json_hdr : NULL);
}

Test(control, up_serves_through_the_gateway_and_down_leaves_no_process)
{
    sys_init(&sys, basic);
    sys_start(&sys);
    sys_wait_ready(&sys, 20000);
    json_t *svcs = sys_json(&sys, "/v1/services");
    cr_assert_eq(json_array_size(svcs), 3);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(svcs, 0), "ready")), 2);
    json_decref(svcs);
    h_resp_t r = via_gateway("POST", "/users", "{\"name\":\"Ann\",\"email\":\"ann@x.io\"}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    r = via_gateway("POST", "/orders", "{\"userId\":1}");
    cr_assert_eq(r.status, 201, "orders reaches users through {url:users}: %s", r.body);
    h_resp_free(&r);
    /* Prometheus HTTP SD: one group per instance with a process */
    json_t *t = sys_json(&sys, "/v1/targets");
    cr_assert_eq(json_array_size(t), 4);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", sys.port[0]);
    json_t *g0 = json_array_get(t, 0);
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(g0, "targets"), 0)), want);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(g0, "labels"), "job")),
                     "users");
    json_decref(t);
    cr_assert_eq(sys_procs(sys.state, NULL, 0), 4);
    cr_assert_eq(sys_stop(&sys, 20000), 0, "a graceful down exits 0");
    cr_assert_eq(sys_procs(sys.state, NULL, 0), 0, "nothing outlives cmesh down");
    char *out;
    const char *const st[] = {"status", NULL};
    cr_assert_eq(sys_cmd(&sys, &out, st), 1, "no control plane: status exits 1");
    cr_assert(strstr(out, "does not answer"), "%s", out);
    free(out);
}

Test(control, killed_instance_is_replaced_and_counted)
{
    sys_init(&sys, basic);
    sys_start(&sys);
    sys_wait_ready(&sys, 20000);
    int pid = sys_pid(&sys, "users", 0);
    cr_assert_gt(pid, 0);
    kill(pid, SIGKILL);
    json_t *in = sys_wait_state(&sys, "users", 0, "ready", pid, 15000);
    cr_assert_eq(json_integer_value(json_object_get(in, "restarts")), 1);
    cr_assert_eq(json_integer_value(json_object_get(in, "last_exit")), 128 + SIGKILL);
    json_decref(in);
    cr_assert_eq(sys_procs(sys.state, "users/0", 0), 1, "exactly one users/0");
}

static const char crasher[] = "services:\n"
                              "  bad:\n    command: /bin/sh\n    listen: 127.0.0.1:%2$d\n"
                              "    args: [-c, 'echo boom-at-start >&2; exit 3']\n";

Test(control, crash_at_start_is_a_crash_loop_with_its_exit_code_and_last_lines)
{
    sys_init(&sys, crasher);
    sys_start(&sys);
    /* at once, then ~1 s, ~2 s: the third quick exit is a crash loop */
    double until = now_s() + 20;
    json_t *in = NULL;
    while (now_s() < until) {
        json_t *st = sys_json(&sys, "/v1/status");
        json_t *i0 = json_array_get(
            json_object_get(json_array_get(json_object_get(st, "services"), 0), "instances"), 0);
        const char *state = json_string_value(json_object_get(i0, "state"));
        if (state && strcmp(state, "crashloop") == 0) {
            in = json_incref(i0);
            json_decref(st);
            break;
        }
        json_decref(st);
        ms_sleep(100);
    }
    cr_assert_not_null(in, "never a crash loop");
    cr_assert_eq(json_integer_value(json_object_get(in, "last_exit")), 3);
    const char *tail = json_string_value(json_object_get(in, "log_tail"));
    cr_assert(tail && strstr(tail, "boom-at-start"), "log tail: %s", tail ? tail : "(none)");
    json_decref(in);
    h_resp_t r = sys_get(&sys, "/v1/ready");
    cr_assert_eq(r.status, 503);
    cr_assert(strstr(r.body, "bad/0"), "%s", r.body);
    h_resp_free(&r);
}

Test(control, up_wait_fails_naming_what_is_not_ready_and_down_stops_it)
{
    sys_init(&sys, crasher);
    char *out;
    const char *const up[] = {"up", "--wait", "--wait-timeout", "3s", NULL};
    cr_assert_eq(sys_cmd(&sys, &out, up), 1, "%s", out);
    cr_assert(strstr(out, "bad/0"), "%s", out);
    cr_assert(strstr(out, "boom-at-start") || strstr(out, "exited with status 3") ||
                  strstr(out, "restarting"),
              "%s", out);
    free(out);
    const char *const down[] = {"down", NULL};
    cr_assert_eq(sys_cmd(&sys, &out, down), 0, "%s", out);
    free(out);
    cr_assert_eq(sys_procs(sys.state, NULL, 0), 0);
}

static const char slow[] =
    "services:\n"
    "  slow:\n    command: /bin/sh\n    listen: 127.0.0.1:%2$d\n"
    "    args: [-c, 'sleep 1.5; exec \"$CMESH_BIN\" users --listen {addr} --db slow.db']\n"
    "    readiness: { path: /readyz, interval: 200ms, timeout: 200ms }\n"
    "    liveness: { path: /healthz, interval: 200ms, timeout: 200ms, fall: 1 }\n";

Test(control, slow_to_become_ready_is_starting_then_ready_without_a_restart)
{
    sys_init(&sys, slow);
    sys_start(&sys);
    json_t *in = sys_wait_state(&sys, "slow", 0, "starting", 0, 10000);
    cr_assert_eq(json_is_false(json_object_get(in, "ready")), 1);
    int pid = (int)json_integer_value(json_object_get(in, "pid"));
    json_decref(in);
    in = sys_wait_state(&sys, "slow", 0, "ready", 0, 15000);
    cr_assert_eq(json_integer_value(json_object_get(in, "pid")), pid, "same process");
    cr_assert_eq(json_integer_value(json_object_get(in, "restarts")), 0,
                 "liveness waits for the first ready");
    json_decref(in);
}

Test(control, hung_instance_is_detected_and_replaced)
{
    sys_init(&sys, basic);
    sys_start(&sys);
    sys_wait_ready(&sys, 20000);
    int pid = sys_pid(&sys, "users", 1);
    kill(pid, SIGSTOP);
    json_t *in = sys_wait_state(&sys, "users", 1, "ready", pid, 20000);
    cr_assert_geq(json_integer_value(json_object_get(in, "restarts")), 1);
    json_decref(in);
    cr_assert(kill(pid, 0) < 0 && errno == ESRCH, "the hung process is gone (not left stopped)");
    cr_assert_eq(sys_procs(sys.state, "users/1", 0), 1);
}

/* a service deaf to SIGTERM: only the SIGKILL after its drain timeout ends it */
static const char deaf_to_term[] = "services:\n"
                                   "  deaf:\n    command: /bin/sh\n    listen: 127.0.0.1:%2$d\n"
                                   "    args: [-c, 'trap \"\" TERM; while :; do sleep 0.1; done']\n"
                                   "    drain_timeout: 500ms\n";

Test(control, an_instance_ignoring_sigterm_is_killed_after_its_drain_timeout)
{
    sys_init(&sys, deaf_to_term);
    sys_start(&sys);
    sys_wait_ready(&sys, 10000);
    int pid = sys_pid(&sys, "deaf", 0);
    char url[128];
    snprintf(url, sizeof url, "%s/v1/services/deaf/scale", sys.ctl);
    static const char *const hdr[] = {"Content-Type: application/json", NULL};
    h_resp_t r = h_http("PUT", url, "{\"instances\":0}", hdr);
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    double until = now_s() + 10;
    while (now_s() < until && sys_procs(sys.state, NULL, 0) > 0)
        ms_sleep(50);
    cr_assert_eq(sys_procs(sys.state, NULL, 0), 0, "SIGKILL after the drain timeout");
    cr_assert(kill(pid, 0) < 0);
    json_t *arr = sys_json(&sys, "/v1/services/deaf");
    cr_assert_eq(json_array_size(arr), 0, "scaled away: out of the registry");
    json_decref(arr);
    char *out;
    const char *const logs[] = {"logs", "deaf/0", NULL};
    cr_assert_eq(sys_cmd(&sys, &out, logs), 0);
    cr_assert(strstr(out, "SIGKILL"), "%s", out);
    free(out);
}

static const char forker[] = "services:\n"
                             "  forker:\n    command: /bin/sh\n    listen: 127.0.0.1:%2$d\n"
                             "    args: [-c, 'setsid sleep 1000 & sleep 1000 & exec sleep 1001']\n"
                             "    drain_timeout: 1s\n";

Test(control, what_an_instance_forks_does_not_outlive_the_system)
{
    sys_init(&sys, forker);
    sys_start(&sys);
    sys_wait_ready(&sys, 10000);
    double until = now_s() + 5;
    while (now_s() < until && sys_procs(sys.state, NULL, 0) < 3)
        ms_sleep(50);
    cr_assert_eq(sys_procs(sys.state, NULL, 0), 3, "the instance and its two children");
    cr_assert_eq(sys_stop(&sys, 20000), 0);
    cr_assert_eq(sys_procs(sys.state, NULL, 0), 0,
                 "also the child in a session of its own (reaped as a subreaper)");
}

Test(control, a_port_already_taken_is_a_crash_loop_never_a_second_bind)
{
    sys_init(&sys, "services:\n"
                   "  users:\n    command: users\n    instances: 2\n    listen: 127.0.0.1:%2$d\n"
                   "    args: [--db, users.db]\n"
                   "    readiness: { path: /readyz, interval: 200ms, timeout: 200ms }\n");
    /* CLOEXEC: cmesh up (forked from this process) must not hold the port too */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    /* as port_free checks: a TIME_WAIT left on the port by an earlier system is no obstacle */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(sys.port[0] + 1))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(fd, 1), 0);
    sys_start(&sys);
    json_t *in = sys_wait_state(&sys, "users", 1, "crashloop", 0, 20000);
    json_decref(in);
    json_t *st = sys_json(&sys, "/v1/status");
    char *dump = json_dumps(st, 0);
    cr_assert(strstr(dump, "in use"), "the reason is shown: %s", dump);
    free(dump);
    json_decref(st);
    in = sys_inst(&sys, "users", 0);
    cr_assert_str_eq(json_string_value(json_object_get(in, "state")), "ready");
    json_decref(in);
    close(fd);
    /* once the port is free the next restart takes it */
    in = sys_wait_state(&sys, "users", 1, "ready", 0, 40000);
    json_decref(in);
}

static const char with_gw[] =
    "services:\n"
    "  users:\n    command: users\n    instances: 2\n    listen: 127.0.0.1:%2$d\n"
    "    args: [--db, users.db, --access-log, 'off']\n"
    "    readiness: { path: /readyz, interval: 200ms, timeout: 200ms }\n"
    "gateway:\n  listen: 127.0.0.1:%1$d\n  routes:\n    - { prefix: /users, service: users }\n";

typedef struct bg_load {
    atomic_int stop;
    int requests, errors;
} bg_load_t;

/* GET and POST (with Idempotency-Key) through the gateway until told to stop. */
static void *bg_load(void *p)
{
    bg_load_t *l = p;
    static const char *const hdr[] = {"Content-Type: application/json", NULL};
    char url[128], body[128], key[64];
    for (int i = 0; !atomic_load(&l->stop); i++) {
        h_resp_t r = via_gateway("GET", "/users", NULL);
        l->requests++;
        l->errors += r.status != 200;
        h_resp_free(&r);
        snprintf(url, sizeof url, "http://127.0.0.1:%d/users", sys.gw_port);
        snprintf(body, sizeof body, "{\"name\":\"b%d\",\"email\":\"b%d@x.io\"}", i, i);
        snprintf(key, sizeof key, "Idempotency-Key: bg-%d", i);
        const char *h2[] = {hdr[0], key, NULL};
        r = h_http("POST", url, body, h2);
        l->requests++;
        l->errors += r.status != 201;
        h_resp_free(&r);
    }
    return NULL;
}

Test(control, a_sigkilled_control_plane_is_replaced_by_one_that_adopts_every_instance)
{
    sys_init(&sys, with_gw);
    sys_start(&sys);
    sys_wait_ready(&sys, 20000);
    int u0 = sys_pid(&sys, "users", 0), u1 = sys_pid(&sys, "users", 1);
    int gw = sys_pid(&sys, "gateway", 0);
    h_resp_t r = sys_get(&sys, "/v1/services");
    char idx[32];
    cr_assert_eq(h_header(&r, "X-Cmesh-Index", idx, sizeof idx), 0);
    unsigned long long before = strtoull(idx, NULL, 10);
    h_resp_free(&r);
    /* load through the gateway the whole time: the control plane is not on the path */
    static bg_load_t bl;
    memset(&bl, 0, sizeof bl);
    pthread_t th;
    pthread_create(&th, NULL, bg_load, &bl);
    ms_sleep(300);
    sys_kill9_up(&sys);
    ms_sleep(1000); /* away for a while; instances outlive it and keep serving */
    sys_start(&sys);
    sys_wait_ready(&sys, 20000);
    atomic_store(&bl.stop, 1);
    pthread_join(th, NULL);
    cr_assert_gt(bl.requests, 10);
    cr_assert_eq(bl.errors, 0, "%d of %d requests failed while the control plane was away",
                 bl.errors, bl.requests);
    cr_assert_eq(sys_pid(&sys, "users", 0), u0);
    cr_assert_eq(sys_pid(&sys, "users", 1), u1);
    cr_assert_eq(sys_pid(&sys, "gateway", 0), gw);
    json_t *in = sys_inst(&sys, "users", 0);
    cr_assert(json_is_true(json_object_get(in, "adopted")));
    json_decref(in);
    cr_assert_eq(sys_procs(sys.state, "users/0", 0), 1, "no second copy");
    cr_assert_eq(sys_procs(sys.state, NULL, 0), 3);
    r = sys_get(&sys, "/v1/services");
    cr_assert_eq(h_header(&r, "X-Cmesh-Index", idx, sizeof idx), 0);
    cr_assert_gt(strtoull(idx, NULL, 10), before, "the index never goes backwards");
    h_resp_free(&r);
}

Test(control, down_stops_everything_also_without_a_control_plane)
{
    sys_init(&sys, with_gw);
    sys_start(&sys);
    sys_wait_ready(&sys, 20000);
    sys_kill9_up(&sys);
    cr_assert_eq(sys_procs(sys.state, NULL, 0), 3);
    char *out;
    const char *const down[] = {"down", NULL};
    cr_assert_eq(sys_cmd(&sys, &out, down), 0, "%s", out);
    cr_assert(strstr(out, "stopped 3 instances"), "%s", out);
    free(out);
    cr_assert_eq(sys_procs(sys.state, NULL, 0), 0);
}

typedef struct watch_arg {
    char url[256];
    h_resp_t r;
} watch_arg_t;

static void *watch_thread(void *p)
{
    watch_arg_t *w = p;
    w->r = h_http("GET", w->url, NULL, NULL);
    return NULL;
}

Test(control, a_blocking_watch_returns_on_change_with_a_larger_index)
{
    sys_init(&sys, with_gw);
    sys_start(&sys);
    sys_wait_ready(&sys, 20000);
    h_resp_t r = sys_get(&sys, "/v1/services/users");
    char idx[32];
    cr_assert_eq(h_header(&r, "X-Cmesh-Index", idx, sizeof idx), 0);
    unsigned long long before = strtoull(idx, NULL, 10);
    h_resp_free(&r);
    /* bad queries: 400 naming the parameter; unknown service: 404 */
    r = sys_get(&sys, "/v1/services/users?index=x");
    cr_assert_eq(r.status, 400);
    cr_assert(strstr(r.body, "\"field\":\"index\""), "%s", r.body);
    h_resp_free(&r);
    r = sys_get(&sys, "/v1/services/nope");
    cr_assert_eq(r.status, 404);
    h_resp_free(&r);
    /* nothing changes: the wait ends with the same index */
    char path[128];
    snprintf(path, sizeof path, "/v1/services/users?index=%llu&wait=300ms", before);
    r = sys_get(&sys, path);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(h_header(&r, "X-Cmesh-Index", idx, sizeof idx), 0);
    cr_assert_eq(strtoull(idx, NULL, 10), before);
    h_resp_free(&r);
    /* a change wakes it: well before its 8 s wait ends */
    watch_arg_t w;
    snprintf(w.url, sizeof w.url, "%s/v1/services/users?index=%llu&wait=8s", sys.ctl, before);
    pthread_t th;
    double t0 = now_s();
    pthread_create(&th, NULL, watch_thread, &w);
    ms_sleep(300);
    char *out;
    const char *const scale[] = {"scale", "users", "3", NULL};
    cr_assert_eq(sys_cmd(&sys, &out, scale), 0, "%s", out);
    free(out);
    pthread_join(th, NULL);
    cr_assert_lt(now_s() - t0, 8.0, "returned on the change, not at the end of its wait");
    cr_assert_eq(w.r.status, 200);
    cr_assert_eq(h_header(&w.r, "X-Cmesh-Index", idx, sizeof idx), 0);
    cr_assert_gt(strtoull(idx, NULL, 10), before);
    json_t *arr = h_json(&w.r);
    cr_assert_eq(json_array_size(arr), 3, "the new instance is in the answer");
    json_decref(arr);
    h_resp_free(&w.r);
    sys_wait_ready(&sys, 20000);
    /* the gateway routes to the new instance too (its file lists 3) */
    char gwfile[400];
    snprintf(gwfile, sizeof gwfile, "%s/gateway.yaml", sys.state);
    FILE *f = fopen(gwfile, "r");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    char third[64];
    snprintf(third, sizeof third, "http://127.0.0.1:%d", sys.port[0] + 2);
    cr_assert(strstr(buf, third), "%s", buf);
}

Test(control, status_table_and_json_show_every_instance)
{
    sys_init(&sys, with_gw);
    sys_start(&sys);
    sys_wait_ready(&sys, 20000);
    char *out;
    const char *const st[] = {"status", NULL};
    cr_assert_eq(sys_cmd(&sys, &out, st), 0, "%s", out);
    cr_assert(strncmp(out, "SERVICE", 7) == 0, "%s", out);
    cr_assert(strstr(out, "users/1") && strstr(out, "gateway/0") && strstr(out, "ready"), "%s",
              out);
    cr_assert(strstr(out, "RESTARTS") && strstr(out, "RSS"), "%s", out);
    free(out);
    const char *const js[] = {"status", "-o", "json", NULL};
    cr_assert_eq(sys_cmd(&sys, &out, js), 0);
    json_t *o = json_loads(out, 0, NULL);
    cr_assert_not_null(o, "%s", out);
    cr_assert_eq(json_array_size(json_object_get(o, "services")), 2);
    json_decref(o);
    free(out);
    /* RPS and P99 come from the instances' own /metrics: under some load they show */
    double rps = 0, p99 = -1;
    for (double until = now_s() + 15; now_s() < until && (rps <= 0 || p99 < 0);) {
        for (int i = 0; i < 20; i++) {
            h_resp_t r = via_gateway("GET", "/users", NULL);
            h_resp_free(&r);
        }
        json_t *st = sys_json(&sys, "/v1/status");
        json_t *u =
                   json_object_get(json_array_get(json_object_get(st, "services"), 0), "instances"),
               *in;
        size_t i;
        json_array_foreach(u, i, in)
        {
            if (json_number_value(json_object_get(in, "rps")) > rps)
                rps = json_number_value(json_object_get(in, "rps"));
            if (json_object_get(in, "p99_ms"))
                p99 = json_number_value(json_object_get(in, "p99_ms"));
        }
        json_decref(st);
        ms_sleep(200);
    }
    cr_assert_gt(rps, 0, "no RPS in /v1/status");
    cr_assert_geq(p99, 0, "no P99 in /v1/status");
    const char *const bad[] = {"status", "-o", "yaml", NULL};
    cr_assert_eq(sys_cmd(&sys, &out, bad), 2);
    free(out);
    const char *const scale_bad[] = {"scale", "nope", "2", NULL};
    cr_assert_eq(sys_cmd(&sys, &out, scale_bad), 2);
    free(out);
}

Test(control, a_second_up_on_the_same_system_fails_with_address_in_use)
{
    sys_init(&sys, with_gw);
    sys_start(&sys);
    sys_wait_ready(&sys, 20000);
    char *out;
    const char *const up[] = {"up", NULL};
    cr_assert_eq(sys_cmd(&sys, &out, up), 1);
    cr_assert(strstr(out, "already in use"), "%s", out);
    free(out);
    cr_assert_eq(sys_procs(sys.state, NULL, 0), 3, "no second copy of anything");
}

static h_resp_t put_json(const char *url, const char *body)
{
    static const char *const hdr[] = {"Content-Type: application/json", NULL};
    return h_http("PUT", url, body, hdr);
}

static int registered(sys_t *s, const char *id)
{
    json_t *arr = sys_json(s, "/v1/services/users"), *it;
    size_t i;
    int found = 0;
    json_array_foreach(arr, i, it)
    {
        const char *v = json_string_value(json_object_get(it, "id"));
        found |= v && strcmp(v, id) == 0 && json_is_true(json_object_get(it, "registered")) &&
                 json_is_true(json_object_get(it, "ready"));
    }
    json_decref(arr);
    return found;
}

static int gateway_file_has(sys_t *s, const char *what)
{
    char p[400], buf[8192];
    snprintf(p, sizeof p, "%s/gateway.yaml", s->state);
    FILE *f = fopen(p, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strstr(buf, what) != NULL;
}

/* with_gw plus the gateway's admin API (its own listener; off by default) on the 4th
 * port block, to see what the gateway itself routes to */
static const char with_gw_admin[] =
    "services:\n"
    "  users:\n    command: users\n    instances: 2\n    listen: 127.0.0.1:%2$d\n"
    "    args: [--db, users.db, --access-log, 'off']\n"
    "    readiness: { path: /readyz, interval: 200ms, timeout: 200ms }\n"
    "gateway:\n  listen: 127.0.0.1:%1$d\n  admin: { listen: '127.0.0.1:%5$d' }\n"
    "  routes:\n    - { prefix: /users, service: users }\n";

Test(control, an_instance_started_by_hand_registers_with_a_ttl_and_is_routed)
{
    sys_init(&sys, with_gw_admin);
    sys_start(&sys);
    sys_wait_ready(&sys, 20000);
    h_proc_t ext;
    h_start(&ext, "users", "--db", "{dir}/ext.db", "--access-log", "off", NULL);
    char url[256], body[256], mine[64];
    snprintf(url, sizeof url, "%s/v1/services/users/instances/by-hand", sys.ctl);
    snprintf(body, sizeof body, "{\"address\":\"127.0.0.1\",\"port\":%d,\"ttl\":\"1s\"}", ext.port);
    snprintf(mine, sizeof mine, "http://127.0.0.1:%d", ext.port);
    /* heartbeats (re-PUTs) keep it for longer than its TTL */
    for (int i = 0; i < 8; i++) {
        h_resp_t r = put_json(url, body);
        cr_assert_eq(r.status, 200, "%s", r.body);
        h_resp_free(&r);
        ms_sleep(300);
    }
    cr_assert(registered(&sys, "users/by-hand"));
    json_t *t = sys_json(&sys, "/v1/targets");
    char *ts = json_dumps(t, 0);
    cr_assert(strstr(ts, "users/by-hand"), "%s", ts);
    free(ts);
    json_decref(t);
    /* routed: with the supervised users scaled away, the gateway sends users to it */
    char *out;
    const char *const scale[] = {"scale", "users", "0", NULL};
    cr_assert_eq(sys_cmd(&sys, &out, scale), 0, "%s", out);
    free(out);
    double until = now_s() + 10;
    char first[64];
    snprintf(first, sizeof first, "http://127.0.0.1:%d", sys.port[0]);
    while (now_s() < until && gateway_file_has(&sys, first))
        ms_sleep(50);
    cr_assert(gateway_file_has(&sys, mine) && !gateway_file_has(&sys, first));
    /* the gateway applied it (its own view of the route, keeping the heartbeat going) */
    h_resp_t r;
    int applied = 0;
    for (until = now_s() + 10; now_s() < until && !applied; ms_sleep(100)) {
        r = put_json(url, body);
        h_resp_free(&r);
        char admin[128];
        snprintf(admin, sizeof admin, "http://127.0.0.1:%d/_cmesh/routes", sys.port[3]);
        r = h_http("GET", admin, NULL, NULL);
        applied = r.status == 200 && strstr(r.body, mine) && !strstr(r.body, first);
        h_resp_free(&r);
    }
    cr_assert(applied, "the gateway never routed users to the instance started by hand");
    r = via_gateway("POST", "/users", "{\"name\":\"Hand\",\"email\":\"hand@x.io\"}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    r = h_req(&ext, "GET", "/users/1", NULL, NULL);
    cr_assert_eq(r.status, 200, "the create went to the instance started by hand");
    h_resp_free(&r);
    /* no heartbeat: gone once its TTL passed */
    until = now_s() + 10;
    while (now_s() < until && registered(&sys, "users/by-hand"))
        ms_sleep(100);
    cr_assert(!registered(&sys, "users/by-hand"), "still registered without heartbeats");
    /* bad registrations change nothing */
    r = put_json(url, "{\"address\":\"127.0.0.1\",\"port\":0,\"ttl\":\"1s\"}");
    cr_assert_eq(r.status, 422);
    cr_assert(strstr(r.body, "\"field\":\"port\""), "%s", r.body);
    h_resp_free(&r);
    r = put_json(url, "{\"address\":\"127.0.0.1\",\"port\":1,\"ttl\":\"forever\"}");
    cr_assert_eq(r.status, 422);
    h_resp_free(&r);
    snprintf(url, sizeof url, "%s/v1/services/users/instances/Bad%%20Id", sys.ctl);
    r = put_json(url, body);
    cr_assert_eq(r.status, 400);
    h_resp_free(&r);
    snprintf(url, sizeof url, "%s/v1/services/nope/instances/x", sys.ctl);
    r = put_json(url, body);
    cr_assert_eq(r.status, 404);
    h_resp_free(&r);
    snprintf(url, sizeof url, "%s/v1/services/users/instances/by-hand", sys.ctl);
    r = h_http("DELETE", url, NULL, NULL);
    cr_assert_eq(r.status, 404, "already gone");
    h_resp_free(&r);
    cr_assert(!registered(&sys, "users/by-hand"));
    h_stop(&ext);
}

Test(control, an_instance_whose_record_was_lost_is_adopted_not_started_twice)
{
    sys_init(&sys, with_gw);
    sys_start(&sys);
    sys_wait_ready(&sys, 20000);
    int u1 = sys_pid(&sys, "users", 1);
    sys_kill9_up(&sys);
    /* as if the control plane had died between spawning users/1 and recording it */
    char rec[400];
    snprintf(rec, sizeof rec, "%s/instances/users.1.json", sys.state);
    cr_assert_eq(unlink(rec), 0);
    sys_start(&sys);
    sys_wait_ready(&sys, 20000);
    cr_assert_eq(sys_pid(&sys, "users", 1), u1, "found by its environment and adopted");
    cr_assert_eq(sys_procs(sys.state, "users/1", 0), 1, "no second copy");
    cr_assert_eq(access(rec, F_OK), 0, "recorded again");
}
