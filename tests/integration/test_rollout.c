/* tests/integration/test_rollout.c: rollouts and reloads of a real `cmesh up` system:
 * several rollouts in a row (a restart, a changed env, changed args) under mixed load
 * through the gateway answer every request with a 2xx and leave every instance on the
 * new definition with a new pid; a broken new version (it exits; it is never ready)
 * stops the rollout with the old instances still serving and status saying why; a
 * reload that changes only orders replaces only orders; a reload of a broken file
 * changes nothing and names FILE:LINE. */
#include "ctl_util.h"

#include <pthread.h>
#include <stdatomic.h>

#define NLOAD    4 /* clients, each on its own connections */
#define MAX_IDS  20000
#define ROUND_MS 90000 /* the bound on one rollout: 3 instances, each ready in seconds */

static sys_t sys;

TestSuite(rollout, .fini = sys_fini, .timeout = 240);

/* %1$d gateway port, %2$d users', %3$d orders'; %4$s users' env value, %5$s users'
 * extra args, %6$s orders' env value, %7$s users' readiness path, %8$d users' count */
static const char spec[] =
    "services:\n"
    "  users:\n    command: users\n    instances: %8$d\n    listen: 127.0.0.1:%2$d\n"
    "    args: [--db, users.db, --access-log, 'off'%5$s]\n"
    "    env: { VERSION: '%4$s' }\n"
    "    readiness: { path: %7$s, interval: 200ms, timeout: 200ms, fall: 2 }\n"
    "    drain_timeout: 3s\n    rollout_timeout: 4s\n"
    "  orders:\n    command: orders\n    instances: 2\n    listen: 127.0.0.1:%3$d\n"
    "    args: [--db, orders.db, --users-registry, '{registry}', --access-log, 'off']\n"
    "    env: { VERSION: '%6$s' }\n"
    "    readiness: { path: /readyz, interval: 200ms, timeout: 200ms }\n"
    "    drain_timeout: 3s\n"
    "gateway:\n  listen: 127.0.0.1:%1$d\n  routes:\n"
    "    - { prefix: /users, service: users }\n"
    "    - { prefix: /orders, service: orders }\n";

typedef struct ver {
    const char *users_env, *users_args, *orders_env, *ready;
    int users;
} ver_t;

/* (Re)writes cmesh.yaml with v: the file a reload reads. */
static void write_spec(const ver_t *v)
{
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s.tmp", sys.yaml);
    FILE *f = fopen(tmp, "w");
    cr_assert_not_null(f);
    fprintf(f, "control:\n  listen: 127.0.0.1:%d\n  state_dir: state\n", sys.ctl_port);
    fprintf(f, spec, sys.gw_port, sys.port[0], sys.port[1], v->users_env, v->users_args,
            v->orders_env, v->ready, v->users);
    fclose(f);
    cr_assert_eq(rename(tmp, sys.yaml), 0);
}

static void start(const ver_t *v)
{
    memset(&sys, 0, sizeof sys);
    sys_init(&sys, "");
    write_spec(v);
    sys_start(&sys);
    sys_wait_ready(&sys, 30000);
}

/* The service's object in /v1/status (a new reference). */
static json_t *svc_status(const char *name)
{
    json_t *st = sys_json(&sys, "/v1/status"), *sv, *found = NULL;
    json_t *svcs = json_object_get(st, "services");
    size_t i;
    json_array_foreach(svcs, i, sv)
    {
        if (strcmp(json_string_value(json_object_get(sv, "name")), name) == 0)
            found = json_incref(sv);
    }
    json_decref(st);
    return found;
}

/* Waits until service's last rollout is done or failed; returns its state (static). */
static const char *wait_rollout(const char *name, char *reason, size_t cap)
{
    static char state[32];
    double until = now_s() + ROUND_MS / 1000.0;
    while (now_s() < until) {
        json_t *sv = svc_status(name);
        json_t *ro = json_object_get(sv, "rollout");
        const char *st = json_string_value(json_object_get(ro, "state"));
        if (st && (strcmp(st, "done") == 0 || strcmp(st, "failed") == 0)) {
            snprintf(state, sizeof state, "%s", st);
            const char *why = json_string_value(json_object_get(ro, "reason"));
            snprintf(reason, cap, "%s", why ? why : "");
            json_decref(sv);
            return state;
        }
        json_decref(sv);
        ms_sleep(100);
    }
    cr_assert_fail("the rollout of %s did not end in %d ms", name, ROUND_MS);
    return NULL;
}

/* The pids of service's instances 0..n-1; asserts they are all there. */
static void pids_of(const char *name, int n, int *pids)
{
    for (int i = 0; i < n; i++) {
        pids[i] = sys_pid(&sys, name, i);
        cr_assert_gt(pids[i], 0, "%s/%d has no process", name, i);
    }
}

/* 1 when /proc/PID/environ holds the NAME=value string want. */
static int env_has(int pid, const char *want)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/environ", pid);
    int fd = open(p, O_RDONLY);
    if (fd < 0)
        return 0;
    static char env[1 << 16];
    ssize_t len = read(fd, env, sizeof env - 1);
    close(fd);
    int has = 0;
    for (char *v = env; len > 0 && v < env + len; v += strlen(v) + 1)
        has |= strcmp(v, want) == 0;
    return has;
}

/* ---- the load: POST /users with Idempotency-Key, GET it back, through the gateway ---- */

typedef struct load {
    atomic_int *stop;
    int n;
    int requests, errors;
    char first_error[512];
} load_t;

static void *load_main(void *arg)
{
    load_t *l = arg;
    char url[256], body[256], key[96], kh[128];
    for (int i = 0; !atomic_load(l->stop); i++) {
        snprintf(url, sizeof url, "http://127.0.0.1:%d/users", sys.gw_port);
        snprintf(key, sizeof key, "ro-%d-%d-%d", (int)getpid(), l->n, i);
        snprintf(kh, sizeof kh, "Idempotency-Key: %s", key);
        snprintf(body, sizeof body, "{\"name\":\"r%d\",\"email\":\"r%d.%d.%d@ro.test\"}", i,
                 (int)getpid(), l->n, i);
        const char *hdrs[] = {"Content-Type: application/json", kh, NULL};
        h_resp_t r = h_http("POST", url, body, hdrs);
        l->requests++;
        long long id = 0;
        if (r.status == 201) {
            json_t *o = json_loadb(r.body, r.body_len, 0, NULL);
            id = (long long)json_integer_value(json_object_get(o, "id"));
            json_decref(o);
        } else if (l->errors++ == 0)
            snprintf(l->first_error, sizeof l->first_error, "POST /users: %ld %.300s", r.status,
                     r.body ? r.body : "");
        h_resp_free(&r);
        if (!id)
            continue;
        snprintf(url, sizeof url, "http://127.0.0.1:%d/users/%lld", sys.gw_port, id);
        r = h_http("GET", url, NULL, NULL);
        l->requests++;
        if (r.status != 200 && l->errors++ == 0)
            snprintf(l->first_error, sizeof l->first_error, "GET /users/%lld: %ld %.300s", id,
                     r.status, r.body ? r.body : "");
        h_resp_free(&r);
    }
    return NULL;
}

Test(rollout, rollouts_in_a_row_under_load_answer_every_request_and_replace_every_instance)
{
    ver_t v = {"1", "", "1", "/readyz", 3};
    start(&v);
    static load_t ls[NLOAD];
    static atomic_int stop;
    atomic_store(&stop, 0);
    pthread_t th[NLOAD];
    for (int i = 0; i < NLOAD; i++) {
        memset(&ls[i], 0, sizeof ls[i]);
        ls[i].stop = &stop;
        ls[i].n = i;
        pthread_create(&th[i], NULL, load_main, &ls[i]);
    }
    ms_sleep(1000); /* the load runs before the first rollout */
    /* 1: cmesh rollout with nothing stale (a restart); 2: a changed env by reload;
     * 3: changed args by SIGHUP to the control plane */
    int before[3], after[3];
    for (int round = 0; round < 3; round++) {
        pids_of("users", 3, before);
        if (round == 0) {
            char *out = NULL;
            int rc = sys_cmd(&sys, &out, (const char *[]){"rollout", "users", NULL});
            cr_assert_eq(rc, 0, "cmesh rollout: %s", out);
            cr_assert(strstr(out, "done"), "%s", out);
            free(out);
        } else if (round == 1) {
            v.users_env = "2";
            write_spec(&v);
            char *out = NULL;
            int rc = sys_cmd(&sys, &out, (const char *[]){"reload", NULL});
            cr_assert_eq(rc, 0, "cmesh reload: %s", out);
            cr_assert(strstr(out, "users: rolled out"), "%s", out);
            cr_assert_null(strstr(out, "orders"), "orders did not change: %s", out);
            free(out);
        } else {
            v.users_args = ", --log-format, json";
            write_spec(&v);
            kill(sys.up, SIGHUP);
        }
        char why[800];
        if (round == 2) /* the SIGHUP's rollout: wait until it started */
            for (int i = 0; i < 100 && sys_pid(&sys, "users", 3) == 0 &&
                            sys_pid(&sys, "users", 0) == before[0];
                 i++)
                ms_sleep(50);
        const char *st = wait_rollout("users", why, sizeof why);
        cr_assert_str_eq(st, "done", "round %d: %s", round, why);
        pids_of("users", 3, after);
        json_t *sv = svc_status("users");
        const char *want = json_string_value(json_object_get(sv, "definition"));
        json_t *in;
        size_t i;
        int n = 0;
        json_array_foreach(json_object_get(sv, "instances"), i, in)
        {
            cr_assert_str_eq(json_string_value(json_object_get(in, "definition")), want,
                             "round %d: %s", round, json_dumps(in, 0));
            n++;
        }
        cr_assert_eq(n, 3, "round %d: the surge left: %s", round, json_dumps(sv, 0));
        json_decref(sv);
        for (int k = 0; k < 3; k++)
            for (int j = 0; j < 3; j++)
                cr_assert_neq(after[k], before[j], "round %d: users/%d kept pid %d", round, k,
                              after[k]);
        if (round >= 1)
            for (int k = 0; k < 3; k++)
                cr_assert(env_has(after[k], "VERSION=2"), "users/%d runs the new env", k);
    }
    atomic_store(&stop, 1);
    int requests = 0, errors = 0;
    const char *first = "";
    for (int i = 0; i < NLOAD; i++) {
        pthread_join(th[i], NULL);
        requests += ls[i].requests;
        errors += ls[i].errors;
        if (!first[0] && ls[i].first_error[0])
            first = ls[i].first_error;
    }
    cr_log_info("rollout: 3 rollouts of 3 instances under %d requests", requests);
    cr_assert_gt(requests, 50, "the load ran");
    cr_assert_eq(errors, 0, "%d of %d requests failed; first: %s", errors, requests, first);
    /* every step is an event */
    h_resp_t r = sys_get(&sys, "/v1/events");
    cr_assert(strstr(r.body, "\"kind\":\"rollout\"") && strstr(r.body, "rollout done"), "%s",
              r.body);
    /* each new instance went on only once the gateway's workers all routed on it */
    cr_assert(strstr(r.body, "1 gateway(s) acknowledged it"), "%s", r.body);
    cr_assert_null(strstr(r.body, "going on"), "no step waited out its bound: %s", r.body);
    h_resp_free(&r);
}

/* The old instances answer through the gateway. */
static void still_serves(void)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/users", sys.gw_port);
    for (int i = 0; i < 6; i++) {
        h_resp_t r = h_http("GET", url, NULL, NULL);
        cr_assert_eq(r.status, 200, "GET /users: %ld", r.status);
        h_resp_free(&r);
    }
}

Test(rollout, broken_version_stops_the_rollout_and_the_old_instances_keep_serving)
{
    ver_t v = {"1", "", "1", "/readyz", 2};
    start(&v);
    int before[2], after[2];
    pids_of("users", 2, before);
    /* a version that exits at once (an unknown flag) */
    v.users_args = ", --no-such-flag";
    write_spec(&v);
    char *out = NULL;
    cr_assert_eq(sys_cmd(&sys, &out, (const char *[]){"reload", NULL}), 0, "%s", out);
    free(out);
    char why[800];
    cr_assert_str_eq(wait_rollout("users", why, sizeof why), "failed", "%s", why);
    cr_assert(strstr(why, "exited with status 2") && strstr(why, "--no-such-flag"), "%s", why);
    pids_of("users", 2, after);
    cr_assert(after[0] == before[0] && after[1] == before[1], "the old instances were kept");
    cr_assert_eq(sys_pid(&sys, "users", 2), 0, "the surge is gone");
    still_serves();
    out = NULL;
    sys_cmd(&sys, &out, (const char *[]){"status", NULL});
    cr_assert(strstr(out, "rollout users: failed") && strstr(out, "--no-such-flag"), "%s", out);
    free(out);
    /* a version that runs but never becomes ready: stopped after rollout_timeout */
    v.users_args = "";
    v.ready = "/never";
    write_spec(&v);
    out = NULL;
    cr_assert_eq(sys_cmd(&sys, &out, (const char *[]){"reload", NULL}), 0, "%s", out);
    free(out);
    cr_assert_str_eq(wait_rollout("users", why, sizeof why), "failed", "%s", why);
    cr_assert(strstr(why, "not ready within 4000 ms"), "%s", why);
    /* cmesh rollout of it again waits for the same end and says so, exit 1 */
    out = NULL;
    cr_assert_eq(sys_cmd(&sys, &out, (const char *[]){"rollout", "users", NULL}), 1, "%s", out);
    cr_assert(strstr(out, "failed") && strstr(out, "not ready within"), "%s", out);
    free(out);
    pids_of("users", 2, after);
    cr_assert(after[0] == before[0] && after[1] == before[1], "the old instances were kept");
    for (int i = 0; i < 100 && sys_pid(&sys, "users", 2); i++)
        ms_sleep(50);
    cr_assert_eq(sys_pid(&sys, "users", 2), 0, "the surge left");
    still_serves();
    h_resp_t r = sys_get(&sys, "/v1/events");
    cr_assert(strstr(r.body, "rollout failed"), "%s", r.body);
    h_resp_free(&r);
}

Test(rollout, reload_replaces_only_what_changed_and_a_broken_file_changes_nothing)
{
    ver_t v = {"1", "", "1", "/readyz", 2};
    start(&v);
    int users[2], orders[2], u2[2], o2[2];
    pids_of("users", 2, users);
    pids_of("orders", 2, orders);
    v.orders_env = "2";
    write_spec(&v);
    char *out = NULL;
    cr_assert_eq(sys_cmd(&sys, &out, (const char *[]){"reload", NULL}), 0, "%s", out);
    cr_assert(strstr(out, "orders: rolled out") && !strstr(out, "users"), "%s", out);
    free(out);
    char why[800];
    cr_assert_str_eq(wait_rollout("orders", why, sizeof why), "done", "%s", why);
    pids_of("users", 2, u2);
    pids_of("orders", 2, o2);
    cr_assert(u2[0] == users[0] && u2[1] == users[1], "users untouched");
    for (int k = 0; k < 2; k++) {
        cr_assert(o2[k] != orders[0] && o2[k] != orders[1], "orders/%d replaced", k);
        cr_assert(env_has(o2[k], "VERSION=2"));
    }
    json_t *sv = svc_status("users");
    cr_assert(json_is_null(json_object_get(sv, "rollout")), "users had no rollout");
    json_decref(sv);
    /* only the count: scaled, nobody replaced */
    v.users = 3;
    write_spec(&v);
    out = NULL;
    cr_assert_eq(sys_cmd(&sys, &out, (const char *[]){"reload", NULL}), 0, "%s", out);
    cr_assert(strstr(out, "users: scaled"), "%s", out);
    free(out);
    json_decref(sys_wait_state(&sys, "users", 2, "ready", 0, 20000));
    cr_assert(sys_pid(&sys, "users", 0) == users[0] && sys_pid(&sys, "users", 1) == users[1]);
    /* a new definition and one instance fewer at once: users/2 leaves, and the surge takes
     * its index once it left; the two that stay are replaced */
    v.users = 2;
    v.users_env = "3";
    write_spec(&v);
    out = NULL;
    cr_assert_eq(sys_cmd(&sys, &out, (const char *[]){"reload", NULL}), 0, "%s", out);
    cr_assert(strstr(out, "users: rolled out"), "%s", out);
    free(out);
    cr_assert_str_eq(wait_rollout("users", why, sizeof why), "done", "%s", why);
    pids_of("users", 2, u2);
    for (int k = 0; k < 2; k++)
        cr_assert(env_has(u2[k], "VERSION=3"), "users/%d runs the new env", k);
    for (int i = 0; i < 100 && sys_inst(&sys, "users", 2); i++)
        ms_sleep(50);
    json_t *gone = sys_inst(&sys, "users", 2);
    cr_assert_null(gone, "users/2 left: %s", gone ? json_dumps(gone, 0) : "");
    pids_of("users", 2, users);
    /* a file with two errors: the API names both as FILE:LINE, nothing changes */
    v.users_env = "3' }\n    colour: blue #"; /* the rest of the line commented out */
    v.orders_env = "1' }\n    shade: dark #";
    write_spec(&v);
    char url[128];
    snprintf(url, sizeof url, "%s/v1/reload", sys.ctl);
    h_resp_t r =
        h_http("POST", url, "{}", (const char *[]){"Content-Type: application/json", NULL});
    cr_assert_eq(r.status, 422, "%ld %s", r.status, r.body);
    json_t *o = json_loadb(r.body, r.body_len, 0, NULL), *e;
    size_t i;
    cr_assert_eq(json_array_size(json_object_get(o, "errors")), 2, "%s", r.body);
    json_t *errs = json_object_get(o, "errors");
    json_array_foreach(errs, i, e)
    {
        cr_assert(strstr(json_string_value(e), "cmesh.yaml:"), "FILE:LINE: %s", r.body);
    }
    cr_assert(strstr(r.body, "shade") && strstr(r.body, "colour"), "%s", r.body);
    json_decref(o);
    h_resp_free(&r);
    out = NULL;
    cr_assert_eq(sys_cmd(&sys, &out, (const char *[]){"reload", NULL}), 1, "%s", out);
    cr_assert(strstr(out, "cmesh.yaml:") && strstr(out, "nothing changed"), "%s", out);
    free(out);
    /* SIGHUP with the broken file: the control plane stays up with the running spec */
    kill(sys.up, SIGHUP);
    ms_sleep(500);
    cr_assert_eq(waitpid(sys.up, NULL, WNOHANG), 0, "cmesh up still runs after SIGHUP");
    for (int k = 0; k < 2; k++)
        cr_assert_eq(sys_pid(&sys, "orders", k), o2[k], "orders/%d untouched", k);
    cr_assert_eq(sys_pid(&sys, "users", 0), users[0]);
    still_serves();
}

/* The same system without orders (its service and its route). */
static void write_users_only(void)
{
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s.tmp", sys.yaml);
    FILE *f = fopen(tmp, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "control:\n  listen: 127.0.0.1:%d\n  state_dir: state\n"
            "services:\n"
            "  users:\n    command: users\n    instances: 2\n    listen: 127.0.0.1:%d\n"
            "    args: [--db, users.db, --access-log, 'off']\n"
            "    env: { VERSION: '1' }\n"
            "    readiness: { path: /readyz, interval: 200ms, timeout: 200ms, fall: 2 }\n"
            "    drain_timeout: 3s\n    rollout_timeout: 4s\n"
            "gateway:\n  listen: 127.0.0.1:%d\n  routes:\n"
            "    - { prefix: /users, service: users }\n",
            sys.ctl_port, sys.port[0], sys.gw_port);
    fclose(f);
    cr_assert_eq(rename(tmp, sys.yaml), 0);
}

static long gw_status(const char *path)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", sys.gw_port, path);
    h_resp_t r = h_http("GET", url, NULL, NULL);
    long st = r.status;
    h_resp_free(&r);
    return st;
}

Test(rollout, reload_stops_removed_services_starts_new_ones_and_reloads_the_gateway_in_place)
{
    ver_t v = {"1", "", "1", "/readyz", 2};
    start(&v);
    int gw = sys_pid(&sys, "gateway", 0), users[2], u2[2];
    pids_of("users", 2, users);
    cr_assert_eq(gw_status("/orders"), 200);
    write_users_only();
    char *out = NULL;
    cr_assert_eq(sys_cmd(&sys, &out, (const char *[]){"reload", NULL}), 0, "%s", out);
    cr_assert(strstr(out, "orders: stopped") && strstr(out, "gateway: configuration reloaded"),
              "%s", out);
    cr_assert_null(strstr(out, "users:"), "%s", out);
    free(out);
    /* orders leaves gracefully; the gateway reloads its routes without a restart */
    for (int i = 0; i < 200 && (sys_procs(sys.state, "orders/0", 0) ||
                                sys_procs(sys.state, "orders/1", 0) || gw_status("/orders") != 404);
         i++)
        ms_sleep(50);
    cr_assert_eq(sys_procs(sys.state, "orders/0", 0) + sys_procs(sys.state, "orders/1", 0), 0,
                 "orders stopped");
    cr_assert_eq(gw_status("/orders"), 404, "the route is gone from the gateway");
    cr_assert_eq(gw_status("/users"), 200);
    cr_assert_eq(sys_pid(&sys, "gateway", 0), gw, "the gateway reloaded in place");
    /* and back: orders started, routed again */
    write_spec(&v);
    out = NULL;
    cr_assert_eq(sys_cmd(&sys, &out, (const char *[]){"reload", NULL}), 0, "%s", out);
    cr_assert(strstr(out, "orders: started"), "%s", out);
    free(out);
    json_decref(sys_wait_state(&sys, "orders", 1, "ready", 0, 20000));
    for (int i = 0; i < 200 && gw_status("/orders") != 200; i++)
        ms_sleep(50);
    cr_assert_eq(gw_status("/orders"), 200, "the route is back");
    cr_assert_eq(sys_pid(&sys, "gateway", 0), gw, "the gateway reloaded in place");
    pids_of("users", 2, u2);
    cr_assert(u2[0] == users[0] && u2[1] == users[1], "users untouched");
}
