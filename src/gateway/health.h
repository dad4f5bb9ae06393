/* gateway/health.h: active health checks of an instance (health.c), through core's
 * client on the worker's loop. */
#ifndef CMESH_GATEWAY_HEALTH_H
#define CMESH_GATEWAY_HEALTH_H

#include <uv.h>

#include "gateway/table_types.h"

/* Starts the instance's checks (none when its route has no health path). */
void gw_health_start(gw_inst_t *in);
/* Stops them; done runs once the timer handle is closed. */
void gw_health_stop(gw_inst_t *in, uv_close_cb done);

#endif
