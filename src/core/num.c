/* core/num.c: see num.h. */
#include "core/num.h"

#include <errno.h>

int cm_num_parse(const char *s, size_t n, int64_t min, int64_t max, int64_t *out)
{
    if (n == 0 || (s[0] == '0' && n > 1))
        return -EINVAL;
    uint64_t v = 0;
    int big = 0; /* past max already: keep checking the syntax, answer -ERANGE */
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        unsigned d = (unsigned)(s[i] - '0');
        if (!big && (d > (uint64_t)max || v > ((uint64_t)max - d) / 10))
            big = 1;
        if (!big)
            v = v * 10 + d;
    }
    if (big || (int64_t)v < min)
        return -ERANGE;
    *out = (int64_t)v;
    return 0;
}
