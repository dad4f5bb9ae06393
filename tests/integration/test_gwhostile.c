/* tests/integration/test_gwhostile.c: hostile request targets and header fields against a
 * real `cmesh gateway` in front of recording scripted upstreams (scripted_upstream.c): every
 * spelling of a guarded path is matched to the guarded route and reaches the upstream in the
 * one normalized form; spellings that cannot be normalized safely are refused 400 before
 * the upstream; Connection cannot strip the fields the gateway relies on; underscore and
 * client-claimed forwarding fields stay behind; absolute-form targets are routed on their
 * authority. Requests go over raw sockets (a client library would clean the paths up). */
#include "h_util.h"
#include "harness.h"
#include "scripted_upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>

#define RECV_MS     5000 /* cap on waiting for an answer; never a timing assertion */
#define HS_SECRET   "a-test-secret-of-at-least-32-bytes-0123456789"
#define PUBLIC_HOST "public.example"

/* ------------------------------------------------------------------------- */
/* the guarded gateway (scratch files, the token, the gateway: h_util.h)       */

/* The guarded setup of the security review: /admin needs scope admin, everything else is
 * public, both on the same upstream. */
typedef struct guarded {
    h_proc_t gw;
    us_scripted_t *up;
    char *tok;
} guarded_t;

static void start_guarded(guarded_t *g)
{
    char key[300], cfg[2048];
    h_write_file(key, sizeof key, "gw.key", HS_SECRET "\n");
    g->up = us_start();
    snprintf(cfg, sizeof cfg,
             "auth:\n"
             "  key_file: %s\n"
             "  issuer: cmesh\n" /* what cmesh token --auth-key mints */
             "  audience: cmesh-gateway\n"
             "routes:\n"
             "  - name: admin\n"
             "    prefix: /admin\n"
             "    upstreams: [%s]\n"
             "    health: off\n"
             "    auth:\n"
             "      scopes: [admin]\n"
             "  - name: pub\n"
             "    prefix: /\n"
             "    upstreams: [%s]\n"
             "    health: off\n"
             "    auth: public\n",
             key, us_url(g->up), us_url(g->up));
    h_start_gateway(&g->gw, cfg, NULL, 0, NULL);
    g->tok = h_token("tester", "admin", "--ttl", "1h", "--auth-key", key, NULL);
}

static void stop_guarded(guarded_t *g)
{
    h_stop(&g->gw);
    us_stop(g->up);
    free(g->tok);
}

/* ------------------------------------------------------------------------- */
/* raw requests                                                                */

/* Sends "METHOD target HTTP/1.1" with the given head lines (each ending "\r\n"; the Host
 * line is the caller's) on a new connection; returns the one answer (caller frees). */
static char *raw_request(int port, const char *method, const char *target, const char *lines)
{
    char req[8192];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\n%s\r\n", method, target, lines);
    cr_assert(n > 0 && (size_t)n < sizeof req);
    int fd = h_connect(port);
    h_send(fd, req, (size_t)n);
    size_t len;
    char *r = h_recv_responses(fd, 1, RECV_MS, &len);
    close(fd);
    cr_assert_not_null(r);
    return r;
}

static char *get_as(const guarded_t *g, const char *target, int with_token)
{
    char lines[4096];
    snprintf(lines, sizeof lines, "Host: " PUBLIC_HOST "\r\n%s%s%s",
             with_token ? "Authorization: Bearer " : "", with_token ? g->tok : "",
             with_token ? "\r\n" : "");
    return raw_request(g->gw.port, "GET", target, lines);
}

static void assert_json_error(const char *resp, const char *what)
{
    json_error_t e;
    json_t *j = json_loads(h_raw_body(resp), 0, &e);
    cr_assert_not_null(j, "%s: error body is not JSON: %s", what, resp);
    cr_assert(json_is_string(json_object_get(j, "error")), "%s: no \"error\": %s", what, resp);
    json_decref(j);
}

/* The request line the upstream received for its request i ("" when none). */
static void upstream_line(us_scripted_t *s, int i, char *out, size_t cap)
{
    us_request_t r;
    out[0] = '\0';
    if (us_request(s, i, &r) < 0)
        return;
    snprintf(out, cap, "%.*s", (int)strcspn(r.head, "\r"), r.head);
    us_request_free(&r);
}

/* Header name of the upstream's request i into out; returns how many such fields it had. */
static int upstream_header(us_scripted_t *s, int i, const char *name, char *out, size_t cap)
{
    us_request_t r;
    out[0] = '\0';
    cr_assert_eq(us_request(s, i, &r), 0, "the upstream has no request %d", i);
    int n = us_head_header(r.head, name, out, cap);
    us_request_free(&r);
    return n;
}

/* ------------------------------------------------------------------------- */
/* item 1: paths                                                               */

typedef struct spelling {
    const char *target;    /* as the client sends it */
    const char *forwarded; /* the request target the upstream must see */
} spelling_t;

Test(gwhostile, every_spelling_of_a_guarded_path_needs_its_token_and_arrives_normalized)
{
    static const spelling_t s[] = {
        {"/admin/x", "/admin/x"},
        {"/x/../admin/x", "/admin/x"},
        {"/./admin/x", "/admin/x"},
        {"//admin/x", "/admin/x"},
        {"/%61dmin/x", "/admin/x"},
        {"/%2e/admin/x", "/admin/x"},
        {"/pub/%2e%2E/admin//x", "/admin/x"},
        {"/admin/./x", "/admin/x"},
        {"/ADMIN/../%41dmin/../admin", "/admin"},
        {"/admin/x%3f?q=%2e%2E&r=/../", "/admin/x%3F?q=%2e%2E&r=/../"},
        {"http://" PUBLIC_HOST "/admin/x", "/admin/x"},
        {"HTTP://" PUBLIC_HOST "//admin/%78", "/admin/x"},
    };
    guarded_t g;
    start_guarded(&g);
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        us_clear(g.up);
        char *r = get_as(&g, s[i].target, 0);
        cr_expect_eq(h_raw_status(r), 401,
                     "%s without a token: the admin route's auth must apply, got:\n%s", s[i].target,
                     r);
        cr_expect_eq(us_count(g.up), 0, "%s without a token reached the upstream", s[i].target);
        free(r);
        r = get_as(&g, s[i].target, 1);
        cr_expect_eq(h_raw_status(r), 200, "%s with the token: %s", s[i].target, r);
        free(r);
        char line[512], want[512];
        upstream_line(g.up, 0, line, sizeof line);
        snprintf(want, sizeof want, "GET %s HTTP/1.1", s[i].forwarded);
        cr_expect_str_eq(line, want, "%s reached the upstream as '%s'", s[i].target, line);
        cr_expect_eq(us_count(g.up), 1, "%s: %d upstream requests", s[i].target, us_count(g.up));
    }
    stop_guarded(&g);
}

Test(gwhostile, public_paths_stay_public_and_arrive_normalized)
{
    static const spelling_t s[] = {
        {"/x/../pub/y", "/pub/y"},
        {"/administrator", "/administrator"}, /* a segment boundary, not the admin route */
        {"/%7Euser/a%c3%a9/x%20", "/~user/a%C3%A9/x%20"},
        {"/pub/", "/pub/"},
        {"/pub/x/..", "/pub/"},
        {"/pub?a=1&b=%2F", "/pub?a=1&b=%2F"},
        {"/pub?filter[x]=1&f={a}", "/pub?filter[x]=1&f={a}"}, /* as browsers send it */
        {"http://" PUBLIC_HOST, "/"},
        {"http://" PUBLIC_HOST "?q", "/?q"},
    };
    guarded_t g;
    start_guarded(&g);
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        us_clear(g.up);
        char *r = get_as(&g, s[i].target, 0);
        cr_expect_eq(h_raw_status(r), 200, "%s: %s", s[i].target, r);
        free(r);
        char line[512], want[512];
        upstream_line(g.up, 0, line, sizeof line);
        snprintf(want, sizeof want, "GET %s HTTP/1.1", s[i].forwarded);
        cr_expect_str_eq(line, want, "%s reached the upstream as '%s'", s[i].target, line);
    }
    stop_guarded(&g);
}

Test(gwhostile, unsafe_spellings_are_refused_400_json_and_never_forwarded)
{
    static const char *const bad[] = {
        "/admin%2fx",
        "/admin%2Fx",
        "/admin%5cx",
        "/admin\\x",
        "/admin/x%00",
        "/admin/%zz",
        "/admin/x%",
        "/admin/x%4",
        "/..",
        "/../admin/x",
        "/x/../../admin/x",
        "/%2e%2e/admin/x",
        "/admin/#x",
        "/admin/x#",
        "/admin/\tx",
        "/admin/\x01x",
        "/admin/\x7fx",
        "/admin/\xc3\xa9",
        "/admin/\"x",
        "/admin/<x>",
        "/admin/{x}",
        "/admin/x|y",
        "/admin/x^",
        "/admin/`x",
        "/admin/[x]",
        "/pub?a=#x",
        "/pub?a=\x01",
        "*",
        "admin/x",
        "ftp://" PUBLIC_HOST "/admin/x",
        "http:///admin/x",
        "http://u@" PUBLIC_HOST "/admin/x",
    };
    guarded_t g;
    start_guarded(&g);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        /* with the token: auth must not be what stops these */
        char *r = get_as(&g, bad[i], 1);
        cr_expect_eq(h_raw_status(r), 400, "'%s' was not refused:\n%s", bad[i], r);
        if (h_raw_status(r) == 400)
            assert_json_error(r, bad[i]);
        free(r);
        cr_expect_eq(us_count(g.up), 0, "'%s' reached the upstream", bad[i]);
        us_clear(g.up);
    }
    /* the gateway's own API is on its admin listener only: on the traffic port /_cmesh/
     * is a path like any other, in any spelling routed to the "/" route */
    static const char *const own[] = {"/_cmesh/routes", "//_cmesh/routes"};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
        us_clear(g.up);
        char *r = get_as(&g, own[i], 1);
        cr_expect_eq(h_raw_status(r), 200, "%s: %s", own[i], r);
        cr_expect_null(strstr(h_raw_body(r), "\"routes\""), "%s: the admin API answered: %s",
                       own[i], r);
        free(r);
        cr_expect_eq(us_count(g.up), 1, "%s was not routed to the upstream", own[i]);
    }
    stop_guarded(&g);
}

/* ------------------------------------------------------------------------- */
/* item 6: Connection cannot strip what the gateway relies on                  */

Test(gwhostile, connection_cannot_strip_host)
{
    guarded_t g;
    start_guarded(&g);
    char *r = raw_request(g.gw.port, "GET", "/pub",
                          "Host: " PUBLIC_HOST "\r\nConnection: close, Host\r\n");
    cr_assert_eq(h_raw_status(r), 200, "%s", r);
    free(r);
    char v[256];
    cr_expect_eq(upstream_header(g.up, 0, "Host", v, sizeof v), 1, "Host fields upstream");
    cr_expect_str_eq(v, PUBLIC_HOST);
    stop_guarded(&g);
}

Test(gwhostile, connection_cannot_strip_the_key_of_a_retried_post)
{
    us_scripted_t *up = us_start();
    us_set_reply(up, &(us_reply_t){.status = 0}); /* reads the request, closes: retryable */
    char cfg[1024];
    snprintf(cfg, sizeof cfg,
             "routes:\n"
             "  - name: w\n"
             "    prefix: /w\n"
             "    upstreams: [%s]\n"
             "    health: off\n"
             "    retries: { attempts: 2, backoff: 0ms, budget: 100%% }\n",
             us_url(up));
    h_proc_t gw;
    h_start_gateway(&gw, cfg, NULL, 0, NULL);
    char *r = raw_request(gw.port, "POST", "/w",
                          "Host: " PUBLIC_HOST "\r\nConnection: Idempotency-Key\r\n"
                          "Idempotency-Key: k-1\r\nContent-Type: application/json\r\n"
                          "Content-Length: 2\r\n\r\n{}");
    cr_expect_eq(h_raw_status(r), 502, "%s", r);
    free(r);
    int n = us_count(up);
    cr_expect_eq(n, 2, "the POST with a key was sent %d times", n);
    for (int i = 0; i < n; i++) {
        char v[256];
        cr_expect_eq(upstream_header(up, i, "Idempotency-Key", v, sizeof v), 1,
                     "POST %d was sent without its key: a retry the upstream cannot dedupe", i);
        cr_expect_str_eq(v, "k-1");
    }
    h_stop(&gw);
    us_stop(up);
}

/* ------------------------------------------------------------------------- */
/* item 9: underscore names, client-claimed forwarding fields                  */

Test(gwhostile, underscore_names_and_client_forwarding_claims_stay_behind)
{
    guarded_t g;
    start_guarded(&g);
    char *r = raw_request(g.gw.port, "GET", "/pub",
                          "Host: " PUBLIC_HOST "\r\n"
                          "X_Forwarded_For: 6.6.6.6\r\n"
                          "X_Forwarded_Host: evil.example\r\n"
                          "X_Real_IP: 6.6.6.6\r\n"
                          "Forwarded: for=6.6.6.6;host=evil.example\r\n"
                          "X-Real-IP: 6.6.6.6\r\n"
                          "X-Custom-Dash: kept\r\n");
    cr_assert_eq(h_raw_status(r), 200, "%s", r);
    free(r);
    us_request_t q;
    cr_assert_eq(us_request(g.up, 0, &q), 0);
    cr_expect_null(strstr(q.head, "6.6.6.6"), "a client address claim reached the upstream:\n%s",
                   q.head);
    cr_expect_null(strstr(q.head, "evil.example"), "a client host claim reached the upstream:\n%s",
                   q.head);
    cr_expect_null(strchr(q.head, '_'), "an underscore name reached the upstream:\n%s", q.head);
    char v[256];
    cr_expect_eq(us_head_header(q.head, "X-Real-IP", v, sizeof v), 1);
    cr_expect_str_eq(v, "127.0.0.1");
    cr_expect_eq(us_head_header(q.head, "X-Forwarded-For", v, sizeof v), 1);
    cr_expect_str_eq(v, "127.0.0.1");
    cr_expect_eq(us_head_header(q.head, "X-Forwarded-Host", v, sizeof v), 1);
    cr_expect_str_eq(v, PUBLIC_HOST);
    cr_expect_eq(us_head_header(q.head, "Forwarded", v, sizeof v), 0);
    cr_expect_eq(us_head_header(q.head, "X-Custom-Dash", v, sizeof v), 1);
    us_request_free(&q);
    stop_guarded(&g);
}

/* ------------------------------------------------------------------------- */
/* item 13: absolute-form targets and Host spellings                           */

typedef struct hosted {
    h_proc_t gw;
    us_scripted_t *internal, *public, *other; /* host internal.example, public.example, any */
} hosted_t;

static void start_hosted(hosted_t *h)
{
    h->internal = us_start();
    h->public = us_start();
    h->other = us_start();
    char cfg[2048];
    snprintf(cfg, sizeof cfg,
             "routes:\n"
             "  - name: internal\n"
             "    host: internal.example\n"
             "    prefix: /\n"
             "    upstreams: [%s]\n"
             "    health: off\n"
             "  - name: public\n"
             "    host: " PUBLIC_HOST "\n"
             "    prefix: /\n"
             "    upstreams: [%s]\n"
             "    health: off\n"
             "  - name: other\n"
             "    prefix: /\n"
             "    upstreams: [%s]\n"
             "    health: off\n",
             us_url(h->internal), us_url(h->public), us_url(h->other));
    h_start_gateway(&h->gw, cfg, NULL, 0, NULL);
}

static void stop_hosted(hosted_t *h)
{
    h_stop(&h->gw);
    us_stop(h->internal);
    us_stop(h->public);
    us_stop(h->other);
}

static void clear_hosted(hosted_t *h)
{
    us_clear(h->internal);
    us_clear(h->public);
    us_clear(h->other);
}

Test(gwhostile, absolute_form_is_routed_on_its_authority_and_forwarded_origin_form)
{
    hosted_t h;
    start_hosted(&h);
    char *r =
        raw_request(h.gw.port, "GET", "http://internal.example/x?y=1", "Host: " PUBLIC_HOST "\r\n");
    cr_assert_eq(h_raw_status(r), 200, "%s", r);
    free(r);
    cr_expect_eq(us_count(h.public), 0, "routed on Host instead of the target's authority");
    cr_assert_eq(us_count(h.internal), 1, "the internal route did not get it");
    char line[512], v[256];
    upstream_line(h.internal, 0, line, sizeof line);
    cr_expect_str_eq(line, "GET /x?y=1 HTTP/1.1", "forwarded as '%s'", line);
    cr_expect_eq(upstream_header(h.internal, 0, "Host", v, sizeof v), 1);
    cr_expect_str_eq(v, "internal.example");
    clear_hosted(&h);
    /* and the other way round: the authority wins over the Host field */
    r = raw_request(h.gw.port, "GET", "http://" PUBLIC_HOST ":80/y", "Host: internal.example\r\n");
    cr_assert_eq(h_raw_status(r), 200, "%s", r);
    free(r);
    cr_expect_eq(us_count(h.internal), 0);
    cr_assert_eq(us_count(h.public), 1);
    upstream_line(h.public, 0, line, sizeof line);
    cr_expect_str_eq(line, "GET /y HTTP/1.1");
    cr_expect_eq(upstream_header(h.public, 0, "Host", v, sizeof v), 1);
    cr_expect_str_eq(v, PUBLIC_HOST ":80");
    stop_hosted(&h);
}

Test(gwhostile, host_with_a_trailing_dot_or_spaces_is_the_same_name)
{
    static const char *const spellings[] = {
        "Host: " PUBLIC_HOST ".\r\n",
        "Host: " PUBLIC_HOST ".:8080\r\n",
        "Host:   " PUBLIC_HOST "  \r\n",
        "Host: PUBLIC.Example.\t\r\n",
    };
    hosted_t h;
    start_hosted(&h);
    for (size_t i = 0; i < sizeof spellings / sizeof spellings[0]; i++) {
        clear_hosted(&h);
        char *r = raw_request(h.gw.port, "GET", "/z", spellings[i]);
        cr_expect_eq(h_raw_status(r), 200, "'%s': %s", spellings[i], r);
        free(r);
        cr_expect_eq(us_count(h.other), 0, "'%s' skipped to the catch-all route", spellings[i]);
        cr_expect_eq(us_count(h.public), 1, "'%s' did not reach the public route", spellings[i]);
        if (us_count(h.public) == 1) {
            char v[256];
            upstream_header(h.public, 0, "Host", v, sizeof v);
            cr_expect(strncasecmp(v, PUBLIC_HOST, strlen(PUBLIC_HOST)) == 0 &&
                          (v[strlen(PUBLIC_HOST)] == '\0' || v[strlen(PUBLIC_HOST)] == ':'),
                      "'%s' was forwarded with Host '%s'", spellings[i], v);
        }
    }
    /* a Host that is no name at all is refused, not routed to the catch-all */
    clear_hosted(&h);
    char *r = raw_request(h.gw.port, "GET", "/z", "Host: u@" PUBLIC_HOST "\r\n");
    cr_expect_eq(h_raw_status(r), 400, "%s", r);
    free(r);
    cr_expect_eq(us_count(h.other) + us_count(h.public) + us_count(h.internal), 0);
    stop_hosted(&h);
}
