/* control/acks.c: gateways' acknowledgements (acks.h): the body's strict parse, the
 * verdict for a leaving instance, and a small table of the last one per gateway. */
#include "control/acks.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/json.h"

struct cm_acks {
    cm_ack_t a[CM_ACKS_MAX];
    int n;
};

/* ---------------------------------------------------------------------------------- */
/* Pure parts                                                                         */
/* ---------------------------------------------------------------------------------- */

static int bad(char *field, const char *name, char *err, size_t cap, const char *why)
{
    snprintf(field, CM_ACKS_FIELD_MAX, "%s", name); /* a copy: name may be the body's key */
    snprintf(err, cap, "%s", why);
    return -EINVAL;
}

int cm_ack_parse(const char *body, size_t len, cm_ack_t *out, char field[CM_ACKS_FIELD_MAX],
                 char *err, size_t cap)
{
    memset(out, 0, sizeof *out);
    field[0] = '\0';
    json_t *o = cm_json_parse_object(body, len, err, cap);
    if (!o)
        return -EINVAL;
    int rc = 0;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if (strcmp(k, "pid") != 0 && strcmp(k, "services") != 0 && strcmp(k, "inflight") != 0) {
            rc = bad(field, k, err, cap, "unknown member: give pid, services and inflight");
            goto out;
        }
    }
    json_t *pid = json_object_get(o, "pid");
    if (pid && (!json_is_integer(pid) || json_integer_value(pid) < 0 ||
                json_integer_value(pid) > 0x7fffffff)) {
        rc = bad(field, "pid", err, cap, "pid must be a process id");
        goto out;
    }
    out->pid = pid ? (int)json_integer_value(pid) : 0;
    json_t *svcs = json_object_get(o, "services");
    if (!json_is_object(svcs) || json_object_size(svcs) > CM_ACKS_SVCS) {
        rc = bad(field, "services", err, cap,
                 "services must be an object of service name -> applied registry index (at "
                 "most 32)");
        goto out;
    }
    json_object_foreach(svcs, k, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || !k[0] ||
            strlen(k) >= sizeof out->svcs[0].name) {
            rc = bad(field, "services", err, cap,
                     "services must map a service name to a whole number (a registry index)");
            goto out;
        }
        snprintf(out->svcs[out->nsvcs].name, sizeof out->svcs[0].name, "%s", k);
        out->svcs[out->nsvcs++].index = (uint64_t)json_integer_value(v);
    }
    json_t *inf = json_object_get(o, "inflight");
    if (inf && (!json_is_object(inf) || json_object_size(inf) > CM_ACKS_ADDRS)) {
        rc = bad(field, "inflight", err, cap,
                 "inflight must be an object of HOST:PORT -> requests in flight (at most 32)");
        goto out;
    }
    json_object_foreach(inf, k, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > 0x7fffffff || !k[0] || strlen(k) >= CM_ACKS_ADDR_MAX) {
            rc = bad(field, "inflight", err, cap,
                     "inflight must map HOST:PORT to a whole number of requests");
            goto out;
        }
        snprintf(out->addrs[out->naddrs].addr, CM_ACKS_ADDR_MAX, "%s", k);
        out->addrs[out->naddrs++].n = (int)json_integer_value(v);
    }
out:
    json_decref(o);
    return rc;
}

uint64_t cm_ack_index(const cm_ack_t *a, const char *service)
{
    for (int i = 0; a && i < a->nsvcs; i++)
        if (strcmp(a->svcs[i].name, service) == 0)
            return a->svcs[i].index;
    return 0;
}

int cm_ack_applied(const cm_ack_t *a, const char *service, uint64_t index)
{
    for (int i = 0; a && i < a->nsvcs; i++)
        if (strcmp(a->svcs[i].name, service) == 0)
            return a->svcs[i].index >= index;
    return a != NULL;
}

cm_ack_verdict_t cm_ack_check(const cm_ack_t *a, const char *service, uint64_t left_index,
                              const char *addr, int *inflight)
{
    *inflight = 0;
    if (!a)
        return CM_ACK_BEHIND;
    int follows = 0;
    for (int i = 0; i < a->nsvcs; i++)
        follows |= strcmp(a->svcs[i].name, service) == 0;
    if (!follows)
        return CM_ACK_DRAINED;
    if (cm_ack_index(a, service) < left_index)
        return CM_ACK_BEHIND;
    for (int i = 0; i < a->naddrs; i++)
        if (strcmp(a->addrs[i].addr, addr) == 0)
            *inflight = a->addrs[i].n;
    return *inflight > 0 ? CM_ACK_BUSY : CM_ACK_DRAINED;
}

/* ---------------------------------------------------------------------------------- */
/* The table                                                                          */
/* ---------------------------------------------------------------------------------- */

int cm_acks_new(cm_acks_t **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : -ENOMEM;
}

void cm_acks_free(cm_acks_t *t)
{
    free(t);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int cm_acks_put(cm_acks_t *t, const char *id, const cm_ack_t *a)
{
    int i = 0;
    while (i < t->n && strcmp(t->a[i].id, id) != 0)
        i++;
    if (i == t->n && t->n == CM_ACKS_MAX)
        return -ENOSPC;
    if (i == t->n)
        t->n++;
    t->a[i] = *a;
    snprintf(t->a[i].id, sizeof t->a[i].id, "%s", id);
    t->a[i].at_ms = wall_ms();
    return 0;
}

const cm_ack_t *cm_acks_get(const cm_acks_t *t, const char *id)
{
    for (int i = 0; t && i < t->n; i++)
        if (strcmp(t->a[i].id, id) == 0)
            return &t->a[i];
    return NULL;
}

void cm_acks_forget(cm_acks_t *t, const char *id)
{
    for (int i = 0; t && i < t->n; i++)
        if (strcmp(t->a[i].id, id) == 0) {
            t->a[i] = t->a[--t->n];
            return;
        }
}

void cm_acks_render(const cm_acks_t *t, int64_t now_ms, cm_buf_t *out)
{
    cm_buf_append_str(out, "[");
    for (int i = 0; t && i < t->n; i++) {
        const cm_ack_t *a = &t->a[i];
        cm_buf_append_str(out, i ? ",{\"id\":" : "{\"id\":");
        cm_json_str(out, a->id, strlen(a->id));
        cm_buf_appendf(out, ",\"pid\":%d,\"age_ms\":%lld,\"services\":{", a->pid,
                       (long long)(now_ms - a->at_ms));
        for (int k = 0; k < a->nsvcs; k++) {
            if (k)
                cm_buf_append_str(out, ",");
            cm_json_str(out, a->svcs[k].name, strlen(a->svcs[k].name));
            cm_buf_appendf(out, ":%llu", (unsigned long long)a->svcs[k].index);
        }
        cm_buf_append_str(out, "},\"inflight\":{");
        for (int k = 0; k < a->naddrs; k++) {
            if (k)
                cm_buf_append_str(out, ",");
            cm_json_str(out, a->addrs[k].addr, strlen(a->addrs[k].addr));
            cm_buf_appendf(out, ":%d", a->addrs[k].n);
        }
        cm_buf_append_str(out, "}}");
    }
    cm_buf_append_str(out, "]");
}
