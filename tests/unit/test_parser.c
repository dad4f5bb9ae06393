/* tests/unit/test_parser.c: request framing, one request at a time and pipelined,
 * and every ambiguous or oversized head refused with its status. */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "core/parser.h"

static const cm_parser_limits_t limits = {.max_header = 1024, .max_uri = 256, .max_body = 64};

/* Feeds all of s; returns the last event, filling req on DONE (first request only). */
static cm_parse_event_t feed_all(cm_parser_t *p, const char *s, size_t len, cm_req_t *req,
                                 int *done)
{
    cm_parse_event_t ev = CM_PARSE_MORE;
    while (len) {
        size_t used = 0;
        ev = cm_parser_feed(p, s, len, &used);
        s += used;
        len -= used;
        if (ev == CM_PARSE_ERROR)
            return ev;
        if (ev == CM_PARSE_DONE) {
            cm_parser_take(p, req);
            (*done)++;
        }
        if (used == 0 && ev == CM_PARSE_MORE)
            break;
    }
    return ev;
}

static int parse_status(const char *raw)
{
    cm_parser_t p;
    cm_req_t req = {0};
    int done = 0;
    cm_parser_init(&p, &limits);
    cm_parse_event_t ev = feed_all(&p, raw, strlen(raw), &req, &done);
    int status = ev == CM_PARSE_ERROR ? p.error_status : (done ? 200 : 0);
    cm_parser_free(&p);
    cm_buf_free(&req.raw_head);
    cm_buf_free(&req.raw_body);
    return status;
}

Test(parser, parses_method_path_query_headers_and_body)
{
    const char raw[] =
        "POST /users?limit=5 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 2\r\n\r\n{}";
    cm_parser_t p;
    cm_req_t req = {0};
    int done = 0;
    cm_parser_init(&p, &limits);
    feed_all(&p, raw, sizeof raw - 1, &req, &done);
    cr_assert_eq(done, 1);
    cr_assert_eq(req.method, CM_POST);
    cr_assert_str_eq(req.method_name, "POST");
    cr_assert_eq(req.path.len, 6);
    cr_assert(memcmp(req.path.p, "/users", 6) == 0);
    cr_assert_eq(req.query.len, 7);
    cr_assert_eq(req.nheaders, 3);
    size_t len;
    const char *ct = cm_req_header(&req, "content-type", &len);
    cr_assert_not_null(ct);
    cr_assert_eq(len, 16);
    cr_assert_eq(req.body.len, 2);
    cr_assert(req.keep_alive);
    cm_parser_free(&p);
    cm_buf_free(&req.raw_head);
    cm_buf_free(&req.raw_body);
}

Test(parser, byte_at_a_time_gives_the_same_request)
{
    const char raw[] =
        "PUT /users/7 HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nX-A: b\r\n\r\n{\"name\":1}x";
    cm_parser_t p;
    cm_req_t req = {0};
    int done = 0;
    cm_parser_init(&p, &limits);
    for (size_t i = 0; i < sizeof raw - 1; i++)
        cr_assert_neq(feed_all(&p, raw + i, 1, &req, &done), CM_PARSE_ERROR);
    cr_assert_eq(done, 1);
    cr_assert_eq(req.method, CM_PUT);
    cr_assert_eq(req.body.len, 11);
    cr_assert(memcmp(req.body.p, "{\"name\":1}x", 11) == 0);
    cm_parser_free(&p);
    cm_buf_free(&req.raw_head);
    cm_buf_free(&req.raw_body);
}

Test(parser, pipelined_requests_come_out_one_by_one)
{
    const char raw[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /bb HTTP/1.1\r\nHost: x\r\n\r\nGET "
                       "/ccc HTTP/1.1\r\nHost: x\r\n\r\n";
    cm_parser_t p;
    cm_parser_init(&p, &limits);
    const char *s = raw;
    size_t left = sizeof raw - 1;
    size_t lens[3];
    int n = 0;
    while (left && n < 3) {
        size_t used;
        cm_parse_event_t ev = cm_parser_feed(&p, s, left, &used);
        s += used;
        left -= used;
        if (ev == CM_PARSE_DONE) {
            cm_req_t req = {0};
            cm_parser_take(&p, &req);
            lens[n++] = req.path.len;
            cm_buf_free(&req.raw_head);
            cm_buf_free(&req.raw_body);
        }
    }
    cr_assert_eq(n, 3);
    cr_assert_eq(lens[0], 2);
    cr_assert_eq(lens[1], 3);
    cr_assert_eq(lens[2], 4);
    cm_parser_free(&p);
}

Test(parser, chunked_body_is_reassembled)
{
    const char raw[] = "POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n";
    cm_parser_t p;
    cm_req_t req = {0};
    int done = 0;
    cm_parser_init(&p, &limits);
    feed_all(&p, raw, sizeof raw - 1, &req, &done);
    cr_assert_eq(done, 1);
    cr_assert_eq(req.body.len, 5);
    cr_assert(memcmp(req.body.p, "abcde", 5) == 0);
    cm_parser_free(&p);
    cm_buf_free(&req.raw_head);
    cm_buf_free(&req.raw_body);
}

Test(parser, expect_100_continue_reports_the_head_first)
{
    const char raw[] =
        "POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n";
    cm_parser_t p;
    cm_parser_init(&p, &limits);
    size_t used;
    cr_assert_eq(cm_parser_feed(&p, raw, sizeof raw - 1, &used), CM_PARSE_HEAD);
    cr_assert(p.expect_continue);
    cm_parser_free(&p);
}

Test(parser, content_length_with_transfer_encoding_is_400)
{
    cr_assert_eq(
        parse_status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: "
                     "chunked\r\n\r\n0\r\n\r\n"),
        400);
    cr_assert_eq(
        parse_status("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: "
                     "3\r\n\r\n0\r\n\r\n"),
        400);
}

Test(parser, differing_content_lengths_are_400)
{
    cr_assert_eq(
        parse_status(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
        400);
}

Test(parser, transfer_encoding_other_than_chunked_is_400)
{
    cr_assert_eq(parse_status("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
                 400);
    cr_assert_eq(
        parse_status("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
        400);
    cr_assert_eq(parse_status("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
                 400);
}

Test(parser, malformed_chunk_size_is_400)
{
    cr_assert_eq(
        parse_status("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        400);
    cr_assert_eq(parse_status("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "fffffffffffffffffff\r\n"),
                 400);
}

Test(parser, whitespace_before_colon_is_400)
{
    cr_assert_eq(parse_status("GET / HTTP/1.1\r\nHost: x\r\nHost : x\r\n\r\n"), 400);
}

Test(parser, obs_fold_bare_lf_bare_cr_and_nul_are_400)
{
    cr_assert_eq(parse_status("GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n  folded\r\n\r\n"), 400);
    cr_assert_eq(parse_status("GET / HTTP/1.1\nHost: x\n\n"), 400);
    cr_assert_eq(parse_status("GET / HTTP/1.1\r\nHost: x\r\nX-A: b\rc\r\n\r\n"), 400);
    const char nul[] = "GET / HTTP/1.1\r\nHost: x\r\nX-A: b\0c\r\n\r\n";
    cm_parser_t p;
    cm_parser_init(&p, &limits);
    size_t used;
    cr_assert_eq(cm_parser_feed(&p, nul, sizeof nul - 1, &used), CM_PARSE_ERROR);
    cr_assert_eq(p.error_status, 400);
    cm_parser_free(&p);
}

Test(parser, long_request_line_is_414_and_large_head_is_431)
{
    char raw[2048];
    snprintf(raw, sizeof raw, "GET /%0300d HTTP/1.1\r\nHost: x\r\n\r\n", 0);
    cr_assert_eq(parse_status(raw), 414);
    int n = snprintf(raw, sizeof raw, "GET / HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 20; i++)
        n += snprintf(raw + n, sizeof raw - (size_t)n, "X-Pad-%02d: %060d\r\n", i, 0);
    snprintf(raw + n, sizeof raw - (size_t)n, "\r\n");
    cr_assert_eq(parse_status(raw), 431);
}

/* parse_status, with the bytes fed one at a time. */
static int parse_status_bytewise(const char *raw)
{
    cm_parser_t p;
    cm_req_t req = {0};
    int done = 0, status = 0;
    cm_parser_init(&p, &limits);
    for (size_t i = 0; raw[i] && !status; i++)
        if (feed_all(&p, raw + i, 1, &req, &done) == CM_PARSE_ERROR)
            status = p.error_status;
    if (!status)
        status = done ? 200 : 0;
    cm_parser_free(&p);
    cm_buf_free(&req.raw_head);
    cm_buf_free(&req.raw_body);
    return status;
}

/* The scanner counts runs of plain bytes at once; the limits must fall on the same byte
 * as when it looks at each byte alone. */
Test(parser, limits_fall_on_the_same_byte_fed_whole_or_bytewise)
{
    char raw[2048];
    int ok = 0, over = 0;
    for (int n = 240; n < 260; n++) { /* request line around max_uri (256) */
        snprintf(raw, sizeof raw, "GET /%0*d HTTP/1.1\r\nHost: x\r\n\r\n", n - 16, 0);
        int whole = parse_status(raw);
        cr_assert_eq(whole, parse_status_bytewise(raw), "line of %d bytes", n);
        ok += whole == 200;
        over += whole == 414;
    }
    cr_assert(ok > 0 && over > 0);
    ok = over = 0;
    for (int n = 960; n < 1000; n++) { /* one header value around max_header (1024) */
        snprintf(raw, sizeof raw, "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: %0*d\r\n\r\n", n, 0);
        int whole = parse_status(raw);
        cr_assert_eq(whole, parse_status_bytewise(raw), "value of %d bytes", n);
        ok += whole == 200;
        over += whole == 431;
        /* not terminated: the limit trips as the bytes come, not at the line's end */
        snprintf(raw, sizeof raw, "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: %0*d", n + 8, 0);
        cr_assert_eq(parse_status(raw), parse_status_bytewise(raw), "open value of %d", n);
    }
    cr_assert(ok > 0 && over > 0);
    snprintf(raw, sizeof raw, "GET /%0300d", 0); /* an endless request line */
    cr_assert_eq(parse_status(raw), 414);
}

Test(parser, body_over_limit_is_413_for_both_framings)
{
    cr_assert_eq(parse_status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n"), 413);
    char raw[512];
    snprintf(
        raw, sizeof raw,
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n%064d\r\n1\r\nx\r\n",
        0);
    cr_assert_eq(parse_status(raw), 413);
}

Test(parser, unsupported_expect_is_417)
{
    cr_assert_eq(
        parse_status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: x\r\n\r\na"), 417);
}

Test(parser, http10_without_keep_alive_is_not_keep_alive)
{
    const char raw[] = "GET / HTTP/1.0\r\n\r\n";
    cm_parser_t p;
    cm_req_t req = {0};
    int done = 0;
    cm_parser_init(&p, &limits);
    feed_all(&p, raw, sizeof raw - 1, &req, &done);
    cr_assert_eq(done, 1);
    cr_assert_not(req.keep_alive);
    cm_parser_free(&p);
    cm_buf_free(&req.raw_head);
    cm_buf_free(&req.raw_body);
}

/* --- streaming mode --- */

static const cm_parser_limits_t stream_limits = {
    .max_header = 1024, .max_uri = 256, .max_body = 64, .stream = 1};

typedef struct {
    int heads, dones, error;
    char body[256];
    size_t body_len;
    size_t consumed; /* bytes used up to and including the first DONE */
    cm_req_t req;
} stream_log_t;

/* Feeds raw in pieces of at most step bytes, as reads would, and records the events;
 * stops after the first request's DONE, like the server. */
static void stream_feed(cm_parser_t *p, const char *raw, size_t len, size_t step, stream_log_t *out)
{
    size_t off = 0;
    while (off < len && !out->dones) {
        size_t n = len - off < step ? len - off : step, done_here = 0;
        while (done_here < n && !out->dones) {
            size_t used = 0;
            cm_parse_event_t ev = cm_parser_feed(p, raw + off + done_here, n - done_here, &used);
            done_here += used;
            if (ev == CM_PARSE_ERROR) {
                out->error = p->error_status;
                return;
            } else if (ev == CM_PARSE_HEAD) {
                cr_assert_eq(out->heads, 0);
                out->heads++;
                cm_parser_take(p, &out->req);
            } else if (ev == CM_PARSE_BODY) {
                cr_assert_eq(out->heads, 1, "BODY only after HEAD");
                cr_assert(out->body_len + p->piece_len <= sizeof out->body);
                memcpy(out->body + out->body_len, p->piece, p->piece_len);
                out->body_len += p->piece_len;
            } else if (ev == CM_PARSE_DONE) {
                out->dones++;
            } else if (used == 0) {
                break;
            }
        }
        off += done_here;
    }
    out->consumed = off;
}

static void stream_log_free(stream_log_t *l)
{
    cm_buf_free(&l->req.raw_head);
    cm_buf_free(&l->req.raw_body);
}

Test(parser, stream_reports_head_then_body_pieces_then_done)
{
    const char raw[] = "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world";
    for (size_t step = 1; step <= sizeof raw; step += 5) {
        cm_parser_t p;
        stream_log_t l = {0};
        cm_parser_init(&p, &stream_limits);
        stream_feed(&p, raw, sizeof raw - 1, step, &l);
        cr_assert_eq(l.error, 0);
        cr_assert_eq(l.heads, 1);
        cr_assert_eq(l.dones, 1, "step %zu", step);
        cr_assert_eq(l.req.content_length, 11);
        cr_assert(l.req.has_body);
        cr_assert_eq(l.req.http_minor, 1);
        cr_assert_eq(l.req.body.len, 0, "the body is never accumulated");
        cr_assert_eq(l.body_len, 11);
        cr_assert_eq(memcmp(l.body, "hello world", 11), 0);
        cr_assert_eq(l.req.path.len, 3);
        stream_log_free(&l);
        cm_parser_free(&p);
    }
}

Test(parser, stream_reports_head_and_done_for_a_bodyless_request)
{
    const char raw[] = "GET /x HTTP/1.0\r\n\r\n";
    cm_parser_t p;
    stream_log_t l = {0};
    cm_parser_init(&p, &stream_limits);
    stream_feed(&p, raw, sizeof raw - 1, sizeof raw, &l);
    cr_assert_eq(l.heads, 1);
    cr_assert_eq(l.dones, 1);
    cr_assert_eq(l.body_len, 0);
    cr_assert_eq(l.req.content_length, -1);
    cr_assert_not(l.req.has_body);
    cr_assert_eq(l.req.http_minor, 0);
    stream_log_free(&l);
    cm_parser_free(&p);
}

Test(parser, stream_removes_chunked_framing)
{
    const char raw[] = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n";
    for (size_t step = 1; step <= sizeof raw; step += 3) {
        cm_parser_t p;
        stream_log_t l = {0};
        cm_parser_init(&p, &stream_limits);
        stream_feed(&p, raw, sizeof raw - 1, step, &l);
        cr_assert_eq(l.error, 0);
        cr_assert_eq(l.dones, 1);
        cr_assert(l.req.has_body);
        cr_assert_eq(l.req.content_length, -1);
        cr_assert_eq(l.body_len, 11, "step %zu: %zu", step, l.body_len);
        cr_assert_eq(memcmp(l.body, "hello world", 11), 0);
        stream_log_free(&l);
        cm_parser_free(&p);
    }
}

Test(parser, stream_still_refuses_bodies_over_max_body)
{
    char raw[512];
    snprintf(
        raw, sizeof raw,
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n%064d\r\n1\r\nx\r\n",
        0);
    cm_parser_t p;
    stream_log_t l = {0};
    cm_parser_init(&p, &stream_limits);
    stream_feed(&p, raw, strlen(raw), 7, &l);
    cr_assert_eq(l.heads, 1);
    cr_assert_eq(l.error, 413);
    stream_log_free(&l);
    cm_parser_free(&p);

    stream_log_t l2 = {0};
    cm_parser_init(&p, &stream_limits);
    const char big[] = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n";
    stream_feed(&p, big, sizeof big - 1, sizeof big, &l2);
    cr_assert_eq(l2.heads, 0, "refused at the head");
    cr_assert_eq(l2.error, 413);
    cm_parser_free(&p);
}

Test(parser, stream_stops_at_the_end_of_the_first_pipelined_request)
{
    const char first[] = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
    const char second[] = "GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
    char raw[256];
    snprintf(raw, sizeof raw, "%s%s", first, second);
    cm_parser_t p;
    stream_log_t l = {0};
    cm_parser_init(&p, &stream_limits);
    stream_feed(&p, raw, strlen(raw), sizeof raw, &l);
    cr_assert_eq(l.dones, 1);
    cr_assert_eq(l.consumed, sizeof first - 1, "the second request is left unread");
    stream_log_free(&l);

    stream_log_t l2 = {0};
    stream_feed(&p, raw + l.consumed, strlen(raw) - l.consumed, sizeof raw, &l2);
    cr_assert_eq(l2.heads, 1);
    cr_assert_eq(l2.dones, 1);
    cr_assert_eq(l2.req.path.len, 2);
    cr_assert_eq(memcmp(l2.req.path.p, "/b", 2), 0);
    stream_log_free(&l2);
    cm_parser_free(&p);
}

/* RFC 9112 3.2: Host is required in HTTP/1.1, once, and must be a valid host[:port]. */
Test(parser, host_missing_repeated_or_invalid_is_400)
{
    cr_assert_eq(parse_status("GET / HTTP/1.1\r\n\r\n"), 400);
    cr_assert_eq(parse_status("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
    cr_assert_eq(parse_status("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"), 400);
    const char *bad[] = {"a b/c", "a/c",  "a@b",    "x:99999", "x:8o", "x:123456",
                         "[zz]",  "[::1", "[::1]x", "%zz",     "a\"b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char raw[128];
        snprintf(raw, sizeof raw, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", bad[i]);
        cr_assert_eq(parse_status(raw), 400, "Host: %s", bad[i]);
    }
    const char *good[] = {"",          "x",
                          "x:80",      "127.0.0.1:8080",
                          "[::1]",     "[::1]:80",
                          "a-b.c_d~e", "%41pi.example",
                          "x:",        "xn--bcher-kva.example"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char raw[128];
        snprintf(raw, sizeof raw, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", good[i]);
        cr_assert_eq(parse_status(raw), 200, "Host: %s", good[i]);
    }
    cr_assert_eq(parse_status("GET / HTTP/1.0\r\n\r\n"), 200, "HTTP/1.0 may omit Host");
}

/* Feeds raw step bytes at a time (as reads would) and returns the status as parse_status
 * does: the error's, 200 after a DONE, else 0. */
static int parse_status_step(const char *raw, size_t step)
{
    cm_parser_t p;
    cm_req_t req = {0};
    int done = 0, status = 0;
    size_t len = strlen(raw);
    cm_parser_init(&p, &limits);
    for (size_t off = 0; off < len && !status; off += step) {
        size_t n = len - off < step ? len - off : step;
        if (feed_all(&p, raw + off, n, &req, &done) == CM_PARSE_ERROR)
            status = p.error_status;
    }
    if (!status && done)
        status = 200;
    cm_parser_free(&p);
    cm_buf_free(&req.raw_head);
    cm_buf_free(&req.raw_body);
    return status;
}

#define CHUNKED_HEAD "POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

Test(parser, chunk_framing_deviations_are_400_whole_and_bytewise)
{
    static const char *const bad[] = {
        CHUNKED_HEAD "5\r\nhelloXX0\r\n\r\n",            /* two bytes other than CRLF after data */
        CHUNKED_HEAD "5\r\nhello\n0\r\n\r\n",            /* bare LF after data */
        CHUNKED_HEAD "5\r\nhello\r0\r\n\r\n",            /* bare CR after data */
        CHUNKED_HEAD "5\rXhello\r\n0\r\n\r\n",           /* a byte other than LF after a size CR */
        CHUNKED_HEAD "5\nhello\r\n0\r\n\r\n",            /* bare LF ending a size line */
        CHUNKED_HEAD "5;a=b\nhello\r\n0\r\n\r\n",        /* bare LF in an extension */
        CHUNKED_HEAD "5 zz\r\nhello\r\n0\r\n\r\n",       /* garbage after the size */
        CHUNKED_HEAD "5\r\nhello\r\n0\r\nT: 1\n\r\n",    /* bare LF in a trailer */
        CHUNKED_HEAD "5\r\nhello\r\n0\r\n\n",            /* bare LF ending the trailers */
        CHUNKED_HEAD "5\r\nhello\r\n0\r\n T: 1\r\n\r\n", /* obs-fold in the trailers */
        CHUNKED_HEAD "5\r\nhello\r\n0\r\nT : 1\r\n\r\n", /* space before a trailer's colon */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(parse_status(bad[i]), 400, "case %zu whole", i);
        for (size_t step = 1; step <= 7; step++)
            cr_assert_eq(parse_status_step(bad[i], step), 400, "case %zu, %zu bytes a time", i,
                         step);
    }
    /* the exact framing, with an extension and a trailer, bytewise too */
    const char *good = CHUNKED_HEAD "5;ext=\"v\"\r\nhello\r\n0\r\nT: 1\r\n\r\n";
    for (size_t step = 1; step <= 7; step++)
        cr_assert_eq(parse_status_step(good, step), 200, "%zu bytes a time", step);
}

Test(parser, field_values_are_trimmed_of_ows_at_both_ends)
{
    const char raw[] = "GET / HTTP/1.1\r\nHost: x \r\nX-A: \t v 1 \t\r\nX-B: \t \r\nX-C: c\r\n\r\n";
    for (size_t step = 1; step <= sizeof raw; step += 3) {
        cm_parser_t p;
        cm_req_t req = {0};
        int done = 0;
        cm_parser_init(&p, &limits);
        for (size_t off = 0; off < sizeof raw - 1; off += step)
            feed_all(&p, raw + off, sizeof raw - 1 - off < step ? sizeof raw - 1 - off : step, &req,
                     &done);
        cr_assert_eq(done, 1);
        size_t len;
        const char *v = cm_req_header(&req, "X-A", &len);
        cr_assert(v && len == 3 && memcmp(v, "v 1", 3) == 0, "X-A '%.*s'", (int)len, v);
        v = cm_req_header(&req, "X-B", &len);
        cr_assert(v && len == 0, "X-B is empty, not '%.*s'", (int)len, v);
        v = cm_req_header(&req, "X-C", &len);
        cr_assert(v && len == 1 && v[0] == 'c', "X-C stays its own field");
        v = cm_req_header(&req, "Host", &len);
        cr_assert(v && len == 1);
        cm_parser_free(&p);
        cm_buf_free(&req.raw_head);
        cm_buf_free(&req.raw_body);
    }
}

Test(parser, trailer_fields_are_dropped_not_merged_into_the_head)
{
    const char raw[] = CHUNKED_HEAD "5\r\nhello\r\n0\r\nAuthorization: Bearer x\r\n\r\n";
    cm_parser_t p;
    cm_req_t req = {0};
    int done = 0;
    cm_parser_init(&p, &limits);
    feed_all(&p, raw, sizeof raw - 1, &req, &done);
    cr_assert_eq(done, 1);
    cr_assert_null(cm_req_header(&req, "Authorization", NULL));
    cr_assert_eq(req.nheaders, 2);
    cr_assert_eq(req.body.len, 5);
    cm_parser_free(&p);
    cm_buf_free(&req.raw_head);
    cm_buf_free(&req.raw_body);
}

Test(parser, nothing_after_a_request_that_ends_the_connection_is_parsed)
{
    static const char *const closing[] = {
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof closing / sizeof closing[0]; i++) {
        char raw[512];
        snprintf(raw, sizeof raw, "%sDELETE /x HTTP/1.1\r\nHost: x\r\n\r\n\n\n\x01garbage",
                 closing[i]);
        cm_parser_t p;
        cm_req_t req = {0};
        int done = 0;
        cm_parser_init(&p, &limits);
        cr_assert_neq(feed_all(&p, raw, strlen(raw), &req, &done), CM_PARSE_ERROR, "case %zu", i);
        cr_assert_eq(done, 1, "case %zu: %d requests", i, done);
        cr_assert_not(req.keep_alive, "case %zu", i);
        cr_assert_not(cm_parser_mid_request(&p));
        cm_parser_free(&p);
        cm_buf_free(&req.raw_head);
        cm_buf_free(&req.raw_body);
    }
}

Test(parser, trailers_and_chunk_extensions_count_against_max_header)
{
    char raw[4096];
    int n = snprintf(raw, sizeof raw, CHUNKED_HEAD "1;e=");
    memset(raw + n, 'x', 1100);
    n += 1100;
    snprintf(raw + n, sizeof raw - (size_t)n, "\r\nh\r\n0\r\n\r\n");
    cr_assert_eq(parse_status(raw), 431);
    n = snprintf(raw, sizeof raw, CHUNKED_HEAD "1\r\nh\r\n0\r\nT: ");
    memset(raw + n, 'x', 1100);
    n += 1100;
    snprintf(raw + n, sizeof raw - (size_t)n, "\r\n\r\n");
    cr_assert_eq(parse_status(raw), 431);
}

Test(parser, connect_is_501_and_upgrade_is_served_as_an_ordinary_request)
{
    cr_assert_eq(parse_status("CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n"), 501);
    /* RFC 9110 7.8: Upgrade may be ignored; what follows is the next request, not a tunnel */
    const char raw[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n"
                       "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n";
    cm_parser_t p;
    cm_req_t req = {0};
    int done = 0;
    cm_parser_init(&p, &limits);
    cr_assert_neq(feed_all(&p, raw, sizeof raw - 1, &req, &done), CM_PARSE_ERROR);
    cr_assert_eq(done, 2);
    cr_assert_eq(req.path.len, 2, "the second request is parsed as one");
    cm_parser_free(&p);
    cm_buf_free(&req.raw_head);
    cm_buf_free(&req.raw_body);
}
