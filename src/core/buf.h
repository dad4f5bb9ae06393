/* core/buf.h: a growable byte buffer, the one output type of the core.
 * Used for response heads and bodies, log batches and JSON writing.
 * Owns its memory; reuse it with cm_buf_reset() to avoid a malloc per request. */
#ifndef CMESH_CORE_BUF_H
#define CMESH_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

typedef struct cm_buf {
    char *data; /* NUL-terminated whenever len < cap; may be NULL when cap == 0 */
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated */
} cm_buf_t;

#define CM_BUF_INIT                                                                                \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

/* Makes room for extra more bytes (plus a NUL). Returns 0 or -ENOMEM. */
int cm_buf_reserve(cm_buf_t *b, size_t extra);
int cm_buf_append_grow(cm_buf_t *b, const void *data, size_t len); /* the slow path */
/* Appends len bytes (data may be NULL when len is 0). Returns 0 or -ENOMEM. Inline:
 * response heads are built from dozens of small appends per request. */
static inline int cm_buf_append(cm_buf_t *b, const void *data, size_t len)
{
    if (b->len + len >= b->cap || !len)
        return cm_buf_append_grow(b, data, len);
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}
static inline int cm_buf_append_str(cm_buf_t *b, const char *s)
{
    return cm_buf_append(b, s, strlen(s));
}
int cm_buf_appendf(cm_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cm_buf_vappendf(cm_buf_t *b, const char *fmt, va_list ap);
int cm_buf_append_u64(cm_buf_t *b, unsigned long long v);
/* Keeps the memory, forgets the content. */
void cm_buf_reset(cm_buf_t *b);
/* Gives back memory above keep bytes, so one huge body does not pin it forever. */
void cm_buf_shrink(cm_buf_t *b, size_t keep);
void cm_buf_free(cm_buf_t *b); /* frees data, leaves an empty buffer; NULL data is fine */

#endif
