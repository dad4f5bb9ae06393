/* core/server.h: runs an HTTP/1.1 service: N worker threads, one libuv loop each,
 * sharing the port through SO_REUSEPORT. Serves /healthz, /readyz and /metrics for
 * every service, logs each request, and drains gracefully on SIGTERM/SIGINT.
 * Called by each service's command (users, orders); knows nothing of them. */
#ifndef CMESH_CORE_SERVER_H
#define CMESH_CORE_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "core/flags.h"
#include "core/log.h"
#include "core/router.h"

typedef struct cm_server_opts {
    char host[256];
    int port;                    /* 0 picks a free one (logged at start) */
    int workers;                 /* event loops (threads) */
    uint64_t drain_timeout_ms;   /* SIGTERM: in-flight work gets this long */
    uint64_t request_timeout_ms; /* a started request must be complete by then: 408 */
    uint64_t idle_timeout_ms;    /* idle keep-alive connections are closed after it */
    size_t max_header;           /* bytes: 431 past it */
    size_t max_uri;              /* bytes: 414 past it */
    size_t max_body;             /* bytes: 413 past it */
    int max_connections;         /* open client connections, all workers together */
    char access_log[1024];       /* off | stderr | path */
    int log_format;              /* cm_log_format_t: access lines and process messages */
    int log_probes;              /* 1: /healthz and /readyz requests are logged too */
} cm_server_opts_t;

void cm_server_opts_default(cm_server_opts_t *o);
/* The server's flags, a table over cm_server_opts_t for every command's cm_cmd_t. */
extern const cm_flag_t cm_server_flags[];
/* --listen's type (the row's field is the whole cm_server_opts_t: host and port), for a
 * command that gives --listen a row of its own. */
extern const cm_flag_type_t cm_server_listen_type;

typedef struct cm_service {
    const char *name; /* "users": a label in logs and metrics */
    const cm_route_t *routes;
    int nroutes;
    /* Creates one worker's state (database connection, clients) on loop; called
     * once per worker before any request. Returns 0 or -errno (start fails). */
    int (*worker_init)(uv_loop_t *loop, void *config, void **state);
    /* Frees it after the worker drained; may close handles on loop (run after). */
    void (*worker_free)(void *state);
    void *config; /* borrowed, passed to worker_init */
    /* Requests no route matched go here instead of a 404 (the gateway's proxy). */
    cm_handler_fn fallback;
    /* Handlers run when the head is complete and read the body with cm_req_body_read()
     * (see http.h); one request at a time per connection (pipelined requests wait). */
    int stream;
    /* On SIGHUP, called on the main thread after the access log file was reopened (the
     * gateway reloads its config). May be NULL. */
    void (*on_sighup)(void *config);
    /* Appends the service's own series to GET /metrics (Prometheus text). */
    void (*render_metrics)(void *config, cm_buf_t *out);
    /* May be NULL. GET /readyz asks it on a worker's loop (state: that worker's); it
     * returns 0 when the service can do its job, or a negative errno with why filled
     * (a sentence), answered 503 {"status":"not ready","reason":why}. Must not block. */
    int (*ready)(void *config, void *state, char *why, size_t why_cap);
    /* May be NULL. The service's own API on a listener of its own (the gateway's admin
     * API): every request accepted there goes to admin (no built-ins, routes or
     * fallback), and no request on the traffic port ever does. Worker 0 listens on
     * admin_socket when it is set (a unix socket path: created mode 0600, a stale socket
     * left by a dead process replaced, removed at exit) or else on admin_host:admin_port.
     * On the socket a request's peer is "unix:uid=N" (the client's uid, SO_PEERCRED). */
    cm_handler_fn admin;
    const char *admin_socket;
    const char *admin_host;
    int admin_port;
} cm_service_t;

/* Runs until SIGTERM/SIGINT and the drain complete; SIGHUP reopens the access log file
 * and calls on_sighup. Returns 0, or -errno when the service could not start (bind
 * failed, worker_init failed), logged already: -EADDRINUSE when another process (cmesh
 * or not) listens on the port, since SO_REUSEPORT is shared by our own workers only. */
int cm_server_run(const cm_server_opts_t *o, const cm_service_t *svc);

/* True once the server of req's worker is draining (SIGTERM): a handler holding a
 * request (a long-poll) answers it now. */
int cm_server_draining(const cm_req_t *req);

/* How many times req's worker has read bytes from a client socket so far, counted
 * before the handlers of those bytes run; 0 for a request whose client left. Whatever
 * was taken while it said N (a read snapshot) is older than no request read while it
 * still says N: a request read later may have been sent after a write another process
 * committed since. */
uint64_t cm_server_reads(const cm_req_t *req);

#endif
