/* service/batch.c: group commit (see batch.h). Two modes, one set of calls: inline (SQLite:
 * units and reads on the worker's loop, the group committed in its check phase) and
 * threaded (PostgreSQL: a writer and readers, each a thread with its own connection, the
 * loop handing them jobs and sending what they answered). */
#include "service/batch.h"

#include "service/replay.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/server.h"

typedef struct held {
    cm_req_t *req; /* NULL for a unit of the service's own (cm_batch_keep) */
    int status;
    cm_batch_done_fn done; /* with req NULL: told whether the unit committed */
    void *data;
    int lost; /* a unit of the service's own that could not be kept: told 0 */
} held_t;

/* Work for the store: a read handler run again (again), or work/done. Inline mode keeps
 * the reads that wait for the check phase as jobs too. */
typedef struct job {
    cm_batch_kind_t kind;
    cm_req_t *req;
    cm_handler_fn again;
    cm_batch_fn work, done;
    void *data;
    const void *conn;  /* req's connection when handed over (compared, never followed) */
    int after_write;   /* inline: its connection has a held write before it */
    int replay;        /* threaded: a read handler run by replay on the loop */
    cm_batch_t *batch; /* with replay: its batch */
    struct job *next;  /* a store queue, the pending list, or the finished list */
    struct job *inext; /* threaded: the jobs out on store threads (loop only) */
    struct job *iprev;
} job_t;

/* What a store thread hands back: a finished job, a kept unit's verdict, or "a group that
 * kept units committed" (the feed wakes its long polls). */
typedef struct outcome {
    job_t *job;
    cm_batch_done_fn told;
    void *data;
    int ok;
    int committed;
    struct outcome *next;
} outcome_t;

typedef struct store_thread {
    cm_batch_t *b;
    cm_batch_kind_t kind;
    cm_db_t *db; /* the writer's is b->db; a reader's its own */
    pthread_t tid;
    int started;
} store_thread_t;

typedef struct queue {
    job_t *head, **tail;
} queue_t;

struct cm_batch {
    uv_check_t check;
    cm_db_t *db;  /* writes: the group */
    cm_db_t *rdb; /* inline reads: a snapshot for the requests read before it was taken */
    held_t *held; /* answers waiting for the commit (used by the loop or by the writer) */
    int nheld, cap;
    job_t *reads; /* inline: reads waiting for the check phase (by value: no malloc a GET) */
    int nreads, reads_cap;
    cm_batch_done_fn committed; /* after every commit that kept units (the event feed) */
    void *committed_data;
    int kept; /* units kept in the open group */
    /* cm_server_reads when the open snapshot was taken; 0: none, or taken for no request */
    uint64_t snap_reads;
    int answering; /* running the deferred reads: they read at once */

    /* --- threaded (PostgreSQL) --- */
    int threaded;
    uv_async_t async; /* a store thread finished something */
    int handles;      /* open uv handles; the memory goes with the last */
    pthread_mutex_t mu;
    pthread_cond_t wcv, rcv, outcv; /* work queued; something finished */
    queue_t wq, rq;                 /* jobs for the writer / the readers (mu) */
    outcome_t *out_head;            /* finished, for the loop (mu) */
    outcome_t **out_tail;
    int stop; /* (mu) */
    store_thread_t writer;
    store_thread_t readers[CM_BATCH_PG_READERS];
    int nreaders;
    job_t *inflight;               /* loop: jobs out on a store thread */
    queue_t pending;               /* loop: jobs waiting for their connection's other kind */
    _Atomic(const char *) problem; /* the writer's last cm_db_write_problem */
    int probing;
    cm_replays_t *replays; /* threaded: read handlers by replay on the loop */
};

#define GROUP_MAX 128 /* units a writer's group takes in before it commits */

/* The store thread running on this thread, NULL on the worker's loop. */
static _Thread_local store_thread_t *here;

static void answer_503(cm_req_t *req)
{
    cm_buf_reset(&req->res_headers);
    req->content_type_set = 0;
    cm_res_header(req, "Retry-After", "1");
    cm_res_error(req, 503, "the write could not be committed; nothing was stored; retry");
}

static void queue_init(queue_t *q)
{
    q->head = NULL;
    q->tail = &q->head;
}

static void queue_push(queue_t *q, job_t *j)
{
    j->next = NULL;
    *q->tail = j;
    q->tail = &j->next;
}

/* An outcome for the loop. The loop must hear of every job it handed over (its request
 * waits for it), so an allocation that fails is retried. */
static outcome_t *outcome_new(void)
{
    outcome_t *o;
    while (!(o = calloc(1, sizeof *o))) {
        cm_log_msg(CM_LOG_ERROR, "batch: out of memory handing work back; retrying");
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return o;
}

/* The COMMIT was sent and its answer lost (db.h's -ETIMEDOUT): stored or not, nobody
 * knows. Not 503, which promises nothing was stored: 500, as Idempotency-Key APIs answer
 * an indeterminate result, and the way to find out. */
static void answer_unknown(cm_req_t *req)
{
    cm_buf_reset(&req->res_headers);
    req->content_type_set = 0;
    cm_res_error(req, 500, "%s", CM_BATCH_UNKNOWN_OUTCOME);
}

/* Hands the held answers their verdict (rc: the group's commit). A kept unit is told now
 * (inline) or through an outcome the loop delivers (threaded; appended at *tail). */
static void answer_all(cm_batch_t *b, int rc, outcome_t ***tail)
{
    int ok = rc == 0;
    for (int i = 0; i < b->nheld; i++) {
        held_t *h = &b->held[i];
        if (h->req) {
            if (ok)
                cm_res_send(h->req, h->status); /* recorded when away */
            else if (rc == -ETIMEDOUT)
                answer_unknown(h->req);
            else
                answer_503(h->req);
        } else if (!tail) {
            h->done(h->data, ok && !h->lost);
        } else {
            outcome_t *o = outcome_new();
            *o = (outcome_t){.told = h->done, .data = h->data, .ok = ok && !h->lost};
            **tail = o;
            *tail = &o->next;
        }
    }
    b->nheld = 0;
}

static void run_job(job_t *j);

/* Commits the write group; returns 1 when it committed and kept units. Threaded, the
 * writer's groups are optimistic (store/db.h: no savepoints, deferred statements not
 * waited for): when something in one failed, its commit says -EAGAIN, nothing of it was
 * stored, and its jobs run again the plain way, their recorded answers forgotten first;
 * that run is what they answer. */
static int commit_group(cm_batch_t *b, job_t *jobs, outcome_t ***tail)
{
    int rc = cm_db_group_commit(b->db); /* always ends the transaction */
    if (rc == -EAGAIN && jobs) {
        b->nheld = 0;
        b->kept = 0;
        cm_db_optimistic(b->db, 0);
        for (job_t *j = jobs; j; j = j->next) {
            if (j->req)
                cm_req_unanswer(j->req);
            run_job(j);
        }
        cm_db_optimistic(b->db, 1);
        rc = cm_db_group_commit(b->db);
    }
    if (rc == -EAGAIN)
        rc = -EIO; /* not again */
    if (rc < 0 && b->nheld)
        cm_log_msg(CM_LOG_ERROR, "batch: %d answers of a group that did not commit are %s: %s",
                   b->nheld, rc == -ETIMEDOUT ? "500 (outcome unknown)" : "503", strerror(-rc));
    answer_all(b, rc, tail);
    int kept = b->kept;
    b->kept = 0;
    return rc == 0 && kept;
}

static void run_job(job_t *j)
{
    if (j->again) {
        j->again(j->req);
        return;
    }
    j->work(j->data);
}

/* ------------------------------------------------------------------------- */
/* inline: the worker's loop                                                   */

/* Ends the read snapshot (committed data only: nothing to lose). */
static void snap_end(cm_batch_t *b)
{
    cm_db_group_commit(b->rdb);
    b->snap_reads = 0;
}

/* A deferred read, now (a copy: running it may defer more): its work, then its done. */
static void run_deferred(job_t j)
{
    run_job(&j);
    if (j.done)
        j.done(j.data);
}

static void commit_now(cm_batch_t *b)
{
    /* the snapshot first, so the commit's checkpoint is not held back by it */
    snap_end(b);
    if (commit_group(b, NULL, NULL) && b->committed)
        b->committed(b->committed_data, 1);
    /* this iteration's reads: one snapshot, taken after all their bytes were read and
     * after this commit (a write pipelined before one of them is seen) */
    int n = b->nreads;
    b->nreads = 0;
    b->answering = 1;
    for (int i = 0; i < n; i++)
        run_deferred(b->reads[i]);
    b->answering = 0;
    if (n)
        snap_end(b); /* their snapshot must not wait for the next iteration */
    uv_check_stop(&b->check);
}

static void on_check(uv_check_t *c)
{
    commit_now(c->data);
}

/* The reads deferred so far that follow no held write of their connection, answered
 * now: a write of this iteration, pipelined after one of them, must not be seen by it.
 * A snapshot taken now is still after their bytes arrived. */
static void read_before_write(cm_batch_t *b)
{
    int n = 0;
    b->answering = 1;
    for (int i = 0; i < b->nreads; i++) {
        if (b->reads[i].after_write)
            b->reads[n++] = b->reads[i];
        else
            run_deferred(b->reads[i]);
    }
    b->answering = 0;
    b->nreads = n;
}

/* True when a held answer belongs to conn. A scan: only iterations with writes pay it. */
static int holds_write_of(const cm_batch_t *b, const cm_conn_t *conn)
{
    for (int i = b->nheld - 1; i >= 0; i--)
        if (b->held[i].req && b->held[i].req->conn == conn) /* NULL: cm_batch_keep's */
            return 1;
    return 0;
}

/* Keeps a copy of j for the check phase. Returns 0 or -ENOMEM. */
static int defer_read(cm_batch_t *b, job_t j)
{
    if (b->nreads == b->reads_cap) {
        int cap = b->reads_cap ? b->reads_cap * 2 : 16;
        job_t *d = realloc(b->reads, sizeof *d * (size_t)cap);
        if (!d)
            return -ENOMEM;
        b->reads = d;
        b->reads_cap = cap;
    }
    j.after_write = b->nheld && holds_write_of(b, j.req->conn);
    b->reads[b->nreads++] = j;
    uv_check_start(&b->check, on_check);
    return 0;
}

/* ------------------------------------------------------------------------- */
/* threaded: the store threads                                                 */

/* Runs a batch of jobs taken from one queue: reads on one snapshot, writes as one
 * group, committed once; then hands back what they did. */
static void run_batch(store_thread_t *t, job_t *jobs)
{
    cm_batch_t *b = t->b;
    outcome_t *outs = NULL, **tail = &outs;
    job_t **end = &jobs;
    int n = 0;
    for (job_t *j = jobs; j; j = j->next, n++) {
        run_job(j);
        end = &j->next;
    }
    /* The writer's group takes in what queued while it ran and commits once its queue is
     * empty: the requests a commit answered come back together, and would otherwise trickle
     * into the next group one by one (a group per fsync). Bounded, for the first ones'
     * latency. A reader does not: its snapshot must not predate a request. */
    while (t->kind == CM_BATCH_WRITE && n < GROUP_MAX) {
        pthread_mutex_lock(&b->mu);
        job_t *more = b->wq.head;
        queue_init(&b->wq);
        pthread_mutex_unlock(&b->mu);
        if (!more)
            break;
        *end = more;
        for (job_t *j = more; j; j = j->next, n++) {
            run_job(j);
            end = &j->next;
        }
    }
    int committed = 0;
    if (t->kind == CM_BATCH_WRITE) {
        committed = commit_group(b, jobs, &tail);
        /* for /readyz: a lost server is seen by the group that lost it (no round trip
         * here unless the backend's own probe is due) */
        atomic_store(&b->problem, cm_db_write_problem(b->db));
    }
    if (committed) {
        outcome_t *o = outcome_new();
        o->committed = 1;
        *tail = o;
        tail = &o->next;
    }
    for (job_t *j = jobs, *next; j; j = next) {
        next = j->next;
        outcome_t *o = outcome_new();
        o->job = j;
        *tail = o;
        tail = &o->next;
    }
    pthread_mutex_lock(&b->mu);
    *b->out_tail = outs;
    b->out_tail = tail;
    pthread_cond_signal(&b->outcv);
    pthread_mutex_unlock(&b->mu);
    uv_async_send(&b->async);
}

static void *store_main(void *arg)
{
    store_thread_t *t = arg;
    cm_batch_t *b = t->b;
    here = t;
    queue_t *q = t->kind == CM_BATCH_WRITE ? &b->wq : &b->rq;
    pthread_cond_t *cv = t->kind == CM_BATCH_WRITE ? &b->wcv : &b->rcv;
    for (;;) {
        pthread_mutex_lock(&b->mu);
        while (!q->head && !b->stop)
            pthread_cond_wait(cv, &b->mu);
        /* the writer takes them all (the next group is what queued meanwhile); a reader
         * one, so that the readers' round trips overlap */
        job_t *jobs = q->head;
        if (!jobs || t->kind == CM_BATCH_WRITE || !jobs->next) {
            queue_init(q);
        } else {
            q->head = jobs->next;
            jobs->next = NULL;
        }
        pthread_mutex_unlock(&b->mu);
        if (!jobs)
            break; /* stopping, and nothing left */
        run_batch(t, jobs);
    }
    here = NULL;
    return NULL;
}

/* The loop side: jobs of one connection keep its order between reads and writes (a read
 * runs on a reader's snapshot, a write on the writer: they would race), so a job whose
 * connection has one of the other kind out, or one still pending, waits. */
static int must_wait(const cm_batch_t *b, const job_t *j, const job_t *upto)
{
    if (!j->conn)
        return 0;
    for (const job_t *i = b->inflight; i; i = i->inext)
        if (i->conn == j->conn && i->kind != j->kind)
            return 1;
    for (const job_t *p = b->pending.head; p && p != upto; p = p->next)
        if (p->conn == j->conn)
            return 1;
    return 0;
}

static void finish_job(cm_batch_t *b, job_t *j);

static void replay_done(void *arg)
{
    job_t *j = arg;
    finish_job(j->batch, j);
}

static void dispatch(cm_batch_t *b, job_t *j)
{
    j->iprev = NULL;
    j->inext = b->inflight;
    if (b->inflight)
        b->inflight->iprev = j;
    b->inflight = j;
    if (j->replay) {
        if (cm_replays_add(b->replays, j->req, j->again, replay_done, j) < 0) {
            cm_res_error(j->req, 500, "out of memory"); /* recorded: the request is away */
            finish_job(b, j);
        }
        return;
    }
    pthread_mutex_lock(&b->mu);
    queue_push(j->kind == CM_BATCH_WRITE ? &b->wq : &b->rq, j);
    pthread_cond_signal(j->kind == CM_BATCH_WRITE ? &b->wcv : &b->rcv);
    pthread_mutex_unlock(&b->mu);
}

static void submit(cm_batch_t *b, job_t *j)
{
    if (j->req)
        cm_req_away(j->req);
    if (must_wait(b, j, NULL))
        queue_push(&b->pending, j);
    else
        dispatch(b, j);
}

/* After jobs came back: the pending ones now free to go, in order. */
static void release_pending(cm_batch_t *b)
{
    job_t **pp = &b->pending.head;
    while (*pp) {
        job_t *j = *pp;
        if (must_wait(b, j, j)) {
            pp = &j->next;
            continue;
        }
        *pp = j->next;
        if (!*pp)
            b->pending.tail = pp;
        dispatch(b, j);
    }
}

static void finish_job(cm_batch_t *b, job_t *j)
{
    if (j->iprev)
        j->iprev->inext = j->inext;
    else
        b->inflight = j->inext;
    if (j->inext)
        j->inext->iprev = j->iprev;
    if (j->req)
        cm_req_back(j->req); /* sends what it answered */
    if (j->done)
        j->done(j->data);
    free(j);
}

/* On the loop: what the store threads finished, in the order they finished it. */
static void deliver(cm_batch_t *b)
{
    pthread_mutex_lock(&b->mu);
    outcome_t *o = b->out_head;
    b->out_head = NULL;
    b->out_tail = &b->out_head;
    pthread_mutex_unlock(&b->mu);
    while (o) {
        outcome_t *next = o->next;
        if (o->job)
            finish_job(b, o->job);
        else if (o->committed && b->committed)
            b->committed(b->committed_data, 1);
        else if (o->told)
            o->told(o->data, o->ok);
        free(o);
        o = next;
    }
    release_pending(b);
}

static void on_async(uv_async_t *a)
{
    deliver(a->data);
}

static int start_thread(cm_batch_t *b, store_thread_t *t, cm_batch_kind_t kind, cm_db_t *db)
{
    t->b = b;
    t->kind = kind;
    t->db = db;
    int rc = pthread_create(&t->tid, NULL, store_main, t);
    if (rc != 0)
        return -rc;
    t->started = 1;
    return 0;
}

/* Finishes every job handed over (and what their completions hand over), then stops the
 * store threads; the connections are the loop's after, and the batch is inline. */
static void stop_threads(cm_batch_t *b)
{
    pthread_mutex_lock(&b->mu);
    while (b->inflight || b->pending.head) {
        while (!b->out_head)
            pthread_cond_wait(&b->outcv, &b->mu);
        pthread_mutex_unlock(&b->mu);
        deliver(b);
        pthread_mutex_lock(&b->mu);
    }
    b->stop = 1;
    pthread_cond_broadcast(&b->wcv);
    pthread_cond_broadcast(&b->rcv);
    pthread_mutex_unlock(&b->mu);
    if (b->writer.started)
        pthread_join(b->writer.tid, NULL);
    for (int i = 0; i < b->nreaders; i++)
        if (b->readers[i].started)
            pthread_join(b->readers[i].tid, NULL);
    b->threaded = 0;
    cm_db_optimistic(b->db, 0); /* inline from here: nothing would run a group again */
}

static void on_probed(void *data)
{
    ((cm_batch_t *)data)->probing = 0;
}

static void probe(void *data)
{
    cm_batch_t *b = data;
    atomic_store(&b->problem, cm_db_write_problem(b->db));
}

const char *cm_batch_write_problem(cm_batch_t *b)
{
    if (!b->threaded)
        return cm_db_write_problem(b->db);
    if (!b->probing) { /* the answer of the last probe, or of the last group */
        b->probing = 1;
        cm_batch_run(b, CM_BATCH_WRITE, NULL, probe, on_probed, b);
    }
    /* The loop's own read connections see a server that went away at once (their
     * sockets close), while the writer may be busy with a group that lost it: when every
     * one of them went down and none has connected since, the server is unreachable.
     * Asking also reconnects them (after their backoff), so readiness comes back with the
     * server. */
    const char *gone = cm_replays_problem(b->replays);
    return gone ? gone : atomic_load(&b->problem);
}

/* ------------------------------------------------------------------------- */
/* the calls                                                                   */

/* Frees what the batch holds but its handles: connections, locks, lists. */
static void batch_release(cm_batch_t *b)
{
    for (int i = 0; i < b->nreaders; i++)
        cm_db_close(b->readers[i].db);
    if (!b->nreaders)
        cm_db_close(b->rdb);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->wcv);
    pthread_cond_destroy(&b->rcv);
    pthread_cond_destroy(&b->outcv);
    free(b->held);
    free(b->reads);
    free(b);
}

static void handle_gone(cm_batch_t *b)
{
    if (--b->handles == 0)
        batch_release(b);
}

static void on_closed(uv_handle_t *h)
{
    handle_gone(h->data);
}

int cm_batch_new(uv_loop_t *loop, cm_db_t *db, const char *target, cm_batch_t **out)
{
    cm_batch_t *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    b->db = db;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->wcv, NULL);
    pthread_cond_init(&b->rcv, NULL);
    pthread_cond_init(&b->outcv, NULL);
    queue_init(&b->wq);
    queue_init(&b->rq);
    queue_init(&b->pending);
    b->out_tail = &b->out_head;
    int rc = 0;
    if (cm_db_is_postgres(target)) {
        for (; rc == 0 && b->nreaders < CM_BATCH_PG_READERS; b->nreaders++)
            if ((rc = cm_db_open_reader(target, &b->readers[b->nreaders].db)) < 0)
                break;
    } else {
        rc = cm_db_open_reader(target, &b->rdb);
    }
    if (rc == 0 && b->nreaders)
        rc = cm_replays_new(loop, target, CM_BATCH_PG_ASYNC, &b->replays);
    if (rc < 0) {
        batch_release(b);
        return rc;
    }
    if (b->nreaders)
        b->rdb = b->readers[0].db; /* the inline reader once the threads are stopped */
    uv_check_init(loop, &b->check);
    uv_async_init(loop, &b->async, on_async);
    b->check.data = b->async.data = b;
    b->handles = 2;
    if (b->nreaders) {
        b->threaded = 1;
        cm_db_optimistic(db, 1); /* the writer can run a group again (commit_group) */
        rc = start_thread(b, &b->writer, CM_BATCH_WRITE, db);
        for (int i = 0; rc == 0 && i < b->nreaders; i++)
            rc = start_thread(b, &b->readers[i], CM_BATCH_READ, b->readers[i].db);
        if (rc < 0) {
            cm_log_msg(CM_LOG_ERROR, "batch: cannot start a store thread: %s", strerror(-rc));
            cm_batch_free(b);
            return rc;
        }
    }
    *out = b;
    return 0;
}

void cm_batch_free(cm_batch_t *b)
{
    if (!b)
        return;
    if (b->threaded) {
        cm_replays_stop(b->replays); /* every read answered: none waits on a write */
        stop_threads(b);
    }
    cm_replays_free(b->replays);
    commit_now(b);
    uv_close((uv_handle_t *)&b->check, on_closed);
    uv_close((uv_handle_t *)&b->async, on_closed);
}

void cm_batch_run(cm_batch_t *b, cm_batch_kind_t kind, cm_req_t *req, cm_batch_fn work,
                  cm_batch_fn done, void *data)
{
    job_t j = {.kind = kind,
               .req = req,
               .work = work,
               .done = done,
               .data = data,
               .conn = req ? req->conn : NULL};
    if (b->threaded) {
        job_t *out = malloc(sizeof *out);
        if (out) {
            *out = j;
            submit(b, out);
            return;
        }
        /* out of memory for a job: its store calls fail (logged) */
        cm_log_msg(CM_LOG_ERROR, "batch: out of memory for a store job");
    } else if (kind == CM_BATCH_READ && req && req->conn && !b->answering &&
               defer_read(b, j) == 0) {
        return;
    }
    /* inline now */
    work(data);
    if (done)
        done(data);
}

/* Room for one more held answer, made before the unit begins. */
static int reserve(cm_batch_t *b)
{
    if (b->nheld == b->cap) {
        int cap = b->cap ? b->cap * 2 : 64;
        held_t *h = realloc(b->held, sizeof *h * (size_t)cap);
        if (!h)
            return -ENOMEM;
        b->held = h;
        b->cap = cap;
    }
    return 0;
}

/* Every unit has its held slot before it begins, so ending it never fails for memory. */
int cm_batch_begin(cm_batch_t *b)
{
    if ((b->threaded || here) && here != &b->writer) {
        cm_log_msg(CM_LOG_ERROR, "batch: a unit begun outside the writer (a bug)");
        return -EINVAL;
    }
    if (reserve(b) < 0)
        return -ENOMEM;
    if (!here) {
        if (b->nreads && !b->answering)
            read_before_write(b);
        /* before the begin: whatever it leaves open is ended in this iteration */
        uv_check_start(&b->check, on_check);
    }
    return cm_db_unit_begin(b->db);
}

void cm_batch_answer(cm_batch_t *b, cm_req_t *req, int status)
{
    /* on failure the unit's writes are gone, or the whole group is: 503 now is true */
    if (cm_db_unit_end(b->db) < 0) {
        answer_503(req);
        return;
    }
    b->kept++;
    b->held[b->nheld++] = (held_t){req, status, NULL, NULL, 0};
}

void cm_batch_keep(cm_batch_t *b, cm_batch_done_fn done, void *data)
{
    int lost = cm_db_unit_end(b->db) < 0; /* told 0 with the group, on the loop */
    if (!lost)
        b->kept++;
    b->held[b->nheld++] = (held_t){NULL, 0, done, data, lost};
}

void cm_batch_undo(cm_batch_t *b)
{
    cm_db_unit_undo(b->db);
}

void cm_batch_on_commit(cm_batch_t *b, cm_batch_done_fn fn, void *data)
{
    b->committed = fn;
    b->committed_data = data;
}

void cm_batch_refuse(cm_batch_t *b, cm_req_t *req, int status)
{
    /* a failed undo loses the group, so the held answer turns 503 at the commit */
    cm_db_unit_undo(b->db);
    b->held[b->nheld++] = (held_t){req, status, NULL, NULL, 0};
}

int cm_batch_read(cm_batch_t *b, cm_req_t *req, cm_handler_fn again, cm_db_t **rdb)
{
    if (here) { /* a reader thread */
        if (here->kind != CM_BATCH_READ) {
            cm_log_msg(CM_LOG_ERROR, "batch: a read on the writer (a bug)");
            return -EINVAL;
        }
        /* No snapshot transaction: each statement sees what was committed when it began
         * (after the request arrived), in one round trip, where BEGIN ... COMMIT would
         * take three; no read of ours needs its statements to agree more than that. */
        *rdb = here->db;
        return 0;
    }
    *rdb = b->rdb;
    if (b->threaded) {
        if (cm_replays_running(b->replays, req, rdb))
            return 0; /* a run of its replay */
        if (!again || !req) {
            cm_log_msg(CM_LOG_ERROR, "batch: a read on the loop (a bug)");
            return -EINVAL;
        }
        job_t *j = malloc(sizeof *j);
        if (!j)
            return -ENOMEM;
        *j = (job_t){.kind = CM_BATCH_READ,
                     .req = req,
                     .again = again,
                     .conn = req->conn,
                     .replay = 1,
                     .batch = b};
        submit(b, j);
        return 1;
    }
    /* A request's read waits for the check phase, after every read of this iteration:
     * one snapshot then serves them all, taken after their bytes arrived (and after the
     * commit of a write pipelined before one of them). */
    if (again && req->conn && !b->answering) {
        if (defer_read(b, (job_t){.kind = CM_BATCH_READ, .req = req, .again = again}) < 0)
            return -ENOMEM;
        return 1;
    }
    /* Read-your-writes across instances: a client may send this request after another
     * process answered its write, so a snapshot taken before these bytes were read
     * (by a timer before the poll, or for an earlier read of this iteration) may miss
     * that write. Requests read before the snapshot share it. */
    uint64_t reads = cm_server_reads(req);
    if (b->snap_reads != reads || reads == 0)
        snap_end(b);
    int rc = cm_db_read_begin(b->rdb);
    if (rc == 0) {
        b->snap_reads = reads;
        uv_check_start(&b->check, on_check);
    }
    return rc;
}
