/* service/retention.c: background pruning (see retention.h). */
#include "service/retention.h"

#include "service/outbox.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/timefmt.h"
#include "store/idempotency.h"

struct cm_retention {
    uv_timer_t timer;
    cm_batch_t *batch;
    cm_db_t *db;
    uint64_t key_ms, event_ms;
    int full; /* the last tick deleted a whole batch of some kind */
    int kept; /* the tick's unit was kept: on_kept schedules the next */
};

static atomic_int running; /* one pruner per process */

void cm_retention_cutoff(uint64_t ms, char out[32])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t t = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - (int64_t)ms;
    if (t < 0)
        t = 0;
    ts.tv_sec = (time_t)(t / 1000);
    ts.tv_nsec = (long)(t % 1000) * 1000000;
    cm_time_rfc3339_at(&ts, out);
}

static void on_tick(uv_timer_t *t);

static void schedule(cm_retention_t *r)
{
    uv_timer_start(&r->timer, on_tick, r->full ? 10 : CM_RETENTION_TICK_MS, 0);
}

static void on_kept(void *data, int ok)
{
    cm_retention_t *r = data;
    if (!ok)
        r->full = 0; /* the store refused: back to the slow pace */
    if (!uv_is_closing((uv_handle_t *)&r->timer))
        schedule(r);
}

/* A tick's unit (cm_batch_run: on the store's writer). */
static void prune_work(void *data)
{
    cm_retention_t *r = data;
    char keys[32], events[32];
    cm_retention_cutoff(r->key_ms, keys);
    cm_retention_cutoff(r->event_ms, events);
    r->kept = 0;
    int rc = cm_batch_begin(r->batch);
    int began = rc == 0, nk = 0, ne = 0;
    if (rc == 0 && (nk = cm_idem_prune(r->db, keys, CM_RETENTION_BATCH)) < 0)
        rc = nk;
    if (rc == 0 && (ne = cm_outbox_prune(r->db, events, CM_RETENTION_BATCH)) < 0)
        rc = ne;
    if (rc < 0) {
        cm_log_msg(CM_LOG_WARN, "retention: pruning failed, retried later: %s", strerror(-rc));
        if (began)
            cm_batch_undo(r->batch);
        r->full = 0;
        return;
    }
    r->full = nk == CM_RETENTION_BATCH || ne == CM_RETENTION_BATCH;
    if (nk + ne == 0) { /* nothing to keep: the unit is empty */
        cm_batch_undo(r->batch);
        return;
    }
    r->kept = 1;
    cm_batch_keep(r->batch, on_kept, r);
}

static void prune_done(void *data)
{
    cm_retention_t *r = data;
    if (!r->kept && !uv_is_closing((uv_handle_t *)&r->timer))
        schedule(r);
}

static void on_tick(uv_timer_t *t)
{
    cm_retention_t *r = t->data;
    cm_batch_run(r->batch, CM_BATCH_WRITE, NULL, prune_work, prune_done, r);
}

int cm_retention_start(uv_loop_t *loop, cm_batch_t *b, cm_db_t *db, uint64_t key_ms,
                       uint64_t event_ms, cm_retention_t **out)
{
    *out = NULL;
    if (atomic_exchange(&running, 1))
        return 0;
    cm_retention_t *r = calloc(1, sizeof *r);
    if (!r) {
        atomic_store(&running, 0);
        return -ENOMEM;
    }
    r->batch = b;
    r->db = db;
    r->key_ms = key_ms;
    r->event_ms = event_ms;
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    schedule(r);
    *out = r;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

void cm_retention_free(cm_retention_t *r)
{
    if (!r)
        return;
    atomic_store(&running, 0);
    uv_close((uv_handle_t *)&r->timer, on_closed);
}
