/* gateway/follow.h: `--registry URL`: every route follows the registry service its
 * `service:` names, else the one of its name (core/watch on a thread of its own), its upstreams
 * replaced in memory through gw_replace_upstreams with the ready instances; when the control plane
 * is away the last set stays; an empty set with a desired count of 0 marks the routes scaled
 * to zero (their requests are held, proxy.c) and the first held request has the service
 * woken. Exports cmesh_gateway_registry_age_seconds{service} and
 * cmesh_gateway_scaled_to_zero{service}. Used by gateway.c and proxy.c. */
#ifndef CMESH_GATEWAY_FOLLOW_H
#define CMESH_GATEWAY_FOLLOW_H

#include <stddef.h>

#include "core/buf.h"
#include "gateway/config.h"
#include "gateway/gateway_types.h"

typedef struct gw_follow gw_follow_t; /* opaque */

/* Starts following the routes of the current snapshot of g at registry base. Caller
 * owns *out (gw_follow_stop). Returns 0, -EINVAL (bad URL), -ENOMEM, or a thread error. */
int gw_follow_start(gw_shared_t *g, const char *base, gw_follow_t **out);
/* Stops the thread and frees f; NULL is a no-op. */
void gw_follow_stop(gw_follow_t *f);
/* gw_apply for a reload that rebuilt cfg from the file: its followed routes get the
 * last sets the registry gave first (the file's may be older). NULL f: plain gw_apply.
 * Returns what gw_apply does (cfg owned by the snapshot on success). */
int gw_follow_apply(gw_follow_t *f, gw_shared_t *g, gw_config_t *cfg, char *err, size_t cap);
/* A worker began holding requests of a route whose service is scaled to zero: the
 * follow thread wakes the service once per cold start (POST BASE/v1/services/NAME/wake)
 * while requests wait, retrying every second while the wake fails. Any thread; NULL f
 * is a no-op. */
void gw_follow_demand(gw_follow_t *f);
/* Appends the age and scaled-to-zero metrics (any thread). */
void gw_follow_metrics(gw_follow_t *f, cm_buf_t *out);

#endif
