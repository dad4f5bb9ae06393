/* tests/unit/test_client.c: core/client against a tiny HTTP server on a loopback port.
 * The server is one pthread with blocking sockets multiplexed by poll(2); it serves
 * canned answers by path and counts accepted connections. Each test has its own loop. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <uv.h>

#include "core/client.h"

/* ---------------------------------------------------------------------------
 * The test server
 * ------------------------------------------------------------------------- */

#define SRV_MAX_CONNS 16

typedef struct conn {
    int fd;
    char buf[8192];
    size_t len;
} conn_t;

typedef struct server {
    int lfd;
    int stop_pipe[2];
    int port;
    pthread_t thread;
    atomic_int accepted; /* connections accepted so far */
    atomic_int requests; /* request heads received so far */
    conn_t conns[SRV_MAX_CONNS];
} server_t;

static void send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the client went away (e.g. it refused a big body) */
        p += w;
        n -= (size_t)w;
    }
}

static void respond(int fd, int status, const char *reason, const char *body, size_t len)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     status, reason, len);
    send_all(fd, head, (size_t)n);
    send_all(fd, body, len);
}

/* Answers one complete request head in head (NUL-terminated). */
static void serve(int fd, const char *head)
{
    char path[256] = "";
    sscanf(head, "GET %255s ", path);
    if (!strcmp(path, "/ok")) {
        respond(fd, 200, "OK", "{\"hello\":\"world\"}", 17);
    } else if (!strcmp(path, "/echo")) {
        respond(fd, 200, "OK", head, strlen(head)); /* lets the test see our headers */
    } else if (!strcmp(path, "/big")) {
        size_t len = 2 * 1024 * 1024;
        char *body = malloc(len);
        memset(body, 'x', len);
        respond(fd, 200, "OK", body, len);
        free(body);
    } else if (!strcmp(path, "/hang")) {
        /* never answers */
    } else {
        respond(fd, 404, "Not Found", "{\"error\":\"User not found\"}", 26);
    }
}

static void conn_read(server_t *s, conn_t *c)
{
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len, 0);
    if (n <= 0) {
        close(c->fd);
        c->fd = -1;
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    char *end;
    while ((end = strstr(c->buf, "\r\n\r\n"))) {
        size_t used = (size_t)(end + 4 - c->buf);
        char saved = c->buf[used];
        c->buf[used] = '\0';
        atomic_fetch_add(&s->requests, 1);
        serve(c->fd, c->buf);
        c->buf[used] = saved;
        memmove(c->buf, c->buf + used, c->len - used + 1);
        c->len -= used;
    }
}

static void *server_main(void *arg)
{
    server_t *s = arg;
    for (;;) {
        struct pollfd pfd[SRV_MAX_CONNS + 2];
        int map[SRV_MAX_CONNS + 2];
        nfds_t n = 0;
        pfd[n++] = (struct pollfd){.fd = s->stop_pipe[0], .events = POLLIN};
        pfd[n++] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
        for (int i = 0; i < SRV_MAX_CONNS; i++) {
            if (s->conns[i].fd >= 0) {
                map[n] = i;
                pfd[n++] = (struct pollfd){.fd = s->conns[i].fd, .events = POLLIN};
            }
        }
        if (poll(pfd, n, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pfd[0].revents)
            break;
        if (pfd[1].revents & POLLIN) {
            int fd = accept(s->lfd, NULL, NULL);
            if (fd >= 0) {
                atomic_fetch_add(&s->accepted, 1);
                int one = 1; /* head and body go in two writes: no Nagle stall */
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                int slot = -1;
                for (int i = 0; i < SRV_MAX_CONNS && slot < 0; i++)
                    if (s->conns[i].fd < 0)
                        slot = i;
                if (slot < 0) {
                    close(fd);
                } else {
                    s->conns[slot].fd = fd;
                    s->conns[slot].len = 0;
                }
            }
        }
        for (nfds_t k = 2; k < n; k++)
            if (pfd[k].revents)
                conn_read(s, &s->conns[map[k]]);
    }
    for (int i = 0; i < SRV_MAX_CONNS; i++)
        if (s->conns[i].fd >= 0)
            close(s->conns[i].fd);
    return NULL;
}

/* Binds 127.0.0.1 on a free port; listens when listening is set. Returns the fd. */
static int bind_loopback(int listening, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    if (listening)
        cr_assert_eq(listen(fd, 16), 0);
    socklen_t alen = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static server_t srv;
static uv_loop_t loop;
static cm_client_t *client;

static void server_start(void)
{
    memset(&srv, 0, sizeof srv);
    for (int i = 0; i < SRV_MAX_CONNS; i++)
        srv.conns[i].fd = -1;
    srv.lfd = bind_loopback(1, &srv.port);
    cr_assert_eq(pipe(srv.stop_pipe), 0);
    cr_assert_eq(pthread_create(&srv.thread, NULL, server_main, &srv), 0);
}

static void server_stop(void)
{
    cr_assert_eq(write(srv.stop_pipe[1], "x", 1), 1);
    pthread_join(srv.thread, NULL);
    close(srv.lfd);
    close(srv.stop_pipe[0]);
    close(srv.stop_pipe[1]);
}

/* ---------------------------------------------------------------------------
 * Fixtures and helpers
 * ------------------------------------------------------------------------- */

static void setup(void)
{
    cr_assert_eq(cm_client_global_init(), 0);
    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(cm_client_new(&loop, &client), 0);
    server_start();
}

static void teardown(void)
{
    cm_client_free(client);
    client = NULL;
    uv_run(&loop, UV_RUN_DEFAULT); /* lets the client's handles close */
    int rc = uv_loop_close(&loop);
    server_stop();
    cr_assert_eq(rc, 0, "client left handles open on the loop");
}

typedef struct result {
    int fired; /* times the callback ran */
    int status;
    char body[4096];
    size_t len;
} result_t;

static void on_result(int status, const char *body, size_t len, void *data)
{
    result_t *r = data;
    r->fired++;
    r->status = status;
    r->len = len;
    cr_assert_not_null(body);
    snprintf(r->body, sizeof r->body, "%.*s", (int)len, body);
}

/* Runs the loop until *flag is set; the Criterion timeout is the upper bound. */
static void run_until(const int *flag)
{
    while (!*flag)
        cr_assert(uv_run(&loop, UV_RUN_ONCE) != 0 || *flag, "loop ran dry before the callback");
}

static char *url(const char *path)
{
    static char buf[128];
    snprintf(buf, sizeof buf, "http://127.0.0.1:%d%s", srv.port, path);
    return buf;
}

TestSuite(client, .init = setup, .fini = teardown, .timeout = 30);

/* ---------------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------------- */

Test(client, ok_delivers_status_and_body)
{
    result_t r = {0};
    cr_assert_eq(cm_client_get(client, url("/ok"), 5000, NULL, on_result, &r), 0);
    run_until(&r.fired);
    cr_assert_eq(r.fired, 1);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.len, 17);
    cr_assert_str_eq(r.body, "{\"hello\":\"world\"}");
}

Test(client, not_found_is_delivered_as_404)
{
    result_t r = {0};
    cr_assert_eq(cm_client_get(client, url("/users/7"), 5000, NULL, on_result, &r), 0);
    run_until(&r.fired);
    cr_assert_eq(r.status, 404);
    cr_assert_str_eq(r.body, "{\"error\":\"User not found\"}");
}

typedef struct chain {
    int left;   /* requests still to start */
    int done;   /* set when the last one finished */
    int failed; /* a status other than 200 came back */
} chain_t;

static void on_chain(int status, const char *body, size_t len, void *data)
{
    chain_t *ch = data;
    (void)body;
    (void)len;
    if (status != 200)
        ch->failed = status;
    if (--ch->left == 0 || ch->failed) {
        ch->done = 1;
        return;
    }
    /* started from inside a callback: the client must allow it */
    if (cm_client_get(client, url("/ok"), 5000, NULL, on_chain, ch) != 0) {
        ch->failed = -1;
        ch->done = 1;
    }
}

Test(client, keep_alive_reuses_one_connection)
{
    chain_t ch = {.left = 5};
    cr_assert_eq(cm_client_get(client, url("/ok"), 5000, NULL, on_chain, &ch), 0);
    run_until(&ch.done);
    cr_assert_eq(ch.failed, 0);
    cr_assert_eq(atomic_load(&srv.requests), 5);
    cr_assert_eq(atomic_load(&srv.accepted), 1);
}

Test(client, silent_server_times_out)
{
    result_t r = {0};
    cr_assert_eq(cm_client_get(client, url("/hang"), 200, NULL, on_result, &r), 0);
    run_until(&r.fired);
    cr_assert_eq(r.fired, 1);
    cr_assert_eq(r.status, -ETIMEDOUT);
    cr_assert_eq(r.len, 0);
}

Test(client, closed_port_is_connection_refused)
{
    int port;
    int fd = bind_loopback(0, &port); /* bound, never listening: the port stays ours */
    char u[64];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/ok", port);
    result_t r = {0};
    cr_assert_eq(cm_client_get(client, u, 5000, NULL, on_result, &r), 0);
    run_until(&r.fired);
    close(fd);
    cr_assert_eq(r.status, -ECONNREFUSED);
}

Test(client, sends_request_id_and_accept_headers)
{
    result_t r = {0};
    cr_assert_eq(cm_client_get(client, url("/echo"), 5000, "req-42", on_result, &r), 0);
    run_until(&r.fired);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "\r\nX-Request-Id: req-42\r\n"), "head was: %s", r.body);
    cr_assert(strstr(r.body, "\r\nAccept: application/json\r\n"), "head was: %s", r.body);
}

Test(client, no_request_id_header_without_id)
{
    result_t r = {0};
    cr_assert_eq(cm_client_get(client, url("/echo"), 5000, NULL, on_result, &r), 0);
    run_until(&r.fired);
    cr_assert_eq(r.status, 200);
    cr_assert_null(strstr(r.body, "X-Request-Id"), "head was: %s", r.body);
}

Test(client, body_over_one_mib_is_eio)
{
    result_t r = {0};
    cr_assert_eq(cm_client_get(client, url("/big"), 10000, NULL, on_result, &r), 0);
    run_until(&r.fired);
    cr_assert_eq(r.status, -EIO);
    cr_assert_eq(r.len, 0);
}

static void free_when_server_has_request(uv_timer_t *t)
{
    result_t *r = t->data;
    if (atomic_load(&srv.requests) < 1)
        return;
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
    cm_client_free(client);
    client = NULL;
    cr_assert_eq(r->fired, 1, "free must fire the pending callback before it returns");
}

Test(client, free_cancels_pending_request_once)
{
    result_t r = {0};
    cr_assert_eq(cm_client_get(client, url("/hang"), 20000, NULL, on_result, &r), 0);
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    t.data = &r;
    uv_timer_start(&t, free_when_server_has_request, 1, 1);
    run_until(&r.fired);
    uv_run(&loop, UV_RUN_DEFAULT); /* everything closes; nothing fires again */
    cr_assert_eq(r.fired, 1);
    cr_assert_eq(r.status, -ECANCELED);
}

static void free_from_callback(int status, const char *body, size_t len, void *data)
{
    on_result(status, body, len, data);
    cm_client_free(client);
    client = NULL;
}

Test(client, free_from_inside_a_callback_cancels_the_rest)
{
    result_t ok = {0}, hang = {0};
    cr_assert_eq(cm_client_get(client, url("/hang"), 20000, NULL, on_result, &hang), 0);
    cr_assert_eq(cm_client_get(client, url("/ok"), 5000, NULL, free_from_callback, &ok), 0);
    run_until(&ok.fired);
    cr_assert_eq(ok.status, 200);
    cr_assert_eq(hang.fired, 1);
    cr_assert_eq(hang.status, -ECANCELED);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(ok.fired, 1);
    cr_assert_eq(hang.fired, 1);
}

Test(client, callback_never_fires_inside_get)
{
    int port;
    int fd = bind_loopback(0, &port);
    char u[64];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/ok", port);
    result_t refused = {0}, ok = {0};
    cr_assert_eq(cm_client_get(client, u, 5000, NULL, on_result, &refused), 0);
    cr_assert_eq(refused.fired, 0);
    cr_assert_eq(cm_client_get(client, url("/ok"), 5000, NULL, on_result, &ok), 0);
    cr_assert_eq(ok.fired, 0);
    run_until(&refused.fired);
    run_until(&ok.fired);
    close(fd);
    cr_assert_eq(refused.status, -ECONNREFUSED);
    cr_assert_eq(ok.status, 200);
}

Test(client, bad_arguments_are_einval_and_never_call_back)
{
    result_t r = {0};
    cr_assert_eq(cm_client_get(client, "ftp://127.0.0.1/x", 1000, NULL, on_result, &r), -EINVAL);
    cr_assert_eq(cm_client_get(client, "not a url", 1000, NULL, on_result, &r), -EINVAL);
    cr_assert_eq(cm_client_get(client, url("/ok"), 0, NULL, on_result, &r), -EINVAL);
    cr_assert_eq(cm_client_get(client, url("/ok"), 1000, "a\r\nB: c", on_result, &r), -EINVAL);
    cr_assert_eq(cm_client_get(client, url("/ok"), 1000, NULL, NULL, &r), -EINVAL);
    uv_run(&loop, UV_RUN_NOWAIT);
    cr_assert_eq(r.fired, 0);
}

Test(client, many_concurrent_requests_all_complete)
{
    enum { N = 8 };
    result_t r[N];
    memset(r, 0, sizeof r);
    for (int i = 0; i < N; i++)
        cr_assert_eq(
            cm_client_get(client, url(i % 2 ? "/ok" : "/missing"), 5000, NULL, on_result, &r[i]),
            0);
    for (int i = 0; i < N; i++)
        run_until(&r[i].fired);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(r[i].fired, 1);
        cr_assert_eq(r[i].status, i % 2 ? 200 : 404);
    }
}

typedef struct hdr_result {
    int fired, found, absent;
    char value[64];
} hdr_result_t;

static void on_header(int status, const char *body, size_t len, void *data)
{
    (void)body, (void)len;
    hdr_result_t *r = data;
    r->fired = 1;
    cr_assert_eq(status, 200);
    r->found = cm_client_header(client, "content-TYPE", r->value, sizeof r->value);
    char v[8];
    r->absent = cm_client_header(client, "X-Cmesh-Index", v, sizeof v);
}

Test(client, header_of_the_answer_is_read_inside_its_callback_only)
{
    hdr_result_t r = {0};
    cr_assert_eq(cm_client_get(client, url("/ok"), 5000, NULL, on_header, &r), 0);
    run_until(&r.fired);
    cr_assert_eq(r.found, 0);
    cr_assert_str_eq(r.value, "application/json");
    cr_assert_eq(r.absent, -ENOENT);
    char v[64];
    cr_assert_eq(cm_client_header(client, "Content-Type", v, sizeof v), -ENOENT,
                 "outside a callback there is no answer to read");
}
