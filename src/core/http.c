/* core/http.c: the handler-facing half of a request: header and query lookup, and the
 * response builders. Rendering and sending live in server.c (cm_res_send). */
#include "core/http.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/json.h"
#include "core/num.h"
#include "core/uri.h"

const char *cm_req_header(const cm_req_t *req, const char *name, size_t *len)
{
    size_t nlen = strlen(name);
    for (int i = 0; i < req->nheaders; i++) {
        const cm_header_t *h = &req->headers[i];
        if (h->name.len == nlen && strncasecmp(h->name.p, name, nlen) == 0) {
            if (len)
                *len = h->value.len;
            return h->value.p;
        }
    }
    return NULL;
}

const char *cm_req_bearer(const cm_req_t *req, size_t *len)
{
    size_t n;
    const char *h = cm_req_header(req, "Authorization", &n);
    if (!h || n < 7 || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    size_t i = 7;
    while (i < n && h[i] == ' ')
        i++;
    if (i == n)
        return NULL;
    *len = n - i;
    return h + i;
}

/* Percent-decodes src into out; '+' is a space (form encoding, as browsers send). */
static int decode(const char *src, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        int v;
        if (c == '+') {
            c = ' ';
        } else if (c == '%' && (v = cm_uri_pct_value(src + i, len - i)) >= 0) {
            c = (char)v; /* a malformed escape is kept as it is */
            i += 2;
        }
        if (n + 1 >= cap)
            return -ENOSPC;
        out[n++] = c;
    }
    out[n] = '\0';
    return (int)n;
}

int cm_req_query(const cm_req_t *req, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    const char *p = req->query.p, *end = p + req->query.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pend = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pend - p));
        const char *kend = eq ? eq : pend;
        if ((size_t)(kend - p) == nlen && memcmp(p, name, nlen) == 0) {
            const char *v = eq ? eq + 1 : pend;
            return decode(v, (size_t)(pend - v), out, cap);
        }
        p = pend + 1;
    }
    return -ENOENT;
}

int cm_req_param_id(const cm_req_t *req, int i, int64_t *out)
{
    if (i >= req->nparams)
        return -EINVAL;
    const cm_str_t *s = &req->params[i];
    return cm_num_parse(s->p, s->len, 1, INT64_MAX, out) < 0 ? -EINVAL : 0;
}

int cm_res_header(cm_req_t *req, const char *name, const char *fmt, ...)
{
    if (strcasecmp(name, "Content-Type") == 0)
        req->content_type_set = 1;
    va_list ap;
    va_start(ap, fmt);
    int rc = cm_buf_appendf(&req->res_headers, "%s: ", name);
    if (rc == 0)
        rc = cm_buf_vappendf(&req->res_headers, fmt, ap);
    if (rc == 0)
        rc = cm_buf_append(&req->res_headers, "\r\n", 2);
    va_end(ap);
    return rc;
}

int cm_res_header_str(cm_req_t *req, const char *name, const char *value)
{
    if (strcasecmp(name, "Content-Type") == 0)
        req->content_type_set = 1;
    cm_buf_t *b = &req->res_headers;
    size_t nl = strlen(name), vl = strlen(value);
    if (cm_buf_reserve(b, nl + vl + 4) < 0)
        return -ENOMEM;
    cm_buf_append(b, name, nl);
    cm_buf_append(b, ": ", 2);
    cm_buf_append(b, value, vl);
    return cm_buf_append(b, "\r\n", 2);
}

static void verror_body(cm_req_t *req, const char *field, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    cm_buf_reset(&req->res_body);
    cm_buf_append_str(&req->res_body, "{\"error\":");
    cm_json_str(&req->res_body, msg, strlen(msg));
    if (field) {
        cm_buf_append_str(&req->res_body, ",\"field\":");
        cm_json_str(&req->res_body, field, strlen(field));
    }
    cm_buf_append(&req->res_body, "}", 1);
}

void cm_res_error_body(cm_req_t *req, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror_body(req, field, fmt, ap);
    va_end(ap);
}

void cm_res_error(cm_req_t *req, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror_body(req, NULL, fmt, ap);
    va_end(ap);
    cm_res_send(req, status);
}

void cm_res_error_field(cm_req_t *req, int status, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror_body(req, field, fmt, ap);
    va_end(ap);
    cm_res_send(req, status);
}

const char *cm_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 499: /* nginx's: the client left before its answer */
        return "Client Closed Request";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}
