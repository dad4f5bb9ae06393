/* core/json.c: JSON helpers (see json.h). The escaper is the one used by responses
 * and logs alike. */
#include "core/json.h"

#include <errno.h>
#include <stdio.h>

int cm_json_str(cm_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (cm_buf_reserve(b, len + 2) < 0)
        return -ENOMEM;
    b->data[b->len++] = '"';
    size_t run = 0; /* start of the bytes that need no escape */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f)
            continue;
        if (cm_buf_append(b, s + run, i - run) < 0)
            return -ENOMEM;
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        int rc;
        if (c == '"' || c == '\\') {
            char two[2] = {'\\', (char)c};
            rc = cm_buf_append(b, two, 2);
        } else if (c == '\n') {
            rc = cm_buf_append(b, "\\n", 2);
        } else if (c == '\t') {
            rc = cm_buf_append(b, "\\t", 2);
        } else if (c == '\r') {
            rc = cm_buf_append(b, "\\r", 2);
        } else {
            rc = cm_buf_append(b, esc, 6);
        }
        if (rc < 0)
            return -ENOMEM;
        run = i + 1;
    }
    if (cm_buf_append(b, s + run, len - run) < 0 || cm_buf_append(b, "\"", 1) < 0)
        return -ENOMEM;
    return 0;
}

json_t *cm_json_parse_object(const char *body, size_t len, char *err, size_t err_cap)
{
    json_error_t je;
    if (len == 0) {
        snprintf(err, err_cap, "request body is empty; send a JSON object");
        return NULL;
    }
    json_t *v = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!v) {
        snprintf(err, err_cap, "malformed JSON at line %d column %d: %s", je.line, je.column,
                 je.text);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        snprintf(err, err_cap, "request body must be a JSON object");
        return NULL;
    }
    return v;
}
