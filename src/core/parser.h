/* core/parser.h: HTTP/1.1 request framing: bytes in, complete requests out.
 * The only module that knows http-parser (so it can be swapped for llhttp). It adds
 * the checks a parser alone does not make: size limits, bare LF, NUL, obs-fold,
 * whitespace before the colon, every ambiguous Content-Length/Transfer-Encoding
 * combination, and a missing (HTTP/1.1), repeated or invalid Host (RFC 9112 3.2), each
 * refused rather than guessed. Used by server.c, one per connection. */
#ifndef CMESH_CORE_PARSER_H
#define CMESH_CORE_PARSER_H

#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

#include "core/http.h"

typedef struct cm_parser_limits {
    size_t max_header; /* bytes of request line + headers; over it 431 */
    size_t max_uri;    /* bytes of the request line; over it 414 */
    size_t max_body;   /* bytes of body, chunked or not; over it 413 */
    int stream;        /* streaming mode: HEAD always, body as BODY pieces, never kept */
} cm_parser_limits_t;

typedef enum {
    CM_PARSE_MORE,  /* every byte consumed; feed more */
    CM_PARSE_HEAD,  /* the head is complete (expect_continue tells whether to send 100);
                     * streaming mode: always reported, cm_parser_take() it now */
    CM_PARSE_BODY,  /* streaming mode only: piece/piece_len hold body bytes (de-chunked),
                     * pointing into the data just fed */
    CM_PARSE_DONE,  /* a whole request is ready: cm_parser_take() it (streaming: the
                     * body ended; nothing to take) */
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
    int64_t content_length;   /* as declared, -1 when none (read at the head: http-parser
                               * counts its own copy down while the body goes by) */
    int chunked;              /* Transfer-Encoding: chunked */
    const char *piece;        /* CM_PARSE_BODY: the bytes, borrowed from the fed data */
    size_t piece_len;
    size_t body_seen; /* streaming mode: body bytes so far, for max_body */
    int error_status;
    const char *error_msg;
} cm_parser_t;

void cm_parser_init(cm_parser_t *p, const cm_parser_limits_t *limits);
void cm_parser_free(cm_parser_t *p); /* frees the buffers */

/* Parses as much of data as makes one event; *used gets the bytes consumed.
 * Call again with the rest after handling HEAD or DONE. After ERROR stop feeding. */
cm_parse_event_t cm_parser_feed(cm_parser_t *p, const char *data, size_t len, size_t *used);

/* Moves the finished request into req: method, target/path/query, headers, body,
 * keep_alive, http_minor, content_length, has_body (streaming mode: at HEAD, body empty). The bytes
 * move by swapping buffers with req->raw_head/raw_body, so req owns them until it is reused;
 * nothing is copied. */
void cm_parser_take(cm_parser_t *p, cm_req_t *req);

/* True when the request's head was already complete (used for 408 vs silent close). */
int cm_parser_mid_request(const cm_parser_t *p);

#endif
