/* tests/integration/harness.h: starts build/cmesh for real and talks to it the way a
 * client would: libcurl for HTTP, raw sockets for bytes no client library would send.
 * Every process started is killed at exit, also when a test fails. */
#ifndef CMESH_TESTS_HARNESS_H
#define CMESH_TESTS_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

typedef struct h_proc {
    pid_t pid;
    int port;
    char url[64];  /* http://127.0.0.1:PORT */
    char dir[256]; /* a temp dir for this process's files (db, logs) */
    char log[300]; /* its stderr, dir/stderr.log */
} h_proc_t;

typedef struct h_resp {
    long status; /* 0 when the request failed at transport level */
    char *body;  /* NUL-terminated, caller frees with h_resp_free */
    size_t body_len;
    char *headers; /* raw response head, NUL-terminated */
} h_resp_t;

/* A free loopback port (bound and released). */
int h_free_port(void);
/* A fresh temp directory (mkdtemp under /tmp); removed by h_cleanup_dirs at exit. */
void h_tempdir(char *out, size_t cap);

/* Starts `$CMESH_BIN <sub> --listen 127.0.0.1:<port> [args...]` (NULL-terminated args;
 * the literal "{dir}" in an argument is replaced by p->dir) and waits until GET /healthz
 * answers 200 (up to 10 s). Aborts the test on failure. */
void h_start(h_proc_t *p, const char *sub, ...);
/* Same, reusing p->port and p->dir (a restart after a kill). */
void h_restart(h_proc_t *p, const char *sub, ...);
/* SIGTERM, then waits up to 15 s; returns the exit status (or -1 if it had to SIGKILL). */
int h_stop(h_proc_t *p);
/* SIGKILL and reap. */
void h_kill9(h_proc_t *p);

/* One HTTP request with libcurl. headers: NULL-terminated list of "Name: value",
 * may be NULL. body may be NULL. Times out after 10 s. */
h_resp_t h_http(const char *method, const char *url, const char *body, const char *const *headers);
/* Convenience: url = p->url + path. */
h_resp_t h_req(const h_proc_t *p, const char *method, const char *path, const char *json_body,
               const char *const *headers);
/* Value of a response header (case-insensitive) copied into out; 0 or -1 when absent. */
int h_header(const h_resp_t *r, const char *name, char *out, size_t cap);
/* Parses the body as JSON (asserts it is valid); caller json_decref()s. */
json_t *h_json(const h_resp_t *r);
void h_resp_free(h_resp_t *r);

/* Raw socket: connect to 127.0.0.1:port; send all bytes; read until the peer closes or
 * timeout_ms passes with no data; returns the bytes read (caller frees), *len set. */
int h_connect(int port);
void h_send(int fd, const void *data, size_t len);
char *h_recv_all(int fd, int timeout_ms, size_t *len);
/* Connects, sends, reads until close/timeout, closes. */
char *h_raw(int port, const void *data, size_t len, int timeout_ms, size_t *out_len);

/* --- added for the http and lifecycle suites --- */

/* Waits up to timeout_ms for the peer to close (EOF or reset); bytes that arrive
 * meanwhile are read and dropped. Returns 1 when closed, 0 when still open. */
int h_peer_closed(int fd, int timeout_ms);
/* Waits up to timeout_ms for p to exit (after a signal the test sent itself); returns
 * its exit status, or -1 after SIGKILLing it when it did not exit in time. */
int h_wait(h_proc_t *p, int timeout_ms);
/* Reads from fd until the bytes hold n complete responses (framed by Content-Length;
 * 1xx, 204 and 304 have no body; not for answers to HEAD), the peer closes, or
 * timeout_ms passes with no data. Caller frees; *len set. */
char *h_recv_responses(int fd, int n, int timeout_ms, size_t *len);
/* Raw response text helpers; each looks at the first response in resp.
 * h_raw_status: the status code or -1. h_raw_body: the bytes after the head, or "".
 * h_raw_header: as h_header. h_raw_next: the response after the first, or NULL. */
int h_raw_status(const char *resp);
const char *h_raw_body(const char *resp);
int h_raw_header(const char *resp, const char *name, char *out, size_t cap);
const char *h_raw_next(const char *resp);

#endif
