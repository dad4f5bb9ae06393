/* gateway/proxy.c: one client request through the gateway (an exchange): the target
 * routed on and forwarded (path normalized by core/uri, authority), guard checks,
 * instance choice, the upstream request head (hop-by-hop headers out, X-Forwarded-*,
 * Via, traceparent, X-Request-Id in), the body streamed both ways with backpressure,
 * timeouts, retries inside a budget, and the access-log record of every attempt.
 *
 * Retry rules: a connect failure (the request provably never left) may be retried for
 * any method; a reset before any response byte, a per-try timeout or a 503 only for
 * idempotent methods and for requests forwarded with Idempotency-Key (the services dedupe
 * it). Never after the client's answer started, never with a body that did not fit
 * the replay buffer, never past the deadline, never beyond the route's budget. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/json.h"
#include "core/log.h"
#include "core/uri.h"
#include "gateway/guard.h"
#include "gateway/headers.h"

#define REPLAY_MAX (64 * 1024)  /* request bodies up to this are kept for a retry */
#define BODY_HIGH  (256 * 1024) /* unsent request bytes that pause the client */
#define BODY_LOW   (64 * 1024)
#define MAX_RHEAD  (64 * 1024) /* upstream response head bytes */
#define EXCH_KEEP  256         /* idle exchange objects a worker keeps */

enum tmode { T_OFF, T_CONNECT, T_TRY, T_BACKOFF, T_BODY };

enum fail { F_CONNECT, F_RESET, F_TIMEOUT, F_503, F_PROTOCOL };
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
    cm_timeout_t deadline;
    cm_timeout_t timer; /* connect, per try, backoff, body idle (tmode) */
    enum tmode tmode;
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
    /* response */
    int got_bytes, head_done, discard, started, complete, info;
    int status;
    cm_buf_t rhead;
    gw_hdr_off_t rh[CM_MAX_HEADERS];
    int nrh, in_value, rhead_bad;
    cm_buf_t log; /* the "attempts" array under construction */
};

static void attempt_start(gw_exch_t *ex);
static void attempt_failed(gw_exch_t *ex, enum fail why);
static void abort_stream(gw_exch_t *ex);
static void on_timer(cm_timeout_t *t);
static void on_deadline(cm_timeout_t *t);

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
    cm_buf_reset(&ex->rhead);
    cm_buf_reset(&ex->log);
    ex->req = NULL;
    ex->inst = NULL;
    ex->uc = NULL;
    ex->attempt = 0;
    ex->tmode = T_OFF;
    ex->has_body = ex->chunked = ex->body_done = ex->body_paused = 0;
    ex->replayable = 1;
    ex->body_sent = 0;
    ex->started = ex->complete = 0;
    ex->status = 0;
    ex->wait = (gw_waiter_t){0};
    return ex;
}

static void exch_put(gw_exch_t *ex)
{
    gw_worker_t *w = ex->w;
    cm_timeout_clear(&ex->deadline);
    cm_timeout_clear(&ex->timer);
    cm_buf_shrink(&ex->body, REPLAY_MAX);
    cm_buf_shrink(&ex->rhead, 4096);
    ex->next_free = w->free_exch;
    w->free_exch = ex;
}

static void exch_free_closed(uv_handle_t *h)
{
    gw_exch_t *ex = ((cm_timeout_t *)h->data)->data;
    if (--ex->attempt == 0) { /* both timers closed (libuv gives no order) */
        cm_buf_free(&ex->head);
        cm_buf_free(&ex->body);
        cm_buf_free(&ex->rhead);
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
    cm_buf_t *o = &ex->log;
    if (!ex->req->logged)
        return;
    cm_buf_append_str(o, ex->log.len ? ",{\"upstream\":" : "{\"upstream\":");
    cm_json_str(o, ex->inst ? ex->inst->url : "-", strlen(ex->inst ? ex->inst->url : "-"));
    if (status) {
        cm_buf_append_str(o, ",\"status\":");
        cm_buf_append_u64(o, (unsigned long long)status);
    }
    if (error) {
        cm_buf_append_str(o, ",\"error\":");
        cm_json_str(o, error, strlen(error));
    }
    cm_buf_append_str(o, ",\"duration_us\":");
    cm_buf_append_u64(o, (uv_hrtime() - ex->try_ns) / 1000);
    if (retry) {
        cm_buf_append_str(o, ",\"retry\":");
        cm_json_str(o, retry, strlen(retry));
    }
    cm_buf_append(o, "}", 1);
}

static void attach_log(gw_exch_t *ex, const char *refused)
{
    cm_buf_t *x = &ex->req->log_extra;
    if (!ex->req->logged)
        return;
    cm_buf_append_str(x, ",\"route\":");
    cm_json_str(x, ex->rt->cfg->name, strlen(ex->rt->cfg->name));
    cm_buf_append_str(x, ",\"attempts\":[");
    cm_buf_append(x, ex->log.data ? ex->log.data : "", ex->log.len);
    cm_buf_append(x, "]", 1);
    if (refused) {
        cm_buf_append_str(x, ",\"retry_refused\":");
        cm_json_str(x, refused, strlen(refused));
    }
}

/* Ends the attempt's claim on its instance (in-flight count). */
static void attempt_end(gw_exch_t *ex)
{
    if (ex->inst)
        gw_uconn_cancel_wait(ex->inst, &ex->wait);
    if (ex->inst) {
        ex->inst->inflight--;
        ex->inst = NULL;
    }
}

static void finish(gw_exch_t *ex, int status)
{
    attempt_end(ex);
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

static gw_budget_slot_t *budget_slot(gw_rt_t *rt, uint64_t now)
{
    uint64_t sec = now / 1000000000ULL;
    gw_budget_slot_t *s = &rt->budget[sec % GW_BUDGET_SLOTS];
    if (s->sec != sec)
        *s = (gw_budget_slot_t){.sec = sec};
    return s;
}

/* Retries stay within budget x requests (+ a floor per second) over the window. */
static int budget_take(gw_rt_t *rt, uint64_t now)
{
    uint64_t sec = now / 1000000000ULL, req = 0, ret = 0;
    for (int i = 0; i < GW_BUDGET_SLOTS; i++) {
        const gw_budget_slot_t *s = &rt->budget[i];
        if (s->sec + GW_BUDGET_SLOTS > sec) {
            req += s->requests;
            ret += s->retries;
        }
    }
    double allowed =
        rt->cfg->retry_budget * (double)req + (double)rt->cfg->retry_budget_min * GW_BUDGET_SLOTS;
    if ((double)ret >= allowed)
        return 0;
    budget_slot(rt, now)->retries++;
    return 1;
}

static uint64_t backoff_ms(gw_exch_t *ex)
{
    const gw_route_cfg_t *rc = ex->rt->cfg;
    uint64_t cap = rc->backoff_base_ms << (ex->attempt > 8 ? 8 : ex->attempt - 1);
    if (cap > rc->backoff_max_ms)
        cap = rc->backoff_max_ms;
    return cap ? rnd(ex->w) % (cap + 1) : 0; /* full jitter */
}

/* Decides whether failure why may be retried; on yes the budget is charged and
 * the backoff returned in *wait_ms. *refused names the reason on no (or NULL). */
static int may_retry(gw_exch_t *ex, enum fail why, uint64_t *wait_ms, const char **refused)
{
    const gw_route_cfg_t *rc = ex->rt->cfg;
    *refused = NULL;
    if (ex->started || ex->attempt >= rc->attempts)
        return 0;
    if (why == F_PROTOCOL)
        return 0;
    if (why != F_CONNECT && !ex->retry_ok) {
        *refused = "method not idempotent and no Idempotency-Key";
        return 0;
    }
    if (ex->has_body && !ex->replayable) {
        *refused = "body too large to replay";
        return 0;
    }
    uint64_t now = uv_hrtime(), wait = backoff_ms(ex);
    if (now + wait * 1000000ULL >= ex->start_ns + rc->timeout_ms * 1000000ULL) {
        *refused = "deadline";
        return 0;
    }
    if (!budget_take(ex->rt, now)) {
        *refused = "budget";
        gw_route_budget_exhausted(ex->rt->stats);
        return 0;
    }
    static const gw_retry_reason_t reason[] = {GW_RETRY_CONNECT, GW_RETRY_RESET, GW_RETRY_TIMEOUT,
                                               GW_RETRY_503, GW_RETRY_RESET};
    gw_route_retry(ex->rt->stats, reason[why]);
    *wait_ms = wait;
    return 1;
}

static void timer_set(gw_exch_t *ex, enum tmode mode, uint64_t ms)
{
    ex->tmode = mode;
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

static void attempt_failed(gw_exch_t *ex, enum fail why)
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
        gw_inst_result(in, 1, rtt > rc->try_timeout_ms * 1000 ? rtt : rc->try_timeout_ms * 1000,
                       now);
        gw_up_observe(in->stats, why == F_503 ? 503 : 0, rtt);
    }
    uint64_t wait = 0;
    const char *refused;
    int again = may_retry(ex, why, &wait, &refused);
    log_attempt(ex, why == F_503 ? 503 : 0, err[why], again ? fail_name[why] : NULL);
    attempt_end(ex);
    if (again) {
        timer_set(ex, T_BACKOFF, wait);
        return;
    }
    cm_timeout_clear(&ex->timer);
    if (why == F_TIMEOUT)
        fail_answer(ex, 504, refused, "upstream did not answer in time%s", "");
    else if (why == F_CONNECT)
        fail_answer(ex, 502, refused, "no upstream instance could be reached%s", "");
    else if (why == F_503)
        fail_answer(ex, 503, refused, "upstream unavailable%s", "");
    else
        fail_answer(ex, 502, refused, "%s", err[why]);
}

/* ------------------------------------------------------------------------- */
/* request body: client -> upstream                                           */

static void body_flow(gw_exch_t *ex)
{
    size_t pending = ex->uc ? ex->uc->wpending : ex->body.len - ex->body_sent;
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

/* The client's body broke (bad chunk, too large): answer its error; an attempt under
 * way is abandoned (its upstream connection closed, so the partial request is void). */
static void client_body_failed(gw_exch_t *ex)
{
    cm_req_t *req = ex->req;
    ex->body_done = 1;
    if (ex->started) {
        abort_stream(ex);
        return;
    }
    drop_conn(ex);
    cm_timeout_clear(&ex->timer);
    if (ex->inst)
        log_attempt(ex, 0, "client body broke", NULL);
    fail_answer(ex, req->body_error, NULL, "%s",
                req->body_error_msg ? req->body_error_msg : "bad request body");
}

static void on_client_body(cm_req_t *req, const char *data, size_t len, int last, void *arg)
{
    gw_exch_t *ex = arg;
    if (!data) {
        client_body_failed(ex);
        return;
    }
    if (ex->complete || ex->started) { /* answered already: the rest is not needed */
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
    if (!ex->attempt) {
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
        attempt_failed(ex, F_RESET);
        return;
    }
    body_flow(ex);
}

void gw_exch_on_written(gw_exch_t *ex)
{
    if (ex->has_body)
        body_flow(ex);
}

/* ------------------------------------------------------------------------- */
/* response: upstream -> client                                               */

static int rh_append(gw_exch_t *ex, const char *at, size_t len)
{
    if (ex->rhead.len + len > MAX_RHEAD || cm_buf_append(&ex->rhead, at, len) < 0) {
        ex->rhead_bad = 1;
        return -1;
    }
    return 0;
}

static int on_message_begin(void *arg)
{
    gw_exch_t *ex = arg;
    cm_buf_reset(&ex->rhead);
    ex->nrh = 0;
    ex->in_value = 0;
    return 0;
}

static int on_header_field(void *arg, const char *at, size_t len)
{
    gw_exch_t *ex = arg;
    if (ex->in_value || ex->nrh == 0) {
        if (ex->nrh == CM_MAX_HEADERS) {
            ex->rhead_bad = 1;
            return -1;
        }
        ex->rh[ex->nrh++] = (gw_hdr_off_t){.no = (uint32_t)ex->rhead.len};
        ex->in_value = 0;
    }
    ex->rh[ex->nrh - 1].nl += (uint32_t)len;
    return rh_append(ex, at, len);
}

static int on_header_value(void *arg, const char *at, size_t len)
{
    gw_exch_t *ex = arg;
    gw_hdr_off_t *h = &ex->rh[ex->nrh - 1];
    if (!ex->in_value) {
        h->vo = (uint32_t)ex->rhead.len;
        ex->in_value = 1;
    }
    h->vl += (uint32_t)len;
    return rh_append(ex, at, len);
}

/* RFC 9110 5.5: the value's trailing OWS is not part of it, so it is not forwarded. */
static int on_header_value_done(void *arg)
{
    gw_exch_t *ex = arg;
    if (ex->nrh == 0)
        return 0;
    gw_hdr_off_t *h = &ex->rh[ex->nrh - 1];
    if (!ex->in_value) { /* an empty value: no value piece came */
        h->vo = (uint32_t)ex->rhead.len;
        ex->in_value = 1;
    }
    size_t vl = h->vl;
    cm_ows_trim_end(ex->rhead.data + h->vo, &vl);
    h->vl = (uint32_t)vl;
    return 0;
}

static void on_drain(cm_req_t *req, void *arg)
{
    (void)req;
    gw_exch_t *ex = arg;
    if (ex->uc)
        gw_uconn_read_start(ex->uc);
}

/* The upstream's head is in: retry on 503 when allowed, else start the client's answer. */
static int on_headers_complete(void *arg, int status, int64_t content_length)
{
    gw_exch_t *ex = arg;
    if (status >= 100 && status < 200) {
        ex->info = 1; /* 100 Continue and friends: not forwarded, the real head follows */
        return 0;
    }
    ex->status = status;
    ex->head_done = 1;
    uint64_t now = uv_hrtime();
    uint64_t rtt = (now - ex->try_ns) / 1000;
    if (status == 503) {
        uint64_t wait;
        const char *refused;
        if (may_retry(ex, F_503, &wait, &refused)) {
            ex->discard = 1; /* read it to the end (keeps the connection), then retry */
            return 0;
        }
    }
    gw_inst_result(ex->inst, status >= 500, rtt, now);
    gw_up_observe(ex->inst->stats, status, rtt);
    log_attempt(ex, status, NULL, NULL);
    cm_timeout_clear(&ex->deadline);
    cm_req_t *req = ex->req;
    gw_hdr_response_fields(&req->res_headers, ex->rhead.data, ex->rh, ex->nrh);
    int64_t cl = content_length;
    if (cl < 0 && (status == 204 || status == 304))
        cl = 0;
    attach_log(ex, NULL);
    ex->started = 1;
    cm_res_start(req, status, cl);
    cm_res_on_drain(req, on_drain, ex);
    timer_set(ex, T_BODY, ex->rt->cfg->try_timeout_ms);
    return req->method == CM_HEAD ? 1 : 0; /* a HEAD answer has no body whatever it says */
}

static int on_body(void *arg, const char *at, size_t len)
{
    gw_exch_t *ex = arg;
    if (ex->discard || ex->info)
        return 0;
    int rc = cm_res_write(ex->req, at, len);
    if (rc < 0)
        return -1; /* the client left: stop parsing, the caller aborts */
    if (rc == 1 && ex->uc)
        gw_uconn_read_stop(ex->uc);
    return 0;
}

static int on_message_complete(void *arg)
{
    gw_exch_t *ex = arg;
    if (ex->info) {
        ex->info = 0;
        return 0;
    }
    ex->complete = 1;
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

/* The response is complete: pool the connection, finish or retry. */
static void response_done(gw_exch_t *ex, int clean)
{
    gw_uconn_t *uc = ex->uc;
    ex->uc = NULL;
    int reusable = clean && cm_resparse_keep_alive(&uc->rp) && ex->req_sent;
    gw_uconn_release(uc, reusable); /* still reading: an idle close is seen at once */
    if (ex->discard) {
        ex->discard = 0;
        ex->head_done = 0;
        gw_inst_t *in = ex->inst;
        uint64_t now = uv_hrtime();
        gw_inst_result(in, 1, (now - ex->try_ns) / 1000, now);
        gw_up_observe(in->stats, 503, (now - ex->try_ns) / 1000);
        log_attempt(ex, 503, NULL, "503");
        attempt_end(ex);
        timer_set(ex, T_BACKOFF, backoff_ms(ex));
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

void gw_exch_on_read(gw_exch_t *ex, const char *data, ssize_t nread)
{
    gw_uconn_t *uc = ex->uc;
    if (nread < 0) {
        if (!ex->head_done || ex->discard) {
            attempt_failed(ex, ex->discard ? F_503 : F_RESET);
            return;
        }
        if (nread == UV_EOF) { /* a body delimited by the close ends here */
            cm_resparse_eof(&uc->rp);
            if (ex->complete) {
                response_done(ex, 0);
                return;
            }
        }
        abort_stream(ex);
        return;
    }
    ex->got_bytes = 1;
    size_t n = 0;
    int e = cm_resparse_feed(&uc->rp, data, (size_t)nread, &n);
    if (ex->complete) {
        /* bytes after the response: the connection is out of step, do not reuse it */
        response_done(ex, n == (size_t)nread);
        return;
    }
    if (e < 0) {
        if (ex->started)
            abort_stream(ex);
        else
            attempt_failed(ex, F_PROTOCOL);
        return;
    }
    if (ex->started && ex->tmode == T_BODY)
        timer_set(ex, T_BODY, ex->rt->cfg->try_timeout_ms);
}

/* ------------------------------------------------------------------------- */
/* attempts                                                                   */

void gw_exch_on_conn(gw_exch_t *ex, gw_uconn_t *uc, int status)
{
    if (status < 0 || !uc) {
        attempt_failed(ex, F_CONNECT);
        return;
    }
    ex->uc = uc;
    uc->ex = ex;
    cm_resparse_begin(&uc->rp, &res_cbs, ex);
    ex->got_bytes = ex->head_done = ex->discard = ex->info = 0;
    ex->rhead_bad = 0;
    ex->req_sent = 0;
    ex->body_sent = 0;
    timer_set(ex, T_TRY, try_left_ms(ex, ex->rt->cfg->try_timeout_ms));
    int rc = gw_uconn_write(uc, ex->head.data, ex->head.len);
    if (rc == 0 && ex->has_body)
        rc = send_body(ex);
    else if (!ex->has_body)
        ex->req_sent = 1;
    if (rc < 0) {
        attempt_failed(ex, uc->reused ? F_RESET : F_CONNECT);
        return;
    }
    gw_uconn_read_start(uc);
    if (ex->has_body)
        body_flow(ex);
}

static void attempt_start(gw_exch_t *ex)
{
    gw_rt_t *rt = ex->rt;
    /* a first try without a body starts when the request did: no second clock read */
    uint64_t now = ex->attempt || ex->has_body ? uv_hrtime() : ex->start_ns;
    gw_inst_t *in = gw_rt_pick(rt, ex->tried, ex->attempt, ex->key_hash, now);
    if (in->inflight >= rt->cfg->max_requests) {
        fail_answer(ex, 503, NULL, "upstream at its in-flight limit (circuit open)%s", "");
        return;
    }
    ex->inst = in;
    in->inflight++;
    ex->tried[ex->attempt++] = in->index;
    ex->try_ns = now;
    ex->try_ms = uv_now(ex->w->loop);
    timer_set(ex, T_CONNECT, try_left_ms(ex, rt->cfg->connect_timeout_ms));
    int rc = gw_uconn_get(in, ex, &ex->wait); /* 1: queued, on_conn comes later */
    if (rc == -EBUSY) {
        attempt_end(ex);
        fail_answer(ex, 503, NULL, "upstream at its pending-request limit (circuit open)%s", "");
    } else if (rc < 0) {
        attempt_failed(ex, F_CONNECT);
    }
}

static void on_timer(cm_timeout_t *t)
{
    gw_exch_t *ex = t->data;
    enum tmode mode = ex->tmode;
    ex->tmode = T_OFF;
    switch (mode) {
    case T_BACKOFF:
        attempt_start(ex);
        break;
    case T_CONNECT:
        if (ex->uc) /* connected meanwhile: the try timer took over */
            break;
        attempt_failed(ex, F_CONNECT);
        break;
    case T_TRY:
        attempt_failed(ex, F_TIMEOUT);
        break;
    case T_BODY:
        abort_stream(ex);
        break;
    case T_OFF:
        break;
    }
}

static void on_deadline(cm_timeout_t *t)
{
    gw_exch_t *ex = t->data;
    if (ex->started)
        return;
    drop_conn(ex);
    cm_timeout_clear(&ex->timer);
    if (ex->inst)
        log_attempt(ex, 0, "deadline", NULL);
    fail_answer(ex, 504, NULL, "upstream did not answer within the route's timeout%s", "");
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

/* idem_key: the upstream request carries Idempotency-Key (what is forwarded, not what the
 * client sent: the services dedupe only on what reaches them). */
static int retry_safe(const cm_req_t *req, int idem_key)
{
    switch (req->method) {
    case CM_GET:
    case CM_HEAD:
    case CM_PUT:
    case CM_DELETE:
    case CM_OPTIONS:
        return 1;
    default:
        return idem_key;
    }
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
    budget_slot(rt, now)->requests++;
    /* for HTTP/1.0 clients without Host (HTTP/1.1 upstreams need one): "host:port" */
    const char *host = rt->insts[0]->url + strlen("http://");
    int idem_key;
    if (gw_hdr_request_head(&ex->head, req, tg, host, ex->chunked, &w->rng, &idem_key) < 0) {
        ex->retry_ok = 0;
        fail_answer(ex, 503, NULL, "out of memory%s", "");
        return;
    }
    ex->retry_ok = retry_safe(req, idem_key);
    cm_timeout_set(&ex->deadline, rt->cfg->timeout_ms);
    if (!ex->has_body) {
        ex->body_done = 1;
        attempt_start(ex);
        return;
    }
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
