/* core/server.c: the HTTP/1.1 server under every cmesh process (see server.h).
 * Per worker: one loop, one SO_REUSEPORT listener, its connections. Per connection:
 * a parser, a FIFO of requests (pipelining answers in order), one write buffer that
 * batches every answer ready after a read, and one timer (idle, request, linger).
 * Calls the service's handlers through the router; metrics and log are core's. */
#include "core/server.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/flags.h"
#include "core/json.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/parser.h"
#include "core/sock.h"
#include "core/timeout.h"

#define READ_BUF_SIZE (64 * 1024) /* one per worker: every read is parsed at once */
#define MAX_PIPELINED 64          /* answers queued on one connection before reads pause */
#define LINGER_MS     2000        /* after an error answer, how long unread input is drained */
#define LOG_FLUSH_MS  100         /* access-log batches reach the writer at least this often */
#define BACKLOG       1024
#define REQ_POOL_KEEP 4            /* idle request objects a connection keeps for reuse */
#define BUF_KEEP      (64 * 1024)  /* bytes a reused buffer keeps after a large request */
#define STASH_MAX     (64 * 1024)  /* stream mode: pipelined bytes held while answering */
#define HIGH_WATER    (256 * 1024) /* streamed answer: cm_res_write() asks the producer to stop */
#define LOW_WATER                                                                                  \
    (64 * 1024) /* ... and drain_cb asks it to go on; also the size that is                        \
                 * written at once rather than at the end of the callback */

typedef struct server server_t;
typedef struct worker worker_t;

enum timer_mode { T_NONE, T_IDLE, T_REQUEST, T_LINGER };

struct cm_conn {
    uv_tcp_t tcp;       /* first: the handle's data is the conn */
    cm_timeout_t timer; /* idle, request or linger (mode) */
    worker_t *w;
    cm_conn_t *prev, *next; /* the worker's connections */
    cm_parser_t parser;
    cm_req_t *head, *tail; /* requests waiting for their answers, in arrival order */
    int queued;
    cm_req_t *pool; /* idle request objects */
    int pooled;
    cm_buf_t wbuf;     /* answers ready to write */
    cm_buf_t inflight; /* bytes handed to uv_write, stable until its callback */
    uv_write_t wreq;
    uv_shutdown_t sreq;
    int writing;
    int in_read;       /* inside read_cb: batch writes until the read is parsed */
    int reading;       /* uv_read_start active */
    int close_pending; /* close once everything queued is written */
    int lingering;
    int closing;
    int handles_open;
    int fd; /* the socket's: answers are sent with send(2), see cm_sock_send */
    enum timer_mode mode;
    char peer[48]; /* the client's address, copied into each request */
    /* stream mode only (cm_service_t.stream) */
    int stream;
    int kicked; /* on a kick list: the worker's, or the one on_kick_check runs */
    cm_conn_t *kick_next, **kick_pprev;
    cm_req_t *cur;   /* the request being handled; the next is not parsed before it ends */
    cm_buf_t stash;  /* received bytes not parsed yet (cur waits for its handler, paused) */
    int cur_done;    /* the parser reached the end of cur's message */
    int paused;      /* cm_req_body_pause() */
    int close_after; /* close once cur's streamed answer ended */
};

struct worker {
    server_t *srv;
    int index;
    uv_loop_t loop;
    uv_tcp_t listener;
    int listen_fd;
    uv_async_t wake; /* main thread: start draining */
    /* Connections asked to deliver, parse or flush from the loop rather than from inside
     * an API call (stream mode). The check handle runs them after this iteration's I/O
     * callbacks; the idle handle keeps the poll from blocking while the list is not empty
     * (a kick from a timer callback comes before the poll). */
    cm_conn_t *kicked;
    uv_check_t kick_check;
    uv_idle_t kick_idle;
    int kick_on;
    uv_timer_t tick; /* log flush, drain progress */
    uv_timer_t drain_deadline;
    uv_thread_t thread;
    void *state;
    cm_log_stream_t *log;
    cm_conn_t *conns;
    int nconns;
    int draining;
    int stopped;
    char *rbuf;
    char date[64]; /* "Date: ...\r\n", refreshed once a second as nginx does */
    time_t date_sec;
    uint64_t rid_seed[2];
    uint64_t rid_count;
};

struct server {
    const cm_server_opts_t *opts;
    const cm_service_t *svc;
    cm_router_t *router;
    cm_metrics_t *metrics;
    cm_log_t *log;
    worker_t *workers;
    atomic_int draining;
    atomic_int conns;
    uv_signal_t sigterm, sigint; /* on the main thread's loop */
    uv_signal_t sighup;          /* only when the service has on_sighup */
};

static void conn_close(cm_conn_t *c);
static void conn_flush(cm_conn_t *c);
static void start_read(cm_conn_t *c);
static void conn_timer_update(cm_conn_t *c);
static void on_conn_timer(cm_timeout_t *t);
static void conn_kick(cm_conn_t *c);
static void stream_update_read(cm_conn_t *c);
static void stream_on_read(cm_conn_t *c, const char *data, size_t len);
static void maybe_drain(cm_conn_t *c);

/* ------------------------------------------------------------------------- */
/* options                                                                    */

void cm_server_opts_default(cm_server_opts_t *o)
{
    memset(o, 0, sizeof *o);
    snprintf(o->host, sizeof o->host, "127.0.0.1");
    o->port = 0;
    o->workers = 1;
    o->drain_timeout_ms = 10000;
    o->request_timeout_ms = 10000;
    o->idle_timeout_ms = 60000;
    o->max_header = 16 * 1024;
    o->max_uri = 8 * 1024;
    o->max_body = 1024 * 1024;
    o->max_connections = 10000;
    snprintf(o->access_log, sizeof o->access_log, "stderr");
}

const char cm_server_opts_help[] =
    "  --listen HOST:PORT       address to serve on (default 127.0.0.1:0, a free port)\n"
    "  --workers N              event-loop threads sharing the port (default 1)\n"
    "  --access-log TARGET      off | stderr | PATH (default stderr)\n"
    "  --drain-timeout DUR      on SIGTERM, time to finish in-flight work (default 10s)\n"
    "  --request-timeout DUR    a request must arrive whole within it, else 408 (default 10s)\n"
    "  --idle-timeout DUR       idle keep-alive connections close after it (default 60s)\n"
    "  --max-header SIZE        request line + headers, else 431 (default 16k)\n"
    "  --max-uri SIZE           request line, else 414 (default 8k)\n"
    "  --max-body SIZE          request body, else 413 (default 1m)\n"
    "  --max-connections N      open client connections (default 10000)\n"
    "  DUR is 500ms, 10s, 2m or 1h; SIZE is bytes, 16k or 1m.\n";

int cm_server_opts_set(cm_server_opts_t *o, const char *name, const char *v, char *err, size_t cap)
{
    long n;
    if (strcmp(name, "listen") == 0) {
        if (cm_parse_hostport(v, o->host, sizeof o->host, &o->port) < 0)
            goto bad;
    } else if (strcmp(name, "workers") == 0) {
        if (cm_parse_int(v, 1, 64, &n) < 0)
            goto bad;
        o->workers = (int)n;
    } else if (strcmp(name, "access-log") == 0) {
        if (!*v || strlen(v) >= sizeof o->access_log)
            goto bad;
        snprintf(o->access_log, sizeof o->access_log, "%s", v);
    } else if (strcmp(name, "drain-timeout") == 0) {
        if (cm_parse_duration_ms(v, &o->drain_timeout_ms) < 0)
            goto bad;
    } else if (strcmp(name, "request-timeout") == 0) {
        if (cm_parse_duration_ms(v, &o->request_timeout_ms) < 0 || !o->request_timeout_ms)
            goto bad;
    } else if (strcmp(name, "idle-timeout") == 0) {
        if (cm_parse_duration_ms(v, &o->idle_timeout_ms) < 0 || !o->idle_timeout_ms)
            goto bad;
    } else if (strcmp(name, "max-header") == 0) {
        if (cm_parse_size(v, &o->max_header) < 0 || o->max_header < 256)
            goto bad;
    } else if (strcmp(name, "max-uri") == 0) {
        if (cm_parse_size(v, &o->max_uri) < 0 || o->max_uri < 16)
            goto bad;
    } else if (strcmp(name, "max-body") == 0) {
        if (cm_parse_size(v, &o->max_body) < 0)
            goto bad;
    } else if (strcmp(name, "max-connections") == 0) {
        if (cm_parse_int(v, 1, 1000000, &n) < 0)
            goto bad;
        o->max_connections = (int)n;
    } else {
        return 0;
    }
    return 1;
bad:
    snprintf(err, cap, "--%s: bad value '%s'; see --help for the accepted forms", name, v);
    return -EINVAL;
}

/* ------------------------------------------------------------------------- */
/* requests                                                                   */

static cm_req_t *req_get(cm_conn_t *c)
{
    cm_req_t *r = c->pool;
    if (r) {
        c->pool = r->next;
        c->pooled--;
    } else {
        r = calloc(1, sizeof *r);
        if (!r)
            return NULL;
    }
    r->conn = c;
    r->next = NULL;
    r->status = 0;
    r->nparams = 0;
    r->content_type_set = 0;
    r->state = c->w->state;
    r->loop = &c->w->loop;
    memcpy(r->peer, c->peer, sizeof r->peer);
    r->body_cb = NULL;
    r->body_error = 0;
    r->body_error_msg = NULL;
    r->body_done = 0;
    r->body_complete = 0;
    r->expect_100 = 0;
    r->streaming = 0;
    r->drain_wanted = 0;
    r->drain_cb = NULL;
    r->res_bytes = 0;
    cm_buf_reset(&r->log_extra);
    cm_buf_reset(&r->res_headers);
    cm_buf_reset(&r->res_body);
    cm_buf_reset(&r->out);
    return r;
}

static void req_free(cm_req_t *r)
{
    cm_buf_free(&r->raw_head);
    cm_buf_free(&r->raw_body);
    cm_buf_free(&r->res_headers);
    cm_buf_free(&r->res_body);
    cm_buf_free(&r->out);
    cm_buf_free(&r->log_extra);
    free(r);
}

/* Returns a request object to its connection's pool, or frees it. */
static void req_release(cm_conn_t *c, cm_req_t *r)
{
    if (!c || c->closing || c->pooled >= REQ_POOL_KEEP) {
        req_free(r);
        return;
    }
    cm_buf_shrink(&r->raw_body, BUF_KEEP);
    cm_buf_shrink(&r->res_body, BUF_KEEP);
    cm_buf_shrink(&r->out, BUF_KEEP);
    r->next = c->pool;
    c->pool = r;
    c->pooled++;
}

/* Writes v as 16 lowercase hex digits (no NUL): no printf on the request path. */
static void hex64(uint64_t v, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = digits[v & 15];
}

/* A fresh request id, 32 hex digits; out has room for 33 bytes. */
static void new_request_id(worker_t *w, char *out)
{
    /* xorshift128+ seeded from getrandom(): unique enough, no syscall per request */
    uint64_t s1 = w->rid_seed[0], s0 = w->rid_seed[1];
    w->rid_seed[0] = s0;
    s1 ^= s1 << 23;
    w->rid_seed[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    hex64(w->rid_seed[1] + s0, out);
    hex64(++w->rid_count, out + 16);
    out[32] = '\0';
}

/* X-Request-Id: keep the caller's if it is a sane token, else make 32 hex digits. */
static void set_request_id(worker_t *w, cm_req_t *r)
{
    size_t len;
    const char *id = cm_req_header(r, "X-Request-Id", &len);
    if (id && len > 0 && len < sizeof r->request_id) {
        size_t i = 0;
        for (; i < len; i++) {
            char ch = id[i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' || ch == ':'))
                break;
        }
        if (i == len) {
            memcpy(r->request_id, id, len);
            r->request_id[len] = '\0';
            return;
        }
    }
    new_request_id(w, r->request_id);
}

static const char *date_header(worker_t *w)
{
    time_t now = time(NULL);
    if (now != w->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(w->date, sizeof w->date, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        w->date_sec = now;
    }
    return w->date;
}

static void append_status_line(cm_buf_t *o, int status)
{
    char code[4] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10),
                    (char)('0' + status % 10), ' '};
    cm_buf_append(o, "HTTP/1.1 ", 9);
    cm_buf_append(o, code, 4);
    cm_buf_append_str(o, cm_http_reason(status));
    cm_buf_append(o, "\r\n", 2);
}

/* Renders status line, headers and body into r->out. */
static void render(worker_t *w, cm_req_t *r, int close)
{
    cm_buf_t *o = &r->out;
    int no_body = r->method == CM_HEAD || r->status == 304 || r->status == 204 || r->status < 200;
    cm_buf_reset(o);
    cm_buf_reserve(o, 160 + r->res_headers.len + r->res_body.len);
    append_status_line(o, r->status);
    cm_buf_append_str(o, date_header(w));
    if (!r->content_type_set && r->status != 304 && r->status != 204)
        cm_buf_append_str(o, "Content-Type: application/json\r\n");
    if (r->status != 304 && r->status != 204) {
        cm_buf_append_str(o, "Content-Length: ");
        cm_buf_append_u64(o, r->res_body.len);
        cm_buf_append(o, "\r\n", 2);
    }
    cm_buf_append_str(o, "X-Request-Id: ");
    cm_buf_append_str(o, r->request_id);
    cm_buf_append(o, "\r\n", 2);
    if (close)
        cm_buf_append_str(o, "Connection: close\r\n");
    cm_buf_append(o, r->res_headers.data ? r->res_headers.data : "", r->res_headers.len);
    cm_buf_append(o, "\r\n", 2);
    if (!no_body)
        cm_buf_append(o, r->res_body.data ? r->res_body.data : "", r->res_body.len);
}

/* Counts an answered request in metrics and the access log. */
static void account(worker_t *w, cm_req_t *r, int status, uint64_t bytes)
{
    uint64_t us = (uv_hrtime() - r->start_ns) / 1000;
    cm_metrics_observe(w->srv->metrics, r->route, r->method_name, status, us);
    cm_metrics_inflight_add(w->srv->metrics, -1);
    cm_log_access(w->log, &(cm_access_t){.request_id = r->request_id,
                                         .method = r->method_name,
                                         .path = r->target.p,
                                         .path_len = r->target.len,
                                         .status = status,
                                         .duration_us = us,
                                         .bytes = bytes,
                                         .extra = r->log_extra.len ? r->log_extra.data : NULL,
                                         .extra_len = r->log_extra.len});
}

/* Stream mode: the handler is done with the connection's current request, so the next
 * pipelined one may be parsed. An unread body would be misparsed as the next request:
 * then the connection closes after this answer instead. */
static void cur_finished(cm_conn_t *c, cm_req_t *r)
{
    c->cur = NULL;
    if (!r->body_complete || c->close_after)
        c->close_pending = 1;
    else if (c->stash.len)
        conn_kick(c);
}

void cm_res_send(cm_req_t *r, int status)
{
    cm_conn_t *c = r->conn;
    if (!c) { /* the client left while we worked: nothing is sent; counted and logged as
               * 499 (nginx's "client closed request"), whatever the answer would have been */
        account(r->loop->data, r, 499, 0);
        req_free(r);
        return;
    }
    worker_t *w = c->w;
    r->status = status;
    if (c->cur == r)
        cur_finished(c, r);
    int close = !r->keep_alive || c->close_pending || w->draining;
    if (close)
        c->close_pending = 1;
    render(w, r, close);
    account(w, r, status, r->out.len);
    if (!c->in_read)
        conn_flush(c);
}

/* ------------------------------------------------------------------------- */
/* built-in endpoints                                                         */

static server_t *server_of(cm_req_t *r)
{
    return r->conn->w->srv;
}

static void handle_healthz(cm_req_t *r)
{
    cm_buf_append_str(&r->res_body, "{\"status\":\"ok\"}");
    cm_res_send(r, 200);
}

static void handle_readyz(cm_req_t *r)
{
    if (atomic_load(&server_of(r)->draining)) {
        cm_buf_append_str(&r->res_body, "{\"status\":\"draining\"}");
        cm_res_send(r, 503);
        return;
    }
    cm_buf_append_str(&r->res_body, "{\"status\":\"ready\"}");
    cm_res_send(r, 200);
}

static void handle_metrics(cm_req_t *r)
{
    const cm_service_t *svc = server_of(r)->svc;
    if (cm_metrics_render(server_of(r)->metrics, &r->res_body) < 0) {
        cm_res_error(r, 500, "out of memory rendering metrics");
        return;
    }
    if (svc->render_metrics)
        svc->render_metrics(svc->config, &r->res_body);
    cm_res_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    cm_res_send(r, 200);
}

static const cm_route_t builtin_routes[] = {
    {CM_GET, "/healthz", handle_healthz},
    {CM_GET, "/readyz", handle_readyz},
    {CM_GET, "/metrics", handle_metrics},
};
#define NBUILTIN ((int)(sizeof builtin_routes / sizeof builtin_routes[0]))

/* ------------------------------------------------------------------------- */
/* connections                                                                */

static void kick_unlink(cm_conn_t *c)
{
    if (!c->kicked)
        return;
    *c->kick_pprev = c->kick_next;
    if (c->kick_next)
        c->kick_next->kick_pprev = c->kick_pprev;
    c->kicked = 0;
}

static void conn_handle_closed(cm_conn_t *c)
{
    if (--c->handles_open > 0)
        return;
    while (c->pool) {
        cm_req_t *r = c->pool;
        c->pool = r->next;
        req_free(r);
    }
    cm_parser_free(&c->parser);
    cm_buf_free(&c->stash);
    cm_buf_free(&c->wbuf);
    cm_buf_free(&c->inflight);
    free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    conn_handle_closed(h->data);
}

static void on_timer_closed(uv_handle_t *h)
{
    conn_handle_closed(((cm_timeout_t *)h->data)->data);
}

static void conn_close(cm_conn_t *c)
{
    if (c->closing)
        return;
    worker_t *w = c->w;
    c->closing = 1;
    /* answers still being computed are detached: cm_res_send() frees them */
    for (cm_req_t *r = c->head, *next; r; r = next) {
        next = r->next;
        if (r->status) {
            req_free(r);
        } else {
            r->conn = NULL;
            r->next = NULL;
        }
    }
    c->head = c->tail = NULL;
    if (c->cur && c->cur->streaming) /* off the queue while its answer streams */
        c->cur->conn = NULL;
    c->cur = NULL;
    kick_unlink(c); /* the conn is freed before the next check */
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nconns--;
    atomic_fetch_sub(&w->srv->conns, 1);
    cm_metrics_connections_add(w->srv->metrics, -1);
    cm_timeout_close(&c->timer, on_timer_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    (void)req; /* lingering goes on until EOF or the linger timer */
}

/* Half-closes after the last answer, and reads (and drops) what the client still
 * sends for a while: closing with unread input would reset the connection and
 * could destroy the error answer before the client read it. */
static void conn_linger(cm_conn_t *c)
{
    if (c->lingering || c->closing)
        return;
    c->lingering = 1;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        conn_close(c);
        return;
    }
    c->mode = T_LINGER;
    cm_timeout_set(&c->timer, LINGER_MS);
    /* conn_fail() stopped reading; without reads the client's EOF goes unseen (the
     * connection waits out LINGER_MS) and its unread bytes turn our close into a reset */
    if (!c->reading)
        start_read(c);
}

static void on_written(uv_write_t *req, int status)
{
    cm_conn_t *c = req->data;
    c->writing = 0;
    cm_buf_reset(&c->inflight);
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    conn_flush(c);
    if (c->stream)
        maybe_drain(c);
}

/* Moves answered requests at the head of the queue into wbuf and writes it:
 * uv_try_write first (no allocation, usually all of it), uv_write for the rest. */
static void move_answered(cm_conn_t *c)
{
    while (c->head && c->head->status && !c->head->streaming) {
        cm_req_t *r = c->head;
        c->head = r->next;
        if (!c->head)
            c->tail = NULL;
        c->queued--;
        cm_buf_append(&c->wbuf, r->out.data, r->out.len);
        req_release(c, r);
    }
}

static void conn_flush(cm_conn_t *c)
{
    if (c->closing)
        return;
    move_answered(c);
    if (!c->writing && c->wbuf.len) {
        ssize_t n = cm_sock_send(c->fd, c->wbuf.data, c->wbuf.len);
        if (n < 0 && n != -EAGAIN) {
            conn_close(c);
            return;
        }
        size_t done = n > 0 ? (size_t)n : 0;
        if (done < c->wbuf.len) {
            /* swap so wbuf can take new answers while the kernel takes these */
            cm_buf_t t = c->inflight;
            c->inflight = c->wbuf;
            c->wbuf = t;
            cm_buf_reset(&c->wbuf);
            uv_buf_t b = uv_buf_init(c->inflight.data + done, (unsigned)(c->inflight.len - done));
            c->wreq.data = c;
            if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0) {
                conn_close(c);
                return;
            }
            c->writing = 1;
        } else {
            cm_buf_reset(&c->wbuf);
            cm_buf_shrink(&c->wbuf, BUF_KEEP);
        }
    }
    if (c->stream)
        stream_update_read(c);
    if (c->writing)
        return;
    if (c->close_pending && !c->head && !c->cur) {
        conn_linger(c);
        return;
    }
    if (!c->stream && !c->reading && c->queued < MAX_PIPELINED / 2 && !c->w->draining)
        start_read(c);
    conn_timer_update(c);
}

/* An error found while framing: answer it after the earlier answers, then close. */
static void conn_fail(cm_conn_t *c, int status, const char *msg)
{
    cm_req_t *r = req_get(c);
    if (!r) {
        conn_close(c);
        return;
    }
    /* the request never completed: log what we know of it */
    r->method = CM_METHOD_OTHER;
    r->method_name = "-";
    r->target = (cm_str_t){"-", 1};
    r->nheaders = 0;
    r->keep_alive = 0;
    r->route = cm_router_npatterns(c->w->srv->router);
    r->start_ns = uv_hrtime();
    set_request_id(c->w, r);
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->queued++;
    cm_metrics_inflight_add(c->w->srv->metrics, 1);
    c->close_pending = 1;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
    cm_res_error(r, status, "%s", msg);
}

/* Queues r behind the earlier answers and hands it to its route's handler, the
 * service's fallback, or a 404/405 answer. */
static void route(cm_conn_t *c, cm_req_t *r)
{
    worker_t *w = c->w;
    r->start_ns = uv_hrtime();
    r->logged = cm_log_stream_on(w->log);
    set_request_id(w, r);
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->queued++;
    cm_metrics_inflight_add(w->srv->metrics, 1);
    int status = 0;
    char allow[64];
    cm_handler_fn h = cm_router_match(w->srv->router, r, &status, allow, sizeof allow);
    if (!h && w->srv->svc->fallback) { /* the gateway: every other path is the proxy's */
        r->route = cm_router_npatterns(w->srv->router);
        r->nparams = 0;
        h = w->srv->svc->fallback;
    }
    if (!h) {
        if (status == 405) {
            cm_res_header(r, "Allow", "%s", allow);
            cm_res_error(r, 405, "method %s is not allowed here; allowed: %s", r->method_name,
                         allow);
        } else {
            cm_res_error(r, 404, "Not found");
        }
        return;
    }
    h(r);
}

static void dispatch(cm_conn_t *c)
{
    cm_req_t *r = req_get(c);
    if (!r) {
        conn_close(c);
        return;
    }
    cm_parser_take(&c->parser, r);
    route(c, r);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    cm_conn_t *c = h->data;
    buf->base = c->w->rbuf;
    buf->len = READ_BUF_SIZE;
}

/* The client closed (or reset) its connection while a stream-mode handler still reads
 * the request's body: it hears so through its body callback with body_error 499 (nginx's
 * "client closed request"), here in a loop callback, so it can drop its upstream work
 * at once rather than at a timeout. */
static void body_abandoned(cm_req_t *r)
{
    r->body_error = 499;
    r->body_error_msg = "the client closed the connection before the body was complete";
    r->body_complete = 0;
    r->body_done = 1;
    r->body_cb(r, NULL, 0, 1, r->body_arg);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    cm_conn_t *c = stream->data;
    if (nread < 0) {
        cm_req_t *r = c->cur; /* unanswered, or answering in pieces: it outlives the conn */
        int owed = r && r->body_cb && !r->body_done && (!r->status || r->streaming);
        conn_close(c);
        if (owed)
            body_abandoned(r);
        return;
    }
    if (nread == 0 || c->lingering || c->close_pending)
        return; /* after a final answer, input is drained and dropped */
    if (c->stream) {
        stream_on_read(c, buf->base, (size_t)nread);
        return;
    }
    const char *p = buf->base;
    size_t left = (size_t)nread;
    c->in_read = 1;
    while (left && !c->closing && !c->close_pending) {
        size_t used = 0;
        cm_parse_event_t ev = cm_parser_feed(&c->parser, p, left, &used);
        p += used;
        left -= used;
        if (ev == CM_PARSE_ERROR) {
            conn_fail(c, c->parser.error_status, c->parser.error_msg);
            break;
        } else if (ev == CM_PARSE_DONE) {
            dispatch(c);
        } else if (ev == CM_PARSE_HEAD) {
            if (!c->head) /* 100 only when no earlier answer is still owed */
                cm_buf_append_str(&c->wbuf, "HTTP/1.1 100 Continue\r\n\r\n");
        } else if (used == 0) {
            break;
        }
    }
    c->in_read = 0;
    if (c->closing)
        return;
    if (c->queued >= MAX_PIPELINED && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
    conn_flush(c);
}

static void start_read(cm_conn_t *c)
{
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = 1;
}

static void on_conn_timer(cm_timeout_t *t)
{
    cm_conn_t *c = t->data;
    if (c->mode == T_REQUEST) {
        c->mode = T_NONE;
        conn_fail(c, 408, "request not received in time");
        if (!c->in_read)
            conn_flush(c);
        return;
    }
    conn_close(c); /* idle or linger */
}

/* One timer per connection, in the mode its state asks for: a request under way
 * must finish within request_timeout (counted from its first byte, so trickling
 * bytes do not extend it); an idle connection lives idle_timeout. */
static void conn_timer_update(cm_conn_t *c)
{
    if (c->closing || c->lingering)
        return;
    const cm_server_opts_t *o = c->w->srv->opts;
    enum timer_mode want;
    if (c->stream && c->cur)
        want = T_NONE; /* head done: the body's pace is the handler's (gateway) business */
    else if (cm_parser_mid_request(&c->parser))
        want = T_REQUEST;
    else if (!c->head)
        want = T_IDLE;
    else
        want = T_NONE; /* a handler is working: not the client's time */
    if (want == c->mode && want != T_IDLE)
        return;
    c->mode = want;
    if (want == T_NONE)
        cm_timeout_clear(&c->timer);
    else
        cm_timeout_set(&c->timer, want == T_REQUEST ? o->request_timeout_ms : o->idle_timeout_ms);
}

static void set_peer(cm_conn_t *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) < 0)
        return;
    if (ss.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof c->peer);
    else if (ss.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
}

static void on_connection(uv_stream_t *listener, int status)
{
    worker_t *w = listener->data;
    if (status < 0)
        return;
    cm_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->w = w;
    uv_tcp_init(&w->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0) {
        c->handles_open = 1;
        c->closing = 1;
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
        return;
    }
    cm_timeout_init(&w->loop, &c->timer, on_conn_timer, c);
    c->handles_open = 2;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_os_fd_t fd;
    c->fd = uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 ? fd : -1;
    set_peer(c);
    const cm_server_opts_t *o = w->srv->opts;
    c->stream = w->srv->svc->stream;
    cm_parser_init(&c->parser,
                   &(cm_parser_limits_t){o->max_header, o->max_uri, o->max_body, c->stream});
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    cm_metrics_connections_add(w->srv->metrics, 1);
    if (atomic_fetch_add(&w->srv->conns, 1) >= o->max_connections) {
        /* rendered here, not through a request: this connection gets no parser.
         * Content-Length is computed from the body, never counted by hand */
        static const char body[] = "{\"error\":\"too many connections\"}";
        char id[40], busy[512];
        new_request_id(w, id);
        int n = snprintf(busy, sizeof busy,
                         "HTTP/1.1 503 Service Unavailable\r\n%sContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\nX-Request-Id: %s\r\nRetry-After: 1\r\n"
                         "Connection: close\r\n\r\n%s",
                         date_header(w), sizeof body - 1, id, body);
        uv_buf_t b = uv_buf_init(busy, (unsigned)n);
        uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        conn_close(c);
        return;
    }
    start_read(c);
    conn_timer_update(c);
}

/* ------------------------------------------------------------------------- */
/* stream mode: one request at a time, its body and its answer in pieces      */

/* True when the parser may consume input now: never past the end of the current
 * request before it is answered, and never into a body nobody reads yet. */
static int gate_open(const cm_conn_t *c)
{
    if (c->closing || c->close_pending || c->lingering)
        return 0;
    const cm_req_t *r = c->cur;
    if (!r)
        return 1; /* the next head (or the tail of an answered bodyless head) */
    if (c->cur_done)
        return 0;
    if (!r->has_body)
        return 1; /* only the end of the head is left, no body byte to keep */
    return r->body_cb && !c->paused;
}

/* Reads only what can be parsed: a held stash or a closed gate stops the socket,
 * which is the upload's backpressure. */
static void stream_update_read(cm_conn_t *c)
{
    if (c->closing || c->lingering)
        return;
    /* While a finished request is being answered, the socket stays read (bytes of a
     * pipelined next request go to the stash, up to STASH_MAX): stopping and
     * restarting it would cost two epoll_ctl calls per request, and a client that
     * leaves is noticed at once. */
    int waiting = c->cur && c->cur_done && !c->close_pending && c->stash.len < STASH_MAX;
    int want = ((!c->stash.len && gate_open(c)) || waiting) && (!c->w->draining || c->cur);
    if (want && !c->reading) {
        start_read(c);
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static size_t pending_bytes(const cm_conn_t *c)
{
    return c->wbuf.len + c->inflight.len;
}

/* Called from loop callbacks only (never from cm_res_write) so the producer is not
 * re-entered. */
static void maybe_drain(cm_conn_t *c)
{
    cm_req_t *r = c->cur;
    if (c->closing || !r || !r->drain_wanted || pending_bytes(c) >= LOW_WATER)
        return;
    r->drain_wanted = 0;
    if (r->drain_cb)
        r->drain_cb(r, r->drain_arg);
}

static void deliver_last(cm_req_t *r)
{
    r->body_done = 1;
    r->body_cb(r, r->body_error ? NULL : "", 0, 1, r->body_arg);
}

/* Nothing more can be parsed on this connection: the handler hears of it through its
 * body callback (data NULL) or when it asks for the body, and the connection closes
 * after its answer. */
static void body_failed(cm_conn_t *c, cm_req_t *r)
{
    r->body_error = c->parser.error_status;
    r->body_error_msg = c->parser.error_msg;
    r->body_complete = 0;
    c->cur_done = 1;
    c->close_pending = 1; /* no more input is parsed; the answer says Connection: close */
    stream_update_read(c);
    if (r->body_cb && !r->body_done) {
        r->body_done = 1;
        r->body_cb(r, NULL, 0, 1, r->body_arg);
    }
}

static void stream_dispatch(cm_conn_t *c)
{
    cm_req_t *r = req_get(c);
    if (!r) {
        conn_close(c);
        return;
    }
    r->expect_100 = c->parser.expect_continue;
    cm_parser_take(&c->parser, r);
    r->body_complete = !r->has_body;
    c->cur = r;
    c->cur_done = 0;
    c->paused = 0;
    c->close_after = 0;
    route(c, r);
}

/* Parses data while the gate is open, handing events to the current request.
 * Returns the bytes consumed; the caller keeps the rest. */
static size_t stream_parse(cm_conn_t *c, const char *data, size_t len)
{
    size_t off = 0;
    while (off < len && gate_open(c)) {
        size_t used = 0;
        cm_parse_event_t ev = cm_parser_feed(&c->parser, data + off, len - off, &used);
        off += used;
        cm_req_t *r = c->cur;
        if (ev == CM_PARSE_ERROR) {
            if (r) /* a broken body: the handler owns the request and answers the error */
                body_failed(c, r);
            else
                conn_fail(c, c->parser.error_status, c->parser.error_msg);
            break;
        } else if (ev == CM_PARSE_HEAD) {
            stream_dispatch(c);
        } else if (ev == CM_PARSE_BODY) {
            if (r && r->body_cb)
                r->body_cb(r, c->parser.piece, c->parser.piece_len, 0, r->body_arg);
        } else if (ev == CM_PARSE_DONE) {
            if (r) { /* else: a bodyless request answered before its last head byte */
                c->cur_done = 1;
                r->body_complete = 1;
                if (r->body_cb && !r->body_done)
                    deliver_last(r);
            }
        } else if (used == 0) {
            break;
        }
    }
    return off;
}

static void stream_parse_stash(cm_conn_t *c)
{
    size_t used = stream_parse(c, c->stash.data, c->stash.len);
    if (c->closing || used == 0)
        return;
    memmove(c->stash.data, c->stash.data + used, c->stash.len - used);
    c->stash.len -= used;
    c->stash.data[c->stash.len] = '\0';
    if (!c->stash.len)
        cm_buf_shrink(&c->stash, BUF_KEEP);
}

static void stream_on_read(cm_conn_t *c, const char *data, size_t len)
{
    c->in_read = 1;
    int rc = 0;
    if (c->stash.len) { /* bytes still held: the new ones queue behind them */
        rc = cm_buf_append(&c->stash, data, len);
        if (rc == 0)
            stream_parse_stash(c);
    } else {
        size_t used = stream_parse(c, data, len);
        if (!c->closing && used < len) /* data is the worker's read buffer: copy */
            rc = cm_buf_append(&c->stash, data + used, len - used);
    }
    c->in_read = 0;
    if (rc < 0)
        conn_close(c);
    if (c->closing)
        return;
    conn_flush(c);
}

static void run_kick(cm_conn_t *c)
{
    if (c->closing)
        return;
    cm_req_t *r = c->cur;
    c->in_read = 1;
    if (r && c->cur_done && r->body_cb && !r->body_done)
        deliver_last(r);
    if (!c->closing && c->stash.len && gate_open(c))
        stream_parse_stash(c);
    c->in_read = 0;
    if (c->closing)
        return;
    conn_flush(c);
    maybe_drain(c);
}

static void on_kick_idle(uv_idle_t *h)
{
    (void)h; /* being active is its job: the poll does not block */
}

/* After this iteration's I/O callbacks: every connection kicked so far, and those they
 * kick in turn on the next iteration. */
static void on_kick_check(uv_check_t *h)
{
    worker_t *w = h->data;
    cm_conn_t *list = w->kicked; /* a conn closed meanwhile unlinks itself from it */
    w->kicked = NULL;
    if (list)
        list->kick_pprev = &list;
    while (list) {
        cm_conn_t *c = list;
        kick_unlink(c);
        run_kick(c);
    }
    if (!w->kicked && w->kick_on) {
        w->kick_on = 0;
        uv_check_stop(&w->kick_check);
        uv_idle_stop(&w->kick_idle);
    }
}

/* Runs run_kick(c) from the loop, after the current callback, once however often asked. */
static void conn_kick(cm_conn_t *c)
{
    worker_t *w = c->w;
    if (!c->stream || c->closing || c->kicked)
        return;
    c->kicked = 1;
    c->kick_next = w->kicked;
    c->kick_pprev = &w->kicked;
    if (w->kicked)
        w->kicked->kick_pprev = &c->kick_next;
    w->kicked = c;
    if (!w->kick_on) {
        w->kick_on = 1;
        uv_check_start(&w->kick_check, on_kick_check);
        uv_idle_start(&w->kick_idle, on_kick_idle);
    }
}

/* Writes now when enough is queued; else at the end of the current loop callback (a
 * read) or on the next iteration, so start + write + end make one write syscall. */
static void stream_flush_soon(cm_conn_t *c)
{
    if (c->in_read)
        return;
    if (c->wbuf.len >= LOW_WATER)
        conn_flush(c);
    else
        conn_kick(c);
}

void cm_req_body_read(cm_req_t *r, cm_body_cb cb, void *arg)
{
    cm_conn_t *c = r->conn;
    if (!c || c->closing || c->cur != r || r->body_cb)
        return;
    r->body_cb = cb;
    r->body_arg = arg;
    if (r->expect_100 && !r->body_complete && !r->streaming) {
        /* RFC 9110 10.1.1: the client holds the body back until this */
        move_answered(c);
        cm_buf_append_str(&c->wbuf, "HTTP/1.1 100 Continue\r\n\r\n");
    }
    r->expect_100 = 0;
    conn_kick(c);
}

void cm_req_body_pause(cm_req_t *r)
{
    cm_conn_t *c = r->conn;
    if (!c || c->closing || c->cur != r || c->paused)
        return;
    c->paused = 1;
    stream_update_read(c);
}

void cm_req_body_resume(cm_req_t *r)
{
    cm_conn_t *c = r->conn;
    if (!c || c->closing || c->cur != r || !c->paused)
        return;
    c->paused = 0;
    conn_kick(c); /* the stash first, then the socket again */
}

static void append_stream_head(worker_t *w, cm_req_t *r, int64_t content_length, int close)
{
    cm_buf_t *o = &r->conn->wbuf;
    int status = r->status;
    append_status_line(o, status);
    cm_buf_append_str(o, date_header(w));
    cm_buf_append_str(o, "X-Request-Id: ");
    cm_buf_append_str(o, r->request_id);
    cm_buf_append(o, "\r\n", 2);
    cm_buf_append(o, r->res_headers.data ? r->res_headers.data : "", r->res_headers.len);
    if (status >= 200 && status != 204 && status != 304) { /* RFC 9110 8.6: never for these */
        if (content_length >= 0) {
            cm_buf_append_str(o, "Content-Length: ");
            cm_buf_append_u64(o, (unsigned long long)content_length);
            cm_buf_append(o, "\r\n", 2);
        } else if (r->res_chunked) {
            cm_buf_append_str(o, "Transfer-Encoding: chunked\r\n");
        }
    }
    if (close)
        cm_buf_append_str(o, "Connection: close\r\n");
    cm_buf_append(o, "\r\n", 2);
}

int cm_res_start(cm_req_t *r, int status, int64_t content_length)
{
    if (r->streaming || r->status)
        return -EINVAL;
    r->status = status;
    r->streaming = 1;
    r->res_nobody = r->method == CM_HEAD || status < 200 || status == 204 || status == 304;
    r->res_chunked = !r->res_nobody && content_length < 0 && r->http_minor >= 1;
    r->res_left = r->res_nobody ? 0 : content_length;
    cm_conn_t *c = r->conn;
    if (!c)
        return 0; /* detached: writes say -EPIPE, cm_res_end frees */
    worker_t *w = c->w;
    move_answered(c); /* earlier answers go first; r's bytes follow them in wbuf */
    if (c->head == r) {
        c->head = r->next;
        if (!c->head)
            c->tail = NULL;
        c->queued--;
        r->next = NULL;
    }
    int close_delimited = !r->res_nobody && content_length < 0 && !r->res_chunked;
    int close = !r->keep_alive || w->draining || close_delimited;
    c->close_after = close;
    size_t before = c->wbuf.len;
    append_stream_head(w, r, content_length, close);
    r->res_bytes = c->wbuf.len - before;
    stream_flush_soon(c);
    return 0;
}

static void append_chunk_size(cm_buf_t *o, size_t len)
{
    char hex[20];
    int n = 0;
    char tmp[16];
    do {
        tmp[n++] = "0123456789abcdef"[len & 15];
        len >>= 4;
    } while (len);
    for (int i = 0; i < n; i++)
        hex[i] = tmp[n - 1 - i];
    hex[n++] = '\r';
    hex[n++] = '\n';
    cm_buf_append(o, hex, (size_t)n);
}

int cm_res_write(cm_req_t *r, const char *data, size_t len)
{
    cm_conn_t *c = r->conn;
    if (!c || c->closing)
        return -EPIPE;
    if (!r->streaming || c->cur != r)
        return -EINVAL;
    if (r->res_nobody)
        len = 0;
    if (r->res_left >= 0 && (int64_t)len > r->res_left)
        len = (size_t)r->res_left; /* never past Content-Length: the rest would be a new answer */
    if (len) {
        size_t before = c->wbuf.len;
        if (r->res_chunked)
            append_chunk_size(&c->wbuf, len);
        int rc = cm_buf_append(&c->wbuf, data, len);
        if (rc == 0 && r->res_chunked)
            rc = cm_buf_append(&c->wbuf, "\r\n", 2);
        if (rc < 0) {
            conn_close(c);
            return -EPIPE;
        }
        if (r->res_left >= 0)
            r->res_left -= (int64_t)len;
        r->res_bytes += c->wbuf.len - before;
        stream_flush_soon(c);
        if (c->closing)
            return -EPIPE;
    }
    if (pending_bytes(c) > HIGH_WATER) {
        r->drain_wanted = 1;
        return 1;
    }
    return 0;
}

void cm_res_on_drain(cm_req_t *r, cm_drain_cb cb, void *arg)
{
    r->drain_cb = cb;
    r->drain_arg = arg;
}

void cm_res_end(cm_req_t *r, int ok)
{
    if (!r->streaming) { /* nothing started: a bodyless answer stands in */
        if (ok)
            cm_res_send(r, 204);
        else
            cm_res_error(r, 502, "the answer failed before it started");
        return;
    }
    cm_conn_t *c = r->conn;
    worker_t *w = c ? c->w : r->loop->data;
    int truncated = !ok || r->res_left > 0;
    if (c && !truncated && r->res_chunked) {
        cm_buf_append(&c->wbuf, "0\r\n\r\n", 5);
        r->res_bytes += 5;
    }
    account(w, r, r->status, r->res_bytes);
    if (!c) {
        req_free(r);
        return;
    }
    if (truncated || w->draining)
        c->close_after = 1; /* the client must see the cut, never a shorter message */
    cur_finished(c, r);
    req_release(c, r);
    if (!c->in_read)
        conn_flush(c);
}

/* ------------------------------------------------------------------------- */
/* workers and draining                                                       */

static void close_if_open(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Called on every tick while draining: when the last connection is gone, the worker
 * closes its own handles and frees the service state, so uv_run returns. */
static void worker_maybe_stop(worker_t *w)
{
    if (!w->draining || w->nconns > 0 || w->stopped)
        return;
    w->stopped = 1;
    cm_log_stream_flush(w->log);
    close_if_open((uv_handle_t *)&w->tick);
    close_if_open((uv_handle_t *)&w->drain_deadline);
    close_if_open((uv_handle_t *)&w->wake);
    close_if_open((uv_handle_t *)&w->kick_check);
    close_if_open((uv_handle_t *)&w->kick_idle);
    if (w->srv->svc->worker_free)
        w->srv->svc->worker_free(w->state);
    w->state = NULL;
}

static void on_tick(uv_timer_t *t)
{
    worker_t *w = t->data;
    cm_log_stream_flush(w->log);
    worker_maybe_stop(w);
}

static void on_drain_deadline(uv_timer_t *t)
{
    worker_t *w = t->data;
    while (w->conns)
        conn_close(w->conns);
    worker_maybe_stop(w);
}

static void on_wake(uv_async_t *a)
{
    worker_t *w = a->data;
    if (w->draining)
        return;
    w->draining = 1;
    close_if_open((uv_handle_t *)&w->listener);
    uv_timer_start(&w->drain_deadline, on_drain_deadline, w->srv->opts->drain_timeout_ms, 0);
    /* idle connections go now; busy ones after their answers, which say Connection:
     * close because w->draining is set. Not close_pending here: on_read drops input once
     * it is set, so a request half-received at SIGTERM would never be completed. */
    for (cm_conn_t *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (!c->head && !c->cur && !cm_parser_mid_request(&c->parser))
            conn_close(c);
    }
    worker_maybe_stop(w);
}

static void worker_main(void *arg)
{
    worker_t *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

static int listen_socket(const cm_server_opts_t *o, int port, int *fd_out, int *bound_port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(o->host, portstr, &hints, &ai);
    if (rc != 0) {
        cm_log_msg(CM_LOG_ERROR, "listen: cannot resolve '%s': %s", o->host, gai_strerror(rc));
        return -EINVAL;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        rc = -errno;
        cm_log_msg(CM_LOG_ERROR, "listen: cannot bind %s:%d: %s", o->host, port, strerror(-rc));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return rc;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    return 0;
}

static int worker_init(server_t *s, worker_t *w, int index, int port)
{
    int rc, bound = 0;
    w->srv = s;
    w->index = index;
    w->listen_fd = -1;
    w->rbuf = malloc(READ_BUF_SIZE);
    if (!w->rbuf)
        return -ENOMEM;
    if (getrandom(w->rid_seed, sizeof w->rid_seed, 0) != sizeof w->rid_seed)
        w->rid_seed[0] = (uint64_t)time(NULL) ^ (uint64_t)getpid(), w->rid_seed[1] = 0x9e3779b9;
    if ((rc = uv_loop_init(&w->loop)) < 0)
        return rc;
    w->loop.data = w; /* detached requests find their worker through their loop */
    if ((rc = cm_log_stream_new(s->log, &w->log)) < 0)
        return rc;
    if ((rc = listen_socket(s->opts, port, &w->listen_fd, &bound)) < 0)
        return rc;
    uv_tcp_init(&w->loop, &w->listener);
    w->listener.data = w;
    if ((rc = uv_tcp_open(&w->listener, w->listen_fd)) < 0 ||
        (rc = uv_listen((uv_stream_t *)&w->listener, BACKLOG, on_connection)) < 0) {
        cm_log_msg(CM_LOG_ERROR, "listen: %s", uv_strerror(rc));
        return rc;
    }
    uv_async_init(&w->loop, &w->wake, on_wake);
    w->wake.data = w;
    uv_timer_init(&w->loop, &w->tick);
    w->tick.data = w;
    uv_timer_start(&w->tick, on_tick, LOG_FLUSH_MS, LOG_FLUSH_MS);
    uv_timer_init(&w->loop, &w->drain_deadline);
    w->drain_deadline.data = w;
    uv_check_init(&w->loop, &w->kick_check);
    w->kick_check.data = w;
    uv_idle_init(&w->loop, &w->kick_idle);
    if (s->svc->worker_init &&
        (rc = s->svc->worker_init(&w->loop, s->svc->config, &w->state)) < 0) {
        cm_log_msg(CM_LOG_ERROR, "%s: worker %d failed to start: %s", s->svc->name, index,
                   strerror(-rc));
        return rc;
    }
    return bound;
}

static void on_signal(uv_signal_t *sig, int signum)
{
    server_t *s = sig->data;
    /* the main loop holds just these two: stopping them lets it return */
    uv_signal_stop(&s->sigterm);
    uv_signal_stop(&s->sigint);
    if (s->svc->on_sighup)
        uv_signal_stop(&s->sighup);
    if (atomic_exchange(&s->draining, 1))
        return;
    cm_log_msg(CM_LOG_INFO, "%s: %s received, draining (up to %llu ms)", s->svc->name,
               signum == SIGTERM ? "SIGTERM" : "SIGINT",
               (unsigned long long)s->opts->drain_timeout_ms);
    for (int i = 0; i < s->opts->workers; i++)
        uv_async_send(&s->workers[i].wake);
}

static void on_sighup(uv_signal_t *sig, int signum)
{
    (void)signum;
    server_t *s = sig->data;
    s->svc->on_sighup(s->svc->config);
}

/* Builds the route table: built-ins first, then the service's. */
static int make_router(const cm_service_t *svc, cm_router_t **out)
{
    int n = NBUILTIN + svc->nroutes;
    cm_route_t *all = malloc(sizeof *all * (size_t)n);
    if (!all)
        return -ENOMEM;
    memcpy(all, builtin_routes, sizeof builtin_routes);
    if (svc->nroutes) /* the gateway has none (routes NULL): all goes to its fallback */
        memcpy(all + NBUILTIN, svc->routes, sizeof *all * (size_t)svc->nroutes);
    int rc = cm_router_new(all, n, out);
    free(all);
    return rc;
}

static void walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    close_if_open(h);
}

static void worker_teardown(worker_t *w)
{
    if (w->state && w->srv->svc->worker_free)
        w->srv->svc->worker_free(w->state);
    w->state = NULL;
    uv_walk(&w->loop, walk_close, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
    cm_log_stream_free(w->log);
    free(w->rbuf);
}

int cm_server_run(const cm_server_opts_t *o, const cm_service_t *svc)
{
    server_t s = {.opts = o, .svc = svc};
    int rc, started = 0;
    signal(SIGPIPE, SIG_IGN);
    if ((rc = make_router(svc, &s.router)) < 0)
        return rc;
    const char **names = malloc(sizeof *names * (size_t)(cm_router_npatterns(s.router) + 1));
    for (int i = 0; names && i < cm_router_npatterns(s.router); i++)
        names[i] = cm_router_pattern(s.router, i);
    rc = names ? cm_metrics_new(svc->name, names, cm_router_npatterns(s.router), &s.metrics)
               : -ENOMEM;
    free(names);
    if (rc < 0)
        goto out;
    if ((rc = cm_log_open(o->access_log, &s.log)) < 0) {
        cm_log_msg(CM_LOG_ERROR, "--access-log %s: %s", o->access_log, strerror(-rc));
        goto out;
    }
    s.workers = calloc((size_t)o->workers, sizeof *s.workers);
    if (!s.workers) {
        rc = -ENOMEM;
        goto out;
    }
    int port = o->port;
    for (; started < o->workers; started++) {
        rc = worker_init(&s, &s.workers[started], started, port);
        if (rc < 0) {
            started++;
            goto out;
        }
        port = rc; /* every later worker binds the port the first one got */
    }
    uv_loop_t *main_loop = uv_default_loop();
    uv_signal_init(main_loop, &s.sigterm);
    uv_signal_init(main_loop, &s.sigint);
    s.sigterm.data = s.sigint.data = &s;
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);
    uv_signal_start(&s.sigint, on_signal, SIGINT);
    if (svc->on_sighup) {
        uv_signal_init(main_loop, &s.sighup);
        s.sighup.data = &s;
        uv_signal_start(&s.sighup, on_sighup, SIGHUP);
    }
    for (int i = 0; i < o->workers; i++)
        uv_thread_create(&s.workers[i].thread, worker_main, &s.workers[i]);
    cm_log_msg(CM_LOG_INFO, "%s: listening on http://%s%s%s:%d (%d worker%s)", svc->name,
               strchr(o->host, ':') ? "[" : "", o->host, strchr(o->host, ':') ? "]" : "", port,
               o->workers, o->workers == 1 ? "" : "s");
    /* the main loop holds only the signal handles: it returns after the first signal */
    uv_run(main_loop, UV_RUN_DEFAULT);
    for (int i = 0; i < o->workers; i++)
        uv_thread_join(&s.workers[i].thread);
    uv_close((uv_handle_t *)&s.sigterm, NULL);
    uv_close((uv_handle_t *)&s.sigint, NULL);
    if (svc->on_sighup)
        uv_close((uv_handle_t *)&s.sighup, NULL);
    uv_run(main_loop, UV_RUN_DEFAULT);
    cm_log_msg(CM_LOG_INFO, "%s: drained, exiting", svc->name);
    rc = 0;
out:
    for (int i = 0; i < started; i++)
        worker_teardown(&s.workers[i]);
    free(s.workers);
    cm_log_close(s.log);
    cm_metrics_free(s.metrics);
    cm_router_free(s.router);
    return rc;
}
