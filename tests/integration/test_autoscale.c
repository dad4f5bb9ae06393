/* Integration tests for the autoscaler: `cmesh up` with users autoscaled on short
 * windows (stable 4 s, panic 1 s); a load step through the gateway (libcurl multi, 32
 * requests in flight, bounded in time) makes it add instances that then serve; after the
 * step the extra ones are removed after the window, gracefully (exit 0 after SIGTERM),
 * while a light load keeps running with no error; the events hold the decisions with
 * their inputs; `cmesh scale --explain`, pin and auto, and the API's refusals; a reload
 * that raises users' max (it grows under load) and gives another service autoscale:
 * (it idles down); a rollout after a load step holds the count until it is done. */
#include "ctl_util.h"

#include <pthread.h>
#include <stdatomic.h>

#include <curl/curl.h>

static sys_t sys;

TestSuite(autoscale, .fini = sys_fini, .timeout = 150);

static const char spec[] =
    "services:\n"
    "  users:\n    command: users\n    listen: 127.0.0.1:%2$d\n"
    "    args: [--db, users.db, --access-log, 'off']\n"
    "    autoscale: { min: 1, max: 3, target: 2, stable_window: 4s, panic_window: 1s, tick: "
    "500ms }\n"
    "    readiness: { path: /readyz, interval: 200ms, timeout: 200ms, fall: 1 }\n"
    "    drain_timeout: 5s\n"
    "  idle:\n    command: /bin/sleep\n    listen: 127.0.0.1:%3$d\n    args: ['1000']\n"
    "gateway:\n  listen: 127.0.0.1:%1$d\n  routes:\n"
    "    - { prefix: /users, service: users }\n";

/* ---------------------------------------------------------------------------------- */
/* Load                                                                               */
/* ---------------------------------------------------------------------------------- */

static size_t sink(char *p, size_t sz, size_t n, void *arg)
{
    (void)p, (void)arg;
    return sz * n;
}

typedef struct load {
    char url[128];
    int conc;     /* requests in flight */
    int pause_ms; /* between requests of one slot (light load) */
    double until; /* now_s() bound */
    atomic_int stop;
    atomic_long ok, bad; /* 2xx / anything else, transport errors included */
    char last_bad[256];
    pthread_t th;
} load_t;

static CURL *easy(load_t *l)
{
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, l->url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    return c;
}

static void *load_run(void *arg)
{
    load_t *l = arg;
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)l->conc * 2);
    for (int i = 0; i < l->conc; i++)
        curl_multi_add_handle(m, easy(l));
    int running = l->conc;
    while (running > 0) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *c = msg->easy_handle;
            long code = 0;
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
            if (msg->data.result == CURLE_OK && code >= 200 && code < 300)
                atomic_fetch_add(&l->ok, 1);
            else {
                atomic_fetch_add(&l->bad, 1);
                snprintf(l->last_bad, sizeof l->last_bad, "status %ld, %s", code,
                         curl_easy_strerror(msg->data.result));
            }
            curl_multi_remove_handle(m, c);
            /* the same handle again: its keep-alive connection is reused (a new one per
             * request leaves thousands in TIME_WAIT, eating the machine's ports) */
            if (!atomic_load(&l->stop) && now_s() < l->until) {
                if (l->pause_ms)
                    ms_sleep(l->pause_ms);
                curl_multi_add_handle(m, c);
                running++;
            } else
                curl_easy_cleanup(c);
        }
        if (running > 0)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    curl_multi_cleanup(m);
    return NULL;
}

static void load_start(load_t *l, int conc, int pause_ms, double max_s)
{
    memset(l, 0, sizeof *l);
    snprintf(l->url, sizeof l->url, "http://127.0.0.1:%d/users?limit=5", sys.gw_port);
    l->conc = conc;
    l->pause_ms = pause_ms;
    l->until = now_s() + max_s;
    cr_assert_eq(pthread_create(&l->th, NULL, load_run, l), 0);
}

static void load_stop(load_t *l)
{
    atomic_store(&l->stop, 1);
    pthread_join(l->th, NULL);
}

/* ---------------------------------------------------------------------------------- */
/* What the control plane says                                                        */
/* ---------------------------------------------------------------------------------- */

/* users' desired count, its running count, and its scaling mode into mode (may be NULL). */
static int users_count(int *running, char *mode, size_t cap)
{
    json_t *svcs = sys_json(&sys, "/v1/services");
    int desired = -1;
    size_t i;
    json_t *sv;
    json_array_foreach(svcs, i, sv)
    {
        if (strcmp(json_string_value(json_object_get(sv, "name")), "users") != 0)
            continue;
        desired = (int)json_integer_value(json_object_get(sv, "desired"));
        if (running)
            *running = (int)json_integer_value(json_object_get(sv, "running"));
        if (mode)
            snprintf(mode, cap, "%s", json_string_value(json_object_get(sv, "scaling")));
    }
    json_decref(svcs);
    return desired;
}

/* Requests instance users/index served on /users (its own /metrics). */
static long served(int index)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", sys.port[0] + index);
    h_resp_t r = h_http("GET", url, NULL, NULL);
    long total = 0;
    const char *p = r.body;
    static const char key[] = "cmesh_http_requests_total{";
    while (r.status == 200 && p && (p = strstr(p, key))) {
        const char *eol = strchr(p, '\n');
        const char *close = strstr(p, "} ");
        if (close && (!eol || close < eol) && strstr(p, "route=\"/users\"") &&
            strstr(p, "route=\"/users\"") < close)
            total += atol(close + 2);
        p = eol ? eol : p + 1;
    }
    h_resp_free(&r);
    return total;
}

static h_resp_t put_scale(const char *service, const char *body)
{
    char url[256];
    snprintf(url, sizeof url, "%s/v1/services/%s/scale", sys.ctl, service);
    static const char *const hdr[] = {"Content-Type: application/json", NULL};
    return h_http("PUT", url, body, hdr);
}

static void expect_refusal(const char *service, const char *body, long status, const char *what)
{
    h_resp_t r = put_scale(service, body);
    cr_assert_eq(r.status, status, "%s: %ld %s", body, r.status, r.body);
    cr_assert(strstr(r.body, "\"error\""), "%s", r.body);
    cr_assert(strstr(r.body, what), "%s: want '%s' in %s", body, what, r.body);
    h_resp_free(&r);
}

/* ---------------------------------------------------------------------------------- */

Test(autoscale, load_step_adds_instances_and_the_window_takes_them_away_without_errors)
{
    sys_init(&sys, spec);
    sys_start(&sys);
    sys_wait_ready(&sys, 30000);
    int running = 0;
    cr_assert_eq(users_count(&running, NULL, 0), 1, "starts at min");

    load_t light, heavy;
    load_start(&light, 1, 20, 120);
    ms_sleep(1500);
    /* the step: 32 requests always in flight (target 2 per instance) */
    load_start(&heavy, 32, 0, 40);
    double until = now_s() + 30;
    int desired = 1;
    while (now_s() < until && (desired = users_count(NULL, NULL, 0)) < 2)
        ms_sleep(100);
    cr_assert_geq(desired, 2, "the load step never scaled users up");
    /* the new instance becomes ready and serves through the gateway */
    until = now_s() + 30;
    long n1 = 0;
    while (now_s() < until && (n1 = served(1)) == 0)
        ms_sleep(200);
    load_stop(&heavy);
    cr_assert_gt(n1, 0, "users/1 never served a request");
    cr_assert_gt(atomic_load(&heavy.ok), 0);

    char *out = NULL;
    cr_assert_eq(sys_cmd(&sys, &out, (const char *const[]){"scale", "users", "--explain", NULL}), 0,
                 "%s", out);
    cr_assert(strstr(out, "users: ") && strstr(out, "ceil(L / target) = ceil(") &&
                  strstr(out, "result:") && strstr(out, "limits:  min 1, max 3"),
              "%s", out);
    free(out);

    /* the light load alone: back to min after the window, while it keeps running */
    until = now_s() + 60;
    while (now_s() < until && !(users_count(&running, NULL, 0) == 1 && running == 1))
        ms_sleep(200);
    cr_assert_eq(users_count(&running, NULL, 0), 1, "never scaled back down");
    cr_assert_eq(running, 1);
    ms_sleep(500);
    load_stop(&light);
    cr_assert_gt(atomic_load(&light.ok), 0);
    cr_assert_eq(atomic_load(&light.bad), 0, "%ld failed requests of the light load (last: %s)",
                 atomic_load(&light.bad), light.last_bad);

    /* graceful: users/1 exited on its own after the SIGTERM, no SIGKILL */
    cr_assert_eq(sys_cmd(&sys, &out, (const char *const[]){"logs", "users/1", NULL}), 0, "%s", out);
    cr_assert(strstr(out, "stopping: SIGTERM"), "%s", out);
    cr_assert(strstr(out, "exited with status 0"), "%s", out);
    cr_assert_null(strstr(out, "SIGKILL\n"), "%s", out);
    free(out);

    /* the events: up and down, each with its inputs */
    json_t *ev = sys_json(&sys, "/v1/events");
    int ups = 0, downs = 0;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(ev, "events"), i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "kind")), "scale") != 0)
            continue;
        json_t *d = json_object_get(e, "detail");
        json_t *in = json_object_get(d, "inputs");
        if (!in)
            continue;
        cr_assert(json_is_number(json_object_get(in, "load")), "no load in %s",
                  json_string_value(json_object_get(e, "message")));
        cr_assert(json_is_string(json_object_get(d, "reason")));
        int from = (int)json_integer_value(json_object_get(in, "desired"));
        int to = (int)json_integer_value(json_object_get(d, "desired"));
        ups += to > from;
        downs += to < from;
    }
    json_decref(ev);
    cr_assert_geq(ups, 1);
    cr_assert_geq(downs, 1);
    cr_assert_eq(sys_stop(&sys, 30000), 0);
}

Test(autoscale, pin_and_auto_and_bad_requests)
{
    sys_init(&sys, spec);
    sys_start(&sys);
    sys_wait_ready(&sys, 30000);
    char *out = NULL, mode[32];
    cr_assert_eq(sys_cmd(&sys, &out, (const char *const[]){"scale", "users", "2", NULL}), 0, "%s",
                 out);
    cr_assert(strstr(out, "users pinned at 2"), "%s", out);
    free(out);
    cr_assert_eq(users_count(NULL, mode, sizeof mode), 2);
    cr_assert_str_eq(mode, "pinned");
    cr_assert_eq(sys_cmd(&sys, &out, (const char *const[]){"status", NULL}), 0, "%s", out);
    cr_assert(strstr(out, "scaling: users pinned at 2"), "%s", out);
    free(out);
    /* no load and a 4 s window: pinned, it stays */
    ms_sleep(6000);
    cr_assert_eq(users_count(NULL, NULL, 0), 2, "a pinned count moved");
    cr_assert_eq(sys_cmd(&sys, &out, (const char *const[]){"scale", "users", "--explain", NULL}), 0,
                 "%s", out);
    cr_assert(strstr(out, "(pinned:"), "%s", out);
    free(out);

    /* bad bodies change nothing */
    expect_refusal("users", "{\"auto\":false}", 422, "\"field\":\"auto\"");
    expect_refusal("users", "{\"auto\":true,\"instances\":2}", 422, "either");
    expect_refusal("users", "{}", 422, "either");
    expect_refusal("users", "{\"instances\":65}", 422, "0..64");
    expect_refusal("users", "{\"instances\":2,\"speed\":1}", 422, "unknown field 'speed'");
    expect_refusal("users", "{\"instances\":", 400, "error");
    expect_refusal("nope", "{\"auto\":true}", 404, "no service named 'nope'");
    expect_refusal("idle", "{\"auto\":true}", 409, "no autoscale: section");
    cr_assert_eq(users_count(NULL, mode, sizeof mode), 2);
    cr_assert_str_eq(mode, "pinned");
    h_resp_t r = sys_get(&sys, "/v1/services/idle/autoscale");
    cr_assert_eq(r.status, 409, "%s", r.body);
    h_resp_free(&r);
    r = sys_get(&sys, "/v1/services/nope/autoscale");
    cr_assert_eq(r.status, 404, "%s", r.body);
    h_resp_free(&r);
    cr_assert_eq(sys_cmd(&sys, &out, (const char *const[]){"scale", "idle", "auto", NULL}), 1, "%s",
                 out);
    cr_assert(strstr(out, "no autoscale: section"), "%s", out);
    free(out);

    /* handed back: no load, so min after the window */
    cr_assert_eq(sys_cmd(&sys, &out, (const char *const[]){"scale", "users", "auto", NULL}), 0,
                 "%s", out);
    cr_assert(strstr(out, "handed back"), "%s", out);
    free(out);
    double until = now_s() + 30;
    while (now_s() < until && users_count(NULL, NULL, 0) != 1)
        ms_sleep(200);
    if (users_count(NULL, NULL, 0) != 1) {
        sys_cmd(&sys, &out, (const char *const[]){"scale", "users", "--explain", NULL});
        cr_assert_fail("not back at min after auto: %s", out);
    }
    cr_assert_eq(users_count(NULL, mode, sizeof mode), 1);
    cr_assert_str_eq(mode, "auto");
    r = sys_get(&sys, "/v1/services/users/autoscale");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *o = json_loadb(r.body, r.body_len, 0, NULL);
    json_t *d = json_object_get(o, "decision");
    cr_assert(json_is_object(json_object_get(d, "inputs")), "%s", r.body);
    cr_assert(json_is_string(json_object_get(o, "explain")), "%s", r.body);
    json_decref(o);
    h_resp_free(&r);
    cr_assert_eq(sys_stop(&sys, 30000), 0);
}

/* ---------------------------------------------------------------------------------- */
/* Reloads and rollouts                                                               */
/* ---------------------------------------------------------------------------------- */

/* users autoscaled up to %4$d; more: three users processes off the gateway, with the
 * autoscale: section %5$s (empty: a fixed count) */
static const char respec_spec[] =
    "services:\n"
    "  users:\n    command: users\n    listen: 127.0.0.1:%2$d\n"
    "    args: [--db, users.db, --access-log, 'off']\n"
    "    autoscale: { min: 1, max: %4$d, target: 2, stable_window: 4s, panic_window: 1s, "
    "tick: 500ms }\n"
    "    readiness: { path: /readyz, interval: 200ms, timeout: 200ms, fall: 1 }\n"
    "  more:\n    command: users\n    listen: 127.0.0.1:%3$d\n"
    "    args: [--db, more.db, --access-log, 'off']\n    instances: 3\n%5$s"
    "gateway:\n  listen: 127.0.0.1:%1$d\n  routes:\n"
    "    - { prefix: /users, service: users }\n";

static void write_respec(int users_max, const char *more_autoscale)
{
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s.tmp", sys.yaml);
    FILE *f = fopen(tmp, "w");
    cr_assert_not_null(f);
    fprintf(f, "control:\n  listen: 127.0.0.1:%d\n  state_dir: state\n", sys.ctl_port);
    fprintf(f, respec_spec, sys.gw_port, sys.port[0], sys.port[1], users_max, more_autoscale);
    fclose(f);
    cr_assert_eq(rename(tmp, sys.yaml), 0);
}

/* service's desired count from /v1/services */
static int count_of(const char *service)
{
    json_t *svcs = sys_json(&sys, "/v1/services");
    int desired = -1;
    size_t i;
    json_t *sv;
    json_array_foreach(svcs, i, sv)
    {
        if (strcmp(json_string_value(json_object_get(sv, "name")), service) == 0)
            desired = (int)json_integer_value(json_object_get(sv, "desired"));
    }
    json_decref(svcs);
    return desired;
}

static int wait_count(const char *service, int want, double max_s)
{
    double until = now_s() + max_s;
    int n;
    while ((n = count_of(service)) != want && now_s() < until)
        ms_sleep(200);
    return n;
}

/* How many events' messages contain text. */
static int events_with(const char *text)
{
    json_t *ev = sys_json(&sys, "/v1/events");
    int n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(ev, "events"), i, e)
    {
        const char *m = json_string_value(json_object_get(e, "message"));
        n += m && strstr(m, text) != NULL;
    }
    json_decref(ev);
    return n;
}

Test(autoscale, reload_applies_a_changed_max_and_a_new_autoscale_section)
{
    memset(&sys, 0, sizeof sys);
    sys_init(&sys, "");
    write_respec(2, "");
    sys_start(&sys);
    sys_wait_ready(&sys, 30000);
    load_t heavy;
    load_start(&heavy, 32, 0, 60);
    cr_assert_eq(wait_count("users", 2, 30), 2, "the load never scaled users to its max 2");
    ms_sleep(1500);
    cr_assert_eq(count_of("users"), 2, "over its max");
    cr_assert_eq(count_of("more"), 3);

    /* max 3 for users; more gains autoscale: (min 1, idle): both apply without a restart */
    write_respec(3, "    autoscale: { min: 1, max: 3, target: 2, stable_window: 4s, "
                    "panic_window: 1s, tick: 500ms }\n");
    char *out = NULL;
    cr_assert_eq(sys_cmd(&sys, &out, (const char *const[]){"reload", NULL}), 0, "%s", out);
    free(out);
    int n = wait_count("users", 3, 30);
    load_stop(&heavy);
    if (n != 3) {
        sys_cmd(&sys, &out, (const char *const[]){"scale", "users", "--explain", NULL});
        cr_assert_fail("users never grew to the reloaded max 3: %s", out);
    }
    cr_assert_eq(wait_count("more", 1, 30), 1, "more's new autoscale: section never applied");
    cr_assert_eq(sys_cmd(&sys, &out, (const char *const[]){"scale", "more", "--explain", NULL}), 0,
                 "%s", out);
    cr_assert(strstr(out, "limits:  min 1, max 3"), "%s", out);
    free(out);
    cr_assert_eq(events_with("autoscale: policy changed"), 1);
    cr_assert_eq(events_with("autoscale: on"), 1);
    cr_assert_gt(atomic_load(&heavy.ok), 0);
    cr_assert_eq(sys_stop(&sys, 30000), 0);
}

/* users' last rollout's state into state (empty: none) */
static void rollout_state(char *state, size_t cap)
{
    json_t *st = sys_json(&sys, "/v1/status"), *sv;
    size_t i;
    state[0] = 0;
    json_array_foreach(json_object_get(st, "services"), i, sv)
    {
        if (strcmp(json_string_value(json_object_get(sv, "name")), "users") != 0)
            continue;
        const char *s = json_string_value(json_object_get(json_object_get(sv, "rollout"), "state"));
        snprintf(state, cap, "%s", s ? s : "");
    }
    json_decref(st);
}

/* users' new instances take >= 2 s to be ready (rise 40, probed every 50 ms until the
 * first pass), so a rollout of two or three (three or four new instances) lasts longer
 * than the 4 s window that would scale them down */
static const char slow_ready[] =
    "services:\n"
    "  users:\n    command: users\n    listen: 127.0.0.1:%2$d\n"
    "    args: [--db, users.db, --access-log, 'off']\n"
    "    autoscale: { min: 1, max: 3, target: 2, stable_window: 4s, panic_window: 1s, tick: "
    "500ms }\n"
    "    readiness: { path: /readyz, interval: 500ms, timeout: 400ms, rise: 40, fall: 1 }\n"
    "gateway:\n  listen: 127.0.0.1:%1$d\n  routes:\n"
    "    - { prefix: /users, service: users }\n";

Test(autoscale, a_rollout_under_light_load_holds_the_count_until_done)
{
    sys_init(&sys, slow_ready);
    sys_start(&sys);
    sys_wait_ready(&sys, 30000);
    load_t light, heavy;
    load_start(&light, 1, 20, 120);
    load_start(&heavy, 32, 0, 40);
    double until = now_s() + 30;
    while (now_s() < until && !(count_of("users") >= 2 && served(1) > 0))
        ms_sleep(200);
    load_stop(&heavy);
    int at = count_of("users");
    cr_assert_geq(at, 2, "the load never scaled users up");
    /* the load is gone: the window would take the extra ones away during the rollout */
    char *out = NULL;
    cr_assert_eq(sys_cmd(&sys, &out, (const char *const[]){"rollout", "users", NULL}), 0, "%s",
                 out);
    free(out);
    char state[32] = "";
    until = now_s() + 90;
    while (now_s() < until) {
        rollout_state(state, sizeof state);
        if (strcmp(state, "done") == 0 || strcmp(state, "failed") == 0)
            break;
        cr_assert_geq(count_of("users"), at, "scaled down during the rollout");
        ms_sleep(200);
    }
    cr_assert_str_eq(state, "done", "the rollout of users did not finish");
    cr_assert_geq(events_with("(rollout): would be"), 1, "no hold recorded");
    /* after it the autoscaler acts again: back to min */
    cr_assert_eq(wait_count("users", 1, 30), 1, "never scaled down after the rollout");
    load_stop(&light);
    cr_assert_eq(atomic_load(&light.bad), 0, "%ld failed requests of the light load (last: %s)",
                 atomic_load(&light.bad), light.last_bad);
    cr_assert_eq(sys_stop(&sys, 30000), 0);
}
