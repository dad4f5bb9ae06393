/* control/history.c: see history.h. One ring of CM_HISTORY_KEEP points per service,
 * allocated when the service's first point comes; rendered as columns. */
#include "control/history.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

typedef struct series {
    char name[64];
    uint64_t newest; /* id of its newest point: which series to give up when full */
    int n;           /* points held, <= CM_HISTORY_KEEP */
    int next;        /* ring slot the next point goes to */
    uint64_t id[CM_HISTORY_KEEP];
    cm_history_point_t pt[CM_HISTORY_KEEP];
} series_t;

struct cm_history {
    series_t *series[CM_HISTORY_SERIES]; /* first seen first; NULL past nseries */
    int nseries;
    uint64_t last;
};

int cm_history_new(cm_history_t **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : -ENOMEM;
}

void cm_history_free(cm_history_t *h)
{
    if (!h)
        return;
    for (int i = 0; i < h->nseries; i++)
        free(h->series[i]);
    free(h);
}

static series_t *series_of(cm_history_t *h, const char *service)
{
    for (int i = 0; i < h->nseries; i++)
        if (strcmp(h->series[i]->name, service) == 0)
            return h->series[i];
    series_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    snprintf(s->name, sizeof s->name, "%s", service);
    if (h->nseries == CM_HISTORY_SERIES) { /* full: the one silent longest goes */
        int old = 0;
        for (int i = 1; i < h->nseries; i++)
            if (h->series[i]->newest < h->series[old]->newest)
                old = i;
        free(h->series[old]);
        memmove(&h->series[old], &h->series[old + 1],
                sizeof h->series[0] * (size_t)(h->nseries - old - 1));
        h->nseries--;
    }
    h->series[h->nseries++] = s;
    return s;
}

uint64_t cm_history_add(cm_history_t *h, const char *service, const cm_history_point_t *p)
{
    if (!h)
        return 0;
    series_t *s = series_of(h, service);
    if (!s)
        return 0;
    s->id[s->next] = ++h->last;
    s->pt[s->next] = *p;
    s->next = (s->next + 1) % CM_HISTORY_KEEP;
    if (s->n < CM_HISTORY_KEEP)
        s->n++;
    s->newest = h->last;
    return h->last;
}

uint64_t cm_history_last(const cm_history_t *h)
{
    return h ? h->last : 0;
}

/* ---------------------------------------------------------------------------------- */
/* Rendering                                                                          */
/* ---------------------------------------------------------------------------------- */

typedef enum { COL_T, COL_RPS, COL_P99, COL_ERR, COL_DESIRED, COL_RUNNING, COL_READY } col_t;

static const char *const col_names[] = {"t",       "rps",     "p99_ms", "error_rate",
                                        "desired", "running", "ready"};

static void value(cm_buf_t *out, const cm_history_point_t *p, col_t c)
{
    switch (c) {
    case COL_T:
        cm_buf_appendf(out, "%" PRId64, p->t_ms);
        return;
    case COL_RPS:
        if (p->rps >= 0)
            cm_buf_appendf(out, "%.2f", p->rps);
        else
            cm_buf_append_str(out, "null");
        return;
    case COL_P99:
        if (p->p99_ms >= 0)
            cm_buf_appendf(out, "%.3f", p->p99_ms);
        else
            cm_buf_append_str(out, "null");
        return;
    case COL_ERR:
        if (p->errors >= 0)
            cm_buf_appendf(out, "%.5f", p->errors);
        else
            cm_buf_append_str(out, "null");
        return;
    case COL_DESIRED:
        cm_buf_appendf(out, "%d", p->desired);
        return;
    case COL_RUNNING:
        cm_buf_appendf(out, "%d", p->running);
        return;
    case COL_READY:
        cm_buf_appendf(out, "%d", p->ready);
        return;
    }
}

void cm_history_render(const cm_history_t *h, uint64_t after, cm_buf_t *out)
{
    cm_buf_appendf(out, "{\"last\":%" PRIu64 ",\"keep\":%d,\"services\":[", cm_history_last(h),
                   CM_HISTORY_KEEP);
    for (int i = 0; h && i < h->nseries; i++) {
        const series_t *s = h->series[i];
        cm_buf_append_str(out, i ? ",{\"name\":" : "{\"name\":");
        cm_json_str(out, s->name, strlen(s->name));
        int first = (s->next - s->n + CM_HISTORY_KEEP) % CM_HISTORY_KEEP; /* the oldest */
        for (col_t c = COL_T; c <= COL_READY; c++) {
            cm_buf_appendf(out, ",\"%s\":[", col_names[c]);
            int k = 0;
            for (int j = 0; j < s->n; j++) {
                int slot = (first + j) % CM_HISTORY_KEEP;
                if (s->id[slot] <= after)
                    continue;
                if (k++)
                    cm_buf_append_str(out, ",");
                value(out, &s->pt[slot], c);
            }
            cm_buf_append_str(out, "]");
        }
        cm_buf_append_str(out, "}");
    }
    cm_buf_append_str(out, "]}");
}
