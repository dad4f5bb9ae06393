/* core/server_int.h: what server.c, conn.c and stream.c share and nobody else does: the
 * server, worker and connection structs, their tunables, and the functions one of them
 * calls in another (cm__ names). Include it from those three files only. */
#ifndef CMESH_CORE_SERVER_INT_H
#define CMESH_CORE_SERVER_INT_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include <uv.h>

#include "core/http.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/parser.h"
#include "core/router.h"
#include "core/server.h"
#include "core/timeout.h"

#define READ_BUF_SIZE (64 * 1024) /* one per worker: every read is parsed at once */
#define MAX_PIPELINED 64          /* answers queued on one connection before reads pause */
#define LINGER_MS     2000        /* after an error answer, how long unread input is drained */
#define LOG_FLUSH_MS  100         /* access-log batches reach the writer at least this often */
#define BACKLOG       1024
#define POOL_KEEP                                                                                  \
    256                         /* idle request objects, parser states, write states and           \
                                 * write buffers a worker keeps for reuse (each kind) */
#define BUF_KEEP   (64 * 1024)  /* bytes a reused buffer keeps after a large request */
#define STASH_MAX  (64 * 1024)  /* stream mode: pipelined bytes held while answering */
#define HIGH_WATER (256 * 1024) /* streamed answer: cm_res_write() asks the producer to stop */
#define LOW_WATER                                                                                  \
    (64 * 1024) /* ... and drain_cb asks it to go on; also the size that is                        \
                 * written at once rather than at the end of the callback */

typedef struct server server_t;
typedef struct worker worker_t;

enum timer_mode { T_NONE, T_IDLE, T_REQUEST, T_LINGER };

/* A write libuv holds because the kernel took only part of the answers: taken from the
 * worker's pool for that write, given back at its callback, so a connection that is not
 * writing holds none (nginx keeps no per-connection write state either). */
typedef struct wstate {
    uv_write_t req;
    cm_buf_t buf;        /* the bytes handed to uv_write, stable until its callback */
    struct wstate *next; /* in the worker's free list */
} wstate_t;

struct cm_conn {
    uv_tcp_t tcp;       /* first: the handle's data is the conn */
    cm_timeout_t timer; /* idle, request or linger (mode) */
    worker_t *w;
    cm_conn_t *prev, *next; /* the worker's connections */
    cm_parser_t parser;     /* its tables are taken per request from the worker's parse_pool */
    cm_req_t *head, *tail;  /* requests waiting for their answers, in arrival order */
    int queued;
    cm_buf_t wbuf;      /* answers ready to write; its memory goes back to the worker's
                         * buffer pool whenever the connection has nothing to write */
    wstate_t *inflight; /* the uv_write under way, or NULL */
    int handles_open;
    int fd; /* the socket's: answers are sent with send(2), see cm_sock_send */
    enum timer_mode mode;
    char peer[48]; /* the client's address, copied into each request */
    /* one-bit flags, packed: every idle connection carries them */
    unsigned writing : 1;
    unsigned in_read : 1;       /* inside read_cb: batch writes until the read is parsed */
    unsigned reading : 1;       /* uv_read_start active */
    unsigned close_pending : 1; /* close once everything queued is written */
    unsigned lingering : 1;
    unsigned peer_eof : 1; /* the client half-closed after a whole request: answer, then close */
    unsigned closing : 1;
    unsigned admin : 1; /* accepted on the admin listener: every request goes to svc->admin */
    /* stream mode only (cm_service_t.stream) */
    unsigned stream : 1;
    unsigned kicked : 1;      /* on a kick list: the worker's, or the one on_kick_check runs */
    unsigned cur_done : 1;    /* the parser reached the end of cur's message */
    unsigned paused : 1;      /* cm_req_body_pause() */
    unsigned close_after : 1; /* close once cur's streamed answer ended */
    cm_conn_t *kick_next, **kick_pprev;
    cm_req_t *cur;  /* the request being handled; the next is not parsed before it ends */
    cm_buf_t stash; /* received bytes not parsed yet (cur waits for its handler, paused) */
};

struct worker {
    server_t *srv;
    int index;
    uv_loop_t loop;
    uv_tcp_t listener;
    int listen_fd;
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } admin; /* worker 0 only, when the service has an admin listener (admin_on) */
    int admin_on;
    uv_async_t wake; /* main thread: start draining */
    /* Connections asked to deliver, parse or flush from the loop rather than from inside
     * an API call (stream mode). The check handle runs them after this iteration's I/O
     * callbacks; the idle handle keeps the poll from blocking while the list is not empty
     * (a kick from a timer callback comes before the poll). */
    cm_conn_t *kicked;
    uv_check_t kick_check;
    uv_idle_t kick_idle;
    int kick_on;
    uv_timer_t tick; /* log flush, drain progress */
    uv_timer_t drain_deadline;
    uv_thread_t thread;
    void *state;
    cm_log_stream_t *log;
    cm_conn_t *conns;
    int nconns;
    int draining;
    int stopped;
    char *rbuf;
    /* Free lists: a connection holds request state only while a request is in flight, so
     * an idle keep-alive connection costs its cm_conn_t alone; steady state never mallocs. */
    cm_req_t *req_free;
    int nreq_free;
    cm_parse_pool_t parse_pool;
    wstate_t *ws_free;
    int nws_free;
    char *buf_free; /* write buffers, linked through their first bytes (see buf_park) */
    int nbuf_free;
    char date[64]; /* "Date: ...\r\n", refreshed once a second as nginx does */
    time_t date_sec;
    uint64_t rid_seed[2];
    uint64_t rid_count;
    uint64_t reads; /* reads from client sockets so far (cm_server_reads) */
};

struct server {
    const cm_server_opts_t *opts;
    const cm_service_t *svc;
    cm_router_t *router;
    cm_metrics_t *metrics;
    cm_log_t *log;
    worker_t *workers;
    atomic_int draining;
    atomic_int conns;
    uv_signal_t sigterm, sigint; /* on the main thread's loop */
    uv_signal_t sighup;          /* access-log reopen, then the service's on_sighup */
};

/* conn.c: requests and connections */
void cm__account(worker_t *w, cm_req_t *r, int status, uint64_t bytes);
void cm__append_status_line(cm_buf_t *o, int status);
void cm__conn_close(cm_conn_t *c);
void cm__conn_fail(cm_conn_t *c, int status, const char *msg);
void cm__conn_flush(cm_conn_t *c);
void cm__cur_finished(cm_conn_t *c, cm_req_t *r);
const char *cm__date_header(worker_t *w);
void cm__kick_unlink(cm_conn_t *c);
void cm__move_answered(cm_conn_t *c);
void cm__on_connection(uv_stream_t *listener, int status);
cm_req_t *cm__req_get(cm_conn_t *c);
void cm__req_release(cm_req_t *r);
void cm__worker_pools_init(worker_t *w);
void cm__worker_pools_free(worker_t *w);
void cm__route(cm_conn_t *c, cm_req_t *r);
void cm__start_read(cm_conn_t *c);

/* stream.c: stream mode */
void cm__conn_kick(cm_conn_t *c);
void cm__maybe_drain(cm_conn_t *c);
void cm__stream_on_read(cm_conn_t *c, const char *data, size_t len);
void cm__stream_update_read(cm_conn_t *c);

#endif
