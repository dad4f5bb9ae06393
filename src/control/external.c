/* control/external.c: hand-registered instances with a TTL (see external.h). A slot per
 * instance with its deadline timer; a heartbeat re-arms it, its firing removes the
 * instance from the registry. */
#include "control/external.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    cm_ext_t *e;
    int used;
    char service[64];
    cm_reg_inst_t inst;
    uv_timer_t ttl; /* embedded: the slots array lives until every timer closed */
} slot_t;

struct cm_ext {
    uv_loop_t *loop;
    cm_registry_t *reg;
    void (*on_change)(void *, const char *);
    void *arg;
    slot_t slots[CM_EXT_MAX];
    int closing; /* timers still to close before free */
};

int cm_ext_new(uv_loop_t *loop, cm_registry_t *reg, void (*on_change)(void *, const char *),
               void *arg, cm_ext_t **out)
{
    cm_ext_t *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    e->loop = loop;
    e->reg = reg;
    e->on_change = on_change;
    e->arg = arg;
    for (int i = 0; i < CM_EXT_MAX; i++) {
        e->slots[i].e = e;
        uv_timer_init(loop, &e->slots[i].ttl);
        e->slots[i].ttl.data = &e->slots[i];
    }
    *out = e;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    slot_t *s = h->data;
    cm_ext_t *e = s->e;
    if (--e->closing == 0)
        free(e);
}

void cm_ext_free(cm_ext_t *e)
{
    if (!e)
        return;
    e->closing = CM_EXT_MAX;
    for (int i = 0; i < CM_EXT_MAX; i++)
        uv_close((uv_handle_t *)&e->slots[i].ttl, on_closed);
}

static void drop(slot_t *s)
{
    cm_ext_t *e = s->e;
    uv_timer_stop(&s->ttl);
    s->used = 0;
    cm_registry_remove(e->reg, s->service, s->inst.index);
    if (e->on_change)
        e->on_change(e->arg, s->service);
}

static void on_ttl(uv_timer_t *t)
{
    drop(t->data); /* no heartbeat within the TTL: gone, as Consul's critical TTL check */
}

static slot_t *find(cm_ext_t *e, const char *service, const char *id)
{
    for (int i = 0; i < CM_EXT_MAX; i++)
        if (e->slots[i].used && strcmp(e->slots[i].service, service) == 0 &&
            strcmp(e->slots[i].inst.ext_id, id) == 0)
            return &e->slots[i];
    return NULL;
}

int cm_ext_put(cm_ext_t *e, const char *service, const char *id, const char *host, int port,
               uint64_t ttl_ms)
{
    if (strlen(service) >= sizeof e->slots[0].service ||
        strlen(id) >= sizeof e->slots[0].inst.ext_id ||
        strlen(host) >= sizeof e->slots[0].inst.host || port < 1 || port > 65535 || ttl_ms == 0 ||
        ttl_ms > CM_EXT_TTL_MAX_MS)
        return -EINVAL;
    slot_t *s = find(e, service, id);
    int fresh = !s;
    for (int i = 0; !s && i < CM_EXT_MAX; i++)
        if (!e->slots[i].used)
            s = &e->slots[i];
    if (!s)
        return -ENOSPC;
    int moved = fresh || strcmp(s->inst.host, host) != 0 || s->inst.port != port;
    if (fresh) {
        memset(&s->inst, 0, sizeof s->inst); /* the registry compares whole entries */
        s->used = 1;
        snprintf(s->service, sizeof s->service, "%s", service);
        snprintf(s->inst.ext_id, sizeof s->inst.ext_id, "%s", id);
        s->inst.index = CM_REG_EXT_BASE + (int)(s - e->slots);
        s->inst.last_exit = -1;
        s->inst.state = CM_INST_READY;
    }
    snprintf(s->inst.host, sizeof s->inst.host, "%s", host);
    s->inst.port = port;
    s->inst.ttl_ms = (int64_t)ttl_ms;
    int rc = cm_registry_put(e->reg, service, &s->inst);
    if (rc < 0) {
        if (fresh)
            s->used = 0;
        return rc;
    }
    uv_timer_start(&s->ttl, on_ttl, ttl_ms, 0);
    if (moved && e->on_change)
        e->on_change(e->arg, service);
    return 0;
}

int cm_ext_del(cm_ext_t *e, const char *service, const char *id)
{
    slot_t *s = find(e, service, id);
    if (!s)
        return -ENOENT;
    drop(s);
    return 0;
}

int cm_ext_urls(const cm_ext_t *e, const char *service, char ***urls, int *n)
{
    for (int i = 0; i < CM_EXT_MAX; i++) {
        const slot_t *s = &e->slots[i];
        if (!s->used || strcmp(s->service, service) != 0)
            continue;
        char **g = realloc(*urls, sizeof *g * (size_t)(*n + 1));
        if (!g)
            return -ENOMEM;
        *urls = g;
        char buf[300];
        int v6 = strchr(s->inst.host, ':') != NULL;
        snprintf(buf, sizeof buf, "http://%s%s%s:%d", v6 ? "[" : "", s->inst.host, v6 ? "]" : "",
                 s->inst.port);
        if (!((*urls)[*n] = strdup(buf)))
            return -ENOMEM;
        (*n)++;
    }
    return 0;
}
