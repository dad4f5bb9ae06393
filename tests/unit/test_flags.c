/* tests/unit/test_flags.c: value parsers behind every command-line flag. */
#include <errno.h>

#include <criterion/criterion.h>

#include "core/flags.h"

Test(flags, durations_take_units_and_bare_seconds)
{
    uint64_t ms;
    cr_assert_eq(cm_parse_duration_ms("10s", &ms), 0);
    cr_assert_eq(ms, 10000);
    cr_assert_eq(cm_parse_duration_ms("250ms", &ms), 0);
    cr_assert_eq(ms, 250);
    cr_assert_eq(cm_parse_duration_ms("2m", &ms), 0);
    cr_assert_eq(ms, 120000);
    cr_assert_eq(cm_parse_duration_ms("3", &ms), 0);
    cr_assert_eq(ms, 3000);
    cr_assert_eq(cm_parse_duration_ms("x", &ms), -EINVAL);
    cr_assert_eq(cm_parse_duration_ms("-1s", &ms), -EINVAL);
    cr_assert_eq(cm_parse_duration_ms("5d", &ms), -EINVAL);
}

Test(flags, sizes_take_k_m_and_g)
{
    size_t b;
    cr_assert_eq(cm_parse_size("16k", &b), 0);
    cr_assert_eq(b, 16384);
    cr_assert_eq(cm_parse_size("1m", &b), 0);
    cr_assert_eq(b, 1048576);
    cr_assert_eq(cm_parse_size("100", &b), 0);
    cr_assert_eq(b, 100);
    cr_assert_eq(cm_parse_size("1g", &b), 0);
    cr_assert_eq(b, (size_t)1 << 30);
    cr_assert_eq(cm_parse_size("1t", &b), -EINVAL);
}

Test(flags, hostport_forms)
{
    char host[64];
    int port;
    cr_assert_eq(cm_parse_hostport("127.0.0.1:8080", host, sizeof host, &port), 0);
    cr_assert_str_eq(host, "127.0.0.1");
    cr_assert_eq(port, 8080);
    cr_assert_eq(cm_parse_hostport(":9", host, sizeof host, &port), 0);
    cr_assert_str_eq(host, "0.0.0.0");
    cr_assert_eq(cm_parse_hostport("[::1]:80", host, sizeof host, &port), 0);
    cr_assert_str_eq(host, "::1");
    cr_assert_eq(cm_parse_hostport("host:8o80", host, sizeof host, &port), -EINVAL);
    cr_assert_eq(cm_parse_hostport("host:70000", host, sizeof host, &port), -EINVAL);
    cr_assert_eq(cm_parse_hostport("host", host, sizeof host, &port), -EINVAL);
}
