/* service/rows.c: rows to JSON (see rows.h). */
#include "service/rows.h"

#include <errno.h>
#include <string.h>

#include "core/json.h"

static void write_row(cm_stmt_t *st, const cm_row_shape_t *shape, cm_buf_t *out)
{
    cm_buf_append(out, "{", 1);
    for (int i = 0; i < shape->ncols; i++) {
        const cm_col_t *c = &shape->cols[i];
        if (i)
            cm_buf_append(out, ",", 1);
        cm_buf_append_str(out, c->key);
        if (c->type == CM_COL_INT) {
            cm_buf_append_u64(out, (unsigned long long)cm_stmt_int(st, i));
        } else if (c->type == CM_COL_BOOL) {
            cm_buf_append_str(out, cm_stmt_int(st, i) ? "true" : "false");
        } else {
            size_t len;
            const char *s = cm_stmt_text(st, i, &len);
            cm_json_str(out, s ? s : "", len);
        }
    }
    cm_buf_append(out, "}", 1);
}

void cm_rows_values(const cm_row_shape_t *shape, int64_t id, const char *const *text,
                    const size_t *len, cm_buf_t *out)
{
    cm_buf_append(out, "{", 1);
    cm_buf_append_str(out, shape->cols[0].key);
    cm_buf_append_u64(out, (unsigned long long)id);
    for (int i = 1; i < shape->ncols; i++) {
        cm_buf_append(out, ",", 1);
        cm_buf_append_str(out, shape->cols[i].key);
        cm_json_str(out, text[i - 1], len[i - 1]);
    }
    cm_buf_append(out, "}", 1);
}

int cm_rows_one(cm_stmt_t *st, const cm_row_shape_t *shape, int64_t *id, cm_buf_t *out)
{
    if (!st)
        return -EIO;
    int rc = cm_stmt_step(st);
    if (rc == CM_DB_ROW) {
        if (id)
            *id = cm_stmt_int(st, 0);
        write_row(st, shape, out);
        rc = 0;
    } else if (rc == CM_DB_DONE) {
        rc = -ENOENT;
    }
    cm_stmt_reset(st);
    return rc;
}

int cm_rows_page(cm_stmt_t *st, const cm_row_shape_t *shape, int limit, cm_buf_t *out,
                 int64_t *last, int *more)
{
    if (!st)
        return -EIO;
    int n = 0, rc;
    *more = 0;
    cm_buf_append(out, "[", 1);
    while ((rc = cm_stmt_step(st)) == CM_DB_ROW) {
        if (n == limit) {
            *more = 1;
            break;
        }
        if (n++)
            cm_buf_append(out, ",", 1);
        *last = cm_stmt_int(st, 0);
        write_row(st, shape, out);
    }
    cm_stmt_reset(st);
    if (rc < 0)
        return rc;
    cm_buf_append(out, "]", 1);
    return 0;
}

int cm_rows_delete(cm_db_t *db, const char *sql, int64_t id)
{
    cm_stmt_t *st = cm_db_stmt(db, sql);
    if (!st)
        return -EIO;
    cm_stmt_bind_int(st, 1, id);
    int rc = cm_stmt_step(st);
    cm_stmt_reset(st);
    if (rc < 0)
        return rc;
    return cm_db_changes(db) > 0 ? 0 : -ENOENT;
}
