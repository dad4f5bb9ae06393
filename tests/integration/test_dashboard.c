/* Integration tests for the dashboard's side of the control plane: GET / and its files
 * (served from the binary with their headers: type, CSP, no-cache + ETag), and
 * /v1/history, whose points come from the instances' real /metrics: an orders instance
 * whose users service is down answers its writes 503, which is its error rate. The page
 * in a real browser is tests/scripts/dashboard.sh. */
#include "ctl_util.h"

static sys_t sys;

TestSuite(dashboard, .fini = sys_fini, .timeout = 90);

#define MAXPTS 512 /* more than a history series holds (CM_HISTORY_KEEP) */

/* one orders instance whose --users-url goes nowhere (%3$d: the second service's range,
 * and there is none): its POSTs are 503, its GETs 200 */
static const char lonely_orders[] =
    "services:\n"
    "  orders:\n    command: orders\n    instances: 1\n    listen: 127.0.0.1:%2$d\n"
    "    args: [--db, orders.db, --users-url, 'http://127.0.0.1:%3$d', --users-timeout, 1s,\n"
    "           --access-log, 'off']\n"
    "    readiness: off\n"
    "    drain_timeout: 2s\n";

static void expect_header(const h_resp_t *r, const char *name, const char *want_prefix)
{
    char v[512];
    cr_assert_eq(h_header(r, name, v, sizeof v), 0, "no %s header", name);
    cr_assert(strncmp(v, want_prefix, strlen(want_prefix)) == 0, "%s: %s, wanted %s...", name, v,
              want_prefix);
}

Test(dashboard, the_page_and_its_files_are_served_from_the_binary_with_their_headers)
{
    sys_init(&sys, lonely_orders);
    sys_start(&sys);
    sys_wait_ready(&sys, 20000);

    h_resp_t r = sys_get(&sys, "/");
    cr_assert_eq(r.status, 200);
    expect_header(&r, "Content-Type", "text/html; charset=utf-8");
    expect_header(&r, "Cache-Control", "no-cache");
    expect_header(&r, "X-Content-Type-Options", "nosniff");
    char csp[512], etag[64];
    cr_assert_eq(h_header(&r, "Content-Security-Policy", csp, sizeof csp), 0);
    cr_assert(strstr(csp, "default-src 'none'") && strstr(csp, "script-src 'self'") &&
                  strstr(csp, "style-src 'self'") && strstr(csp, "connect-src 'self'"),
              "%s", csp);
    cr_assert_null(strstr(csp, "unsafe-inline"), "%s", csp);
    cr_assert_eq(h_header(&r, "ETag", etag, sizeof etag), 0);
    cr_assert(r.body && strstr(r.body, "<!doctype html>"), "not the page");
    cr_assert(strstr(r.body, "<script src=\"/dashboard.js\""), "the script is a file of its own");
    cr_assert(strstr(r.body, "href=\"/dashboard.css\""), "the style is a file of its own");
    cr_assert_null(strstr(r.body, "<script>"), "no inline script (CSP 'self')");
    cr_assert_null(strstr(r.body, "<style"), "no inline style (CSP 'self')");
    cr_assert_null(strstr(r.body, "https://"), "nothing from elsewhere (no CDN, no fonts)");
    h_resp_free(&r);

    /* a reload revalidates: the same ETag is a 304 without a body */
    char inm[96];
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    const char *const hdrs[] = {inm, NULL};
    char url[256];
    snprintf(url, sizeof url, "%s/", sys.ctl);
    r = h_http("GET", url, NULL, hdrs);
    cr_assert_eq(r.status, 304);
    cr_assert_eq(r.body_len, 0);
    expect_header(&r, "ETag", etag);
    h_resp_free(&r);

    static const struct {
        const char *path, *type, *has;
    } files[] = {
        {"/dashboard.js", "text/javascript; charset=utf-8", "/v1/history?after="},
        {"/dashboard.css", "text/css; charset=utf-8", "@media"},
        {"/favicon.svg", "image/svg+xml", "<svg"},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        r = sys_get(&sys, files[i].path);
        cr_assert_eq(r.status, 200, "%s", files[i].path);
        expect_header(&r, "Content-Type", files[i].type);
        expect_header(&r, "Cache-Control", "no-cache");
        expect_header(&r, "Content-Security-Policy", "default-src 'none'");
        cr_assert(r.body && strstr(r.body, files[i].has), "%s lacks %s", files[i].path,
                  files[i].has);
        h_resp_free(&r);
    }

    /* HEAD as GET without the body; other methods 405 naming what is allowed */
    r = h_http("HEAD", url, NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 0);
    expect_header(&r, "Content-Type", "text/html");
    h_resp_free(&r);
    r = h_http("POST", url, "{}", NULL);
    cr_assert_eq(r.status, 405);
    expect_header(&r, "Allow", "GET");
    h_resp_free(&r);
    r = sys_get(&sys, "/dashboard.jsx");
    cr_assert_eq(r.status, 404);
    h_resp_free(&r);
}

/* Every value of a history column, as doubles (-1 for null). */
static int column(json_t *svc, const char *name, double *out, int cap)
{
    json_t *a = json_object_get(svc, name), *v;
    size_t i;
    int n = 0;
    json_array_foreach(a, i, v)
    {
        if (n < cap)
            out[n++] = json_is_null(v) ? -1 : json_number_value(v);
    }
    return n;
}

Test(dashboard, history_has_the_rps_p99_and_5xx_share_of_real_traffic)
{
    sys_init(&sys, lonely_orders);
    sys_start(&sys);
    sys_wait_ready(&sys, 20000);
    char base[128];
    snprintf(base, sizeof base, "http://127.0.0.1:%d/orders", sys.port[0]);
    static const char *const json_hdr[] = {"Content-Type: application/json", NULL};

    /* one write in four fails 503 (users is unreachable), the reads answer 200; until a
     * round of history has the traffic */
    json_t *orders = NULL;
    double err = -1, rps = -1, p99 = -1;
    for (double until = now_s() + 30; now_s() < until && !(err > 0);) {
        for (int i = 0; i < 40; i++) {
            h_resp_t r = i % 4 ? h_http("GET", base, NULL, NULL)
                               : h_http("POST", base, "{\"userId\":1}", json_hdr);
            cr_assert_eq(r.status, i % 4 ? 200 : 503, "request %d: %ld", i, r.status);
            h_resp_free(&r);
        }
        json_t *h = sys_json(&sys, "/v1/history");
        cr_assert_not_null(h);
        json_decref(orders);
        orders = json_incref(json_array_get(json_object_get(h, "services"), 0));
        json_decref(h);
        if (!orders) /* no round since it started */
            continue;
        cr_assert_str_eq(json_string_value(json_object_get(orders, "name")), "orders");
        double e[MAXPTS], q[MAXPTS], p[MAXPTS];
        int n = column(orders, "error_rate", e, MAXPTS);
        column(orders, "rps", q, MAXPTS);
        column(orders, "p99_ms", p, MAXPTS);
        for (int i = 0; i < n; i++)
            if (e[i] > 0) {
                err = e[i];
                rps = q[i];
                p99 = p[i];
            }
        ms_sleep(200);
    }
    cr_assert_not_null(orders, "no point in /v1/history");
    cr_assert_gt(err, 0, "no error rate in /v1/history");
    cr_assert_lt(err, 1, "the 200s count too: %f", err);
    cr_assert_gt(rps, 0);
    cr_assert_geq(p99, 0);
    /* the counts: one desired, one running, one ready; times grow */
    double d[MAXPTS], rd[MAXPTS], t[MAXPTS];
    int n = column(orders, "desired", d, MAXPTS);
    column(orders, "ready", rd, MAXPTS);
    column(orders, "t", t, MAXPTS);
    cr_assert_geq(n, 2);
    cr_assert_eq(d[n - 1], 1);
    cr_assert_eq(rd[n - 1], 1);
    for (int i = 1; i < n; i++)
        cr_assert_gt(t[i], t[i - 1]);
    json_decref(orders);

    /* the same window is in /v1/status */
    json_t *st = sys_json(&sys, "/v1/status");
    json_t *in = json_array_get(
        json_object_get(json_array_get(json_object_get(st, "services"), 0), "instances"), 0);
    cr_assert_not_null(json_object_get(in, "error_rate"), "no error_rate in /v1/status");
    json_decref(st);

    /* after=last: nothing new yet; a bad after is a 400 naming it, nothing else */
    json_t *h = sys_json(&sys, "/v1/history");
    char path[64];
    snprintf(path, sizeof path, "/v1/history?after=%lld",
             (long long)json_integer_value(json_object_get(h, "last")));
    json_decref(h);
    h = sys_json(&sys, path);
    cr_assert_not_null(h);
    json_t *o = json_array_get(json_object_get(h, "services"), 0);
    cr_assert_leq(json_array_size(json_object_get(o, "t")), 1, "only what came since");
    json_decref(h);
    h_resp_t r = sys_get(&sys, "/v1/history?after=soon");
    cr_assert_eq(r.status, 400);
    json_t *e = h_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(e, "field")), "after");
    json_decref(e);
    h_resp_free(&r);
}
