/* tests/unit/test_parsepool.c: a parser's tables are taken from its pool when a request
 * begins and given back when the request is taken, so a parser between requests holds
 * none; the pool reuses them (no malloc per request) and keeps no more than asked. */
#include <string.h>

#include <criterion/criterion.h>

#include "core/parser.h"

static const cm_parser_limits_t limits = {.max_header = 1024, .max_uri = 256, .max_body = 64};

static int takes; /* on_take's running sum */

static void on_take(void *arg, int delta)
{
    cr_assert_eq(arg, &takes);
    takes += delta;
}

/* Feeds s whole; returns the event of the last feed. */
static cm_parse_event_t feed(cm_parser_t *p, const char *s, cm_req_t *req)
{
    size_t len = strlen(s), used = 0;
    cm_parse_event_t ev = CM_PARSE_MORE;
    while (len) {
        ev = cm_parser_feed(p, s, len, &used);
        s += used;
        len -= used;
        if (ev == CM_PARSE_DONE)
            cm_parser_take(p, req);
        if (ev == CM_PARSE_ERROR || (used == 0 && ev == CM_PARSE_MORE))
            break;
    }
    return ev;
}

Test(parsepool, tables_are_held_only_while_a_request_is_parsed)
{
    cm_parse_pool_t pool = {.keep = 2, .on_take = on_take, .arg = &takes};
    cm_parser_t p;
    cm_req_t req = {0};
    takes = 0;
    cm_parser_init(&p, &limits);
    cm_parser_set_pool(&p, &pool);
    cr_assert_null(p.msg, "a fresh parser holds no tables");

    cr_assert_eq(feed(&p, "GET /a HTTP/1.1\r\nHost: x\r\n", &req), CM_PARSE_MORE);
    cr_assert_not_null(p.msg, "half a head is held");
    cr_assert_eq(pool.in_use, 1);
    cr_assert_eq(takes, 1);
    cm_parse_msg_t *first = p.msg;

    cr_assert_eq(feed(&p, "X-A: 1\r\n\r\n", &req), CM_PARSE_DONE);
    cr_assert_null(p.msg, "taken: the tables went back");
    cr_assert_eq(pool.in_use, 0);
    cr_assert_eq(pool.nfree, 1);
    cr_assert_eq(takes, 0);
    cr_assert_eq(req.nheaders, 2);
    cr_assert_eq(req.headers[1].value.len, 1);
    cr_assert_eq(memcmp(req.headers[1].value.p, "1", 1), 0, "the request owns its bytes");
    cr_assert_eq(memcmp(req.path.p, "/a", 2), 0);

    /* the next request reuses the same tables */
    cr_assert_eq(feed(&p, "GET /b HTTP/1.1\r\nHost: y\r\n\r\n", &req), CM_PARSE_DONE);
    cr_assert_eq(pool.nfree, 1);
    cr_assert_eq(pool.free, first, "reused, not allocated again");
    cr_assert_eq(memcmp(req.path.p, "/b", 2), 0);

    /* a parser freed mid-request gives its tables back too */
    cr_assert_eq(feed(&p, "GET /c HTTP/1.1\r\n", &req), CM_PARSE_MORE);
    cr_assert_eq(pool.in_use, 1);
    cm_parser_free(&p);
    cr_assert_eq(pool.in_use, 0);
    cr_assert_eq(takes, 0);

    cm_buf_free(&req.raw_head);
    cm_buf_free(&req.raw_body);
    cm_parse_pool_free(&pool);
    cr_assert_null(pool.free);
}

Test(parsepool, keeps_no_more_idle_tables_than_asked)
{
    enum { N = 5 };
    cm_parse_pool_t pool = {.keep = 2};
    cm_parser_t p[N];
    cm_req_t req[N];
    memset(req, 0, sizeof req);
    for (int i = 0; i < N; i++) { /* N requests in flight at once */
        cm_parser_init(&p[i], &limits);
        cm_parser_set_pool(&p[i], &pool);
        cr_assert_eq(
            feed(&p[i], "POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{", &req[i]),
            CM_PARSE_MORE);
    }
    cr_assert_eq(pool.in_use, N);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(feed(&p[i], "}", &req[i]), CM_PARSE_DONE);
        cr_assert_eq(req[i].body.len, 2);
        cr_assert_eq(memcmp(req[i].body.p, "{}", 2), 0);
    }
    cr_assert_eq(pool.in_use, 0);
    cr_assert_eq(pool.nfree, 2, "the rest were freed");
    for (int i = 0; i < N; i++) {
        cm_parser_free(&p[i]);
        cm_buf_free(&req[i].raw_head);
        cm_buf_free(&req[i].raw_body);
    }
    cm_parse_pool_free(&pool);
}

Test(parsepool, without_a_pool_each_request_allocates_and_frees)
{
    cm_parser_t p;
    cm_req_t req = {0};
    cm_parser_init(&p, &limits);
    cr_assert_eq(feed(&p, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &req), CM_PARSE_DONE);
    cr_assert_null(p.msg);
    cr_assert_eq(feed(&p, "GET / HTTP/1.1\r\n", &req), CM_PARSE_MORE);
    cr_assert_not_null(p.msg);
    cm_parser_free(&p); /* ASan: nothing leaks */
    cm_buf_free(&req.raw_head);
    cm_buf_free(&req.raw_body);
}
