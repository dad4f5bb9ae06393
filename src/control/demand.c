/* control/demand.c: the autoscaler's tick (see demand.h). Each instance's in-flight work
 * comes from two views, whichever is larger: the gateway's (time of its attempts on the
 * instance, so queueing at the gateway counts) and the instance's own (its request
 * time, which also sees callers that do not go through the gateway, as orders calling
 * users). Taking the larger never counts one request twice. A tick decides on the
 * scrapes answered since the last tick, then starts the next ones. */
#include "control/demand.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/load.h"

#define MAX_UPSTREAMS 256 /* rows read from the gateway's /metrics */

typedef struct cm_demand cm_demand_t;

/* The time sum of one instance as one source saw it. */
typedef struct view {
    double sum;     /* seconds, at `at` */
    uint64_t at;    /* loop time (ms) of that scrape */
    int has;        /* sum/at set */
    double rate;    /* in flight: d(sum)/dt between the last two scrapes */
    uint64_t round; /* the tick whose scrape gave rate */
    int pid;        /* instance view: whose sum it was (a restart starts over) */
} view_t;

typedef struct slot {
    cm_demand_t *d;
    int svc, index;
    view_t gw, own;
    int scraping;
    int stale; /* a reload put another service here while its scrape ran: drop the answer */
} slot_t;

struct cm_demand {
    uv_loop_t *loop;
    const cm_spec_t *spec;
    cm_registry_t *reg;
    cm_sup_t *sup;
    cm_client_t *client;
    cm_autoscale_t *as;
    uv_timer_t timer;
    uint64_t tick_ms;               /* the shortest tick of the autoscaled services */
    uint64_t round;                 /* ticks so far */
    uint64_t due[CM_SPEC_MAX_SVCS]; /* loop time of each service's next decision */
    slot_t (*slots)[CM_SPEC_MAX_INST];
    int gw_pid; /* the gateway whose sums gw views hold */
    int gw_scraping;
    int outstanding; /* scrapes in flight */
    int running;     /* the timer runs */
    int closing, closed;
};

/* ---------------------------------------------------------------------------------- */
/* Views                                                                              */
/* ---------------------------------------------------------------------------------- */

static void view_update(view_t *v, double sum, uint64_t now, uint64_t round)
{
    if (v->has && now > v->at && sum >= v->sum) {
        v->rate = (sum - v->sum) * 1000.0 / (double)(now - v->at);
        v->round = round;
    }
    /* a smaller sum: the process restarted; the next scrape gives a rate again */
    v->sum = sum;
    v->at = now;
    v->has = 1;
}

static void maybe_free(cm_demand_t *d)
{
    if (d->closed && d->outstanding == 0)
        free(d->slots), free(d);
}

static int autoscaled(const cm_demand_t *d, int i)
{
    return d->spec->svcs[i].autoscale.on;
}

/* ---------------------------------------------------------------------------------- */
/* Scrapes                                                                            */
/* ---------------------------------------------------------------------------------- */

static void url_of(const cm_svc_spec_t *sp, int index, const char *path, char *out, size_t cap)
{
    int v6 = strchr(sp->host, ':') != NULL;
    snprintf(out, cap, "http://%s%s%s:%d%s", v6 ? "[" : "", sp->host, v6 ? "]" : "",
             sp->port + index, path);
}

static void on_gateway(int status, const char *body, size_t len, void *data)
{
    cm_demand_t *d = data;
    d->outstanding--;
    d->gw_scraping = 0;
    if (d->closing || status != 200) {
        maybe_free(d);
        return;
    }
    cm_load_up_t *up = malloc(sizeof *up * MAX_UPSTREAMS);
    if (!up)
        return;
    int n = cm_load_parse_upstreams(body, len, up, MAX_UPSTREAMS);
    uint64_t now = uv_now(d->loop);
    for (int i = 0; i < d->spec->nsvcs; i++) {
        if (!autoscaled(d, i))
            continue;
        const cm_svc_spec_t *sp = &d->spec->svcs[i];
        for (int j = 0; j < CM_SPEC_MAX_INST; j++) {
            char url[300];
            url_of(sp, j, "", url, sizeof url);
            for (int k = 0; k < n; k++)
                if (strcmp(up[k].url, url) == 0)
                    view_update(&d->slots[i][j].gw, up[k].time_sum, now, d->round);
        }
    }
    free(up);
}

static void on_instance(int status, const char *body, size_t len, void *data)
{
    slot_t *s = data;
    cm_demand_t *d = s->d;
    d->outstanding--;
    s->scraping = 0;
    int stale = s->stale;
    s->stale = 0;
    if (d->closing || status != 200 || stale) {
        maybe_free(d);
        return;
    }
    cm_load_sample_t cur;
    /* -EINVAL is an instance that served nothing but probes yet: no time, a valid 0 */
    cm_load_parse(body, len, &cur);
    int pid = cm_sup_pid(d->sup, d->spec->svcs[s->svc].name, s->index);
    if (pid != s->own.pid)
        s->own.has = 0, s->own.pid = pid;
    view_update(&s->own, cur.time_sum, uv_now(d->loop), d->round);
}

static void scrape(cm_demand_t *d)
{
    unsigned timeout = d->tick_ms > 200 ? (unsigned)d->tick_ms : 200;
    char url[300];
    if (d->spec->has_gateway && !d->gw_scraping) {
        const cm_svc_spec_t *gw = &d->spec->svcs[d->spec->nsvcs - 1];
        int pid = cm_sup_pid(d->sup, gw->name, 0);
        if (pid != d->gw_pid) { /* a new gateway: its sums start over */
            for (int i = 0; i < d->spec->nsvcs; i++)
                for (int j = 0; j < CM_SPEC_MAX_INST; j++)
                    d->slots[i][j].gw.has = 0;
            d->gw_pid = pid;
        }
        url_of(gw, 0, "/metrics", url, sizeof url);
        if (pid > 0 && cm_client_get(d->client, url, timeout, NULL, on_gateway, d) == 0)
            d->gw_scraping = 1, d->outstanding++;
    }
    for (int i = 0; i < d->spec->nsvcs; i++) {
        const cm_svc_spec_t *sp = &d->spec->svcs[i];
        if (!autoscaled(d, i) || !sp->self)
            continue;
        for (int j = 0; j < CM_SPEC_MAX_INST; j++) {
            slot_t *s = &d->slots[i][j];
            if (s->scraping || cm_sup_pid(d->sup, sp->name, j) <= 0)
                continue;
            url_of(sp, j, "/metrics", url, sizeof url);
            if (cm_client_get(d->client, url, timeout, NULL, on_instance, s) == 0)
                s->scraping = 1, d->outstanding++;
        }
    }
}

/* ---------------------------------------------------------------------------------- */
/* Ticks                                                                              */
/* ---------------------------------------------------------------------------------- */

/* The service's input from the scrapes answered during the last round. */
static void input_of(cm_demand_t *d, int i, cm_as_input_t *in)
{
    const cm_svc_spec_t *sp = &d->spec->svcs[i];
    memset(in, 0, sizeof *in);
    in->desired = cm_sup_count(d->sup, sp->name);
    int n = cm_registry_ninstances(d->reg, sp->name), running = 0;
    cm_reg_inst_t *set = n > 0 ? calloc((size_t)n, sizeof *set) : NULL;
    for (int k = 0; set && k < n; k++) {
        set[k] = *cm_registry_instance(d->reg, sp->name, k);
        running += set[k].pid > 0;
    }
    in->ready = set ? cm_autoscale_capacity(set, n, in->desired, &in->surge) : 0;
    free(set);
    int seen = 0;
    for (int j = 0; j < CM_SPEC_MAX_INST; j++) {
        const slot_t *s = &d->slots[i][j];
        double l = -1;
        if (s->gw.has && s->gw.round + 1 == d->round)
            l = s->gw.rate;
        if (s->own.has && s->own.round + 1 == d->round && s->own.rate > l)
            l = s->own.rate;
        if (l >= 0)
            in->load += l, seen++;
    }
    /* no instance running is no load measured, and that is a valid zero */
    in->valid = seen > 0 || running == 0;
}

static void on_tick(uv_timer_t *t)
{
    cm_demand_t *d = t->data;
    uint64_t now = uv_now(d->loop);
    d->round++;
    for (int i = 0; i < d->spec->nsvcs; i++) {
        if (!autoscaled(d, i) || now + d->tick_ms / 4 < d->due[i])
            continue;
        d->due[i] = now + d->spec->svcs[i].autoscale.tick_ms;
        cm_as_input_t in;
        input_of(d, i, &in);
        if (in.desired >= 0 && d->round > 1)
            cm_autoscale_tick(d->as, d->spec->svcs[i].name, &in, NULL);
    }
    scrape(d);
}

/* The shortest tick of spec's autoscaled services, 0 when none is. */
static uint64_t shortest_tick(const cm_spec_t *spec)
{
    uint64_t tick = 0;
    for (int i = 0; i < spec->nsvcs; i++) {
        uint64_t t = spec->svcs[i].autoscale.tick_ms;
        if (spec->svcs[i].autoscale.on && (tick == 0 || t < tick))
            tick = t;
    }
    return tick;
}

int cm_demand_new(uv_loop_t *loop, const cm_spec_t *spec, cm_registry_t *reg, cm_sup_t *sup,
                  cm_client_t *client, cm_autoscale_t *as, cm_demand_t **out)
{
    cm_demand_t *d = calloc(1, sizeof *d);
    if (!d || !(d->slots = calloc(CM_SPEC_MAX_SVCS, sizeof *d->slots))) {
        free(d);
        return -ENOMEM;
    }
    d->loop = loop;
    d->spec = spec;
    d->reg = reg;
    d->sup = sup;
    d->client = client;
    d->as = as;
    for (int i = 0; i < CM_SPEC_MAX_SVCS; i++)
        for (int j = 0; j < CM_SPEC_MAX_INST; j++)
            d->slots[i][j] = (slot_t){.d = d, .svc = i, .index = j};
    d->tick_ms = shortest_tick(spec);
    uv_timer_init(loop, &d->timer);
    d->timer.data = d;
    *out = d;
    return 0;
}

void cm_demand_start(cm_demand_t *d)
{
    d->running = 1;
    if (d->tick_ms > 0)
        uv_timer_start(&d->timer, on_tick, d->tick_ms, d->tick_ms);
}

void cm_demand_stop(cm_demand_t *d)
{
    if (d)
        d->running = 0, uv_timer_stop(&d->timer);
}

int cm_demand_respec(cm_demand_t *d, const cm_spec_t *spec)
{
    slot_t(*was)[CM_SPEC_MAX_INST] = malloc(sizeof *was * CM_SPEC_MAX_SVCS);
    if (!was)
        return -ENOMEM;
    memcpy(was, d->slots, sizeof *was * CM_SPEC_MAX_SVCS);
    uint64_t due[CM_SPEC_MAX_SVCS] = {0};
    /* a slot's place is where its scrape's answer lands (the callback holds it), so the
     * scraping flag stays in place; the measurements move with their service */
    for (int i = 0; i < CM_SPEC_MAX_SVCS; i++) {
        const char *now = i < spec->nsvcs ? spec->svcs[i].name : NULL;
        const char *then = i < d->spec->nsvcs ? d->spec->svcs[i].name : NULL;
        int same = now && then && strcmp(now, then) == 0;
        int from = -1;
        for (int k = 0; now && k < d->spec->nsvcs && k < CM_SPEC_MAX_SVCS; k++)
            if (strcmp(d->spec->svcs[k].name, now) == 0)
                from = k;
        if (from >= 0)
            due[i] = d->due[from];
        for (int j = 0; j < CM_SPEC_MAX_INST; j++) {
            slot_t *s = &d->slots[i][j];
            s->stale = s->stale || (s->scraping && !same);
            s->gw = from >= 0 ? was[from][j].gw : (view_t){0};
            s->own = from >= 0 ? was[from][j].own : (view_t){0};
        }
    }
    free(was);
    memcpy(d->due, due, sizeof due);
    d->spec = spec;
    uint64_t tick = shortest_tick(spec);
    if (tick != d->tick_ms && d->running) {
        uv_timer_stop(&d->timer);
        if (tick > 0)
            uv_timer_start(&d->timer, on_tick, tick, tick);
    }
    d->tick_ms = tick;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    cm_demand_t *d = h->data;
    d->closed = 1;
    maybe_free(d);
}

void cm_demand_free(cm_demand_t *d)
{
    if (!d)
        return;
    d->closing = 1;
    uv_close((uv_handle_t *)&d->timer, on_closed);
}
