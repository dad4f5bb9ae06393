/* gateway/headers.h: the header rewriting of a proxied exchange. Builds the head of the
 * upstream request (origin-form target and Host as routed on, hop-by-hop fields out,
 * underscore names and client Forwarded / X-Real-IP out, X-Forwarded-For/-Proto/-Host,
 * X-Real-IP and Via, W3C traceparent continued or started, X-Request-Id) and picks the fields of
 * the upstream's answer that go to the client. Called by gateway/proxy.c; knows no sockets. */
#ifndef CMESH_GATEWAY_HEADERS_H
#define CMESH_GATEWAY_HEADERS_H

#include <stdint.h>

#include "core/buf.h"
#include "core/http.h"
#include "core/uri.h"

/* xorshift64: ids that need to be unique, not secret (trace and span ids, jitter). */
static inline uint64_t gw_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

/* What the gateway decided about the request's target (proxy.c): the request is forwarded
 * for this and nothing else, so the route matched and what the upstream sees agree. */
typedef struct gw_hdr_target {
    cm_str_t path;      /* normalized path (cm_uri_normalize()), borrowed */
    cm_str_t rest;      /* "?query" exactly as received, or empty; borrowed */
    cm_uri_host_t host; /* the authority routed on (the absolute-form target's, else Host's);
                           name empty when the client gave none */
} gw_hdr_target_t;

/* Appends to o the upstream request head for r: the request line as HTTP/1.1 in origin-form
 * (tg->path and tg->rest); the client's fields minus hop-by-hop ones (RFC 9110 7.6.1, with
 * those its Connection lists, except Host, Authorization and Idempotency-Key, which the
 * gateway relies on end to end), Proxy-*, Expect, names holding '_', Forwarded, and the
 * ones rebuilt here; Host from tg->host, or from default_host ("host:port", up to any "/")
 * when the client sent none; X-Forwarded-For (joined, the client's address appended),
 * X-Forwarded-Proto, X-Forwarded-Host (tg->host), X-Real-IP (the client's address), Via
 * (joined, ours appended); traceparent (the caller's trace id and flags with a new span id
 * from rng, or a new trace); X-Request-Id (r->request_id); Transfer-Encoding: chunked when
 * chunked, else Content-Length when r has one. *idem_key (may be NULL) is set to 1 when an
 * Idempotency-Key field is among those forwarded, else 0: retries are decided on it.
 * Returns 0 or -ENOMEM. */
int gw_hdr_request_head(cm_buf_t *o, const cm_req_t *r, const gw_hdr_target_t *tg,
                        const char *default_host, int chunked, uint64_t *rng, int *idem_key);

/* One field of an upstream's response head: offsets and lengths into the head's bytes. */
typedef struct gw_hdr_off {
    uint32_t no, nl; /* name */
    uint32_t vo, vl; /* value */
} gw_hdr_off_t;

/* Appends "Name: value\r\n" to out for each of the n fields that go to the client: not
 * the hop-by-hop ones (nor those the answer's Connection lists), not Content-Length (the
 * server frames the answer itself), not Date and X-Request-Id (the server writes its own).
 * Fields past CM_MAX_HEADERS are not looked at. */
void gw_hdr_response_fields(cm_buf_t *out, const char *head, const gw_hdr_off_t *h, int n);

#endif
