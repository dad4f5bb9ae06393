/* tests/unit/test_stream.c: the server's stream mode (cm_service_t.stream) end to end.
 * Each test runs cm_server_run in a thread with a tiny service defined here (an echo that
 * streams the upload back, an early answer, a bodyless read) and talks to it over raw
 * sockets on 127.0.0.1; SIGTERM stops it. Also the fallback and SIGHUP hooks. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "core/server.h"

/* ------------------------------------------------------------------------- */
/* the service                                                                */

static atomic_int hups;

static void on_hup(void *config)
{
    (void)config;
    atomic_fetch_add(&hups, 1);
}

static void render_extra_metrics(void *config, cm_buf_t *out)
{
    (void)config;
    cm_buf_append_str(out, "stream_test_series 1\n");
}

static int path_is(const cm_req_t *r, const char *p)
{
    return r->path.len == strlen(p) && memcmp(r->path.p, p, r->path.len) == 0;
}

static void echo_drained(cm_req_t *r, void *arg)
{
    (void)arg;
    cm_req_body_resume(r);
}

/* Streams every piece back; the answer's queue past the high-water mark pauses the
 * upload until it drained, as the gateway does. */
static void echo_body(cm_req_t *r, const char *data, size_t len, int last, void *arg)
{
    (void)arg;
    if (len && cm_res_write(r, data, len) == 1)
        cm_req_body_pause(r);
    if (last)
        cm_res_end(r, 1);
}

static void empty_body(cm_req_t *r, const char *data, size_t len, int last, void *arg)
{
    (void)data;
    (void)arg;
    const char *say = len == 0 && last ? "empty" : "wrong";
    cm_res_header(r, "X-Peer", "%s", r->peer);
    cm_res_start(r, 200, 5);
    cm_res_write(r, say, 5);
    cm_res_end(r, 1);
}

static void fallback(cm_req_t *r)
{
    cm_buf_append_str(&r->log_extra, ",\"test\":1");
    if (path_is(r, "/echo")) {
        /* body first: 100 Continue is only sent before the answer starts */
        cm_req_body_read(r, echo_body, NULL);
        cm_res_header_str(r, "Content-Type", "application/octet-stream");
        cm_res_start(r, 200, -1);
        cm_res_on_drain(r, echo_drained, NULL);
    } else if (path_is(r, "/early")) {
        cm_res_error(r, 403, "not reading that");
    } else if (path_is(r, "/get")) {
        cm_req_body_read(r, empty_body, NULL);
    } else {
        cm_res_error(r, 404, "nothing at %.*s", (int)r->path.len, r->path.p);
    }
}

static const cm_service_t svc = {
    .name = "streamtest",
    .fallback = fallback,
    .stream = 1,
    .on_sighup = on_hup,
    .render_metrics = render_extra_metrics,
};

/* ------------------------------------------------------------------------- */
/* the server thread                                                          */

static cm_server_opts_t opts;
static pthread_t server_thread;
static int server_rc = -1;
static int port_holder = -1; /* bound, never listening: keeps the port ours (SO_REUSEPORT) */

static void *run_server(void *arg)
{
    (void)arg;
    server_rc = cm_server_run(&opts, &svc);
    return NULL;
}

static int hold_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    port_holder = fd;
    return ntohs(sa.sin_port);
}

static char *roundtrip(const char *req, size_t len, size_t *out_len);

static void start_server(void)
{
    atomic_store(&hups, 0);
    cm_server_opts_default(&opts);
    opts.port = hold_free_port();
    opts.max_body = 64 * 1024 * 1024;
    snprintf(opts.access_log, sizeof opts.access_log, "off");
    cr_assert_eq(pthread_create(&server_thread, NULL, run_server, NULL), 0);
    /* a first answer proves the workers (and the signal handlers) run */
    static const char ping[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    size_t n;
    char *res = roundtrip(ping, sizeof ping - 1, &n);
    cr_assert(strstr(res, "\"ok\"") != NULL, "healthz: %s", res);
    free(res);
}

static void stop_server(void)
{
    raise(SIGTERM);
    pthread_join(server_thread, NULL);
    close(port_holder);
    cr_assert_eq(server_rc, 0);
}

/* ------------------------------------------------------------------------- */
/* a client: sends req while reading, until the server closes                 */

static int connect_server(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)opts.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int tries = 0; tries < 500; tries++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            return fd;
        close(fd);
        usleep(10000);
    }
    cr_assert_fail("cannot connect to port %d", opts.port);
    return -1;
}

/* Sends and receives at once (the echo answers while the upload goes on); returns
 * everything read until EOF, NUL-terminated. */
static char *roundtrip(const char *req, size_t len, size_t *out_len)
{
    int fd = connect_server();
    fcntl(fd, F_SETFL, O_NONBLOCK);
    size_t sent = 0, cap = 1 << 16, got = 0;
    char *out = malloc(cap + 1);
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN | (sent < len ? POLLOUT : 0)};
        int pr = poll(&pfd, 1, 10000);
        cr_assert_gt(pr, 0, "no progress in 10 s (sent %zu of %zu, got %zu)", sent, len, got);
        if (sent < len && (pfd.revents & POLLOUT)) {
            ssize_t n = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
            if (n > 0)
                sent += (size_t)n;
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            if (cap - got < 65536) {
                cap *= 2;
                out = realloc(out, cap + 1);
            }
            ssize_t n = recv(fd, out + got, cap - got, 0);
            if (n == 0 || (n < 0 && errno != EAGAIN))
                break;
            if (n > 0)
                got += (size_t)n;
        }
    }
    close(fd);
    out[got] = '\0';
    *out_len = got;
    return out;
}

/* Removes chunked framing from body (in place); returns the payload length. */
static size_t dechunk(char *body, size_t len)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *end;
        unsigned long n = strtoul(body + in, &end, 16);
        in = (size_t)(end - body) + 2;
        if (n == 0)
            break;
        cr_assert_leq(in + n, len, "chunk past the end");
        memmove(body + out, body + in, n);
        out += n;
        in += n + 2;
    }
    return out;
}

static char *body_of(char *res)
{
    char *b = strstr(res, "\r\n\r\n");
    cr_assert_not_null(b, "no head end: %.200s", res);
    return b + 4;
}

static char *make_payload(size_t n)
{
    char *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + (i * 7 + i / 1000) % 26);
    return p;
}

/* ------------------------------------------------------------------------- */
/* tests                                                                      */

TestSuite(stream, .init = start_server, .fini = stop_server, .timeout = 60);

Test(stream, echo_of_a_5mb_chunked_upload_is_byte_exact)
{
    const size_t total = 5 * 1024 * 1024, piece = 100000;
    char *payload = make_payload(total);
    size_t cap = total + total / piece * 16 + 256, len = 0;
    char *req = malloc(cap);
    len += (size_t)sprintf(req, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                "Connection: close\r\n\r\n");
    for (size_t off = 0; off < total; off += piece) {
        size_t n = total - off < piece ? total - off : piece;
        len += (size_t)sprintf(req + len, "%zx\r\n", n);
        memcpy(req + len, payload + off, n);
        len += n;
        memcpy(req + len, "\r\n", 2);
        len += 2;
    }
    len += (size_t)sprintf(req + len, "0\r\n\r\n");

    size_t n;
    char *res = roundtrip(req, len, &n);
    cr_assert(strncmp(res, "HTTP/1.1 200 OK\r\n", 17) == 0, "%.200s", res);
    cr_assert(strstr(res, "Transfer-Encoding: chunked\r\n") != NULL);
    cr_assert(strstr(res, "Connection: close\r\n") != NULL, "the request asked for close");
    char *body = body_of(res);
    size_t got = dechunk(body, n - (size_t)(body - res));
    cr_assert_eq(got, total);
    cr_assert_eq(memcmp(body, payload, total), 0, "the echo differs");
    free(res);
    free(req);
    free(payload);
}

Test(stream, echo_of_a_content_length_upload)
{
    const size_t total = 300000;
    char *payload = make_payload(total);
    char *req = malloc(total + 256);
    size_t len = (size_t)sprintf(req,
                                 "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n"
                                 "Connection: close\r\n\r\n",
                                 total);
    memcpy(req + len, payload, total);
    len += total;
    size_t n;
    char *res = roundtrip(req, len, &n);
    cr_assert(strncmp(res, "HTTP/1.1 200 OK\r\n", 17) == 0, "%.200s", res);
    char *body = body_of(res);
    cr_assert_eq(dechunk(body, n - (size_t)(body - res)), total);
    cr_assert_eq(memcmp(body, payload, total), 0);
    free(res);
    free(req);
    free(payload);
}

Test(stream, bodyless_get_reads_one_empty_last_piece)
{
    static const char req[] = "GET /get HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    size_t n;
    char *res = roundtrip(req, sizeof req - 1, &n);
    cr_assert(strncmp(res, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", res);
    cr_assert(strstr(res, "Content-Length: 5\r\n") != NULL, "%s", res);
    cr_assert(strstr(res, "X-Peer: 127.0.0.1\r\n") != NULL, "%s", res);
    cr_assert_str_eq(body_of(res), "empty");
    free(res);
}

Test(stream, http10_answer_of_unknown_length_is_close_delimited)
{
    static const char req[] = "POST /echo HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc";
    size_t n;
    char *res = roundtrip(req, sizeof req - 1, &n);
    cr_assert(strstr(res, "Transfer-Encoding") == NULL, "%s", res);
    cr_assert(strstr(res, "Connection: close\r\n") != NULL, "%s", res);
    cr_assert_str_eq(body_of(res), "abc");
    free(res);
}

Test(stream, early_answer_without_reading_the_body_closes)
{
    /* keep-alive asked, body never read by the handler: the server must close */
    static const char req[] = "POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
                              "0123456789GET /get HTTP/1.1\r\nHost: x\r\n\r\n";
    size_t n;
    char *res = roundtrip(req, sizeof req - 1, &n);
    cr_assert(strncmp(res, "HTTP/1.1 403 Forbidden\r\n", 24) == 0, "%s", res);
    cr_assert(strstr(res, "Connection: close\r\n") != NULL, "%s", res);
    cr_assert(strstr(res, "empty") == NULL, "nothing after the close: %s", res);
    free(res);
}

Test(stream, pipelined_requests_are_answered_in_order)
{
    static const char req[] = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfirst"
                              "GET /get HTTP/1.1\r\nHost: x\r\n\r\n"
                              "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    size_t n;
    char *res = roundtrip(req, sizeof req - 1, &n);
    char *first = strstr(res, "5\r\nfirst\r\n0\r\n\r\n");
    char *second = strstr(res, "empty");
    char *third = strstr(res, "{\"status\":\"ok\"}");
    cr_assert(first && second && third, "%s", res);
    cr_assert(first < second && second < third, "order: %s", res);
    free(res);
}

Test(stream, builtins_still_answer_and_other_methods_reach_the_fallback)
{
    static const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                              "POST /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    size_t n;
    char *res = roundtrip(req, sizeof req - 1, &n);
    cr_assert(strstr(res, "stream_test_series 1\n") != NULL, "render_metrics: %.300s", res);
    cr_assert(strstr(res, "nothing at /healthz") != NULL, "POST went to the fallback: %s", res);
    free(res);
}

Test(stream, expect_continue_gets_100_when_the_body_is_read)
{
    int fd = connect_server();
    static const char head[] = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                               "Expect: 100-continue\r\nConnection: close\r\n\r\n";
    cr_assert_eq(send(fd, head, sizeof head - 1, 0), (ssize_t)(sizeof head - 1));
    char buf[4096];
    size_t got = 0;
    while (!strstr(buf, "\r\n\r\n")) {
        ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        cr_assert_gt(n, 0);
        got += (size_t)n;
        buf[got] = '\0';
    }
    cr_assert(strncmp(buf, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0, "%s", buf);
    cr_assert_eq(send(fd, "hi", 2, 0), 2);
    for (ssize_t n; (n = recv(fd, buf + got, sizeof buf - 1 - got, 0)) > 0;)
        got += (size_t)n;
    buf[got] = '\0';
    cr_assert(strstr(buf, "HTTP/1.1 200 OK") != NULL, "%s", buf);
    cr_assert(strstr(buf, "2\r\nhi\r\n0\r\n\r\n") != NULL, "%s", buf);
    close(fd);
}

Test(stream, sighup_calls_the_service_hook)
{
    raise(SIGHUP);
    for (int i = 0; i < 500 && atomic_load(&hups) == 0; i++)
        usleep(10000);
    cr_assert_eq(atomic_load(&hups), 1);
}
