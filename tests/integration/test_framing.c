/* tests/integration/test_framing.c: request framing from the security review, on the wire
 * (raw sockets), against a real `cmesh users` and a real `cmesh gateway` in front of one:
 * chunked framing is exact (every deviation is 400 and close, and nothing hidden behind it
 * runs), an HTTP/1.0 request with Transfer-Encoding closes the connection after its answer,
 * nothing pipelined behind a request that ends the connection runs, and field values are
 * trimmed of OWS (a Bearer token, an Idempotency-Key). */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#define RECV_MS  5000 /* cap on waiting for an answer or a close; never a timing assertion */
#define ISSUER   "https://login.test"
#define AUDIENCE "users-api"

#define USER_FMT "{\"name\":\"Ann\",\"email\":\"%s@example.com\"}"

/* ------------------------------------------------------------------------- */
/* helpers                                                                    */

static void start_users(h_proc_t *p)
{
    h_start(p, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
}

/* A gateway with one public route /users to users (health checks off). */
static void start_gateway(h_proc_t *gw, const h_proc_t *users)
{
    char route[128];
    snprintf(route, sizeof route, "/users=%s", users->url);
    h_start(gw, "gateway", "--route", route, "--workers", "1", "--access-log", "off", NULL);
}

/* Creates a user through libcurl; returns its id. */
static long create_user(const h_proc_t *p, const char *local)
{
    char body[128];
    snprintf(body, sizeof body, USER_FMT, local);
    h_resp_t r = h_req(p, "POST", "/users", body, NULL);
    cr_assert_eq(r.status, 201, "POST /users: %ld %s", r.status, r.body);
    json_t *j = h_json(&r);
    long id = (long)json_integer_value(json_object_get(j, "id"));
    cr_assert_gt(id, 0, "no id in %s", r.body);
    json_decref(j);
    h_resp_free(&r);
    return id;
}

static long get_status(const h_proc_t *p, const char *path)
{
    h_resp_t r = h_req(p, "GET", path, NULL, NULL);
    long s = r.status;
    h_resp_free(&r);
    return s;
}

static size_t user_count(const h_proc_t *p)
{
    h_resp_t r = h_req(p, "GET", "/users?limit=100", NULL, NULL);
    cr_assert_eq(r.status, 200, "GET /users: %ld %s", r.status, r.body);
    json_t *j = h_json(&r);
    size_t n = json_array_size(j);
    json_decref(j);
    h_resp_free(&r);
    return n;
}

static void assert_error_json(const char *body)
{
    json_error_t e;
    json_t *j = json_loads(body, 0, &e);
    cr_assert_not_null(j, "error body is not JSON (%s): '%s'", e.text, body);
    cr_assert(json_is_string(json_object_get(j, "error")), "no \"error\" string in %s", body);
    json_decref(j);
}

/* Sends bytes on a fresh connection and reads until the server closes it (bounded);
 * asserts it did close. Caller frees. */
static char *send_to_close(int port, const char *bytes, size_t len)
{
    int fd = h_connect(port);
    h_send(fd, bytes, len);
    size_t rlen;
    char *resp = h_recv_responses(fd, 1, RECV_MS, &rlen);
    cr_assert(h_peer_closed(fd, RECV_MS), "the connection stayed open after: %s", resp);
    close(fd);
    return resp;
}

/* A hidden request: what a reader that frames the body differently would run next. */
static int hidden_delete(char *out, size_t cap, long id)
{
    return snprintf(out, cap, "DELETE /users/%ld HTTP/1.1\r\nHost: x\r\n\r\n", id);
}

/* ------------------------------------------------------------------------- */
/* chunked framing (review item 2)                                            */

/* A POST /users whose chunked body breaks the framing in one way each (the body, 40
 * bytes, is a valid user), followed on the connection by a hidden DELETE. A lenient
 * reader (http-parser built non-strict) read each as a whole POST and then ran the
 * DELETE. */
static const struct {
    const char *what;
    const char *before; /* between the head and the 40 data bytes */
    const char *after;  /* after the data bytes */
} bad_chunks[] = {
    {"two bytes other than CRLF after chunk data", "28\r\n", "XX0\r\n\r\n"},
    {"bare LF after chunk data", "28\r\n", "\n0\r\n\r\n"},
    {"a byte other than LF after the CR of a size line", "28\rX", "\r\n0\r\n\r\n"},
    {"bare LF ending a size line", "28\n", "\r\n0\r\n\r\n"},
    {"bare LF in a chunk extension", "28;a=b\n", "\r\n0\r\n\r\n"},
    {"bare LF in a trailer", "28\r\n", "\r\n0\r\nX-T: 1\n\r\n"},
    {"bare LF ending the trailer section", "28\r\n", "\r\n0\r\n\n"},
    {"garbage after the size", "28 zz\r\n", "\r\n0\r\n\r\n"},
    {"whitespace after the size", "28 \r\n", "\r\n0\r\n\r\n"},
};

static void expect_chunk_deviations_refused(const h_proc_t *entry, const h_proc_t *users)
{
    long id = create_user(users, "victim");
    size_t before = user_count(users);
    for (size_t i = 0; i < sizeof bad_chunks / sizeof bad_chunks[0]; i++) {
        char body[128], req[1024];
        snprintf(body, sizeof body, USER_FMT, "smg");
        cr_assert_eq(strlen(body), 0x28, "the chunk sizes above say 0x28");
        int n = snprintf(req, sizeof req,
                         "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n%s%s%s",
                         bad_chunks[i].before, body, bad_chunks[i].after);
        n += hidden_delete(req + n, sizeof req - (size_t)n, id);
        char *resp = send_to_close(entry->port, req, (size_t)n);
        cr_assert_eq(h_raw_status(resp), 400, "%s: %s", bad_chunks[i].what, resp);
        assert_error_json(h_raw_body(resp));
        cr_assert_null(h_raw_next(resp), "%s: a second answer: %s", bad_chunks[i].what, resp);
        free(resp);
        char path[64];
        snprintf(path, sizeof path, "/users/%ld", id);
        cr_assert_eq(get_status(users, path), 200, "%s: the hidden DELETE ran", bad_chunks[i].what);
        cr_assert_eq(user_count(users), before, "%s: the POST stored a user", bad_chunks[i].what);
    }
}

Test(framing, chunked_framing_deviations_are_400_and_close_and_nothing_behind_them_runs)
{
    h_proc_t users;
    start_users(&users);
    expect_chunk_deviations_refused(&users, &users);
    h_stop(&users);
}

Test(framing, chunked_framing_deviations_through_the_gateway_reach_no_upstream)
{
    h_proc_t users, gw;
    start_users(&users);
    start_gateway(&gw, &users);
    expect_chunk_deviations_refused(&gw, &users);
    h_stop(&gw);
    h_stop(&users);
}

/* The control: exact framing, with an extension and a trailer, is accepted. */
Test(framing, exact_chunked_framing_with_extension_and_trailer_is_accepted)
{
    h_proc_t users;
    start_users(&users);
    char body[128], req[1024];
    snprintf(body, sizeof body, USER_FMT, "exact");
    int n = snprintf(req, sizeof req,
                     "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     "5;ext=\"q\"\r\n%.5s\r\n%zx\r\n%s\r\n0\r\nX-Trailer: t\r\n\r\n",
                     body, strlen(body) - 5, body + 5);
    char *resp = send_to_close(users.port, req, (size_t)n);
    cr_assert_eq(h_raw_status(resp), 201, "%s", resp);
    free(resp);
    h_stop(&users);
}

/* RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding is served, then the connection
 * closes, whatever Connection says; what follows it is not read. */
static void expect_http10_chunked_closes(const h_proc_t *entry, const h_proc_t *users)
{
    size_t before = user_count(users);
    char body[128], req[1024];
    snprintf(body, sizeof body, USER_FMT, "tenchunked");
    int n = snprintf(req, sizeof req,
                     "POST /users HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n"
                     "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "%zx\r\n%s\r\n0\r\n\r\n"
                     "GET /users HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                     strlen(body), body);
    char *resp = send_to_close(entry->port, req, (size_t)n);
    cr_assert_eq(h_raw_status(resp), 201, "%s", resp);
    char v[64];
    cr_assert_eq(h_raw_header(resp, "Connection", v, sizeof v), 0, "no Connection: %s", resp);
    cr_assert_str_eq(v, "close");
    cr_assert_null(h_raw_next(resp), "the request after it was answered: %s", resp);
    free(resp);
    cr_assert_eq(user_count(users), before + 1);
}

Test(framing, http10_with_transfer_encoding_closes_after_its_answer)
{
    h_proc_t users;
    start_users(&users);
    expect_http10_chunked_closes(&users, &users);
    h_stop(&users);
}

Test(framing, http10_with_transfer_encoding_closes_after_its_answer_through_the_gateway)
{
    h_proc_t users, gw;
    start_users(&users);
    start_gateway(&gw, &users);
    expect_http10_chunked_closes(&gw, &users);
    h_stop(&gw);
    h_stop(&users);
}

/* ------------------------------------------------------------------------- */
/* nothing after a close runs (review item 4)                                 */

/* A write that ends the connection, then a DELETE pipelined behind it on the same
 * connection: the write's answer waits for its commit, and the DELETE must never run
 * (RFC 9112 9.6). head_line: the write's request line and the header that ends the
 * connection. */
static void expect_nothing_after_close(const h_proc_t *entry, const h_proc_t *users,
                                       const char *head_line, const char *local)
{
    long id = create_user(users, local);
    char body[128], req[1024];
    snprintf(body, sizeof body, USER_FMT, "closer");
    int n = snprintf(req, sizeof req,
                     "%sHost: x\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     head_line, strlen(body), body);
    n += hidden_delete(req + n, sizeof req - (size_t)n, id);
    char *resp = send_to_close(entry->port, req, (size_t)n);
    cr_assert_eq(h_raw_status(resp), 201, "%s", resp);
    char v[64];
    cr_assert_eq(h_raw_header(resp, "Connection", v, sizeof v), 0, "no Connection: %s", resp);
    cr_assert_str_eq(v, "close");
    cr_assert_null(h_raw_next(resp), "the DELETE was answered: %s", resp);
    free(resp);
    char path[64];
    snprintf(path, sizeof path, "/users/%ld", id);
    cr_assert_eq(get_status(users, path), 200, "the DELETE behind '%s' ran", head_line);
}

Test(framing, nothing_pipelined_behind_connection_close_runs)
{
    h_proc_t users;
    start_users(&users);
    expect_nothing_after_close(&users, &users, "POST /users HTTP/1.1\r\nConnection: close\r\n",
                               "keep1");
    h_stop(&users);
}

Test(framing, nothing_pipelined_behind_an_http10_request_without_keep_alive_runs)
{
    h_proc_t users;
    start_users(&users);
    expect_nothing_after_close(&users, &users, "POST /users HTTP/1.0\r\n", "keep2");
    h_stop(&users);
}

Test(framing, nothing_pipelined_behind_connection_close_runs_through_the_gateway)
{
    h_proc_t users, gw;
    start_users(&users);
    start_gateway(&gw, &users);
    expect_nothing_after_close(&gw, &users, "POST /users HTTP/1.1\r\nConnection: close\r\n",
                               "keep3");
    h_stop(&gw);
    h_stop(&users);
}

/* ------------------------------------------------------------------------- */
/* OWS around field values (review item 7)                                    */

/* POSTs a user with this exact Idempotency-Key line (raw bytes); returns the answer's id. */
static long post_with_key_line(const h_proc_t *p, const char *key_line, int *replayed)
{
    char body[128], req[1024];
    snprintf(body, sizeof body, USER_FMT, "idem");
    int n = snprintf(req, sizeof req,
                     "POST /users HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     key_line, strlen(body), body);
    char *resp = send_to_close(p->port, req, (size_t)n);
    cr_assert_eq(h_raw_status(resp), 201, "%s: %s", key_line, resp);
    char v[16];
    *replayed = h_raw_header(resp, "Idempotent-Replayed", v, sizeof v) == 0;
    json_t *j = json_loads(h_raw_body(resp), 0, NULL);
    cr_assert_not_null(j, "%s", resp);
    long id = (long)json_integer_value(json_object_get(j, "id"));
    json_decref(j);
    free(resp);
    return id;
}

Test(framing, idempotency_key_with_surrounding_whitespace_is_the_same_key)
{
    h_proc_t users;
    start_users(&users);
    int replayed;
    long first = post_with_key_line(&users, "Idempotency-Key: \t k-1 \t ", &replayed);
    cr_assert_not(replayed);
    long again = post_with_key_line(&users, "Idempotency-Key: k-1", &replayed);
    cr_assert(replayed, "'k-1' was not the key 'k-1 ' stored");
    cr_assert_eq(again, first);
    cr_assert_eq(user_count(&users), 1);
    h_stop(&users);
}

/* `cmesh token --config cfg --sub alice`, without the newline; caller frees. */
static char *mint_token(const char *cfg)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' token --config '%s' --sub alice --scope users:read",
             getenv("CMESH_BIN"), cfg);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    char *tok = calloc(1, 4096);
    cr_assert_not_null(tok);
    size_t n = fread(tok, 1, 4095, f);
    cr_assert_eq(pclose(f), 0, "%s failed", cmd);
    tok[n] = '\0';
    tok[strcspn(tok, "\r\n")] = '\0';
    cr_assert_gt(strlen(tok), 20, "token '%s'", tok);
    return tok;
}

static int status_with_auth_line(const h_proc_t *gw, const char *auth_line)
{
    char req[4096];
    int n =
        snprintf(req, sizeof req,
                 "GET /users HTTP/1.1\r\nHost: x\r\n%s\r\nConnection: close\r\n\r\n", auth_line);
    char *resp = send_to_close(gw->port, req, (size_t)n);
    int s = h_raw_status(resp);
    free(resp);
    return s;
}

Test(framing, bearer_token_with_trailing_whitespace_or_two_spaces_is_accepted)
{
    h_proc_t users, gw;
    start_users(&users);
    char dir[256], key[300], cfg[300];
    h_tempdir(dir, sizeof dir);
    snprintf(key, sizeof key, "%s/gw.key", dir);
    snprintf(cfg, sizeof cfg, "%s/gw.yaml", dir);
    FILE *f = fopen(key, "w");
    cr_assert_not_null(f);
    fputs("a-test-secret-of-at-least-32-bytes-0123456789\n", f);
    fclose(f);
    f = fopen(cfg, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "auth:\n  key_file: %s\n  issuer: " ISSUER "\n  audience: " AUDIENCE "\n"
            "routes:\n  - name: users\n    prefix: /users\n    upstreams: [%s]\n"
            "    health: off\n",
            key, users.url);
    fclose(f);
    h_start(&gw, "gateway", "--config", cfg, "--workers", "1", "--access-log", "off", NULL);
    char *tok = mint_token(cfg);
    char line[4200];
    static const char *const forms[] = {"Bearer %s ", "Bearer %s\t", "Bearer  %s", "bearer %s",
                                        "Bearer %s"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        int n = snprintf(line, sizeof line, "Authorization: ");
        snprintf(line + n, sizeof line - (size_t)n, forms[i], tok);
        cr_assert_eq(status_with_auth_line(&gw, line), 200, "'%s' refused", forms[i]);
    }
    /* the control: the token is still checked */
    snprintf(line, sizeof line, "Authorization: Bearer %sx", tok);
    cr_assert_eq(status_with_auth_line(&gw, line), 401);
    cr_assert_eq(status_with_auth_line(&gw, "Authorization: Bearer  "), 401);
    free(tok);
    h_stop(&gw);
    h_stop(&users);
}
