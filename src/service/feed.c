/* service/feed.c: the long-poll event feed (see feed.h). Parked requests wait on a list;
 * a commit of this worker's batch wakes them on the next iteration (a 0 ms timer: the
 * commit runs in the batch's check phase, where no read group may be left open), and a
 * 100 ms timer re-queries the head while any is parked, which sees the commits of other
 * workers and other instances sharing the database. */
#include "service/feed.h"

#include "service/outbox.h"
#include "service/rest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/flags.h"
#include "core/server.h"

#define POLL_MS 100

typedef struct parked {
    cm_req_t *req;
    int64_t after;
    int limit;
    uint64_t deadline; /* uv_now() ms */
    struct parked *next;
} parked_t;

struct cm_feed {
    uv_timer_t tick; /* re-query while parked */
    uv_timer_t kick; /* after a commit of ours */
    cm_batch_t *batch;
    parked_t *parked;
    int closing;
    int open_handles; /* the memory goes when both timers are closed */
};

/* Answers req with the page past after (read on the committed snapshot). */
static void answer(cm_req_t *req, int64_t after, int limit, cm_db_t *rdb)
{
    int64_t last, head = 0;
    int n;
    cm_buf_append_str(&req->res_body, "{\"events\":");
    int rc = cm_outbox_page(rdb, after, limit, &req->res_body, &last, &n);
    if (rc == 0)
        rc = cm_outbox_head(rdb, &head);
    if (rc < 0) {
        cm_buf_reset(&req->res_body);
        cm_rest_db_error(req, rc);
        return;
    }
    cm_buf_appendf(&req->res_body, ",\"last\":%lld,\"head\":%lld}", (long long)last,
                   (long long)head);
    cm_res_send(req, 200);
}

/* Answers the parked requests that have events past their cursor, whose wait ended, or
 * whose server drains; keeps the rest. */
static void recheck(cm_feed_t *f)
{
    if (!f->parked)
        return;
    cm_db_t *rdb;
    int64_t head = 0;
    int rc = cm_batch_read(f->batch, f->parked->req, NULL, &rdb);
    if (rc == 0)
        rc = cm_outbox_head(rdb, &head);
    uint64_t now = uv_now(f->tick.loop);
    parked_t **pp = &f->parked;
    while (*pp) {
        parked_t *p = *pp;
        if (rc == 0 && head <= p->after && now < p->deadline && !f->closing &&
            !cm_server_draining(p->req)) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        if (rc < 0)
            cm_rest_db_error(p->req, rc);
        else
            answer(p->req, p->after, p->limit, rdb);
        free(p);
    }
    if (!f->parked)
        uv_timer_stop(&f->tick);
}

static void on_tick(uv_timer_t *t)
{
    recheck(t->data);
}

static void on_commit(void *data, int ok)
{
    cm_feed_t *f = data;
    if (ok && f->parked)
        uv_timer_start(&f->kick, on_tick, 0, 0);
}

int cm_feed_new(uv_loop_t *loop, cm_batch_t *b, cm_feed_t **out)
{
    cm_feed_t *f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    f->batch = b;
    uv_timer_init(loop, &f->tick);
    uv_timer_init(loop, &f->kick);
    f->tick.data = f->kick.data = f;
    f->open_handles = 2;
    cm_batch_on_commit(b, on_commit, f);
    *out = f;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    cm_feed_t *f = h->data; /* libuv runs close callbacks in no promised order */
    if (--f->open_handles == 0)
        free(f);
}

void cm_feed_free(cm_feed_t *f)
{
    if (!f)
        return;
    f->closing = 1;
    recheck(f);
    cm_batch_on_commit(f->batch, NULL, NULL);
    uv_close((uv_handle_t *)&f->tick, on_closed);
    uv_close((uv_handle_t *)&f->kick, on_closed);
}

/* ?wait=: a duration, capped. 0, or -EINVAL after answering 422. */
static int wait_param(cm_req_t *req, uint64_t *ms)
{
    char v[32];
    *ms = 0;
    int n = cm_req_query(req, "wait", v, sizeof v);
    if (n == -ENOENT)
        return 0;
    if (n < 0 || cm_parse_duration_ms(v, ms) < 0) {
        cm_res_error_field(req, 422, "wait",
                           "wait must be a duration such as 30s or 500ms (at most 60s)");
        return -EINVAL;
    }
    if (*ms > CM_FEED_WAIT_MAX_MS)
        *ms = CM_FEED_WAIT_MAX_MS; /* a blocking query's wait is capped, not refused */
    return 0;
}

void cm_feed_get(cm_feed_t *f, cm_req_t *req, cm_handler_fn again)
{
    int limit;
    int64_t after, head;
    uint64_t wait;
    if (cm_rest_page(req, &limit, &after) < 0 || wait_param(req, &wait) < 0)
        return;
    cm_db_t *rdb;
    int rc = cm_batch_read(f->batch, req, again, &rdb);
    if (rc == 1)
        return; /* called again after the commit of this connection's write */
    if (rc == 0)
        rc = cm_outbox_head(rdb, &head);
    if (rc < 0) {
        cm_rest_db_error(req, rc);
        return;
    }
    if (head != after || wait == 0 || f->closing || cm_server_draining(req)) {
        answer(req, after, limit, rdb);
        return;
    }
    parked_t *p = malloc(sizeof *p);
    if (!p) {
        cm_res_error(req, 500, "out of memory");
        return;
    }
    *p = (parked_t){req, after, limit, uv_now(f->tick.loop) + wait, f->parked};
    f->parked = p;
    if (!uv_is_active((uv_handle_t *)&f->tick))
        uv_timer_start(&f->tick, on_tick, POLL_MS, POLL_MS);
}
