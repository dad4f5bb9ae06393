/* gateway/follow.h: `--registry URL`: every route follows the registry service its
 * `service:` names, else the one of its name (core/watch on a thread of its own), its upstreams
 * replaced in memory through gw_replace_upstreams with the ready instances; when the control plane
 * is away the last set stays. Exports cmesh_gateway_registry_age_seconds{service}. Used by
 * gateway.c. */
#ifndef CMESH_GATEWAY_FOLLOW_H
#define CMESH_GATEWAY_FOLLOW_H

#include "core/buf.h"
#include "gateway/gateway_types.h"

typedef struct gw_follow gw_follow_t; /* opaque */

/* Starts following the routes of the current snapshot of g at registry base. Caller
 * owns *out (gw_follow_stop). Returns 0, -EINVAL (bad URL), -ENOMEM, or a thread error. */
int gw_follow_start(gw_shared_t *g, const char *base, gw_follow_t **out);
/* Stops the thread and frees f; NULL is a no-op. */
void gw_follow_stop(gw_follow_t *f);
/* After a reload rebuilt the config from the file: puts the last sets learnt back. */
void gw_follow_reapply(gw_follow_t *f);
/* Appends the age metric (any thread). */
void gw_follow_metrics(gw_follow_t *f, cm_buf_t *out);

#endif
