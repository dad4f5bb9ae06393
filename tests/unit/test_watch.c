/* tests/unit/test_watch.c: core/watch's pure parts: the answer's parsing, the index
 * rule (never backwards) and the retry backoff. */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "core/watch.h"

static void free_urls(char **u, int n)
{
    for (int i = 0; i < n; i++)
        free(u[i]);
    free(u);
}

Test(watch, parse_keeps_ready_instances_only)
{
    const char *b = "[{\"id\":\"users/0\",\"url\":\"http://127.0.0.1:7001\",\"ready\":true},"
                    "{\"id\":\"users/1\",\"url\":\"http://127.0.0.1:7002\",\"ready\":false},"
                    "{\"id\":\"users/2\",\"url\":\"http://127.0.0.1:7003\",\"ready\":true}]";
    char **u;
    int n;
    cr_assert_eq(cm_watch_parse(b, strlen(b), &u, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(u[0], "http://127.0.0.1:7001");
    cr_assert_str_eq(u[1], "http://127.0.0.1:7003");
    free_urls(u, n);
}

Test(watch, parse_empty_set_is_a_set)
{
    char **u = (char **)1;
    int n = -1;
    cr_assert_eq(cm_watch_parse("[]", 2, &u, &n), 0);
    cr_assert_eq(n, 0);
    cr_assert_null(u);
}

Test(watch, parse_refuses_other_shapes)
{
    const char *bad[] = {"",
                         "{}",
                         "[1]",
                         "[{\"url\":\"http://a:1\"}]",
                         "[{\"url\":5,\"ready\":true}]",
                         "[{\"url\":\"http://a:1\",\"ready\":1}]",
                         "[{\"url\":\"x\",\"ready\":true}",
                         "null"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char **u = NULL;
        int n = 0;
        cr_assert_eq(cm_watch_parse(bad[i], strlen(bad[i]), &u, &n), -EINVAL, "%s", bad[i]);
    }
}

Test(watch, index_first_answer_is_always_a_set)
{
    uint64_t next;
    cr_assert_eq(cm_watch_index_rule(0, 7, &next), 1);
    cr_assert_eq(next, 7);
    cr_assert_eq(cm_watch_index_rule(0, 0, &next), 1);
    cr_assert_eq(next, 1, "index 0 would never block");
}

Test(watch, index_same_is_no_change_larger_is_a_set)
{
    uint64_t next;
    cr_assert_eq(cm_watch_index_rule(7, 7, &next), 0);
    cr_assert_eq(next, 7);
    cr_assert_eq(cm_watch_index_rule(7, 9, &next), 1);
    cr_assert_eq(next, 9);
}

Test(watch, index_going_backwards_resets_to_zero)
{
    uint64_t next = 99;
    cr_assert_eq(cm_watch_index_rule(9, 3, &next), 0);
    cr_assert_eq(next, 0);
    /* the query after the reset answers at once and that answer is handed on */
    cr_assert_eq(cm_watch_index_rule(next, 3, &next), 1);
    cr_assert_eq(next, 3);
}

Test(watch, backoff_doubles_with_jitter_and_caps)
{
    for (uint64_t r = 0; r < 1000; r += 37) {
        unsigned a = cm_watch_backoff_ms(0, r);
        cr_assert(a >= 125 && a <= 250, "%u", a);
        unsigned b = cm_watch_backoff_ms(3, r);
        cr_assert(b >= 1000 && b <= 2000, "%u", b);
        unsigned c = cm_watch_backoff_ms(30, r);
        cr_assert(c >= 5000 && c <= 10000, "%u", c);
    }
    cr_assert_neq(cm_watch_backoff_ms(5, 1), cm_watch_backoff_ms(5, 2), "jittered");
}
