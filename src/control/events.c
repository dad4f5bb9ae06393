/* control/events.c: see events.h. A ring of CM_EVENTS_KEEP slots indexed by id. */
#include "control/events.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/json.h"
#include "core/log.h"

typedef struct event {
    uint64_t id; /* 0: empty slot */
    int64_t ms;  /* wall clock */
    char kind[16];
    char service[64];
    int index;
    char *message;
    char *detail; /* JSON object text, or NULL */
} event_t;

struct cm_events {
    event_t ring[CM_EVENTS_KEEP];
    uint64_t last;
};

int cm_events_new(cm_events_t **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : -ENOMEM;
}

static void clear(event_t *e)
{
    free(e->message);
    free(e->detail);
    memset(e, 0, sizeof *e);
}

void cm_events_free(cm_events_t *ev)
{
    if (!ev)
        return;
    for (int i = 0; i < CM_EVENTS_KEEP; i++)
        clear(&ev->ring[i]);
    free(ev);
}

uint64_t cm_events_add(cm_events_t *ev, const char *kind, const char *service, int index,
                       const char *detail, const char *fmt, ...)
{
    if (!ev)
        return 0;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    event_t *e = &ev->ring[(ev->last + 1) % CM_EVENTS_KEEP];
    clear(e);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    e->ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    snprintf(e->kind, sizeof e->kind, "%s", kind);
    snprintf(e->service, sizeof e->service, "%s", service ? service : "");
    e->index = index;
    e->message = strdup(msg);
    e->detail = detail ? strdup(detail) : NULL;
    e->id = ++ev->last;

    if (index >= 0)
        cm_log_msg(CM_LOG_INFO, "control: %s %s/%d: %s%s%s", kind, e->service, index, msg,
                   detail ? " " : "", detail ? detail : "");
    else
        cm_log_msg(CM_LOG_INFO, "control: %s %s%s%s%s%s", kind, e->service,
                   e->service[0] ? ": " : "", msg, detail ? " " : "", detail ? detail : "");
    return e->id;
}

uint64_t cm_events_last(const cm_events_t *ev)
{
    return ev ? ev->last : 0;
}

void cm_events_render(const cm_events_t *ev, uint64_t after, int limit, cm_buf_t *out)
{
    uint64_t last = cm_events_last(ev);
    uint64_t first = last > CM_EVENTS_KEEP ? last - CM_EVENTS_KEEP + 1 : 1;
    if (after + 1 > first)
        first = after + 1;
    cm_buf_appendf(out, "{\"last\":%" PRIu64 ",\"events\":[", last);
    int n = 0;
    for (uint64_t id = first; id <= last && n < limit; id++, n++) {
        const event_t *e = &ev->ring[id % CM_EVENTS_KEEP];
        char when[32];
        time_t t = (time_t)(e->ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        size_t w = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(when + w, sizeof when - w, ".%03dZ", (int)(e->ms % 1000));
        cm_buf_appendf(out, "%s{\"id\":%" PRIu64 ",\"time\":\"%s\",\"kind\":", n ? "," : "", e->id,
                       when);
        cm_json_str(out, e->kind, strlen(e->kind));
        cm_buf_append_str(out, ",\"service\":");
        cm_json_str(out, e->service, strlen(e->service));
        cm_buf_appendf(out, ",\"instance\":%d,\"message\":", e->index);
        cm_json_str(out, e->message ? e->message : "", e->message ? strlen(e->message) : 0);
        cm_buf_append_str(out, ",\"detail\":");
        cm_buf_append_str(out, e->detail ? e->detail : "null");
        cm_buf_append_str(out, "}");
    }
    cm_buf_append_str(out, "]}");
}
