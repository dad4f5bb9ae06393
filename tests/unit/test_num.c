/* tests/unit/test_num.c: the strict integer parser for numbers in request targets
 * (core/num.c): what strtol() would accept and this refuses (sign, space, a NUL and junk
 * after the digits, leading zeros, hex, exponents), range limits and overflow. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include "core/num.h"

static int parse(const char *s, int64_t min, int64_t max, int64_t *out)
{
    return cm_num_parse(s, strlen(s), min, max, out);
}

Test(num, canonical_decimal_numbers_parse)
{
    int64_t v = -1;
    cr_assert_eq(parse("0", 0, 10, &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(parse("5", 1, 1000, &v), 0);
    cr_assert_eq(v, 5);
    cr_assert_eq(parse("1000", 1, 1000, &v), 0);
    cr_assert_eq(v, 1000);
    cr_assert_eq(parse("9223372036854775807", 1, INT64_MAX, &v), 0);
    cr_assert_eq(v, INT64_MAX);
}

Test(num, anything_but_digits_is_malformed)
{
    static const char *bad[] = {"",    " 5", "5 ",  "+5",  "-1",  "05",    "00", "0x10",
                                "1e3", "5x", "5.0", "\t5", "5\n", "1,000", "٣"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 42;
        cr_assert_eq(parse(bad[i], 0, INT64_MAX, &v), -EINVAL, "'%s' accepted", bad[i]);
        cr_assert_eq(v, 42, "'%s' wrote the output", bad[i]);
    }
}

Test(num, a_nul_inside_the_length_is_junk)
{
    int64_t v = 42;
    cr_assert_eq(cm_num_parse("5\0x", 3, 1, 1000, &v), -EINVAL);
    cr_assert_eq(cm_num_parse("5\0", 2, 1, 1000, &v), -EINVAL);
    cr_assert_eq(v, 42);
}

Test(num, out_of_range_and_overflow_are_erange_not_wrapped_or_clamped)
{
    int64_t v = 42;
    cr_assert_eq(parse("0", 1, 1000, &v), -ERANGE);
    cr_assert_eq(parse("1001", 1, 1000, &v), -ERANGE);
    cr_assert_eq(parse("7", 0, 5, &v), -ERANGE); /* a digit above max on its own */
    cr_assert_eq(parse("9223372036854775808", 0, INT64_MAX, &v), -ERANGE);
    cr_assert_eq(parse("18446744073709551616", 0, INT64_MAX, &v), -ERANGE); /* wraps u64 */
    cr_assert_eq(parse("99999999999999999999", 1, INT64_MAX, &v), -ERANGE);
    cr_assert_eq(parse("99999999999999999999x", 1, INT64_MAX, &v), -EINVAL);
    cr_assert_eq(v, 42);
}
