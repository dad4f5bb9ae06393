/* service/subscribe.c: a durable feed subscriber (see subscribe.h). */
#include "service/subscribe.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/client.h"
#include "core/log.h"

#define LIMIT          200
#define BACKOFF_MS     250
#define BACKOFF_MAX_MS 5000

struct cm_sub {
    uv_timer_t timer;
    cm_client_t *client;
    cm_batch_t *batch;
    cm_db_t *db; /* the batch's write connection */
    cm_sub_cfg_t cfg;
    int64_t cursor;  /* committed; -1 until read */
    int64_t pending; /* the cursor a kept page will commit */
    unsigned backoff_ms;
    int tries;
    int polling, closing, warned;
    /* a store job's (cm_batch_run): its input and result, for its done on the loop */
    json_t *page;
    int rc;
    int applied; /* the page's unit was kept: on_kept goes on */
};

static atomic_int running; /* one subscriber per process */

static const char sql_get[] = "SELECT last_id FROM feed_cursors WHERE name = ?";
static const char sql_set[] = "INSERT INTO feed_cursors(name, last_id) VALUES(?, ?)"
                              " ON CONFLICT(name) DO UPDATE SET last_id = excluded.last_id";

int cm_sub_cursor(cm_db_t *db, const char *name, int64_t *cursor)
{
    cm_stmt_t *st = cm_db_stmt(db, sql_get);
    if (!st)
        return -EIO;
    cm_stmt_bind_text(st, 1, name, strlen(name));
    int rc = cm_stmt_step(st);
    *cursor = rc == CM_DB_ROW ? cm_stmt_int(st, 0) : 0;
    cm_stmt_reset(st);
    return rc < 0 ? rc : 0;
}

static int set_cursor(cm_db_t *db, const char *name, int64_t cursor)
{
    cm_stmt_t *st = cm_db_stmt(db, sql_set);
    if (!st)
        return -EIO;
    cm_stmt_bind_text(st, 1, name, strlen(name));
    cm_stmt_bind_int(st, 2, cursor);
    int rc = cm_stmt_step(st);
    cm_stmt_reset(st);
    return rc < 0 ? rc : 0;
}

static void poll_now(uv_timer_t *t);

static void later(cm_sub_t *s, unsigned ms)
{
    if (!s->closing)
        uv_timer_start(&s->timer, poll_now, ms, 0);
}

/* A failed poll or page: the next try at the next instance, after a growing pause. */
static void failed(cm_sub_t *s)
{
    s->tries++;
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : BACKOFF_MS;
    if (s->backoff_ms > BACKOFF_MAX_MS)
        s->backoff_ms = BACKOFF_MAX_MS;
    s->cursor = -1; /* read again: another instance may have moved it */
    later(s, s->backoff_ms);
}

static void on_kept(void *data, int ok)
{
    cm_sub_t *s = data;
    if (!ok) {
        cm_log_msg(CM_LOG_WARN, "subscribe %s: a page did not commit; asked again", s->cfg.name);
        failed(s);
        return;
    }
    s->cursor = s->pending;
    s->backoff_ms = 0;
    later(s, 0);
}

/* The page's unit: the stored cursor, the events past it, the new cursor. Returns 0
 * (kept or nothing to do; the next poll is scheduled) or a negative errno (taken back). */
static int apply_page(cm_sub_t *s, json_t *events)
{
    int rc = cm_batch_begin(s->batch);
    if (rc < 0)
        return rc;
    int64_t cursor, last;
    rc = cm_sub_cursor(s->db, s->cfg.name, &cursor);
    last = cursor;
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev)
    {
        if (rc < 0)
            break;
        json_t *jid = json_object_get(ev, "id");
        const char *type = json_string_value(json_object_get(ev, "type"));
        if (!json_is_integer(jid) || !type) {
            rc = -EPROTO;
            break;
        }
        int64_t id = json_integer_value(jid);
        if (id <= last)
            continue; /* applied already (by us or another instance) */
        if (id != last + 1 && !s->warned) {
            s->warned = 1; /* pruned past our cursor: said once */
            cm_log_msg(CM_LOG_WARN,
                       "subscribe %s: event %lld follows %lld: the events between are gone "
                       "from the feed (retention)",
                       s->cfg.name, (long long)id, (long long)last);
        }
        rc = s->cfg.apply(s->cfg.data, s->db, id, type, json_object_get(ev, "data"));
        last = id;
    }
    if (rc == 0 && last != cursor)
        rc = set_cursor(s->db, s->cfg.name, last);
    if (rc < 0) {
        cm_batch_undo(s->batch);
        return rc;
    }
    if (last == cursor) { /* nothing new for this database */
        cm_batch_undo(s->batch);
        s->cursor = cursor;
        return 0;
    }
    s->pending = last;
    s->applied = 1;
    cm_batch_keep(s->batch, on_kept, s);
    return 0;
}

/* The page's unit (cm_batch_run: on the store's writer), then its outcome on the loop. */
static void apply_work(void *data)
{
    cm_sub_t *s = data;
    s->applied = 0;
    s->rc = apply_page(s, json_object_get(s->page, "events"));
}

static void apply_done(void *data)
{
    cm_sub_t *s = data;
    json_decref(s->page);
    s->page = NULL;
    if (s->closing)
        return;
    if (s->rc < 0) {
        cm_log_msg(CM_LOG_WARN, "subscribe %s: a page could not be applied: %s", s->cfg.name,
                   strerror(-s->rc));
        failed(s);
        return;
    }
    s->tries = 0;
    if (!s->applied)
        later(s, 0); /* nothing new: the next page now; else on_kept goes on */
}

static void on_page(int status, const char *body, size_t len, void *data)
{
    cm_sub_t *s = data;
    s->polling = 0;
    if (status == -ECANCELED || s->closing)
        return;
    json_t *o = status == 200 ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *events = json_object_get(o, "events");
    json_t *head = json_object_get(o, "head");
    if (!json_is_array(events) || !json_is_integer(head)) {
        if (s->backoff_ms == 0)
            cm_log_msg(CM_LOG_WARN, "subscribe %s: no page (%d); retrying", s->cfg.name, status);
        json_decref(o);
        failed(s);
        return;
    }
    atomic_store(s->cfg.head, (long long)json_integer_value(head));
    if (json_integer_value(head) < s->cursor) {
        /* the feed is behind our cursor: another database, or restored from a backup */
        cm_log_msg(CM_LOG_ERROR,
                   "subscribe %s: the feed's newest event %lld is before our "
                   "cursor %lld; waiting for it",
                   s->cfg.name, (long long)json_integer_value(head), (long long)s->cursor);
        json_decref(o);
        failed(s);
        return;
    }
    s->page = o;
    cm_batch_run(s->batch, CM_BATCH_WRITE, NULL, apply_work, apply_done, s);
}

/* The long poll for the page past the cursor. */
static void ask(cm_sub_t *s)
{
    char base[512], url[700];
    if (s->cfg.base(s->cfg.data, s->tries, base, sizeof base) < 0) {
        failed(s);
        return;
    }
    snprintf(url, sizeof url, "%s/events?after=%lld&limit=%d&wait=%ums", base, (long long)s->cursor,
             LIMIT, s->cfg.wait_ms);
    int rc = cm_client_get(s->client, url, s->cfg.wait_ms + 5000, NULL, on_page, s);
    if (rc < 0) {
        failed(s);
        return;
    }
    s->polling = 1;
}

static void cursor_work(void *data)
{
    cm_sub_t *s = data;
    cm_db_t *rdb;
    s->rc = cm_batch_read(s->batch, NULL, NULL, &rdb);
    if (s->rc == 0)
        s->rc = cm_sub_cursor(rdb, s->cfg.name, &s->cursor);
}

static void cursor_done(void *data)
{
    cm_sub_t *s = data;
    s->polling = 0;
    if (s->closing)
        return;
    if (s->rc < 0) {
        s->cursor = -1;
        failed(s);
        return;
    }
    ask(s);
}

static void poll_now(uv_timer_t *t)
{
    cm_sub_t *s = t->data;
    if (s->closing || s->polling)
        return;
    if (s->cursor >= 0) {
        ask(s);
        return;
    }
    s->polling = 1; /* the stored cursor first */
    cm_batch_run(s->batch, CM_BATCH_READ, NULL, cursor_work, cursor_done, s);
}

int cm_sub_start(uv_loop_t *loop, cm_batch_t *b, cm_db_t *db, const cm_sub_cfg_t *cfg,
                 cm_sub_t **out)
{
    *out = NULL;
    if (atomic_exchange(&running, 1))
        return 0;
    cm_sub_t *s = calloc(1, sizeof *s);
    if (!s || cm_client_new(loop, &s->client) < 0) {
        free(s);
        atomic_store(&running, 0);
        return -ENOMEM;
    }
    s->batch = b;
    s->db = db;
    s->cfg = *cfg;
    s->cursor = -1;
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    later(s, 0);
    *out = s;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

void cm_sub_free(cm_sub_t *s)
{
    if (!s)
        return;
    s->closing = 1;
    cm_client_free(s->client); /* the poll in flight: -ECANCELED */
    atomic_store(&running, 0);
    uv_close((uv_handle_t *)&s->timer, on_closed);
}
