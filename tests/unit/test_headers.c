/* tests/unit/test_headers.c: the gateway's header rewriting, without sockets: which
 * request fields reach the upstream and how the forwarding fields are joined and extended,
 * trace context continued or started, and which answer fields reach the client. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <criterion/criterion.h>

#include "gateway/headers.h"

/* A GET request for target with the given "Name", "value" pairs (NULL-terminated). */
static cm_req_t *request(const char *target, const char *const *fields)
{
    cm_req_t *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    r->method = CM_GET;
    r->method_name = "GET";
    r->target = (cm_str_t){target, strlen(target)};
    r->http_minor = 1;
    r->content_length = -1;
    snprintf(r->peer, sizeof r->peer, "127.0.0.1");
    snprintf(r->request_id, sizeof r->request_id, "rid-1");
    for (int i = 0; fields && fields[i]; i += 2) {
        r->headers[r->nheaders].name = (cm_str_t){fields[i], strlen(fields[i])};
        r->headers[r->nheaders].value = (cm_str_t){fields[i + 1], strlen(fields[i + 1])};
        r->nheaders++;
    }
    return r;
}

/* The upstream head for r forwarded as tg, as a string the caller frees; *idem_key gets
 * what gw_hdr_request_head() said (may be NULL). */
static char *head_for(const cm_req_t *r, const gw_hdr_target_t *tg, const char *default_host,
                      int chunked, int *idem_key)
{
    cm_buf_t o = CM_BUF_INIT;
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    cr_assert_eq(gw_hdr_request_head(&o, r, tg, default_host, chunked, &rng, idem_key), 0);
    return o.data;
}

/* The target as proxy.c decides it for an origin-form request: the path and query as
 * given, the authority from the first Host field. */
static gw_hdr_target_t target_of(const cm_req_t *r)
{
    gw_hdr_target_t tg = {0};
    const char *q = memchr(r->target.p, '?', r->target.len);
    size_t plen = q ? (size_t)(q - r->target.p) : r->target.len;
    tg.path = (cm_str_t){r->target.p, plen};
    tg.rest = (cm_str_t){r->target.p + plen, r->target.len - plen};
    size_t hl = 0;
    const char *h = NULL;
    for (int i = 0; i < r->nheaders && !h; i++)
        if (r->headers[i].name.len == 4 && strncasecmp(r->headers[i].name.p, "host", 4) == 0)
            h = r->headers[i].value.p, hl = r->headers[i].value.len;
    const char *why;
    cr_assert_eq(cm_uri_host_parse(&(cm_str_t){h ? h : "", hl}, &tg.host, &why), 0);
    return tg;
}

static char *head_of(const cm_req_t *r, const char *default_host, int chunked)
{
    gw_hdr_target_t tg = target_of(r);
    return head_for(r, &tg, default_host, chunked, NULL);
}

/* The value of field name in head ("" when absent), case-sensitive on the name as the
 * gateway writes it; fails the test when the field appears twice. */
static const char *field(const char *head, const char *name, char *out, size_t cap)
{
    char key[128];
    snprintf(key, sizeof key, "\r\n%s: ", name);
    const char *p = strstr(head, key);
    out[0] = '\0';
    if (!p)
        return out;
    cr_assert_null(strstr(p + 1, key), "%s twice in:\n%s", name, head);
    p += strlen(key);
    size_t n = strcspn(p, "\r");
    snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
    return out;
}

Test(headers, hop_by_hop_fields_and_those_connection_lists_stay_behind)
{
    static const char *const f[] = {"Host",      "h",        "Connection", "close, X-Secret",
                                    "X-Secret",  "s",        "Keep-Alive", "timeout=5",
                                    "TE",        "trailers", "Upgrade",    "x/1",
                                    "Proxy-Foo", "bar",      "Expect",     "100-continue",
                                    "X-Kept",    "yes",      NULL};
    cm_req_t *r = request("/a?b=1", f);
    char *h = head_of(r, "up:1", 0);
    cr_assert(strncmp(h, "GET /a?b=1 HTTP/1.1\r\n", 21) == 0, "%s", h);
    char v[256];
    for (const char *const *n = (const char *const[]){"Connection", "X-Secret", "Keep-Alive", "TE",
                                                      "Upgrade", "Proxy-Foo", "Expect", NULL};
         *n; n++)
        cr_assert_str_empty(field(h, *n, v, sizeof v), "%s reached the upstream:\n%s", *n, h);
    cr_assert_str_eq(field(h, "X-Kept", v, sizeof v), "yes");
    cr_assert_str_eq(field(h, "Host", v, sizeof v), "h");
    cr_assert(strstr(h, "\r\n\r\n") == h + strlen(h) - 4, "head not ended once:\n%s", h);
    free(h);
    free(r);
}

Test(headers, forwarding_lists_are_joined_and_extended)
{
    static const char *const f[] = {"Host",
                                    "gw:8080",
                                    "X-Forwarded-For",
                                    "203.0.113.7",
                                    "via",
                                    "1.0 a",
                                    "X-Forwarded-For",
                                    "198.51.100.2",
                                    "Via",
                                    "1.1 b",
                                    "X-Forwarded-Proto",
                                    "https",
                                    "X-Request-Id",
                                    "theirs",
                                    NULL};
    cm_req_t *r = request("/", f);
    char *h = head_of(r, "up:1", 0);
    char v[256];
    cr_assert_str_eq(field(h, "X-Forwarded-For", v, sizeof v),
                     "203.0.113.7, 198.51.100.2, 127.0.0.1");
    cr_assert_str_eq(field(h, "Via", v, sizeof v), "1.0 a, 1.1 b, 1.1 cmesh");
    cr_assert_str_eq(field(h, "X-Forwarded-Proto", v, sizeof v), "http");
    cr_assert_str_eq(field(h, "X-Forwarded-Host", v, sizeof v), "gw:8080");
    cr_assert_str_eq(field(h, "X-Request-Id", v, sizeof v), "rid-1", "the server's id wins");
    free(h);
    free(r);
}

Test(headers, traceparent_keeps_trace_and_flags_and_replaces_the_parent)
{
    static const char *const f[] = {
        "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", NULL};
    cm_req_t *r = request("/", f);
    char *h = head_of(r, "up:1", 0);
    char v[256];
    field(h, "traceparent", v, sizeof v);
    cr_assert_eq(strlen(v), 55, "%s", v);
    cr_assert(strncmp(v, "00-0af7651916cd43dd8448eb211c80319c-", 36) == 0, "%s", v);
    cr_assert(strncmp(v + 36, "b7ad6b7169203331", 16) != 0, "parent kept: %s", v);
    cr_assert_str_eq(v + 52, "-01");
    free(h);
    free(r);
}

Test(headers, a_missing_or_broken_traceparent_starts_a_new_trace)
{
    static const char *const bad[] = {NULL, "garbage",
                                      "00-00000000000000000000000000000000-b7ad6b7169203331-01",
                                      "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *f[] = {"traceparent", bad[i], NULL};
        cm_req_t *r = request("/", bad[i] ? f : NULL);
        char *h = head_of(r, "up:1", 0);
        char v[256];
        field(h, "traceparent", v, sizeof v);
        cr_assert_eq(strlen(v), 55, "case %zu: %s", i, v);
        cr_assert(strncmp(v, "00-", 3) == 0 && v[35] == '-' && strcmp(v + 52, "-01") == 0,
                  "case %zu: %s", i, v);
        cr_assert(strspn(v + 3, "0123456789abcdef") == 32, "case %zu: %s", i, v);
        cr_assert(strncmp(v + 3, "00000000000000000000000000000000", 32) != 0, "%s", v);
        if (bad[i])
            cr_assert(strncmp(v, bad[i], 36) != 0, "case %zu kept a broken trace id: %s", i, v);
        free(h);
        free(r);
    }
}

Test(headers, host_comes_from_the_upstream_when_the_client_sent_none)
{
    cm_req_t *r = request("/", NULL);
    r->http_minor = 0;
    char *h = head_of(r, "10.0.0.5:7001/", 0);
    char v[256];
    cr_assert_str_eq(field(h, "Host", v, sizeof v), "10.0.0.5:7001");
    cr_assert_str_empty(field(h, "X-Forwarded-Host", v, sizeof v));
    cr_assert_str_eq(field(h, "Via", v, sizeof v), "1.0 cmesh");
    free(h);
    free(r);
}

Test(headers, framing_is_rewritten_for_the_upstream)
{
    static const char *const f[] = {"Host",    "h", "Content-Length", "5", "Transfer-Encoding",
                                    "chunked", NULL};
    cm_req_t *r = request("/", f);
    r->content_length = 5;
    char *h = head_of(r, "up:1", 0);
    char v[256];
    cr_assert_str_eq(field(h, "Content-Length", v, sizeof v), "5");
    cr_assert_str_empty(field(h, "Transfer-Encoding", v, sizeof v));
    free(h);
    r->content_length = -1;
    h = head_of(r, "up:1", 1);
    cr_assert_str_eq(field(h, "Transfer-Encoding", v, sizeof v), "chunked");
    cr_assert_str_empty(field(h, "Content-Length", v, sizeof v));
    free(h);
    free(r);
}

Test(headers, answer_fields_drop_hop_by_hop_framing_date_and_request_id)
{
    static const char *const f[][2] = {
        {"Server", "up"},        {"Connection", "keep-alive, X-Hop"},
        {"X-Hop", "1"},          {"Keep-Alive", "timeout=5"},
        {"Content-Length", "2"}, {"Transfer-Encoding", "chunked"},
        {"Date", "Mon"},         {"X-Request-Id", "up-id"},
        {"proxy-thing", "x"},    {"Content-Type", "text/plain"},
    };
    enum { N = sizeof f / sizeof f[0] };
    char raw[512]; /* names and values back to back, as the gateway keeps them */
    gw_hdr_off_t h[N];
    size_t len = 0;
    for (int i = 0; i < N; i++) {
        size_t nl = strlen(f[i][0]), vl = strlen(f[i][1]);
        memcpy(raw + len, f[i][0], nl);
        memcpy(raw + len + nl, f[i][1], vl);
        h[i] = (gw_hdr_off_t){(uint32_t)len, (uint32_t)nl, (uint32_t)(len + nl), (uint32_t)vl};
        len += nl + vl;
    }
    cm_buf_t out = CM_BUF_INIT;
    gw_hdr_response_fields(&out, raw, h, N);
    cr_assert_str_eq(out.data, "Server: up\r\nContent-Type: text/plain\r\n");
    cm_buf_free(&out);
}

Test(headers, connection_cannot_take_out_host_authorization_or_idempotency_key)
{
    static const char *const f[] = {"Host",
                                    "public.example",
                                    "Connection",
                                    "close, Host, Authorization, Idempotency-Key, X-Gone",
                                    "Authorization",
                                    "Bearer t",
                                    "Idempotency-Key",
                                    "k1",
                                    "X-Gone",
                                    "1",
                                    NULL};
    cm_req_t *r = request("/", f);
    r->method = CM_POST;
    r->method_name = "POST";
    gw_hdr_target_t tg = target_of(r);
    int key = -1;
    char *h = head_for(r, &tg, "up:1", 0, &key);
    char v[256];
    cr_assert_str_eq(field(h, "Host", v, sizeof v), "public.example", "%s", h);
    cr_assert_str_eq(field(h, "Authorization", v, sizeof v), "Bearer t", "%s", h);
    cr_assert_str_eq(field(h, "Idempotency-Key", v, sizeof v), "k1", "%s", h);
    cr_assert_str_empty(field(h, "X-Gone", v, sizeof v), "%s", h);
    cr_assert_eq(key, 1, "the key was forwarded, retries may rely on it");
    free(h);
    static const char *const g[] = {"Host", "h", NULL};
    free(r);
    r = request("/", g);
    tg = target_of(r);
    h = head_for(r, &tg, "up:1", 0, &key);
    cr_assert_eq(key, 0, "no key was forwarded");
    free(h);
    free(r);
}

Test(headers, underscore_names_and_client_forwarded_and_real_ip_are_dropped)
{
    static const char *const f[] = {"Host",
                                    "h",
                                    "X_Forwarded_For",
                                    "6.6.6.6",
                                    "X_Forwarded_Host",
                                    "evil.example",
                                    "Forwarded",
                                    "for=6.6.6.6;host=evil.example",
                                    "X-Real-IP",
                                    "6.6.6.6",
                                    "x-real-ip",
                                    "7.7.7.7",
                                    "X-Kept-Dash",
                                    "yes",
                                    NULL};
    cm_req_t *r = request("/", f);
    char *h = head_of(r, "up:1", 0);
    char v[256];
    cr_assert_null(strstr(h, "6.6.6.6"), "a client address claim reached the upstream:\n%s", h);
    cr_assert_null(strstr(h, "evil.example"), "a client host claim reached the upstream:\n%s", h);
    cr_assert_null(strchr(h, '_'), "an underscore name reached the upstream:\n%s", h);
    cr_assert_str_eq(field(h, "X-Real-IP", v, sizeof v), "127.0.0.1");
    cr_assert_str_eq(field(h, "X-Forwarded-For", v, sizeof v), "127.0.0.1");
    cr_assert_str_eq(field(h, "X-Kept-Dash", v, sizeof v), "yes");
    cr_assert_str_empty(field(h, "Forwarded", v, sizeof v));
    free(h);
    free(r);
}

Test(headers, request_line_and_host_are_the_routing_decision)
{
    static const char *const f[] = {"Host", "public.example", "host", "second.example", NULL};
    cm_req_t *r = request("http://internal.example.:8080/x/../a?q=%zz", f);
    gw_hdr_target_t tg = {.path = {"/a", 2}, .rest = {"?q=%zz", 6}};
    const char *why;
    cr_assert_eq(cm_uri_host_parse(&(cm_str_t){"internal.example.:8080", 22}, &tg.host, &why), 0);
    char *h = head_for(r, &tg, "up:1", 0, NULL);
    char v[256];
    cr_assert(strncmp(h, "GET /a?q=%zz HTTP/1.1\r\n", 23) == 0, "%s", h);
    cr_assert_str_eq(field(h, "Host", v, sizeof v), "internal.example:8080", "%s", h);
    cr_assert_str_eq(field(h, "X-Forwarded-Host", v, sizeof v), "internal.example:8080");
    cr_assert_null(strstr(h, "public.example"), "the client's Host reached the upstream:\n%s", h);
    cr_assert_null(strstr(h, "second.example"), "a second Host reached the upstream:\n%s", h);
    free(h);
    free(r);
}
