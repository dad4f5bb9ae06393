/* control/demand.h: the autoscaler's tick on the control loop. Every tick it scrapes the
 * gateway's /metrics (one answer holds every instance's time) and each autoscaled
 * instance's own, turns the time sums into in-flight work per instance by Little's law
 * (L = d(sum of request durations) / dt), and hands each autoscaled service's total,
 * with its ready capacity from the registry (surge instances left out), to
 * control/autoscale, which applies its decisions through cm_sup_scale. Owned by up.c. */
#ifndef CMESH_CONTROL_DEMAND_H
#define CMESH_CONTROL_DEMAND_H

#include <uv.h>

#include "control/autoscale.h"
#include "control/registry.h"
#include "control/spec.h"
#include "control/supervise.h"
#include "core/client.h"

typedef struct cm_demand cm_demand_t; /* opaque */

/* Everything is borrowed and must outlive it, but client: free the demand before the
 * client (the client's cancelled callbacks still find it). Caller owns *out. With no
 * autoscaled service it does nothing. Returns 0 or -ENOMEM. */
int cm_demand_new(uv_loop_t *loop, const cm_spec_t *spec, cm_registry_t *reg, cm_sup_t *sup,
                  cm_client_t *client, cm_autoscale_t *as, cm_demand_t **out);
void cm_demand_start(cm_demand_t *d);
/* A reloaded spec (borrowed, outlives it): each service kept keeps its measurements,
 * wherever it moved in the file; new autoscaled services are scraped from the next tick.
 * Returns 0 or -ENOMEM (the old spec kept). */
int cm_demand_respec(cm_demand_t *d, const cm_spec_t *spec);
void cm_demand_stop(cm_demand_t *d); /* no more ticks (the system goes down) */
/* Closes its timer; freed once the loop ran again and no scrape is outstanding. NULL is
 * a no-op. */
void cm_demand_free(cm_demand_t *d);

#endif
