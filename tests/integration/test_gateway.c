/* tests/integration/test_gateway.c: a real `cmesh gateway` process in front of real
 * `cmesh users` instances and of recording upstream scripteds (scripted_upstream.c) in this
 * process: proxying, header rewriting, request smuggling refused before the upstream,
 * 100 MB bodies streamed both ways in bounded memory, 404/502/504 JSON errors, JWT auth
 * (HS256, RS256, ES256), rate limits, config errors, the admin API, metrics and the
 * access log's attempts. */
#include "gwadmin_util.h"
#include "h_util.h"
#include "harness.h"
#include "scripted_upstream.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <curl/curl.h>

#define RECV_MS  5000 /* cap on waiting for an answer; never a timing assertion */
#define BIG_SIZE (100ULL * 1024 * 1024)
#define HWM_MAX_KB                                                                                 \
    (64 * 1024) /* the gateway's peak RSS while 100 MB pass: far below the body size */

/* ------------------------------------------------------------------------- */
/* the gateway under test (scratch files, cmesh runs, tokens: h_util.h)         */

/* The admin API of the gateway a test started with start_gateway() (each test runs in a
 * process of its own, so one per test). */
static h_proc_t g_admin;

/* Starts the gateway (1 worker, no access log unless extra says so) on a config file
 * written from text, with its admin API on g_admin. extra: up to 4 more arguments,
 * NULL-terminated. */
static void start_gateway(h_proc_t *gw, const char *config_text, const char *const *extra)
{
    char admin[64];
    adm_prepare(&g_admin, admin, sizeof admin);
    const char *x[7] = {"--admin-listen", admin};
    for (int i = 0; extra && extra[i] && i < 4; i++)
        x[2 + i] = extra[i];
    h_start_gateway(gw, config_text, NULL, 0, x);
}

/* A config with one public route NAME at /PREFIX to the given upstream URLs (a YAML
 * flow list body, e.g. "http://a, http://b"), round robin, no active health checks,
 * plus extra route keys (each line indented 4 spaces). */
static void route_config(char *out, size_t cap, const char *name, const char *prefix,
                         const char *upstreams, const char *extra_keys)
{
    snprintf(out, cap,
             "routes:\n"
             "  - name: %s\n"
             "    prefix: %s\n"
             "    upstreams: [%s]\n"
             "    balancer: round_robin\n"
             "    health: off\n"
             "%s",
             name, prefix, upstreams, extra_keys ? extra_keys : "");
}

static void start_single_route(h_proc_t *gw, const us_scripted_t *s, const char *extra_keys)
{
    char cfg[2048];
    route_config(cfg, sizeof cfg, "scripteds", "/s", us_url(s), extra_keys);
    start_gateway(gw, cfg, NULL);
}

/* Sends bytes on a new connection and reads one answer (framed by Content-Length). */
static char *raw_exchange(int port, const char *data, size_t len)
{
    int fd = h_connect(port);
    h_send(fd, data, len);
    size_t n;
    char *r = h_recv_responses(fd, 1, RECV_MS, &n);
    close(fd);
    return r;
}

/* Asserts body is a JSON object with a non-empty "error" string. */
static void assert_error_json(const char *body, const char *what)
{
    json_error_t e;
    json_t *j = json_loads(body, 0, &e);
    cr_assert_not_null(j, "%s: error body is not JSON (%s): '%s'", what, e.text, body);
    json_t *msg = json_object_get(j, "error");
    cr_assert(json_is_string(msg) && json_string_length(msg) > 0, "%s: no \"error\" in %s", what,
              body);
    json_decref(j);
}

static void assert_error_resp(const h_resp_t *r, long status, const char *what)
{
    cr_assert_eq(r->status, status, "%s: expected %ld, got %ld %s", what, status, r->status,
                 r->body);
    char ct[128];
    cr_assert_eq(h_header(r, "Content-Type", ct, sizeof ct), 0, "%s: no Content-Type", what);
    cr_assert(strncmp(ct, "application/json", 16) == 0, "%s: Content-Type %s", what, ct);
    assert_error_json(r->body, what);
}

static h_resp_t get(const h_proc_t *gw, const char *path)
{
    return h_req(gw, "GET", path, NULL, NULL);
}

static void get_expect(const h_proc_t *gw, const char *path, long status)
{
    h_resp_t r = get(gw, path);
    cr_assert_eq(r.status, status, "GET %s: expected %ld, got %ld %s", path, status, r.status,
                 r.body);
    h_resp_free(&r);
}

static int is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* A W3C traceparent with a valid (lower-hex, not all-zero) trace and parent id. */
static int is_valid_traceparent(const char *tp)
{
    if (strlen(tp) != 55 || strncmp(tp, "00-", 3) || tp[35] != '-' || tp[52] != '-')
        return 0;
    if (!is_lower_hex(tp + 3, 32) || !is_lower_hex(tp + 36, 16) || !is_lower_hex(tp + 53, 2))
        return 0;
    return strncmp(tp + 3, "00000000000000000000000000000000", 32) != 0 &&
           strncmp(tp + 36, "0000000000000000", 16) != 0;
}

/* The head of the scripted upstream's request i; caller frees. */
static char *scripted_head(us_scripted_t *s, int i)
{
    us_request_t q;
    cr_assert_eq(us_request(s, i, &q), 0, "the upstream has no request %d (it has %d)", i,
                 us_count(s));
    char *head = q.head;
    q.head = NULL;
    us_request_free(&q);
    return head;
}

/* ------------------------------------------------------------------------- */
/* proxying                                                                   */

Test(gateway, proxies_crud_round_trip_to_two_users_instances)
{
    char shared[256], db[300];
    h_tempdir(shared, sizeof shared);
    snprintf(db, sizeof db, "%s/users.db", shared);
    h_proc_t u1, u2, gw;
    h_start(&u1, "users", "--db", db, "--access-log", "off", NULL);
    h_start(&u2, "users", "--db", db, "--access-log", "off", NULL);
    char route[256];
    snprintf(route, sizeof route, "/users=%s,%s", u1.url, u2.url);
    h_start(&gw, "gateway", "--route", route, "--workers", "1", "--access-log", "off", NULL);

    static const char *const json[] = {"Content-Type: application/json", NULL};
    h_resp_t r = h_req(&gw, "POST", "/users", "{\"name\":\"Ann\",\"email\":\"ann@x.org\"}", json);
    cr_assert_eq(r.status, 201, "POST /users via gateway: %ld %s", r.status, r.body);
    json_t *j = h_json(&r);
    json_int_t id = json_integer_value(json_object_get(j, "id"));
    cr_assert(id > 0, "no id in %s", r.body);
    json_decref(j);
    h_resp_free(&r);

    char path[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)id);
    r = get(&gw, path);
    cr_assert_eq(r.status, 200, "GET %s: %ld %s", path, r.status, r.body);
    cr_assert(strstr(r.body, "\"Ann\""), "GET %s: %s", path, r.body);
    h_resp_free(&r);

    r = h_req(&gw, "PUT", path, "{\"name\":\"Bea\"}", json);
    cr_assert_eq(r.status, 200, "PUT %s: %ld %s", path, r.status, r.body);
    cr_assert(strstr(r.body, "\"Bea\""), "PUT %s: %s", path, r.body);
    h_resp_free(&r);
    for (int i = 0; i < 4; i++) { /* whichever instance answers sees the write */
        r = get(&gw, path);
        cr_assert(r.status == 200 && strstr(r.body, "\"Bea\""), "GET %s after PUT: %ld %s", path,
                  r.status, r.body);
        h_resp_free(&r);
    }

    r = h_req(&gw, "DELETE", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "DELETE %s: %ld %s", path, r.status, r.body);
    h_resp_free(&r);
    r = get(&gw, path);
    assert_error_resp(&r, 404, "GET after DELETE");
    h_resp_free(&r);

    cr_assert_eq(h_stop(&gw), 0, "gateway did not exit 0 on SIGTERM; see %s", gw.log);
    h_stop(&u1);
    h_stop(&u2);
}

Test(gateway, round_robin_spreads_requests_evenly_over_two_instances)
{
    us_scripted_t *a = us_start(), *b = us_start();
    char ups[128], cfg[2048];
    snprintf(ups, sizeof ups, "%s, %s", us_url(a), us_url(b));
    route_config(cfg, sizeof cfg, "scripteds", "/s", ups, NULL);
    h_proc_t gw;
    start_gateway(&gw, cfg, NULL);
    for (int i = 0; i < 10; i++)
        get_expect(&gw, "/s/item", 200);
    cr_assert_eq(us_count(a), 5, "round robin: scripted A got %d of 10, B got %d", us_count(a),
                 us_count(b));
    cr_assert_eq(us_count(b), 5, "round robin: scripted B got %d of 10", us_count(b));
    char *head = scripted_head(a, 0);
    cr_assert(strncmp(head, "GET /s/item HTTP/1.1\r\n", 22) == 0,
              "path not forwarded as sent: %.60s", head);
    free(head);
    h_stop(&gw);
    us_stop(a);
    us_stop(b);
}

#define HOP_REQUEST                                                                                \
    "GET /s/echo?q=1 HTTP/1.1\r\n"                                                                 \
    "Host: gw.example:8080\r\n"                                                                    \
    "Connection: close, X-Hop-Custom\r\n"                                                          \
    "X-Hop-Custom: secret\r\n"                                                                     \
    "Keep-Alive: timeout=5\r\n"                                                                    \
    "TE: trailers\r\n"                                                                             \
    "Trailer: X-Checksum\r\n"                                                                      \
    "Upgrade: example/1\r\n"                                                                       \
    "Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"                                                  \
    "Proxy-Connection: keep-alive\r\n"                                                             \
    "X-Forwarded-For: 203.0.113.7\r\n"                                                             \
    "Via: 1.0 edge\r\n"                                                                            \
    "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"                     \
    "X-Request-Id: req-abc-123\r\n"                                                                \
    "X-End-To-End: kept\r\n"                                                                       \
    "\r\n"

static void assert_absent(const char *head, const char *name)
{
    char v[256];
    cr_assert_eq(us_head_header(head, name, v, sizeof v), 0,
                 "hop-by-hop %s reached the upstream (%s); head:\n%s", name, v, head);
}

static void assert_value(const char *head, const char *name, const char *want)
{
    char v[512];
    cr_assert(us_head_header(head, name, v, sizeof v) > 0, "upstream got no %s; head:\n%s", name,
              head);
    cr_assert_str_eq(v, want, "upstream %s: expected '%s', got '%s'", name, want, v);
}

/* As assert_value, but the test goes on (to report every header that is wrong). */
static void expect_value(const char *head, const char *name, const char *want)
{
    char v[512];
    us_head_header(head, name, v, sizeof v);
    cr_expect_str_eq(v, want, "upstream %s: expected '%s', got '%s'", name, want, v);
}

Test(gateway, rewrites_forwarding_headers_and_drops_hop_by_hop_ones)
{
    us_scripted_t *s = us_start();
    h_proc_t gw;
    start_single_route(&gw, s, NULL);
    size_t n;
    char *resp = h_raw(gw.port, HOP_REQUEST, sizeof HOP_REQUEST - 1, RECV_MS, &n);
    cr_assert_eq(h_raw_status(resp), 200, "answer: %s", resp);
    char rid[128];
    cr_assert_eq(h_raw_header(resp, "X-Request-Id", rid, sizeof rid), 0, "no X-Request-Id: %s",
                 resp);
    cr_assert_str_eq(rid, "req-abc-123", "client's X-Request-Id not returned");
    free(resp);

    char *head = scripted_head(s, 0);
    cr_assert(strncmp(head, "GET /s/echo?q=1 HTTP/1.1\r\n", 26) == 0, "request line: %.60s", head);
    const char *hop[] = {
        "X-Hop-Custom",        "Keep-Alive",      "TE", "Trailer", "Transfer-Encoding", "Upgrade",
        "Proxy-Authorization", "Proxy-Connection"};
    for (size_t i = 0; i < sizeof hop / sizeof hop[0]; i++)
        assert_absent(head, hop[i]);
    char conn[256];
    if (us_head_header(head, "Connection", conn, sizeof conn))
        cr_assert(!strcasestr(conn, "x-hop-custom") && !strcasestr(conn, "close"),
                  "client's Connection reached the upstream: %s", conn);
    assert_value(head, "X-Forwarded-For", "203.0.113.7, 127.0.0.1");
    assert_value(head, "X-Forwarded-Proto", "http");
    assert_value(head, "X-Forwarded-Host", "gw.example:8080");
    assert_value(head, "Via", "1.0 edge, 1.1 cmesh");
    assert_value(head, "X-Request-Id", "req-abc-123");
    assert_value(head, "X-End-To-End", "kept");
    char tp[128];
    cr_assert_eq(us_head_header(head, "traceparent", tp, sizeof tp), 1, "traceparent: %s", head);
    cr_assert(is_valid_traceparent(tp), "invalid traceparent forwarded: %s", tp);
    cr_assert(strncmp(tp, "00-0af7651916cd43dd8448eb211c80319c-", 36) == 0, "trace id not kept: %s",
              tp);
    cr_assert(strncmp(tp + 36, "b7ad6b7169203331", 16) != 0, "parent id not replaced: %s", tp);
    cr_assert_str_eq(tp + 52, "-01", "trace flags not kept: %s", tp);
    free(head);
    h_stop(&gw);
    us_stop(s);
}

Test(gateway, joins_repeated_forwarding_headers_before_appending)
{
    us_scripted_t *s = us_start();
    h_proc_t gw;
    start_single_route(&gw, s, NULL);
    static const char req[] = "GET /s/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n"
                              "X-Forwarded-For: 203.0.113.7\r\n"
                              "X-Forwarded-For: 198.51.100.2\r\n"
                              "Via: 1.0 a\r\nVia: 1.1 b\r\n\r\n";
    size_t n;
    char *resp = h_raw(gw.port, req, sizeof req - 1, RECV_MS, &n);
    cr_assert_eq(h_raw_status(resp), 200, "answer: %s", resp);
    free(resp);
    char *head = scripted_head(s, 0);
    /* RFC 9110 5.3: repeated fields are one comma-separated list; none may be lost */
    expect_value(head, "X-Forwarded-For", "203.0.113.7, 198.51.100.2, 127.0.0.1");
    expect_value(head, "Via", "1.0 a, 1.1 b, 1.1 cmesh");
    free(head);
    h_stop(&gw);
    us_stop(s);
}

/* One request through the gateway; returns the traceparent the upstream saw and the
 * client's X-Request-Id in rid. */
static void trace_through(h_proc_t *gw, us_scripted_t *s, const char *traceparent, char *tp,
                          size_t tp_cap, char *rid, size_t rid_cap)
{
    char hdr[256];
    snprintf(hdr, sizeof hdr, "traceparent: %s", traceparent ? traceparent : "");
    const char *hdrs[] = {hdr, NULL};
    int before = us_count(s);
    h_resp_t r = h_req(gw, "GET", "/s/t", NULL, traceparent ? hdrs : NULL);
    cr_assert_eq(r.status, 200, "GET /s/t: %ld %s", r.status, r.body);
    cr_assert_eq(h_header(&r, "X-Request-Id", rid, rid_cap), 0, "no X-Request-Id returned");
    h_resp_free(&r);
    char *head = scripted_head(s, before);
    cr_assert_eq(us_head_header(head, "traceparent", tp, tp_cap), 1, "traceparent: %s", head);
    char up_rid[128];
    cr_assert_eq(us_head_header(head, "X-Request-Id", up_rid, sizeof up_rid), 1,
                 "no X-Request-Id sent upstream: %s", head);
    cr_assert_str_eq(up_rid, rid, "upstream and client X-Request-Id differ");
    free(head);
}

Test(gateway, creates_traceparent_and_request_id_when_absent_or_invalid)
{
    us_scripted_t *s = us_start();
    h_proc_t gw;
    start_single_route(&gw, s, NULL);
    char tp[128], rid[128], tp2[128], rid2[128];
    trace_through(&gw, s, NULL, tp, sizeof tp, rid, sizeof rid);
    cr_assert(is_valid_traceparent(tp), "created traceparent is invalid: %s", tp);
    cr_assert(strlen(rid) > 0, "empty generated X-Request-Id");
    trace_through(&gw, s, NULL, tp2, sizeof tp2, rid2, sizeof rid2);
    cr_assert(strncmp(tp + 3, tp2 + 3, 32) != 0, "two requests share trace id %s", tp);
    cr_assert_str_neq(rid, rid2, "two requests share X-Request-Id %s", rid);

    static const char *const bad[] = {
        "garbage", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", /* no flags */
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",         /* zero trace id */
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",         /* zero parent id */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        trace_through(&gw, s, bad[i], tp, sizeof tp, rid, sizeof rid);
        cr_expect(is_valid_traceparent(tp), "traceparent '%s' became invalid '%s'", bad[i], tp);
    }
    h_stop(&gw);
    us_stop(s);
}

Test(gateway, drops_hop_by_hop_headers_of_the_response)
{
    us_scripted_t *s = us_start();
    us_set_reply(s, &(us_reply_t){.status = 200,
                                  .headers = "Connection: X-Up-Hop\r\n"
                                             "X-Up-Hop: 1\r\n"
                                             "Keep-Alive: timeout=9\r\n"
                                             "Proxy-Authenticate: Basic realm=\"up\"\r\n"
                                             "Upgrade: example/1\r\n"
                                             "X-Up-Kept: yes\r\n",
                                  .body = "{\"ok\":true}"});
    h_proc_t gw;
    start_single_route(&gw, s, NULL);
    h_resp_t r = get(&gw, "/s/x");
    cr_assert_eq(r.status, 200, "GET /s/x: %ld %s", r.status, r.body);
    cr_assert_str_eq(r.body, "{\"ok\":true}");
    char v[256];
    cr_assert_eq(h_header(&r, "X-Up-Kept", v, sizeof v), 0, "end-to-end header lost:\n%s",
                 r.headers);
    cr_expect_neq(h_header(&r, "X-Up-Hop", v, sizeof v), 0, "Connection-listed header passed");
    cr_expect_neq(h_header(&r, "Proxy-Authenticate", v, sizeof v), 0, "Proxy-* passed");
    cr_expect_neq(h_header(&r, "Upgrade", v, sizeof v), 0, "Upgrade passed");
    if (h_header(&r, "Keep-Alive", v, sizeof v) == 0)
        cr_assert(!strstr(v, "timeout=9"), "upstream's Keep-Alive passed: %s", v);
    if (h_header(&r, "Connection", v, sizeof v) == 0)
        cr_assert(!strcasestr(v, "x-up-hop"), "upstream's Connection passed: %s", v);
    h_resp_free(&r);
    h_stop(&gw);
    us_stop(s);
}

/* ------------------------------------------------------------------------- */
/* request smuggling                                                          */

typedef struct smuggle {
    const char *name;
    const char *bytes;
    size_t len;
} smuggle_t;

#define SM_HEAD "POST /s/smuggle HTTP/1.1\r\nHost: gw.test\r\n"
#define SMUGGLE(name, lit)                                                                         \
    {                                                                                              \
        name, lit, sizeof(lit) - 1                                                                 \
    }

static const smuggle_t smuggles[] = {
    SMUGGLE("CL.TE", SM_HEAD "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"),
    SMUGGLE("TE.CL", SM_HEAD
            "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n"),
    SMUGGLE("TE xchunked", SM_HEAD "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
    SMUGGLE("TE chunked, identity",
            SM_HEAD "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
    SMUGGLE("TE identity, chunked",
            SM_HEAD "Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n"),
    SMUGGLE("TE twice",
            SM_HEAD "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"),
    SMUGGLE("TE space before colon", SM_HEAD "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
    SMUGGLE("TE obs-fold", SM_HEAD "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"),
    SMUGGLE("two differing Content-Length",
            SM_HEAD "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    SMUGGLE("Content-Length list", SM_HEAD "Content-Length: 5, 6\r\n\r\nhello!"),
    SMUGGLE("Content-Length with sign", SM_HEAD "Content-Length: +5\r\n\r\nhello"),
    SMUGGLE("chunk size not hex",
            SM_HEAD "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    SMUGGLE("chunk size overflow", SM_HEAD "Transfer-Encoding: chunked\r\n\r\n"
                                           "fffffffffffffffff1\r\nhello\r\n0\r\n\r\n"),
    SMUGGLE("chunk size negative",
            SM_HEAD "Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"),
    SMUGGLE("CR in header value", SM_HEAD "X-Note: a\rb\r\nContent-Length: 0\r\n\r\n"),
    SMUGGLE("LF in header value", SM_HEAD "X-Note: a\nInjected: yes\r\nContent-Length: 0\r\n\r\n"),
    SMUGGLE("NUL in header value", SM_HEAD "X-Note: a\0b\r\nContent-Length: 0\r\n\r\n"),
    SMUGGLE("bare LF line ends", "GET /s/smuggle HTTP/1.1\nHost: gw.test\n\n"),
};

Test(gateway, refuses_request_smuggling_with_400_and_forwards_nothing)
{
    us_scripted_t *s = us_start();
    h_proc_t gw;
    start_single_route(&gw, s, NULL);
    for (size_t i = 0; i < sizeof smuggles / sizeof smuggles[0]; i++) {
        const smuggle_t *c = &smuggles[i];
        char *resp = raw_exchange(gw.port, c->bytes, c->len);
        cr_expect_eq(h_raw_status(resp), 400, "%s: expected 400, got: %.200s", c->name, resp);
        if (h_raw_status(resp) == 400)
            assert_error_json(h_raw_body(resp), c->name);
        free(resp);
        size_t raw_len;
        char *raw = us_raw(s, &raw_len);
        cr_expect_eq(us_bytes(s), 0, "%s: the upstream received %llu bytes:\n%.400s", c->name,
                     (unsigned long long)us_bytes(s), raw);
        free(raw);
        us_clear(s);
    }
    /* the route works: the zero counts above are not from a dead path */
    get_expect(&gw, "/s/control", 200);
    cr_assert_eq(us_count(s), 1, "control request: upstream saw %d requests", us_count(s));
    size_t raw_len;
    char *raw = us_raw(s, &raw_len);
    cr_assert(strncmp(raw, "GET /s/control ", 15) == 0, "upstream received more:\n%.400s", raw);
    free(raw);
    h_stop(&gw);
    us_stop(s);
}

/* ------------------------------------------------------------------------- */
/* 100 MB bodies                                                              */

typedef struct stream_io {
    uint64_t off;
    uint64_t size;
    uint64_t sum;
} stream_io_t;

static size_t read_pattern(char *buf, size_t size, size_t n, void *arg)
{
    stream_io_t *io = arg;
    size_t want = size * n;
    if (io->size - io->off < want)
        want = (size_t)(io->size - io->off);
    us_pattern(io->off, buf, want);
    io->off += want;
    return want;
}

static size_t sum_body(char *data, size_t size, size_t n, void *arg)
{
    stream_io_t *io = arg;
    io->sum = us_checksum(io->sum, data, size * n);
    io->off += size * n;
    return size * n;
}

static uint64_t pattern_checksum(uint64_t size)
{
    char *buf = malloc(1 << 20);
    cr_assert_not_null(buf);
    uint64_t sum = US_CHECKSUM_INIT;
    for (uint64_t off = 0; off < size; off += 1 << 20) {
        size_t n = size - off < (1 << 20) ? (size_t)(size - off) : (size_t)1 << 20;
        us_pattern(off, buf, n);
        sum = us_checksum(sum, buf, n);
    }
    free(buf);
    return sum;
}

static long vm_hwm_kb(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    char *st = h_read_file(path, NULL);
    const char *l = strstr(st, "VmHWM:");
    long kb = l ? strtol(l + 6, NULL, 10) : -1;
    free(st);
    return kb;
}

/* Under ASan, freed buffers sit in a quarantine (256 MB by default) and would count as
 * held memory; a small one lets the peak RSS show what the gateway really keeps. */
static void small_asan_quarantine(void)
{
    const char *old = getenv("ASAN_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof opts, "%s%squarantine_size_mb=4", old ? old : "", old && *old ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
}

static CURL *big_transfer(const char *url, struct curl_slist **hl)
{
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 120000L);
    *hl = curl_slist_append(NULL, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hl);
    return c;
}

Test(gateway, streams_a_100mb_upload_byte_exact_in_bounded_memory)
{
    us_scripted_t *s = us_start();
    small_asan_quarantine();
    h_proc_t gw;
    start_single_route(&gw, s, NULL);
    char url[128];
    snprintf(url, sizeof url, "%s/s/upload", gw.url);
    stream_io_t up = {.size = BIG_SIZE};
    stream_io_t down = {.sum = US_CHECKSUM_INIT};
    struct curl_slist *hl;
    CURL *c = big_transfer(url, &hl);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, read_pattern);
    curl_easy_setopt(c, CURLOPT_READDATA, &up);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)BIG_SIZE);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sum_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &down);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hl);
    cr_assert_eq(rc, CURLE_OK, "upload: %s", curl_easy_strerror(rc));
    cr_assert_eq(status, 200, "upload answered %ld", status);

    us_request_t q;
    cr_assert_eq(us_request(s, 0, &q), 0, "the upstream got no request");
    cr_assert_eq(q.body_len, BIG_SIZE, "upstream got %llu of %llu body bytes",
                 (unsigned long long)q.body_len, (unsigned long long)BIG_SIZE);
    cr_assert_eq(q.body_sum, pattern_checksum(BIG_SIZE), "upload body corrupted on the way");
    us_request_free(&q);
    long hwm = vm_hwm_kb(gw.pid);
    cr_assert(hwm > 0 && hwm < HWM_MAX_KB, "gateway peak RSS %ld kB for a 100 MB upload", hwm);
    cr_log_info("gateway peak RSS for a 100 MB upload: %ld kB", hwm);
    h_stop(&gw);
    us_stop(s);
}

Test(gateway, streams_a_100mb_download_byte_exact_in_bounded_memory)
{
    us_scripted_t *s = us_start();
    us_set_reply(s, &(us_reply_t){.status = 200,
                                  .headers = "Content-Type: application/octet-stream\r\n",
                                  .body = "",
                                  .stream_size = BIG_SIZE});
    small_asan_quarantine();
    h_proc_t gw;
    start_single_route(&gw, s, NULL);
    char url[128];
    snprintf(url, sizeof url, "%s/s/download", gw.url);
    stream_io_t down = {.sum = US_CHECKSUM_INIT};
    struct curl_slist *hl;
    CURL *c = big_transfer(url, &hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sum_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &down);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hl);
    cr_assert_eq(rc, CURLE_OK, "download: %s after %llu bytes", curl_easy_strerror(rc),
                 (unsigned long long)down.off);
    cr_assert_eq(status, 200, "download answered %ld", status);
    cr_assert_eq(down.off, BIG_SIZE, "client got %llu of %llu bytes", (unsigned long long)down.off,
                 (unsigned long long)BIG_SIZE);
    cr_assert_eq(down.sum, pattern_checksum(BIG_SIZE), "download body corrupted on the way");
    long hwm = vm_hwm_kb(gw.pid);
    cr_assert(hwm > 0 && hwm < HWM_MAX_KB, "gateway peak RSS %ld kB for a 100 MB download", hwm);
    cr_log_info("gateway peak RSS for a 100 MB download: %ld kB", hwm);
    h_stop(&gw);
    us_stop(s);
}

/* ------------------------------------------------------------------------- */
/* gateway errors                                                             */

Test(gateway, answers_404_json_when_no_route_matches)
{
    us_scripted_t *s = us_start();
    h_proc_t gw;
    start_single_route(&gw, s, NULL);
    const char *miss[] = {"/nowhere", "/sx", "/S/x", "/"};
    for (size_t i = 0; i < sizeof miss / sizeof miss[0]; i++) {
        h_resp_t r = get(&gw, miss[i]);
        assert_error_resp(&r, 404, miss[i]);
        h_resp_free(&r);
    }
    cr_assert_eq(us_count(s), 0, "an unrouted request reached the upstream");
    const char *hit[] = {"/s", "/s/", "/s/x", "/s?x=1"};
    for (size_t i = 0; i < sizeof hit / sizeof hit[0]; i++)
        get_expect(&gw, hit[i], 200);
    cr_assert_eq(us_count(s), 4);
    h_stop(&gw);
    us_stop(s);
}

Test(gateway, answers_502_json_when_no_upstream_can_be_reached)
{
    us_scripted_t *closer = us_start();
    us_set_reply(closer, &(us_reply_t){.status = 0}); /* reads the request, closes */
    char dead[64], cfg[2048], closer_route[1024];
    snprintf(dead, sizeof dead, "http://127.0.0.1:%d", h_free_port());
    route_config(cfg, sizeof cfg, "dead", "/dead", dead, NULL);
    route_config(closer_route, sizeof closer_route, "closer", "/closer", us_url(closer), NULL);
    strncat(cfg, strstr(closer_route, "  - name"), sizeof cfg - strlen(cfg) - 1);
    h_proc_t gw;
    start_gateway(&gw, cfg, NULL);

    h_resp_t r = get(&gw, "/dead/x");
    assert_error_resp(&r, 502, "GET to a dead upstream");
    h_resp_free(&r);
    r = h_req(&gw, "POST", "/dead/x", "{}", NULL);
    assert_error_resp(&r, 502, "POST to a dead upstream");
    h_resp_free(&r);

    r = get(&gw, "/closer/x");
    assert_error_resp(&r, 502, "GET to an upstream that closes without answering");
    h_resp_free(&r);
    us_clear(closer);
    /* a POST without Idempotency-Key that reached the upstream is never tried twice */
    r = h_req(&gw, "POST", "/closer/x", "{}", NULL);
    assert_error_resp(&r, 502, "POST to an upstream that closes without answering");
    h_resp_free(&r);
    cr_assert_eq(us_count(closer), 1, "a POST without key was sent %d times", us_count(closer));
    h_stop(&gw);
    us_stop(closer);
}

Test(gateway, answers_504_json_when_the_upstream_is_too_slow)
{
    us_scripted_t *s = us_start();
    us_set_reply(s, &(us_reply_t){.status = 200, .delay_ms = 8000});
    h_proc_t gw;
    start_single_route(&gw, s, "    timeouts: { connect: 1s, try: 300ms, total: 600ms }\n");
    h_resp_t r = get(&gw, "/s/slow");
    assert_error_resp(&r, 504, "GET to a slow upstream");
    h_resp_free(&r);
    h_stop(&gw);
    us_stop(s);
}

/* ------------------------------------------------------------------------- */
/* auth                                                                       */

typedef enum { KEY_HS256, KEY_RS256, KEY_ES256 } key_kind_t;

#define HS_SECRET    "a-test-secret-of-at-least-32-bytes-0123456789"
#define OTHER_SECRET "another-secret-the-gateway-does-not-know-0123"

static void make_key(key_kind_t k, const char *name, char *path, size_t cap)
{
    if (k == KEY_HS256) {
        h_write_file(path, cap, name, strcmp(name, "other.key") ? HS_SECRET "\n" : OTHER_SECRET);
        return;
    }
    h_make_pem_key(path, cap, name, k == KEY_RS256 ? "RS256" : "ES256");
}

/* A JWT with the given claims, signed here with openssl dgst (HS256 with the test
 * secret, RS256 with key), or unsigned for alg "none". Caller frees. */
static char *craft_token(const char *alg, const char *key, const char *claims)
{
    char header[64];
    snprintf(header, sizeof header, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
    int hs = strcmp(alg, "HS256") == 0, none = strcmp(alg, "none") == 0;
    return h_jwt_sign(header, claims, hs ? HS_SECRET : NULL, hs || none ? NULL : key);
}

static h_resp_t with_token(const h_proc_t *gw, const char *method, const char *path,
                           const char *tok)
{
    char auth[4200];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok ? tok : "");
    const char *hdrs[] = {"Content-Type: application/json", tok ? auth : NULL, NULL};
    return h_req(gw, method, path, strcmp(method, "GET") ? "{}" : NULL, hdrs);
}

static void expect_401(const h_proc_t *gw, const char *tok, const char *what)
{
    h_resp_t r = with_token(gw, "GET", "/secure/x", tok);
    assert_error_resp(&r, 401, what);
    char v[256];
    cr_assert_eq(h_header(&r, "WWW-Authenticate", v, sizeof v), 0, "%s: no WWW-Authenticate", what);
    cr_assert(strncmp(v, "Bearer", 6) == 0, "%s: WWW-Authenticate: %s", what, v);
    h_resp_free(&r);
}

static void expect_status(const h_proc_t *gw, const char *method, const char *path, const char *tok,
                          long status, const char *what)
{
    h_resp_t r = with_token(gw, method, path, tok);
    cr_assert_eq(r.status, status, "%s: %s %s expected %ld, got %ld %s", what, method, path, status,
                 r.status, r.body);
    h_resp_free(&r);
}

static void check_auth(key_kind_t kind)
{
    static const char *const algs[] = {"HS256", "RS256", "ES256"};
    char key[300], other[300];
    make_key(kind, "gw.key", key, sizeof key);
    make_key(KEY_HS256, "other.key", other, sizeof other);
    us_scripted_t *s = us_start();
    char cfg[2048];
    snprintf(cfg, sizeof cfg,
             "auth:\n"
             "  key_file: %s\n"
             "  issuer: cmesh\n" /* what cmesh token --auth-key mints by default */
             "  audience: cmesh-gateway\n"
             "routes:\n"
             "  - name: secure\n"
             "    prefix: /secure\n"
             "    upstreams: [%s]\n"
             "    health: off\n"
             "    auth:\n"
             "      read_scopes: [users:read]\n"
             "      write_scopes: [users:write]\n"
             "  - name: pub\n"
             "    prefix: /pub\n"
             "    upstreams: [%s]\n"
             "    health: off\n"
             "    auth: public\n",
             key, us_url(s), us_url(s));
    h_proc_t gw;
    start_gateway(&gw, cfg, NULL);

    char *reader = h_token("alice", "users:read", "--ttl", "1h", "--auth-key", key, NULL);
    char *writer = h_token("bob", "users:read users:write", "--ttl", "1h", "--auth-key", key, NULL);
    char *stranger =
        h_token("mallory", "users:read users:write", "--ttl", "1h", "--auth-key", other, NULL);

    expect_401(&gw, NULL, "no token");
    expect_401(&gw, "not-a-jwt", "garbage token");
    expect_401(&gw, stranger, "token signed with another key");
    char *tampered = strdup(reader);
    char *last = tampered + strlen(tampered) - 2; /* inside the signature, all bits used */
    *last = *last == 'A' ? 'B' : 'A';
    expect_401(&gw, tampered, "token with a changed signature");
    free(tampered);
    char claims[256];
    long now = (long)time(NULL);
    snprintf(claims, sizeof claims, "{\"sub\":\"eve\",\"scope\":\"users:read\",\"exp\":%ld}",
             now + 3600);
    char *unsigned_tok = craft_token("none", NULL, claims);
    expect_401(&gw, unsigned_tok, "alg none");
    free(unsigned_tok);
    int good_crafted = 0;
    if (kind != KEY_ES256) { /* openssl's ECDSA output is DER, not JWS r||s */
        const char *alg = algs[kind];
        snprintf(claims, sizeof claims,
                 "{\"sub\":\"carl\",\"scope\":\"users:read\",\"iss\":\"cmesh\","
                 "\"aud\":\"cmesh-gateway\",\"iat\":%ld,\"exp\":%ld}",
                 now, now + 3600);
        char *crafted = craft_token(alg, key, claims);
        expect_status(&gw, "GET", "/secure/x", crafted, 200, "crafted valid token (control)");
        good_crafted = 1;
        free(crafted);
        snprintf(claims, sizeof claims,
                 "{\"sub\":\"carl\",\"scope\":\"users:read\",\"iat\":%ld,\"exp\":%ld}", now - 7200,
                 now - 3600);
        char *expired = craft_token(alg, key, claims);
        expect_401(&gw, expired, "expired token");
        free(expired);
        snprintf(claims, sizeof claims,
                 "{\"sub\":\"carl\",\"scope\":\"users:read\",\"nbf\":%ld,\"exp\":%ld}", now + 3600,
                 now + 7200);
        char *early = craft_token(alg, key, claims);
        expect_401(&gw, early, "token not valid yet (nbf)");
        free(early);
    }
    if (kind == KEY_RS256) { /* alg confusion: the public key's bytes as an HMAC secret */
        snprintf(claims, sizeof claims, "{\"sub\":\"eve\",\"scope\":\"users:read\",\"exp\":%ld}",
                 now + 3600);
        char *hs = craft_token("HS256", NULL, claims);
        expect_401(&gw, hs, "HS256 token on an RS256 gateway");
        free(hs);
    }
    cr_assert_eq(us_count(s), good_crafted, "a refused request reached the upstream");

    expect_status(&gw, "GET", "/secure/x", reader, 200, "read scope, GET");
    h_resp_t r = with_token(&gw, "POST", "/secure/x", reader);
    assert_error_resp(&r, 403, "read scope, POST");
    char v[512];
    cr_assert_eq(h_header(&r, "WWW-Authenticate", v, sizeof v), 0, "403 without WWW-Authenticate");
    cr_assert(strncmp(v, "Bearer", 6) == 0 && strstr(v, "error=\"insufficient_scope\""),
              "403 WWW-Authenticate: %s", v);
    h_resp_free(&r);
    expect_status(&gw, "POST", "/secure/x", writer, 200, "write scope, POST");
    expect_status(&gw, "GET", "/pub/x", NULL, 200, "public route, no token");
    cr_assert_eq(us_count(s), good_crafted + 3, "upstream saw %d requests, expected %d",
                 us_count(s), good_crafted + 3);
    free(reader);
    free(writer);
    free(stranger);
    h_stop(&gw);
    us_stop(s);
}

Test(gateway, hs256_auth_answers_401_403_and_200)
{
    check_auth(KEY_HS256);
}

Test(gateway, rs256_auth_answers_401_403_and_200)
{
    check_auth(KEY_RS256);
}

Test(gateway, es256_auth_answers_401_403_and_200)
{
    check_auth(KEY_ES256);
}

/* ------------------------------------------------------------------------- */
/* rate limit                                                                 */

Test(gateway, rate_limit_per_client_answers_429_with_ratelimit_headers)
{
    us_scripted_t *s = us_start();
    char cfg[2048], other[1024];
    /* 1 token a minute, not a second: the 4th request is refused however slow this
     * machine is */
    route_config(cfg, sizeof cfg, "limited", "/limited", us_url(s),
                 "    rate_limit:\n      per_client: { rate: 1/m, burst: 3 }\n");
    route_config(other, sizeof other, "free", "/free", us_url(s), NULL);
    strncat(cfg, strstr(other, "  - name"), sizeof cfg - strlen(cfg) - 1);
    h_proc_t gw;
    start_gateway(&gw, cfg, NULL);
    for (int i = 0; i < 3; i++)
        get_expect(&gw, "/limited/x", 200);
    h_resp_t r = get(&gw, "/limited/x");
    assert_error_resp(&r, 429, "4th request inside the burst");
    char v[128];
    cr_assert_eq(h_header(&r, "Retry-After", v, sizeof v), 0, "429 without Retry-After");
    cr_assert(atoi(v) >= 1, "Retry-After: %s", v);
    cr_assert_eq(h_header(&r, "RateLimit-Limit", v, sizeof v), 0, "no RateLimit-Limit");
    cr_assert_eq(h_header(&r, "RateLimit-Remaining", v, sizeof v), 0, "no RateLimit-Remaining");
    cr_assert_str_eq(v, "0", "RateLimit-Remaining on a 429: %s", v);
    cr_assert_eq(h_header(&r, "RateLimit-Reset", v, sizeof v), 0, "no RateLimit-Reset");
    h_resp_free(&r);
    for (int i = 0; i < 5; i++)
        get_expect(&gw, "/free/x", 200);
    cr_assert_eq(us_count(s), 8, "upstream saw %d requests; the 429 must not reach it",
                 us_count(s));
    h_stop(&gw);
    us_stop(s);
}

/* ------------------------------------------------------------------------- */
/* config errors                                                              */

/* Writes text as a config, runs the gateway on it and asserts exit 2 with
 * "PATH:LINE: " on stderr (line 0 = any line). */
static void expect_config_error(const char *text, int line, const char *what)
{
    char path[300];
    h_write_file(path, sizeof path, "bad.yaml", text);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", h_free_port());
    char *err;
    int rc = h_run_cmesh(NULL, &err, "gateway", "--listen", listen, "--config", path, NULL);
    cr_assert_eq(rc, 2, "%s: exit %d, stderr: %s", what, rc, err);
    char want[400];
    snprintf(want, sizeof want, "%s:", path);
    const char *at = strstr(err, want);
    cr_assert_not_null(at, "%s: stderr does not name %s: %s", what, path, err);
    char *end;
    long got = strtol(at + strlen(want), &end, 10);
    cr_assert(end > at + strlen(want) && *end == ':', "%s: no FILE:LINE: in %s", what, err);
    if (line)
        cr_assert_eq(got, line, "%s: line %ld reported, expected %d: %s", what, got, line, err);
    else
        cr_assert(got >= 1 && got <= 5, "%s: line %ld: %s", what, got, err);
    free(err);
}

Test(gateway, config_unknown_key_exits_2_naming_file_and_line)
{
    expect_config_error("routes:\n"
                        "  - prefix: /a\n"
                        "    upstreams: [http://127.0.0.1:9]\n"
                        "    timeouts:\n"
                        "      conect: 1s\n",
                        5, "unknown key");
}

Test(gateway, config_bad_duration_exits_2_naming_file_and_line)
{
    expect_config_error("routes:\n"
                        "  - prefix: /a\n"
                        "    upstreams: [http://127.0.0.1:9]\n"
                        "    timeouts:\n"
                        "      connect: 5 parsecs\n",
                        5, "bad duration");
}

Test(gateway, config_bad_upstream_url_exits_2_naming_file_and_line)
{
    expect_config_error("routes:\n"
                        "  - prefix: /a\n"
                        "    balancer: round_robin\n"
                        "    upstreams: [ftp://127.0.0.1:9]\n",
                        4, "bad URL");
}

Test(gateway, config_yaml_syntax_error_exits_2_naming_file_and_line)
{
    expect_config_error("routes:\n"
                        "  - prefix: /a\n"
                        "    upstreams: [http://127.0.0.1:9\n"
                        "    balancer: round_robin\n",
                        0, "YAML syntax error");
}

/* ------------------------------------------------------------------------- */
/* admin API                                                                  */

static const char *str_of(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

/* The admin view of route name (a new reference), asserting 200. */
static json_t *admin_route(const h_proc_t *gw, const char *name, const char *tok)
{
    (void)gw;
    h_resp_t r = with_token(&g_admin, "GET", "/_cmesh/routes", tok);
    cr_assert_eq(r.status, 200, "GET /_cmesh/routes: %ld %s", r.status, r.body);
    json_t *j = h_json(&r);
    h_resp_free(&r);
    json_t *routes = json_object_get(j, "routes");
    cr_assert(json_is_array(routes), "no routes array");
    size_t i;
    json_t *rt;
    json_array_foreach(routes, i, rt)
    {
        if (strcmp(str_of(rt, "name"), name) == 0) {
            json_incref(rt);
            json_decref(j);
            return rt;
        }
    }
    cr_assert_fail("route %s not listed", name);
    return NULL;
}

static void assert_upstreams(json_t *rt, const char *url)
{
    json_t *ups = json_object_get(rt, "upstreams");
    cr_assert(json_is_array(ups) && json_array_size(ups) == 1, "upstreams: %s", json_dumps(rt, 0));
    json_t *u = json_array_get(ups, 0);
    cr_assert_str_eq(str_of(u, "url"), url);
    cr_assert(json_is_boolean(json_object_get(u, "healthy")), "no healthy flag");
    cr_assert(json_is_boolean(json_object_get(u, "ejected")), "no ejected flag");
}

static h_resp_t put_upstreams(const h_proc_t *gw, const char *route, const char *body,
                              const char *tok)
{
    char path[128], auth[4200];
    snprintf(path, sizeof path, "/_cmesh/routes/%s/upstreams", route);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok ? tok : "");
    const char *hdrs[] = {"Content-Type: application/json", tok ? auth : NULL, NULL};
    (void)gw;
    return h_req(&g_admin, "PUT", path, body, hdrs);
}

Test(gateway, admin_lists_routes_and_replaces_upstreams_from_loopback)
{
    us_scripted_t *a = us_start(), *b = us_start();
    h_proc_t gw;
    start_single_route(&gw, a, NULL);
    json_t *rt = admin_route(&gw, "scripteds", NULL);
    cr_assert_str_eq(str_of(rt, "prefix"), "/s");
    assert_upstreams(rt, us_url(a));
    json_decref(rt);

    char body[256];
    snprintf(body, sizeof body, "{\"upstreams\": [\"%s\"]}", us_url(b));
    h_resp_t r = put_upstreams(&gw, "scripteds", body, NULL);
    cr_assert_eq(r.status, 200, "PUT upstreams: %ld %s", r.status, r.body);
    h_resp_free(&r);
    for (int i = 0; i < 3; i++)
        get_expect(&gw, "/s/x", 200);
    cr_assert_eq(us_count(a), 0, "the replaced instance still got %d requests", us_count(a));
    cr_assert_eq(us_count(b), 3, "the new instance got %d of 3", us_count(b));
    rt = admin_route(&gw, "scripteds", NULL);
    assert_upstreams(rt, us_url(b));
    json_decref(rt);

    r = put_upstreams(&gw, "nosuch", body, NULL);
    assert_error_resp(&r, 404, "PUT upstreams of an unknown route");
    h_resp_free(&r);
    r = put_upstreams(&gw, "scripteds", "{\"upstreams\": []}", NULL);
    cr_assert(r.status == 422 || r.status == 400, "empty upstreams: %ld %s", r.status, r.body);
    assert_error_json(r.body, "empty upstreams");
    h_resp_free(&r);
    r = put_upstreams(&gw, "scripteds", "{\"upstreams\": [\"ftp://x:1\"]}", NULL);
    cr_assert(r.status == 422 || r.status == 400, "bad URL: %ld %s", r.status, r.body);
    h_resp_free(&r);
    get_expect(&gw, "/s/x", 200); /* refused PUTs changed nothing */
    cr_assert_eq(us_count(b), 4);
    h_stop(&gw);
    us_stop(a);
    us_stop(b);
}

Test(gateway, admin_needs_a_cmesh_admin_token_when_auth_is_on)
{
    char key[300];
    make_key(KEY_HS256, "gw.key", key, sizeof key);
    us_scripted_t *a = us_start(), *b = us_start();
    char cfg[1024];
    snprintf(cfg, sizeof cfg,
             "auth:\n  key_file: %s\n  issuer: cmesh\n  audience: cmesh-gateway\n"
             "routes:\n  - name: scripteds\n    prefix: /s\n"
             "    upstreams: [%s]\n    health: off\n",
             key, us_url(a));
    h_proc_t gw;
    start_gateway(&gw, cfg, NULL);
    char *user = h_token("alice", "users:read", "--ttl", "1h", "--auth-key", key, NULL);
    char *admin = h_token("root", "cmesh:admin", "--ttl", "1h", "--auth-key", key, NULL);

    h_resp_t r = with_token(&g_admin, "GET", "/_cmesh/routes", NULL);
    assert_error_resp(&r, 401, "admin without token");
    h_resp_free(&r);
    r = with_token(&g_admin, "GET", "/_cmesh/routes", user);
    assert_error_resp(&r, 403, "admin with a users:read token");
    h_resp_free(&r);
    char body[256];
    snprintf(body, sizeof body, "{\"upstreams\": [\"%s\"]}", us_url(b));
    r = put_upstreams(&gw, "scripteds", body, user);
    assert_error_resp(&r, 403, "PUT upstreams with a users:read token");
    h_resp_free(&r);

    json_t *rt = admin_route(&gw, "scripteds", admin);
    assert_upstreams(rt, us_url(a));
    json_decref(rt);
    r = put_upstreams(&gw, "scripteds", body, admin);
    cr_assert_eq(r.status, 200, "PUT upstreams as admin: %ld %s", r.status, r.body);
    h_resp_free(&r);
    rt = admin_route(&gw, "scripteds", admin);
    assert_upstreams(rt, us_url(b));
    json_decref(rt);
    free(user);
    free(admin);
    h_stop(&gw);
    us_stop(a);
    us_stop(b);
}

/* ------------------------------------------------------------------------- */
/* metrics, access log                                                        */

/* Sum of the samples of metric name whose labels hold every "k=\"v\"" of labels
 * (NULL-terminated); -1 when there is none. */
static double metric_sum(const char *text, const char *name, const char *const *labels)
{
    double sum = -1;
    size_t nl = strlen(name);
    for (const char *line = text; line && *line;
         line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        if (strncmp(line, name, nl) != 0 || line[nl] != '{')
            continue;
        const char *close = strchr(line, '}');
        const char *eol = strchr(line, '\n');
        if (!close || (eol && close > eol))
            continue;
        int all = 1;
        for (int i = 0; labels[i] && all; i++) {
            const char *at = strstr(line, labels[i]);
            all = at && at < close;
        }
        if (all)
            sum = (sum < 0 ? 0 : sum) + strtod(close + 1, NULL);
    }
    return sum;
}

Test(gateway, metrics_count_requests_per_route_code_and_upstream)
{
    us_scripted_t *s = us_start();
    h_proc_t gw;
    start_single_route(&gw, s, NULL);
    for (int i = 0; i < 3; i++)
        get_expect(&gw, "/s/ok", 200);
    us_set_reply(s, &(us_reply_t){.status = 404, .body = "{\"error\":\"nope\"}"});
    get_expect(&gw, "/s/missing", 404);
    h_resp_t r = get(&gw, "/metrics");
    cr_assert_eq(r.status, 200);
    char up[128];
    snprintf(up, sizeof up, "upstream=\"%s\"", us_url(s));
    const char *ok[] = {"route=\"scripteds\"", "code=\"200\"", NULL};
    const char *nf[] = {"route=\"scripteds\"", "code=\"404\"", NULL};
    const char *up_ok[] = {"route=\"scripteds\"", up, "code=\"200\"", NULL};
    double v = metric_sum(r.body, "cmesh_gateway_requests_total", ok);
    cr_assert_eq(v, 3, "cmesh_gateway_requests_total{route=scripteds,code=200} = %g", v);
    v = metric_sum(r.body, "cmesh_gateway_requests_total", nf);
    cr_assert_eq(v, 1, "cmesh_gateway_requests_total{route=scripteds,code=404} = %g", v);
    v = metric_sum(r.body, "cmesh_gateway_upstream_requests_total", up_ok);
    cr_assert_eq(v, 3, "cmesh_gateway_upstream_requests_total{scripted,200} = %g", v);
    h_resp_free(&r);
    h_stop(&gw);
    us_stop(s);
}

/* Access log lines (JSON objects) of route name, waiting up to 5 s for n of them (the
 * log is written by a thread in batches). Returns a new array. */
static json_t *log_lines(const char *path, const char *route, size_t n)
{
    json_t *out = NULL;
    for (int tries = 0; tries < 100; tries++) {
        json_decref(out);
        out = json_array();
        char *text = h_read_file(path, NULL);
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
            json_t *j = json_loads(line, 0, NULL);
            const char *rt = json_string_value(json_object_get(j, "route"));
            if (j && rt && strcmp(rt, route) == 0)
                json_array_append(out, j);
            json_decref(j);
        }
        free(text);
        if (json_array_size(out) >= n)
            break;
        usleep(50 * 1000);
    }
    return out;
}

Test(gateway, access_log_lists_every_attempt_with_its_outcome)
{
    us_scripted_t *s = us_start();
    char dead[64], ups[160], cfg[2048];
    snprintf(dead, sizeof dead, "http://127.0.0.1:%d", h_free_port());
    snprintf(ups, sizeof ups, "%s, %s", dead, us_url(s));
    route_config(cfg, sizeof cfg, "logged", "/logged", ups,
                 "    retries: { attempts: 3, backoff: 1ms }\n");
    h_proc_t gw;
    static const char *const log_arg[] = {"--access-log", "{dir}/access.log", NULL};
    start_gateway(&gw, cfg, log_arg);
    for (int i = 0; i < 4; i++)
        get_expect(&gw, "/logged/x", 200);
    char path[400];
    snprintf(path, sizeof path, "%s/access.log", gw.dir);
    json_t *lines = log_lines(path, "logged", 4);
    cr_assert_eq(json_array_size(lines), 4, "%zu access log lines for route logged in %s",
                 json_array_size(lines), path);
    int retried = 0;
    size_t i;
    json_t *line;
    json_array_foreach(lines, i, line)
    {
        char *dump = json_dumps(line, 0);
        json_t *att = json_object_get(line, "attempts");
        cr_assert(json_is_array(att) && json_array_size(att) >= 1, "no attempts: %s", dump);
        size_t k;
        json_t *a;
        json_array_foreach(att, k, a)
        {
            cr_assert(json_is_string(json_object_get(a, "upstream")), "no upstream: %s", dump);
            cr_assert(json_is_integer(json_object_get(a, "duration_us")), "no duration: %s", dump);
        }
        json_t *last = json_array_get(att, json_array_size(att) - 1);
        cr_assert_str_eq(json_string_value(json_object_get(last, "upstream")), us_url(s), "%s",
                         dump);
        cr_assert_eq(json_integer_value(json_object_get(last, "status")), 200, "%s", dump);
        json_t *first = json_array_get(att, 0);
        if (json_array_size(att) >= 2) {
            cr_assert_str_eq(json_string_value(json_object_get(first, "upstream")), dead, "%s",
                             dump);
            cr_assert(json_is_string(json_object_get(first, "error")), "no error: %s", dump);
            cr_assert(json_is_string(json_object_get(first, "retry")), "no retry: %s", dump);
            retried++;
        }
        free(dump);
    }
    cr_assert(retried >= 1, "no request tried the dead instance first (round robin)");
    json_decref(lines);
    h_stop(&gw);
    us_stop(s);
}

/* The route's timeouts are ten minutes: only the client's close can end this exchange
 * within the test. 100 KiB is past the replay buffer, so the upstream already has part of
 * the body when the client goes. */
Test(gateway, client_leaving_mid_upload_ends_the_exchange_and_its_upstream_connection)
{
    us_scripted_t *s = us_start();
    char cfg[2048];
    route_config(cfg, sizeof cfg, "up", "/up", us_url(s),
                 "    timeouts: { try: 10m, total: 10m }\n");
    h_proc_t gw;
    static const char *const log_arg[] = {"--access-log", "{dir}/access.log", NULL};
    start_gateway(&gw, cfg, log_arg);

    static const char head[] = "POST /up/x HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n";
    static char part[100 * 1024];
    memset(part, 'x', sizeof part);
    int fd = h_connect(gw.port);
    h_send(fd, head, sizeof head - 1);
    h_send(fd, part, sizeof part);
    for (int i = 0; i < 100 && us_bytes(s) < 64 * 1024; i++)
        usleep(20 * 1000);
    cr_assert_geq(us_bytes(s), 64 * 1024, "the upstream never got the first part of the body");
    close(fd);

    char path[400];
    snprintf(path, sizeof path, "%s/access.log", gw.dir);
    json_t *lines = log_lines(path, "up", 1);
    cr_assert_eq(json_array_size(lines), 1, "the exchange did not end when the client left");
    json_t *line = json_array_get(lines, 0);
    cr_assert_eq(json_integer_value(json_object_get(line, "status")), 499,
                 "a client that left is logged %lld, not 499",
                 (long long)json_integer_value(json_object_get(line, "status")));
    json_decref(lines);

    int conns = -1;
    for (int i = 0; i < 100 && conns != 0; i++) { /* the half-sent request's connection */
        h_resp_t r = get(&g_admin, "/_cmesh/routes");
        json_t *doc = h_json(&r);
        json_t *up = json_array_get(
            json_object_get(json_array_get(json_object_get(doc, "routes"), 0), "upstreams"), 0);
        conns = (int)json_integer_value(json_object_get(up, "connections"));
        json_decref(doc);
        h_resp_free(&r);
        if (conns)
            usleep(20 * 1000);
    }
    cr_assert_eq(conns, 0, "the upstream connection with half a request is still open");
    h_stop(&gw);
    us_stop(s);
}
