/* Unit tests for gateway/hold: the queue of requests held while a route's service is
 * scaled to zero: its bound, FIFO order, removal from anywhere, the move to a new table. */
#include <errno.h>

#include <criterion/criterion.h>

#include "gateway/hold.h"

static int order(const gw_holdq_t *q, gw_held_t *base, int *out, int cap)
{
    int n = 0;
    for (const gw_held_t *h = q->head; h && n < cap; h = h->next)
        out[n++] = (int)(h - base);
    return n;
}

Test(hold, push_refuses_past_the_bound_and_leaves_the_node_untouched)
{
    gw_holdq_t q = {0};
    gw_held_t h[3] = {0};
    cr_assert_eq(gw_holdq_push(&q, &h[0], 2, 10), 0);
    cr_assert_eq(gw_holdq_push(&q, &h[1], 2, 20), 0);
    cr_assert_eq(gw_holdq_push(&q, &h[2], 2, 30), -EBUSY);
    cr_assert_eq(q.n, 2);
    cr_assert_eq(h[2].queued, 0);
    cr_assert_eq(h[0].since_ns, 10);
    gw_holdq_remove(&q, &h[0]); /* room again */
    cr_assert_eq(gw_holdq_push(&q, &h[2], 2, 30), 0);
    cr_assert_eq(q.n, 2);
}

Test(hold, a_bound_of_zero_holds_nothing)
{
    gw_holdq_t q = {0};
    gw_held_t h = {0};
    cr_assert_eq(gw_holdq_push(&q, &h, 0, 1), -EBUSY);
    cr_assert_null(q.head);
    cr_assert_eq(q.n, 0);
}

Test(hold, pop_gives_the_oldest_first)
{
    gw_holdq_t q = {0};
    gw_held_t h[4] = {0};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(gw_holdq_push(&q, &h[i], 100, (uint64_t)i), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(gw_holdq_pop(&q), &h[i]);
    cr_assert_null(gw_holdq_pop(&q));
    cr_assert_eq(q.n, 0);
    cr_assert_null(q.tail);
}

Test(hold, remove_takes_a_node_from_head_middle_or_tail_and_twice_is_a_no_op)
{
    gw_holdq_t q = {0};
    gw_held_t h[5] = {0};
    for (int i = 0; i < 5; i++)
        gw_holdq_push(&q, &h[i], 100, 0);
    gw_holdq_remove(&q, &h[2]);
    gw_holdq_remove(&q, &h[0]);
    gw_holdq_remove(&q, &h[4]);
    gw_holdq_remove(&q, &h[4]); /* not queued any more */
    int got[5], n = order(&q, h, got, 5);
    cr_assert_eq(n, 2);
    cr_assert_eq(q.n, 2);
    cr_assert_eq(got[0], 1);
    cr_assert_eq(got[1], 3);
    cr_assert_eq(q.tail, &h[3]);
    cr_assert_eq(h[2].queued, 0);
}

Test(hold, pushing_a_queued_node_again_changes_nothing)
{
    gw_holdq_t q = {0};
    gw_held_t h = {0};
    gw_holdq_push(&q, &h, 1, 5);
    cr_assert_eq(gw_holdq_push(&q, &h, 1, 9), 0);
    cr_assert_eq(q.n, 1);
    cr_assert_eq(h.since_ns, 5);
}

Test(hold, move_appends_in_order_and_empties_the_source)
{
    gw_holdq_t a = {0}, b = {0};
    gw_held_t h[4] = {0};
    gw_holdq_push(&a, &h[0], 100, 0);
    gw_holdq_push(&b, &h[1], 100, 0);
    gw_holdq_push(&b, &h[2], 100, 0);
    gw_holdq_move(&a, &b);
    gw_holdq_move(&a, &b); /* from an empty one: nothing */
    cr_assert_eq(b.n, 0);
    cr_assert_null(b.head);
    int got[4], n = order(&a, h, got, 4);
    cr_assert_eq(n, 3);
    cr_assert_eq(a.n, 3);
    cr_assert_eq(got[0], 0);
    cr_assert_eq(got[1], 1);
    cr_assert_eq(got[2], 2);
    gw_holdq_push(&a, &h[3], 100, 0); /* the tail is right after a move */
    cr_assert_eq(a.tail, &h[3]);
    cr_assert_eq(h[2].next, &h[3]);
    gw_holdq_t c = {0}; /* into an empty queue */
    gw_holdq_move(&c, &a);
    cr_assert_eq(c.n, 4);
    cr_assert_eq(c.head, &h[0]);
    cr_assert_null(c.head->prev);
}
