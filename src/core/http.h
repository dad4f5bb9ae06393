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
    cm_buf_t out;      /* rendered response, waiting for its turn */
    int status;        /* 0 until answered */
    int route;         /* router index, for metrics */
    int keep_alive;    /* the client allows reuse */
    int content_type_set;
    uint64_t start_ns; /* uv_hrtime() when the request was complete */
};

/* Returns the first header called name (case-insensitive) or NULL; *len gets its length. */
const char *cm_req_header(const cm_req_t *req, const char *name, size_t *len);
/* Copies the decoded query parameter name into out (NUL-terminated, at most cap-1 bytes).
 * Returns its length, -ENOENT when absent, -ENOSPC when it does not fit. */
int cm_req_query(const cm_req_t *req, const char *name, char *out, size_t cap);
/* Parses route capture i as a positive 63-bit integer. Returns 0 or -EINVAL. */
int cm_req_param_id(const cm_req_t *req, int i, int64_t *out);

/* Adds a response header; the value is formatted and copied. Returns 0 or -ENOMEM. */
int cm_res_header(cm_req_t *req, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The body is res_body; Content-Type is application/json unless a header set one.
 * Sends (or queues behind earlier pipelined answers) and frees nothing the handler
 * owns. After this call req must not be touched. */
void cm_res_send(cm_req_t *req, int status);
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

/* The reason phrase for status ("Not Found"), "Unknown" when none. */
const char *cm_http_reason(int status);

#endif
