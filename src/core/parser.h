/* core/parser.h: HTTP/1.1 framing: bytes in, complete requests out (and, for the
 * gateway, upstream responses in pieces). The only module that knows llhttp (built in
 * strict mode, every lenient flag off). It adds the checks a parser alone does not make:
 * size limits, bare LF, NUL, obs-fold, whitespace before the colon, every ambiguous
 * Content-Length/Transfer-Encoding combination, and a missing (HTTP/1.1), repeated or
 * invalid Host (RFC 9112 3.2), each refused rather than guessed; field values are
 * trimmed of OWS at both ends (RFC 9110 5.5). Used by server.c, one per connection. */
#ifndef CMESH_CORE_PARSER_H
#define CMESH_CORE_PARSER_H

#include <llhttp.h>
#include <stddef.h>
#include <stdint.h>

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
    llhttp_t hp;
    cm_parser_limits_t limits;
    cm_buf_t head; /* target and header bytes of the request being parsed */
    cm_buf_t body;
    size_t target_len;
    cm_hdr_off_t hdr[CM_MAX_HEADERS];
    int nhdr;
    int in_value;      /* last callback was a header value */
    size_t extra_seen; /* chunk-extension and trailer bytes, counted against max_header */
    int closed;        /* a request that ends the connection was parsed: the rest is dropped */
    int done_owed;     /* stream mode: llhttp ended the message on the byte fed next */
    int trailers;      /* 1: llhttp paused at the last chunk; 2: the scanner checks the
                        * trailer section that follows it */
    /* raw-byte scan of the head, ahead of llhttp */
    int scanning;     /* still inside a head */
    size_t head_seen; /* head bytes so far */
    int line_no;      /* 0 = request line */
    size_t line_len;
    int seen_colon; /* in this header line */
    char prev;
    /* results */
    cm_parse_event_t pending; /* event raised by a callback */
    int expect_continue;      /* head asked for 100-continue */
    int64_t content_length;   /* as declared, -1 when none (read at the head: llhttp
                               * counts its own copy down while the body goes by) */
    int chunked;              /* Transfer-Encoding: chunked */
    int keep_alive;           /* the request lets the connection go on (read at the head) */
    const char *piece;        /* CM_PARSE_BODY: the bytes, borrowed from the fed data */
    size_t piece_len;
    size_t body_seen; /* streaming mode: body bytes so far, for max_body */
    int error_status;
    const char *error_msg;
} cm_parser_t;

void cm_parser_init(cm_parser_t *p, const cm_parser_limits_t *limits);
void cm_parser_free(cm_parser_t *p); /* frees the buffers */

/* Parses as much of data as makes one event; *used gets the bytes consumed.
 * Call again with the rest after handling HEAD or DONE. After ERROR stop feeding.
 * After the DONE of a request that ends the connection (Connection: close, HTTP/1.0
 * without keep-alive, HTTP/1.0 with Transfer-Encoding), every later byte is consumed
 * and dropped (RFC 9112 9.6: nothing after a close is processed). */
cm_parse_event_t cm_parser_feed(cm_parser_t *p, const char *data, size_t len, size_t *used);

/* Moves the finished request into req: method, target/path/query, headers, body,
 * keep_alive, http_minor, content_length, has_body (streaming mode: at HEAD, body empty). The bytes
 * move by swapping buffers with req->raw_head/raw_body, so req owns them until it is reused;
 * nothing is copied. */
void cm_parser_take(cm_parser_t *p, cm_req_t *req);

/* True when the request's head was already complete (used for 408 vs silent close). */
int cm_parser_mid_request(const cm_parser_t *p);

/* ------------------------------------------------------------------------- */
/* responses (the gateway's upstream answers)                                 */

/* Callbacks for one upstream connection's responses, handed down at init. arg is the
 * one given to cm_resparse_begin. Each returns 0 to go on or -1 to stop with an error;
 * field/value get pieces of a field's name and value (a value's leading OWS is never
 * included; value_done, which may be NULL, marks the end of a value so its trailing OWS
 * can be trimmed: cm_ows_trim_end). head returns 1 when the message has no body
 * whatever it says (the answer to HEAD). done returns 1 to stop parsing after this
 * message (the rest stays unconsumed), 0 to go on. */
typedef struct cm_resparse_cbs {
    int (*begin)(void *arg);
    int (*field)(void *arg, const char *at, size_t len);
    int (*value)(void *arg, const char *at, size_t len);
    int (*value_done)(void *arg);
    /* status; content_length is the declared length, -1 when none or chunked */
    int (*head)(void *arg, int status, int64_t content_length);
    int (*body)(void *arg, const char *at, size_t len);
    int (*done)(void *arg);
} cm_resparse_cbs_t;

typedef struct cm_resparse {
    llhttp_t hp;
    const cm_resparse_cbs_t *cbs; /* borrowed; static in practice */
    void *arg;
    int keep_alive; /* the last complete response allows reuse */
} cm_resparse_t;

/* Starts parsing a new response stream (a fresh exchange on a connection). */
void cm_resparse_begin(cm_resparse_t *rp, const cm_resparse_cbs_t *cbs, void *arg);
/* Feeds bytes: 0 (all consumed, or stopped by done: *used tells), -1 on a protocol
 * error or a callback's -1. */
int cm_resparse_feed(cm_resparse_t *rp, const char *data, size_t len, size_t *used);
/* The peer closed: ends a body delimited by the close (done runs). 0 or -1. */
int cm_resparse_eof(cm_resparse_t *rp);
/* True when the last complete response lets the connection be reused. */
int cm_resparse_keep_alive(const cm_resparse_t *rp);

/* Shortens *len past trailing SP/HTAB (RFC 9110 5.5: OWS is not part of a value). */
static inline void cm_ows_trim_end(const char *v, size_t *len)
{
    while (*len && (v[*len - 1] == ' ' || v[*len - 1] == '\t'))
        (*len)--;
}

/* The llhttp version built in, "8.1.0". */
const char *cm_parser_version(void);

#endif
