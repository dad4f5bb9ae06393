/* service/regset.h: the ready instances of one registry service, kept current in memory
 * by a core/watch on a thread of its own, for a service that calls another one
 * (orders -> users with --users-registry). When the control plane is away the last set
 * stays. Readers on any thread pick an instance round robin. */
#ifndef CMESH_SERVICE_REGSET_H
#define CMESH_SERVICE_REGSET_H

#include <stddef.h>

typedef struct cm_regset cm_regset_t; /* opaque; thread-safe */

/* Starts watching service at registry base ("http://HOST:PORT"). Caller owns *out
 * (cm_regset_stop). Returns 0, -EINVAL (bad URL or name), -ENOMEM, or a thread error. */
int cm_regset_start(const char *base, const char *service, cm_regset_t **out);
void cm_regset_stop(cm_regset_t *rs); /* joins the thread; NULL is a no-op */

/* How many ready instances the last answer held (0 before one came). */
int cm_regset_count(cm_regset_t *rs);
/* Copies into out the URL of instance (ticket + skip) mod n of the current set: a
 * request takes one ticket (round robin across threads) and its retries after a refused
 * connection walk on with skip 1, 2, ... 0, or -ENOENT when the set is empty. */
int cm_regset_pick(cm_regset_t *rs, unsigned ticket, int skip, char *out, size_t cap);
/* A ticket for cm_regset_pick: one per request, so its retries walk on from it. */
unsigned cm_regset_ticket(cm_regset_t *rs);
/* The service's desired instance count from the registry's last answer (0: scaled to
 * zero on purpose), or -1 when it did not say. */
int cm_regset_desired(cm_regset_t *rs);
/* Seconds since the registry last answered (since the start when it never did). */
double cm_regset_age_s(cm_regset_t *rs);

#endif
