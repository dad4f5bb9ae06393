/* control/registry.c: the registry (see registry.h). Services and instances in small
 * arrays (a machine runs tens of instances, not thousands); watchers on one doubly
 * linked list, each with a uv_timer for its wait. */
#include "control/registry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct service {
    char name[64];
    cm_reg_inst_t *inst; /* sorted by index */
    int n, cap;
    uint64_t index; /* last change */
} service_t;

typedef struct watcher {
    struct watcher *prev, *next;
    cm_registry_t *reg;
    char service[64]; /* "" = any change */
    uint64_t index;
    cm_registry_watch_cb cb;
    void *data;
    uv_timer_t timer; /* freed in its close callback */
} watcher_t;

struct cm_registry {
    uv_loop_t *loop;
    service_t *svcs;
    int n, cap;
    uint64_t index;
    watcher_t *watchers;
    int nwatchers;
};

static const char *const state_names[] = {"starting", "ready",   "critical",  "leaving",
                                          "draining", "backoff", "crashloop", "stopped"};

const char *cm_inst_state_name(cm_inst_state_t s)
{
    return (unsigned)s < sizeof state_names / sizeof state_names[0] ? state_names[s] : "unknown";
}

int cm_registry_new(uv_loop_t *loop, uint64_t epoch, cm_registry_t **out)
{
    cm_registry_t *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->loop = loop;
    /* epoch in the high half: this run's indexes are above every earlier run's */
    r->index = epoch << 32;
    *out = r;
    return 0;
}

static void on_watcher_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Unlinks w, calls it, closes its timer (the callback may add watchers: w is off the
 * list first). */
static void fire(watcher_t *w, int changed)
{
    cm_registry_t *r = w->reg;
    if (w->prev)
        w->prev->next = w->next;
    else
        r->watchers = w->next;
    if (w->next)
        w->next->prev = w->prev;
    r->nwatchers--;
    uv_timer_stop(&w->timer);
    w->timer.data = w;
    uv_close((uv_handle_t *)&w->timer, on_watcher_closed);
    w->cb(changed, w->data);
}

void cm_registry_release_watchers(cm_registry_t *r)
{
    while (r->watchers)
        fire(r->watchers, 0);
}

void cm_registry_free(cm_registry_t *r)
{
    if (!r)
        return;
    cm_registry_release_watchers(r);
    for (int i = 0; i < r->n; i++)
        free(r->svcs[i].inst);
    free(r->svcs);
    free(r);
}

uint64_t cm_registry_index(const cm_registry_t *r)
{
    return r->index;
}

static service_t *find(const cm_registry_t *r, const char *name)
{
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->svcs[i].name, name) == 0)
            return &r->svcs[i];
    return NULL;
}

uint64_t cm_registry_service_index(const cm_registry_t *r, const char *service)
{
    const service_t *s = find(r, service);
    return s ? s->index : 0;
}

/* The index moved for service: every watcher of it (or of everything) behind the new
 * index is called. The list is walked from the head again after each call, since a
 * callback may add or remove watchers. */
static void changed(cm_registry_t *r, service_t *s)
{
    s->index = ++r->index;
    for (;;) {
        watcher_t *w = r->watchers;
        while (w && !((w->service[0] == '\0' || strcmp(w->service, s->name) == 0) &&
                      w->index < r->index))
            w = w->next;
        if (!w)
            return;
        fire(w, 1);
    }
}

static service_t *get_or_add(cm_registry_t *r, const char *name)
{
    service_t *s = find(r, name);
    if (s)
        return s;
    if (strlen(name) >= sizeof s->name)
        return NULL;
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 8;
        service_t *g = realloc(r->svcs, sizeof *g * (size_t)cap);
        if (!g)
            return NULL;
        r->svcs = g, r->cap = cap;
    }
    s = &r->svcs[r->n++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->index = ++r->index;
    return s;
}

int cm_registry_put(cm_registry_t *r, const char *service, const cm_reg_inst_t *inst)
{
    service_t *s = get_or_add(r, service);
    if (!s)
        return -ENOMEM;
    int i = 0;
    while (i < s->n && s->inst[i].index < inst->index)
        i++;
    if (i < s->n && s->inst[i].index == inst->index) {
        if (memcmp(&s->inst[i], inst, sizeof *inst) == 0)
            return 0;
        s->inst[i] = *inst;
        changed(r, s);
        return 1;
    }
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 4;
        cm_reg_inst_t *g = realloc(s->inst, sizeof *g * (size_t)cap);
        if (!g)
            return -ENOMEM;
        s->inst = g, s->cap = cap;
    }
    memmove(&s->inst[i + 1], &s->inst[i], sizeof *inst * (size_t)(s->n - i));
    s->inst[i] = *inst;
    s->n++;
    changed(r, s);
    return 1;
}

int cm_registry_remove(cm_registry_t *r, const char *service, int index)
{
    service_t *s = find(r, service);
    if (!s)
        return 0;
    for (int i = 0; i < s->n; i++)
        if (s->inst[i].index == index) {
            memmove(&s->inst[i], &s->inst[i + 1], sizeof *s->inst * (size_t)(s->n - i - 1));
            s->n--;
            changed(r, s);
            return 1;
        }
    return 0;
}

int cm_registry_nservices(const cm_registry_t *r)
{
    return r->n;
}

const char *cm_registry_service_name(const cm_registry_t *r, int i)
{
    return i >= 0 && i < r->n ? r->svcs[i].name : NULL;
}

int cm_registry_ninstances(const cm_registry_t *r, const char *service)
{
    const service_t *s = find(r, service);
    return s ? s->n : -1;
}

const cm_reg_inst_t *cm_registry_instance(const cm_registry_t *r, const char *service, int i)
{
    const service_t *s = find(r, service);
    return s && i >= 0 && i < s->n ? &s->inst[i] : NULL;
}

static void on_wait_over(uv_timer_t *t)
{
    fire(t->data, 0);
}

int cm_registry_watch(cm_registry_t *r, const char *service, uint64_t index, uint64_t wait_ms,
                      cm_registry_watch_cb cb, void *data)
{
    uint64_t now = service ? cm_registry_service_index(r, service) : r->index;
    if (now > index)
        return -EALREADY;
    watcher_t *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->reg = r;
    snprintf(w->service, sizeof w->service, "%s", service ? service : "");
    w->index = index;
    w->cb = cb;
    w->data = data;
    uv_timer_init(r->loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, on_wait_over, wait_ms, 0);
    w->next = r->watchers;
    if (r->watchers)
        r->watchers->prev = w;
    r->watchers = w;
    r->nwatchers++;
    return 0;
}

int cm_registry_nwatchers(const cm_registry_t *r)
{
    return r->nwatchers;
}

int cm_registry_nwatchers_past(const cm_registry_t *r, const char *service, uint64_t index,
                               int *total)
{
    int past = 0, all = 0;
    for (const watcher_t *w = r->watchers; w; w = w->next)
        if (strcmp(w->service, service) == 0) {
            all++;
            past += w->index >= index;
        }
    if (total)
        *total = all;
    return past;
}
