/* gateway/headers.c: the header rewriting of a proxied exchange (see headers.h). Header
 * names are classified once, by length first, so a field costs one string compare at most;
 * the fields the Connection header lists are split into tokens once per message. */
#include "gateway/headers.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Header fields the proxy treats by name. */
enum hf {
    HF_OTHER,
    HF_CONNECTION,
    HF_KEEP_ALIVE,
    HF_TE,
    HF_TRAILER,
    HF_TRANSFER_ENCODING,
    HF_UPGRADE,
    HF_PROXY, /* Proxy-* */
    HF_CONTENT_LENGTH,
    HF_EXPECT,
    HF_HOST,
    HF_DATE,
    HF_VIA,
    HF_X_FORWARDED_FOR,
    HF_X_FORWARDED_PROTO,
    HF_X_FORWARDED_HOST,
    HF_X_REQUEST_ID,
    HF_TRACEPARENT,
    HF_FORWARDED,
    HF_X_REAL_IP,
    HF_AUTHORIZATION,
    HF_IDEMPOTENCY_KEY,
    HF_UNDERSCORE, /* a name with '_': CGI-style upstreams read X_Forwarded_For as
                      X-Forwarded-For, so it could pose as one we rewrite (nginx's
                      underscores_in_headers off drops them too) */
};

#define HF_BIT(x) (1u << (x))
/* Hop-by-hop (RFC 9110 7.6.1) or framing: never forwarded either way. */
#define HF_HOP                                                                                     \
    (HF_BIT(HF_CONNECTION) | HF_BIT(HF_KEEP_ALIVE) | HF_BIT(HF_TE) | HF_BIT(HF_TRAILER) |          \
     HF_BIT(HF_TRANSFER_ENCODING) | HF_BIT(HF_UPGRADE) | HF_BIT(HF_PROXY) |                        \
     HF_BIT(HF_CONTENT_LENGTH))
/* Dropped from the upstream request: rebuilt by us (the lists are joined and extended;
 * Host is the authority the route was chosen on; the client's Forwarded and X-Real-IP are
 * not trusted, X-Real-IP is set to the peer), and underscore names. */
#define HF_REQ_DROP                                                                                \
    (HF_HOP | HF_BIT(HF_EXPECT) | HF_BIT(HF_VIA) | HF_BIT(HF_X_FORWARDED_FOR) |                    \
     HF_BIT(HF_X_FORWARDED_PROTO) | HF_BIT(HF_X_FORWARDED_HOST) | HF_BIT(HF_X_REQUEST_ID) |        \
     HF_BIT(HF_TRACEPARENT) | HF_BIT(HF_HOST) | HF_BIT(HF_FORWARDED) | HF_BIT(HF_X_REAL_IP) |      \
     HF_BIT(HF_UNDERSCORE))
/* End-to-end fields the gateway itself writes or relies on: a Connection header listing
 * them does not take them out (Host is the route's, Authorization was checked, the key is
 * what makes a retried POST safe). Framing is rebuilt apart. */
#define HF_NEVER_LISTED (HF_BIT(HF_HOST) | HF_BIT(HF_AUTHORIZATION) | HF_BIT(HF_IDEMPOTENCY_KEY))
/* Dropped from the client's answer: the server writes its own Date and X-Request-Id. */
#define HF_RES_DROP (HF_HOP | HF_BIT(HF_DATE) | HF_BIT(HF_X_REQUEST_ID))

/* Compares the length first: a header costs one string compare at most. */
static enum hf classify(const char *p, size_t n)
{
    static const struct {
        const char *name;
        size_t len;
        enum hf id;
    } known[] = {
        {"connection", 10, HF_CONNECTION},
        {"keep-alive", 10, HF_KEEP_ALIVE},
        {"te", 2, HF_TE},
        {"trailer", 7, HF_TRAILER},
        {"transfer-encoding", 17, HF_TRANSFER_ENCODING},
        {"upgrade", 7, HF_UPGRADE},
        {"content-length", 14, HF_CONTENT_LENGTH},
        {"expect", 6, HF_EXPECT},
        {"host", 4, HF_HOST},
        {"date", 4, HF_DATE},
        {"via", 3, HF_VIA},
        {"x-forwarded-for", 15, HF_X_FORWARDED_FOR},
        {"x-forwarded-proto", 17, HF_X_FORWARDED_PROTO},
        {"x-forwarded-host", 16, HF_X_FORWARDED_HOST},
        {"x-request-id", 12, HF_X_REQUEST_ID},
        {"traceparent", 11, HF_TRACEPARENT},
        {"forwarded", 9, HF_FORWARDED},
        {"x-real-ip", 9, HF_X_REAL_IP},
        {"authorization", 13, HF_AUTHORIZATION},
        {"idempotency-key", 15, HF_IDEMPOTENCY_KEY},
    };
    if (n > 6 && (p[0] | 0x20) == 'p' && strncasecmp(p, "proxy-", 6) == 0)
        return HF_PROXY;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (known[i].len == n && strncasecmp(p, known[i].name, n) == 0)
            return known[i].id;
    return memchr(p, '_', n) ? HF_UNDERSCORE : HF_OTHER;
}

#define MAX_CONN_TOKENS 32 /* more are not looked at: their fields pass */

/* Splits Connection values into their tokens (RFC 9110 7.6.1): the fields they name are
 * hop-by-hop too. keep-alive is left out (dropped by name anyway). Returns the count. */
static int connection_tokens(const cm_str_t *v, cm_str_t *tok, int ntok)
{
    const char *p = v->p, *end = v->p + v->len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *t = p;
        while (p < end && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        size_t len = (size_t)(p - t);
        if (len && !(len == 10 && strncasecmp(t, "keep-alive", 10) == 0) && ntok < MAX_CONN_TOKENS)
            tok[ntok++] = (cm_str_t){t, len};
    }
    return ntok;
}

static int listed(const cm_str_t *tok, int ntok, const char *name, size_t len)
{
    for (int i = 0; i < ntok; i++)
        if (tok[i].len == len && strncasecmp(tok[i].p, name, len) == 0)
            return 1;
    return 0;
}

static int is_hex(const char *p, size_t n)
{
    int nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            return 0;
        nonzero |= p[i] != '0';
    }
    return nonzero;
}

static void hex_rand(uint64_t *rng, char *out, size_t n)
{
    static const char d[] = "0123456789abcdef";
    uint64_t r = 0;
    for (size_t i = 0; i < n; i++) {
        if (i % 16 == 0)
            r = gw_rand(rng) | 1;
        out[i] = d[r & 15];
        r >>= 4;
    }
}

/* W3C trace context: keep the caller's trace id and flags, with our own span id as
 * the new parent; start a trace when there is no valid header. */
static void add_traceparent(uint64_t *rng, cm_buf_t *o, const cm_str_t *given)
{
    const char *tp = given ? given->p : NULL;
    char out[56];
    if (tp && given->len == 55 && memcmp(tp, "00-", 3) == 0 && tp[35] == '-' && tp[52] == '-' &&
        is_hex(tp + 3, 32) && is_hex(tp + 36, 16) &&
        (is_hex(tp + 53, 2) || !memcmp(tp + 53, "00", 2))) {
        memcpy(out, tp, 55);
    } else {
        memcpy(out, "00-", 3);
        hex_rand(rng, out + 3, 32);
        out[35] = '-';
        memcpy(out + 52, "-01", 3);
    }
    hex_rand(rng, out + 36, 16);
    out[55] = '\0';
    cm_buf_append_str(o, "traceparent: ");
    cm_buf_append(o, out, 55);
    cm_buf_append(o, "\r\n", 2);
}

static void append_line(cm_buf_t *o, const char *name, const char *v, size_t vlen)
{
    cm_buf_append_str(o, name);
    cm_buf_append(o, ": ", 2);
    cm_buf_append(o, v, vlen);
    cm_buf_append(o, "\r\n", 2);
}

/* "Name: v1, v2, ours": every field of class id the client sent (RFC 9110 5.3 allows a
 * list to be split over lines), joined, with our own member appended. */
static void append_list(cm_buf_t *o, const cm_req_t *r, const uint8_t *cls, enum hf id,
                        const char *name, const char *ours)
{
    cm_buf_append_str(o, name);
    cm_buf_append(o, ": ", 2);
    for (int i = 0; i < r->nheaders; i++) {
        const cm_header_t *h = &r->headers[i];
        if (cls[i] == id && h->value.len) {
            cm_buf_append(o, h->value.p, h->value.len);
            cm_buf_append(o, ", ", 2);
        }
    }
    cm_buf_append_str(o, ours);
    cm_buf_append(o, "\r\n", 2);
}

/* "Host: name[:port]\r\n" (or X-Forwarded-Host) from the authority routed on. */
static void append_host(cm_buf_t *o, const char *field, const cm_uri_host_t *h)
{
    cm_buf_append_str(o, field);
    cm_buf_append(o, ": ", 2);
    cm_buf_append(o, h->name.p, h->name.len);
    if (h->port.len) {
        cm_buf_append(o, ":", 1);
        cm_buf_append(o, h->port.p, h->port.len);
    }
    cm_buf_append(o, "\r\n", 2);
}

int gw_hdr_request_head(cm_buf_t *o, const cm_req_t *r, const gw_hdr_target_t *tg,
                        const char *default_host, int chunked, uint64_t *rng, int *idem_key)
{
    uint8_t cls[CM_MAX_HEADERS] = {0};
    cm_str_t tok[MAX_CONN_TOKENS];
    int ntok = 0;
    const cm_str_t *trace = NULL;
    for (int i = 0; i < r->nheaders; i++) {
        const cm_header_t *h = &r->headers[i];
        cls[i] = (uint8_t)classify(h->name.p, h->name.len);
        if (cls[i] == HF_CONNECTION)
            ntok = connection_tokens(&h->value, tok, ntok);
        else if (cls[i] == HF_TRACEPARENT)
            trace = &h->value;
    }
    if (idem_key)
        *idem_key = 0;
    cm_buf_reserve(o, r->raw_head.len + 512);
    cm_buf_append_str(o, r->method_name);
    cm_buf_append(o, " ", 1);
    cm_buf_append(o, tg->path.p, tg->path.len); /* origin-form, always (RFC 9112 3.2.1) */
    cm_buf_append(o, tg->rest.p, tg->rest.len);
    cm_buf_append(o, " HTTP/1.1\r\n", 11);
    for (int i = 0; i < r->nheaders; i++) {
        const cm_header_t *h = &r->headers[i];
        if ((HF_REQ_DROP & HF_BIT(cls[i])) || (ntok && !(HF_NEVER_LISTED & HF_BIT(cls[i])) &&
                                               listed(tok, ntok, h->name.p, h->name.len)))
            continue;
        if (cls[i] == HF_IDEMPOTENCY_KEY && idem_key)
            *idem_key = 1;
        cm_buf_append(o, h->name.p, h->name.len);
        cm_buf_append(o, ": ", 2);
        cm_buf_append(o, h->value.p, h->value.len);
        cm_buf_append(o, "\r\n", 2);
    }
    if (tg->host.name.len)
        append_host(o, "Host", &tg->host);
    else /* HTTP/1.0 clients may omit it; HTTP/1.1 upstreams need one */
        append_line(o, "Host", default_host, strcspn(default_host, "/")); /* "h:p/" allowed */
    append_list(o, r, cls, HF_X_FORWARDED_FOR, "X-Forwarded-For", r->peer);
    cm_buf_append_str(o, "X-Forwarded-Proto: http\r\n");
    if (tg->host.name.len)
        append_host(o, "X-Forwarded-Host", &tg->host);
    append_line(o, "X-Real-IP", r->peer, strlen(r->peer));
    append_list(o, r, cls, HF_VIA, "Via", r->http_minor ? "1.1 cmesh" : "1.0 cmesh");
    add_traceparent(rng, o, trace);
    append_line(o, "X-Request-Id", r->request_id, strlen(r->request_id));
    if (chunked) {
        cm_buf_append_str(o, "Transfer-Encoding: chunked\r\n");
    } else if (r->content_length >= 0) {
        cm_buf_append_str(o, "Content-Length: ");
        cm_buf_append_u64(o, (unsigned long long)r->content_length);
        cm_buf_append(o, "\r\n", 2);
    }
    return cm_buf_append(o, "\r\n", 2);
}

void gw_hdr_response_fields(cm_buf_t *out, const char *head, const gw_hdr_off_t *h, int n)
{
    uint8_t cls[CM_MAX_HEADERS] = {0};
    cm_str_t tok[MAX_CONN_TOKENS]; /* the upstream's Connection lists more hop-by-hop fields */
    int ntok = 0;
    for (int i = 0; i < n && i < CM_MAX_HEADERS; i++) {
        cls[i] = (uint8_t)classify(head + h[i].no, h[i].nl);
        if (cls[i] == HF_CONNECTION)
            ntok = connection_tokens(&(cm_str_t){head + h[i].vo, h[i].vl}, tok, ntok);
    }
    for (int i = 0; i < n && i < CM_MAX_HEADERS; i++) {
        const char *name = head + h[i].no;
        if ((HF_RES_DROP & HF_BIT(cls[i])) || (ntok && listed(tok, ntok, name, h[i].nl)))
            continue;
        cm_buf_append(out, name, h[i].nl);
        cm_buf_append(out, ": ", 2);
        cm_buf_append(out, head + h[i].vo, h[i].vl);
        cm_buf_append(out, "\r\n", 2);
    }
}
