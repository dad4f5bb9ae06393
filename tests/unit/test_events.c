/* Unit tests for control/events.c: ids grow, the ring keeps the newest, render filters. */
#include <string.h>

#include <criterion/criterion.h>

#include "control/events.h"

Test(events, ids_grow_and_render_after_filters_oldest_first)
{
    cm_events_t *ev;
    cr_assert_eq(cm_events_new(&ev), 0);
    cr_assert_eq(cm_events_add(ev, "restart", "users", 1, NULL, "exited %d", 9), 1);
    cr_assert_eq(cm_events_add(ev, "scale", "users", -1, "{\"load\":3.5}", "2 -> 3"), 2);
    cm_buf_t b = {0};
    cm_events_render(ev, 1, 10, &b);
    cr_assert(strstr(b.data, "\"last\":2"));
    cr_assert_null(strstr(b.data, "\"id\":1,"));
    cr_assert(strstr(b.data, "\"id\":2,"));
    cr_assert(strstr(b.data, "\"detail\":{\"load\":3.5}"));
    cr_assert(strstr(b.data, "\"message\":\"2 -> 3\""));
    cm_buf_free(&b);
    cm_events_free(ev);
}

Test(events, the_ring_keeps_only_the_newest_and_a_null_log_is_a_no_op)
{
    cm_events_t *ev;
    cr_assert_eq(cm_events_new(&ev), 0);
    for (int i = 0; i < CM_EVENTS_KEEP + 10; i++)
        cm_events_add(ev, "scale", "orders", -1, NULL, "n %d", i);
    cm_buf_t b = {0};
    cm_events_render(ev, 0, CM_EVENTS_KEEP, &b);
    cr_assert_null(strstr(b.data, "\"id\":10,"), "the oldest are dropped");
    cr_assert(strstr(b.data, "\"id\":11,"));
    cr_assert(strstr(b.data, "\"message\":\"n 521\""));
    cm_buf_free(&b);
    cm_events_free(ev);
    cr_assert_eq(cm_events_add(NULL, "x", "", -1, NULL, "nothing"), 0);
}
