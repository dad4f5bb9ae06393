/* gateway/proxy.h: one request through the gateway (proxy.c): the core server's
 * fallback handler, and the worker's pool of exchange objects. */
#ifndef CMESH_GATEWAY_PROXY_H
#define CMESH_GATEWAY_PROXY_H

#include "core/http.h"
#include "gateway/gateway_types.h"

/* The proxy handler (cm_service_t.fallback). */
void gw_proxy_handle(cm_req_t *req);
void gw_exch_pool_free(gw_worker_t *w);

#endif
