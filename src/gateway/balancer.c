/* gateway/balancer.c: upstream selection for one route (see balancer.h): round robin,
 * smooth weighted round robin, power-of-two-choices on in-flight requests or peak
 * EWMA latency, and Maglev consistent hashing. Called by the proxy for every attempt;
 * reads the host array the proxy keeps current and calls nothing but libc/libm. */
#include "gateway/balancer.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Maglev lookup table size: a prime well above 100 x GW_LB_MAX_HOSTS, so each host's
 * share is within a fraction of a percent of its weight share (Maglev paper, 3.4). */
#define MAGLEV_SIZE 65537
#define EWMA_TAU_NS 10e9 /* ns: peak EWMA time constant (10 s) */
/* ns: how fast the estimate of a host that is left alone decays toward zero (1 s: it
 * halves every 0.7 s). Without it a host that was slow once keeps its old estimate for
 * good, since only an answer moves it and P2C never sends it a request (two hosts: the
 * other always wins). A host 100x slower than its peer is tried again ~4.6 s after it
 * was left; one that is still slow costs one slow request per cycle, as its answer puts
 * the peak back at once and only idle hosts decay. Finagle's PeakEwma decays the same
 * way on read, with one time constant for both; here a busy host's average is not
 * decayed (that would bias it by the sample rate), only a quiet host's is. */
#define EWMA_IDLE_TAU_NS 1e9

struct gw_lb {
    gw_lb_kind_t kind;
    gw_lb_host_t *hosts; /* borrowed, n of them */
    int n;
    int panic_percent;               /* 0..100 */
    uint64_t rng;                    /* splitmix64 state */
    uint64_t now_ns;                 /* the current pick's clock (uv_hrtime) */
    int cursor;                      /* round robin: where the next scan starts */
    double current[GW_LB_MAX_HOSTS]; /* smooth WRR: each host's running credit */
    uint8_t *table;                  /* Maglev: MAGLEV_SIZE host indexes, hash only */
};

/* ---------------------------------------------------------------------------------
 * Low level: hashing, random numbers, eligibility
 * --------------------------------------------------------------------------------- */

/* murmur3's 64-bit finalizer: spreads FNV's weak low bits over the whole word. */
static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

uint64_t gw_lb_hash(const char *key, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a 64 offset basis */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 0x100000001b3ULL; /* FNV-1a 64 prime */
    }
    return mix64(h);
}

static uint64_t next_random(gw_lb_t *lb)
{
    uint64_t z = (lb->rng += 0x9e3779b97f4a7c15ULL); /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int random_below(gw_lb_t *lb, int bound)
{
    return (int)(next_random(lb) % (uint64_t)bound);
}

/* Fills ok[] with the hosts this attempt may use and returns how many (always >= 1).
 * Preference: available and not avoided; then available; then anyone, so a route is
 * never left without a host. In panic (too few available) every host is "available". */
static int eligible_hosts(const gw_lb_t *lb, const int *avoid, int navoid, uint8_t *ok)
{
    uint8_t avoided[GW_LB_MAX_HOSTS] = {0};
    for (int i = 0; avoid && i < navoid; i++)
        if (avoid[i] >= 0 && avoid[i] < lb->n)
            avoided[avoid[i]] = 1;

    int available = 0;
    for (int i = 0; i < lb->n; i++)
        available += lb->hosts[i].available != 0;
    int panic = available * 100 < lb->panic_percent * lb->n;

    for (int tier = 0; tier < 3; tier++) {
        int count = 0;
        for (int i = 0; i < lb->n; i++) {
            int up = panic || lb->hosts[i].available;
            ok[i] = tier == 0 ? up && !avoided[i] : tier == 1 ? up : 1;
            count += ok[i];
        }
        if (count > 0)
            return count;
    }
    return 0; /* unreachable: tier 2 admits every host and n >= 1 */
}

/* Index of the k-th eligible host (k counted from 0). */
static int nth_eligible(const gw_lb_t *lb, const uint8_t *ok, int k)
{
    for (int i = 0; i < lb->n; i++)
        if (ok[i] && k-- == 0)
            return i;
    return 0;
}

/* ---------------------------------------------------------------------------------
 * Algorithms
 * --------------------------------------------------------------------------------- */

static int pick_round_robin(gw_lb_t *lb, const uint8_t *ok)
{
    for (int step = 0; step < lb->n; step++) {
        int i = (lb->cursor + step) % lb->n;
        if (ok[i]) {
            lb->cursor = (i + 1) % lb->n;
            return i;
        }
    }
    return 0;
}

/* nginx's smooth weighted round robin: every eligible host earns its weight, the
 * richest is picked and pays the total. Heavy hosts are interleaved, not bunched. */
static int pick_weighted(gw_lb_t *lb, const uint8_t *ok)
{
    double total = 0;
    int best = -1;
    for (int i = 0; i < lb->n; i++) {
        if (!ok[i])
            continue;
        double w = lb->hosts[i].weight > 0 ? lb->hosts[i].weight : 0;
        lb->current[i] += w;
        total += w;
        if (best < 0 || lb->current[i] > lb->current[best])
            best = i;
    }
    if (best < 0)
        return 0; /* unreachable: eligible_hosts() admits at least one */
    lb->current[best] -= total;
    return best;
}

/* Two distinct random eligible hosts; -1 in *b when only one is eligible. */
static void two_choices(gw_lb_t *lb, const uint8_t *ok, int count, int *a, int *b)
{
    int ka = random_below(lb, count);
    *a = nth_eligible(lb, ok, ka);
    *b = -1;
    if (count < 2)
        return;
    int kb = random_below(lb, count - 1);
    *b = nth_eligible(lb, ok, kb >= ka ? kb + 1 : kb);
}

static double weight_of(const gw_lb_host_t *h)
{
    return h->weight > 0 ? h->weight : 1e-9; /* header promises > 0; never divide by 0 */
}

static int cheaper(gw_lb_t *lb, int a, double cost_a, int b, double cost_b)
{
    if (cost_a != cost_b)
        return cost_a < cost_b ? a : b;
    return next_random(lb) & 1 ? a : b;
}

static int pick_least_request(gw_lb_t *lb, const uint8_t *ok, int count)
{
    int a, b;
    two_choices(lb, ok, count, &a, &b);
    if (b < 0)
        return a;
    const gw_lb_host_t *ha = &lb->hosts[a], *hb = &lb->hosts[b];
    return cheaper(lb, a, ha->inflight / weight_of(ha), b, hb->inflight / weight_of(hb));
}

/* The host's latency estimate as of now_ns: the peak EWMA decayed toward zero for the
 * time since its last answer, while nothing is in flight to it. A request in flight is
 * news yet to come: the estimate waits for it, so a decayed host gets one probe at a
 * time, not a flood. 0 = no sample. */
static double ewma_now(const gw_lb_host_t *h, uint64_t now_ns)
{
    if (h->ewma_us <= 0 || h->inflight > 0 || now_ns <= h->ewma_ns)
        return h->ewma_us;
    return h->ewma_us * exp(-(double)(now_ns - h->ewma_ns) / EWMA_IDLE_TAU_NS);
}

/* A host without a sample costs like the fastest known host: new hosts get tried,
 * but do not look free and take every request before their first answer. */
static double unsampled_ewma(const gw_lb_t *lb)
{
    double lowest = 0;
    for (int i = 0; i < lb->n; i++) {
        double e = ewma_now(&lb->hosts[i], lb->now_ns);
        if (e > 0 && (lowest == 0 || e < lowest))
            lowest = e;
    }
    return lowest > 0 ? lowest : 1;
}

static double ewma_cost(const gw_lb_host_t *h, double unsampled, uint64_t now_ns)
{
    double e = ewma_now(h, now_ns);
    double ewma = e > 0 ? e : unsampled;
    return ewma * (h->inflight + 1) / weight_of(h);
}

static int pick_peak_ewma(gw_lb_t *lb, const uint8_t *ok, int count)
{
    int a, b;
    two_choices(lb, ok, count, &a, &b);
    if (b < 0)
        return a;
    double unsampled = unsampled_ewma(lb);
    return cheaper(lb, a, ewma_cost(&lb->hosts[a], unsampled, lb->now_ns), b,
                   ewma_cost(&lb->hosts[b], unsampled, lb->now_ns));
}

/* The key's slot, or the first eligible host after it: keys of healthy hosts never
 * move when another host goes down. */
static int pick_hash(const gw_lb_t *lb, const uint8_t *ok, uint64_t key_hash)
{
    size_t slot = (size_t)(key_hash % MAGLEV_SIZE);
    for (size_t step = 0; step < MAGLEV_SIZE; step++) {
        int i = lb->table[(slot + step) % MAGLEV_SIZE];
        if (ok[i])
            return i;
    }
    return nth_eligible(lb, ok, 0); /* an eligible host too light to own any slot */
}

/* ---------------------------------------------------------------------------------
 * Maglev table
 * --------------------------------------------------------------------------------- */

/* Maglev population (paper, 3.4): hosts take turns claiming their next free slot in
 * their own permutation (offset + j * skip). Weights are honoured by turns: per round
 * a host earns weight / max weight of a turn. The table snapshots weights at build
 * time, so a route in slow start keeps its reduced share until it is rebuilt. */
static int build_maglev(gw_lb_t *lb)
{
    uint8_t *taken = calloc(MAGLEV_SIZE, 1);
    uint32_t *offset = calloc((size_t)lb->n, sizeof *offset);
    uint32_t *skip = calloc((size_t)lb->n, sizeof *skip);
    uint32_t *next = calloc((size_t)lb->n, sizeof *next);
    double *credit = calloc((size_t)lb->n, sizeof *credit);
    lb->table = malloc(MAGLEV_SIZE);
    int rc = -ENOMEM;
    if (!taken || !offset || !skip || !next || !credit || !lb->table)
        goto out;

    double max_weight = 0;
    for (int i = 0; i < lb->n; i++) {
        const char *key = lb->hosts[i].key ? lb->hosts[i].key : "";
        uint64_t h = gw_lb_hash(key, strlen(key));
        offset[i] = (uint32_t)(h % MAGLEV_SIZE);
        skip[i] = (uint32_t)(mix64(h ^ 0x9e3779b97f4a7c15ULL) % (MAGLEV_SIZE - 1)) + 1;
        max_weight = fmax(max_weight, weight_of(&lb->hosts[i]));
    }

    int filled = 0;
    while (filled < MAGLEV_SIZE) {
        for (int i = 0; i < lb->n && filled < MAGLEV_SIZE; i++) {
            credit[i] += weight_of(&lb->hosts[i]) / max_weight;
            if (credit[i] < 1)
                continue;
            credit[i] -= 1;
            uint32_t slot;
            do /* a permutation of a prime-sized table always reaches a free slot */
                slot = (uint32_t)((offset[i] + (uint64_t)next[i]++ * skip[i]) % MAGLEV_SIZE);
            while (taken[slot]);
            taken[slot] = 1;
            lb->table[slot] = (uint8_t)i;
            filled++;
        }
    }
    rc = 0;
out:
    free(taken);
    free(offset);
    free(skip);
    free(next);
    free(credit);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Public API
 * --------------------------------------------------------------------------------- */

int gw_lb_new(gw_lb_kind_t kind, gw_lb_host_t *hosts, int n, int panic_percent, uint64_t seed,
              gw_lb_t **out)
{
    if (!out || !hosts || n < 1 || n > GW_LB_MAX_HOSTS || panic_percent < 0 ||
        panic_percent > 100 || kind < GW_LB_ROUND_ROBIN || kind > GW_LB_HASH)
        return -EINVAL;
    gw_lb_t *lb = calloc(1, sizeof *lb);
    if (!lb)
        return -ENOMEM;
    lb->kind = kind;
    lb->hosts = hosts;
    lb->n = n;
    lb->panic_percent = panic_percent;
    lb->rng = seed;
    if (kind == GW_LB_HASH && build_maglev(lb) != 0) {
        gw_lb_free(lb);
        return -ENOMEM;
    }
    *out = lb;
    return 0;
}

void gw_lb_free(gw_lb_t *lb)
{
    if (!lb)
        return;
    free(lb->table);
    free(lb);
}

int gw_lb_pick(gw_lb_t *lb, const int *avoid, int navoid, uint64_t key_hash, uint64_t now_ns)
{
    lb->now_ns = now_ns;
    uint8_t ok[GW_LB_MAX_HOSTS];
    int count = eligible_hosts(lb, avoid, navoid, ok);
    switch (lb->kind) {
    case GW_LB_WEIGHTED_ROUND_ROBIN:
        return pick_weighted(lb, ok);
    case GW_LB_LEAST_REQUEST:
        return pick_least_request(lb, ok, count);
    case GW_LB_PEAK_EWMA:
        return pick_peak_ewma(lb, ok, count);
    case GW_LB_HASH:
        return pick_hash(lb, ok, key_hash);
    case GW_LB_ROUND_ROBIN:
    default:
        return pick_round_robin(lb, ok);
    }
}

void gw_lb_observe(gw_lb_host_t *h, uint64_t rtt_us, uint64_t now_ns)
{
    double rtt = (double)rtt_us;
    uint64_t gap = now_ns > h->ewma_ns ? now_ns - h->ewma_ns : 0;
    /* the time before this request started, since the last answer: the host was left
     * alone (as far as answers tell), so the estimate decayed as ewma_now() saw it */
    uint64_t rtt_ns = rtt_us * 1000;
    double idle = gap > rtt_ns ? (double)(gap - rtt_ns) : 0;
    double base = h->ewma_us * exp(-idle / EWMA_IDLE_TAU_NS);
    if (h->ewma_us <= 0 || rtt > base) {
        h->ewma_us = rtt; /* first sample, or a peak: believe it at once */
    } else {
        double w = exp(-(double)gap / EWMA_TAU_NS);
        h->ewma_us = base * w + rtt * (1 - w);
    }
    h->ewma_ns = now_ns;
}
