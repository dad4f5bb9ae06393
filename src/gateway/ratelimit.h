/* gateway/ratelimit.h: token buckets keyed by a string (route + client address, or
 * route + token subject). One table shared by every worker (striped locks) so the
 * limit holds whatever the worker count; it outlives config reloads. Memory is
 * bounded: when full, buckets that have refilled (equal to no bucket) are dropped
 * first, then the least recently used. */
#ifndef CMESH_GATEWAY_RATELIMIT_H
#define CMESH_GATEWAY_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/config.h"

typedef struct gw_ratelimit gw_ratelimit_t; /* opaque */

typedef struct gw_rate_result {
    int allowed;        /* 1: a token was taken */
    long limit;         /* the bucket size (RateLimit-Limit) */
    long remaining;     /* whole tokens left after this request (RateLimit-Remaining) */
    long reset_s;       /* seconds until the bucket is full again (RateLimit-Reset) */
    long retry_after_s; /* when refused: seconds until one token is there (>= 1) */
} gw_rate_result_t;

/* max_keys: buckets kept at most (>= 16). Returns 0, -EINVAL or -ENOMEM. */
int gw_ratelimit_new(size_t max_keys, gw_ratelimit_t **out);
void gw_ratelimit_free(gw_ratelimit_t *rl); /* NULL is a no-op */

/* Takes one token from the bucket of key under cfg (cfg->rate > 0) at now_ns (a
 * monotonic clock). A new key starts full. Thread-safe. Returns 0, or -ENOMEM (the
 * request is then allowed: a limiter failure must not become an outage). */
int gw_ratelimit_take(gw_ratelimit_t *rl, const char *key, size_t key_len, const gw_rate_cfg_t *cfg,
                      uint64_t now_ns, gw_rate_result_t *res);

#endif
