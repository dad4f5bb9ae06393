/* gateway/upstream.c: the HTTP/1.1 client side of the gateway: connections to upstream
 * instances (connect, keep-alive pool per instance with max idle, max total and idle
 * timeout, the wait queue when an instance is at its connection cap), raw writes, and
 * the response parsed (core/parser's cm_resparse) into the callbacks the exchange handed
 * down with its request (gw_up_cbs_t). Every callback runs from the loop: what is
 * decided inside a call (an idle connection handed over, a waiter served on release, a
 * connect that could not start for a waiter) is delivered from the worker's defer list,
 * which a uv_check handle runs after the iteration's I/O (as core/stream.c's kick list). */
#include "gateway/upstream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/http.h"
#include "core/parser.h"
#include "core/sock.h"
#include "gateway/gateway_types.h"
#include "gateway/table.h"

#define MAX_RHEAD (64 * 1024) /* upstream response head bytes */

/* One keep-alive connection to an instance. */
struct gw_uconn {
    uv_tcp_t tcp; /* first: handle data is the uconn */
    uv_connect_t creq;
    gw_inst_t *inst;        /* alive while the connection is idle (closed with it) or busy
                               (its exchange holds it), or through holds_inst */
    int holds_inst;         /* given up on while connecting: a reference until on_connect */
    gw_uconn_t *next;       /* idle list */
    const gw_up_cbs_t *cbs; /* of the exchange using it; NULL when idle */
    void *arg;              /* for cbs */
    gw_waiter_t *wt;        /* connecting for, or handed to (not yet delivered) */
    cm_resparse_t rp;       /* the exchange's response */
    cm_buf_t rhead;         /* its head's bytes, rh[] the fields in them */
    gw_hdr_off_t rh[CM_MAX_HEADERS];
    int nrh, in_value;
    int info;               /* inside a 1xx answer: not passed on, the real head follows */
    int complete;           /* the parser saw the response end */
    uint64_t idle_since_ms; /* loop time */
    size_t wpending;        /* bytes handed to uv_write, not yet written */
    int fd;                 /* the socket's once connected: requests are sent with cm_sock_send */
    int reused;             /* it served an earlier request */
    int closing;
    int reading;
};

typedef struct wreq {
    uv_write_t req;
    gw_uconn_t *uc;
    size_t len;
    char data[];
} wreq_t;

static void serve_pending(gw_inst_t *in);

static void uconn_freed(uv_handle_t *h)
{
    gw_uconn_t *uc = h->data;
    cm_buf_free(&uc->rhead);
    free(uc);
}

void gw_uconn_close(gw_uconn_t *uc)
{
    if (uc->closing)
        return;
    uc->closing = 1;
    gw_inst_t *in = uc->inst;
    in->nconns--;
    gw_up_pool_add(in->stats, 0, -1);
    gw_inst_drain_note(in);
    if (uc->wt && uc->wt->handed == uc) { /* handed over, not delivered: it is told so */
        uc->wt->handed = NULL;
        uc->wt->status = UV_ECONNRESET;
        uc->wt = NULL;
    }
    uv_close((uv_handle_t *)&uc->tcp, uconn_freed);
}

int gw_uconn_reused(const gw_uconn_t *uc)
{
    return uc->reused;
}

size_t gw_uconn_pending(const gw_uconn_t *uc)
{
    return uc->wpending;
}

int gw_uconn_keep_alive(const gw_uconn_t *uc)
{
    return cm_resparse_keep_alive(&uc->rp);
}

/* ------------------------------------------------------------------------- */
/* the defer list: connections handed over (or refused) inside a call           */

static void on_defer_idle(uv_idle_t *h)
{
    (void)h; /* only there so the poll does not block while work is deferred */
}

static void take(gw_uconn_t *uc, gw_waiter_t *wt);

static void on_defer_check(uv_check_t *h)
{
    gw_worker_t *w = h->data;
    gw_waiter_t *wt;
    while ((wt = w->deferred)) { /* callbacks may defer more: those run here too */
        w->deferred = wt->next;
        if (!w->deferred)
            w->deferred_tail = NULL;
        wt->next = NULL;
        wt->deferred = 0;
        gw_uconn_t *uc = wt->handed;
        wt->handed = NULL;
        if (uc) {
            uc->wt = NULL;
            take(uc, wt);
            wt->cbs->connected(wt->arg, uc, 0);
        } else {
            wt->cbs->connected(wt->arg, NULL, wt->status);
        }
    }
    if (w->defer_on) { /* both run only while something is deferred */
        uv_check_stop(&w->defer_check);
        uv_idle_stop(&w->defer_idle);
        w->defer_on = 0;
    }
}

/* wt gets uc (or, with uc NULL, the failure status) from the loop. */
static void defer(gw_inst_t *in, gw_waiter_t *wt, gw_uconn_t *uc, int status)
{
    gw_worker_t *w = in->w;
    wt->handed = uc;
    wt->status = status;
    wt->deferred = 1;
    wt->next = NULL;
    if (uc)
        uc->wt = wt;
    if (w->deferred_tail)
        w->deferred_tail->next = wt;
    else
        w->deferred = wt;
    w->deferred_tail = wt;
    if (!w->defer_on) {
        uv_check_start(&w->defer_check, on_defer_check);
        uv_idle_start(&w->defer_idle, on_defer_idle);
        w->defer_on = 1;
    }
}

static void defer_unlink(gw_worker_t *w, gw_waiter_t *wt)
{
    gw_waiter_t *prev = NULL;
    for (gw_waiter_t *p = w->deferred; p; prev = p, p = p->next) {
        if (p != wt)
            continue;
        if (prev)
            prev->next = p->next;
        else
            w->deferred = p->next;
        if (w->deferred_tail == p)
            w->deferred_tail = prev;
        break;
    }
    wt->next = NULL;
    wt->deferred = 0;
}

void gw_upstream_worker_init(gw_worker_t *w)
{
    uv_check_init(w->loop, &w->defer_check);
    w->defer_check.data = w;
    uv_idle_init(w->loop, &w->defer_idle);
    w->defer_idle.data = w;
}

void gw_upstream_worker_close(gw_worker_t *w, uv_close_cb done)
{
    uv_close((uv_handle_t *)&w->defer_check, done);
    uv_close((uv_handle_t *)&w->defer_idle, done);
}

/* ------------------------------------------------------------------------- */
/* the response: parsed here, delivered through the exchange's callbacks          */

static int rh_append(gw_uconn_t *uc, const char *at, size_t len)
{
    if (uc->rhead.len + len > MAX_RHEAD || cm_buf_append(&uc->rhead, at, len) < 0)
        return -1; /* a protocol error for the caller */
    return 0;
}

static int on_message_begin(void *arg)
{
    gw_uconn_t *uc = arg;
    cm_buf_reset(&uc->rhead);
    uc->nrh = 0;
    uc->in_value = 0;
    return 0;
}

static int on_header_field(void *arg, const char *at, size_t len)
{
    gw_uconn_t *uc = arg;
    if (uc->in_value || uc->nrh == 0) {
        if (uc->nrh == CM_MAX_HEADERS)
            return -1;
        uc->rh[uc->nrh++] = (gw_hdr_off_t){.no = (uint32_t)uc->rhead.len};
        uc->in_value = 0;
    }
    uc->rh[uc->nrh - 1].nl += (uint32_t)len;
    return rh_append(uc, at, len);
}

static int on_header_value(void *arg, const char *at, size_t len)
{
    gw_uconn_t *uc = arg;
    gw_hdr_off_t *h = &uc->rh[uc->nrh - 1];
    if (!uc->in_value) {
        h->vo = (uint32_t)uc->rhead.len;
        uc->in_value = 1;
    }
    h->vl += (uint32_t)len;
    return rh_append(uc, at, len);
}

/* RFC 9110 5.5: the value's trailing OWS is not part of it, so it is not forwarded. */
static int on_header_value_done(void *arg)
{
    gw_uconn_t *uc = arg;
    if (uc->nrh == 0)
        return 0;
    gw_hdr_off_t *h = &uc->rh[uc->nrh - 1];
    if (!uc->in_value) { /* an empty value: no value piece came */
        h->vo = (uint32_t)uc->rhead.len;
        uc->in_value = 1;
    }
    size_t vl = h->vl;
    cm_ows_trim_end(uc->rhead.data + h->vo, &vl);
    h->vl = (uint32_t)vl;
    return 0;
}

static int on_headers_complete(void *arg, int status, int64_t content_length)
{
    gw_uconn_t *uc = arg;
    if (status >= 100 && status < 200) {
        uc->info = 1; /* 100 Continue and friends: not forwarded, the real head follows */
        return 0;
    }
    return uc->cbs->head(uc->arg, status, content_length, uc->rhead.data, uc->rh, uc->nrh);
}

static int on_body(void *arg, const char *at, size_t len)
{
    gw_uconn_t *uc = arg;
    if (uc->info)
        return 0;
    return uc->cbs->body(uc->arg, at, len);
}

static int on_message_complete(void *arg)
{
    gw_uconn_t *uc = arg;
    if (uc->info) {
        uc->info = 0;
        return 0;
    }
    uc->complete = 1;
    return 1; /* stop here: bytes after it are not this exchange's */
}

static const cm_resparse_cbs_t res_cbs = {
    .begin = on_message_begin,
    .field = on_header_field,
    .value = on_header_value,
    .value_done = on_header_value_done,
    .head = on_headers_complete,
    .body = on_body,
    .done = on_message_complete,
};

/* uc becomes wt's: its response goes to wt's callbacks. */
static void take(gw_uconn_t *uc, gw_waiter_t *wt)
{
    uc->cbs = wt->cbs;
    uc->arg = wt->arg;
    uc->info = uc->complete = 0;
    cm_buf_shrink(&uc->rhead, 4096);
    cm_resparse_begin(&uc->rp, &res_cbs, uc);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    gw_uconn_t *uc = h->data;
    buf->base = uc->inst->w->rbuf;
    buf->len = 64 * 1024;
}

/* Removes uc from its instance's idle list. */
static void idle_unlink(gw_uconn_t *uc)
{
    gw_inst_t *in = uc->inst;
    for (gw_uconn_t **p = &in->idle; *p; p = &(*p)->next) {
        if (*p == uc) {
            *p = uc->next;
            uc->next = NULL;
            in->nidle--;
            gw_up_pool_add(in->stats, -1, 1);
            return;
        }
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    gw_uconn_t *uc = s->data;
    if (nread == 0)
        return;
    if (!uc->cbs) { /* idle (or handed over, not yet delivered): the upstream closed it */
        idle_unlink(uc);
        gw_uconn_close(uc);
        return;
    }
    const gw_up_cbs_t *cbs = uc->cbs;
    void *arg = uc->arg;
    if (nread < 0) {
        /* a body delimited by the close ends here */
        if (nread == UV_EOF && cm_resparse_eof(&uc->rp) == 0 && uc->complete)
            cbs->done(arg, 0);
        else
            cbs->error(arg, GW_FAIL_RESET);
        return;
    }
    size_t n = 0;
    int e = cm_resparse_feed(&uc->rp, buf->base, (size_t)nread, &n);
    if (uc->complete) /* bytes after the response: out of step, not reusable */
        cbs->done(arg, n == (size_t)nread);
    else if (e < 0)
        cbs->error(arg, GW_FAIL_PROTOCOL);
}

void gw_uconn_read_start(gw_uconn_t *uc)
{
    if (!uc->reading && !uc->closing &&
        uv_read_start((uv_stream_t *)&uc->tcp, on_alloc, on_read) == 0)
        uc->reading = 1;
}

void gw_uconn_read_stop(gw_uconn_t *uc)
{
    if (uc->reading) {
        uv_read_stop((uv_stream_t *)&uc->tcp);
        uc->reading = 0;
    }
}

static void on_written(uv_write_t *req, int status)
{
    wreq_t *wr = (wreq_t *)req;
    gw_uconn_t *uc = wr->uc;
    uc->wpending -= wr->len;
    free(wr);
    if (uc->closing || !uc->cbs)
        return;
    if (status < 0)
        uc->cbs->error(uc->arg, GW_FAIL_RESET); /* a broken connection */
    else
        uc->cbs->drained(uc->arg);
}

int gw_uconn_write(gw_uconn_t *uc, const char *data, size_t len)
{
    if (uc->closing)
        return UV_EPIPE;
    size_t done = 0;
    if (!uc->wpending) {
        ssize_t n = cm_sock_send(uc->fd, data, len);
        if (n < 0 && n != -EAGAIN)
            return (int)n;
        done = n > 0 ? (size_t)n : 0;
    }
    if (done == len)
        return 0;
    size_t left = len - done;
    wreq_t *wr = malloc(sizeof *wr + left);
    if (!wr)
        return UV_ENOMEM;
    memcpy(wr->data, data + done, left);
    wr->uc = uc;
    wr->len = left;
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)left);
    int rc = uv_write(&wr->req, (uv_stream_t *)&uc->tcp, &b, 1, on_written);
    if (rc < 0) {
        free(wr);
        return rc;
    }
    uc->wpending += left;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* getting a connection                                                       */

static void connect_done(gw_uconn_t *uc, int status)
{
    gw_waiter_t *wt = uc->wt;
    if (wt) {
        wt->connecting = NULL;
        uc->wt = NULL;
    }
    if (uc->closing) /* the exchange gave up first (timeout) */
        return;
    if (status < 0) {
        gw_inst_t *in = uc->inst;
        gw_uconn_close(uc);
        if (wt)
            wt->cbs->connected(wt->arg, NULL, status);
        serve_pending(in);
        return;
    }
    uv_tcp_nodelay(&uc->tcp, 1);
    uv_os_fd_t fd;
    uc->fd = uv_fileno((uv_handle_t *)&uc->tcp, &fd) == 0 ? fd : -1;
    if (!wt) { /* nobody waits any more: keep it */
        gw_uconn_release(uc, 1);
        return;
    }
    take(uc, wt);
    wt->cbs->connected(wt->arg, uc, 0);
}

static void on_connect(uv_connect_t *creq, int status)
{
    gw_uconn_t *uc = creq->data;
    gw_inst_t *in = uc->inst;
    int held = uc->holds_inst;
    uc->holds_inst = 0;
    int stopping = in->w->stopping; /* the loop's handles are being closed by the walk */
    connect_done(uc, status);
    if (held && !stopping)
        gw_inst_unref(in); /* the last one closes uc (pooled by now) and frees in */
}

static int uconn_connect(gw_inst_t *in, gw_waiter_t *wt)
{
    gw_uconn_t *uc = calloc(1, sizeof *uc);
    if (!uc)
        return -ENOMEM;
    uc->inst = in;
    uc->wt = wt;
    wt->connecting = uc;
    uv_tcp_init(in->w->loop, &uc->tcp);
    uc->tcp.data = uc;
    uc->creq.data = uc;
    in->nconns++;
    gw_up_pool_add(in->stats, 0, 1);
    gw_inst_drain_note(in);
    int rc = uv_tcp_connect(&uc->creq, &uc->tcp, (const struct sockaddr *)&in->addr, on_connect);
    if (rc < 0) {
        uc->wt = NULL;
        wt->connecting = NULL;
        gw_uconn_close(uc);
        return rc;
    }
    return 0;
}

int gw_uconn_get(gw_inst_t *in, gw_waiter_t *wt, const gw_up_cbs_t *cbs, void *arg)
{
    wt->cbs = cbs;
    wt->arg = arg;
    if (in->idle) {
        gw_uconn_t *uc = in->idle;
        idle_unlink(uc);
        uc->reused = 1;
        defer(in, wt, uc, 0);
        return 0;
    }
    const gw_route_cfg_t *rc = in->cfg;
    if (in->nconns < rc->max_connections)
        return uconn_connect(in, wt);
    if (in->npending >= rc->max_pending)
        return -EBUSY;
    wt->next = NULL;
    wt->queued = 1;
    if (in->pending_tail)
        in->pending_tail->next = wt;
    else
        in->pending = wt;
    in->pending_tail = wt;
    in->npending++;
    return 1;
}

void gw_uconn_cancel_wait(gw_inst_t *in, gw_waiter_t *wt)
{
    if (wt->connecting) { /* it will land in the pool when the connect completes */
        gw_uconn_t *uc = wt->connecting;
        uc->wt = NULL;
        wt->connecting = NULL;
        if (!uc->holds_inst) { /* no exchange holds in for it now: a reload may drop in */
            uc->holds_inst = 1;
            in->refs++;
        }
    }
    if (wt->deferred) {
        defer_unlink(in->w, wt);
        gw_uconn_t *uc = wt->handed;
        wt->handed = NULL;
        if (uc) { /* handed over but never delivered: back to the pool (or a waiter) */
            uc->wt = NULL;
            gw_uconn_release(uc, 1);
        }
        return;
    }
    if (!wt->queued)
        return;
    wt->queued = 0;
    gw_waiter_t *prev = NULL;
    for (gw_waiter_t *p = in->pending; p; prev = p, p = p->next) {
        if (p != wt)
            continue;
        if (prev)
            prev->next = p->next;
        else
            in->pending = p->next;
        if (in->pending_tail == p)
            in->pending_tail = prev;
        in->npending--;
        return;
    }
}

static gw_waiter_t *pending_pop(gw_inst_t *in)
{
    gw_waiter_t *wt = in->pending;
    if (!wt)
        return NULL;
    in->pending = wt->next;
    if (!in->pending)
        in->pending_tail = NULL;
    in->npending--;
    wt->queued = 0;
    wt->next = NULL;
    return wt;
}

/* A connection slot opened up (one closed): the first waiters connect. */
static void serve_pending(gw_inst_t *in)
{
    while (in->pending && in->nconns < in->cfg->max_connections) {
        gw_waiter_t *wt = pending_pop(in);
        int rc = uconn_connect(in, wt);
        if (rc < 0)
            defer(in, wt, NULL, rc); /* reported from the loop, never inside this call */
    }
}

void gw_uconn_release(gw_uconn_t *uc, int reusable)
{
    gw_inst_t *in = uc->inst;
    uc->cbs = NULL;
    uc->arg = NULL;
    if (uc->closing)
        return;
    if (!reusable || uc->wpending || in->w->stopping || in->removed) {
        gw_uconn_close(uc);
        serve_pending(in);
        return;
    }
    gw_waiter_t *next = pending_pop(in);
    if (next) { /* a waiter takes it over, from the loop */
        uc->reused = 1;
        defer(in, next, uc, 0);
        return;
    }
    uc->idle_since_ms = uv_now(in->w->loop);
    /* a reader stays on while idle, so an upstream close is seen and the socket dropped */
    gw_uconn_read_start(uc);
    uc->next = in->idle;
    in->idle = uc;
    in->nidle++;
    gw_up_pool_add(in->stats, 1, -1);
    if (in->nidle > in->cfg->pool_max_idle) {
        /* drop the least recently used (the tail) */
        gw_uconn_t **p = &in->idle;
        while ((*p)->next)
            p = &(*p)->next;
        gw_uconn_t *last = *p;
        idle_unlink(last);
        gw_uconn_close(last);
    }
}

void gw_inst_close_idle(gw_inst_t *in, uint64_t older_than_ms)
{
    gw_uconn_t **p = &in->idle;
    while (*p) {
        gw_uconn_t *uc = *p;
        if (!older_than_ms || uc->idle_since_ms < older_than_ms) {
            idle_unlink(uc);
            gw_uconn_close(uc);
        } else {
            p = &uc->next;
        }
    }
}
