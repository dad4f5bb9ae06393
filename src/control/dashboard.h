/* control/dashboard.h: the dashboard at GET / of the control port: one page (HTML, CSS,
 * plain JS, an icon) embedded in the binary at build time (cmake/embed.cmake writes
 * cm_dash_assets from src/control/dashboard/), fed by the same /v1 API as the CLI.
 * Every answer has a Content-Security-Policy allowing only 'self' (no inline script or
 * style), Cache-Control: no-cache with an ETag (a reload costs a 304), nosniff. */
#ifndef CMESH_CONTROL_DASHBOARD_H
#define CMESH_CONTROL_DASHBOARD_H

#include <stddef.h>

#include "core/http.h"

typedef struct cm_dash_asset {
    const char *name;          /* "index.html", "dashboard.js", ... */
    const unsigned char *data; /* NUL after the last byte */
    size_t len;
} cm_dash_asset_t;

extern const cm_dash_asset_t cm_dash_assets[]; /* the generated table */
extern const int cm_dash_nassets;

/* The CSP every dashboard answer carries. */
#define CM_DASH_CSP                                                                                \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "                    \
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/* Route handlers (api.c's table): GET /, /dashboard.css, /dashboard.js, /favicon.svg. */
void cm_dash_page(cm_req_t *req);
void cm_dash_css(cm_req_t *req);
void cm_dash_js(cm_req_t *req);
void cm_dash_icon(cm_req_t *req);

#endif
