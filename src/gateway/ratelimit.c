/* gateway/ratelimit.c: token buckets in a striped hash table (ratelimit.h). Each stripe
 * owns a fixed pool of buckets allocated up front, a chained index and an LRU list, all
 * under its own mutex; a take on a known key allocates nothing. When a stripe is full
 * it recycles a bucket that has refilled (forgetting it changes nothing) or its LRU. */
#include "gateway/ratelimit.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define STRIPES_MIN     16 /* enough that workers rarely wait on one another */
#define STRIPES_MAX     64
#define STRIPE_KEYS_MIN 8 /* fewer stripes rather than stripes too small for an LRU */
#define EVICT_SCAN      8 /* LRU entries examined for a refilled bucket before evicting */
#define NIL             UINT32_MAX
#define FP_SLACK        1e-9 /* tokens: absorbs rounding so 2.0000000001 is not 3 seconds */

typedef struct bucket {
    char *key; /* owned copy, reused (grown when needed) when the slot is recycled */
    size_t key_len;
    size_t key_cap;
    double tokens;    /* may be fractional */
    double rate;      /* tokens per second, from the last take (for eviction checks) */
    double burst;     /* bucket size, from the last take */
    uint64_t last_ns; /* time of the last refill */
    uint64_t hash;
    uint32_t next;               /* next bucket in the same index chain */
    uint32_t prev_lru, next_lru; /* most recent at the head */
} bucket_t;

typedef struct stripe {
    pthread_mutex_t lock;
    bucket_t *buckets; /* cap slots; used ones first */
    uint32_t cap;
    uint32_t used;
    uint32_t *index; /* nindex chain heads (power of two) */
    uint32_t nindex;
    uint32_t lru_head, lru_tail;
} stripe_t;

struct gw_ratelimit {
    stripe_t *stripes;
    uint32_t nstripes; /* power of two */
    uint64_t seed;     /* hash seed from getrandom() */
};

/* ------------------------------------------------------------------ */
/* Table plumbing                                                       */
/* ------------------------------------------------------------------ */

/* FNV-1a, seeded per table so clients cannot pick keys that pile into one stripe or
 * chain, then the murmur3 finaliser: FNV alone leaves the high bits (the stripe) poorly
 * mixed for keys that differ only in their last bytes ("10.0.0.1", "10.0.0.2"). */
static uint64_t hash_key(uint64_t seed, const char *key, size_t len)
{
    uint64_t h = 1469598103934665603ULL ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

static uint32_t pow2_at_least(uint32_t n)
{
    uint32_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

static int stripe_init(stripe_t *s, uint32_t cap)
{
    s->cap = cap;
    s->nindex = pow2_at_least(cap * 2);
    s->buckets = calloc(cap, sizeof *s->buckets);
    s->index = malloc(s->nindex * sizeof *s->index);
    if (!s->buckets || !s->index)
        return -ENOMEM;
    for (uint32_t i = 0; i < s->nindex; i++)
        s->index[i] = NIL;
    s->lru_head = s->lru_tail = NIL;
    return pthread_mutex_init(&s->lock, NULL) == 0 ? 0 : -ENOMEM;
}

int gw_ratelimit_new(size_t max_keys, gw_ratelimit_t **out)
{
    if (max_keys < 16 || max_keys > UINT32_MAX / 4)
        return -EINVAL;
    uint32_t n = STRIPES_MAX;
    while (n > STRIPES_MIN && max_keys / n < STRIPE_KEYS_MIN)
        n >>= 1;
    gw_ratelimit_t *rl = calloc(1, sizeof *rl);
    if (!rl)
        return -ENOMEM;
    rl->stripes = calloc(n, sizeof *rl->stripes);
    if (!rl->stripes) {
        free(rl);
        return -ENOMEM;
    }
    /* every stripe gets an equal share, so the total never exceeds max_keys */
    for (uint32_t i = 0; i < n; i++) {
        if (stripe_init(&rl->stripes[i], (uint32_t)(max_keys / n)) < 0) {
            rl->nstripes = i + 1;
            gw_ratelimit_free(rl);
            return -ENOMEM;
        }
    }
    rl->nstripes = n;
    if (getrandom(&rl->seed, sizeof rl->seed, GRND_NONBLOCK) != sizeof rl->seed)
        rl->seed = (uint64_t)(uintptr_t)rl ^ 0x9e3779b97f4a7c15ULL; /* early boot: still fine */
    *out = rl;
    return 0;
}

void gw_ratelimit_free(gw_ratelimit_t *rl)
{
    if (!rl)
        return;
    for (uint32_t i = 0; i < rl->nstripes; i++) {
        stripe_t *s = &rl->stripes[i];
        for (uint32_t b = 0; s->buckets && b < s->cap; b++)
            free(s->buckets[b].key);
        free(s->buckets);
        free(s->index);
        if (s->buckets && s->index)
            pthread_mutex_destroy(&s->lock);
    }
    free(rl->stripes);
    free(rl);
}

static void lru_unlink(stripe_t *s, uint32_t i)
{
    bucket_t *b = &s->buckets[i];
    if (b->prev_lru != NIL)
        s->buckets[b->prev_lru].next_lru = b->next_lru;
    else
        s->lru_head = b->next_lru;
    if (b->next_lru != NIL)
        s->buckets[b->next_lru].prev_lru = b->prev_lru;
    else
        s->lru_tail = b->prev_lru;
}

static void lru_push_front(stripe_t *s, uint32_t i)
{
    bucket_t *b = &s->buckets[i];
    b->prev_lru = NIL;
    b->next_lru = s->lru_head;
    if (s->lru_head != NIL)
        s->buckets[s->lru_head].prev_lru = i;
    s->lru_head = i;
    if (s->lru_tail == NIL)
        s->lru_tail = i;
}

static uint32_t find(const stripe_t *s, uint64_t h, const char *key, size_t len)
{
    for (uint32_t i = s->index[h & (s->nindex - 1)]; i != NIL; i = s->buckets[i].next) {
        const bucket_t *b = &s->buckets[i];
        if (b->hash == h && b->key_len == len && memcmp(b->key, key, len) == 0)
            return i;
    }
    return NIL;
}

static void index_remove(stripe_t *s, uint32_t i)
{
    uint32_t *link = &s->index[s->buckets[i].hash & (s->nindex - 1)];
    while (*link != i)
        link = &s->buckets[*link].next;
    *link = s->buckets[i].next;
}

static void refill(bucket_t *b, uint64_t now_ns)
{
    if (now_ns > b->last_ns) { /* a clock read before another thread's take: no refill */
        b->tokens += (double)(now_ns - b->last_ns) / 1e9 * b->rate;
        if (b->tokens > b->burst)
            b->tokens = b->burst;
        b->last_ns = now_ns;
    }
}

/* The slot to recycle: among the EVICT_SCAN least recently used, one that has refilled
 * (dropping it loses nothing), else the least recently used. */
static uint32_t victim(stripe_t *s, uint64_t now_ns)
{
    uint32_t i = s->lru_tail;
    for (int n = 0; n < EVICT_SCAN && i != NIL; n++, i = s->buckets[i].prev_lru) {
        refill(&s->buckets[i], now_ns);
        if (s->buckets[i].tokens >= s->buckets[i].burst)
            return i;
    }
    return s->lru_tail;
}

/* Grows the key buffer of slot b; realloc keeps the old key intact, so a failure leaves
 * a recycled slot still valid in the index. Returns 0 or -ENOMEM. */
static int reserve_key(bucket_t *b, size_t len)
{
    if (b->key_cap >= len + 1)
        return 0;
    char *k = realloc(b->key, len + 1);
    if (!k)
        return -ENOMEM;
    b->key = k;
    b->key_cap = len + 1;
    return 0;
}

/* Finds or creates the bucket of key (new ones start full). Returns NIL on ENOMEM. */
static uint32_t lookup(stripe_t *s, uint64_t h, const char *key, size_t len, double burst,
                       uint64_t now_ns)
{
    uint32_t i = find(s, h, key, len);
    if (i != NIL) {
        lru_unlink(s, i);
        lru_push_front(s, i);
        return i;
    }
    int fresh = s->used < s->cap;
    i = fresh ? s->used : victim(s, now_ns);
    if (reserve_key(&s->buckets[i], len) < 0)
        return NIL;
    if (fresh) {
        s->used++;
    } else {
        index_remove(s, i);
        lru_unlink(s, i);
    }
    bucket_t *b = &s->buckets[i];
    memcpy(b->key, key, len);
    b->key[len] = '\0';
    b->key_len = len;
    b->hash = h;
    b->tokens = burst;
    b->burst = burst;
    b->last_ns = now_ns;
    b->next = s->index[h & (s->nindex - 1)];
    s->index[h & (s->nindex - 1)] = i;
    lru_push_front(s, i);
    return i;
}

/* ------------------------------------------------------------------ */
/* Taking a token                                                       */
/* ------------------------------------------------------------------ */

static long ceil_seconds(double tokens_short, double rate)
{
    double s = ceil(tokens_short / rate - FP_SLACK);
    if (!(s < (double)LONG_MAX / 2)) /* an absurd config must not overflow the cast */
        return LONG_MAX / 2;
    return s > 0 ? (long)s : 0;
}

/* Takes one token from b if it has one and fills res. */
static void take(bucket_t *b, gw_rate_result_t *res)
{
    res->allowed = b->tokens >= 1.0 - FP_SLACK;
    if (res->allowed) {
        b->tokens -= 1.0;
        if (b->tokens < 0)
            b->tokens = 0;
    }
    res->limit = b->burst < (double)LONG_MAX / 2 ? (long)b->burst : LONG_MAX / 2;
    res->remaining =
        b->tokens < (double)LONG_MAX / 2 ? (long)floor(b->tokens + FP_SLACK) : LONG_MAX / 2;
    res->reset_s = ceil_seconds(b->burst - b->tokens, b->rate);
    res->retry_after_s = 0;
    if (!res->allowed) {
        long wait = ceil_seconds(1.0 - b->tokens, b->rate);
        res->retry_after_s = wait < 1 ? 1 : wait;
    }
}

int gw_ratelimit_take(gw_ratelimit_t *rl, const char *key, size_t key_len, const gw_rate_cfg_t *cfg,
                      uint64_t now_ns, gw_rate_result_t *res)
{
    memset(res, 0, sizeof *res);
    res->allowed = 1; /* on any error: a limiter failure must not become an outage */
    if (!(cfg->rate > 0))
        return -EINVAL;
    double burst = cfg->burst >= 1 ? cfg->burst : (cfg->rate > 1 ? cfg->rate : 1);
    uint64_t h = hash_key(rl->seed, key, key_len);
    stripe_t *s = &rl->stripes[(h >> 32) & (rl->nstripes - 1)];

    pthread_mutex_lock(&s->lock);
    uint32_t i = lookup(s, h, key, key_len, burst, now_ns);
    if (i == NIL) {
        pthread_mutex_unlock(&s->lock);
        return -ENOMEM;
    }
    bucket_t *b = &s->buckets[i];
    b->rate = cfg->rate;
    b->burst = burst; /* a reload may change either; tokens are clamped by refill */
    refill(b, now_ns);
    if (b->tokens > burst)
        b->tokens = burst;
    take(b, res);
    pthread_mutex_unlock(&s->lock);
    return 0;
}
