/* control/events.h: the control plane's recent events (restarts, scale decisions with
 * their inputs, rollout and drain steps, wake-ups), a bounded ring with ids that only
 * grow. Every event is also written to the control plane's log. Read by the API
 * (`GET /v1/events?after=N`: the dashboard and `cmesh events`). One loop; no lock. */
#ifndef CMESH_CONTROL_EVENTS_H
#define CMESH_CONTROL_EVENTS_H

#include <stdint.h>

#include "core/buf.h"

#define CM_EVENTS_KEEP 512 /* the newest events kept; older ones are dropped */

typedef struct cm_events cm_events_t; /* opaque */

/* Caller owns *out (cm_events_free). Returns 0 or -ENOMEM. */
int cm_events_new(cm_events_t **out);
void cm_events_free(cm_events_t *ev); /* NULL is a no-op */

/* Records an event: kind is a short word ("restart", "scale", "rollout", "drain",
 * "wake", "reload"), service "" for the whole system, index -1 for the whole service;
 * the message is the human sentence. detail is a JSON object's text with the inputs (for
 * a scale decision: load, target, windows, the limit that applied) or NULL. Both are
 * copied. ev NULL is a no-op (the supervisor's unit tests run without one). Returns the
 * event's id (from 1), 0 when ev is NULL. */
uint64_t cm_events_add(cm_events_t *ev, const char *kind, const char *service, int index,
                       const char *detail, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

uint64_t cm_events_last(const cm_events_t *ev); /* the newest id, 0 none */

/* Appends {"last":N,"events":[{"id","time","kind","service","instance","message",
 * "detail"}...]} with the events after id `after` (oldest first, at most limit). */
void cm_events_render(const cm_events_t *ev, uint64_t after, int limit, cm_buf_t *out);

#endif
