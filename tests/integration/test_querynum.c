/* tests/integration/test_querynum.c: numbers in query strings and paths against the real
 * users and orders services. A query number (limit, after, userId) is decimal digits after
 * percent-decoding and in range, else 422 naming the parameter (never a silent clamp, an
 * overflow to "no rows", or strtol() skipping a space or stopping at a NUL); an id in the
 * path that is not a canonical positive number names no item: 404. */
#include "api_util.h"

#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

/* Values every query number refuses. */
static const char *malformed[] = {
    "%205",
    "5%00x",
    "5%00",
    "%2B5",
    "+5",
    "-1",
    "05",
    "5%20",
    "0x10",
    "1e3",
    "5abc",
    "",
    "%35%20",
    "5.0",
    "99999999999999999999",
    "9223372036854775808",
};
#define NMALFORMED (sizeof malformed / sizeof malformed[0])

static void expect_422(const h_proc_t *p, const char *base, const char *name, const char *value)
{
    char path[256];
    snprintf(path, sizeof path, "%s%c%s=%s", base, strchr(base, '?') ? '&' : '?', name, value);
    h_resp_t r = h_req(p, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 422, "GET %s: %ld %s", path, r.status, r.body);
    api_assert_error(&r, 422, name);
    h_resp_free(&r);
}

static void expect_status(const h_proc_t *p, const char *path, long status)
{
    h_resp_t r = h_req(p, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, status, "GET %s: %ld %s", path, r.status, r.body);
    if (status >= 400)
        api_assert_error(&r, status, NULL);
    h_resp_free(&r);
}

Test(querynum, users_paging_numbers_are_strict)
{
    h_proc_t u;
    h_start(&u, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
    api_create_user(&u, "A", "a@x.org");
    for (size_t i = 0; i < NMALFORMED; i++) {
        expect_422(&u, "/users", "limit", malformed[i]);
        expect_422(&u, "/users", "after", malformed[i]);
    }
    expect_422(&u, "/users", "limit", "0");
    expect_422(&u, "/users", "limit", "1001");
    expect_status(&u, "/users?limit=5", 200);
    expect_status(&u, "/users?limit=1000&after=0", 200);
    expect_status(&u, "/users?after=9223372036854775807", 200);
    api_stop_clean(&u);
}

Test(querynum, orders_userid_and_paging_numbers_are_strict)
{
    h_proc_t u, o;
    h_start(&u, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
    h_start(&o, "orders", "--db", "{dir}/orders.db", "--users-url", u.url, "--access-log", "off",
            NULL);
    for (size_t i = 0; i < NMALFORMED; i++) {
        expect_422(&o, "/orders", "userId", malformed[i]);
        expect_422(&o, "/orders?userId=1", "limit", malformed[i]);
        expect_422(&o, "/orders?userId=1", "after", malformed[i]);
    }
    expect_422(&o, "/orders", "userId", "0");
    expect_status(&o, "/orders?userId=9223372036854775807", 200);
    expect_status(&o, "/orders?userId=1&limit=5&after=0", 200);
    api_stop_clean(&o);
    api_stop_clean(&u);
}

/* Ids in the path: what is not a canonical positive 63-bit number is 404, the same answer
 * as a number with no item (never a 422 or a 500, never another item). */
Test(querynum, path_ids_that_are_not_canonical_numbers_are_404)
{
    h_proc_t u, o;
    h_start(&u, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
    h_start(&o, "orders", "--db", "{dir}/orders.db", "--users-url", u.url, "--access-log", "off",
            NULL);
    json_int_t id = api_create_user(&u, "A", "a@x.org");
    cr_assert_eq(id, 1);
    expect_status(&u, "/users/1", 200);
    static const char *bad[] = {"01",
                                "+1",
                                "-1",
                                "0",
                                "1x",
                                "0x1",
                                "1e0",
                                "1.0",
                                "9223372036854775807",
                                "9223372036854775808",
                                "99999999999999999999",
                                "18446744073709551617"};
    char path[128];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(path, sizeof path, "/users/%s", bad[i]);
        expect_status(&u, path, 404);
        snprintf(path, sizeof path, "/orders/%s", bad[i]);
        expect_status(&o, path, 404);
    }
    api_stop_clean(&o);
    api_stop_clean(&u);
}
