/* gateway/upstream.h: the gateway's HTTP/1.1 client to its instances (upstream.c):
 * pooled connections, the wait queue, the response parsed into callbacks the exchange
 * hands down. gw_uconn_t is opaque. */
#ifndef CMESH_GATEWAY_UPSTREAM_H
#define CMESH_GATEWAY_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "gateway/headers.h"
#include "gateway/retry.h"
#include "gateway/table_types.h"

/* What upstream.c tells the exchange that asked for a connection (gw_uconn_get). Each
 * is called from the loop, never inside the upstream.c call that asked; none may be NULL;
 * arg is the one handed down with the request. */
typedef struct gw_up_cbs {
    /* The connection is the caller's (uc), or none could be had (uc NULL, status a
     * negative libuv error). */
    void (*connected)(void *arg, gw_uconn_t *uc, int status);
    /* The final response head (1xx ones are not passed on): the fields as offsets into
     * head, borrowed for the call. Returns 0 (a body may follow), 1 (no body: the answer
     * to a HEAD) or -1 (stop: reported through error). */
    int (*head)(void *arg, int status, int64_t content_length, const char *head,
                const gw_hdr_off_t *h, int nh);
    /* A piece of the body, framing removed. 0, or -1 to stop (the client left). */
    int (*body)(void *arg, const char *at, size_t len);
    /* The response is whole; clean: nothing came after it (the connection may be kept). */
    void (*done)(void *arg, int clean);
    /* The connection broke (GW_FAIL_RESET) or the answer is not HTTP (GW_FAIL_PROTOCOL). */
    void (*error)(void *arg, gw_fail_t why);
    /* Writes that had to wait went out: the request body may flow again. */
    void (*drained)(void *arg);
} gw_up_cbs_t;

/* An exchange's request for a connection of an instance (embedded in gw_exch_t). */
typedef struct gw_waiter {
    struct gw_waiter *next; /* the instance's wait queue, or the worker's defer list */
    const gw_up_cbs_t *cbs; /* the caller's, static */
    void *arg;              /* for cbs */
    gw_uconn_t *connecting; /* the connection being opened for it, if any */
    gw_uconn_t *handed;     /* on the defer list: the connection it gets (NULL: status) */
    int status;             /* on the defer list without a connection: why */
    int queued;             /* in the instance's wait queue */
    int deferred;           /* on the worker's defer list */
} gw_waiter_t;

/* Asks for a connection to in for the caller of wt: cbs->connected(arg, ...) gets it from
 * the loop: an idle one, a new one after connect, or one freed later when the instance is
 * at max_connections and wt waits in its queue. Then the response goes to cbs. wt is the
 * caller's until connected runs or gw_uconn_cancel_wait(). Returns 0 (on its way), 1
 * (queued), or -EBUSY (max_pending waiting already) / -ENOMEM / a libuv error (connect
 * could not start), with no callback then. */
int gw_uconn_get(gw_inst_t *in, gw_waiter_t *wt, const gw_up_cbs_t *cbs, void *arg);
/* Gives the connection back: pooled when reusable (keep-alive, response complete),
 * else closed. A waiting exchange gets it first (from the loop). No callback of the
 * caller's runs after this. */
void gw_uconn_release(gw_uconn_t *uc, int reusable);
/* The caller gave up on its request wt: out of the queue or the defer list, or a connect
 * in progress finishes into the pool instead. No-op when nothing is pending. */
void gw_uconn_cancel_wait(gw_inst_t *in, gw_waiter_t *wt);
/* Writes bytes (copied when they cannot be written at once). 0 or a libuv error. */
int gw_uconn_write(gw_uconn_t *uc, const char *data, size_t len);
void gw_uconn_read_start(gw_uconn_t *uc);
void gw_uconn_read_stop(gw_uconn_t *uc);
int gw_uconn_reused(const gw_uconn_t *uc);     /* it served an earlier request */
size_t gw_uconn_pending(const gw_uconn_t *uc); /* bytes written but not yet sent */
int gw_uconn_keep_alive(const gw_uconn_t *uc); /* the response allows another request */
void gw_inst_close_idle(gw_inst_t *in, uint64_t older_than_ms); /* loop ms; 0 = all */
void gw_uconn_close(gw_uconn_t *uc);
/* The worker's defer handles: init at worker start; close calls done twice. */
void gw_upstream_worker_init(gw_worker_t *w);
void gw_upstream_worker_close(gw_worker_t *w, uv_close_cb done);

#endif
