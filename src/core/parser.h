/* core/parser.h: HTTP/1.1 request framing: bytes in, complete requests out.
 * The only module that knows http-parser (so it can be swapped for llhttp). It adds
 * the checks a parser alone does not make: size limits, bare LF, NUL, obs-fold,
 * whitespace before the colon, and every ambiguous Content-Length/Transfer-Encoding
 * combination, each refused rather than guessed. Used by server.c, one per connection. */
#ifndef CMESH_CORE_PARSER_H
#define CMESH_CORE_PARSER_H

#include <stddef.h>

#include <http_parser.h>

#include "core/http.h"

typedef struct cm_parser_limits {
    size_t max_header; /* bytes of request line + headers; over it 431 */
    size_t max_uri;    /* bytes of the request line; over it 414 */
    size_t max_body;   /* bytes of body, chunked or not; over it 413 */
} cm_parser_limits_t;

typedef enum {
    CM_PARSE_MORE,  /* every byte consumed; feed more */
    CM_PARSE_HEAD,  /* the head is complete (expect_continue tells whether to send 100) */
    CM_PARSE_DONE,  /* a whole request is ready: cm_parser_take() it */
    CM_PARSE_ERROR, /* refused: error_status / error_msg; close after answering */
} cm_parse_event_t;

typedef struct cm_hdr_off {
    size_t name_off, name_len, value_off, value_len;
} cm_hdr_off_t;

typedef struct cm_parser {
    http_parser hp;
    cm_parser_limits_t limits;
    cm_buf_t head; /* target and header bytes of the request being parsed */
    cm_buf_t body;
    size_t target_len;
    cm_hdr_off_t hdr[CM_MAX_HEADERS];
    int nhdr;
    int in_value; /* last callback was a header value */
    /* raw-byte scan of the head, ahead of http-parser */
    int scanning;     /* still inside a head */
    size_t head_seen; /* head bytes so far */
    int line_no;      /* 0 = request line */
    size_t line_len;
    int seen_colon; /* in this header line */
    char prev;
    /* results */
    cm_parse_event_t pending; /* event raised by a callback */
    int expect_continue;      /* head asked for 100-continue */
    int error_status;
    const char *error_msg;
} cm_parser_t;

void cm_parser_init(cm_parser_t *p, const cm_parser_limits_t *limits);
void cm_parser_free(cm_parser_t *p); /* frees the buffers */

/* Parses as much of data as makes one event; *used gets the bytes consumed.
 * Call again with the rest after handling HEAD or DONE. After ERROR stop feeding. */
cm_parse_event_t cm_parser_feed(cm_parser_t *p, const char *data, size_t len, size_t *used);

/* Moves the finished request into req: method, target/path/query, headers, body,
 * keep_alive. The bytes move by swapping buffers with req->raw_head/raw_body, so
 * req owns them until it is reused; nothing is copied. */
void cm_parser_take(cm_parser_t *p, cm_req_t *req);

/* True when the request's head was already complete (used for 408 vs silent close). */
int cm_parser_mid_request(const cm_parser_t *p);

#endif
