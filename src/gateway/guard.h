/* gateway/guard.h: route matching, auth and rate limits ahead of the proxy (guard.c). */
#ifndef CMESH_GATEWAY_GUARD_H
#define CMESH_GATEWAY_GUARD_H

#include "gateway/gw.h"

/* The first route (most specific first) whose host and prefix match, or NULL. host is the
 * name the request is for (cm_uri_host_parse(): no port, no trailing dot; empty when none),
 * path the normalized path (cm_uri_normalize()): the one that is forwarded. */
gw_rt_t *gw_guard_route(gw_table_t *t, const cm_str_t *host, const cm_str_t *path);
/* 0, or -1 after answering 400 when the request repeats Authorization (which one
 * would count is anyone's guess). Runs first, for every request. */
int gw_guard_headers(cm_req_t *req);
/* Everything a routed request must pass, in this order: the per-client bucket (429),
 * the bearer token and scopes when the route is private (401 / 403), the per-subject
 * bucket (429; 401 for a token without sub on a route that has one). 0 when it may be
 * proxied (claims filled, RateLimit-* headers added to the answer); -1 after answering. */
int gw_guard_request(const gw_snap_t *snap, gw_ratelimit_t *rl, gw_rt_t *rt, cm_req_t *req,
                     gw_claims_t *claims, uint64_t now_ns);

#endif
