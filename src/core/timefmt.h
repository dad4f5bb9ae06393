/* core/timefmt.h: timestamps as the API and the logs show them.
 * RFC 3339 in UTC with milliseconds, e.g. "2026-11-25T04:24:34.123Z": sortable as
 * text, which the stores rely on for created_at/updated_at columns. */
#ifndef CMESH_CORE_TIMEFMT_H
#define CMESH_CORE_TIMEFMT_H

#include <time.h>

#define CM_TIME_RFC3339_LEN 24 /* chars in "YYYY-MM-DDTHH:MM:SS.mmmZ", without the NUL */

/* Writes the current wall-clock time (CLOCK_REALTIME), NUL-terminated. */
void cm_time_rfc3339(char out[32]);
/* Writes ts (truncated to the millisecond), NUL-terminated. Years beyond 9999
 * are clamped so the text keeps its fixed width. */
void cm_time_rfc3339_at(const struct timespec *ts, char out[32]);

#endif
