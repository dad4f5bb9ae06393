/* service/replay.c: read handlers by replay on the loop (see replay.h). */
#include "service/replay.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/log.h"
#include "store/pgasync.h"

#define READ_DEADLINE_MS    15000 /* a statement in flight: the server's timeout + 5 s */
#define CONNECT_DEADLINE_MS 2500
#define MAX_CONNS           16
/* Statements in flight on one connection at most: more go on to the next connection.
 * A batch costs one wakeup of its backend whatever its size, but the server runs a
 * connection's statements one after another: a deep batch runs alone while the other
 * cores idle. Measured with bench/pg.sh (8 client connections, 2 cores): 2 and 4 gave
 * the most GETs (39.5k/s), 1 (a statement at a time) 33k, 8 and 16 35k; 4 the least CPU
 * of those two. Statements behind a slow one on its connection wait for it. */
#define MAX_DEPTH 4

/* One read: its request, its handler, the results so far. */
typedef struct read {
    cm_req_t *req;
    cm_handler_fn again;
    void (*done)(void *);
    void *arg;
    cm_replay_t *rp;
    struct read *next;
} read_t;

typedef struct list {
    read_t *head, **tail;
} list_t;

/* A poll on a dup of libpq's socket, so that libpq closing or replacing it never leaves
 * the loop watching a number that now names another file. */
typedef struct apoll {
    uv_poll_t poll;
    int fd; /* the dup */
    struct aconn *a;
} apoll_t;

typedef struct aconn {
    cm_replays_t *r;
    cm_pgasync_t *c;
    apoll_t *poll;    /* NULL while there is no socket */
    int fd;           /* libpq's socket the poll was made for */
    int events;       /* what the poll watches (UV_READABLE | UV_WRITABLE; 0: stopped) */
    uv_timer_t timer; /* the connect's deadline, or the oldest statement's in flight */
    int sent;         /* statements handed to it in this pump, not flushed yet */
    int failed;       /* it went down and has not been connected since (readiness) */
} aconn_t;

struct cm_replays {
    uv_check_t check; /* first runs, after the handler that asked returned */
    cm_db_t *db;      /* the replay database the runs read */
    aconn_t conns[MAX_CONNS];
    int nconns;
    list_t first_runs; /* first runs for the check phase */
    list_t wait;       /* reads waiting for a connection */
    read_t *running;   /* the read whose handler runs now */
    int pumping;       /* pump() is on the stack */
    int stopping;
    int handles; /* open: the check and each connection's timer */
};

static void list_init(list_t *l)
{
    l->head = NULL;
    l->tail = &l->head;
}

static void list_push(list_t *l, read_t *rd)
{
    rd->next = NULL;
    *l->tail = rd;
    l->tail = &rd->next;
}

static read_t *list_pop(list_t *l)
{
    read_t *rd = l->head;
    if (rd && !(l->head = rd->next))
        l->tail = &l->head;
    return rd;
}

static void pump(cm_replays_t *r);

/* Runs the read's handler from the top. A run that stopped at a statement with no result
 * waits for a connection; one that ran to its end is the answer. */
static void run(cm_replays_t *r, read_t *rd)
{
    for (;;) {
        cm_replay_begin(r->db, rd->rp);
        r->running = rd;
        rd->again(rd->req);
        r->running = NULL;
        if (!cm_replay_end(r->db)) {
            rd->done(rd->arg);
            cm_replay_free(rd->rp);
            free(rd);
            return;
        }
        cm_req_unanswer(rd->req);
        if (!r->stopping)
            break;
        cm_replay_fail(rd->rp, -EIO); /* stopping: nothing runs it any more */
    }
    list_push(&r->wait, rd);
}

static void on_check(uv_check_t *c)
{
    cm_replays_t *r = c->data;
    uv_check_stop(c);
    read_t *rd;
    while ((rd = list_pop(&r->first_runs)))
        run(r, rd);
    pump(r);
}

static void on_apoll(uv_poll_t *h, int status, int events);

static void apoll_closed(uv_handle_t *h)
{
    apoll_t *p = (apoll_t *)h;
    close(p->fd);
    free(p);
}

/* Watches the connection's socket for what it waits for (made anew for a new socket, and
 * at every step of a connect, where libpq may switch sockets). The poll is started again
 * only when what it waits for changes: each start is an epoll_ctl. */
static void watch(aconn_t *a)
{
    int fd = cm_pgasync_fd(a->c);
    int pev = cm_pgasync_events(a->c);
    int ev = ((pev & CM_PGASYNC_IN) ? UV_READABLE : 0) | ((pev & CM_PGASYNC_OUT) ? UV_WRITABLE : 0);
    if (a->poll && (fd != a->fd || fd < 0 || cm_pgasync_state(a->c) == CM_PGASYNC_CONNECTING)) {
        uv_close((uv_handle_t *)&a->poll->poll, apoll_closed);
        a->poll = NULL;
    }
    if (fd < 0 || !ev) {
        if (a->poll && a->events)
            uv_poll_stop(&a->poll->poll);
        a->events = 0;
        return;
    }
    if (!a->poll) {
        apoll_t *p = malloc(sizeof *p);
        int dfd = p ? dup(fd) : -1;
        if (dfd < 0 || uv_poll_init(a->timer.loop, &p->poll, dfd) < 0) {
            cm_log_msg(CM_LOG_ERROR, "replay: cannot watch a database socket; reconnecting");
            if (dfd >= 0)
                close(dfd);
            free(p);
            /* its reads are answered (503) by the caller, which takes what finished */
            cm_pgasync_abort(a->c, -EIO, "its socket cannot be watched");
            a->events = 0;
            return;
        }
        p->fd = dfd;
        p->a = a;
        p->poll.data = p;
        a->poll = p;
        a->fd = fd;
        a->events = 0;
    }
    if (ev != a->events)
        uv_poll_start(&a->poll->poll, ev, on_apoll);
    a->events = ev;
}

static void on_deadline(uv_timer_t *t);

/* After the connection moved on: its watch, deadline and readiness, then the reads whose
 * statements finished run again. */
static void settle(aconn_t *a)
{
    watch(a);
    cm_pgasync_state_t st = cm_pgasync_state(a->c);
    if (st == CM_PGASYNC_DOWN) {
        uv_timer_stop(&a->timer);
        a->failed = 1;
    } else if (st != CM_PGASYNC_CONNECTING) {
        a->failed = 0;
        /* the timer is moved only when it fires: one start per batch at most */
        if (cm_pgasync_inflight(a->c) && !uv_is_active((uv_handle_t *)&a->timer)) {
            uint64_t due = cm_pgasync_oldest(a->c) + READ_DEADLINE_MS, now = uv_now(a->timer.loop);
            uv_timer_start(&a->timer, on_deadline, due > now ? due - now : 0, 0);
        }
    }
    read_t *rd;
    while ((rd = cm_pgasync_done(a->c)))
        run(a->r, rd);
}

static void stepped(aconn_t *a)
{
    settle(a);
    pump(a->r);
}

static void on_apoll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events; /* an error shows in what libpq reads */
    aconn_t *a = ((apoll_t *)h->data)->a;
    cm_pgasync_advance(a->c, uv_now(h->loop));
    stepped(a);
}

static void on_deadline(uv_timer_t *t)
{
    aconn_t *a = t->data;
    uint64_t now = uv_now(t->loop);
    cm_pgasync_state_t st = cm_pgasync_state(a->c);
    if (st == CM_PGASYNC_CONNECTING) {
        cm_pgasync_advance(a->c, now); /* past its connect deadline: down */
    } else if (cm_pgasync_inflight(a->c)) {
        uint64_t due = cm_pgasync_oldest(a->c) + READ_DEADLINE_MS;
        if (now < due) { /* the statement it was set for finished: the next oldest's */
            uv_timer_start(&a->timer, on_deadline, due - now, 0);
            return;
        }
        cm_pgasync_abort(a->c, -EBUSY, "a statement took longer than 15 s"); /* 503 */
    }
    stepped(a);
}

/* Starts the connection when it is down and its backoff is over. */
static void connect_one(aconn_t *a)
{
    uint64_t later;
    if (cm_pgasync_state(a->c) != CM_PGASYNC_DOWN ||
        cm_pgasync_start(a->c, uv_now(a->timer.loop), &later) < 0)
        return;
    uv_timer_start(&a->timer, on_deadline, CONNECT_DEADLINE_MS, 0);
    cm_pgasync_advance(a->c, uv_now(a->timer.loop));
    stepped(a);
}

/* The connection for the next waiting read: the one this pump already fills, while it
 * has room (one batch: one wakeup of its backend), else an idle one (the server runs
 * the batch beside the others), else the least busy with room. NULL when none is ready;
 * *coming then says whether one is on its way (connecting, or full). */
static aconn_t *pick(cm_replays_t *r, int *coming)
{
    aconn_t *best = NULL;
    int best_n = MAX_DEPTH;
    *coming = 0;
    for (int i = 0; i < r->nconns; i++) {
        aconn_t *a = &r->conns[i];
        if (!r->stopping)
            connect_one(a);
        cm_pgasync_state_t st = cm_pgasync_state(a->c);
        if (st == CM_PGASYNC_DOWN)
            continue;
        int n = cm_pgasync_inflight(a->c);
        if (st == CM_PGASYNC_CONNECTING || n >= MAX_DEPTH) {
            *coming = 1;
            continue;
        }
        if (a->sent)
            return a;
        if (n < best_n) {
            best = a;
            best_n = n;
        }
    }
    return best;
}

/* Hands the waiting reads to connections, then ends each connection's batch (one write
 * each); while none has room they wait for one on its way, and with every connection down
 * (in its backoff) they are answered 503 at once, as a read on an unreachable server is. */
static void pump(cm_replays_t *r)
{
    if (r->pumping)
        return; /* a read finished inside: the outer pass goes on */
    r->pumping = 1;
    for (;;) {
        while (r->wait.head) {
            int coming;
            aconn_t *a = pick(r, &coming);
            if (!a && coming && !r->stopping)
                break;
            read_t *rd = list_pop(&r->wait);
            int rc =
                a && !r->stopping ? cm_pgasync_send(a->c, rd->rp, rd, uv_now(a->timer.loop)) : -EIO;
            if (rc == 0) {
                a->sent++;
                continue;
            }
            cm_replay_fail(rd->rp, rc);
            run(r, rd);
            if (a) {
                a->sent = 0;
                settle(a); /* it went down: what was in flight on it is answered */
            }
        }
        int more = 0;
        for (int i = 0; i < r->nconns; i++) {
            aconn_t *a = &r->conns[i];
            if (!a->sent)
                continue;
            a->sent = 0;
            cm_pgasync_flush(a->c);
            settle(a);
            more = 1;
        }
        if (!more || !r->wait.head)
            break; /* a read that finished with its connection lost may want another */
    }
    r->pumping = 0;
}

int cm_replays_new(uv_loop_t *loop, const char *target, int nconns, cm_replays_t **out)
{
    cm_replays_t *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    if (nconns > MAX_CONNS)
        nconns = MAX_CONNS;
    int rc = cm_replay_db_open(&r->db);
    for (; rc == 0 && r->nconns < nconns; r->nconns++)
        if ((rc = cm_pgasync_open(target, &r->conns[r->nconns].c)) < 0)
            break;
    if (rc < 0) {
        for (int i = 0; i < r->nconns; i++)
            cm_pgasync_close(r->conns[i].c);
        cm_db_close(r->db);
        free(r);
        return rc;
    }
    list_init(&r->first_runs);
    list_init(&r->wait);
    uv_check_init(loop, &r->check);
    r->check.data = r;
    r->handles = 1 + r->nconns;
    for (int i = 0; i < r->nconns; i++) {
        aconn_t *a = &r->conns[i];
        a->r = r;
        a->fd = -1;
        uv_timer_init(loop, &a->timer);
        a->timer.data = a;
        connect_one(a); /* ready before the first read */
    }
    *out = r;
    return 0;
}

int cm_replays_add(cm_replays_t *r, cm_req_t *req, cm_handler_fn again, void (*done)(void *),
                   void *arg)
{
    read_t *rd = malloc(sizeof *rd);
    cm_replay_t *rp = rd ? cm_replay_new() : NULL;
    if (!rp) {
        free(rd);
        return -ENOMEM;
    }
    *rd = (read_t){req, again, done, arg, rp, NULL};
    if (r->stopping) {
        run(r, rd);
        return 0;
    }
    list_push(&r->first_runs, rd);
    uv_check_start(&r->check, on_check);
    return 0;
}

int cm_replays_running(const cm_replays_t *r, const cm_req_t *req, cm_db_t **rdb)
{
    if (!r->running || r->running->req != req)
        return 0;
    *rdb = r->db;
    return 1;
}

const char *cm_replays_problem(cm_replays_t *r)
{
    int down = r->nconns > 0;
    for (int i = 0; i < r->nconns; i++) {
        connect_one(&r->conns[i]);
        down &= r->conns[i].failed;
    }
    return down ? "the database server is unreachable" : NULL;
}

void cm_replays_stop(cm_replays_t *r)
{
    r->stopping = 1;
    for (int i = 0; i < r->nconns; i++) {
        aconn_t *a = &r->conns[i];
        /* an idle one stays open until cm_replays_free: closing it is no loss to log */
        if (cm_pgasync_inflight(a->c))
            cm_pgasync_abort(a->c, -EIO, "the worker stops with reads in flight");
        settle(a);
    }
    read_t *rd;
    while ((rd = list_pop(&r->first_runs)))
        run(r, rd);
    pump(r);
}

static void handle_gone(cm_replays_t *r)
{
    if (--r->handles > 0)
        return;
    for (int i = 0; i < r->nconns; i++)
        cm_pgasync_close(r->conns[i].c);
    cm_db_close(r->db);
    free(r);
}

static void on_check_closed(uv_handle_t *h)
{
    handle_gone(h->data);
}

static void on_timer_closed(uv_handle_t *h)
{
    handle_gone(((aconn_t *)h->data)->r);
}

void cm_replays_free(cm_replays_t *r)
{
    if (!r)
        return;
    cm_replays_stop(r);
    for (int i = 0; i < r->nconns; i++) {
        aconn_t *a = &r->conns[i];
        if (a->poll)
            uv_close((uv_handle_t *)&a->poll->poll, apoll_closed);
        a->poll = NULL;
        uv_close((uv_handle_t *)&a->timer, on_timer_closed);
    }
    uv_close((uv_handle_t *)&r->check, on_check_closed);
}
