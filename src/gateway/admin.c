/* gateway/admin.c: the gateway's own API, served only on the admin listener
 * (--admin-listen / admin: in the config; never on the traffic port, where /_cmesh/ is a
 * path like any other):
 *   GET /_cmesh/routes                       routes and this worker's view of instances
 *   PUT /_cmesh/routes/{name}/upstreams      {"upstreams": ["http://h:p", ...]} replaces
 *                                            the instance set at run time (control plane)
 * Who may use it: whoever can reach the listener when auth is off (a unix socket is mode
 * 0600: its owner; a loopback port: any local process), and with auth configured a token
 * with scope cmesh:admin on every request, GET too. Every change is logged with who made
 * it and the old and new upstreams. */
#include "gateway/admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "core/json.h"
#include "gateway/gateway_types.h"
#include "gateway/guard.h"
#include "gateway/ratelimit.h"
#include "gateway/snapshot.h"
#include "gateway/table.h"

#define ADMIN_PREFIX   "/_cmesh/"
#define ADMIN_BODY_MAX (256 * 1024)
/* With auth on, every admin request costs a token of its client's bucket before the token
 * is checked, as limit_req runs before auth on routes: guessing is limited like any other
 * request. Generous for a control plane (it reads and writes a few times a second). */
#define ADMIN_RATE  10.0
#define ADMIN_BURST 50.0

typedef struct admin_put {
    gw_worker_t *w;
    char route[GW_NAME_MAX];
    char who[400];
    cm_buf_t body;
    int too_big;
} admin_put_t;

/* Who is asking, for the change log: the token's subject with auth, else the peer. */
static void who_of(const cm_req_t *req, const gw_claims_t *claims, char *out, size_t cap)
{
    if (claims && claims->sub[0])
        snprintf(out, cap, "token subject %s (peer %s)", claims->sub, req->peer);
    else if (strncmp(req->peer, "unix:uid=", 9) == 0)
        snprintf(out, cap, "unix socket peer uid %s", req->peer + 9);
    else
        snprintf(out, cap, "peer %s", req->peer[0] ? req->peer : "?");
}

/* 0 when allowed (who filled); -1 after answering 401/403/429. */
static int admin_allowed(gw_worker_t *w, cm_req_t *req, char *who, size_t who_cap)
{
    gw_snap_t *snap = w->table ? w->table->snap : NULL;
    if (!snap || !snap->auth) {
        if (w->g->admin_public) { /* a reload took auth away: never open to the network */
            cm_res_error(req, 403,
                         "the admin API on a non-loopback address needs auth, which the "
                         "running config has not");
            return -1;
        }
        who_of(req, NULL, who, who_cap);
        return 0;
    }
    gw_rate_cfg_t rc = {.rate = ADMIN_RATE, .burst = ADMIN_BURST};
    gw_rate_result_t rate;
    char key[300];
    int klen = snprintf(key, sizeof key,
                        "\x01"
                        "admin\x01%s",
                        req->peer);
    if (gw_ratelimit_take(w->g->rl, key, (size_t)klen, &rc, uv_hrtime(), &rate) == 0 &&
        !rate.allowed) {
        cm_res_header(req, "Retry-After", "%ld", rate.retry_after_s);
        cm_res_error(req, 429, "admin API rate limit exceeded; retry in %ld s", rate.retry_after_s);
        return -1;
    }
    size_t len;
    const char *tok = cm_req_bearer(req, &len);
    gw_claims_t claims;
    char why[128] = "missing bearer token";
    if (!tok ||
        gw_auth_verify(snap->auth, tok, len, (int64_t)time(NULL), &claims, why, sizeof why) < 0) {
        cm_res_header_str(req, "WWW-Authenticate", "Bearer realm=\"cmesh\"");
        cm_res_error(req, 401, "%s", why);
        return -1;
    }
    if (!gw_scopes_allow(claims.scope, "cmesh:admin")) {
        cm_res_header_str(
            req, "WWW-Authenticate",
            "Bearer realm=\"cmesh\", error=\"insufficient_scope\", scope=\"cmesh:admin\"");
        cm_res_error(req, 403, "token lacks scope cmesh:admin");
        return -1;
    }
    who_of(req, &claims, who, who_cap);
    return 0;
}

static void list_routes(gw_worker_t *w, cm_req_t *req)
{
    cm_buf_t *o = &req->res_body;
    gw_table_t *t = w->table;
    uint64_t now = uv_hrtime();
    cm_buf_append_str(o, "{\"routes\":[");
    for (int i = 0; t && i < t->n; i++) {
        const gw_rt_t *rt = &t->routes[i];
        cm_buf_append_str(o, i ? ",{\"name\":" : "{\"name\":");
        cm_json_str(o, rt->cfg->name, strlen(rt->cfg->name));
        cm_buf_append_str(o, ",\"prefix\":");
        cm_json_str(o, rt->cfg->prefix, strlen(rt->cfg->prefix));
        cm_buf_append_str(o, ",\"balancer\":");
        cm_json_str(o, gw_lb_name(rt->cfg->balancer), strlen(gw_lb_name(rt->cfg->balancer)));
        cm_buf_appendf(o, ",\"scaled_to_zero\":%s,\"held\":%d",
                       rt->cfg->scaled_to_zero ? "true" : "false", rt->held.n);
        cm_buf_append_str(o, ",\"upstreams\":[");
        for (int j = 0; j < rt->n; j++) {
            const gw_inst_t *in = rt->insts[j];
            cm_buf_appendf(o,
                           "%s{\"url\":\"%s\",\"weight\":%d,\"healthy\":%s,\"ejected\":%s,"
                           "\"slow_start\":%.2f,\"inflight\":%d,\"idle_connections\":%d,"
                           "\"connections\":%d,\"ewma_us\":%.0f}",
                           j ? "," : "", in->url, in->weight, in->healthy ? "true" : "false",
                           in->ejected_until_ns > now ? "true" : "false",
                           gw_inst_slow_start(rt, in, now), in->inflight, in->nidle, in->nconns,
                           rt->hosts[j].ewma_us);
        }
        cm_buf_append_str(o, "]}");
    }
    cm_buf_append_str(o, "]}");
    cm_res_send(req, 200);
}

/* {"upstreams": [...]} or a bare array. Returns the count or -1 after answering. */
static int parse_urls(cm_req_t *req, const cm_buf_t *body, char ***out)
{
    json_error_t jerr;
    json_t *doc =
        json_loadb(body->data ? body->data : "", body->len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *arr = json_is_object(doc) ? json_object_get(doc, "upstreams") : doc;
    if (!doc || !json_is_array(arr) || json_array_size(arr) == 0) {
        cm_res_error_field(req, doc ? 422 : 400, "upstreams", "%s",
                           doc ? "give a non-empty array of upstream URLs" : jerr.text);
        json_decref(doc);
        return -1;
    }
    int n = (int)json_array_size(arr);
    char **urls = calloc((size_t)n, sizeof *urls);
    for (int i = 0; urls && i < n; i++) {
        const char *s = json_string_value(json_array_get(arr, (size_t)i));
        if (!s) {
            for (int j = 0; j < i; j++)
                free(urls[j]);
            free(urls);
            json_decref(doc);
            cm_res_error_field(req, 422, "upstreams", "item %d is not a string", i);
            return -1;
        }
        urls[i] = strdup(s);
    }
    json_decref(doc);
    *out = urls;
    return urls ? n : -1;
}

static void on_put_body(cm_req_t *req, const char *data, size_t len, int last, void *arg)
{
    admin_put_t *p = arg;
    if (p->body.len + len > ADMIN_BODY_MAX)
        p->too_big = 1;
    else
        cm_buf_append(&p->body, data, len);
    if (!last)
        return;
    char **urls = NULL;
    int n = p->too_big ? -2 : parse_urls(req, &p->body, &urls);
    if (n == -2)
        cm_res_error(req, 413, "admin request body too large");
    if (n > 0) {
        char err[512];
        int rc = gw_replace_upstreams(p->w->g, p->route, urls, n, p->who, err, sizeof err);
        if (rc == -ENOENT)
            cm_res_error(req, 404, "no route named %s", p->route);
        else if (rc < 0)
            cm_res_error_field(req, 422, "upstreams", "%s", err);
        else {
            cm_buf_appendf(&req->res_body, "{\"route\":");
            cm_json_str(&req->res_body, p->route, strlen(p->route));
            cm_buf_appendf(&req->res_body, ",\"upstreams\":%d}", n);
            cm_res_send(req, 200);
        }
        for (int i = 0; i < n; i++)
            free(urls[i]);
        free(urls);
    }
    cm_buf_free(&p->body);
    free(p);
}

void gw_admin_serve(cm_req_t *req)
{
    gw_worker_t *w = req->state;
    char who[400];
    if (gw_guard_headers(req) < 0 || admin_allowed(w, req, who, sizeof who) < 0)
        return;
    size_t plen = strlen(ADMIN_PREFIX);
    if (req->path.len < plen || memcmp(req->path.p, ADMIN_PREFIX, plen) != 0) {
        cm_res_error(req, 404, "Not found; the admin API is under %s", ADMIN_PREFIX);
        return;
    }
    const char *rest = req->path.p + plen;
    size_t rlen = req->path.len - plen;
    if (rlen == 6 && memcmp(rest, "routes", 6) == 0) {
        if (req->method != CM_GET && req->method != CM_HEAD) {
            cm_res_header_str(req, "Allow", "GET, HEAD");
            cm_res_error(req, 405, "method %s is not allowed here; allowed: GET, HEAD",
                         req->method_name);
            return;
        }
        list_routes(w, req);
        return;
    }
    static const char suffix[] = "/upstreams";
    size_t slen = sizeof suffix - 1;
    if (rlen > 7 + slen && memcmp(rest, "routes/", 7) == 0 &&
        memcmp(rest + rlen - slen, suffix, slen) == 0) {
        size_t nlen = rlen - 7 - slen;
        if (req->method != CM_PUT) {
            cm_res_header_str(req, "Allow", "PUT");
            cm_res_error(req, 405, "method %s is not allowed here; allowed: PUT", req->method_name);
            return;
        }
        admin_put_t *p = calloc(1, sizeof *p);
        if (!p || nlen >= sizeof p->route) {
            free(p);
            cm_res_error(req, 404, "no such route");
            return;
        }
        p->w = w;
        memcpy(p->route, rest + 7, nlen);
        snprintf(p->who, sizeof p->who, "%s", who);
        cm_req_body_read(req, on_put_body, p);
        return;
    }
    cm_res_error(req, 404, "Not found");
}
