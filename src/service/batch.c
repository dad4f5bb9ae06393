/* service/batch.c: group commit (see batch.h). */
#include "service/batch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/server.h"

typedef struct held {
    cm_req_t *req; /* NULL for a unit of the service's own (cm_batch_keep) */
    int status;
    cm_batch_done_fn done; /* with req NULL: told whether the unit committed */
    void *data;
} held_t;

typedef struct deferred {
    cm_req_t *req;
    cm_handler_fn again;
    int after_write; /* its connection has a held write before it: reads after the commit */
} deferred_t;

struct cm_batch {
    uv_check_t check;
    cm_db_t *db;  /* writes: the group */
    cm_db_t *rdb; /* reads: a snapshot for the requests read before it was taken */
    held_t *held; /* answers waiting for the commit */
    int nheld, cap;
    deferred_t *reads; /* reads waiting for a held write of their connection */
    int nreads, reads_cap;
    cm_batch_done_fn committed; /* after every commit that kept units (the event feed) */
    void *committed_data;
    int kept; /* units kept in the open group */
    /* cm_server_reads when the open snapshot was taken; 0: none, or taken for no request */
    uint64_t snap_reads;
    int answering; /* running the deferred reads: they read at once */
};

static void answer_503(cm_req_t *req)
{
    cm_buf_reset(&req->res_headers);
    req->content_type_set = 0;
    cm_res_header(req, "Retry-After", "1");
    cm_res_error(req, 503, "the write could not be committed; nothing was stored; retry");
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

static void answer_all(cm_batch_t *b, int rc)
{
    int ok = rc == 0;
    for (int i = 0; i < b->nheld; i++) {
        if (!b->held[i].req)
            b->held[i].done(b->held[i].data, ok);
        else if (ok)
            cm_res_send(b->held[i].req, b->held[i].status);
        else if (rc == -ETIMEDOUT)
            answer_unknown(b->held[i].req);
        else
            answer_503(b->held[i].req);
    }
    b->nheld = 0;
}

/* Ends the read snapshot (committed data only: nothing to lose). */
static void snap_end(cm_batch_t *b)
{
    cm_db_group_commit(b->rdb);
    b->snap_reads = 0;
}

static void commit_now(cm_batch_t *b)
{
    /* the snapshot first, so the commit's checkpoint is not held back by it */
    snap_end(b);
    int rc = cm_db_group_commit(b->db); /* always ends the transaction */
    if (rc < 0 && b->nheld)
        cm_log_msg(CM_LOG_ERROR, "batch: %d answers of a group that did not commit are %s: %s",
                   b->nheld, rc == -ETIMEDOUT ? "500 (outcome unknown)" : "503", strerror(-rc));
    answer_all(b, rc);
    int kept = b->kept;
    b->kept = 0;
    if (rc == 0 && kept && b->committed)
        b->committed(b->committed_data, 1);
    /* this iteration's reads: one snapshot, taken after all their bytes were read and
     * after this commit (a write pipelined before one of them is seen) */
    int n = b->nreads;
    b->nreads = 0;
    b->answering = 1;
    for (int i = 0; i < n; i++)
        b->reads[i].again(b->reads[i].req);
    b->answering = 0;
    if (n)
        snap_end(b); /* their snapshot must not wait for the next iteration */
    uv_check_stop(&b->check);
}

static void on_check(uv_check_t *c)
{
    commit_now(c->data);
}

int cm_batch_new(uv_loop_t *loop, cm_db_t *db, cm_db_t *rdb, cm_batch_t **out)
{
    cm_batch_t *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    b->db = db;
    b->rdb = rdb;
    uv_check_init(loop, &b->check);
    b->check.data = b;
    *out = b;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    cm_batch_t *b = h->data;
    free(b->held);
    free(b->reads);
    free(b);
}

void cm_batch_free(cm_batch_t *b)
{
    if (!b)
        return;
    commit_now(b);
    uv_close((uv_handle_t *)&b->check, on_closed);
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
            b->reads[i].again(b->reads[i].req);
    }
    b->answering = 0;
    b->nreads = n;
}

int cm_batch_begin(cm_batch_t *b)
{
    if (b->nreads && !b->answering)
        read_before_write(b);
    /* before the begin: whatever it leaves open is ended in this iteration */
    uv_check_start(&b->check, on_check);
    return cm_db_unit_begin(b->db);
}

/* Room for one more held answer, made before the unit ends (it cannot be undone after). */
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

void cm_batch_answer(cm_batch_t *b, cm_req_t *req, int status)
{
    if (reserve(b) < 0) {
        cm_db_unit_undo(b->db);
        answer_503(req);
        return;
    }
    /* on failure the unit's writes are gone, or the whole group is: 503 now is true */
    if (cm_db_unit_end(b->db) < 0) {
        answer_503(req);
        return;
    }
    b->kept++;
    b->held[b->nheld++] = (held_t){req, status, NULL, NULL};
}

void cm_batch_keep(cm_batch_t *b, cm_batch_done_fn done, void *data)
{
    if (reserve(b) < 0) {
        cm_db_unit_undo(b->db);
        done(data, 0);
        return;
    }
    if (cm_db_unit_end(b->db) < 0) {
        done(data, 0);
        return;
    }
    b->kept++;
    b->held[b->nheld++] = (held_t){NULL, 0, done, data};
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
    if (reserve(b) < 0) {
        answer_503(req);
        return;
    }
    b->held[b->nheld++] = (held_t){req, status, NULL, NULL};
}

/* True when a held answer belongs to conn. A scan: only iterations with writes pay it. */
static int holds_write_of(const cm_batch_t *b, const cm_conn_t *conn)
{
    for (int i = b->nheld - 1; i >= 0; i--)
        if (b->held[i].req && b->held[i].req->conn == conn) /* NULL: cm_batch_keep's */
            return 1;
    return 0;
}

int cm_batch_read(cm_batch_t *b, cm_req_t *req, cm_handler_fn again, cm_db_t **rdb)
{
    *rdb = b->rdb;
    /* A request's read waits for the check phase, after every read of this iteration:
     * one snapshot then serves them all, taken after their bytes arrived (and after the
     * commit of a write pipelined before one of them). */
    if (again && req->conn && !b->answering) {
        if (b->nreads == b->reads_cap) {
            int cap = b->reads_cap ? b->reads_cap * 2 : 16;
            deferred_t *d = realloc(b->reads, sizeof *d * (size_t)cap);
            if (!d)
                return -ENOMEM;
            b->reads = d;
            b->reads_cap = cap;
        }
        int after_write = b->nheld && holds_write_of(b, req->conn);
        b->reads[b->nreads++] = (deferred_t){req, again, after_write};
        uv_check_start(&b->check, on_check);
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
