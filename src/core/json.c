/* core/json.c: JSON helpers (see json.h). The escaper is the one used by responses
 * and logs alike: it keeps every line and body valid JSON whatever bytes come in. */
#include "core/json.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Length of the well-formed UTF-8 sequence at p (first byte >= 0x80), or 0 when it is
 * not one: overlong forms, surrogates and code points above U+10FFFF are refused. */
static size_t utf8_seq_len(const unsigned char *p, size_t left)
{
    unsigned char c = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (left < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return n;
}

/* Appends s as the body of a JSON string (no quotes). Control bytes and DEL become
 * \u00XX (or the short escapes), well-formed UTF-8 passes through, and a byte that is
 * not part of well-formed UTF-8 becomes \u00XX, its Latin-1 reading: the line stays
 * valid JSON (RFC 8259 section 8.1) and the byte's value stays visible. */
int cm_json_escape(cm_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    /* Worst case 6 output bytes per input byte; reserving once keeps the loop simple. */
    if (cm_buf_reserve(b, len * 6) < 0)
        return -ENOMEM;
    char *o = b->data + b->len;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            *o++ = (char)c;
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t n = utf8_seq_len(p + i, len - i);
            if (n) {
                memcpy(o, p + i, n);
                o += n;
                i += n;
                continue;
            }
        }
        *o++ = '\\';
        switch (c) {
        case '"':
            *o++ = '"';
            break;
        case '\\':
            *o++ = '\\';
            break;
        case '\n':
            *o++ = 'n';
            break;
        case '\r':
            *o++ = 'r';
            break;
        case '\t':
            *o++ = 't';
            break;
        case '\b':
            *o++ = 'b';
            break;
        case '\f':
            *o++ = 'f';
            break;
        default:
            memcpy(o, "u00", 3);
            o[3] = hex[c >> 4];
            o[4] = hex[c & 0xf];
            o += 5;
        }
        i++;
    }
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
    return 0;
}

int cm_json_str(cm_buf_t *b, const char *s, size_t len)
{
    if (cm_buf_append(b, "\"", 1) < 0 || cm_json_escape(b, s, len) < 0)
        return -ENOMEM;
    return cm_buf_append(b, "\"", 1);
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
