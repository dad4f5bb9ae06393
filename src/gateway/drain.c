/* gateway/drain.c: acknowledgements to the control plane (drain.h). The map of removed
 * instances' counts is shared by the workers under a mutex; the report (and its retry
 * while the control plane is away) lives on the follow thread's loop. */
#include "gateway/drain.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/client.h"
#include "core/json.h"
#include "core/log.h"
#include "gateway/snapshot.h"

#define DRAIN_MAX_ADDRS 256  /* removed instances counted at once */
#define RETRY_MS        500  /* the control plane did not take a report: again after this */
#define REPORT_TIMEOUT  5000 /* ms for one PUT */

typedef struct {
    char *addr; /* "127.0.0.1:7001" */
    int n;
} count_t;

struct gw_drain {
    gw_shared_t *g;
    char url[700];   /* BASE/v1/gateways/ID/ack; "" = no reports */
    char **names;    /* [n] */
    uint64_t *want;  /* [n] index handed to the workers */
    uint64_t *wgen;  /* [n] the snapshot generation that carried it */
    uint64_t *acked; /* [n] index every worker has applied */
    int n;
    pthread_mutex_t mu; /* counts */
    count_t counts[DRAIN_MAX_ADDRS];
    int ncounts;
    /* follow loop only */
    uv_async_t wake;
    uv_timer_t retry;
    cm_client_t *hc;
    int sending;   /* a PUT is out */
    int dirty;     /* something changed since it went */
    cm_buf_t sent; /* the last body the control plane took */
    cm_buf_t out;  /* the body in flight */
    int closed, open;
};

/* ---------------------------------------------------------------------------------- */
/* Pure parts                                                                         */
/* ---------------------------------------------------------------------------------- */

void gw_drain_body(cm_buf_t *out, int pid, char *const *names, const uint64_t *index, int n,
                   char *const *addrs, const int *counts, int na)
{
    cm_buf_appendf(out, "{\"pid\":%d,\"services\":{", pid);
    for (int i = 0; i < n; i++) {
        if (i)
            cm_buf_append_str(out, ",");
        cm_json_str(out, names[i], strlen(names[i]));
        cm_buf_appendf(out, ":%" PRIu64, index[i]);
    }
    cm_buf_append_str(out, "},\"inflight\":{");
    int first = 1;
    for (int i = 0; i < na; i++) {
        if (counts[i] <= 0)
            continue;
        if (!first)
            cm_buf_append_str(out, ",");
        first = 0;
        cm_json_str(out, addrs[i], strlen(addrs[i]));
        cm_buf_appendf(out, ":%d", counts[i]);
    }
    cm_buf_append_str(out, "}}");
}

/* "http://H:P" -> "H:P" (what the control plane names the instance by). */
static const char *authority(const char *url, size_t *len)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    const char *slash = strchr(p, '/');
    *len = slash ? (size_t)(slash - p) : strlen(p);
    return p;
}

/* ---------------------------------------------------------------------------------- */
/* Workers' side                                                                      */
/* ---------------------------------------------------------------------------------- */

void gw_drain_poke(gw_drain_t *d)
{
    if (d)
        uv_async_send(&d->wake); /* thread-safe; coalesced by libuv */
}

void gw_drain_count(gw_drain_t *d, const char *url, int delta)
{
    if (!d || delta == 0)
        return;
    size_t len;
    const char *a = authority(url, &len);
    pthread_mutex_lock(&d->mu);
    int i = 0;
    while (i < d->ncounts &&
           !(strlen(d->counts[i].addr) == len && !memcmp(d->counts[i].addr, a, len)))
        i++;
    if (i == d->ncounts && d->ncounts < DRAIN_MAX_ADDRS && delta > 0 &&
        (d->counts[i].addr = strndup(a, len)))
        d->ncounts++;
    if (i < d->ncounts) {
        d->counts[i].n += delta;
        if (d->counts[i].n <= 0) { /* drained: the entry goes */
            free(d->counts[i].addr);
            d->counts[i] = d->counts[--d->ncounts];
        }
    }
    pthread_mutex_unlock(&d->mu);
    gw_drain_poke(d);
}

/* ---------------------------------------------------------------------------------- */
/* The report (follow loop)                                                           */
/* ---------------------------------------------------------------------------------- */

static void report(gw_drain_t *d);
static void on_retry(uv_timer_t *t);

static void on_put(int status, const char *body, size_t len, void *data)
{
    (void)body, (void)len;
    gw_drain_t *d = data;
    d->sending = 0;
    if (status == -ECANCELED || d->closed)
        return;
    if (status >= 200 && status < 300) {
        cm_buf_reset(&d->sent);
        cm_buf_append(&d->sent, d->out.data, d->out.len);
        if (d->dirty)
            report(d);
        return;
    }
    if (status >= 0)
        cm_log_msg(CM_LOG_WARN, "gateway: registry: acknowledgement refused (%d): %.*s", status,
                   (int)len, body);
    d->dirty = 1;
    uv_timer_start(&d->retry, on_retry, RETRY_MS, 0); /* away: again, until it takes one */
}

static void report(gw_drain_t *d)
{
    if (!d->url[0] || d->closed)
        return;
    if (d->sending) {
        d->dirty = 1;
        return;
    }
    d->dirty = 0;
    /* the oldest snapshot a worker still routes on decides what is applied everywhere */
    gw_shared_t *g = d->g;
    uint64_t min = UINT64_MAX;
    pthread_mutex_lock(&g->mu);
    for (int i = 0; i < g->nworkers; i++) {
        uint64_t a = atomic_load(&g->workers[i]->applied_gen);
        min = a < min ? a : min;
    }
    if (g->nworkers == 0)
        min = 0;
    pthread_mutex_unlock(&g->mu);
    for (int i = 0; i < d->n; i++)
        if (d->wgen[i] && d->wgen[i] <= min)
            d->acked[i] = d->want[i];
    char *addrs[DRAIN_MAX_ADDRS] = {0};
    int counts[DRAIN_MAX_ADDRS] = {0}, na = 0;
    pthread_mutex_lock(&d->mu);
    for (int i = 0; i < d->ncounts; i++)
        if ((addrs[na] = strdup(d->counts[i].addr)))
            counts[na++] = d->counts[i].n;
    pthread_mutex_unlock(&d->mu);
    cm_buf_reset(&d->out);
    gw_drain_body(&d->out, (int)getpid(), d->names, d->acked, d->n, addrs, counts, na);
    for (int i = 0; i < na; i++)
        free(addrs[i]);
    if (d->sent.len == d->out.len && d->out.len && !memcmp(d->sent.data, d->out.data, d->out.len))
        return; /* nothing new to say */
    if (cm_client_put_json(d->hc, d->url, d->out.data, d->out.len, REPORT_TIMEOUT, on_put, d) < 0) {
        d->dirty = 1;
        return;
    }
    d->sending = 1;
}

static void on_wake(uv_async_t *a)
{
    report(a->data);
}

static void on_retry(uv_timer_t *t)
{
    report(t->data);
}

void gw_drain_applied(gw_drain_t *d, int i, uint64_t index)
{
    if (!d || i < 0 || i >= d->n)
        return;
    d->want[i] = index;
    d->wgen[i] = gw_snap_gen(d->g); /* this one or a later: either carries the set */
    report(d);
}

/* ---------------------------------------------------------------------------------- */
/* Life cycle                                                                         */
/* ---------------------------------------------------------------------------------- */

int gw_drain_new(uv_loop_t *loop, gw_shared_t *g, const char *base, const char *id,
                 char *const *services, int n, gw_drain_t **out)
{
    gw_drain_t *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    d->g = g;
    pthread_mutex_init(&d->mu, NULL);
    d->names = calloc((size_t)n + 1, sizeof *d->names);
    d->want = calloc((size_t)n + 1, sizeof *d->want);
    d->wgen = calloc((size_t)n + 1, sizeof *d->wgen);
    d->acked = calloc((size_t)n + 1, sizeof *d->acked);
    int rc = d->names && d->want && d->wgen && d->acked ? 0 : -ENOMEM;
    for (int i = 0; rc == 0 && i < n; i++)
        if ((d->names[d->n] = strdup(services[i])))
            d->n++;
        else
            rc = -ENOMEM;
    if (rc == 0 && id && id[0]) {
        /* the id's '/' escaped: one path segment ("gateway%2F0") */
        size_t len = (size_t)snprintf(d->url, sizeof d->url, "%s", base);
        while (len > 0 && d->url[len - 1] == '/')
            d->url[--len] = '\0';
        len += (size_t)snprintf(d->url + len, sizeof d->url - len, "/v1/gateways/");
        for (const char *p = id; *p && len + 8 < sizeof d->url; p++)
            len += (size_t)snprintf(
                d->url + len, sizeof d->url - len,
                strchr("abcdefghijklmnopqrstuvwxyz0123456789-_.", *p) ? "%c" : "%%%02X",
                (unsigned char)*p);
        snprintf(d->url + len, sizeof d->url - len, "/ack");
    }
    if (rc == 0)
        rc = cm_client_new(loop, &d->hc);
    if (rc < 0) {
        gw_drain_free(d);
        return rc;
    }
    uv_async_init(loop, &d->wake, on_wake);
    d->wake.data = d;
    uv_timer_init(loop, &d->retry);
    d->retry.data = d;
    d->open = 2;
    *out = d;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    gw_drain_t *d = h->data;
    d->open--;
}

void gw_drain_close(gw_drain_t *d)
{
    if (!d || d->closed)
        return;
    d->closed = 1;
    cm_client_free(d->hc); /* a PUT in flight fires with -ECANCELED */
    d->hc = NULL;
    uv_close((uv_handle_t *)&d->wake, on_closed);
    uv_close((uv_handle_t *)&d->retry, on_closed);
}

void gw_drain_free(gw_drain_t *d)
{
    if (!d)
        return;
    if (d->hc)
        cm_client_free(d->hc);
    for (int i = 0; i < d->n; i++)
        free(d->names[i]);
    for (int i = 0; i < d->ncounts; i++)
        free(d->counts[i].addr);
    free(d->names);
    free(d->want);
    free(d->wgen);
    free(d->acked);
    cm_buf_free(&d->sent);
    cm_buf_free(&d->out);
    pthread_mutex_destroy(&d->mu);
    free(d);
}
