/* core/router.c: segment-by-segment matching of request paths against a small route
 * table (see router.h). Services have a handful of routes, so a linear scan beats
 * any tree here. */
#include "core/router.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/uri.h"

typedef struct entry {
    cm_route_t route;
    int pattern_index;
} entry_t;

struct cm_router {
    entry_t *entries;
    int n;
    const char **patterns; /* distinct */
    int npatterns;
};

static int count_captures(const char *pattern)
{
    int n = 0;
    for (const char *c = pattern; *c; c++)
        n += *c == '{';
    return n;
}

int cm_router_new(const cm_route_t *routes, int n, cm_router_t **out)
{
    cm_router_t *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->entries = calloc((size_t)n + 1, sizeof *r->entries);
    r->patterns = calloc((size_t)n + 1, sizeof *r->patterns);
    if (!r->entries || !r->patterns) {
        cm_router_free(r);
        return -ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        const char *pat = routes[i].pattern;
        if (pat[0] != '/' || count_captures(pat) > CM_MAX_PARAMS) {
            cm_router_free(r);
            return -EINVAL;
        }
        int pi = 0;
        while (pi < r->npatterns && strcmp(r->patterns[pi], pat) != 0)
            pi++;
        if (pi == r->npatterns)
            r->patterns[r->npatterns++] = pat;
        r->entries[r->n++] = (entry_t){routes[i], pi};
    }
    *out = r;
    return 0;
}

void cm_router_free(cm_router_t *r)
{
    if (!r)
        return;
    free(r->entries);
    free(r->patterns);
    free(r);
}

int cm_router_npatterns(const cm_router_t *r)
{
    return r->npatterns;
}

const char *cm_router_pattern(const cm_router_t *r, int i)
{
    return r->patterns[i];
}

/* Matches path against pattern; captures go to params. An empty capture never matches.
 * sep is the path's segment separator: '/' for a raw path, '\0' for a decoded one (see
 * decode_path), so a pattern '/' only ever meets a real segment boundary. */
static int match_path(const char *pat, const char *path, size_t len, char sep, cm_str_t *params,
                      int *np)
{
    const char *end = path + len;
    *np = 0;
    while (*pat && path < end) {
        if (*pat == '{') {
            const char *close = strchr(pat, '}');
            const char *seg_end = memchr(path, sep, (size_t)(end - path));
            if (!seg_end)
                seg_end = end;
            if (seg_end == path)
                return 0;
            params[(*np)++] = (cm_str_t){path, (size_t)(seg_end - path)};
            path = seg_end;
            pat = close + 1;
        } else if (*pat == '/' ? *path == sep : *pat == *path) {
            pat++;
            path++;
        } else {
            return 0;
        }
    }
    return *pat == '\0' && path == end;
}

/* Percent-decodes the path into req->path_dec with every raw '/' written as '\0':
 * decoding after the split, so "%2F" stays inside its segment. The buffer lives with
 * the (pooled) request, so only paths with a '%' pay, and rarely for memory. Returns 0,
 * -EINVAL for a malformed escape or an encoded NUL, -ENOMEM. */
static int decode_path(cm_req_t *req)
{
    const char *p = req->path.p;
    size_t len = req->path.len;
    cm_buf_t *b = &req->path_dec;
    cm_buf_reset(b);
    if (cm_buf_reserve(b, len + 1) < 0)
        return -ENOMEM;
    char *out = b->data;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (c == '%') {
            int v = cm_uri_pct_value(p + i, len - i);
            if (v <= 0) /* malformed, or an encoded NUL */
                return -EINVAL;
            c = (char)v;
            i += 2;
        } else if (c == '/') {
            c = '\0';
        }
        out[n++] = c;
    }
    b->len = n;
    return 0;
}

static const char *const method_names[] = {"GET",    "HEAD",  "POST",   "PUT",
                                           "DELETE", "PATCH", "OPTIONS"};

/* Writes the methods of mask as an Allow value ("GET, HEAD, PUT, OPTIONS"): HEAD with
 * GET (served by it) and OPTIONS (answered by the server) are always included. */
static void render_allow(unsigned mask, char *allow, size_t cap)
{
    size_t len = 0;
    if (mask & (1u << CM_GET))
        mask |= 1u << CM_HEAD;
    mask |= 1u << CM_OPTIONS;
    if (!cap)
        return;
    allow[0] = '\0';
    for (int m = 0; m < CM_METHOD_OTHER; m++) {
        if (!(mask & (1u << m)))
            continue;
        size_t nl = strlen(method_names[m]), need = nl + (len ? 2 : 0);
        if (len + need >= cap)
            break;
        if (len)
            memcpy(allow + len, ", ", 2), len += 2;
        memcpy(allow + len, method_names[m], nl);
        len += nl;
        allow[len] = '\0';
    }
}

cm_handler_fn cm_router_match(const cm_router_t *r, cm_req_t *req, int *status, char *allow,
                              size_t allow_cap)
{
    cm_str_t params[CM_MAX_PARAMS];
    int np = 0;
    unsigned mask = 0; /* methods of the path */
    cm_method_t want = req->method == CM_HEAD ? CM_GET : req->method;
    if (allow_cap)
        allow[0] = '\0';
    req->route = r->npatterns; /* "no route" bucket unless a pattern matches */
    const char *path = req->path.p;
    size_t len = req->path.len;
    char sep = '/';
    if (req->method == CM_OPTIONS && len == 1 && path[0] == '*') {
        for (int i = 0; i < r->n; i++) /* RFC 9110 9.3.7: the server as a whole */
            if (r->entries[i].route.method < CM_METHOD_OTHER)
                mask |= 1u << r->entries[i].route.method;
        render_allow(mask, allow, allow_cap);
        *status = 204;
        return NULL;
    }
    if (memchr(path, '%', len)) {
        int rc = decode_path(req);
        if (rc < 0) {
            *status = rc == -ENOMEM ? 500 : 400;
            return NULL;
        }
        path = req->path_dec.data;
        len = req->path_dec.len;
        sep = '\0';
    }
    if (len > 1 && path[len - 1] == sep)
        len--; /* "/users/" is "/users", as Express's non-strict routing and our gateway */
    for (int i = 0; i < r->n; i++) {
        const entry_t *e = &r->entries[i];
        if (!match_path(e->route.pattern, path, len, sep, params, &np))
            continue;
        req->route = e->pattern_index;
        if (e->route.method == want) {
            memcpy(req->params, params, sizeof params);
            req->nparams = np;
            return e->route.handler;
        }
        if (e->route.method < CM_METHOD_OTHER)
            mask |= 1u << e->route.method;
    }
    if (!mask) {
        *status = 404;
        return NULL;
    }
    render_allow(mask, allow, allow_cap);
    *status = req->method == CM_OPTIONS ? 204 : 405;
    return NULL;
}
