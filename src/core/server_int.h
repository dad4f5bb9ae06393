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
#define REQ_POOL_KEEP 4            /* idle request objects a connection keeps for reuse */
#define BUF_KEEP      (64 * 1024)  /* bytes a reused buffer keeps after a large request */
#define STASH_MAX     (64 * 1024)  /* stream mode: pipelined bytes held while answering */
#define HIGH_WATER    (256 * 1024) /* streamed answer: cm_res_write() asks the producer to stop */
#define LOW_WATER                                                                                  \
    (64 * 1024) /* ... and drain_cb asks it to go on; also the size that is                        \
                 * written at once rather than at the end of the callback */

typedef struct server server_t;
typedef struct worker worker_t;

enum timer_mode { T_NONE, T_IDLE, T_REQUEST, T_LINGER };

struct cm_conn {
    uv_tcp_t tcp;       /* first: the handle's data is the conn */
    cm_timeout_t timer; /* idle, request or linger (mode) */
    worker_t *w;
    cm_conn_t *prev, *next; /* the worker's connections */
    cm_parser_t parser;
    cm_req_t *head, *tail; /* requests waiting for their answers, in arrival order */
    int queued;
    cm_req_t *pool; /* idle request objects */
    int pooled;
    cm_buf_t wbuf;     /* answers ready to write */
    cm_buf_t inflight; /* bytes handed to uv_write, stable until its callback */
    uv_write_t wreq;
    uv_shutdown_t sreq;
    int writing;
    int in_read;       /* inside read_cb: batch writes until the read is parsed */
    int reading;       /* uv_read_start active */
    int close_pending; /* close once everything queued is written */
    int lingering;
    int peer_eof; /* the client half-closed after a whole request: answer, then close */
    int closing;
    int handles_open;
    int fd; /* the socket's: answers are sent with send(2), see cm_sock_send */
    enum timer_mode mode;
    char peer[48]; /* the client's address, copied into each request */
    int admin;     /* accepted on the admin listener: every request goes to svc->admin */
    /* stream mode only (cm_service_t.stream) */
    int stream;
    int kicked; /* on a kick list: the worker's, or the one on_kick_check runs */
    cm_conn_t *kick_next, **kick_pprev;
    cm_req_t *cur;   /* the request being handled; the next is not parsed before it ends */
    cm_buf_t stash;  /* received bytes not parsed yet (cur waits for its handler, paused) */
    int cur_done;    /* the parser reached the end of cur's message */
    int paused;      /* cm_req_body_pause() */
    int close_after; /* close once cur's streamed answer ended */
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
    char date[64]; /* "Date: ...\r\n", refreshed once a second as nginx does */
    time_t date_sec;
    uint64_t rid_seed[2];
    uint64_t rid_count;
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
void cm__req_free(cm_req_t *r);
cm_req_t *cm__req_get(cm_conn_t *c);
void cm__req_release(cm_conn_t *c, cm_req_t *r);
void cm__route(cm_conn_t *c, cm_req_t *r);
void cm__start_read(cm_conn_t *c);

/* stream.c: stream mode */
void cm__conn_kick(cm_conn_t *c);
void cm__maybe_drain(cm_conn_t *c);
void cm__stream_on_read(cm_conn_t *c, const char *data, size_t len);
void cm__stream_update_read(cm_conn_t *c);

#endif
