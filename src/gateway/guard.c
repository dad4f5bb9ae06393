/* gateway/guard.c: what a request must pass before it is proxied: route match (path
 * prefix on segment boundaries, optional Host), JWT bearer auth with scopes, and the
 * per-client / per-subject token buckets. Answers 404/401/403/429 itself. */
#include "gateway/guard.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* host is the name cm_uri_host_parse() gave: no port, no surrounding spaces, no trailing
 * dot, so "Host: api.example. " is the route for api.example and not a miss. */
static int host_matches(const cm_str_t *host, const char *want)
{
    return strlen(want) == host->len && strncasecmp(host->p, want, host->len) == 0;
}

static int prefix_matches(const cm_str_t *path, const char *prefix)
{
    size_t n = strlen(prefix);
    if (n == 1 && prefix[0] == '/')
        return 1;
    if (path->len < n || memcmp(path->p, prefix, n) != 0)
        return 0;
    return path->len == n || path->p[n] == '/';
}

gw_rt_t *gw_guard_route(gw_table_t *t, const cm_str_t *host, const cm_str_t *path)
{
    for (int i = 0; i < t->n; i++) {
        const gw_route_cfg_t *rc = t->routes[i].cfg;
        if (rc->host[0] && !host_matches(host, rc->host))
            continue;
        if (prefix_matches(path, rc->prefix))
            return &t->routes[i];
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Headers                                                              */
/* ------------------------------------------------------------------ */

int gw_guard_headers(cm_req_t *req)
{
    int n = 0;
    for (int i = 0; i < req->nheaders; i++) {
        const cm_str_t *name = &req->headers[i].name;
        n += name->len == 13 && strncasecmp(name->p, "Authorization", 13) == 0;
    }
    if (n <= 1)
        return 0;
    /* one was verified and both would reach the upstream, which may read the other; nginx
     * answers "client sent duplicate header line" the same way */
    cm_res_error(req, 400, "duplicate Authorization header");
    return -1;
}

/* ------------------------------------------------------------------ */
/* Rate limits                                                          */
/* ------------------------------------------------------------------ */

#define NO_LIMIT ((gw_rate_result_t){.allowed = 1, .limit = -1}) /* nothing to show */

static int take(gw_ratelimit_t *rl, gw_rt_t *rt, char kind, const char *who,
                const gw_rate_cfg_t *cfg, uint64_t now, gw_rate_result_t *res)
{
    char key[GW_NAME_MAX + 300];
    int n = snprintf(key, sizeof key, "%s\x01%c\x01%s", rt->cfg->name, kind, who);
    if (n < 0 || (size_t)n >= sizeof key)
        n = (int)sizeof key - 1;
    return gw_ratelimit_take(rl, key, (size_t)n, cfg, now, res);
}

/* RateLimit-* of the tighter bucket, on every answer once a bucket was consulted. */
static void rate_headers(cm_req_t *req, const gw_rate_result_t *r)
{
    if (r->limit < 0)
        return;
    cm_res_header(req, "RateLimit-Limit", "%ld", r->limit);
    cm_res_header(req, "RateLimit-Remaining", "%ld", r->remaining);
    cm_res_header(req, "RateLimit-Reset", "%ld", r->reset_s);
}

/* 0, or -1 after 429 when shown (the bucket just taken from) refused the request. */
static int rate_verdict(cm_req_t *req, gw_rt_t *rt, const gw_rate_result_t *shown)
{
    if (shown->allowed)
        return 0;
    rate_headers(req, shown);
    cm_res_header(req, "Retry-After", "%ld", shown->retry_after_s);
    gw_route_rate_limited(rt->stats);
    cm_res_error(req, 429, "rate limit exceeded; retry in %ld s", shown->retry_after_s);
    return -1;
}

/* ------------------------------------------------------------------ */
/* Auth                                                                 */
/* ------------------------------------------------------------------ */

static int is_read(cm_method_t m)
{
    return m == CM_GET || m == CM_HEAD || m == CM_OPTIONS;
}

static void unauthorized(cm_req_t *req, gw_rt_t *rt, const char *why, const gw_rate_result_t *rate)
{
    if (why)
        cm_res_header(req, "WWW-Authenticate",
                      "Bearer realm=\"cmesh\", error=\"invalid_token\", error_description=\"%s\"",
                      why);
    else
        cm_res_header_str(req, "WWW-Authenticate", "Bearer realm=\"cmesh\"");
    rate_headers(req, rate);
    gw_route_auth_failed(rt->stats, 401);
    cm_res_error(req, 401, "%s", why ? why : "missing bearer token");
}

/* The first scope of need missing from have: *len bytes at the returned pointer (into
 * need), or NULL when none is. Any length: a scope is never skipped for its size. */
static const char *first_missing(const char *have, const char *need, int *len)
{
    for (const char *p = need; *p;) {
        p += strspn(p, " ");
        size_t n = strcspn(p, " ");
        if (n && !gw_scope_held(have, p, n)) {
            *len = (int)n; /* < 512: a config scope string */
            return p;
        }
        p += n;
    }
    return NULL;
}

/* 0 when the route is public or the token is valid and has the scopes the route and
 * method need (claims filled); -1 after answering 401 / 403. */
static int guard_auth(const gw_snap_t *snap, gw_rt_t *rt, cm_req_t *req, gw_claims_t *claims,
                      const gw_rate_result_t *rate)
{
    if (!rt->cfg->auth || !snap->auth)
        return 0;
    size_t len;
    const char *tok = cm_req_bearer(req, &len);
    if (!tok) {
        unauthorized(req, rt, NULL, rate);
        return -1;
    }
    char why[128];
    if (gw_auth_verify(snap->auth, tok, len, (int64_t)time(NULL), claims, why, sizeof why) < 0) {
        unauthorized(req, rt, why, rate);
        return -1;
    }
    const char *extra = is_read(req->method) ? rt->cfg->read_scopes : rt->cfg->write_scopes;
    int mlen = 0;
    const char *missing = first_missing(claims->scope, rt->cfg->scopes, &mlen);
    if (!missing)
        missing = first_missing(claims->scope, extra, &mlen);
    if (missing) {
        cm_res_header(req, "WWW-Authenticate",
                      "Bearer realm=\"cmesh\", error=\"insufficient_scope\", scope=\"%.*s\"", mlen,
                      missing);
        rate_headers(req, rate);
        gw_route_auth_failed(rt->stats, 403);
        cm_res_error(req, 403, "token lacks scope %.*s", mlen, missing);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* The whole check                                                      */
/* ------------------------------------------------------------------ */

int gw_guard_request(const gw_snap_t *snap, gw_ratelimit_t *rl, gw_rt_t *rt, cm_req_t *req,
                     gw_claims_t *claims, uint64_t now)
{
    const gw_route_cfg_t *rc = rt->cfg;
    claims->sub[0] = '\0';
    claims->scope[0] = '\0';
    /* per client first, as nginx's limit_req runs before auth: a request with a bad
     * token costs a token too, so guessing tokens is as limited as anything else */
    gw_rate_result_t shown = NO_LIMIT, res;
    if (rc->rate_client.rate > 0 && take(rl, rt, 'c', req->peer, &rc->rate_client, now, &res) == 0)
        shown = res;
    if (rate_verdict(req, rt, &shown) < 0 || guard_auth(snap, rt, req, claims, &shown) < 0)
        return -1;
    if (rc->rate_subject.rate > 0 && rc->auth && snap->auth) {
        /* a token without a subject has no bucket of its own; sharing one bucket among
         * all of them would let one such client spend the others' budget */
        if (!claims->sub[0]) {
            unauthorized(req, rt, "token has no subject", &shown);
            return -1;
        }
        if (take(rl, rt, 's', claims->sub, &rc->rate_subject, now, &res) == 0 &&
            (!res.allowed || shown.limit < 0 || res.remaining < shown.remaining))
            shown = res; /* the tighter of the two is what the client sees */
        if (rate_verdict(req, rt, &shown) < 0)
            return -1;
    }
    rate_headers(req, &shown);
    return 0;
}
