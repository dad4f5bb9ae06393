/* gateway/proxy.c: one client request through the gateway (an exchange): the target
 * routed on and forwarded (path normalized by core/uri, authority), guard checks,
 * instance choice, the upstream request head (headers.c), the body streamed both ways
 * with backpressure, timeouts, and the attempts. Which failure is retried is retry.c's
 * decision; the access-log record of the attempts is exlog.c's. */
#include "gateway/proxy.h"

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/timeout.h"
#include "core/uri.h"
#include "gateway/exlog.h"
#include "gateway/follow.h"
#include "gateway/gateway_types.h"
#include "gateway/guard.h"
#include "gateway/headers.h"
#include "gateway/retry.h"
#include "gateway/snapshot.h"
#include "gateway/table.h"
#include "gateway/upstream.h"

#define GW_MAX_ATTEMPTS 10           /* tries per request: the most retries.attempts allows */
#define REPLAY_MAX      (64 * 1024)  /* request bodies up to this are kept for a retry */
#define BODY_HIGH       (256 * 1024) /* unsent request bytes that pause the client */
#define BODY_LOW        (64 * 1024)

/* Where an exchange is. Besides the route's deadline (armed from the start until the
 * answer starts), the one timer `timer` belongs to the state, as noted. */
typedef enum ex_state {
    EX_DONE,       /* not started, or answered: the object is (going) back to the worker's
                    * free list; no timer -> EX_BODY_WAIT, EX_CONNECTING (a new request) */
    EX_BODY_WAIT,  /* the first try waits for the client's whole body (or a full replay
                    * buffer), so a broken body is a 400 with nothing sent upstream; no
                    * timer -> EX_CONNECTING (attempt_start), EX_DONE */
    EX_CONNECTING, /* a connection of the picked instance is asked for: connect timer ->
                    * EX_QUEUED (at max_connections), EX_WAIT_HEAD (connected, request
                    * written), EX_BACKOFF / EX_DONE (failed) */
    EX_QUEUED,     /* in the instance's wait queue for a connection slot; no timer, the
                    * deadline bounds it (then 503) -> EX_WAIT_HEAD, EX_BACKOFF, EX_DONE */
    EX_WAIT_HEAD,  /* the request is (being) written; waits for the response head; try
                    * timer -> EX_STREAMING, EX_DISCARD (a 503 to retry), EX_BACKOFF,
                    * EX_DONE */
    EX_DISCARD,    /* a 503 that will be retried is read to its end, so its connection can
                    * be reused; try timer -> EX_BACKOFF, EX_DONE */
    EX_BACKOFF,    /* between tries; backoff timer -> EX_CONNECTING, EX_DONE */
    EX_STREAMING,  /* the client's answer started: body pieces forwarded; body idle timer
                    * (try timeout) -> EX_DONE (complete, or aborted: both sides closed) */
    EX_HELD,       /* the route's service is scaled to zero: in the route's hold queue
                    * (ex->held), its body read meanwhile, no deadline yet; cold start
                    * timer -> EX_CONNECTING / EX_BODY_WAIT (a ready set came: dispatch),
                    * EX_DONE (503 past the bound, the client left, the route went) */
} ex_state_t;

/* Transitions allowed from each state (asserted on every change). DONE -> DONE: a
 * request refused before its first try (out of memory, circuit open). */
#define B(s) (1u << (s))
static const unsigned next_ok[] = {
    [EX_DONE] = B(EX_BODY_WAIT) | B(EX_CONNECTING) | B(EX_HELD) | B(EX_DONE),
    [EX_BODY_WAIT] = B(EX_CONNECTING) | B(EX_DONE),
    [EX_CONNECTING] = B(EX_QUEUED) | B(EX_WAIT_HEAD) | B(EX_BACKOFF) | B(EX_DONE),
    [EX_QUEUED] = B(EX_WAIT_HEAD) | B(EX_BACKOFF) | B(EX_DONE),
    [EX_WAIT_HEAD] = B(EX_STREAMING) | B(EX_DISCARD) | B(EX_BACKOFF) | B(EX_DONE),
    [EX_DISCARD] = B(EX_BACKOFF) | B(EX_DONE),
    [EX_BACKOFF] = B(EX_CONNECTING) | B(EX_DONE),
    [EX_STREAMING] = B(EX_DONE),
    [EX_HELD] = B(EX_CONNECTING) | B(EX_BODY_WAIT) | B(EX_DONE),
};
#undef B

/* What else ends an exchange early, besides an attempt's gw_fail_t (exch_fail). */
enum {
    EV_DEADLINE = 100,
    EV_CLIENT_BODY,
    EV_HOLD_EXPIRED, /* held past the route's cold_start bound */
    EV_CLIENT_GONE,  /* the client left while held */
    EV_ROUTE_GONE,   /* a reload removed the route while held */
    EV_STOPPING,     /* the worker stops with requests still held */
};

static const char *const fail_name[] = {"connect", "reset", "timeout", "503", "protocol"};

struct gw_exch {
    gw_worker_t *w;
    gw_exch_t *next_free;
    cm_req_t *req;
    gw_table_t *table;
    gw_rt_t *rt;
    gw_inst_t *inst; /* this attempt's instance (inflight counted) */
    gw_uconn_t *uc;
    gw_waiter_t wait;
    gw_held_t held; /* EX_HELD: in rt->held */
    cm_timeout_t deadline;
    cm_timeout_t timer; /* the state's: connect, per try, backoff, body idle */
    ex_state_t state;
    uint64_t start_ns, try_ns; /* uv_hrtime: latencies */
    uint64_t start_ms, try_ms; /* loop time: timeouts */
    int attempt;
    int tried[GW_MAX_ATTEMPTS];
    int retry_ok; /* idempotent method or Idempotency-Key */
    uint64_t key_hash;
    cm_buf_t head;
    /* request body */
    int has_body, chunked, body_done, replayable, body_paused;
    cm_buf_t body;    /* every byte so far while replayable, else the unsent ones */
    size_t body_sent; /* bytes of body written on the current connection */
    int req_sent;     /* head and whole body written on the current connection */
    int status;       /* the response's, once its head came */
    cm_buf_t log;     /* the "attempts" array under construction */
};

static void attempt_start(gw_exch_t *ex);
static void attempt_failed(gw_exch_t *ex, gw_fail_t why);
static void abort_stream(gw_exch_t *ex);
static void exch_fail(gw_exch_t *ex, int why);
static void on_timer(cm_timeout_t *t);
static void on_deadline(cm_timeout_t *t);
static void unhold(gw_exch_t *ex, int dispatched);
static const char *held_service(const gw_rt_t *rt);
static void on_client_body(cm_req_t *req, const char *data, size_t len, int last, void *arg);

static void set_state(gw_exch_t *ex, ex_state_t to)
{
    assert(next_ok[ex->state] & (1u << to));
    (void)next_ok; /* read only by the assert, gone with NDEBUG */
    ex->state = to;
}

static uint64_t rnd(gw_worker_t *w)
{
    return gw_rand(&w->rng);
}

/* ------------------------------------------------------------------------- */
/* exchange objects: pooled with their timers, never freed while the loop runs   */

static gw_exch_t *exch_get(gw_worker_t *w)
{
    gw_exch_t *ex = w->free_exch;
    if (ex) {
        w->free_exch = ex->next_free;
    } else {
        ex = calloc(1, sizeof *ex);
        if (!ex)
            return NULL;
        ex->w = w;
        cm_timeout_init(w->loop, &ex->deadline, on_deadline, ex);
        cm_timeout_init(w->loop, &ex->timer, on_timer, ex);
    }
    cm_buf_reset(&ex->head);
    cm_buf_reset(&ex->body);
    cm_buf_reset(&ex->log);
    ex->req = NULL;
    ex->inst = NULL;
    ex->uc = NULL;
    ex->attempt = 0;
    ex->state = EX_DONE;
    ex->has_body = ex->chunked = ex->body_done = ex->body_paused = 0;
    ex->replayable = 1;
    ex->body_sent = 0;
    ex->status = 0;
    ex->wait = (gw_waiter_t){0}; /* ex->held needs no reset: every way out of EX_HELD
                                  * unqueues it */
    return ex;
}

static void exch_put(gw_exch_t *ex)
{
    gw_worker_t *w = ex->w;
    cm_timeout_clear(&ex->deadline);
    cm_timeout_clear(&ex->timer);
    cm_buf_shrink(&ex->body, REPLAY_MAX);
    ex->next_free = w->free_exch;
    w->free_exch = ex;
}

static void exch_free_closed(uv_handle_t *h)
{
    gw_exch_t *ex = ((cm_timeout_t *)h->data)->data;
    if (--ex->attempt == 0) { /* both timers closed (libuv gives no order) */
        cm_buf_free(&ex->head);
        cm_buf_free(&ex->body);
        cm_buf_free(&ex->log);
        free(ex);
    }
}

void gw_exch_pool_free(gw_worker_t *w)
{
    while (w->free_exch) {
        gw_exch_t *ex = w->free_exch;
        w->free_exch = ex->next_free;
        ex->attempt = 2; /* counts the close callbacks still to come */
        cm_timeout_close(&ex->deadline, exch_free_closed);
        cm_timeout_close(&ex->timer, exch_free_closed);
    }
}

/* ------------------------------------------------------------------------- */
/* access log and finishing                                                   */

static void log_attempt(gw_exch_t *ex, int status, const char *error, const char *retry)
{
    if (ex->req->logged)
        gw_exlog_attempt(&ex->log, ex->inst ? ex->inst->url : "-", status, error,
                         (uv_hrtime() - ex->try_ns) / 1000, retry);
}

static void attach_log(gw_exch_t *ex, const char *refused)
{
    if (ex->req->logged)
        gw_exlog_attach(&ex->req->log_extra, ex->rt->cfg->name, &ex->log, refused);
}

/* The current attempt's outcome, told to its instance through the exchange's own route
 * (in the table it holds) and the slot it picked there: never through the instance,
 * whose newest table may be gone (table_types.h). */
static void inst_result(gw_exch_t *ex, int failed, uint64_t rtt_us, uint64_t now)
{
    gw_inst_result(ex->rt, ex->tried[ex->attempt - 1], failed, rtt_us, now);
}

/* Ends the attempt's claim on its instance (in-flight count). */
static void attempt_end(gw_exch_t *ex)
{
    if (ex->inst)
        gw_uconn_cancel_wait(ex->inst, &ex->wait);
    if (ex->inst) {
        ex->inst->inflight--;
        gw_inst_drain_note(ex->inst);
        ex->inst = NULL;
    }
}

static void finish(gw_exch_t *ex, int status)
{
    attempt_end(ex);
    set_state(ex, EX_DONE);
    gw_route_observe(ex->rt->stats, status, (uv_hrtime() - ex->start_ns) / 1000);
    gw_table_unref(ex->table);
    exch_put(ex);
}

/* Answers with a gateway error (JSON) and ends the exchange. */
static void fail_answer(gw_exch_t *ex, int status, const char *refused, const char *fmt,
                        const char *arg)
{
    cm_req_t *req = ex->req;
    attach_log(ex, refused);
    if (status == 503)
        cm_res_header_str(req, "Retry-After", "1");
    cm_res_error(req, status, fmt, arg);
    finish(ex, status);
}

/* ------------------------------------------------------------------------- */
/* retries                                                                    */

static uint64_t backoff_ms(gw_exch_t *ex)
{
    return gw_retry_backoff_ms(ex->rt->cfg, ex->attempt, rnd(ex->w));
}

/* Decides whether failure why may be retried (retry.c); on yes the budget is charged and
 * the backoff returned in *wait_ms. *refused names the reason on no (or NULL). */
static int may_retry(gw_exch_t *ex, gw_fail_t why, uint64_t *wait_ms, const char **refused)
{
    uint64_t wait = backoff_ms(ex);
    gw_retry_ask_t ask = {
        .why = why,
        .answered = ex->state == EX_STREAMING,
        .attempts = ex->attempt,
        .method_safe = ex->retry_ok,
        .body_lost = ex->has_body && !ex->replayable,
        .now_ns = uv_hrtime(),
        .start_ns = ex->start_ns,
        .wait_ms = wait,
    };
    int rc = gw_retry_decide(ex->rt->cfg, &ex->rt->budget, &ask, refused);
    if (rc == GW_RETRY_NO_BUDGET)
        gw_route_budget_exhausted(ex->rt->stats);
    if (rc != GW_RETRY_YES)
        return 0;
    static const gw_retry_reason_t reason[] = {GW_RETRY_CONNECT, GW_RETRY_RESET, GW_RETRY_TIMEOUT,
                                               GW_RETRY_503, GW_RETRY_RESET};
    gw_route_retry(ex->rt->stats, reason[why]);
    *wait_ms = wait;
    return 1;
}

/* Moves to state to with its timer due in ms. */
static void timer_set(gw_exch_t *ex, ex_state_t to, uint64_t ms)
{
    set_state(ex, to);
    cm_timeout_set(&ex->timer, ms);
}

/* The rest of the try's time, bounded by the deadline. */
static uint64_t try_left_ms(gw_exch_t *ex, uint64_t limit_ms)
{
    uint64_t now = uv_now(ex->w->loop), end_try = ex->try_ms + limit_ms;
    uint64_t end_all = ex->start_ms + ex->rt->cfg->timeout_ms;
    uint64_t end = end_try < end_all ? end_try : end_all;
    return end > now ? end - now : 1;
}

static void drop_conn(gw_exch_t *ex)
{
    if (ex->uc) {
        gw_uconn_t *uc = ex->uc;
        ex->uc = NULL;
        gw_uconn_release(uc, 0);
    }
}

static void attempt_failed(gw_exch_t *ex, gw_fail_t why)
{
    static const char *const err[] = {"connect failed", "connection closed before a response",
                                      "try timed out", NULL, "invalid response"};
    uint64_t now = uv_hrtime();
    drop_conn(ex);
    gw_inst_t *in = ex->inst;
    const gw_route_cfg_t *rc = ex->rt->cfg;
    uint64_t rtt = (now - ex->try_ns) / 1000;
    if (in) {
        /* a failed try counts as slow as the try timeout for peak EWMA */
        inst_result(ex, 1, rtt > rc->try_timeout_ms * 1000 ? rtt : rc->try_timeout_ms * 1000, now);
        gw_up_observe(in->stats, why == GW_FAIL_503 ? 503 : 0, rtt);
    }
    uint64_t wait = 0;
    const char *refused;
    int again = may_retry(ex, why, &wait, &refused);
    log_attempt(ex, why == GW_FAIL_503 ? 503 : 0, err[why], again ? fail_name[why] : NULL);
    attempt_end(ex);
    if (again) {
        timer_set(ex, EX_BACKOFF, wait);
        return;
    }
    cm_timeout_clear(&ex->timer);
    if (why == GW_FAIL_TIMEOUT)
        fail_answer(ex, 504, refused, "upstream did not answer in time%s", "");
    else if (why == GW_FAIL_CONNECT)
        fail_answer(ex, 502, refused, "no upstream instance could be reached%s", "");
    else if (why == GW_FAIL_503)
        fail_answer(ex, 503, refused, "upstream unavailable%s", "");
    else
        fail_answer(ex, 502, refused, "%s", err[why]);
}

/* ------------------------------------------------------------------------- */
/* request body: client -> upstream                                           */

static void body_flow(gw_exch_t *ex)
{
    size_t pending = ex->uc ? gw_uconn_pending(ex->uc) : ex->body.len - ex->body_sent;
    if (!ex->body_paused && pending > BODY_HIGH) {
        ex->body_paused = 1;
        cm_req_body_pause(ex->req);
    } else if (ex->body_paused && pending < BODY_LOW) {
        ex->body_paused = 0;
        cm_req_body_resume(ex->req);
    }
}

static int write_piece(gw_uconn_t *uc, int chunked, const char *data, size_t len)
{
    if (!len)
        return 0;
    if (chunked) {
        char size[24];
        int n = snprintf(size, sizeof size, "%zx\r\n", len);
        int rc = gw_uconn_write(uc, size, (size_t)n);
        if (rc == 0)
            rc = gw_uconn_write(uc, data, len);
        return rc == 0 ? gw_uconn_write(uc, "\r\n", 2) : rc;
    }
    return gw_uconn_write(uc, data, len);
}

/* Sends what the connection has not had of the body yet (and the end, if it came). */
static int send_body(gw_exch_t *ex)
{
    if (!ex->uc || ex->req_sent)
        return 0;
    int rc = write_piece(ex->uc, ex->chunked, ex->body.data + ex->body_sent,
                         ex->body.len - ex->body_sent);
    if (rc < 0)
        return rc;
    ex->body_sent = ex->body.len;
    if (!ex->replayable) { /* nobody needs those bytes again */
        cm_buf_reset(&ex->body);
        ex->body_sent = 0;
    }
    if (ex->body_done) {
        if (ex->chunked && (rc = gw_uconn_write(ex->uc, "0\r\n\r\n", 5)) < 0)
            return rc;
        ex->req_sent = 1;
    }
    return 0;
}

static void on_client_body(cm_req_t *req, const char *data, size_t len, int last, void *arg)
{
    gw_exch_t *ex = arg;
    if (!data) {
        ex->body_done = 1;
        exch_fail(ex, EV_CLIENT_BODY);
        return;
    }
    if (ex->state == EX_STREAMING || ex->state == EX_DONE) { /* the rest is not needed */
        if (last)
            ex->body_done = 1;
        return;
    }
    if (ex->replayable && ex->body.len + len > REPLAY_MAX) {
        ex->replayable = 0;
        if (ex->body_sent) { /* drop what the current connection already has */
            memmove(ex->body.data, ex->body.data + ex->body_sent, ex->body.len - ex->body_sent);
            ex->body.len -= ex->body_sent;
            ex->body_sent = 0;
        }
    }
    cm_buf_append(&ex->body, data, len);
    if (last)
        ex->body_done = 1;
    if (ex->state == EX_BODY_WAIT) {
        /* the first try waits for the whole body (or a full replay buffer): a body that
         * breaks is answered 400 with nothing sent upstream, and a retry can replay it */
        if (ex->body_done || !ex->replayable || ex->body.len >= REPLAY_MAX)
            attempt_start(ex);
        else
            body_flow(ex);
        (void)req;
        return;
    }
    if (ex->uc && send_body(ex) < 0) {
        exch_fail(ex, GW_FAIL_RESET);
        return;
    }
    body_flow(ex);
}

static void on_up_drained(void *arg)
{
    gw_exch_t *ex = arg;
    if (ex->has_body)
        body_flow(ex);
}

/* ------------------------------------------------------------------------- */
/* response: upstream -> client                                               */

static void on_drain(cm_req_t *req, void *arg)
{
    (void)req;
    gw_exch_t *ex = arg;
    if (ex->uc)
        gw_uconn_read_start(ex->uc);
}

/* The upstream's head is in: retry on 503 when allowed, else start the client's answer. */
static int on_up_head(void *arg, int status, int64_t content_length, const char *head,
                      const gw_hdr_off_t *h, int nh)
{
    gw_exch_t *ex = arg;
    assert(ex->state == EX_WAIT_HEAD);
    ex->status = status;
    uint64_t now = uv_hrtime();
    uint64_t rtt = (now - ex->try_ns) / 1000;
    if (status == 503) {
        uint64_t wait;
        const char *refused;
        if (may_retry(ex, GW_FAIL_503, &wait, &refused)) {
            set_state(ex, EX_DISCARD); /* read to its end (keeps the connection), then retry */
            return 0;
        }
    }
    inst_result(ex, status >= 500, rtt, now);
    gw_up_observe(ex->inst->stats, status, rtt);
    log_attempt(ex, status, NULL, NULL);
    cm_timeout_clear(&ex->deadline);
    cm_req_t *req = ex->req;
    gw_hdr_response_fields(&req->res_headers, head, h, nh);
    int64_t cl = content_length;
    if (cl < 0 && (status == 204 || status == 304))
        cl = 0;
    attach_log(ex, NULL);
    cm_res_start(req, status, cl);
    cm_res_on_drain(req, on_drain, ex);
    timer_set(ex, EX_STREAMING, ex->rt->cfg->try_timeout_ms);
    return req->method == CM_HEAD ? 1 : 0; /* a HEAD answer has no body whatever it says */
}

static int on_up_body(void *arg, const char *at, size_t len)
{
    gw_exch_t *ex = arg;
    if (ex->state == EX_DISCARD)
        return 0;
    int rc = cm_res_write(ex->req, at, len);
    if (rc < 0)
        return -1; /* the client left: stop parsing, the error callback aborts */
    if (rc == 1 && ex->uc)
        gw_uconn_read_stop(ex->uc);
    cm_timeout_set(&ex->timer, ex->rt->cfg->try_timeout_ms); /* the body is not idle */
    return 0;
}

/* The response is complete: pool the connection, finish or retry. */
static void on_up_done(void *arg, int clean)
{
    gw_exch_t *ex = arg;
    gw_uconn_t *uc = ex->uc;
    ex->uc = NULL;
    int reusable = clean && gw_uconn_keep_alive(uc) && ex->req_sent;
    gw_uconn_release(uc, reusable); /* still reading: an idle close is seen at once */
    if (ex->state == EX_DISCARD) {
        gw_inst_t *in = ex->inst;
        uint64_t now = uv_hrtime();
        inst_result(ex, 1, (now - ex->try_ns) / 1000, now);
        gw_up_observe(in->stats, 503, (now - ex->try_ns) / 1000);
        log_attempt(ex, 503, NULL, "503");
        attempt_end(ex);
        timer_set(ex, EX_BACKOFF, backoff_ms(ex));
        return;
    }
    int status = ex->status;
    cm_res_end(ex->req, 1);
    finish(ex, status);
}

/* The answer to the client broke off mid-body: close both sides. */
static void abort_stream(gw_exch_t *ex)
{
    drop_conn(ex);
    int status = ex->status;
    cm_res_end(ex->req, 0);
    finish(ex, status);
}

static void on_up_error(void *arg, gw_fail_t why)
{
    exch_fail(arg, why);
}

/* ------------------------------------------------------------------------- */
/* attempts                                                                   */

static void on_up_connected(void *arg, gw_uconn_t *uc, int status)
{
    gw_exch_t *ex = arg;
    assert(ex->state == EX_CONNECTING || ex->state == EX_QUEUED);
    if (status < 0 || !uc) {
        exch_fail(ex, GW_FAIL_CONNECT);
        return;
    }
    ex->uc = uc;
    ex->req_sent = 0;
    ex->body_sent = 0;
    timer_set(ex, EX_WAIT_HEAD, try_left_ms(ex, ex->rt->cfg->try_timeout_ms));
    int rc = gw_uconn_write(uc, ex->head.data, ex->head.len);
    if (rc == 0 && ex->has_body)
        rc = send_body(ex);
    else if (!ex->has_body)
        ex->req_sent = 1;
    if (rc < 0) {
        exch_fail(ex, gw_uconn_reused(uc) ? GW_FAIL_RESET : GW_FAIL_CONNECT);
        return;
    }
    gw_uconn_read_start(uc);
    if (ex->has_body)
        body_flow(ex);
}

/* What upstream.c calls back with, for every attempt. */
static const gw_up_cbs_t up_cbs = {
    .connected = on_up_connected,
    .head = on_up_head,
    .body = on_up_body,
    .done = on_up_done,
    .error = on_up_error,
    .drained = on_up_drained,
};

static void attempt_start(gw_exch_t *ex)
{
    gw_rt_t *rt = ex->rt;
    /* a first try without a body starts when the request was sent on (try_ns: when it
     * arrived, unless it was held): no second clock read */
    uint64_t now = ex->attempt || ex->has_body ? uv_hrtime() : ex->try_ns;
    int slot;
    gw_inst_t *in = gw_rt_pick(rt, ex->tried, ex->attempt, ex->key_hash, now, &slot);
    if (in->inflight >= rt->cfg->max_requests) {
        fail_answer(ex, 503, NULL, "upstream at its in-flight limit (circuit open)%s", "");
        return;
    }
    ex->inst = in;
    in->inflight++;
    gw_inst_drain_note(in);
    ex->tried[ex->attempt++] = slot;
    ex->try_ns = now;
    ex->try_ms = uv_now(ex->w->loop);
    timer_set(ex, EX_CONNECTING, try_left_ms(ex, rt->cfg->connect_timeout_ms));
    int rc = gw_uconn_get(in, &ex->wait, &up_cbs, ex); /* 1: queued */
    if (rc == 1) { /* the connect timeout starts when a slot does, not in the queue */
        cm_timeout_clear(&ex->timer);
        set_state(ex, EX_QUEUED);
    } else if (rc == -EBUSY) {
        attempt_end(ex);
        fail_answer(ex, 503, NULL, "upstream at its pending-request limit (circuit open)%s", "");
    } else if (rc < 0) {
        exch_fail(ex, GW_FAIL_CONNECT);
    }
}

static void on_timer(cm_timeout_t *t)
{
    gw_exch_t *ex = t->data;
    switch (ex->state) {
    case EX_BACKOFF:
        attempt_start(ex);
        break;
    case EX_CONNECTING:
        exch_fail(ex, GW_FAIL_CONNECT);
        break;
    case EX_WAIT_HEAD:
    case EX_DISCARD:
    case EX_STREAMING: /* the body went idle */
        exch_fail(ex, GW_FAIL_TIMEOUT);
        break;
    case EX_HELD:
        exch_fail(ex, EV_HOLD_EXPIRED);
        break;
    case EX_DONE:
    case EX_BODY_WAIT:
    case EX_QUEUED:
        break; /* no timer of their own */
    }
}

static void on_deadline(cm_timeout_t *t)
{
    exch_fail(t->data, EV_DEADLINE);
}

/* The one failure path: what ends an attempt or the exchange (why: a gw_fail_t from
 * the upstream side, EV_DEADLINE, EV_CLIENT_BODY) means what the state says. */
static void exch_fail(gw_exch_t *ex, int why)
{
    switch (ex->state) {
    case EX_STREAMING: /* the answer started: nothing to say any more, close both sides */
        abort_stream(ex);
        return;
    case EX_DONE:
        assert(!"a failure reported for an exchange that ended");
        return;
    case EX_DISCARD: /* the 503 being read broke off: still that 503 */
        if (why < EV_DEADLINE)
            why = GW_FAIL_503;
        break;
    case EX_HELD: /* out of the queue; what to answer is why's (below) */
        unhold(ex, 0);
        break;
    case EX_BODY_WAIT:
    case EX_CONNECTING:
    case EX_QUEUED:
    case EX_WAIT_HEAD:
    case EX_BACKOFF:
        break;
    }
    if (why < EV_DEADLINE) {
        attempt_failed(ex, (gw_fail_t)why); /* retried if retry.c allows, else answered */
        return;
    }
    int queued = ex->state == EX_QUEUED;
    drop_conn(ex);
    cm_timeout_clear(&ex->timer);
    if (why == EV_CLIENT_BODY) {
        /* the client's body broke (bad chunk, too large): its error; an attempt under way
         * is abandoned (its upstream connection closed, so the partial request is void) */
        cm_req_t *req = ex->req;
        if (ex->inst)
            log_attempt(ex, 0, "client body broke", NULL);
        fail_answer(ex, req->body_error, NULL, "%s",
                    req->body_error_msg ? req->body_error_msg : "bad request body");
    } else if (why == EV_HOLD_EXPIRED) {
        char msg[GW_NAME_MAX + 128];
        snprintf(msg, sizeof msg,
                 "service %s is scaled to zero and did not start within %llu ms (the route's "
                 "cold_start timeout)",
                 held_service(ex->rt), (unsigned long long)ex->rt->cfg->cold_start_ms);
        fail_answer(ex, 503, NULL, "%s", msg);
    } else if (why == EV_CLIENT_GONE) { /* detached: counted and logged only */
        attach_log(ex, NULL);
        cm_res_error(ex->req, 499, "the client closed the connection while its request was held");
        finish(ex, 499);
    } else if (why == EV_ROUTE_GONE) {
        fail_answer(ex, 503, NULL, "route %s was removed while the request was held",
                    ex->rt->cfg->name);
    } else if (why == EV_STOPPING) {
        fail_answer(ex, 503, NULL, "the gateway is stopping%s", "");
    } else if (queued) { /* no slot freed up in time: the instance is busy, not broken */
        log_attempt(ex, 0, "queue timeout", NULL);
        fail_answer(ex, 503, NULL, "upstream busy: no connection slot within the route's timeout%s",
                    "");
    } else {
        if (ex->inst)
            log_attempt(ex, 0, "deadline", NULL);
        fail_answer(ex, 504, NULL, "upstream did not answer within the route's timeout%s", "");
    }
}

/* ------------------------------------------------------------------------- */
/* scale to zero: held requests                                               */

static const char *held_service(const gw_rt_t *rt)
{
    return rt->cfg->service[0] ? rt->cfg->service : rt->cfg->name;
}

static gw_exch_t *exch_of_held(gw_held_t *h)
{
    return (gw_exch_t *)((char *)h - offsetof(gw_exch_t, held));
}

/* Takes a held exchange out of its route's queue (dispatched: on to an instance). */
static void unhold(gw_exch_t *ex, int dispatched)
{
    gw_holdq_remove(&ex->rt->held, &ex->held);
    gw_route_unhold(ex->rt->stats, dispatched, uv_hrtime());
    cm_req_on_gone(ex->req, NULL, NULL);
}

static void on_client_gone(cm_req_t *req, void *arg)
{
    (void)req;
    gw_exch_t *ex = arg;
    assert(ex->state == EX_HELD);
    exch_fail(ex, EV_CLIENT_GONE);
}

/* The route is at zero: the request waits in its queue (bounded by max_pending) for the
 * service's first ready set, up to cold_start; its body is read meanwhile (a hang-up
 * mid-body is seen at once, and the first try can start with the body in). The first
 * request a worker holds has the follow thread wake the service. */
static void hold(gw_exch_t *ex)
{
    gw_rt_t *rt = ex->rt;
    int first = rt->held.n == 0;
    if (gw_holdq_push(&rt->held, &ex->held, rt->cfg->max_pending, ex->start_ns) < 0) {
        fail_answer(ex, 503, NULL,
                    "service %s is scaled to zero and starting; this route holds its limit "
                    "of requests already (max_pending)",
                    held_service(rt));
        return;
    }
    gw_route_hold(rt->stats, ex->start_ns);
    timer_set(ex, EX_HELD, rt->cfg->cold_start_ms);
    cm_req_on_gone(ex->req, on_client_gone, ex);
    if (ex->has_body)
        cm_req_body_read(ex->req, on_client_body, ex);
    else
        ex->body_done = 1;
    if (first)
        gw_follow_demand(ex->w->g->follow);
}

/* A ready set came: the held request goes on, its timeouts counted from now. */
static void held_dispatch(gw_exch_t *ex)
{
    assert(ex->state == EX_HELD);
    unhold(ex, 1);
    cm_timeout_clear(&ex->timer);
    ex->start_ms = uv_now(ex->w->loop);
    ex->try_ns = uv_hrtime();
    cm_timeout_set(&ex->deadline, ex->rt->cfg->timeout_ms);
    if (ex->body_done || !ex->replayable || ex->body.len >= REPLAY_MAX)
        attempt_start(ex);
    else
        set_state(ex, EX_BODY_WAIT); /* on_client_body starts the try */
}

void gw_proxy_retable(gw_worker_t *w, gw_table_t *old, gw_table_t *t)
{
    (void)w;
    for (int i = 0; old && i < old->n; i++) {
        gw_rt_t *ort = &old->routes[i], *nrt = NULL;
        if (!ort->held.n)
            continue;
        for (int k = 0; k < t->n && !nrt; k++)
            if (strcmp(t->routes[k].cfg->name, ort->cfg->name) == 0)
                nrt = &t->routes[k];
        if (!nrt) {
            gw_held_t *h;
            while ((h = ort->held.head))
                exch_fail(exch_of_held(h), EV_ROUTE_GONE);
            continue;
        }
        /* the exchanges follow their queue into t (the caller still holds old) */
        for (gw_held_t *h = ort->held.head; h; h = h->next) {
            gw_exch_t *ex = exch_of_held(h);
            ex->rt = nrt;
            ex->table = t;
            t->refs++;
            old->refs--;
        }
        gw_holdq_move(&nrt->held, &ort->held);
    }
    for (int k = 0; k < t->n; k++) {
        gw_rt_t *rt = &t->routes[k];
        gw_held_t *h;
        while (!rt->cfg->scaled_to_zero && (h = rt->held.head)) /* in arrival order */
            held_dispatch(exch_of_held(h));
    }
}

void gw_proxy_drop_held(gw_worker_t *w)
{
    for (int k = 0; w->table && k < w->table->n; k++) {
        gw_held_t *h;
        while ((h = w->table->routes[k].held.head))
            exch_fail(exch_of_held(h), EV_STOPPING);
    }
}

/* ------------------------------------------------------------------------- */
/* entry                                                                      */

/* The value of cookie name in a Cookie header ("a=1; b=2"), or NULL. */
static const char *cookie_value(const char *c, size_t len, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *end = c + len;
    while (c < end) {
        while (c < end && (*c == ' ' || *c == ';'))
            c++;
        const char *semi = memchr(c, ';', (size_t)(end - c));
        const char *stop = semi ? semi : end;
        if ((size_t)(stop - c) > nl && c[nl] == '=' && memcmp(c, name, nl) == 0) {
            *vlen = (size_t)(stop - c) - nl - 1;
            return c + nl + 1;
        }
        c = stop;
    }
    return NULL;
}

/* GW_LB_HASH: the hash of the route's header or cookie; a random one without it. */
static uint64_t hash_key(gw_exch_t *ex)
{
    const gw_route_cfg_t *rc = ex->rt->cfg;
    if (rc->balancer != GW_LB_HASH)
        return 0;
    size_t len, vlen;
    const char *v;
    if (rc->hash_header[0]) {
        v = cm_req_header(ex->req, rc->hash_header, &len);
        vlen = len;
    } else {
        v = cm_req_header(ex->req, "Cookie", &len);
        v = v ? cookie_value(v, len, rc->hash_cookie, &vlen) : NULL;
    }
    return v ? gw_lb_hash(v, vlen) : rnd(ex->w);
}

/* The target the request is routed on and forwarded with, so the two cannot differ: the
 * authority of an absolute-form target (it replaces Host, RFC 9112 3.2.2) or else the Host
 * field; the path normalized (core/uri.h), copied into a buffer put in *norm (the caller
 * frees it) only when it needs work; the query as received. Returns 0, or -EINVAL (400)
 * or -ENOMEM with *why set. */
static int request_target(const cm_req_t *req, gw_hdr_target_t *tg, char **norm, const char **why)
{
    cm_str_t authority = {"", 0}, origin;
    *norm = NULL;
    int abs = cm_uri_split_absolute(&req->target, &authority, &origin, why);
    if (abs < 0)
        return abs;
    if (abs) {
        const char *q = memchr(origin.p, '?', origin.len);
        size_t plen = q ? (size_t)(q - origin.p) : origin.len;
        tg->path = plen ? (cm_str_t){origin.p, plen} : (cm_str_t){"/", 1};
        tg->rest = (cm_str_t){origin.p + plen, origin.len - plen};
    } else {
        size_t len;
        const char *h = cm_req_header(req, "Host", &len);
        if (h)
            authority = (cm_str_t){h, len};
        tg->path = req->path;
        tg->rest = (cm_str_t){req->target.p + req->path.len, req->target.len - req->path.len};
    }
    if (cm_uri_host_parse(&authority, &tg->host, why) < 0)
        return -EINVAL;
    if (tg->rest.len && cm_uri_query_check(tg->rest.p + 1, tg->rest.len - 1, why) < 0)
        return -EINVAL;
    int rc = cm_uri_path_scan(tg->path.p, tg->path.len, why);
    if (rc <= 0)
        return rc; /* the hot path: already normal, nothing copied */
    char *buf = malloc(tg->path.len);
    if (!buf) {
        *why = "out of memory";
        return -ENOMEM;
    }
    size_t n;
    if (cm_uri_normalize(tg->path.p, tg->path.len, buf, &n, why) < 0) {
        free(buf);
        return -EINVAL;
    }
    tg->path = (cm_str_t){buf, n};
    *norm = buf;
    return 0;
}

static void proxy_target(gw_worker_t *w, cm_req_t *req, const gw_hdr_target_t *tg)
{
    gw_table_t *t = w->table;
    gw_rt_t *rt = t ? gw_guard_route(t, &tg->host.name, &tg->path) : NULL;
    if (!rt) {
        cm_res_error(req, 404, "no route for %.*s", (int)tg->path.len, tg->path.p);
        return;
    }
    uint64_t now = req->start_ns; /* taken by the server a moment ago */
    gw_claims_t claims;
    if (gw_guard_request(t->snap, w->g->rl, rt, req, &claims, now) < 0)
        return;
    gw_exch_t *ex = exch_get(w);
    if (!ex) {
        cm_res_error(req, 503, "out of memory");
        return;
    }
    ex->req = req;
    ex->table = t;
    t->refs++;
    ex->rt = rt;
    ex->start_ns = now;
    ex->try_ns = now;
    ex->start_ms = uv_now(w->loop);
    ex->has_body = req->has_body;
    ex->chunked = req->has_body && req->content_length < 0;
    ex->key_hash = hash_key(ex);
    gw_budget_request(&rt->budget, now);
    /* for HTTP/1.0 clients without Host (HTTP/1.1 upstreams need one): "host:port" */
    const char *host = rt->insts[0]->url + strlen("http://");
    int idem_key;
    if (gw_hdr_request_head(&ex->head, req, tg, host, ex->chunked, &w->rng, &idem_key) < 0) {
        ex->retry_ok = 0;
        fail_answer(ex, 503, NULL, "out of memory%s", "");
        return;
    }
    ex->retry_ok = gw_retry_method_safe(req->method, idem_key);
    if (rt->cfg->scaled_to_zero) {
        hold(ex);
        return;
    }
    cm_timeout_set(&ex->deadline, rt->cfg->timeout_ms);
    if (!ex->has_body) {
        ex->body_done = 1;
        attempt_start(ex);
        return;
    }
    set_state(ex, EX_BODY_WAIT);
    cm_req_body_read(req, on_client_body, ex); /* the first try starts from on_client_body */
}

void gw_proxy_handle(cm_req_t *req)
{
    gw_worker_t *w = req->state;
    if (gw_guard_headers(req) < 0)
        return;
    gw_hdr_target_t tg;
    char *norm;
    const char *why;
    int rc = request_target(req, &tg, &norm, &why);
    if (rc < 0) {
        cm_res_error(req, rc == -ENOMEM ? 503 : 400, "%s", why);
        return;
    }
    proxy_target(w, req, &tg);
    free(norm); /* the upstream head holds its copy of the path now */
}
