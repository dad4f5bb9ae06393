/* core/http.h: what a handler sees of one HTTP/1.1 request and how it answers.
 * The server (server.c) fills cm_req_t from the parser and calls the route's handler;
 * the handler answers with cm_res_send()/cm_res_error(), at once or later from a
 * callback on the same loop (the request stays valid until it is answered). */
#ifndef CMESH_CORE_HTTP_H
#define CMESH_CORE_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "core/buf.h"

typedef enum {
    CM_GET,
    CM_HEAD,
    CM_POST,
    CM_PUT,
    CM_DELETE,
    CM_PATCH,
    CM_OPTIONS,
    CM_METHOD_OTHER,
} cm_method_t;

typedef struct cm_str {
    const char *p; /* not NUL-terminated */
    size_t len;
} cm_str_t;

typedef struct cm_header {
    cm_str_t name, value;
} cm_header_t;

#define CM_MAX_HEADERS 100 /* more than this is refused with 431, as nginx's large header cap */
#define CM_MAX_PARAMS  4   /* {name} captures in one route pattern */

typedef struct cm_conn cm_conn_t; /* the server's, opaque */

typedef struct cm_req cm_req_t;

/* Streaming (services with cm_service_t.stream set: the gateway). The handler runs as
 * soon as the head is complete; req->body is empty and the body arrives through
 * cm_req_body_read(). data is borrowed for the call only (it points into the worker's
 * read buffer); last is 1 with the final piece (len may be 0). Chunked framing is
 * already removed: data is the payload. When the body breaks (a bad chunk size, over
 * --max-body) the last call has data NULL and req->body_error holds the status to
 * answer with (400, 413) and body_error_msg why; the connection closes after it. When the
 * client closes its connection before the body is complete, the same call comes with
 * body_error 499 and the request already detached: the answer is only counted and logged.
 * (While the handler has paused the body the socket is not read, so a client that leaves
 * then is noticed by the handler's own timeouts, as with nginx.) */
typedef void (*cm_body_cb)(cm_req_t *req, const char *data, size_t len, int last, void *arg);
/* Called once when the bytes queued by cm_res_write() fell below the low-water mark. */
typedef void (*cm_drain_cb)(cm_req_t *req, void *arg);
/* Called once, from a loop callback, when the client's connection went away (closed,
 * reset, or an EOF after the whole request) before the answer started; the request is
 * detached then: answering it only counts and logs it (499). */
typedef void (*cm_gone_cb)(cm_req_t *req, void *arg);
struct cm_req {
    /* --- the request; every pointer is borrowed until the response is sent --- */
    cm_method_t method;
    const char *method_name;
    cm_str_t target; /* as received: path + query */
    cm_str_t path;   /* target up to '?' */
    cm_str_t query;  /* after '?', empty when none */
    cm_header_t headers[CM_MAX_HEADERS];
    int nheaders;
    cm_str_t body;
    cm_str_t params[CM_MAX_PARAMS]; /* route captures, in pattern order */
    int nparams;
    char request_id[64]; /* X-Request-Id as received (sanitised) or generated */
    void *state;         /* the worker's service state (cm_service_t.worker_init) */
    uv_loop_t *loop;     /* the worker's loop, for async work */

    /* --- the response a handler builds --- */
    cm_buf_t res_headers; /* extra header lines, each "Name: value\r\n" */
    cm_buf_t res_body;

    /* --- the server's own --- */
    cm_conn_t *conn;   /* NULL once the client went away: the answer is dropped */
    cm_req_t *next;    /* pipelined requests of one connection, in order */
    cm_buf_t raw_head; /* owns the bytes target and headers point into */
    cm_buf_t raw_body; /* owns the bytes body points into */
    cm_buf_t path_dec; /* the router's: path percent-decoded, '/' as '\0' (only with a '%') */
    cm_buf_t out;      /* rendered response, waiting for its turn */
    int status;        /* 0 until answered */
    int route;         /* router index, for metrics */
    int keep_alive;    /* the client allows reuse */
    int content_type_set;
    uint64_t start_ns;      /* uv_hrtime() when the request was complete (streaming: its head) */
    char peer[48];          /* the client's address ("127.0.0.1", "::1"), no port */
    int http_minor;         /* 1 for HTTP/1.1, 0 for HTTP/1.0 */
    int64_t content_length; /* -1 when none was given (chunked or no body) */
    int has_body;           /* Content-Length > 0 or chunked */
    cm_buf_t log_extra;     /* raw JSON members appended to the access line (",\"a\":1") */
    int logged;             /* the access log is on: log_extra is worth building */

    /* --- streaming state (the server's own) --- */
    cm_body_cb body_cb;
    void *body_arg;
    int body_done;  /* the last piece was delivered */
    int body_error; /* the body broke: the status to answer with (see cm_body_cb) */
    const char *body_error_msg;
    int body_complete; /* every body byte was parsed (or there was none): reuse is safe */
    int expect_100;    /* the client waits for 100 Continue before sending the body */
    int streaming;     /* cm_res_start() was called */
    int res_chunked;   /* the answer is chunk-framed */
    int res_nobody;    /* HEAD/1xx/204/304: written bytes are dropped */
    int drain_wanted;  /* cm_res_write() returned 1: call drain_cb once below low water */
    int64_t res_left;  /* Content-Length bytes still to write, or -1 when not counted */
    cm_drain_cb drain_cb;
    void *drain_arg;
    cm_gone_cb gone_cb; /* cm_req_on_gone */
    void *gone_arg;
    uint64_t res_bytes; /* written to the client so far, head and framing included */
    int away;           /* cm_req_away: an answer is recorded, not sent */
    int away_status;    /* the answer recorded while away, 0 for none */
};

/* Returns the first header called name (case-insensitive) or NULL; *len gets its length. */
const char *cm_req_header(const cm_req_t *req, const char *name, size_t *len);
/* The credentials of an `Authorization: Bearer TOKEN` header (the scheme matched without
 * case, then 1*SP: RFC 9110 11.4), or NULL when there is none, another scheme, or no
 * token; *len gets the token's length. */
const char *cm_req_bearer(const cm_req_t *req, size_t *len);
/* Copies the decoded query parameter name into out (NUL-terminated, at most cap-1 bytes).
 * Returns its length, -ENOENT when absent, -ENOSPC when it does not fit. */
int cm_req_query(const cm_req_t *req, const char *name, char *out, size_t cap);
/* Parses route capture i as a positive 63-bit integer. Returns 0 or -EINVAL. */
int cm_req_param_id(const cm_req_t *req, int i, int64_t *out);

/* Adds a response header; the value is formatted and copied. Returns 0 or -ENOMEM. */
int cm_res_header(cm_req_t *req, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same for a ready value (no formatting: the request path's common case). */
int cm_res_header_str(cm_req_t *req, const char *name, const char *value);
/* The body is res_body; Content-Type is application/json unless a header set one.
 * Sends (or queues behind earlier pipelined answers) and frees nothing the handler
 * owns. After this call req must not be touched. */
void cm_res_send(cm_req_t *req, int status);
/* Hands req to another thread (a store thread, service/batch.h): until cm_req_back(),
 * cm_res_send() (and all that calls it) only records the status, and the worker's loop
 * does not read or write req but to detach it when its client leaves (req->conn). */
void cm_req_away(cm_req_t *req);
/* Back on the worker's loop: sends the answer recorded while away and returns 1 (req
 * must not be touched then), or returns 0 when none was (req is the caller's again). */
int cm_req_back(cm_req_t *req);
/* While away: forgets the answer recorded so far (status, body, extra headers), as if
 * none had been built (a read run again from the top: service/batch.c). */
void cm_req_unanswer(cm_req_t *req);
/* Builds {"error": msg} (plus "field" when field is not NULL) in res_body without
 * sending it, for answers that must wait (group commit). */
void cm_res_error_body(cm_req_t *req, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Answers {"error": msg} with status; msg is formatted and JSON-escaped. */
void cm_res_error(cm_req_t *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Answers 422-style {"error": msg, "field": field}. */
void cm_res_error_field(cm_req_t *req, int status, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* --- streaming API (only for cm_service_t.stream services) --- */

/* Starts delivering the body to cb (bytes that already arrived are delivered from the
 * loop soon after, never from inside this call). A request without a body gets one
 * call with len 0 and last 1. Call at most once per request. */
void cm_req_body_read(cm_req_t *req, cm_body_cb cb, void *arg);
/* Stops / restarts reading the client's socket (backpressure on the upload). While
 * paused, at most the rest of the current read (<= 64 KiB) may still be delivered. */
void cm_req_body_pause(cm_req_t *req);
void cm_req_body_resume(cm_req_t *req);

/* Starts a streamed answer: status line, Date, X-Request-Id, req->res_headers (which must
 * not contain Content-Length, Transfer-Encoding or Connection), then the framing:
 * content_length >= 0 gives Content-Length, -1 gives chunked (HTTP/1.1 clients) or a
 * close-delimited body (HTTP/1.0). HEAD and 1xx/204/304 answers carry no body whatever is
 * written (Content-Length still sent for HEAD when >= 0). Returns 0 or -EINVAL when
 * an answer was already started or sent. */
int cm_res_start(cm_req_t *req, int status, int64_t content_length);
/* Queues body bytes (copied). Returns 1 when the queue is past the high-water mark
 * (256 KiB): stop producing until drain fires; 0 when more may come; -EPIPE when the
 * client is gone (stop; the request is finished by cm_res_end as usual). */
int cm_res_write(cm_req_t *req, const char *data, size_t len);
void cm_res_on_drain(cm_req_t *req, cm_drain_cb cb, void *arg);
/* Asks to hear through cb when the client leaves before the answer starts (a handler
 * that waits on its behalf, e.g. the gateway holding it); cb NULL stops it. While it is
 * set, an EOF from the client counts as leaving (not as a half-close still owed an
 * answer). A body still being read reports its end through the body callback (499)
 * instead; the socket is read only while the body is (or there is none left). */
void cm_req_on_gone(cm_req_t *req, cm_gone_cb cb, void *arg);
/* Ends the streamed answer (chunked terminator, metrics, access log). If the answer is
 * shorter than its Content-Length, or ok is 0 (the upstream broke mid-body), the client
 * connection is closed instead so the client sees a truncated message, never a wrong
 * one. After this call req must not be touched. If the request's body was not read to
 * its end, the connection is closed after the answer (nothing is left to misparse). */
void cm_res_end(cm_req_t *req, int ok);

/* The reason phrase for status ("Not Found"), "Unknown" when none. */
const char *cm_http_reason(int status);

#endif
