/* control/dashboard.c: serves the embedded dashboard files (see dashboard.h). */
#include "control/dashboard.h"

#include "service/rest.h"

#include <string.h>

#include "core/buf.h"

static void serve(cm_req_t *req, const char *name, const char *type)
{
    const cm_dash_asset_t *a = NULL;
    for (int i = 0; i < cm_dash_nassets; i++)
        if (strcmp(cm_dash_assets[i].name, name) == 0)
            a = &cm_dash_assets[i];
    if (!a) { /* the build embeds every file the routes name; a missing one is a bug */
        cm_res_error(req, 500, "the dashboard file %s is not in this binary", name);
        return;
    }
    char etag[20];
    cm_rest_etag((const char *)a->data, a->len, etag);
    cm_res_header_str(req, "ETag", etag);
    cm_res_header_str(req, "Cache-Control", "no-cache");
    cm_res_header_str(req, "Content-Security-Policy", CM_DASH_CSP);
    cm_res_header_str(req, "X-Content-Type-Options", "nosniff");
    cm_res_header_str(req, "Referrer-Policy", "no-referrer");
    if (cm_rest_none_match_hits(req, etag)) {
        cm_res_send(req, 304);
        return;
    }
    cm_res_header_str(req, "Content-Type", type);
    cm_buf_append(&req->res_body, a->data, a->len);
    cm_res_send(req, 200);
}

void cm_dash_page(cm_req_t *req)
{
    serve(req, "index.html", "text/html; charset=utf-8");
}

void cm_dash_css(cm_req_t *req)
{
    serve(req, "dashboard.css", "text/css; charset=utf-8");
}

void cm_dash_js(cm_req_t *req)
{
    serve(req, "dashboard.js", "text/javascript; charset=utf-8");
}

void cm_dash_icon(cm_req_t *req)
{
    serve(req, "favicon.svg", "image/svg+xml");
}
