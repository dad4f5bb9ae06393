/* gateway/guard.h: route matching, auth and rate limits ahead of the proxy (guard.c). */
#ifndef CMESH_GATEWAY_GUARD_H
#define CMESH_GATEWAY_GUARD_H

#include "gateway/gw.h"

/* The first route (most specific first) whose host and prefix match, or NULL. host is the
 * name the request is for (cm_uri_host_parse(): no port, no trailing dot; empty when none),
 * path the normalized path (cm_uri_normalize()): the one that is forwarded. */
gw_rt_t *gw_guard_route(gw_table_t *t, const cm_str_t *host, const cm_str_t *path);
/* 0 when the route is public or the bearer token is valid and has the scopes the route
 * and method need (claims filled); -1 after answering 401 / 403. */
int gw_guard_auth(const gw_snap_t *snap, gw_rt_t *rt, cm_req_t *req, gw_claims_t *claims);
/* 0 when the buckets allow it (RateLimit-* headers added to the answer); -1 after 429. */
int gw_guard_rate(gw_ratelimit_t *rl, gw_rt_t *rt, cm_req_t *req, const gw_claims_t *claims,
                  uint64_t now_ns);

#endif
