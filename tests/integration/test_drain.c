/* tests/integration/test_drain.c: drain by acknowledgement (control/acks.h, gateway/
 * drain.h) with `cmesh up`, a users service and the gateway, for real:
 *   - a scale-down under mixed load through the gateway (POST with and without an
 *     Idempotency-Key, GET; several keep-alive connections) answers every request 2xx, and each
 * stopped instance's SIGTERM event comes after the gateway's acknowledgement;
 *   - a request still streaming to the leaving instance (a big POST whose body the test
 *     holds back) keeps the SIGTERM back until it is answered, 2xx;
 *   - a gateway that does not acknowledge (SIGSTOPped) does not hold the SIGTERM past
 *     the drain timeout, and the event names it. */
#include "ctl_util.h"

#include <pthread.h>
#include <stdatomic.h>

#include <curl/curl.h>

#define NLOAD 4 /* load connections */

static sys_t sys;

TestSuite(drain, .fini = sys_fini, .timeout = 180);

/* users (%2$d) with COUNT instances and DRAIN, the gateway (%1$d) in front */
#define SPEC(COUNT, DRAIN)                                                                         \
    "services:\n"                                                                                  \
    "  users:\n    command: users\n    instances: " COUNT "\n    listen: 127.0.0.1:%2$d\n"         \
    "    args: [--db, users.db, --access-log, 'off']\n"                                            \
    "    readiness: { path: /readyz, interval: 500ms, timeout: 500ms, fall: 3 }\n"                 \
    "    drain_timeout: " DRAIN "\n"                                                               \
    "gateway:\n  listen: 127.0.0.1:%1$d\n  routes:\n"                                              \
    "    - { prefix: /users, service: users, balancer: round_robin }\n"

/* ---------------------------------------------------------------------------------- */
/* Helpers                                                                            */
/* ---------------------------------------------------------------------------------- */

static void scale(int n)
{
    char url[256], body[64];
    snprintf(url, sizeof url, "%s/v1/services/users/scale", sys.ctl);
    snprintf(body, sizeof body, "{\"instances\":%d}", n);
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    h_resp_t r = h_http("PUT", url, body, hdrs);
    cr_assert_eq(r.status, 200, "scale: %ld %s", r.status, r.body);
    h_resp_free(&r);
}

/* The drain events of users/index (a new reference: an array, oldest first). */
static json_t *drain_events(int index)
{
    json_t *all = sys_json(&sys, "/v1/events"), *out = json_array(), *e;
    size_t i;
    json_array_foreach(json_object_get(all, "events"), i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "kind")), "drain") == 0 &&
            strcmp(json_string_value(json_object_get(e, "service")), "users") == 0 &&
            json_integer_value(json_object_get(e, "instance")) == index)
            json_array_append(out, e);
    }
    json_decref(all);
    return out;
}

/* The id of the first of evs whose message starts with prefix (0 none); *ev borrowed. */
static long long find_event(json_t *evs, const char *prefix, json_t **ev)
{
    json_t *e;
    size_t i;
    json_array_foreach(evs, i, e)
    {
        const char *m = json_string_value(json_object_get(e, "message"));
        if (m && strncmp(m, prefix, strlen(prefix)) == 0) {
            if (ev)
                *ev = e;
            return json_integer_value(json_object_get(e, "id"));
        }
    }
    return 0;
}

/* Waits (bounded) until users/index has a drain event starting with prefix. */
static long long wait_event(int index, const char *prefix, int timeout_ms)
{
    double until = now_s() + timeout_ms / 1000.0;
    while (now_s() < until) {
        json_t *evs = drain_events(index);
        long long id = find_event(evs, prefix, NULL);
        json_decref(evs);
        if (id)
            return id;
        ms_sleep(50);
    }
    json_t *evs = drain_events(index);
    char *s = json_dumps(evs, JSON_INDENT(1));
    json_decref(evs);
    cr_assert_fail("users/%d: no drain event '%s'; its events: %s", index, prefix, s);
    return 0;
}

static json_t *status_of(int index)
{
    return sys_inst(&sys, "users", index);
}

/* ---------------------------------------------------------------------------------- */
/* Load through the gateway                                                           */
/* ---------------------------------------------------------------------------------- */

typedef struct load {
    atomic_int *stop;
    int n;
    int requests, errors;
    char first_error[512];
} load_t;

typedef struct {
    char *data;
    size_t len, cap;
} buf_t;

static void buf_add(buf_t *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->data = realloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    buf_add(arg, p, size * n);
    return size * n;
}

/* One request on the thread's own keep-alive handle; the status, or -1. */
static long call(CURL *c, const char *method, const char *path, const char *body, const char *key,
                 buf_t *out)
{
    char url[256], kh[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", sys.gw_port, path);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (key) {
        snprintf(kh, sizeof kh, "Idempotency-Key: %s", key);
        h = curl_slist_append(h, kh);
    }
    out->len = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    if (!body)
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    long st = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    curl_slist_free_all(h);
    buf_add(out, "", 0); /* NUL-terminated */
    return st;
}

static void *load_main(void *arg)
{
    load_t *l = arg;
    CURL *c = curl_easy_init();
    buf_t b = {0};
    long long last = 0;
    for (int i = 0; !atomic_load(l->stop); i++) {
        char body[256], key[64], path[64];
        snprintf(key, sizeof key, "drain-%d-%d", l->n, i);
        snprintf(body, sizeof body, "{\"name\":\"u%d\",\"email\":\"u%d.%d@drain.test\"}", i, l->n,
                 i);
        /* every other create without a key: the gateway never retries those, so one
         * that met an instance already told to stop would be the client's error */
        long st = call(c, "POST", "/users", body, i % 2 ? key : NULL, &b);
        l->requests++;
        if (st == 201) {
            json_t *o = json_loadb(b.data, b.len, 0, NULL);
            last = (long long)json_integer_value(json_object_get(o, "id"));
            json_decref(o);
        }
        if (st < 200 || st > 299) {
            if (l->errors++ == 0)
                snprintf(l->first_error, sizeof l->first_error, "POST: %ld %.300s", st,
                         b.data ? b.data : "");
            continue;
        }
        snprintf(path, sizeof path, "/users/%lld", last);
        st = call(c, "GET", path, NULL, NULL, &b);
        l->requests++;
        if ((st < 200 || st > 299) && l->errors++ == 0)
            snprintf(l->first_error, sizeof l->first_error, "GET: %ld %.300s", st,
                     b.data ? b.data : "");
    }
    free(b.data);
    curl_easy_cleanup(c);
    return NULL;
}

/* ---------------------------------------------------------------------------------- */
/* Tests                                                                              */
/* ---------------------------------------------------------------------------------- */

Test(drain, scale_down_under_load_answers_everything_and_sigterm_follows_the_ack)
{
    sys_init(&sys, SPEC("3", "10s"));
    sys_start(&sys);
    sys_wait_ready(&sys, 30000);
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
    ms_sleep(1500); /* every instance has pooled connections from the gateway */
    scale(1);
    /* both leave; each gets its SIGTERM and is gone, bounded */
    for (int idx = 1; idx <= 2; idx++)
        wait_event(idx, "SIGTERM", 30000);
    double until = now_s() + 30;
    while (now_s() < until && (sys_pid(&sys, "users", 1) > 0 || sys_pid(&sys, "users", 2) > 0))
        ms_sleep(50);
    ms_sleep(1000); /* load on the one left */
    atomic_store(&stop, 1);
    load_t l = {0};
    for (int i = 0; i < NLOAD; i++) {
        pthread_join(th[i], NULL);
        l.requests += ls[i].requests;
        l.errors += ls[i].errors;
        if (!l.first_error[0] && ls[i].first_error[0])
            memcpy(l.first_error, ls[i].first_error, sizeof l.first_error);
    }
    cr_log_info("drain: %d requests through a scale-down 3 -> 1", l.requests);
    cr_assert_gt(l.requests, 20, "the load ran");
    cr_assert_eq(l.errors, 0, "%d of %d requests failed; first: %s", l.errors, l.requests,
                 l.first_error);
    for (int idx = 1; idx <= 2; idx++) {
        json_t *evs = drain_events(idx), *term = NULL;
        long long left = find_event(evs, "left routing", NULL);
        long long ack = find_event(evs, "acknowledged by gateway/0", NULL);
        long long sig = find_event(evs, "SIGTERM", &term);
        char *s = json_dumps(evs, JSON_INDENT(1));
        cr_assert(left && ack && sig && left < ack && ack < sig,
                  "users/%d: left %lld, acknowledged %lld, SIGTERM %lld: %s", idx, left, ack, sig,
                  s);
        cr_assert(strstr(json_string_value(json_object_get(term, "message")),
                         "after every gateway's acknowledgement"),
                  "%s", s);
        free(s);
        json_decref(evs);
    }
    cr_assert_gt(sys_pid(&sys, "users", 0), 0);
}

/* A POST of more than the gateway's replay buffer (64 KiB) streams to the instance as
 * it comes: the first part sent, the rest held back, it is in flight there. */
#define BIG_BODY (96 * 1024)
#define BIG_HEAD (80 * 1024)

static int slow_post(int n, char **body)
{
    char head[512];
    *body = malloc(BIG_BODY + 1);
    int len =
        snprintf(*body, BIG_BODY, "{\"name\":\"slow %d\",\"email\":\"slow%d@drain.test\"", n, n);
    memset(*body + len, ' ', BIG_BODY - len - 1); /* JSON whitespace: a valid, big body */
    (*body)[BIG_BODY - 1] = '}';
    (*body)[BIG_BODY] = '\0';
    int hl = snprintf(head, sizeof head,
                      "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      "Idempotency-Key: slow-%d\r\nContent-Length: %d\r\n\r\n",
                      n, BIG_BODY);
    int fd = h_connect(sys.gw_port);
    h_send(fd, head, (size_t)hl);
    h_send(fd, *body, BIG_HEAD);
    return fd;
}

Test(drain, a_request_in_flight_to_the_leaving_instance_holds_its_sigterm)
{
    sys_init(&sys, SPEC("2", "30s"));
    sys_start(&sys);
    sys_wait_ready(&sys, 30000);
    for (int i = 0; i < 8; i++) { /* both instances seen, so the balancer spreads them */
        char path[64];
        snprintf(path, sizeof path, "http://127.0.0.1:%d/users?limit=1", sys.gw_port);
        h_resp_t r = h_http("GET", path, NULL, NULL);
        cr_assert_eq(r.status, 200);
        h_resp_free(&r);
    }
    /* the gateway has reported; a bad report is refused naming its field, changing nothing */
    json_t *gws = sys_json(&sys, "/v1/gateways");
    json_t *g0 = json_array_get(gws, 0);
    cr_assert_str_eq(json_string_value(json_object_get(g0, "id")), "gateway/0");
    json_int_t applied =
        json_integer_value(json_object_get(json_object_get(g0, "services"), "users"));
    cr_assert_gt(applied, 0);
    json_decref(gws);
    char url[256];
    snprintf(url, sizeof url, "%s/v1/gateways/gateway%%2F0/ack", sys.ctl);
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    h_resp_t r = h_http("PUT", url, "{\"services\":{\"users\":-3}}", hdrs);
    cr_assert_eq(r.status, 422, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "services"), "%s", r.body);
    h_resp_free(&r);
    gws = sys_json(&sys, "/v1/gateways");
    cr_assert_eq(json_integer_value(
                     json_object_get(json_object_get(json_array_get(gws, 0), "services"), "users")),
                 applied);
    json_decref(gws);
    enum { NSLOW = 4 };
    int fds[NSLOW];
    char *bodies[NSLOW];
    for (int i = 0; i < NSLOW; i++)
        fds[i] = slow_post(i, &bodies[i]);
    /* round robin: two of them stream to users/1; wait until the gateway has them there */
    char want[128];
    snprintf(want, sizeof want, "upstream=\"http://127.0.0.1:%d\",state=\"active\"} 2",
             sys.port[0] + 1);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", sys.gw_port);
    int streaming = 0;
    for (double until = now_s() + 15; !streaming && now_s() < until; ms_sleep(50)) {
        r = h_http("GET", url, NULL, NULL);
        streaming = r.body && strstr(r.body, want);
        h_resp_free(&r);
    }
    cr_assert(streaming, "two slow POSTs stream to users/1 (%s)", want);
    int pid1 = sys_pid(&sys, "users", 1);
    cr_assert_gt(pid1, 0);
    scale(1);
    long long ack = wait_event(1, "acknowledged by gateway/0", 20000);
    json_t *evs = drain_events(1), *ev = NULL;
    find_event(evs, "acknowledged by gateway/0", &ev);
    int inflight =
        (int)json_integer_value(json_object_get(json_object_get(ev, "detail"), "inflight"));
    char *s = json_dumps(evs, JSON_INDENT(1));
    cr_assert_eq(inflight, 2, "the slow POSTs at users/1: %s", s);
    cr_assert_eq(find_event(evs, "SIGTERM", NULL), 0, "no SIGTERM while in flight: %s", s);
    free(s);
    json_decref(evs);
    /* still there, leaving, and `cmesh status` says so */
    json_t *in = status_of(1);
    cr_assert_str_eq(json_string_value(json_object_get(in, "state")), "leaving");
    json_decref(in);
    cr_assert_eq(kill(pid1, 0), 0);
    char *out = NULL;
    const char *args[] = {"status", NULL};
    sys_cmd(&sys, &out, args);
    cr_assert(strstr(out, "leaving"), "cmesh status: %s", out);
    free(out);
    /* the bodies complete: every answer is a 2xx, then the SIGTERM goes */
    for (int i = 0; i < NSLOW; i++) {
        h_send(fds[i], bodies[i] + BIG_HEAD, BIG_BODY - BIG_HEAD);
        size_t len;
        char *resp = h_recv_responses(fds[i], 1, 15000, &len);
        cr_assert_not_null(resp);
        int st = h_raw_status(resp);
        cr_assert(st >= 200 && st <= 299, "slow POST %d: %.300s", i, resp);
        free(resp);
        free(bodies[i]);
        close(fds[i]);
    }
    long long sig = wait_event(1, "SIGTERM", 20000);
    long long drained = wait_event(1, "drained by gateway/0", 1000);
    cr_assert(ack < drained && drained < sig, "ack %lld, drained %lld, SIGTERM %lld", ack, drained,
              sig);
    evs = drain_events(1);
    find_event(evs, "SIGTERM", &ev);
    cr_assert(strstr(json_string_value(json_object_get(ev, "message")),
                     "after every gateway's acknowledgement"));
    json_decref(evs);
}

Test(drain, a_gateway_that_does_not_acknowledge_holds_the_sigterm_only_until_the_timeout)
{
    sys_init(&sys, SPEC("2", "2s"));
    sys_start(&sys);
    sys_wait_ready(&sys, 30000);
    int gw = sys_pid(&sys, "gateway", 0);
    cr_assert_gt(gw, 0);
    cr_assert_eq(kill(gw, SIGSTOP), 0);
    scale(1);
    long long sig = wait_event(1, "SIGTERM", 20000);
    kill(gw, SIGCONT);
    json_t *evs = drain_events(1), *ev = NULL;
    long long left = find_event(evs, "left routing", NULL);
    find_event(evs, "SIGTERM", &ev);
    const char *m = json_string_value(json_object_get(ev, "message"));
    cr_assert(left && left < sig);
    cr_assert(strstr(m, "after the drain timeout") && strstr(m, "gateway/0 did not acknowledge"),
              "%s", m);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(ev, "detail"), "after")),
                     "timeout");
    cr_assert_eq(find_event(evs, "acknowledged by", NULL), 0);
    json_decref(evs);
    /* it goes, and the gateway, back, still serves through the one left */
    double until = now_s() + 20;
    while (now_s() < until && sys_pid(&sys, "users", 1) > 0)
        ms_sleep(50);
    cr_assert_eq(sys_pid(&sys, "users", 1), 0);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/users?limit=1", sys.gw_port);
    h_resp_t r = h_http("GET", url, NULL, NULL);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
}
