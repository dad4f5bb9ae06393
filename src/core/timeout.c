/* core/timeout.c: one-shot timeouts that move without touching the timer heap (see
 * timeout.h). The libuv timer stays armed at the earliest due time asked for since it
 * last fired; a firing before the current due time re-arms for the rest. */
#include "core/timeout.h"

static void on_fire(uv_timer_t *h)
{
    cm_timeout_t *t = h->data;
    uint64_t now = uv_now(h->loop);
    t->armed = 0;
    if (!t->due)
        return;
    if (t->due > now) {
        t->armed = t->due;
        uv_timer_start(&t->timer, on_fire, t->due - now, 0);
        return;
    }
    t->due = 0;
    t->cb(t);
}

void cm_timeout_init(uv_loop_t *loop, cm_timeout_t *t, cm_timeout_cb cb, void *data)
{
    uv_timer_init(loop, &t->timer);
    t->timer.data = t;
    t->due = t->armed = 0;
    t->cb = cb;
    t->data = data;
}

void cm_timeout_set(cm_timeout_t *t, uint64_t ms)
{
    uint64_t now = uv_now(t->timer.loop);
    t->due = now + (ms ? ms : 1); /* due 0 means none */
    if (t->armed && t->armed <= t->due)
        return; /* fires early, then re-arms for the rest */
    t->armed = t->due;
    uv_timer_start(&t->timer, on_fire, t->due - now, 0);
}

void cm_timeout_clear(cm_timeout_t *t)
{
    t->due = 0; /* an armed timer fires once more and finds nothing owed */
}

void cm_timeout_close(cm_timeout_t *t, uv_close_cb close_cb)
{
    t->due = t->armed = 0;
    uv_close((uv_handle_t *)&t->timer, close_cb);
}
