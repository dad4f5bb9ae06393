/* gateway/upstream.c: connections to upstream instances: connect, keep-alive pool per
 * instance (max idle, max total, idle timeout), the wait queue when an instance is at
 * its connection cap, and raw writes/reads for the exchange that holds a connection.
 * Knows nothing of HTTP beyond the parser slot it carries (proxy.c drives it). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/sock.h"
#include "gateway/gw.h"

typedef struct wreq {
    uv_write_t req;
    gw_uconn_t *uc;
    size_t len;
    char data[];
} wreq_t;

static void serve_pending(gw_inst_t *in);

static void uconn_freed(uv_handle_t *h)
{
    free(h->data);
}

void gw_uconn_close(gw_uconn_t *uc)
{
    if (uc->closing)
        return;
    uc->closing = 1;
    gw_inst_t *in = uc->inst;
    in->nconns--;
    gw_up_pool_add(in->stats, 0, -1);
    uv_close((uv_handle_t *)&uc->tcp, uconn_freed);
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
    if (!uc->ex) { /* idle: the upstream closed it (or sent garbage): drop it */
        idle_unlink(uc);
        gw_uconn_close(uc);
        return;
    }
    gw_exch_on_read(uc->ex, buf->base, nread);
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
    if (uc->closing || !uc->ex)
        return;
    if (status < 0) {
        gw_exch_on_read(uc->ex, NULL, status); /* treated as a broken connection */
        return;
    }
    gw_exch_on_written(uc->ex);
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

static void on_connect(uv_connect_t *creq, int status)
{
    gw_uconn_t *uc = creq->data;
    gw_exch_t *ex = uc->ex;
    if (uc->wt) {
        uc->wt->connecting = NULL;
        uc->wt = NULL;
    }
    if (uc->closing) /* the exchange gave up first (timeout) */
        return;
    if (status < 0) {
        uc->ex = NULL;
        gw_uconn_close(uc);
        if (ex)
            gw_exch_on_conn(ex, NULL, status);
        serve_pending(uc->inst);
        return;
    }
    uv_tcp_nodelay(&uc->tcp, 1);
    uv_os_fd_t fd;
    uc->fd = uv_fileno((uv_handle_t *)&uc->tcp, &fd) == 0 ? fd : -1;
    if (!ex) { /* nobody waits any more: keep it */
        gw_uconn_release(uc, 1);
        return;
    }
    gw_exch_on_conn(ex, uc, 0);
}

static int uconn_connect(gw_inst_t *in, gw_exch_t *ex, gw_waiter_t *wt)
{
    gw_uconn_t *uc = calloc(1, sizeof *uc);
    if (!uc)
        return -ENOMEM;
    uc->inst = in;
    uc->ex = ex;
    uc->wt = wt;
    wt->connecting = uc;
    uv_tcp_init(in->w->loop, &uc->tcp);
    uc->tcp.data = uc;
    uc->creq.data = uc;
    in->nconns++;
    gw_up_pool_add(in->stats, 0, 1);
    int rc = uv_tcp_connect(&uc->creq, &uc->tcp, (const struct sockaddr *)&in->addr, on_connect);
    if (rc < 0) {
        /* report through the loop like every other failure: never inside the call */
        uc->ex = NULL;
        uc->wt = NULL;
        wt->connecting = NULL;
        gw_uconn_close(uc);
        return rc;
    }
    return 0;
}

int gw_uconn_get(gw_inst_t *in, gw_exch_t *ex, gw_waiter_t *wt)
{
    if (in->idle) {
        gw_uconn_t *uc = in->idle;
        idle_unlink(uc);
        uc->ex = ex;
        uc->reused = 1;
        gw_exch_on_conn(ex, uc, 0);
        return 0;
    }
    const gw_route_cfg_t *rc = in->rt->cfg;
    if (in->nconns < rc->max_connections)
        return uconn_connect(in, ex, wt);
    if (in->npending >= rc->max_pending)
        return -EBUSY;
    wt->ex = ex;
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
        wt->connecting->ex = NULL;
        wt->connecting->wt = NULL;
        wt->connecting = NULL;
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
    return wt;
}

/* A connection slot opened up (one closed): the first waiter connects. */
static void serve_pending(gw_inst_t *in)
{
    while (in->pending && in->nconns < in->rt->cfg->max_connections) {
        gw_waiter_t *wt = pending_pop(in);
        int rc = uconn_connect(in, wt->ex, wt);
        if (rc < 0)
            gw_exch_on_conn(wt->ex, NULL, rc);
    }
}

void gw_uconn_release(gw_uconn_t *uc, int reusable)
{
    gw_inst_t *in = uc->inst;
    uc->ex = NULL;
    if (uc->closing)
        return;
    if (!reusable || uc->wpending || in->w->stopping) {
        gw_uconn_close(uc);
        serve_pending(in);
        return;
    }
    gw_waiter_t *next = pending_pop(in);
    if (next) { /* a waiter takes it over at once */
        uc->ex = next->ex;
        uc->reused = 1;
        gw_exch_on_conn(next->ex, uc, 0);
        return;
    }
    uc->idle_since_ms = uv_now(in->w->loop);
    /* a reader stays on while idle, so an upstream close is seen and the socket dropped */
    gw_uconn_read_start(uc);
    uc->next = in->idle;
    in->idle = uc;
    in->nidle++;
    gw_up_pool_add(in->stats, 1, -1);
    if (in->nidle > in->rt->cfg->pool_max_idle) {
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
