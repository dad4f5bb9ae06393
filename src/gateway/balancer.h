/* gateway/balancer.h: picks the upstream instance for one attempt. One balancer per
 * route per worker thread (no locks). The proxy owns the host array and keeps each
 * host's weight, availability, in-flight count and latency current; the balancer only
 * reads them (and keeps its own cursor, smooth-WRR state or Maglev table). */
#ifndef CMESH_GATEWAY_BALANCER_H
#define CMESH_GATEWAY_BALANCER_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/config.h"

typedef struct gw_lb_host {
    const char *key;  /* stable identity (the URL): Maglev places hosts by it */
    double weight;    /* effective weight > 0: configured weight x slow-start factor */
    int available;    /* healthy (active checks) and not ejected (outlier detection) */
    int inflight;     /* requests in flight to it now */
    double ewma_us;   /* peak EWMA of response time in microseconds; 0 = no sample yet */
    uint64_t ewma_ns; /* when ewma_us was last updated (uv_hrtime) */
} gw_lb_host_t;

typedef struct gw_lb gw_lb_t; /* opaque */

/* hosts is borrowed and must outlive the balancer; n in 1..GW_LB_MAX_HOSTS. Build a
 * new balancer when the host set changes (the Maglev table depends on it).
 * panic_percent: when fewer than this share of hosts are available, every host is
 * eligible again (a route is never left with none). Caller owns *out.
 * Returns 0, -EINVAL or -ENOMEM. */
#define GW_LB_MAX_HOSTS 256
int gw_lb_new(gw_lb_kind_t kind, gw_lb_host_t *hosts, int n, int panic_percent, uint64_t seed,
              gw_lb_t **out);
void gw_lb_free(gw_lb_t *lb); /* NULL is a no-op */

/* Returns the index of the host for the next attempt. avoid lists hosts already tried
 * for this request (navoid of them); they are skipped while any other eligible host
 * exists. key_hash is used by GW_LB_HASH only (gw_lb_hash of the key; a request
 * without a key should pass a random value). now_ns (uv_hrtime) is the clock peak EWMA
 * decays a quiet host's estimate by. Never fails for n >= 1. */
int gw_lb_pick(gw_lb_t *lb, const int *avoid, int navoid, uint64_t key_hash, uint64_t now_ns);

/* Records one response time for peak EWMA: a sample above the average replaces it at
 * once (peak), lower samples decay into it with a 10 s time constant. While a host has
 * nothing in flight its estimate decays toward zero (1 s time constant), so a host that
 * was slow once is tried again; a sample after such a quiet spell starts from the
 * decayed estimate. */
void gw_lb_observe(gw_lb_host_t *h, uint64_t rtt_us, uint64_t now_ns);

/* A 64-bit hash of a key (a header or cookie value). */
uint64_t gw_lb_hash(const char *key, size_t len);

#endif
