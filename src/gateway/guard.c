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

static int is_read(cm_method_t m)
{
    return m == CM_GET || m == CM_HEAD || m == CM_OPTIONS;
}

static void unauthorized(cm_req_t *req, gw_rt_t *rt, const char *why)
{
    if (why)
        cm_res_header(req, "WWW-Authenticate",
                      "Bearer realm=\"cmesh\", error=\"invalid_token\", error_description=\"%s\"",
                      why);
    else
        cm_res_header_str(req, "WWW-Authenticate", "Bearer realm=\"cmesh\"");
    gw_route_auth_failed(rt->stats, 401);
    cm_res_error(req, 401, "%s", why ? why : "missing bearer token");
}

/* The first scope of need missing from have, copied into out ("" when none is). */
static void first_missing(const char *have, const char *need, char *out, size_t cap)
{
    out[0] = '\0';
    char one[256];
    for (const char *p = need; *p;) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (n && n < sizeof one) {
            memcpy(one, p, n);
            one[n] = '\0';
            if (!gw_scopes_allow(have, one)) {
                snprintf(out, cap, "%s", one);
                return;
            }
        }
        p += n;
    }
}

int gw_guard_auth(const gw_snap_t *snap, gw_rt_t *rt, cm_req_t *req, gw_claims_t *claims)
{
    claims->sub[0] = '\0';
    claims->scope[0] = '\0';
    if (!rt->cfg->auth || !snap->auth)
        return 0;
    size_t len;
    const char *h = cm_req_header(req, "Authorization", &len);
    if (!h || len < 7 || strncasecmp(h, "Bearer ", 7) != 0) {
        unauthorized(req, rt, NULL);
        return -1;
    }
    char why[128];
    if (gw_auth_verify(snap->auth, h + 7, len - 7, (int64_t)time(NULL), claims, why, sizeof why) <
        0) {
        unauthorized(req, rt, why);
        return -1;
    }
    const char *extra = is_read(req->method) ? rt->cfg->read_scopes : rt->cfg->write_scopes;
    char missing[256];
    first_missing(claims->scope, rt->cfg->scopes, missing, sizeof missing);
    if (!missing[0])
        first_missing(claims->scope, extra, missing, sizeof missing);
    if (missing[0]) {
        cm_res_header(req, "WWW-Authenticate",
                      "Bearer realm=\"cmesh\", error=\"insufficient_scope\", scope=\"%s\"",
                      missing);
        gw_route_auth_failed(rt->stats, 403);
        cm_res_error(req, 403, "token lacks scope %s", missing);
        return -1;
    }
    return 0;
}

static int take(gw_ratelimit_t *rl, gw_rt_t *rt, char kind, const char *who,
                const gw_rate_cfg_t *cfg, uint64_t now, gw_rate_result_t *res)
{
    char key[GW_NAME_MAX + 300];
    int n = snprintf(key, sizeof key, "%s\x01%c\x01%s", rt->cfg->name, kind, who);
    if (n < 0 || (size_t)n >= sizeof key)
        n = (int)sizeof key - 1;
    return gw_ratelimit_take(rl, key, (size_t)n, cfg, now, res);
}

static void rate_headers(cm_req_t *req, const gw_rate_result_t *r)
{
    cm_res_header(req, "RateLimit-Limit", "%ld", r->limit);
    cm_res_header(req, "RateLimit-Remaining", "%ld", r->remaining);
    cm_res_header(req, "RateLimit-Reset", "%ld", r->reset_s);
}

int gw_guard_rate(gw_ratelimit_t *rl, gw_rt_t *rt, cm_req_t *req, const gw_claims_t *claims,
                  uint64_t now)
{
    const gw_route_cfg_t *rc = rt->cfg;
    gw_rate_result_t res, shown = {.allowed = 1, .limit = -1};
    if (rc->rate_client.rate > 0) {
        if (take(rl, rt, 'c', req->peer, &rc->rate_client, now, &res) == 0) {
            shown = res;
        }
    }
    if (shown.allowed && rc->rate_subject.rate > 0 && claims->sub[0]) {
        gw_rate_result_t sres;
        if (take(rl, rt, 's', claims->sub, &rc->rate_subject, now, &sres) == 0 &&
            (!sres.allowed || shown.limit < 0 || sres.remaining < shown.remaining))
            shown = sres; /* the tighter of the two is what the client sees */
    }
    if (shown.limit < 0)
        return 0;
    rate_headers(req, &shown);
    if (shown.allowed)
        return 0;
    cm_res_header(req, "Retry-After", "%ld", shown.retry_after_s);
    gw_route_rate_limited(rt->stats);
    cm_res_error(req, 429, "rate limit exceeded; retry in %ld s", shown.retry_after_s);
    return -1;
}
