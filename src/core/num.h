/* core/num.h: the one strict integer parser for numbers in request targets (query values
 * after percent-decoding, route captures): decimal digits only, no sign, no leading or
 * trailing space or junk, no leading zero (one spelling per number: "0" but not "00" or
 * "07"), range-checked without overflow. strtol() accepts " 5", "+5", "5\0x" and wraps or
 * clamps big numbers; this does none of that. */
#ifndef CMESH_CORE_NUM_H
#define CMESH_CORE_NUM_H

#include <stddef.h>
#include <stdint.h>

/* Parses s[0..n) (need not be NUL-terminated; a NUL byte inside is junk) as an integer
 * from min to max (0 <= min <= max). Returns 0 with *out set, -EINVAL when it is not a
 * canonical decimal number, -ERANGE when it is one outside [min, max]. */
int cm_num_parse(const char *s, size_t n, int64_t min, int64_t max, int64_t *out);

#endif
