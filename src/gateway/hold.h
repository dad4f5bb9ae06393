/* gateway/hold.h: the queue of requests held while their route's service is scaled to
 * zero (one per route and worker, in gw_rt_t): FIFO, bounded by the route's max_pending,
 * nodes embedded in the exchanges (no allocation), any node removable in O(1) (a client
 * that hangs up, a hold that expires). Pure data structure: proxy.c decides when to hold
 * and what a dispatch or an expiry does; hold.c knows nothing of HTTP. */
#ifndef CMESH_GATEWAY_HOLD_H
#define CMESH_GATEWAY_HOLD_H

#include <stdint.h>

typedef struct gw_held {
    struct gw_held *prev, *next;
    uint64_t since_ns; /* when it was held (uv_hrtime): the cold start's start */
    int queued;        /* in a queue now */
} gw_held_t;

typedef struct gw_holdq {
    gw_held_t *head, *tail; /* oldest first */
    int n;
} gw_holdq_t;

/* Appends h (not queued) unless q already holds max: 0, or -EBUSY (h untouched). */
int gw_holdq_push(gw_holdq_t *q, gw_held_t *h, int max, uint64_t now_ns);
/* Takes h out of q; a no-op when h is not queued. */
void gw_holdq_remove(gw_holdq_t *q, gw_held_t *h);
/* Takes the oldest out; NULL when q is empty. */
gw_held_t *gw_holdq_pop(gw_holdq_t *q);
/* Moves every node of from to the end of to, in order (a new table of the worker takes
 * over the route's queue); from is left empty. */
void gw_holdq_move(gw_holdq_t *to, gw_holdq_t *from);

#endif
