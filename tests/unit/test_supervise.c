/* Unit tests for control/supervise's pure part: the restart backoff (at once the first
 * time, then doubling from 1 s to the 30 s cap, with equal jitter). Processes are
 * tested for real in tests/integration/test_control.c. */
#include <criterion/criterion.h>

#include "control/supervise.h"

Test(supervise, first_restart_is_immediate)
{
    cr_assert_eq(cm_sup_backoff_ms(0, 12345), 0);
}

Test(supervise, backoff_doubles_within_its_jitter_band)
{
    uint64_t base = CM_SUP_BACKOFF_BASE_MS;
    for (int n = 1; n <= 5; n++) {
        uint64_t d = base << (n - 1);
        cr_assert_eq(cm_sup_backoff_ms(n, 0), d / 2, "failures %d, no jitter", n);
        cr_assert_eq(cm_sup_backoff_ms(n, (uint32_t)(d / 2)), d, "failures %d, all jitter", n);
        for (uint32_t r = 0; r < 100000; r += 7919) {
            uint64_t v = cm_sup_backoff_ms(n, r);
            cr_assert(v >= d / 2 && v <= d, "failures %d: %llu out of [%llu, %llu]", n,
                      (unsigned long long)v, (unsigned long long)d / 2, (unsigned long long)d);
        }
    }
}

Test(supervise, backoff_never_passes_its_cap)
{
    for (int n = 1; n < 1000; n++)
        for (uint32_t r = 0; r < 4000000000u; r += 499999999u)
            cr_assert_leq(cm_sup_backoff_ms(n, r), CM_SUP_BACKOFF_CAP_MS);
    cr_assert_geq(cm_sup_backoff_ms(100, 0), CM_SUP_BACKOFF_CAP_MS / 2);
}
