/* core/stream.c: the server's stream mode (cm_service_t.stream: the gateway). One request
 * at a time per connection: the handler runs at the head, reads the body in pieces with
 * pause/resume as backpressure, and answers in pieces (cm_res_start/write/end) with
 * high/low-water marks; pipelined bytes wait in a stash. Work asked for from inside an
 * API call runs from the worker's kick list after the loop's I/O callbacks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/server_int.h"

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
void cm__stream_update_read(cm_conn_t *c)
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
        cm__start_read(c);
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static size_t pending_bytes(const cm_conn_t *c)
{
    return c->wbuf.len + (c->inflight ? c->inflight->buf.len : 0);
}

/* Called from loop callbacks only (never from cm_res_write) so the producer is not
 * re-entered. */
void cm__maybe_drain(cm_conn_t *c)
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
    cm__stream_update_read(c);
    if (r->body_cb && !r->body_done) {
        r->body_done = 1;
        r->body_cb(r, NULL, 0, 1, r->body_arg);
    }
}

static void stream_dispatch(cm_conn_t *c)
{
    cm_req_t *r = cm__req_get(c);
    if (!r) {
        cm__conn_close(c);
        return;
    }
    r->expect_100 = c->parser.expect_continue;
    cm_parser_take(&c->parser, r);
    r->body_complete = !r->has_body;
    c->cur = r;
    c->cur_done = 0;
    c->paused = 0;
    c->close_after = 0;
    cm__route(c, r);
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
                cm__conn_fail(c, c->parser.error_status, c->parser.error_msg);
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
    if (!c->stash.len) /* only a connection with a partial request holds received bytes */
        cm_buf_free(&c->stash);
}

void cm__stream_on_read(cm_conn_t *c, const char *data, size_t len)
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
        cm__conn_close(c);
    if (c->closing)
        return;
    cm__conn_flush(c);
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
    cm__conn_flush(c);
    cm__maybe_drain(c);
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
        cm__kick_unlink(c);
        run_kick(c);
    }
    if (!w->kicked && w->kick_on) {
        w->kick_on = 0;
        uv_check_stop(&w->kick_check);
        uv_idle_stop(&w->kick_idle);
    }
}

/* Runs run_kick(c) from the loop, after the current callback, once however often asked. */
void cm__conn_kick(cm_conn_t *c)
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
        cm__conn_flush(c);
    else
        cm__conn_kick(c);
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
        cm__move_answered(c);
        cm_buf_append_str(&c->wbuf, "HTTP/1.1 100 Continue\r\n\r\n");
    }
    r->expect_100 = 0;
    cm__conn_kick(c);
}

void cm_req_on_gone(cm_req_t *r, cm_gone_cb cb, void *arg)
{
    r->gone_cb = cb;
    r->gone_arg = arg;
}

void cm_req_body_pause(cm_req_t *r)
{
    cm_conn_t *c = r->conn;
    if (!c || c->closing || c->cur != r || c->paused)
        return;
    c->paused = 1;
    cm__stream_update_read(c);
}

void cm_req_body_resume(cm_req_t *r)
{
    cm_conn_t *c = r->conn;
    if (!c || c->closing || c->cur != r || !c->paused)
        return;
    c->paused = 0;
    cm__conn_kick(c); /* the stash first, then the socket again */
}

static void append_stream_head(worker_t *w, cm_req_t *r, int64_t content_length, int close)
{
    cm_buf_t *o = &r->conn->wbuf;
    int status = r->status;
    cm__append_status_line(o, status);
    cm_buf_append_str(o, cm__date_header(w));
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
    else if (r->http_minor == 0) /* RFC 9112 9.3: a 1.0 client closes unless told so */
        cm_buf_append_str(o, "Connection: keep-alive\r\n");
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
    cm__move_answered(c); /* earlier answers go first; r's bytes follow them in wbuf */
    if (c->head == r) {
        c->head = r->next;
        if (!c->head)
            c->tail = NULL;
        c->queued--;
        r->next = NULL;
    }
    int close_delimited = !r->res_nobody && content_length < 0 && !r->res_chunked;
    int close = !r->keep_alive || w->draining || close_delimited || c->close_pending;
    c->close_after = close != 0;
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
            cm__conn_close(c);
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
    cm__account(w, r, r->status, r->res_bytes);
    if (!c) {
        cm__req_release(r);
        return;
    }
    if (truncated || w->draining)
        c->close_after = 1; /* the client must see the cut, never a shorter message */
    cm__cur_finished(c, r);
    cm__req_release(r);
    if (!c->in_read)
        cm__conn_flush(c);
}
