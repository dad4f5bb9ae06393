/* core/router.c: segment-by-segment matching of request paths against a small route
 * table (see router.h). Services have a handful of routes, so a linear scan beats
 * any tree here. */
#include "core/router.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

/* Matches path against pattern; captures go to params. An empty capture never matches. */
static int match_path(const char *pat, const char *path, size_t len, cm_str_t *params, int *np)
{
    const char *end = path + len;
    *np = 0;
    while (*pat && path < end) {
        if (*pat == '{') {
            const char *close = strchr(pat, '}');
            const char *seg_end = memchr(path, '/', (size_t)(end - path));
            if (!seg_end)
                seg_end = end;
            if (seg_end == path)
                return 0;
            params[(*np)++] = (cm_str_t){path, (size_t)(seg_end - path)};
            path = seg_end;
            pat = close + 1;
        } else if (*pat == *path) {
            pat++;
            path++;
        } else {
            return 0;
        }
    }
    return *pat == '\0' && path == end;
}

cm_handler_fn cm_router_match(const cm_router_t *r, cm_req_t *req, int *status, char *allow,
                              size_t allow_cap)
{
    cm_str_t params[CM_MAX_PARAMS];
    int np = 0, path_found = 0;
    size_t allow_len = 0;
    cm_method_t want = req->method == CM_HEAD ? CM_GET : req->method;
    if (allow_cap)
        allow[0] = '\0';
    for (int i = 0; i < r->n; i++) {
        const entry_t *e = &r->entries[i];
        if (!match_path(e->route.pattern, req->path.p, req->path.len, params, &np))
            continue;
        req->route = e->pattern_index;
        if (e->route.method == want) {
            memcpy(req->params, params, sizeof params);
            req->nparams = np;
            return e->route.handler;
        }
        path_found = 1;
        static const char *const names[] = {"GET",    "HEAD",  "POST",   "PUT",
                                            "DELETE", "PATCH", "OPTIONS"};
        if (e->route.method < CM_METHOD_OTHER) {
            const char *name = names[e->route.method];
            size_t need = strlen(name) + (allow_len ? 2 : 0);
            if (allow_len + need < allow_cap) {
                if (allow_len)
                    memcpy(allow + allow_len, ", ", 2), allow_len += 2;
                memcpy(allow + allow_len, name, strlen(name));
                allow_len += strlen(name);
                allow[allow_len] = '\0';
            }
        }
    }
    *status = path_found ? 405 : 404;
    if (!path_found)
        req->route = r->npatterns; /* "no route" bucket */
    return NULL;
}
