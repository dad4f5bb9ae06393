/* Unit tests for control/history: the charts' ring per service, ids that only grow, the
 * newest CM_HISTORY_KEEP points kept, `after` reading only what is new, columns with
 * nulls for unknown values. Times are passed in (no clock). */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "control/history.h"

static json_t *render(const cm_history_t *h, uint64_t after)
{
    cm_buf_t b = {0};
    cm_history_render(h, after, &b);
    json_error_t err;
    json_t *j = json_loadb(b.data, b.len, 0, &err);
    cr_assert_not_null(j, "not JSON: %s (%.*s)", err.text, (int)b.len, b.data);
    cm_buf_free(&b);
    return j;
}

static cm_history_point_t point(int64_t t, double rps, int ready)
{
    return (cm_history_point_t){.t_ms = t,
                                .rps = rps,
                                .p99_ms = 2.5,
                                .errors = 0.125,
                                .desired = 2,
                                .running = 2,
                                .ready = ready};
}

static json_t *series(json_t *j, const char *name)
{
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(j, "services"), i, s)
    {
        if (strcmp(json_string_value(json_object_get(s, "name")), name) == 0)
            return s;
    }
    cr_assert_fail("no series %s", name);
    return NULL;
}

Test(history, points_come_back_as_columns_in_order)
{
    cm_history_t *h;
    cr_assert_eq(cm_history_new(&h), 0);
    cm_history_point_t p = point(1000, 10, 2);
    cr_assert_eq(cm_history_add(h, "users", &p), 1);
    p = point(1000, 4, 1);
    cr_assert_eq(cm_history_add(h, "orders", &p), 2);
    p = point(3000, 20, 1);
    p.p99_ms = -1; /* no request: no p99, no error rate */
    p.errors = -1;
    cr_assert_eq(cm_history_add(h, "users", &p), 3);
    cr_assert_eq(cm_history_last(h), 3);

    json_t *j = render(h, 0);
    cr_assert_eq(json_integer_value(json_object_get(j, "last")), 3);
    cr_assert_eq(json_integer_value(json_object_get(j, "keep")), CM_HISTORY_KEEP);
    cr_assert_eq(json_array_size(json_object_get(j, "services")), 2);
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(j, "services"), 0), "name")),
                     "users", "first seen first");
    json_t *u = series(j, "users");
    cr_assert_eq(json_array_size(json_object_get(u, "t")), 2);
    cr_assert_eq(json_integer_value(json_array_get(json_object_get(u, "t"), 0)), 1000);
    cr_assert_eq(json_integer_value(json_array_get(json_object_get(u, "t"), 1)), 3000);
    cr_assert_float_eq(json_number_value(json_array_get(json_object_get(u, "rps"), 1)), 20, 1e-9);
    cr_assert_float_eq(json_number_value(json_array_get(json_object_get(u, "p99_ms"), 0)), 2.5,
                       1e-9);
    cr_assert(json_is_null(json_array_get(json_object_get(u, "p99_ms"), 1)));
    cr_assert_float_eq(json_number_value(json_array_get(json_object_get(u, "error_rate"), 0)),
                       0.125, 1e-9);
    cr_assert(json_is_null(json_array_get(json_object_get(u, "error_rate"), 1)));
    cr_assert_eq(json_integer_value(json_array_get(json_object_get(u, "ready"), 1)), 1);
    cr_assert_eq(json_integer_value(json_array_get(json_object_get(u, "desired"), 1)), 2);
    cr_assert_eq(json_integer_value(json_array_get(json_object_get(u, "running"), 1)), 2);
    json_decref(j);
    cm_history_free(h);
}

Test(history, after_reads_only_what_is_new)
{
    cm_history_t *h;
    cr_assert_eq(cm_history_new(&h), 0);
    for (int i = 0; i < 10; i++) {
        cm_history_point_t p = point(2000 * i, i, 2);
        cm_history_add(h, i % 2 ? "orders" : "users", &p);
    }
    json_t *j = render(h, 7); /* ids 8 (orders), 9 (users), 10 (orders) */
    cr_assert_eq(json_integer_value(json_object_get(j, "last")), 10);
    cr_assert_eq(json_array_size(json_object_get(series(j, "users"), "t")), 1);
    cr_assert_eq(json_integer_value(json_array_get(json_object_get(series(j, "users"), "t"), 0)),
                 16000);
    cr_assert_eq(json_array_size(json_object_get(series(j, "orders"), "t")), 2);
    json_decref(j);
    j = render(h, 10); /* nothing new: every service, empty columns */
    cr_assert_eq(json_array_size(json_object_get(j, "services")), 2);
    cr_assert_eq(json_array_size(json_object_get(series(j, "users"), "rps")), 0);
    json_decref(j);
    cm_history_free(h);
}

Test(history, the_ring_keeps_the_newest_points)
{
    cm_history_t *h;
    cr_assert_eq(cm_history_new(&h), 0);
    int n = CM_HISTORY_KEEP + 25;
    for (int i = 0; i < n; i++) {
        cm_history_point_t p = point(2000 * (int64_t)i, i, 2);
        cr_assert_eq(cm_history_add(h, "users", &p), (uint64_t)i + 1);
    }
    json_t *j = render(h, 0);
    json_t *t = json_object_get(series(j, "users"), "t");
    cr_assert_eq(json_array_size(t), CM_HISTORY_KEEP);
    cr_assert_eq(json_integer_value(json_array_get(t, 0)), 2000 * 25, "the oldest kept");
    cr_assert_eq(json_integer_value(json_array_get(t, CM_HISTORY_KEEP - 1)), 2000 * (n - 1));
    json_decref(j);
    cm_history_free(h);
}

Test(history, a_full_table_gives_up_the_service_silent_longest)
{
    cm_history_t *h;
    cr_assert_eq(cm_history_new(&h), 0);
    char name[32];
    for (int i = 0; i < CM_HISTORY_SERIES; i++) {
        snprintf(name, sizeof name, "svc%d", i);
        cm_history_point_t p = point(i, 1, 1);
        cm_history_add(h, name, &p);
    }
    cm_history_point_t p = point(100, 1, 1);
    cm_history_add(h, "svc0", &p); /* svc0 is fresh again: svc1 is now the oldest */
    cr_assert_neq(cm_history_add(h, "newcomer", &p), 0);
    json_t *j = render(h, 0);
    json_t *all = json_object_get(j, "services");
    cr_assert_eq(json_array_size(all), CM_HISTORY_SERIES);
    size_t i;
    json_t *s;
    json_array_foreach(all, i, s)
    {
        cr_assert_str_neq(json_string_value(json_object_get(s, "name")), "svc1");
    }
    series(j, "svc0");
    series(j, "newcomer");
    json_decref(j);
    cm_history_free(h);
}

Test(history, null_is_a_no_op)
{
    cm_history_point_t p = point(1, 1, 1);
    cr_assert_eq(cm_history_add(NULL, "users", &p), 0);
    cr_assert_eq(cm_history_last(NULL), 0);
    cm_history_free(NULL);
    json_t *j = render(NULL, 0);
    cr_assert_eq(json_array_size(json_object_get(j, "services")), 0);
    json_decref(j);
}
