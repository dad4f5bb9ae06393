/* core/parser.c: request framing over llhttp (see parser.h), and the gateway's response
 * parsing. llhttp is compiled in strict mode with no lenient flag set, so chunk framing
 * is exact (CRLF after chunk data and size lines, no bare LF in extensions or trailers).
 * A small scanner still looks at head bytes before llhttp does, for the size limits and
 * for errors that name the problem: any byte sequence two implementations could frame
 * differently is refused. */
#include "core/parser.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static cm_parser_t *of(llhttp_t *hp)
{
    return (cm_parser_t *)hp->data;
}

static int fail(cm_parser_t *p, int status, const char *msg)
{
    p->pending = CM_PARSE_ERROR;
    p->error_status = status;
    p->error_msg = msg;
    return -1;
}

/* Chunk extensions and trailers are read and dropped, but count against max_header so
 * no client can keep a body going with them forever. */
static int count_extra(cm_parser_t *p, size_t len)
{
    p->extra_seen += len;
    if (p->extra_seen > p->limits.max_header)
        return fail(p, 431, "chunk extensions or trailer fields too large");
    return 0;
}

static int on_chunk_extension(llhttp_t *hp, const char *at, size_t len)
{
    (void)at;
    return count_extra(of(hp), len);
}

static int append_head(cm_parser_t *p, const char *at, size_t len)
{
    if (cm_buf_append(&p->msg->head, at, len) < 0)
        return fail(p, 500, "out of memory");
    return 0;
}

static cm_parse_msg_t *msg_take(cm_parse_pool_t *pool)
{
    cm_parse_msg_t *m = pool ? pool->free : NULL;
    if (m) {
        pool->free = m->next;
        pool->nfree--;
    } else {
        m = malloc(sizeof *m);
        if (!m)
            return NULL;
        m->head = (cm_buf_t)CM_BUF_INIT;
        m->body = (cm_buf_t)CM_BUF_INIT;
    }
    if (pool) {
        pool->in_use++;
        if (pool->on_take)
            pool->on_take(pool->arg, 1);
    }
    return m;
}

static void msg_destroy(cm_parse_msg_t *m)
{
    cm_buf_free(&m->head);
    cm_buf_free(&m->body);
    free(m);
}

/* Gives p's message state back (kept for the next request, or freed). */
static void msg_give_back(cm_parser_t *p)
{
    cm_parse_msg_t *m = p->msg;
    cm_parse_pool_t *pool = p->pool;
    if (!m)
        return;
    p->msg = NULL;
    if (!pool) {
        msg_destroy(m);
        return;
    }
    pool->in_use--;
    if (pool->on_take)
        pool->on_take(pool->arg, -1);
    if (pool->nfree >= (pool->keep ? pool->keep : CM_PARSE_POOL_KEEP)) {
        msg_destroy(m);
        return;
    }
    /* no shrinking: after cm_parser_take the buffers are the ones the request gave back,
     * already shrunk by its owner (conn.c) */
    m->next = pool->free;
    pool->free = m;
    pool->nfree++;
}

void cm_parse_pool_free(cm_parse_pool_t *pool)
{
    while (pool->free) {
        cm_parse_msg_t *m = pool->free;
        pool->free = m->next;
        msg_destroy(m);
    }
    pool->nfree = 0;
}

static int on_message_begin(llhttp_t *hp)
{
    cm_parser_t *p = of(hp);
    p->extra_seen = 0;
    if (!p->msg && !(p->msg = msg_take(p->pool)))
        return fail(p, 500, "out of memory");
    cm_parse_msg_t *m = p->msg;
    cm_buf_reset(&m->head);
    cm_buf_reset(&m->body);
    m->target_len = 0;
    m->nhdr = 0;
    m->in_value = 0;
    p->expect_continue = 0;
    p->body_seen = 0;
    return 0;
}

static int on_url(llhttp_t *hp, const char *at, size_t len)
{
    cm_parser_t *p = of(hp);
    p->msg->target_len += len;
    return append_head(p, at, len);
}

/* RFC 9110 6.5.1: trailer fields are never merged into the header section; they are
 * read (bounded) and dropped. */
static int in_trailer(const llhttp_t *hp)
{
    return (hp->flags & F_TRAILING) != 0;
}

static int on_header_field(llhttp_t *hp, const char *at, size_t len)
{
    cm_parser_t *p = of(hp);
    if (in_trailer(hp))
        return count_extra(p, len);
    cm_parse_msg_t *m = p->msg;
    if (m->in_value || m->nhdr == 0) {
        if (m->nhdr == CM_MAX_HEADERS)
            return fail(p, 431, "too many header fields");
        cm_hdr_off_t *h = &m->hdr[m->nhdr++];
        h->name_off = m->head.len;
        h->name_len = 0;
        h->value_off = 0;
        h->value_len = 0;
        m->in_value = 0;
    }
    m->hdr[m->nhdr - 1].name_len += len;
    return append_head(p, at, len);
}

static int on_header_value(llhttp_t *hp, const char *at, size_t len)
{
    cm_parser_t *p = of(hp);
    if (in_trailer(hp))
        return count_extra(p, len);
    cm_parse_msg_t *m = p->msg;
    cm_hdr_off_t *h = &m->hdr[m->nhdr - 1];
    if (!m->in_value) {
        h->value_off = m->head.len;
        m->in_value = 1;
    }
    h->value_len += len;
    return append_head(p, at, len);
}

/* RFC 9110 5.5: OWS around a value is not part of it (llhttp drops the leading run).
 * Trimmed here, once, so every consumer (auth, Idempotency-Key, framing checks, the
 * gateway's forwarding) sees the same value. */
static int on_header_value_complete(llhttp_t *hp)
{
    cm_parser_t *p = of(hp);
    cm_parse_msg_t *m = p->msg;
    if (in_trailer(hp) || !m || m->nhdr == 0)
        return 0;
    cm_hdr_off_t *h = &m->hdr[m->nhdr - 1];
    if (!m->in_value) { /* an empty value: no value callback ran */
        h->value_off = m->head.len;
        m->in_value = 1;
    }
    cm_ows_trim_end(m->head.data + h->value_off, &h->value_len);
    return 0;
}

static int name_is(const cm_parser_t *p, const cm_hdr_off_t *h, const char *name)
{
    return h->name_len == strlen(name) &&
           strncasecmp(p->msg->head.data + h->name_off, name, h->name_len) == 0;
}

static int value_is(const cm_parser_t *p, const cm_hdr_off_t *h, const char *v)
{
    return h->value_len == strlen(v) &&
           strncasecmp(p->msg->head.data + h->value_off, v, h->value_len) == 0;
}

/* RFC 9112 6.3: a message with both framings, or with framings that disagree, is
 * the classic request-smuggling vector; refuse rather than pick one. */
static int check_framing(cm_parser_t *p)
{
    int n_cl = 0, n_te = 0;
    const cm_hdr_off_t *first_cl = NULL;
    const cm_parse_msg_t *m = p->msg;
    for (int i = 0; i < m->nhdr; i++) {
        const cm_hdr_off_t *h = &m->hdr[i];
        if (name_is(p, h, "content-length")) {
            if (first_cl && (h->value_len != first_cl->value_len ||
                             memcmp(m->head.data + h->value_off, m->head.data + first_cl->value_off,
                                    h->value_len) != 0))
                return fail(p, 400, "conflicting Content-Length headers");
            if (!first_cl)
                first_cl = h;
            n_cl++;
        } else if (name_is(p, h, "transfer-encoding")) {
            if (!value_is(p, h, "chunked"))
                return fail(p, 400, "unsupported Transfer-Encoding; only chunked is accepted");
            n_te++;
        } else if (name_is(p, h, "expect")) {
            if (!value_is(p, h, "100-continue"))
                return fail(p, 417, "unsupported Expect value; only 100-continue is accepted");
            p->expect_continue = 1;
        }
    }
    if (n_te && n_cl)
        return fail(p, 400, "Content-Length together with Transfer-Encoding");
    if (n_te > 1)
        return fail(p, 400, "repeated Transfer-Encoding");
    if ((p->hp.flags & F_CONTENT_LENGTH) && p->hp.content_length > p->limits.max_body)
        return fail(p, 413, "request body too large");
    return 0;
}

static int is_unreserved_or_sub_delim(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("-._~!$&'()*+,;=", c) != NULL;
}

static int is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

/* RFC 9110 7.2 / RFC 3986 3.2.2: uri-host [ ":" port ], where uri-host is an IP-literal
 * ("[" IPv6 "]"), an IPv4 address or a reg-name (unreserved, pct-encoded, sub-delims;
 * IPv4 is a subset of it). An empty value is valid (a target without authority). */
static int host_valid(const char *v, size_t len)
{
    size_t i = 0;
    if (len && v[0] == '[') {
        const char *close = memchr(v, ']', len);
        char ip6[64];
        size_t n = close ? (size_t)(close - v) - 1 : 0;
        if (!close || n == 0 || n >= sizeof ip6)
            return 0;
        memcpy(ip6, v + 1, n);
        ip6[n] = '\0';
        struct in6_addr a;
        if (inet_pton(AF_INET6, ip6, &a) != 1)
            return 0;
        i = n + 2;
    } else {
        for (; i < len && v[i] != ':'; i++) {
            unsigned char c = (unsigned char)v[i];
            if (c == '%') {
                if (i + 2 >= len || !is_hex((unsigned char)v[i + 1]) ||
                    !is_hex((unsigned char)v[i + 2]))
                    return 0;
                i += 2;
            } else if (!is_unreserved_or_sub_delim(c)) {
                return 0;
            }
        }
    }
    if (i == len)
        return 1;
    if (v[i] != ':' || len - i - 1 > 5)
        return 0;
    unsigned port = 0;
    for (i++; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return 0;
        port = port * 10 + (unsigned)(v[i] - '0');
    }
    return port <= 65535;
}

/* RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request without Host, with more
 * than one, or with an invalid one; refused here so no service answers it and the
 * gateway never forwards it. HTTP/1.0 may omit it (but not repeat or garble it). */
static int check_host(cm_parser_t *p)
{
    const cm_hdr_off_t *host = NULL;
    const cm_parse_msg_t *m = p->msg;
    for (int i = 0; i < m->nhdr; i++) {
        const cm_hdr_off_t *h = &m->hdr[i];
        if (h->name_len != 4 || !name_is(p, h, "host"))
            continue;
        if (host)
            return fail(p, 400, "more than one Host header");
        host = h;
    }
    if (!host)
        return p->hp.http_major == 1 && p->hp.http_minor == 0
                   ? 0
                   : fail(p, 400, "missing Host header (required in HTTP/1.1)");
    if (!host_valid(m->head.data + host->value_off, host->value_len))
        return fail(p, 400, "invalid Host header; use host[:port]");
    return 0;
}

/* RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing as far as
 * any 1.0 hop is concerned: it is served, then the connection closes. */
static int keeps_alive(const cm_parser_t *p)
{
    if (p->hp.http_major == 1 && p->hp.http_minor == 0 && p->chunked)
        return 0;
    return llhttp_should_keep_alive(&p->hp);
}

static int on_headers_complete(llhttp_t *hp)
{
    cm_parser_t *p = of(hp);
    if (check_framing(p) < 0 || check_host(p) < 0)
        return -1;
    if (hp->method == HTTP_CONNECT) /* a tunnel: nothing here serves one */
        return fail(p, 501, "method CONNECT is not supported");
    /* Upgrade is not supported: the request is served as an ordinary one (RFC 9110 7.8
     * lets a server ignore it), and llhttp must not hand the rest to "another protocol". */
    hp->upgrade = 0;
    if (!(hp->flags & (F_CHUNKED | F_CONTENT_LENGTH)))
        p->expect_continue = 0; /* nothing to continue with */
    p->chunked = (hp->flags & F_CHUNKED) != 0;
    p->content_length = (hp->flags & F_CONTENT_LENGTH) ? (int64_t)hp->content_length : -1;
    p->keep_alive = keeps_alive(p); /* read now: stream mode takes the request at its head */
    p->pending = CM_PARSE_HEAD;
    if (p->limits.stream)
        return HPE_PAUSED; /* the caller takes the head before any body byte */
    return 0;
}

/* The last chunk's size line is in: what follows is the trailer section, which llhttp
 * frames as loosely as it would a head in loose mode (a bare LF ends it even in strict
 * mode), so the raw-byte scanner sees it first, exactly as it sees a head. */
static int on_chunk_header(llhttp_t *hp)
{
    cm_parser_t *p = of(hp);
    if (hp->content_length != 0)
        return 0;
    p->trailers = 1;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *hp, const char *at, size_t len)
{
    cm_parser_t *p = of(hp);
    if (len == 0)
        return 0; /* llhttp may end a span on no bytes */
    if (p->limits.stream) {
        if (p->body_seen + len > p->limits.max_body)
            return fail(p, 413, "request body too large");
        p->body_seen += len;
        p->piece = at;
        p->piece_len = len;
        p->pending = CM_PARSE_BODY;
        return HPE_PAUSED; /* one piece per feed: the caller hands it on */
    }
    if (p->msg->body.len + len > p->limits.max_body)
        return fail(p, 413, "request body too large");
    if (cm_buf_append(&p->msg->body, at, len) < 0)
        return fail(p, 500, "out of memory");
    return 0;
}

static int on_message_complete(llhttp_t *hp)
{
    cm_parser_t *p = of(hp);
    p->pending = CM_PARSE_DONE;
    if (!p->keep_alive)
        p->closed = 1;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_chunk_extension_name = on_chunk_extension,
    .on_chunk_extension_value = on_chunk_extension,
    .on_headers_complete = on_headers_complete,
    .on_chunk_header = on_chunk_header,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void cm_parser_init(cm_parser_t *p, const cm_parser_limits_t *limits)
{
    memset(p, 0, sizeof *p);
    p->limits = *limits;
    llhttp_init(&p->hp, HTTP_REQUEST, &settings); /* no lenient flag: strict framing */
    p->hp.data = p;
    p->scanning = 1;
}

void cm_parser_set_pool(cm_parser_t *p, cm_parse_pool_t *pool)
{
    p->pool = pool;
}

void cm_parser_free(cm_parser_t *p)
{
    if (p->msg) { /* a request cut short: its bytes were never swapped out */
        cm_buf_shrink(&p->msg->head, 64 * 1024);
        cm_buf_shrink(&p->msg->body, 64 * 1024);
    }
    msg_give_back(p);
}

int cm_parser_mid_request(const cm_parser_t *p)
{
    return !p->scanning || p->head_seen > 0 || p->trailers;
}

/* Scans head bytes up to the end of the head (or of data). Returns the bytes that
 * belong to the head, or -1 after fail(). */
static long scan_head(cm_parser_t *p, const char *data, size_t len)
{
    size_t i = 0;
    for (; i < len && p->scanning; i++) {
        char c = data[i];
        if (p->line_no == 0 && p->head_seen == 0 && p->line_len == 0 && (c == '\r' || c == '\n'))
            continue; /* RFC 9112 2.2: empty lines before a request line are ignored */
        if ((unsigned char)c > '\r' && p->prev != '\r' && p->line_len > 0 &&
            (p->line_no == 0 || p->seen_colon)) {
            /* The rest of the request line or of a header value: only CR, LF, NUL (all
             * below CR) and the size limits matter, so runs of other bytes are counted
             * at once. The run stops short of a limit: the byte loop reports it. */
            size_t room =
                p->limits.max_header > p->head_seen ? p->limits.max_header - p->head_seen : 0;
            if (p->line_no == 0) {
                size_t uri_room =
                    p->limits.max_uri > p->line_len ? p->limits.max_uri - p->line_len : 0;
                if (uri_room < room)
                    room = uri_room;
            }
            size_t j = i, stop = len - i < room ? len : i + room;
            while (j < stop && (unsigned char)data[j] > '\r')
                j++;
            if (j > i) {
                p->head_seen += j - i;
                p->line_len += j - i;
                p->prev = data[j - 1];
                i = j - 1;
                continue;
            }
        }
        p->head_seen++;
        if (c == '\0')
            return fail(p, 400, "NUL byte in request head");
        if (c == '\n') {
            if (p->prev != '\r')
                return fail(p, 400, "bare LF in request head; lines end with CRLF");
            if (p->line_len == 1) { /* just "\r": the empty line ends the head */
                p->scanning = 0;
                p->prev = c;
                i++;
                break;
            }
            if (p->line_no > 0 && !p->seen_colon)
                return fail(p, 400, "header line without a colon");
            p->line_no++;
            p->line_len = 0;
            p->seen_colon = 0;
            p->prev = c;
            continue;
        }
        if (p->prev == '\r')
            return fail(p, 400, "bare CR in request head");
        p->line_len++;
        if (p->line_no == 0) {
            if (p->line_len > p->limits.max_uri)
                return fail(p, 414, "request line too long");
        } else if (p->line_len == 1 && (c == ' ' || c == '\t')) {
            return fail(p, 400, "obsolete line folding in header");
        } else if (!p->seen_colon) {
            if (c == ':')
                p->seen_colon = 1;
            else if (c == ' ' || c == '\t')
                return fail(p, 400, "whitespace in or after a header name");
        }
        if (p->head_seen > p->limits.max_header)
            return fail(p, 431, "request header fields too large");
        p->prev = c;
    }
    return (long)i;
}

static void rearm_scanner(cm_parser_t *p)
{
    p->trailers = 0;
    p->scanning = 1;
    p->head_seen = 0;
    p->line_no = 0;
    p->line_len = 0;
    p->seen_colon = 0;
    p->prev = 0;
}

static int status_for(llhttp_errno_t e)
{
    switch (e) {
    case HPE_INVALID_METHOD:
        return 501;
    default:
        return 400;
    }
}

/* Stream mode stopped at HEAD or BODY on the last byte of data. The message may already
 * be over (a bodyless head, the last byte of a Content-Length body), and llhttp ends it
 * only when run again, even on no bytes: run it now, and if it ends, leave the last byte
 * unconsumed so the caller feeds it again and gets DONE (done_owed) for it. */
static void peek_end(cm_parser_t *p, const char *end, size_t *used)
{
    cm_parse_event_t ev = p->pending;
    llhttp_resume(&p->hp);
    llhttp_execute(&p->hp, end, 0); /* an error stays in llhttp: the next feed reports it */
    if (p->pending == CM_PARSE_DONE) {
        p->done_owed = 1;
        (*used)--;
    }
    p->pending = ev;
}

cm_parse_event_t cm_parser_feed(cm_parser_t *p, const char *data, size_t len, size_t *used)
{
    size_t limit = len;
    p->pending = CM_PARSE_MORE;
    if (p->done_owed) { /* llhttp ended the message with this byte; see below */
        p->done_owed = 0;
        *used = 1;
        rearm_scanner(p);
        return CM_PARSE_DONE;
    }
    if (p->closed) { /* RFC 9112 9.6: nothing after a close is processed */
        *used = len;
        return CM_PARSE_MORE;
    }
    if (p->scanning) {
        long n = scan_head(p, data, len);
        if (n < 0) {
            *used = 0;
            return CM_PARSE_ERROR;
        }
        limit = (size_t)n; /* llhttp sees no more than the scanner approved */
    }
    if (llhttp_get_errno(&p->hp) == HPE_PAUSED)
        llhttp_resume(&p->hp);
    llhttp_errno_t e = llhttp_execute(&p->hp, data, limit);
    /* paused: llhttp stopped at error_pos (after the byte that raised the event) */
    size_t n = e == HPE_PAUSED ? (size_t)(llhttp_get_error_pos(&p->hp) - data) : limit;
    *used = n;
    if (p->pending == CM_PARSE_ERROR)
        return CM_PARSE_ERROR;
    if (e != HPE_OK && e != HPE_PAUSED) {
        p->error_status = status_for(e);
        p->error_msg = llhttp_get_error_reason(&p->hp);
        if (!p->error_msg)
            p->error_msg = llhttp_errno_name(e);
        return CM_PARSE_ERROR;
    }
    if (p->pending == CM_PARSE_DONE) {
        rearm_scanner(p);
        return CM_PARSE_DONE;
    }
    if (p->trailers == 1 && e == HPE_PAUSED) {
        /* paused at the last chunk: scan the trailer section like a head (header lines) */
        rearm_scanner(p);
        p->trailers = 2;
        p->line_no = 1; /* past the request line: every line is a field line */
        if (p->pending != CM_PARSE_MORE)
            return p->pending; /* a head for 100-continue: the trailers wait for the next feed */
        size_t more = 0;
        cm_parse_event_t ev = n < len ? cm_parser_feed(p, data + n, len - n, &more) : CM_PARSE_MORE;
        *used = n + more;
        return ev;
    }
    if (p->pending == CM_PARSE_BODY || (p->pending == CM_PARSE_HEAD && p->limits.stream)) {
        if (n == limit && n > 0)
            peek_end(p, data + n, used);
        return p->pending;
    }
    if (p->pending == CM_PARSE_HEAD) {
        /* llhttp went on into the body within this chunk; report the head first
         * only when the client waits for 100-continue, else the body follows. */
        if (p->expect_continue)
            return CM_PARSE_HEAD;
    }
    return CM_PARSE_MORE;
}

static cm_method_t method_of(unsigned m, const char **name)
{
    *name = llhttp_method_name((llhttp_method_t)m);
    switch (m) {
    case HTTP_GET:
        return CM_GET;
    case HTTP_HEAD:
        return CM_HEAD;
    case HTTP_POST:
        return CM_POST;
    case HTTP_PUT:
        return CM_PUT;
    case HTTP_DELETE:
        return CM_DELETE;
    case HTTP_PATCH:
        return CM_PATCH;
    case HTTP_OPTIONS:
        return CM_OPTIONS;
    default:
        return CM_METHOD_OTHER;
    }
}

void cm_parser_take(cm_parser_t *p, cm_req_t *req)
{
    cm_parse_msg_t *m = p->msg;
    if (!m) { /* no message began (never in practice): an empty request */
        cm_buf_reset(&req->raw_head);
        cm_buf_reset(&req->raw_body);
        req->method = method_of(p->hp.method, &req->method_name);
        req->target = req->path = req->query = req->body = (cm_str_t){"", 0};
        req->nheaders = 0;
        req->keep_alive = 0;
        req->http_minor = p->hp.http_minor;
        req->content_length = -1;
        req->has_body = 0;
        return;
    }
    cm_buf_t t = req->raw_head;
    req->raw_head = m->head;
    m->head = t;
    cm_buf_reset(&m->head);
    t = req->raw_body;
    req->raw_body = m->body;
    m->body = t;
    cm_buf_reset(&m->body);

    const char *base = req->raw_head.data ? req->raw_head.data : "";
    req->method = method_of(p->hp.method, &req->method_name);
    req->target = (cm_str_t){base, m->target_len};
    const char *q = memchr(base, '?', m->target_len);
    if (q) {
        req->path = (cm_str_t){base, (size_t)(q - base)};
        req->query = (cm_str_t){q + 1, m->target_len - (size_t)(q - base) - 1};
    } else {
        req->path = req->target;
        req->query = (cm_str_t){base + m->target_len, 0};
    }
    req->nheaders = m->nhdr;
    for (int i = 0; i < m->nhdr; i++) {
        req->headers[i].name = (cm_str_t){base + m->hdr[i].name_off, m->hdr[i].name_len};
        req->headers[i].value = (cm_str_t){base + m->hdr[i].value_off, m->hdr[i].value_len};
    }
    req->body = (cm_str_t){req->raw_body.data ? req->raw_body.data : "", req->raw_body.len};
    req->keep_alive = p->keep_alive;
    req->http_minor = p->hp.http_minor;
    req->content_length = p->content_length;
    req->has_body = p->chunked || p->content_length > 0;
    msg_give_back(p); /* the request owns the bytes now; the tables go to the next one */
}

/* ------------------------------------------------------------------------- */
/* responses                                                                  */

static cm_resparse_t *rp_of(llhttp_t *hp)
{
    return hp->data;
}

static int rp_begin(llhttp_t *hp)
{
    cm_resparse_t *rp = rp_of(hp);
    rp->keep_alive = 0;
    return rp->cbs->begin(rp->arg);
}

static int rp_field(llhttp_t *hp, const char *at, size_t len)
{
    cm_resparse_t *rp = rp_of(hp);
    return rp->cbs->field(rp->arg, at, len);
}

static int rp_value(llhttp_t *hp, const char *at, size_t len)
{
    cm_resparse_t *rp = rp_of(hp);
    return rp->cbs->value(rp->arg, at, len);
}

static int rp_value_done(llhttp_t *hp)
{
    cm_resparse_t *rp = rp_of(hp);
    return rp->cbs->value_done ? rp->cbs->value_done(rp->arg) : 0;
}

static int rp_head(llhttp_t *hp)
{
    cm_resparse_t *rp = rp_of(hp);
    int64_t cl = -1;
    if ((hp->flags & F_CONTENT_LENGTH) && !(hp->flags & F_CHUNKED))
        cl = (int64_t)hp->content_length;
    hp->upgrade = 0; /* a 101 is never asked for: its body is read as any other */
    return rp->cbs->head(rp->arg, hp->status_code, cl);
}

static int rp_body(llhttp_t *hp, const char *at, size_t len)
{
    cm_resparse_t *rp = rp_of(hp);
    return rp->cbs->body(rp->arg, at, len);
}

static int rp_done(llhttp_t *hp)
{
    cm_resparse_t *rp = rp_of(hp);
    rp->keep_alive = llhttp_should_keep_alive(hp); /* before llhttp clears the flags */
    int rc = rp->cbs->done(rp->arg);
    return rc == 1 ? HPE_PAUSED : rc;
}

static const llhttp_settings_t res_settings = {
    .on_message_begin = rp_begin,
    .on_header_field = rp_field,
    .on_header_value = rp_value,
    .on_header_value_complete = rp_value_done,
    .on_headers_complete = rp_head,
    .on_body = rp_body,
    .on_message_complete = rp_done,
};

void cm_resparse_begin(cm_resparse_t *rp, const cm_resparse_cbs_t *cbs, void *arg)
{
    llhttp_init(&rp->hp, HTTP_RESPONSE, &res_settings); /* strict, as for requests */
    rp->hp.data = rp;
    rp->cbs = cbs;
    rp->arg = arg;
    rp->keep_alive = 0;
}

int cm_resparse_feed(cm_resparse_t *rp, const char *data, size_t len, size_t *used)
{
    if (llhttp_get_errno(&rp->hp) == HPE_PAUSED)
        llhttp_resume(&rp->hp);
    llhttp_errno_t e = llhttp_execute(&rp->hp, data, len);
    if (e == HPE_PAUSED) {
        *used = (size_t)(llhttp_get_error_pos(&rp->hp) - data);
        return 0;
    }
    *used = len;
    return e == HPE_OK ? 0 : -1;
}

int cm_resparse_eof(cm_resparse_t *rp)
{
    if (llhttp_get_errno(&rp->hp) == HPE_PAUSED)
        return 0; /* the message already ended */
    return llhttp_finish(&rp->hp) == HPE_OK ? 0 : -1;
}

int cm_resparse_keep_alive(const cm_resparse_t *rp)
{
    return rp->keep_alive;
}

#define STR_(x) #x
#define STR(x)  STR_(x)

const char *cm_parser_version(void)
{
    return STR(LLHTTP_VERSION_MAJOR) "." STR(LLHTTP_VERSION_MINOR) "." STR(LLHTTP_VERSION_PATCH);
}
