/* core/conn.c: requests and client connections of the server (see server_int.h). Per
 * connection: a parser, a FIFO of requests (pipelined answers go out in order), one write
 * buffer that batches every answer ready after a read (send(2) first, uv_write for the
 * rest), and one timeout (idle, request, linger after an error). Answers are rendered,
 * counted in metrics and logged here. Stream mode's half is stream.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/server_int.h"
#include "core/sock.h"

static void conn_timer_update(cm_conn_t *c);
static void on_conn_timer(cm_timeout_t *t);

/* ------------------------------------------------------------------------- */
/* requests                                                                   */

cm_req_t *cm__req_get(cm_conn_t *c)
{
    worker_t *w = c->w;
    cm_req_t *r = w->req_free;
    if (r) {
        w->req_free = r->next;
        w->nreq_free--;
    } else {
        r = calloc(1, sizeof *r);
        if (!r)
            return NULL;
    }
    cm_metrics_states_add(w->srv->metrics, 1);
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
    r->gone_cb = NULL;
    r->res_bytes = 0;
    r->away = 0;
    r->away_status = 0;
    cm_buf_reset(&r->log_extra);
    cm_buf_reset(&r->res_headers);
    cm_buf_reset(&r->res_body);
    cm_buf_reset(&r->out);
    return r;
}

static void req_destroy(cm_req_t *r)
{
    cm_buf_free(&r->raw_head);
    cm_buf_free(&r->raw_body);
    cm_buf_free(&r->path_dec);
    cm_buf_free(&r->res_headers);
    cm_buf_free(&r->res_body);
    cm_buf_free(&r->out);
    cm_buf_free(&r->log_extra);
    free(r);
}

/* Returns a request object to its worker's pool (found through its loop: the connection
 * may be gone), or frees it when the pool is full. */
void cm__req_release(cm_req_t *r)
{
    worker_t *w = r->loop->data;
    cm_metrics_states_add(w->srv->metrics, -1);
    if (w->nreq_free >= POOL_KEEP) {
        req_destroy(r);
        return;
    }
    cm_buf_shrink(&r->raw_head, BUF_KEEP);
    cm_buf_shrink(&r->raw_body, BUF_KEEP);
    cm_buf_shrink(&r->res_body, BUF_KEEP);
    cm_buf_shrink(&r->out, BUF_KEEP);
    r->conn = NULL;
    r->next = w->req_free;
    w->req_free = r;
    w->nreq_free++;
}

/* A write buffer between answers goes back to the worker: its capacity and the next
 * free one are kept in its own first bytes (every buffer has at least 256). */
typedef struct buf_link {
    char *next;
    size_t cap;
} buf_link_t;

static void buf_park(worker_t *w, cm_buf_t *b)
{
    if (!b->cap)
        return;
    if (w->nbuf_free >= POOL_KEEP || b->cap < sizeof(buf_link_t)) {
        cm_buf_free(b);
        return;
    }
    b->len = 0; /* a closing connection may still hold unsent bytes: they are dropped */
    if (b->cap > BUF_KEEP)
        cm_buf_shrink(b, BUF_KEEP);
    buf_link_t link = {w->buf_free, b->cap};
    memcpy(b->data, &link, sizeof link);
    w->buf_free = b->data;
    w->nbuf_free++;
    *b = (cm_buf_t)CM_BUF_INIT;
}

/* Gives an empty, memoryless wbuf a pooled buffer before answers are added to it. */
static void wbuf_attach(cm_conn_t *c)
{
    worker_t *w = c->w;
    if (c->wbuf.cap || !w->buf_free)
        return;
    buf_link_t link;
    memcpy(&link, w->buf_free, sizeof link);
    c->wbuf = (cm_buf_t){w->buf_free, 0, link.cap};
    c->wbuf.data[0] = '\0';
    w->buf_free = link.next;
    w->nbuf_free--;
}

static wstate_t *wstate_get(worker_t *w)
{
    wstate_t *ws = w->ws_free;
    if (ws) {
        w->ws_free = ws->next;
        w->nws_free--;
    } else {
        ws = calloc(1, sizeof *ws);
        if (!ws)
            return NULL;
    }
    cm_metrics_states_add(w->srv->metrics, 1);
    return ws;
}

static void wstate_release(worker_t *w, wstate_t *ws)
{
    cm_metrics_states_add(w->srv->metrics, -1);
    cm_buf_reset(&ws->buf);
    if (w->nws_free >= POOL_KEEP) {
        cm_buf_free(&ws->buf);
        free(ws);
        return;
    }
    cm_buf_shrink(&ws->buf, BUF_KEEP);
    ws->next = w->ws_free;
    w->ws_free = ws;
    w->nws_free++;
}

static void on_parse_take(void *arg, int delta)
{
    cm_metrics_states_add(arg, delta);
}

void cm__worker_pools_init(worker_t *w)
{
    w->parse_pool.on_take = on_parse_take;
    w->parse_pool.arg = w->srv->metrics;
    w->parse_pool.keep = POOL_KEEP;
}

void cm__worker_pools_free(worker_t *w)
{
    while (w->req_free) {
        cm_req_t *r = w->req_free;
        w->req_free = r->next;
        req_destroy(r);
    }
    while (w->ws_free) {
        wstate_t *ws = w->ws_free;
        w->ws_free = ws->next;
        cm_buf_free(&ws->buf);
        free(ws);
    }
    while (w->buf_free) {
        buf_link_t link;
        memcpy(&link, w->buf_free, sizeof link);
        free(w->buf_free);
        w->buf_free = link.next;
    }
    w->nreq_free = w->nws_free = w->nbuf_free = 0;
    cm_parse_pool_free(&w->parse_pool);
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

const char *cm__date_header(worker_t *w)
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

void cm__append_status_line(cm_buf_t *o, int status)
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
    cm__append_status_line(o, r->status);
    cm_buf_append_str(o, cm__date_header(w));
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
    else if (r->http_minor == 0) /* RFC 9112 9.3: a 1.0 client closes unless told so */
        cm_buf_append_str(o, "Connection: keep-alive\r\n");
    cm_buf_append(o, r->res_headers.data ? r->res_headers.data : "", r->res_headers.len);
    cm_buf_append(o, "\r\n", 2);
    if (!no_body)
        cm_buf_append(o, r->res_body.data ? r->res_body.data : "", r->res_body.len);
}

/* Counts an answered request in metrics and the access log. */
void cm__account(worker_t *w, cm_req_t *r, int status, uint64_t bytes)
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
void cm__cur_finished(cm_conn_t *c, cm_req_t *r)
{
    c->cur = NULL;
    if (!r->body_complete || c->close_after)
        c->close_pending = 1;
    else if (c->stash.len)
        cm__conn_kick(c);
}

void cm_req_away(cm_req_t *r)
{
    r->away = 1;
    r->away_status = 0;
}

int cm_req_back(cm_req_t *r)
{
    r->away = 0;
    if (!r->away_status)
        return 0;
    cm_res_send(r, r->away_status);
    return 1;
}

void cm_req_unanswer(cm_req_t *r)
{
    r->away_status = 0;
    r->content_type_set = 0;
    cm_buf_reset(&r->res_body);
    cm_buf_reset(&r->res_headers);
}

void cm_res_send(cm_req_t *r, int status)
{
    if (r->away) { /* on a store thread: the worker's loop sends it (cm_req_back) */
        r->away_status = status;
        return;
    }
    cm_conn_t *c = r->conn;
    if (!c) { /* the client left while we worked: nothing is sent; counted and logged as
               * 499 (nginx's "client closed request"), whatever the answer would have been */
        cm__account(r->loop->data, r, 499, 0);
        cm__req_release(r);
        return;
    }
    worker_t *w = c->w;
    r->status = status;
    if (c->cur == r)
        cm__cur_finished(c, r);
    int close = !r->keep_alive || c->close_pending || w->draining;
    if (close)
        c->close_pending = 1;
    render(w, r, close);
    cm__account(w, r, status, r->out.len);
    if (!c->in_read)
        cm__conn_flush(c);
}

/* ------------------------------------------------------------------------- */
/* connections                                                                */

void cm__kick_unlink(cm_conn_t *c)
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
    cm_parser_free(&c->parser);
    cm_buf_free(&c->stash);
    buf_park(c->w, &c->wbuf);
    if (c->inflight) /* libuv ran its callback before this one: never in practice */
        wstate_release(c->w, c->inflight);
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

void cm__conn_close(cm_conn_t *c)
{
    if (c->closing)
        return;
    worker_t *w = c->w;
    c->closing = 1;
    /* answers still being computed are detached: cm_res_send() frees them */
    for (cm_req_t *r = c->head, *next; r; r = next) {
        next = r->next;
        if (r->status) {
            cm__req_release(r);
        } else {
            r->conn = NULL;
            r->next = NULL;
        }
    }
    c->head = c->tail = NULL;
    if (c->cur && c->cur->streaming) /* off the queue while its answer streams */
        c->cur->conn = NULL;
    c->cur = NULL;
    cm__kick_unlink(c); /* the conn is freed before the next check */
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
    free(req); /* lingering goes on until EOF or the linger timer */
}

/* Half-closes after the last answer, and reads (and drops) what the client still
 * sends for a while: closing with unread input would reset the connection and
 * could destroy the error answer before the client read it. */
static void conn_linger(cm_conn_t *c)
{
    if (c->lingering || c->closing)
        return;
    if (c->peer_eof) { /* everything read and written: close() sends FIN, not RST */
        cm__conn_close(c);
        return;
    }
    c->lingering = 1;
    /* allocated here, once per closing connection, rather than held by every one */
    uv_shutdown_t *sreq = malloc(sizeof *sreq);
    if (!sreq || uv_shutdown(sreq, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        free(sreq);
        cm__conn_close(c);
        return;
    }
    c->mode = T_LINGER;
    cm_timeout_set(&c->timer, LINGER_MS);
    /* cm__conn_fail() stopped reading; without reads the client's EOF goes unseen (the
     * connection waits out LINGER_MS) and its unread bytes turn our close into a reset */
    if (!c->reading)
        cm__start_read(c);
}

static void on_written(uv_write_t *req, int status)
{
    cm_conn_t *c = req->data;
    c->writing = 0;
    wstate_release(c->w, c->inflight);
    c->inflight = NULL;
    if (c->closing)
        return;
    if (status < 0) {
        cm__conn_close(c);
        return;
    }
    cm__conn_flush(c);
    if (c->stream)
        cm__maybe_drain(c);
}

/* Moves answered requests at the head of the queue into wbuf and writes it:
 * uv_try_write first (no allocation, usually all of it), uv_write for the rest. */
void cm__move_answered(cm_conn_t *c)
{
    while (c->head && c->head->status && !c->head->streaming) {
        cm_req_t *r = c->head;
        c->head = r->next;
        if (!c->head)
            c->tail = NULL;
        c->queued--;
        cm_buf_append(&c->wbuf, r->out.data, r->out.len);
        cm__req_release(r);
    }
}

void cm__conn_flush(cm_conn_t *c)
{
    if (c->closing)
        return;
    cm__move_answered(c);
    if (!c->writing && c->wbuf.len) {
        ssize_t n = cm_sock_send(c->fd, c->wbuf.data, c->wbuf.len);
        if (n < 0 && n != -EAGAIN) {
            cm__conn_close(c);
            return;
        }
        size_t done = n > 0 ? (size_t)n : 0;
        if (done < c->wbuf.len) {
            wstate_t *ws = wstate_get(c->w);
            if (!ws) {
                cm__conn_close(c);
                return;
            }
            /* swap so wbuf can take new answers while the kernel takes these */
            cm_buf_t t = ws->buf;
            ws->buf = c->wbuf;
            c->wbuf = t;
            cm_buf_reset(&c->wbuf);
            uv_buf_t b = uv_buf_init(ws->buf.data + done, (unsigned)(ws->buf.len - done));
            ws->req.data = c;
            c->inflight = ws;
            if (uv_write(&ws->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0) {
                c->inflight = NULL;
                wstate_release(c->w, ws);
                cm__conn_close(c);
                return;
            }
            c->writing = 1;
        } else {
            cm_buf_reset(&c->wbuf);
        }
    }
    if (!c->writing && !c->wbuf.len && !c->head && !c->cur)
        buf_park(c->w, &c->wbuf); /* nothing owed: the buffer serves other connections */
    if (c->stream)
        cm__stream_update_read(c);
    if (c->writing)
        return;
    if (c->close_pending && !c->head && !c->cur) {
        conn_linger(c);
        return;
    }
    if (!c->stream && !c->reading && c->queued < MAX_PIPELINED / 2 && !c->w->draining)
        cm__start_read(c);
    conn_timer_update(c);
}

/* Starts r's clock and id and queues it behind the earlier answers (pipelining). */
static void enqueue(cm_conn_t *c, cm_req_t *r)
{
    wbuf_attach(c); /* its answer will need one */
    r->start_ns = uv_hrtime();
    set_request_id(c->w, r);
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->queued++;
    cm_metrics_inflight_add(c->w->srv->metrics, 1);
}

/* An error found while framing: answer it after the earlier answers, then close. */
void cm__conn_fail(cm_conn_t *c, int status, const char *msg)
{
    cm_req_t *r = cm__req_get(c);
    if (!r) {
        cm__conn_close(c);
        return;
    }
    /* the request never completed: log what we know of it */
    r->method = CM_METHOD_OTHER;
    r->method_name = "-";
    r->target = (cm_str_t){"-", 1};
    r->nheaders = 0;
    r->keep_alive = 0;
    r->route = cm_router_npatterns(c->w->srv->router);
    enqueue(c, r);
    c->close_pending = 1;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
    cm_res_error(r, status, "%s", msg);
}

/* Queues r behind the earlier answers and hands it to its route's handler, the
 * service's fallback, or a 404/405 answer. */
void cm__route(cm_conn_t *c, cm_req_t *r)
{
    worker_t *w = c->w;
    r->logged = cm_log_stream_on(w->log);
    enqueue(c, r);
    int status = 0;
    char allow[64];
    if (c->admin) { /* the admin listener serves the service's admin API and nothing else */
        r->route = cm_router_npatterns(w->srv->router);
        r->nparams = 0;
        w->srv->svc->admin(r);
        return;
    }
    cm_handler_fn h = cm_router_match(w->srv->router, r, &status, allow, sizeof allow);
    if (!h && status == 204 && r->path.len == 1 && r->path.p[0] == '*' &&
        w->srv->svc->fallback) /* the gateway: OPTIONS * is about it, not an upstream */
        snprintf(allow, sizeof allow, "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS");
    if (!h && status == 204) { /* OPTIONS: the methods of the path, or of the server */
        cm_res_header(r, "Allow", "%s", allow);
        cm_res_send(r, 204);
        return;
    }
    if (!h && (status == 400 || status == 500)) {
        cm_res_error(r, status, "%s",
                     status == 400 ? "bad percent-encoding in the path: every % takes two hex "
                                     "digits, and %00 is not allowed"
                                   : "out of memory");
        return;
    }
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
    cm_req_t *r = cm__req_get(c);
    if (!r) {
        cm__conn_close(c);
        return;
    }
    cm_parser_take(&c->parser, r);
    cm__route(c, r);
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

/* True when a complete request on c still waits for (the rest of) its answer: the
 * queue holds one (services), answer bytes wait to be written, or stream mode's current
 * request has its whole body. */
static int answer_owed(const cm_conn_t *c)
{
    if (c->stream && c->cur) /* one at a time; queued too until its answer starts */
        return c->cur_done && c->cur->body_complete;
    return c->head || c->writing || c->wbuf.len; /* answered but not yet written counts */
}

/* The stream-mode handler of c's current request asked to hear of the client leaving
 * (cm_req_on_gone) and has not started answering. */
static cm_req_t *gone_wanted(const cm_conn_t *c)
{
    cm_req_t *r = c->stream ? c->cur : NULL;
    return r && r->gone_cb && !r->status && !r->streaming ? r : NULL;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    cm_conn_t *c = stream->data;
    /* a request whose handler waits on the client's behalf (gone_wanted) takes an EOF as
     * the client leaving, as nginx does while it waits for an upstream */
    if (nread == UV_EOF && !c->lingering && !c->closing && answer_owed(c) && !gone_wanted(c)) {
        /* RFC 9112 9.6: a client that half-closes after a whole request has still
         * asked; it gets its answers, then the connection closes. */
        c->peer_eof = 1;
        c->close_pending = 1;
        if (c->reading) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = 0;
        }
        if (!c->in_read)
            cm__conn_flush(c);
        return;
    }
    if (nread < 0) {
        cm_req_t *r = c->cur; /* unanswered, or answering in pieces: it outlives the conn */
        int owed = r && r->body_cb && !r->body_done && (!r->status || r->streaming);
        cm_req_t *gone = owed ? NULL : gone_wanted(c);
        cm__conn_close(c);
        if (owed)
            body_abandoned(r);
        else if (gone)
            gone->gone_cb(gone, gone->gone_arg);
        return;
    }
    if (nread == 0 || c->lingering || c->close_pending)
        return; /* after a final answer, input is drained and dropped */
    /* before any handler of these bytes runs: see cm_server_reads */
    c->w->reads++;
    if (c->stream) {
        cm__stream_on_read(c, buf->base, (size_t)nread);
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
            cm__conn_fail(c, c->parser.error_status, c->parser.error_msg);
            break;
        } else if (ev == CM_PARSE_DONE) {
            dispatch(c);
        } else if (ev == CM_PARSE_HEAD) {
            if (!c->head) { /* 100 only when no earlier answer is still owed */
                wbuf_attach(c);
                cm_buf_append_str(&c->wbuf, "HTTP/1.1 100 Continue\r\n\r\n");
            }
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
    cm__conn_flush(c);
}

void cm__start_read(cm_conn_t *c)
{
    if (c->peer_eof) /* the socket would report EOF again at once, on every iteration */
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = 1;
}

static void on_conn_timer(cm_timeout_t *t)
{
    cm_conn_t *c = t->data;
    if (c->mode == T_REQUEST) {
        c->mode = T_NONE;
        cm__conn_fail(c, 408, "request not received in time");
        if (!c->in_read)
            cm__conn_flush(c);
        return;
    }
    cm__conn_close(c); /* idle or linger */
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
    struct ucred cred;
    socklen_t clen = sizeof cred;
    if (c->admin && c->w->srv->svc->admin_socket &&
        getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) {
        snprintf(c->peer, sizeof c->peer, "unix:uid=%u", (unsigned)cred.uid);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) < 0)
        return;
    if (ss.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof c->peer);
    else if (ss.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
}

void cm__on_connection(uv_stream_t *listener, int status)
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
    /* libuv accepts a unix socket's connection into a tcp handle too: the stream calls
     * are the same, and the rest of the connection code needs one handle type */
    c->admin = listener == (uv_stream_t *)&w->admin;
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
    c->stream = w->srv->svc->stream != 0;
    cm_parser_init(&c->parser,
                   &(cm_parser_limits_t){o->max_header, o->max_uri, o->max_body, c->stream});
    cm_parser_set_pool(&c->parser, &w->parse_pool);
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
                         cm__date_header(w), sizeof body - 1, id, body);
        uv_buf_t b = uv_buf_init(busy, (unsigned)n);
        uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        cm__conn_close(c);
        return;
    }
    cm__start_read(c);
    conn_timer_update(c);
}
