/* core/timefmt.c: RFC 3339 UTC timestamps with milliseconds (see timefmt.h).
 * gmtime_r and a fixed-width format; no locale, no allocation. */
#include "core/timefmt.h"

#include <stdio.h>
#include <time.h>

void cm_time_rfc3339_at(const struct timespec *ts, char out[32])
{
    struct tm tm;
    time_t sec = ts->tv_sec;
    if (!gmtime_r(&sec, &tm)) {
        /* Only for absurd times; a fixed value keeps callers' buffers valid. */
        snprintf(out, 32, "1970-01-01T00:00:00.000Z");
        return;
    }
    int year = tm.tm_year + 1900;
    if (year > 9999)
        year = 9999;
    else if (year < 0)
        year = 0;
    /* The casts bound every field so the compiler can see 24 chars fit in 32. */
    snprintf(out, 32, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ", (unsigned)year % 10000u,
             (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u,
             (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u,
             (unsigned)(ts->tv_nsec / 1000000) % 1000u);
}

void cm_time_rfc3339(char out[32])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    cm_time_rfc3339_at(&ts, out);
}
