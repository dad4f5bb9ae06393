/* service/batch.c: group commit (see batch.h). */
#include "service/batch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

typedef struct held {
    cm_req_t *req;
    int status;
} held_t;

struct cm_batch {
    uv_check_t check;
    cm_db_t *db;
    held_t *held; /* answers waiting for the commit */
    int nheld, cap;
    int lost; /* the group was rolled back under us: held answers must not say 2xx */
};

static void answer_all(cm_batch_t *b, int ok)
{
    for (int i = 0; i < b->nheld; i++) {
        cm_req_t *req = b->held[i].req;
        if (ok) {
            cm_res_send(req, b->held[i].status);
        } else {
            cm_buf_reset(&req->res_headers);
            req->content_type_set = 0;
            cm_res_header(req, "Retry-After", "1");
            cm_res_error(req, 503, "the write could not be committed; retry");
        }
    }
    b->nheld = 0;
    b->lost = 0;
}

static void commit_now(cm_batch_t *b)
{
    int rc = b->lost ? -EIO : cm_db_group_commit(b->db);
    if (rc < 0 && b->nheld)
        cm_log_msg(CM_LOG_ERROR, "batch: commit of %d writes failed: %s", b->nheld, strerror(-rc));
    answer_all(b, rc == 0);
    uv_check_stop(&b->check);
}

static void on_check(uv_check_t *c)
{
    commit_now(c->data);
}

int cm_batch_new(uv_loop_t *loop, cm_db_t *db, cm_batch_t **out)
{
    cm_batch_t *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    b->db = db;
    uv_check_init(loop, &b->check);
    b->check.data = b;
    *out = b;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    cm_batch_t *b = h->data;
    free(b->held);
    free(b);
}

void cm_batch_free(cm_batch_t *b)
{
    if (!b)
        return;
    commit_now(b);
    uv_close((uv_handle_t *)&b->check, on_closed);
}

int cm_batch_begin(cm_batch_t *b)
{
    if (b->nheld && !cm_db_in_group(b->db))
        b->lost = 1; /* SQLite ended the group by itself (I/O error, disk full) */
    int rc = cm_db_unit_begin(b->db);
    if (rc == 0)
        uv_check_start(&b->check, on_check);
    return rc;
}

void cm_batch_answer(cm_batch_t *b, cm_req_t *req, int status)
{
    int rc = cm_db_unit_end(b->db);
    if (rc == 0 && b->nheld == b->cap) {
        int cap = b->cap ? b->cap * 2 : 64;
        held_t *h = realloc(b->held, sizeof *h * (size_t)cap);
        if (!h) {
            rc = -ENOMEM;
        } else {
            b->held = h;
            b->cap = cap;
        }
    }
    if (rc < 0) {
        b->lost = 1; /* the unit's writes may be in the group: nothing held may say 2xx */
        cm_buf_reset(&req->res_headers);
        req->content_type_set = 0;
        cm_res_header(req, "Retry-After", "1");
        cm_res_error(req, 503, "the write could not be committed; retry");
        return;
    }
    b->held[b->nheld++] = (held_t){req, status};
}

int cm_batch_read(cm_batch_t *b)
{
    int rc = cm_db_read_begin(b->db);
    if (rc == 0)
        uv_check_start(&b->check, on_check);
    return rc;
}

void cm_batch_undo(cm_batch_t *b)
{
    cm_db_unit_undo(b->db);
}
