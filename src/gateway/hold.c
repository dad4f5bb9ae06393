/* gateway/hold.c: the held-request queue (hold.h): an intrusive doubly linked FIFO with
 * a count, so the bound check and every removal are O(1). */
#include "gateway/hold.h"

#include <errno.h>
#include <stddef.h>

int gw_holdq_push(gw_holdq_t *q, gw_held_t *h, int max, uint64_t now_ns)
{
    if (h->queued)
        return 0;
    if (q->n >= max)
        return -EBUSY;
    h->prev = q->tail;
    h->next = NULL;
    if (q->tail)
        q->tail->next = h;
    else
        q->head = h;
    q->tail = h;
    q->n++;
    h->since_ns = now_ns;
    h->queued = 1;
    return 0;
}

void gw_holdq_remove(gw_holdq_t *q, gw_held_t *h)
{
    if (!h->queued)
        return;
    if (h->prev)
        h->prev->next = h->next;
    else
        q->head = h->next;
    if (h->next)
        h->next->prev = h->prev;
    else
        q->tail = h->prev;
    h->prev = h->next = NULL;
    h->queued = 0;
    q->n--;
}

gw_held_t *gw_holdq_pop(gw_holdq_t *q)
{
    gw_held_t *h = q->head;
    if (h)
        gw_holdq_remove(q, h);
    return h;
}

void gw_holdq_move(gw_holdq_t *to, gw_holdq_t *from)
{
    if (!from->head)
        return;
    from->head->prev = to->tail;
    if (to->tail)
        to->tail->next = from->head;
    else
        to->head = from->head;
    to->tail = from->tail;
    to->n += from->n;
    *from = (gw_holdq_t){0};
}
