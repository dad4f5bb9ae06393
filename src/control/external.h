/* control/external.h: instances started by hand (not by the supervisor) that register
 * themselves with a TTL and keep their registration alive with heartbeats (a re-PUT),
 * as Consul's TTL checks. They are ready while registered, routed like supervised ones,
 * and removed when a heartbeat is late or they deregister. Owned by up.c, fed by api.c;
 * writes the registry. */
#ifndef CMESH_CONTROL_EXTERNAL_H
#define CMESH_CONTROL_EXTERNAL_H

#include <stdint.h>

#include <uv.h>

#include "control/registry.h"

#define CM_EXT_MAX        64      /* hand-registered instances, all services together */
#define CM_EXT_TTL_MAX_MS 3600000 /* a longer TTL is a typo: a dead instance would linger */

typedef struct cm_ext cm_ext_t; /* opaque */

/* on_change(arg, service): the routable set of service changed (may be NULL). */
int cm_ext_new(uv_loop_t *loop, cm_registry_t *reg, void (*on_change)(void *, const char *),
               void *arg, cm_ext_t **out);
/* Closes its timers (the loop must run once more); leaves the registry as it is. */
void cm_ext_free(cm_ext_t *e);

/* Registers (or refreshes: the heartbeat) instance id of service at host:port for
 * ttl_ms. Returns 0, -ENOSPC when CM_EXT_MAX are registered, -EINVAL on a bad value. */
int cm_ext_put(cm_ext_t *e, const char *service, const char *id, const char *host, int port,
               uint64_t ttl_ms);
/* Returns 0, or -ENOENT when it was not registered. */
int cm_ext_del(cm_ext_t *e, const char *service, const char *id);

/* The URLs of service's registered instances, appended to *urls (grown with realloc;
 * *n updated). Returns 0 or -ENOMEM. */
int cm_ext_urls(const cm_ext_t *e, const char *service, char ***urls, int *n);

#endif
