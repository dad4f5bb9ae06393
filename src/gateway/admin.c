/* gateway/admin.c: the gateway's own API under /_cmesh/, ahead of every route:
 *   GET /_cmesh/routes                       routes and this worker's view of instances
 *   PUT /_cmesh/routes/{name}/upstreams      {"upstreams": ["http://h:p", ...]} replaces
 *                                            the instance set at run time (control plane)
 * With auth configured it needs a token with scope cmesh:admin; without, only loopback
 * clients may use it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "core/json.h"
#include "gateway/gw.h"

#define ADMIN_PREFIX   "/_cmesh/"
#define ADMIN_BODY_MAX (256 * 1024)

typedef struct admin_put {
    gw_worker_t *w;
    char route[GW_NAME_MAX];
    cm_buf_t body;
    int too_big;
} admin_put_t;

static int loopback(const char *peer)
{
    return strncmp(peer, "127.", 4) == 0 || strcmp(peer, "::1") == 0 ||
           strncmp(peer, "::ffff:127.", 11) == 0;
}

/* 0 when allowed; -1 after answering 401/403. */
static int admin_allowed(gw_worker_t *w, cm_req_t *req)
{
    gw_snap_t *snap = w->table ? w->table->snap : NULL;
    if (!snap || !snap->auth) {
        if (loopback(req->peer))
            return 0;
        cm_res_error(req, 403, "the admin API answers loopback clients only when auth is off");
        return -1;
    }
    size_t len;
    const char *h = cm_req_header(req, "Authorization", &len);
    gw_claims_t claims;
    char why[128] = "missing bearer token";
    if (!h || len < 7 || strncasecmp(h, "Bearer ", 7) != 0 ||
        gw_auth_verify(snap->auth, h + 7, len - 7, (int64_t)time(NULL), &claims, why, sizeof why) <
            0) {
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
        int rc = gw_replace_upstreams(p->w->g, p->route, urls, n, err, sizeof err);
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

int gw_admin_handle(gw_worker_t *w, cm_req_t *req)
{
    size_t plen = strlen(ADMIN_PREFIX);
    if (req->path.len < plen || memcmp(req->path.p, ADMIN_PREFIX, plen) != 0)
        return 0;
    if (admin_allowed(w, req) < 0)
        return 1;
    const char *rest = req->path.p + plen;
    size_t rlen = req->path.len - plen;
    if (rlen == 6 && memcmp(rest, "routes", 6) == 0) {
        if (req->method != CM_GET && req->method != CM_HEAD) {
            cm_res_header_str(req, "Allow", "GET, HEAD");
            cm_res_error(req, 405, "method %s is not allowed here; allowed: GET, HEAD",
                         req->method_name);
            return 1;
        }
        list_routes(w, req);
        return 1;
    }
    static const char suffix[] = "/upstreams";
    size_t slen = sizeof suffix - 1;
    if (rlen > 7 + slen && memcmp(rest, "routes/", 7) == 0 &&
        memcmp(rest + rlen - slen, suffix, slen) == 0) {
        size_t nlen = rlen - 7 - slen;
        if (req->method != CM_PUT) {
            cm_res_header_str(req, "Allow", "PUT");
            cm_res_error(req, 405, "method %s is not allowed here; allowed: PUT", req->method_name);
            return 1;
        }
        admin_put_t *p = calloc(1, sizeof *p);
        if (!p || nlen >= sizeof p->route) {
            free(p);
            cm_res_error(req, 404, "no such route");
            return 1;
        }
        p->w = w;
        memcpy(p->route, rest + 7, nlen);
        cm_req_body_read(req, on_put_body, p);
        return 1;
    }
    cm_res_error(req, 404, "Not found");
    return 1;
}
