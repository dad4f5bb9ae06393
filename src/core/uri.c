/* core/uri.c: request-target checks and path normalization (see uri.h). The byte sets of
 * RFC 3986 are 128-bit maps, so the scan of a path that needs no work is one table look-up
 * per byte and no copy; normalization is two passes over the caller's buffer (escapes,
 * then segments), never longer than its input. */
#include "core/uri.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* Bit c of a map is set when byte c (< 128) belongs to the set. Generated from RFC 3986:
 * unreserved = ALPHA DIGIT - . _ ~; sub-delims = ! $ & ' ( ) * + , ; = */
static const uint32_t unreserved_set[4] = {0x00000000, 0x03ff6000, 0x87fffffe, 0x47fffffe};
/* pchar / "/" (3.3), '%' as the start of an escape checked by cm_uri_normalize */
static const uint32_t path_set[4] = {0x00000000, 0x2ffffff2, 0x87ffffff, 0x47fffffe};
/* the query: every visible ASCII byte but '#'. Wider than RFC 3986 3.4 (pchar / "/" / "?")
 * as nginx is: browsers send [] {} | ^ ` unescaped (filter[x]=1), and the query is neither
 * routed on nor changed, only forwarded */
static const uint32_t query_set[4] = {0x00000000, 0xfffffff6, 0xffffffff, 0x7fffffff};
/* reg-name bytes (3.2.2) but '%', checked apart: unreserved / sub-delims */
static const uint32_t regname_set[4] = {0x00000000, 0x2bff7fd2, 0x87fffffe, 0x47fffffe};

static int in_set(const uint32_t *set, unsigned char c)
{
    return c < 128 && (set[c >> 5] >> (c & 31) & 1u);
}

int cm_uri_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20); /* 'A'-'F' -> 'a'-'f'; no other byte lands there */
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int cm_uri_pct_value(const char *p, size_t n)
{
    if (n < 3)
        return -1;
    int hi = cm_uri_hexval(p[1]), lo = cm_uri_hexval(p[2]);
    return hi < 0 || lo < 0 ? -1 : hi << 4 | lo;
}

static int bad_byte(unsigned char c, const char **why)
{
    if (c == '#')
        *why = "a fragment ('#') in the request target; clients never send one";
    else if (c == ' ' || c == '\t')
        *why = "whitespace in the request target; percent-encode it";
    else if (c == '\\')
        *why = "a backslash in the request target";
    else if (c < 0x20 || c >= 0x7f)
        *why = "a control or non-ASCII byte in the request target; percent-encode it";
    else
        *why = "a character RFC 3986 does not allow in a request target; percent-encode it";
    return -EINVAL;
}

int cm_uri_path_scan(const char *p, size_t n, const char **why)
{
    if (n == 0 || p[0] != '/') {
        *why = "the request target must be a path starting with '/' or an absolute http URI";
        return -EINVAL;
    }
    int need = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!in_set(path_set, c))
            return bad_byte(c, why);
        if (c == '%') {
            need = 1;
        } else if (c == '/' && i + 1 < n) {
            if (p[i + 1] == '/') {
                need = 1;
            } else if (p[i + 1] == '.') { /* "/." or "/.." ending a segment */
                size_t j = i + 2;
                if (j < n && p[j] == '.')
                    j++;
                if (j == n || p[j] == '/')
                    need = 1;
            }
        }
    }
    return need;
}

int cm_uri_query_check(const char *p, size_t n, const char **why)
{
    for (size_t i = 0; i < n; i++)
        if (!in_set(query_set, (unsigned char)p[i]))
            return bad_byte((unsigned char)p[i], why);
    return 0;
}

/* Pass 1: escapes. w <= r throughout, and both hex digits are read before anything is
 * written over them, so in may be out. */
static int decode_escapes(const char *in, size_t n, char *out, size_t *out_len, const char **why)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t w = 0;
    for (size_t r = 0; r < n; r++) {
        if (in[r] != '%') {
            out[w++] = in[r];
            continue;
        }
        int e = cm_uri_pct_value(in + r, n - r);
        if (e < 0) {
            *why = "a malformed percent-escape in the path; '%' must be followed by two hex "
                   "digits";
            return -EINVAL;
        }
        unsigned char v = (unsigned char)e;
        if (v == 0) {
            *why = "an encoded NUL (%00) in the path";
            return -EINVAL;
        }
        if (v == '/' || v == '\\') {
            /* a slash inside a segment would be matched as one segment here and split in two
             * by an upstream that decodes first: refused, as nginx's merge rules imply */
            *why = "an encoded slash or backslash (%2F, %5C) in the path";
            return -EINVAL;
        }
        if (in_set(unreserved_set, v)) {
            out[w++] = (char)v;
        } else {
            out[w++] = '%';
            out[w++] = hex[v >> 4];
            out[w++] = hex[v & 15];
        }
        r += 2;
    }
    *out_len = w;
    return 0;
}

int cm_uri_normalize(const char *in, size_t n, char *out, size_t *out_len, const char **why)
{
    size_t len;
    int rc = decode_escapes(in, n, out, &len, why);
    if (rc < 0)
        return rc;
    /* Pass 2: segments, in place. Each kept segment is written as "/seg", having consumed
     * at least one '/' and the segment, so w <= r. */
    size_t r = 0, w = 0;
    while (r < len) {
        while (r < len && out[r] == '/')
            r++; /* repeated slashes merged */
        size_t e = r;
        while (e < len && out[e] != '/')
            e++;
        size_t sl = e - r;
        if (sl == 0) { /* the path ends with '/' */
            out[w++] = '/';
            break;
        }
        if (sl == 1 && out[r] == '.') {
            if (e == len)
                out[w++] = '/';
            r = e;
            continue;
        }
        if (sl == 2 && out[r] == '.' && out[r + 1] == '.') {
            if (w == 0) {
                *why = "the path climbs above the root with '..'";
                return -EINVAL;
            }
            while (out[w - 1] != '/')
                w--;
            w--; /* the kept segment's '/' */
            if (e == len)
                out[w++] = '/';
            r = e;
            continue;
        }
        out[w++] = '/';
        memmove(out + w, out + r, sl);
        w += sl;
        r = e;
    }
    if (w == 0)
        out[w++] = '/';
    *out_len = w;
    return 0;
}

int cm_uri_split_absolute(const cm_str_t *target, cm_str_t *authority, cm_str_t *origin,
                          const char **why)
{
    const char *p = target->p;
    size_t n = target->len, i = 0;
    if (n == 0 || p[0] == '/')
        return 0;
    /* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (3.1) */
    while (i < n && (in_set(unreserved_set, (unsigned char)p[i]) || p[i] == '+') && p[i] != '_' &&
           p[i] != '~')
        i++;
    if (i == 0 || i + 3 > n || memcmp(p + i, "://", 3) != 0)
        return 0;
    if (!((i == 4 && strncasecmp(p, "http", 4) == 0) ||
          (i == 5 && strncasecmp(p, "https", 5) == 0))) {
        *why = "an absolute request target must be an http or https URI";
        return -EINVAL;
    }
    size_t a = i + 3, e = a;
    while (e < n && p[e] != '/' && p[e] != '?' && p[e] != '#')
        e++;
    if (e == a) {
        *why = "an absolute request target without a host";
        return -EINVAL;
    }
    *authority = (cm_str_t){p + a, e - a};
    *origin = (cm_str_t){p + e, n - e};
    return 1;
}

int cm_uri_host_parse(const cm_str_t *v, cm_uri_host_t *out, const char **why)
{
    const char *p = v->p, *end = v->p + v->len;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    out->name = (cm_str_t){p, 0};
    out->port = (cm_str_t){end, 0};
    if (p == end)
        return 0;
    const char *q = p;
    if (*p == '[') { /* IP-literal: IPv6 (hex, ':', '.'); IPvFuture is not routed on */
        q++;
        while (q < end && (cm_uri_hexval(*q) >= 0 || *q == ':' || *q == '.'))
            q++;
        if (q == end || *q != ']' || q == p + 1) {
            *why = "a malformed IPv6 literal in the host";
            return -EINVAL;
        }
        q++;
        if (q < end && *q != ':') {
            *why = "a malformed IPv6 literal in the host";
            return -EINVAL;
        }
    } else {
        for (; q < end && *q != ':'; q++) {
            if (*q == '%' && cm_uri_pct_value(q, (size_t)(end - q)) >= 0) {
                q += 2;
            } else if (!in_set(regname_set, (unsigned char)*q)) {
                *why = *q == '@' ? "userinfo ('@') in the host is not allowed"
                                 : "a character a host name cannot hold";
                return -EINVAL;
            }
        }
    }
    out->name = (cm_str_t){p, (size_t)(q - p)};
    if (q < end) { /* ':' port */
        const char *d = q + 1;
        for (const char *c = d; c < end; c++)
            if (*c < '0' || *c > '9' || c - d >= 5) {
                *why = "the port in the host is not a number";
                return -EINVAL;
            }
        out->port = (cm_str_t){d, (size_t)(end - d)};
    }
    if (p[0] != '[' && out->name.len > 1 && p[out->name.len - 1] == '.')
        out->name.len--; /* "example.com." is example.com (nginx drops the dot too) */
    if (out->name.len == 0 || (out->name.len == 1 && p[0] == '.')) {
        *why = "an empty host name";
        return -EINVAL;
    }
    return 0;
}
