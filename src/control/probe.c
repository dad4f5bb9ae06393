/* control/probe.c: one probe (see probe.h): a uv_timer that starts a GET, the answer
 * counted by cm_probe_count. One request at a time: a probe slower than its interval
 * delays the next one instead of piling requests onto a hung instance. */
#include "control/probe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STARTUP_MS                                                                                 \
    50 /* probe period until the first pass: a new instance is routed as soon                      \
          as it answers, not up to a whole interval later */

struct cm_probe {
    uv_loop_t *loop;
    cm_client_t *client;
    cm_probe_spec_t spec;
    char url[400];
    cm_probe_counter_t counter;
    cm_probe_cb cb;
    void *data;
    uv_timer_t timer;
    int inflight; /* a GET is outstanding */
    int freed;    /* cm_probe_free was called: release when idle */
    int closed;   /* the timer's close callback ran */
};

void cm_probe_counter_init(cm_probe_counter_t *c, int rise, int fall, int passing)
{
    memset(c, 0, sizeof *c);
    c->rise = rise > 0 ? rise : 1;
    c->fall = fall > 0 ? fall : 1;
    c->passing = passing;
}

int cm_probe_count(cm_probe_counter_t *c, int ok)
{
    if (ok) {
        c->fail_run = 0;
        c->ok_run++;
        if (!c->passing && c->ok_run >= c->rise) {
            c->passing = 1;
            return 1;
        }
        return 0;
    }
    c->ok_run = 0;
    c->fail_run++;
    if (c->passing && c->fail_run >= c->fall) {
        c->passing = 0;
        return -1;
    }
    return 0;
}

static void maybe_release(cm_probe_t *p)
{
    if (p->freed && p->closed && !p->inflight)
        free(p);
}

static void on_closed(uv_handle_t *h)
{
    cm_probe_t *p = h->data;
    p->closed = 1;
    maybe_release(p);
}

static void on_tick(uv_timer_t *t);

static void on_answer(int status, const char *body, size_t len, void *data)
{
    (void)body, (void)len;
    cm_probe_t *p = data;
    p->inflight = 0;
    if (p->freed) {
        maybe_release(p);
        return;
    }
    int change = cm_probe_count(&p->counter, status >= 200 && status < 400);
    if (change > 0 && uv_timer_get_repeat(&p->timer) != p->spec.interval_ms)
        uv_timer_start(&p->timer, on_tick, p->spec.interval_ms, p->spec.interval_ms);
    if (change)
        p->cb(p, change > 0, p->data);
}

static void on_tick(uv_timer_t *t)
{
    cm_probe_t *p = t->data;
    if (p->inflight)
        return;
    if (cm_client_get(p->client, p->url, (unsigned)p->spec.timeout_ms, NULL, on_answer, p) == 0)
        p->inflight = 1;
}

int cm_probe_new(uv_loop_t *loop, cm_client_t *client, const cm_probe_spec_t *spec,
                 const char *host, int port, int passing, cm_probe_cb cb, void *data,
                 cm_probe_t **out)
{
    cm_probe_t *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->loop = loop;
    p->client = client;
    p->spec = *spec;
    p->cb = cb;
    p->data = data;
    int v6 = strchr(host, ':') != NULL;
    snprintf(p->url, sizeof p->url, "http://%s%s%s:%d%s", v6 ? "[" : "", host, v6 ? "]" : "", port,
             spec->path);
    cm_probe_counter_init(&p->counter, spec->rise, spec->fall, passing);
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    uint64_t period = !passing && spec->interval_ms > STARTUP_MS ? STARTUP_MS : spec->interval_ms;
    uv_timer_start(&p->timer, on_tick, 0, period);
    *out = p;
    return 0;
}

int cm_probe_passing(const cm_probe_t *p)
{
    return p->counter.passing;
}

void cm_probe_free(cm_probe_t *p)
{
    if (!p)
        return;
    p->freed = 1;
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, on_closed);
}
