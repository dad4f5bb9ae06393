/* tests/integration/test_http.c: the HTTP core of a real `cmesh users` process, seen from
 * the wire: size and time limits, refused framing (raw sockets for bytes no client
 * library would send), keep-alive, pipelining, chunked bodies, 100-continue, and the
 * built-in answers every process gives. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#define RECV_MS 5000 /* cap on waiting for an answer or a close; never a timing assertion */

#define POST_HEAD "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
#define USER      "{\"name\":\"Ann\",\"email\":\"ann@example.com\"}" /* 40 bytes */

static const char user_json[] = USER;

/* ------------------------------------------------------------------------- */
/* helpers                                                                    */

static void start_users(h_proc_t *p, const char *const *extra)
{
    const char *a[12] = {0};
    int n = 0;
    for (; extra && extra[n] && n < 10; n++)
        a[n] = extra[n];
    h_start(p, "users", "--db", "{dir}/users.db", a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7],
            a[8], a[9], NULL);
}

static size_t user_count(const h_proc_t *p)
{
    h_resp_t r = h_req(p, "GET", "/users", NULL, NULL);
    cr_assert_eq(r.status, 200, "GET /users: %ld %s", r.status, r.body);
    json_t *j = h_json(&r);
    cr_assert(json_is_array(j), "GET /users is not an array: %s", r.body);
    size_t n = json_array_size(j);
    json_decref(j);
    h_resp_free(&r);
    return n;
}

/* Asserts body is a JSON object with a string "error". */
static void assert_error_json(const char *body)
{
    json_error_t e;
    json_t *j = json_loads(body, 0, &e);
    cr_assert_not_null(j, "error body is not JSON (%s): '%s'", e.text, body);
    cr_assert(json_is_string(json_object_get(j, "error")), "no \"error\" string in %s", body);
    json_decref(j);
}

/* Asserts what every complete answer carries: a Content-Length equal to the body's
 * length (the answer is read to the close, so a wrong one would show) and a generated
 * X-Request-Id of 32 hex digits (none was sent). */
static void assert_framed_with_request_id(const char *resp)
{
    char v[80];
    cr_assert_eq(h_raw_header(resp, "Content-Length", v, sizeof v), 0, "no Content-Length: %s",
                 resp);
    cr_assert_eq(strtoul(v, NULL, 10), strlen(h_raw_body(resp)),
                 "Content-Length %s but the body has %zu bytes: '%s'", v, strlen(h_raw_body(resp)),
                 resp);
    cr_assert_eq(h_raw_header(resp, "X-Request-Id", v, sizeof v), 0, "no X-Request-Id: %s", resp);
    cr_assert_eq(strlen(v), 32, "X-Request-Id '%s'", v);
    cr_assert_eq(strspn(v, "0123456789abcdef"), 32, "X-Request-Id '%s' is not hex", v);
}

/* Sends bytes on a fresh connection, reads until the server closes (bounded), and
 * asserts the answer is `status` with a JSON error, the connection is closed and no
 * user was created. */
static void expect_refused_and_closed(const h_proc_t *p, const char *bytes, size_t len, int status)
{
    size_t before = user_count(p);
    int fd = h_connect(p->port);
    h_send(fd, bytes, len);
    size_t rlen;
    char *resp = h_recv_all(fd, RECV_MS, &rlen);
    int closed = h_peer_closed(fd, 100);
    close(fd);
    cr_assert_eq(h_raw_status(resp), status, "want %d, got: '%s'", status, resp);
    char conn[32];
    cr_assert_eq(h_raw_header(resp, "Connection", conn, sizeof conn), 0, "no Connection: %s", resp);
    cr_assert_str_eq(conn, "close");
    assert_error_json(h_raw_body(resp));
    assert_framed_with_request_id(resp);
    cr_assert(closed, "connection still open after %d", status);
    free(resp);
    cr_assert_eq(user_count(p), before, "a refused request created a user");
}

static void refused_on_fresh_server(const char *bytes, size_t len, int status)
{
    h_proc_t p;
    start_users(&p, NULL);
    expect_refused_and_closed(&p, bytes, len, status);
    cr_assert_eq(h_stop(&p), 0);
}

#define REFUSED(lit, status) refused_on_fresh_server(lit, sizeof(lit) - 1, status)

/* Sends bytes on a fresh keep-alive connection and returns the first answer (caller frees). */
static char *exchange(int port, const char *bytes, size_t len)
{
    int fd = h_connect(port);
    h_send(fd, bytes, len);
    size_t rlen;
    char *resp = h_recv_responses(fd, 1, RECV_MS, &rlen);
    close(fd);
    return resp;
}

/* Request head "POST /users" with one extra header of `fill` bytes of value. */
static char *post_with_header(size_t fill)
{
    char *v = malloc(fill + 1);
    memset(v, 'a', fill);
    v[fill] = '\0';
    char *out;
    cr_assert(asprintf(&out,
                       "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "X-Fill: %s\r\nContent-Length: %zu\r\n\r\n%s",
                       v, strlen(user_json), user_json) > 0);
    free(v);
    return out;
}

/* "GET /users?q=aaaa... HTTP/1.1" whose request line is line_len bytes. */
static char *get_with_line(size_t line_len)
{
    const char *pre = "GET /users?q=", *post = " HTTP/1.1";
    size_t fill = line_len - strlen(pre) - strlen(post);
    char *v = malloc(fill + 1);
    memset(v, 'a', fill);
    v[fill] = '\0';
    char *out;
    cr_assert(asprintf(&out, "%s%s%s\r\nHost: x\r\n\r\n", pre, v, post) > 0);
    free(v);
    return out;
}

/* ------------------------------------------------------------------------- */
/* limits                                                                     */

Test(http, header_block_over_max_header_is_431_and_closes)
{
    h_proc_t p;
    start_users(&p, (const char *[]){"--max-header", "1k", NULL});
    char *req = post_with_header(1200);
    expect_refused_and_closed(&p, req, strlen(req), 431);
    free(req);
    cr_assert_eq(h_stop(&p), 0);
}

Test(http, header_block_over_default_16k_is_431_and_under_it_is_served)
{
    h_proc_t p;
    start_users(&p, NULL);
    char *ok = post_with_header(15 * 1024);
    char *resp = exchange(p.port, ok, strlen(ok));
    cr_assert_eq(h_raw_status(resp), 201, "15 KiB of headers: '%s'", resp);
    free(resp);
    free(ok);
    char *big = post_with_header(17 * 1024);
    expect_refused_and_closed(&p, big, strlen(big), 431);
    free(big);
    cr_assert_eq(h_stop(&p), 0);
}

Test(http, request_line_over_max_uri_is_414_and_closes)
{
    h_proc_t p;
    start_users(&p, (const char *[]){"--max-uri", "1k", NULL});
    char *req = get_with_line(1100);
    expect_refused_and_closed(&p, req, strlen(req), 414);
    free(req);
    cr_assert_eq(h_stop(&p), 0);
}

Test(http, request_line_over_default_8k_is_414)
{
    h_proc_t p;
    start_users(&p, NULL);
    char *req = get_with_line(8 * 1024 + 10);
    expect_refused_and_closed(&p, req, strlen(req), 414);
    free(req);
    cr_assert_eq(h_stop(&p), 0);
}

/* A valid user JSON padded with spaces to exactly n bytes. */
static char *padded_user(size_t n)
{
    char *b = malloc(n + 1);
    memset(b, ' ', n);
    memcpy(b, user_json, strlen(user_json));
    b[n] = '\0';
    return b;
}

static void body_over_limit_content_length(const char *max_flag, size_t body_len)
{
    h_proc_t p;
    start_users(&p, max_flag ? (const char *[]){"--max-body", max_flag, NULL} : NULL);
    char *body = padded_user(body_len);
    char *req;
    cr_assert(asprintf(&req,
                       "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: %zu\r\n\r\n%s",
                       body_len, body) > 0);
    expect_refused_and_closed(&p, req, strlen(req), 413);
    free(req);
    free(body);
    cr_assert_eq(h_stop(&p), 0);
}

static void body_over_limit_chunked(const char *max_flag, size_t body_len)
{
    h_proc_t p;
    start_users(&p, max_flag ? (const char *[]){"--max-body", max_flag, NULL} : NULL);
    char *body = padded_user(body_len);
    /* two chunks, each under the limit alone, together over it */
    size_t half = body_len / 2;
    char *req;
    cr_assert(asprintf(&req,
                       "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n%zx\r\n%.*s\r\n%zx\r\n%s\r\n0\r\n\r\n",
                       half, (int)half, body, body_len - half, body + half) > 0);
    expect_refused_and_closed(&p, req, strlen(req), 413);
    free(req);
    free(body);
    cr_assert_eq(h_stop(&p), 0);
}

Test(http, body_over_max_body_by_content_length_is_413)
{
    body_over_limit_content_length("1k", 1025);
}

Test(http, body_over_max_body_chunked_is_413)
{
    body_over_limit_chunked("1k", 1500);
}

Test(http, body_over_default_1m_by_content_length_is_413)
{
    body_over_limit_content_length(NULL, 1024 * 1024 + 1);
}

Test(http, body_over_default_1m_chunked_is_413)
{
    body_over_limit_chunked(NULL, 1024 * 1024 + 100);
}

Test(http, body_at_max_body_is_accepted)
{
    h_proc_t p;
    start_users(&p, (const char *[]){"--max-body", "1k", NULL});
    char *body = padded_user(1024);
    h_resp_t r = h_req(&p, "POST", "/users", body, NULL);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    h_resp_free(&r);
    free(body);
    cr_assert_eq(h_stop(&p), 0);
}

/* n header lines in total, Host included. */
static char *get_with_headers(int n)
{
    size_t cap = 64 + (size_t)n * 32;
    char *out = malloc(cap);
    size_t len = (size_t)snprintf(out, cap, "GET /users HTTP/1.1\r\nHost: x\r\n");
    for (int i = 1; i < n; i++)
        len += (size_t)snprintf(out + len, cap - len, "X-H%d: v\r\n", i);
    snprintf(out + len, cap - len, "\r\n");
    return out;
}

Test(http, more_than_100_headers_is_431_and_100_are_served)
{
    h_proc_t p;
    start_users(&p, NULL);
    char *ok = get_with_headers(100);
    char *resp = exchange(p.port, ok, strlen(ok));
    cr_assert_eq(h_raw_status(resp), 200, "100 headers: '%s'", resp);
    free(resp);
    free(ok);
    char *req = get_with_headers(101);
    expect_refused_and_closed(&p, req, strlen(req), 431);
    free(req);
    cr_assert_eq(h_stop(&p), 0);
}

static void stopped_midway_gets_408(const char *timeout_flag)
{
    h_proc_t p;
    start_users(&p,
                timeout_flag ? (const char *[]){"--request-timeout", timeout_flag, NULL} : NULL);
    size_t before = user_count(&p);
    int fd = h_connect(p.port);
    static const char part[] = POST_HEAD "Content-Length: 40\r\n\r\n{\"name\":";
    h_send(fd, part, sizeof part - 1);
    size_t len;
    /* the wait is bounded by the timeout under test plus a margin, not measured */
    char *resp = h_recv_all(fd, timeout_flag ? RECV_MS : 15000, &len);
    cr_assert_eq(h_raw_status(resp), 408, "got '%s'", resp);
    assert_error_json(h_raw_body(resp));
    assert_framed_with_request_id(resp);
    cr_assert(h_peer_closed(fd, 100), "connection open after 408");
    free(resp);
    close(fd);
    cr_assert_eq(user_count(&p), before);
    cr_assert_eq(h_stop(&p), 0);
}

Test(http, request_stopped_midway_gets_408_then_close)
{
    stopped_midway_gets_408("1s");
}

Test(http, request_stopped_midway_gets_408_at_default_timeout, .timeout = 30)
{
    stopped_midway_gets_408(NULL);
}

Test(http, idle_keepalive_connection_is_closed_after_idle_timeout)
{
    h_proc_t p;
    start_users(&p, (const char *[]){"--idle-timeout", "1s", NULL});
    int fd = h_connect(p.port);
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    h_send(fd, req, sizeof req - 1);
    size_t len;
    char *resp = h_recv_responses(fd, 1, RECV_MS, &len);
    cr_assert_eq(h_raw_status(resp), 200, "got '%s'", resp);
    free(resp);
    cr_assert(h_peer_closed(fd, RECV_MS), "idle connection still open");
    close(fd);
    cr_assert_eq(h_stop(&p), 0);
}

Test(http, connection_over_max_connections_gets_503_and_close)
{
    h_proc_t p;
    start_users(&p, (const char *[]){"--max-connections", "2", NULL});
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    int fds[2];
    for (int i = 0; i < 2; i++) {
        fds[i] = h_connect(p.port);
        h_send(fds[i], req, sizeof req - 1);
        size_t len;
        char *resp = h_recv_responses(fds[i], 1, RECV_MS, &len);
        cr_assert_eq(h_raw_status(resp), 200, "connection %d: '%s'", i + 1, resp);
        free(resp);
    }
    /* the third sends nothing, so the server's close cannot turn into a reset */
    int fd = h_connect(p.port);
    size_t len;
    char *resp = h_recv_all(fd, RECV_MS, &len);
    cr_assert_eq(h_raw_status(resp), 503, "third connection: '%s'", resp);
    assert_error_json(h_raw_body(resp));
    assert_framed_with_request_id(resp);
    cr_assert(h_peer_closed(fd, 100), "third connection still open");
    free(resp);
    close(fd);
    /* a real client reads the whole answer too */
    h_resp_t r = h_req(&p, "GET", "/users", NULL, NULL);
    cr_assert_eq(r.status, 503, "libcurl saw %ld (0: transfer failed) '%s'", r.status, r.body);
    assert_error_json(r.body);
    h_resp_free(&r);
    /* the first two are still served */
    h_send(fds[0], req, sizeof req - 1);
    resp = h_recv_responses(fds[0], 1, RECV_MS, &len);
    cr_assert_eq(h_raw_status(resp), 200, "first connection after the 503: '%s'", resp);
    free(resp);
    close(fds[0]);
    close(fds[1]);
    cr_assert_eq(h_stop(&p), 0);
}

/* ------------------------------------------------------------------------- */
/* refused framing: 400, close, nothing created                               */

Test(http, content_length_then_transfer_encoding_is_400)
{
    REFUSED(POST_HEAD "Content-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "28\r\n" USER "\r\n0\r\n\r\n",
            400);
}

Test(http, transfer_encoding_then_content_length_is_400)
{
    REFUSED(POST_HEAD "Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n"
                      "28\r\n" USER "\r\n0\r\n\r\n",
            400);
}

Test(http, two_different_content_lengths_are_400)
{
    REFUSED(POST_HEAD "Content-Length: 40\r\nContent-Length: 41\r\n\r\n" USER " ", 400);
}

Test(http, transfer_encoding_gzip_is_400)
{
    REFUSED(POST_HEAD "Transfer-Encoding: gzip\r\n\r\n" USER, 400);
}

Test(http, transfer_encoding_chunked_then_identity_is_400)
{
    REFUSED(POST_HEAD "Transfer-Encoding: chunked, identity\r\n\r\n28\r\n" USER "\r\n0\r\n\r\n",
            400);
}

Test(http, transfer_encoding_xchunked_is_400)
{
    REFUSED(POST_HEAD "Transfer-Encoding: xchunked\r\n\r\n28\r\n" USER "\r\n0\r\n\r\n", 400);
}

Test(http, duplicated_transfer_encoding_header_is_400)
{
    REFUSED(POST_HEAD "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "28\r\n" USER "\r\n0\r\n\r\n",
            400);
}

Test(http, invalid_chunk_size_is_400)
{
    REFUSED(POST_HEAD "Transfer-Encoding: chunked\r\n\r\nzz\r\n" USER "\r\n0\r\n\r\n", 400);
}

Test(http, chunk_size_overflow_is_400)
{
    /* 2^64 + 0x28: wraps to 40 in a parser that does not check */
    REFUSED(POST_HEAD "Transfer-Encoding: chunked\r\n\r\n10000000000000028\r\n" USER
                      "\r\n0\r\n\r\n",
            400);
}

Test(http, whitespace_before_colon_is_400)
{
    REFUSED(POST_HEAD "Content-Length : 40\r\n\r\n" USER, 400);
}

Test(http, obs_fold_header_line_is_400)
{
    REFUSED(POST_HEAD "X-Folded: a\r\n b\r\nContent-Length: 40\r\n\r\n" USER, 400);
}

Test(http, bare_lf_line_endings_are_400)
{
    REFUSED("POST /users HTTP/1.1\nHost: x\nContent-Type: application/json\n"
            "Content-Length: 40\n\n" USER,
            400);
}

Test(http, nul_byte_in_header_is_400)
{
    REFUSED(POST_HEAD "X-Nul: a\0b\r\nContent-Length: 40\r\n\r\n" USER, 400);
}

Test(http, cr_inside_header_value_is_400)
{
    REFUSED(POST_HEAD "X-Cr: a\rb\r\nContent-Length: 40\r\n\r\n" USER, 400);
}

/* ------------------------------------------------------------------------- */
/* behaviour                                                                  */

Test(http, keepalive_serves_several_requests_on_one_socket)
{
    h_proc_t p;
    start_users(&p, NULL);
    int fd = h_connect(p.port);
    static const char *const paths[] = {"/healthz", "/users", "/readyz", "/users/1"};
    static const int want[] = {200, 200, 200, 404};
    for (int i = 0; i < 4; i++) {
        char req[128];
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", paths[i]);
        h_send(fd, req, strlen(req));
        size_t len;
        char *resp = h_recv_responses(fd, 1, RECV_MS, &len);
        cr_assert_eq(h_raw_status(resp), want[i], "request %d (%s): '%s'", i + 1, paths[i], resp);
        char conn[32];
        cr_assert(h_raw_header(resp, "Connection", conn, sizeof conn) != 0 ||
                      strcmp(conn, "close") != 0,
                  "keep-alive answer says close: '%s'", resp);
        free(resp);
        cr_assert_not(h_peer_closed(fd, 0), "closed after request %d", i + 1);
    }
    close(fd);
    cr_assert_eq(h_stop(&p), 0);
}

Test(http, pipelined_requests_are_answered_in_order)
{
    h_proc_t p;
    start_users(&p, NULL);
    static const char reqs[] =
        "GET /users HTTP/1.1\r\nHost: x\r\n\r\n" POST_HEAD "Content-Length: 40\r\n\r\n" USER
        "GET /users HTTP/1.1\r\nHost: x\r\n\r\n";
    int fd = h_connect(p.port);
    h_send(fd, reqs, sizeof reqs - 1); /* one write */
    size_t len;
    char *all = h_recv_responses(fd, 3, RECV_MS, &len);
    const char *r1 = all, *r2 = h_raw_next(r1), *r3 = h_raw_next(r2);
    cr_assert_not_null(r3, "fewer than 3 responses: '%s'", all);
    cr_assert_eq(h_raw_status(r1), 200);
    cr_assert_eq(strncmp(h_raw_body(r1), "[]", 2), 0, "first GET saw a user: '%s'", r1);
    cr_assert_eq(h_raw_status(r2), 201, "second: '%s'", r2);
    cr_assert_eq(h_raw_status(r3), 200);
    cr_assert_not_null(strstr(h_raw_body(r3), "ann@example.com"), "third GET: '%s'", r3);
    free(all);
    close(fd);
    cr_assert_eq(h_stop(&p), 0);
}

Test(http, chunked_request_body_creates_user)
{
    h_proc_t p;
    start_users(&p, NULL);
    static const char req[] = POST_HEAD "Transfer-Encoding: chunked\r\n\r\n"
                                        "a\r\n{\"name\":\"A\r\n"
                                        "1e\r\nnn\",\"email\":\"ann@example.com\"}\r\n"
                                        "0\r\n\r\n";
    int fd = h_connect(p.port);
    h_send(fd, req, sizeof req - 1);
    size_t len;
    char *resp = h_recv_responses(fd, 1, RECV_MS, &len);
    cr_assert_eq(h_raw_status(resp), 201, "got '%s'", resp);
    free(resp);
    close(fd);
    h_resp_t r = h_req(&p, "GET", "/users/1", NULL, NULL);
    cr_assert_eq(r.status, 200);
    json_t *j = h_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "name")), "Ann");
    json_decref(j);
    h_resp_free(&r);
    cr_assert_eq(h_stop(&p), 0);
}

Test(http, expect_100_continue_gets_100_before_the_body_is_sent)
{
    h_proc_t p;
    start_users(&p, NULL);
    static const char head[] = POST_HEAD "Expect: 100-continue\r\nContent-Length: 40\r\n\r\n";
    int fd = h_connect(p.port);
    h_send(fd, head, sizeof head - 1);
    size_t len;
    char *interim = h_recv_responses(fd, 1, RECV_MS, &len);
    cr_assert_eq(strncmp(interim, "HTTP/1.1 100 Continue\r\n", 23), 0, "got '%s'", interim);
    free(interim);
    h_send(fd, USER, 40);
    char *final = h_recv_responses(fd, 1, RECV_MS, &len);
    cr_assert_eq(h_raw_status(final), 201, "got '%s'", final);
    free(final);
    close(fd);
    cr_assert_eq(user_count(&p), 1);
    cr_assert_eq(h_stop(&p), 0);
}

Test(http, expect_100_continue_with_body_over_max_body_gets_413_not_100)
{
    h_proc_t p;
    start_users(&p, (const char *[]){"--max-body", "1k", NULL});
    /* the client waits for 100 before sending: the head alone must be refused */
    static const char head[] = POST_HEAD "Expect: 100-continue\r\nContent-Length: 5000\r\n\r\n";
    int fd = h_connect(p.port);
    h_send(fd, head, sizeof head - 1);
    size_t len;
    char *resp = h_recv_all(fd, RECV_MS, &len);
    cr_assert_eq(h_raw_status(resp), 413, "got '%s'", resp);
    cr_assert_null(strstr(resp, "100 Continue"), "sent 100 for a body it refuses: '%s'", resp);
    assert_error_json(h_raw_body(resp));
    cr_assert(h_peer_closed(fd, 100), "connection open after 413");
    free(resp);
    close(fd);
    cr_assert_eq(user_count(&p), 0);
    cr_assert_eq(h_stop(&p), 0);
}

Test(http, expect_other_than_100_continue_is_417)
{
    REFUSED(POST_HEAD "Expect: something-else\r\nContent-Length: 40\r\n\r\n" USER, 417);
}

Test(http, head_has_content_length_and_no_body)
{
    h_proc_t p;
    start_users(&p, NULL);
    h_resp_t c = h_req(&p, "POST", "/users", USER, NULL);
    cr_assert_eq(c.status, 201);
    h_resp_free(&c);
    h_resp_t g = h_req(&p, "GET", "/users/1", NULL, NULL);
    cr_assert_eq(g.status, 200);
    static const char req[] = "HEAD /users/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    size_t len;
    char *resp = h_raw(p.port, req, sizeof req - 1, RECV_MS, &len);
    cr_assert_eq(h_raw_status(resp), 200, "got '%s'", resp);
    char cl[32];
    cr_assert_eq(h_raw_header(resp, "Content-Length", cl, sizeof cl), 0, "no Content-Length");
    cr_assert_eq(strtoul(cl, NULL, 10), g.body_len, "HEAD length %s, GET body %zu", cl, g.body_len);
    cr_assert_str_eq(h_raw_body(resp), "", "HEAD answer has a body");
    free(resp);
    h_resp_free(&g);
    cr_assert_eq(h_stop(&p), 0);
}

Test(http, connection_close_is_answered_with_close_and_socket_closes)
{
    h_proc_t p;
    start_users(&p, NULL);
    static const char req[] = "GET /users HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int fd = h_connect(p.port);
    h_send(fd, req, sizeof req - 1);
    size_t len;
    char *resp = h_recv_responses(fd, 1, RECV_MS, &len);
    cr_assert_eq(h_raw_status(resp), 200, "got '%s'", resp);
    char conn[32];
    cr_assert_eq(h_raw_header(resp, "Connection", conn, sizeof conn), 0);
    cr_assert_str_eq(conn, "close");
    cr_assert(h_peer_closed(fd, RECV_MS), "socket still open");
    free(resp);
    close(fd);
    cr_assert_eq(h_stop(&p), 0);
}

Test(http, http10_request_without_keepalive_closes_after_response)
{
    h_proc_t p;
    start_users(&p, NULL);
    static const char req[] = "GET /healthz HTTP/1.0\r\n\r\n";
    int fd = h_connect(p.port);
    h_send(fd, req, sizeof req - 1);
    size_t len;
    char *resp = h_recv_responses(fd, 1, RECV_MS, &len);
    cr_assert_eq(h_raw_status(resp), 200, "got '%s'", resp);
    cr_assert_str_eq(h_raw_body(resp), "{\"status\":\"ok\"}");
    cr_assert(h_peer_closed(fd, RECV_MS), "socket still open");
    free(resp);
    close(fd);
    cr_assert_eq(h_stop(&p), 0);
}

Test(http, unknown_path_is_404_json)
{
    h_proc_t p;
    start_users(&p, NULL);
    h_resp_t r = h_req(&p, "GET", "/nope/nothing", NULL, NULL);
    cr_assert_eq(r.status, 404);
    assert_error_json(r.body);
    h_resp_free(&r);
    cr_assert_eq(h_stop(&p), 0);
}

Test(http, wrong_method_is_405_with_allow)
{
    h_proc_t p;
    start_users(&p, NULL);
    h_resp_t r = h_req(&p, "PATCH", "/users", NULL, NULL);
    cr_assert_eq(r.status, 405);
    assert_error_json(r.body);
    char allow[64];
    cr_assert_eq(h_header(&r, "Allow", allow, sizeof allow), 0, "no Allow: %s", r.headers);
    cr_assert_not_null(strstr(allow, "GET"), "Allow: %s", allow);
    cr_assert_not_null(strstr(allow, "POST"), "Allow: %s", allow);
    h_resp_free(&r);
    cr_assert_eq(h_stop(&p), 0);
}

Test(http, request_id_is_echoed_when_sent_and_generated_when_not)
{
    h_proc_t p;
    start_users(&p, NULL);
    h_resp_t r = h_req(&p, "GET", "/healthz", NULL,
                       (const char *const[]){"X-Request-Id: trace-42.a_b", NULL});
    char id[80];
    cr_assert_eq(h_header(&r, "X-Request-Id", id, sizeof id), 0);
    cr_assert_str_eq(id, "trace-42.a_b");
    h_resp_free(&r);
    char prev[80] = "";
    for (int i = 0; i < 2; i++) {
        r = h_req(&p, "GET", "/users/999", NULL, NULL); /* errors carry it too */
        cr_assert_eq(h_header(&r, "X-Request-Id", id, sizeof id), 0, "no id: %s", r.headers);
        cr_assert_eq(strlen(id), 32, "generated id '%s'", id);
        cr_assert_eq(strspn(id, "0123456789abcdef"), 32, "generated id '%s' not hex", id);
        cr_assert_str_neq(id, prev, "two requests got the same id");
        snprintf(prev, sizeof prev, "%s", id);
        h_resp_free(&r);
    }
    cr_assert_eq(h_stop(&p), 0);
}

Test(http, healthz_and_readyz_answer_their_json)
{
    h_proc_t p;
    start_users(&p, NULL);
    h_resp_t r = h_req(&p, "GET", "/healthz", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    char ct[64];
    cr_assert_eq(h_header(&r, "Content-Type", ct, sizeof ct), 0);
    cr_assert_str_eq(ct, "application/json");
    h_resp_free(&r);
    r = h_req(&p, "GET", "/readyz", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"status\":\"ready\"}");
    h_resp_free(&r);
    cr_assert_eq(h_stop(&p), 0);
}
