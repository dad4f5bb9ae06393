/* gateway/proxy.h: one request through the gateway (proxy.c): the core server's
 * fallback handler, and the worker's pool of exchange objects. */
#ifndef CMESH_GATEWAY_PROXY_H
#define CMESH_GATEWAY_PROXY_H

#include "core/http.h"
#include "gateway/gateway_types.h"

/* The proxy handler (cm_service_t.fallback). */
void gw_proxy_handle(cm_req_t *req);
void gw_exch_pool_free(gw_worker_t *w);
/* The worker switched from table old (still held by the caller) to t: requests held for
 * a route scaled to zero move to t's route of the same name, and are sent on, in arrival
 * order, where that route is not at zero any more (503 where it is gone). */
void gw_proxy_retable(gw_worker_t *w, gw_table_t *old, gw_table_t *t);
/* The worker stops: every request still held is answered 503. */
void gw_proxy_drop_held(gw_worker_t *w);

#endif
