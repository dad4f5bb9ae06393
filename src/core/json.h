/* core/json.h: JSON in and out without a DOM on the hot path.
 * Out: append values straight into a cm_buf_t. In: jansson with strict flags,
 * wrapped so that every failure names what was wrong. */
#ifndef CMESH_CORE_JSON_H
#define CMESH_CORE_JSON_H

#include <stddef.h>

#include <jansson.h>

#include "core/buf.h"

/* Appends s as the inside of a JSON string (RFC 8259 7): quotes, backslash, control
 * bytes and DEL escaped; well-formed UTF-8 as it is; any other byte as \u00XX (its
 * Latin-1 reading), so the output is valid JSON for any input. Returns 0 or -ENOMEM. */
int cm_json_escape(cm_buf_t *b, const char *s, size_t len);
/* The same with the surrounding quotes. */
int cm_json_str(cm_buf_t *b, const char *s, size_t len);

/* Parses body as one JSON object (duplicate keys refused). On success returns the
 * object (caller owns the reference: json_decref). On failure returns NULL and
 * writes a message for a 400 ("malformed JSON at line 1 column 9: ...") into err. */
json_t *cm_json_parse_object(const char *body, size_t len, char *err, size_t err_cap);

#endif
