/* gateway/drain.h: the gateway's half of drain by acknowledgement (control/acks.h). With
 * --registry, after each registry set it applied (follow.c) and whenever its requests in
 * flight to an instance it removed drop, the gateway tells the control plane
 *   PUT BASE/v1/gateways/ID/ack {"pid":P,"services":{"users":N},"inflight":{"H:P":n}}
 * where N is the registry index of the newest set of that service every worker has
 * built its table from, and n counts, over every worker, the requests (or connections:
 * the larger) still open to an instance no longer in the set. Idle pooled connections
 * of a removed instance are closed when a worker drops it, busy ones when their request
 * ends, so "0" means nothing of the gateway is on the wire to it any more.
 * Counting: a worker changes the count of its own removed instances only (deltas into
 * one process-wide map under a mutex) and says which snapshot it built its table from
 * (gw_worker_t.applied_gen, atomic); the report is built and sent on the follow thread,
 * which each of those wakes with a uv_async. ID is the gateway's instance id
 * (CMESH_INSTANCE, set by the supervisor: "gateway/0"); without one no report is sent. */
#ifndef CMESH_GATEWAY_DRAIN_H
#define CMESH_GATEWAY_DRAIN_H

#include <stdint.h>

#include <uv.h>

#include "core/buf.h"
#include "gateway/gateway_types.h"

typedef struct gw_drain gw_drain_t; /* opaque */

/* On the follow thread's loop. services[0..n) are the followed services (copied); id
 * NULL or "" sends nothing (the counts are still kept). Caller owns *out: gw_drain_close
 * on the loop, then gw_drain_free once the loop has run the close callbacks.
 * Returns 0, -EINVAL or -ENOMEM. */
int gw_drain_new(uv_loop_t *loop, gw_shared_t *g, const char *base, const char *id,
                 char *const *services, int n, gw_drain_t **out);
void gw_drain_close(gw_drain_t *d); /* on the loop; NULL is a no-op */
void gw_drain_free(gw_drain_t *d);  /* NULL is a no-op */

/* Follow thread: the set of service i at registry index was given to the workers (the
 * current snapshot holds it): reported once every worker built its table from it. */
void gw_drain_applied(gw_drain_t *d, int i, uint64_t index);

/* Any worker: the count of the instance at url (a removed one) changed by delta. */
void gw_drain_count(gw_drain_t *d, const char *url, int delta);
/* Any worker: it built a new table (applied_gen moved). */
void gw_drain_poke(gw_drain_t *d);

/* Pure: the report's body. names/index[0..n): services and their applied indexes;
 * addrs/counts[0..na): removed instances with a count (0 ones are left out). */
void gw_drain_body(cm_buf_t *out, int pid, char *const *names, const uint64_t *index, int n,
                   char *const *addrs, const int *counts, int na);

#endif
