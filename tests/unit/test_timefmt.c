/* tests/unit/test_timefmt.c: core/timefmt output shape and rounding. */
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "core/timefmt.h"

Test(timefmt, formats_utc_with_milliseconds)
{
    /* 2026-11-25T04:24:34Z is 1795580674 s after the epoch. */
    struct timespec ts = {.tv_sec = 1795580674, .tv_nsec = 123999999};
    char out[32];
    cm_time_rfc3339_at(&ts, out);
    cr_assert_str_eq(out, "2026-11-25T04:24:34.123Z");
}

Test(timefmt, epoch_pads_every_field)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 5000000};
    char out[32];
    cm_time_rfc3339_at(&ts, out);
    cr_assert_str_eq(out, "1970-01-01T00:00:00.005Z");
}

Test(timefmt, current_time_has_fixed_width)
{
    char out[32];
    cm_time_rfc3339(out);
    cr_assert_eq(strlen(out), CM_TIME_RFC3339_LEN, "got %s", out);
    cr_assert_eq(out[10], 'T');
    cr_assert_eq(out[CM_TIME_RFC3339_LEN - 1], 'Z');
}
