/* core/buf.c: growable byte buffer (see buf.h). Doubles its capacity so that
 * appends are amortised O(1); every append keeps the content NUL-terminated. */
#include "core/buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cm_buf_reserve(cm_buf_t *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int cm_buf_append_grow(cm_buf_t *b, const void *data, size_t len)
{
    if (cm_buf_reserve(b, len) < 0)
        return -ENOMEM;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int cm_buf_vappendf(cm_buf_t *b, const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    size_t room = b->cap > b->len ? b->cap - b->len : 0;
    int n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap);
    if (n < 0) {
        va_end(again);
        return -EINVAL;
    }
    if ((size_t)n >= room) {
        if (cm_buf_reserve(b, (size_t)n) < 0) {
            va_end(again);
            return -ENOMEM;
        }
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, again);
    }
    va_end(again);
    b->len += (size_t)n;
    return 0;
}

int cm_buf_appendf(cm_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = cm_buf_vappendf(b, fmt, ap);
    va_end(ap);
    return rc;
}

int cm_buf_append_u64(cm_buf_t *b, unsigned long long v)
{
    char tmp[24];
    char *p = tmp + sizeof tmp;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return cm_buf_append(b, p, (size_t)(tmp + sizeof tmp - p));
}

void cm_buf_reset(cm_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void cm_buf_shrink(cm_buf_t *b, size_t keep)
{
    if (b->cap <= keep || b->len >= keep)
        return;
    char *p = realloc(b->data, keep);
    if (p) {
        b->data = p;
        b->cap = keep;
    }
}

void cm_buf_free(cm_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
