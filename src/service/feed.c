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
    cm_feed_t *feed;
    cm_req_t *req;
    int64_t after;
    int limit;
    uint64_t deadline; /* uv_now() ms */
    int force;         /* answer what is there, even nothing: the wait is over */
    int answered;
    struct parked *next;
} parked_t;

struct cm_feed {
    uv_timer_t tick; /* re-query while parked */
    uv_timer_t kick; /* after a commit of ours */
    cm_batch_t *batch;
    parked_t *parked;
    int closing;
    int polling; /* a head query is out (cm_batch_run) */
    int poll_rc; /* its result, for poll_done */
    int64_t poll_head;
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

static void park(cm_feed_t *f, parked_t *p);

/* A read (cm_batch_run): the page when there is one past the cursor or the wait is over;
 * else nothing, and the loop parks the request. */
static void get_work(void *data)
{
    parked_t *p = data;
    cm_db_t *rdb;
    int64_t head = 0;
    int rc = cm_batch_read(p->feed->batch, p->req, NULL, &rdb);
    if (rc == 0)
        rc = cm_outbox_head(rdb, &head);
    if (rc < 0) {
        cm_rest_db_error(p->req, rc);
        p->answered = 1;
    } else if (head != p->after || p->force) {
        answer(p->req, p->after, p->limit, rdb);
        p->answered = 1;
    }
}

static void get_done(void *data)
{
    parked_t *p = data;
    cm_feed_t *f = p->feed;
    if (p->answered) {
        free(p);
    } else if (f->closing || cm_server_draining(p->req)) {
        p->force = 1;
        cm_batch_run(f->batch, CM_BATCH_READ, p->req, get_work, get_done, p);
    } else {
        park(f, p);
    }
}

/* The parked request's page now, whatever it holds. */
static void unpark(cm_feed_t *f, parked_t *p)
{
    p->force = 1;
    cm_batch_run(f->batch, CM_BATCH_READ, p->req, get_work, get_done, p);
}

static void poll_work(void *data)
{
    cm_feed_t *f = data;
    cm_db_t *rdb;
    f->poll_rc = cm_batch_read(f->batch, NULL, NULL, &rdb);
    if (f->poll_rc == 0)
        f->poll_rc = cm_outbox_head(rdb, &f->poll_head);
}

/* Answers the parked requests that have events past their cursor, whose wait ended, or
 * whose server drains; keeps the rest. */
static void poll_done(void *data)
{
    cm_feed_t *f = data;
    f->polling = 0;
    uint64_t now = uv_now(f->tick.loop);
    parked_t **pp = &f->parked;
    while (*pp) {
        parked_t *p = *pp;
        if (f->poll_rc == 0 && f->poll_head <= p->after && now < p->deadline && !f->closing &&
            !cm_server_draining(p->req)) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        unpark(f, p);
    }
    if (!f->parked)
        uv_timer_stop(&f->tick);
}

static void recheck(cm_feed_t *f)
{
    if (!f->parked || f->polling)
        return;
    f->polling = 1;
    cm_batch_run(f->batch, CM_BATCH_READ, NULL, poll_work, poll_done, f);
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
    while (f->parked) {
        parked_t *p = f->parked;
        f->parked = p->next;
        unpark(f, p);
    }
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

static void park(cm_feed_t *f, parked_t *p)
{
    p->next = f->parked;
    f->parked = p;
    if (!uv_is_active((uv_handle_t *)&f->tick))
        uv_timer_start(&f->tick, on_tick, POLL_MS, POLL_MS);
}

void cm_feed_get(cm_feed_t *f, cm_req_t *req)
{
    int limit;
    int64_t after;
    uint64_t wait;
    if (cm_rest_page(req, &limit, &after) < 0 || wait_param(req, &wait) < 0)
        return;
    parked_t *p = malloc(sizeof *p);
    if (!p) {
        cm_res_error(req, 500, "out of memory");
        return;
    }
    *p = (parked_t){.feed = f,
                    .req = req,
                    .after = after,
                    .limit = limit,
                    .deadline = uv_now(f->tick.loop) + wait,
                    .force = wait == 0 || f->closing || cm_server_draining(req)};
    cm_batch_run(f->batch, CM_BATCH_READ, req, get_work, get_done, p);
}
