/* tests/integration/scripted_upstream.h: a recording HTTP/1.1 upstream that runs in threads of
 * the test process, for gateway tests: a real TCP listener on 127.0.0.1 that keeps the raw
 * bytes it received and every request it parsed (head, decoded body length and checksum),
 * and answers with a configurable status, headers, body, delay, a streamed large body, or
 * a close without an answer. GET /readyz and /healthz (the gateway's health checks) are
 * answered 200 and never recorded, so "the upstream received nothing" can be asserted with
 * health checks on. Every socket is close-on-exec: a child process never holds one open. */
#ifndef CMESH_TESTS_SCRIPTED_UPSTREAM_H
#define CMESH_TESTS_SCRIPTED_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

typedef struct us_scripted us_scripted_t; /* opaque */

typedef struct us_reply {
    int status;           /* 100..599; 0 = close the connection without answering */
    const char *headers;  /* extra head lines, each ending "\r\n"; NULL = none. A line
                             "Connection: close" makes the scripted close after answering */
    const char *body;     /* NULL = {"port":PORT} with Content-Type: application/json */
    uint64_t stream_size; /* > 0: the body is this many bytes of us_pattern() instead */
    int delay_ms;         /* wait this long after the whole request, before answering */
} us_reply_t;

typedef struct us_request {
    char *head;        /* request line + headers as received, through the blank line */
    uint64_t body_len; /* body bytes after de-chunking */
    uint64_t body_sum; /* us_checksum() of those bytes */
    char *body;        /* their first (up to) 64 KiB, NUL-terminated */
} us_request_t;

/* Starts a scripted upstream on a free port answering 200 with the default body. Aborts the test
 * when it cannot. Stop it with us_stop(); a test that ends early leaves it to process exit. */
us_scripted_t *us_start(void);
/* Stops the listener and every connection (also one in a delay) and frees the scripted upstream. */
void us_stop(us_scripted_t *s); /* NULL is a no-op */

int us_port(const us_scripted_t *s);
const char *us_url(const us_scripted_t *s); /* "http://127.0.0.1:PORT", borrowed */

/* Sets the answer for the requests that arrive from now on; the strings are copied. */
void us_set_reply(us_scripted_t *s, const us_reply_t *r);

/* Sets the answer for requests whose target starts with prefix (one such prefix; a new
 * call replaces it); the others keep us_set_reply's. Strings are copied. */
void us_set_path_reply(us_scripted_t *s, const char *prefix, const us_reply_t *r);

/* Requests recorded so far (health checks excluded). */
int us_count(us_scripted_t *s);
/* Raw bytes received so far outside health checks, including bytes of requests the scripted
 * upstream could not parse. */
uint64_t us_bytes(us_scripted_t *s);
/* A copy of those raw bytes (the first 1 MiB), NUL-terminated; caller frees. */
char *us_raw(us_scripted_t *s, size_t *len);
/* Copies request i (0-based) into *out; returns 0, or -1 when there is no such request.
 * Release with us_request_free(). */
int us_request(us_scripted_t *s, int i, us_request_t *out);
void us_request_free(us_request_t *r);
/* Forgets every recorded request and byte. */
void us_clear(us_scripted_t *s);

/* Value of header name in a recorded head (case-insensitive); repeated fields are joined
 * with ", " as RFC 9110 5.3 allows. Returns the number of fields found (0 = absent). */
int us_head_header(const char *head, const char *name, char *out, size_t cap);

/* The bytes of a streamed body: byte i of the stream is a fixed function of i, with no
 * period that a lost or repeated 64 KiB block would hide. */
void us_pattern(uint64_t offset, void *buf, size_t len);
/* FNV-1a 64 over bytes, continued from sum (start with US_CHECKSUM_INIT). */
#define US_CHECKSUM_INIT 14695981039346656037ULL
uint64_t us_checksum(uint64_t sum, const void *data, size_t len);

#endif
