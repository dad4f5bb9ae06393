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
    uv_timer_t timer; /* the deadline of the connect or of the statement in flight */
    read_t *read;     /* the read whose statement is in flight */
    int failed;       /* it went down and has not been connected since (readiness) */
} aconn_t;

struct cm_replays {
    uv_check_t check; /* first runs, after the handler that asked returned */
    cm_db_t *db;      /* the replay database the runs read */
    aconn_t conns[MAX_CONNS];
    int nconns;
    list_t first_runs; /* first runs for the check phase */
    list_t wait;       /* reads waiting for an idle connection */
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
 * at every step of a connect, where libpq may switch sockets). */
static void watch(aconn_t *a)
{
    int fd = cm_pgasync_fd(a->c);
    int ev = cm_pgasync_events(a->c);
    if (a->poll && (fd != a->fd || fd < 0 || cm_pgasync_state(a->c) == CM_PGASYNC_CONNECTING)) {
        uv_close((uv_handle_t *)&a->poll->poll, apoll_closed);
        a->poll = NULL;
    }
    if (fd < 0 || !ev) {
        if (a->poll)
            uv_poll_stop(&a->poll->poll);
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
            if (cm_pgasync_abort(a->c, -EIO, uv_now(a->timer.loop))) {
                /* its read is answered (503) from the next check phase */
                list_push(&a->r->first_runs, a->read);
                a->read = NULL;
                uv_check_start(&a->r->check, on_check);
            }
            return;
        }
        p->fd = dfd;
        p->a = a;
        p->poll.data = p;
        a->poll = p;
        a->fd = fd;
    }
    uv_poll_start(&a->poll->poll,
                  ((ev & CM_PGASYNC_IN) ? UV_READABLE : 0) |
                      ((ev & CM_PGASYNC_OUT) ? UV_WRITABLE : 0),
                  on_apoll);
}

/* After the connection moved on: its watch, deadline and readiness, then the read it
 * finished. */
static void stepped(aconn_t *a, cm_replay_t *done)
{
    watch(a);
    cm_pgasync_state_t st = cm_pgasync_state(a->c);
    if (st == CM_PGASYNC_IDLE || st == CM_PGASYNC_DOWN)
        uv_timer_stop(&a->timer);
    if (st == CM_PGASYNC_DOWN)
        a->failed = 1;
    else if (st != CM_PGASYNC_CONNECTING)
        a->failed = 0;
    if (done) {
        read_t *rd = a->read;
        a->read = NULL;
        run(a->r, rd);
    }
    pump(a->r);
}

static void on_apoll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events; /* an error shows in what libpq reads */
    aconn_t *a = ((apoll_t *)h->data)->a;
    stepped(a, cm_pgasync_advance(a->c, uv_now(h->loop)));
}

static void on_deadline(uv_timer_t *t)
{
    aconn_t *a = t->data;
    uint64_t now = uv_now(t->loop);
    if (cm_pgasync_state(a->c) == CM_PGASYNC_CONNECTING)
        stepped(a, cm_pgasync_advance(a->c, now)); /* past its connect deadline: down */
    else
        stepped(a, cm_pgasync_abort(a->c, -EBUSY, now)); /* answered 503 */
}

/* Starts the connection when it is down and its backoff is over. */
static void connect_one(aconn_t *a)
{
    uint64_t later;
    if (cm_pgasync_state(a->c) != CM_PGASYNC_DOWN ||
        cm_pgasync_start(a->c, uv_now(a->timer.loop), &later) < 0)
        return;
    uv_timer_start(&a->timer, on_deadline, CONNECT_DEADLINE_MS, 0);
    stepped(a, cm_pgasync_advance(a->c, uv_now(a->timer.loop)));
}

/* Hands the waiting reads to idle connections; while none is idle they wait for one on
 * its way (connecting or busy), and with every connection down (in its backoff) they are
 * answered 503 at once, as a read on an unreachable server is. */
static void pump(cm_replays_t *r)
{
    if (r->pumping)
        return; /* a read finished inside: the outer pass goes on */
    r->pumping = 1;
    while (r->wait.head) {
        aconn_t *idle = NULL;
        int coming = 0;
        for (int i = 0; i < r->nconns && !idle; i++) {
            aconn_t *a = &r->conns[i];
            if (!r->stopping)
                connect_one(a);
            cm_pgasync_state_t st = cm_pgasync_state(a->c);
            if (st == CM_PGASYNC_IDLE)
                idle = a;
            else if (st != CM_PGASYNC_DOWN)
                coming = 1;
        }
        if (!idle && coming && !r->stopping)
            break;
        read_t *rd = list_pop(&r->wait);
        int rc = idle && !r->stopping ? cm_pgasync_send(idle->c, rd->rp) : -EIO;
        if (rc == 0) {
            idle->read = rd;
            uv_timer_start(&idle->timer, on_deadline, READ_DEADLINE_MS, 0);
            watch(idle);
            continue;
        }
        if (idle)
            watch(idle); /* it went down */
        cm_replay_fail(rd->rp, rc);
        run(r, rd);
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
        if (cm_pgasync_abort(a->c, -EIO, uv_now(a->timer.loop))) {
            read_t *rd = a->read;
            a->read = NULL;
            run(r, rd);
        }
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
