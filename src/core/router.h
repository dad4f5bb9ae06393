/* core/router.h: maps method + path to a handler. Patterns are literal segments and
 * `{name}` captures ("/users/{id}"); HEAD falls back to GET; OPTIONS is answered from
 * the table. Built once at start and
 * then read-only, so every worker thread shares one router. */
#ifndef CMESH_CORE_ROUTER_H
#define CMESH_CORE_ROUTER_H

#include "core/http.h"

typedef void (*cm_handler_fn)(cm_req_t *req);

typedef struct cm_route {
    cm_method_t method;
    const char *pattern; /* borrowed: must outlive the router (a literal) */
    cm_handler_fn handler;
} cm_route_t;

typedef struct cm_router cm_router_t; /* opaque */

/* Copies the table. Returns 0, -EINVAL for a pattern that does not start with '/'
 * or has more than CM_MAX_PARAMS captures, or -ENOMEM. Caller owns *out. */
int cm_router_new(const cm_route_t *routes, int n, cm_router_t **out);
void cm_router_free(cm_router_t *r); /* NULL is a no-op */

/* Distinct patterns, in first-seen order: the metrics' route label set. */
int cm_router_npatterns(const cm_router_t *r);
const char *cm_router_pattern(const cm_router_t *r, int i);

/* Finds the handler for method and path, fills req->params/nparams and req->route
 * (the pattern index). The path is matched percent-decoded, segment by segment (an
 * encoded "%2F" stays inside its segment; captures are decoded too, into
 * req->path_dec, only when the path has a '%'), and one trailing slash is ignored.
 * Returns the handler; or NULL with *status: 404 (no such path), 405 with allow filled
 * ("GET, HEAD, PUT, OPTIONS": HEAD with GET, OPTIONS always) when the path exists for
 * other methods, 204 with allow for OPTIONS on a known path (or OPTIONS *: every
 * method of the table), 400 for a malformed escape or %00, 500 out of memory. */
cm_handler_fn cm_router_match(const cm_router_t *r, cm_req_t *req, int *status, char *allow,
                              size_t allow_cap);

#endif
