/* gateway/retry.c: the retry rules (retry.h), pure: which failures may be tried again,
 * the backoff, the route's budget. Called by proxy.c with the time passed in. */
#include "gateway/retry.h"

#define NS_PER_S  1000000000ULL
#define NS_PER_MS 1000000ULL

static gw_budget_slot_t *slot_at(gw_budget_t *b, uint64_t now_ns)
{
    uint64_t sec = now_ns / NS_PER_S;
    gw_budget_slot_t *s = &b->slot[sec % GW_BUDGET_SLOTS];
    if (s->sec != sec) /* a slot left from an older second starts over */
        *s = (gw_budget_slot_t){.sec = sec};
    return s;
}

void gw_budget_request(gw_budget_t *b, uint64_t now_ns)
{
    slot_at(b, now_ns)->requests++;
}

int gw_budget_take(gw_budget_t *b, double ratio, int min_per_second, uint64_t now_ns)
{
    uint64_t sec = now_ns / NS_PER_S, req = 0, ret = 0;
    for (int i = 0; i < GW_BUDGET_SLOTS; i++) {
        const gw_budget_slot_t *s = &b->slot[i];
        if (s->sec + GW_BUDGET_SLOTS > sec) {
            req += s->requests;
            ret += s->retries;
        }
    }
    double allowed = ratio * (double)req + (double)min_per_second * GW_BUDGET_SLOTS;
    if ((double)ret >= allowed)
        return 0;
    slot_at(b, now_ns)->retries++;
    return 1;
}

uint64_t gw_retry_backoff_ms(const gw_route_cfg_t *rc, int attempt, uint64_t rnd)
{
    uint64_t cap = rc->backoff_base_ms << (attempt > 8 ? 8 : attempt - 1);
    if (cap > rc->backoff_max_ms)
        cap = rc->backoff_max_ms;
    return cap ? rnd % (cap + 1) : 0; /* full jitter */
}

int gw_retry_method_safe(cm_method_t m, int idem_key)
{
    switch (m) {
    case CM_GET:
    case CM_HEAD:
    case CM_PUT:
    case CM_DELETE:
    case CM_OPTIONS:
        return 1;
    default:
        return idem_key;
    }
}

int gw_retry_decide(const gw_route_cfg_t *rc, gw_budget_t *b, const gw_retry_ask_t *a,
                    const char **refused)
{
    *refused = NULL;
    if (a->answered || a->attempts >= rc->attempts || a->why == GW_FAIL_PROTOCOL)
        return GW_RETRY_NO;
    if (a->why != GW_FAIL_CONNECT && !a->method_safe) {
        *refused = "method not idempotent and no Idempotency-Key";
        return GW_RETRY_NO;
    }
    if (a->body_lost) {
        *refused = "body too large to replay";
        return GW_RETRY_NO;
    }
    if (a->now_ns + a->wait_ms * NS_PER_MS >= a->start_ns + rc->timeout_ms * NS_PER_MS) {
        *refused = "deadline";
        return GW_RETRY_NO;
    }
    if (!gw_budget_take(b, rc->retry_budget, rc->retry_budget_min, a->now_ns)) {
        *refused = "budget";
        return GW_RETRY_NO_BUDGET;
    }
    return GW_RETRY_YES;
}
