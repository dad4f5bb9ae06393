/* orders/orders_store.c: SQL for the orders service (see orders_store.h). */
#include "orders/orders_store.h"

#include "service/rows.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/timefmt.h"
#include "store/idempotency.h"

const cm_migration_t cm_orders_migrations[] = {
    {"CREATE TABLE orders("
     " id INTEGER PRIMARY KEY AUTOINCREMENT," /* AUTOINCREMENT: ids are never reused */
     " user_id INTEGER NOT NULL,"
     " status TEXT NOT NULL,"
     " created_at TEXT NOT NULL,"
     " updated_at TEXT NOT NULL);"
     "CREATE INDEX orders_by_user ON orders(user_id, id);"},
    {CM_IDEM_MIGRATION},
    {CM_IDEM_MIGRATION_SCOPE},
};
const int cm_orders_nmigrations = sizeof cm_orders_migrations / sizeof cm_orders_migrations[0];

#define COLS "id, user_id, status, created_at, updated_at"

static const char sql_get[] = "SELECT " COLS " FROM orders WHERE id = ?";
static const char sql_status[] = "SELECT status FROM orders WHERE id = ?";
static const char sql_list[] = "SELECT " COLS " FROM orders WHERE id > ? ORDER BY id LIMIT ?";
static const char sql_list_user[] = "SELECT " COLS " FROM orders WHERE user_id = ? AND id > ?"
                                    " ORDER BY id LIMIT ?";
static const char sql_insert[] = "INSERT INTO orders(user_id, status, created_at, updated_at)"
                                 " VALUES(?, ?, ?, ?) RETURNING " COLS;
static const char sql_update[] = "UPDATE orders SET user_id = COALESCE(?, user_id),"
                                 " status = COALESCE(?, status), updated_at = ?"
                                 " WHERE id = ? RETURNING " COLS;
static const char sql_delete[] = "DELETE FROM orders WHERE id = ?";

static const cm_col_t cols[] = {
    CM_COL("id", CM_COL_INT),         CM_COL("userId", CM_COL_INT),
    CM_COL("status", CM_COL_TEXT),    CM_COL("createdAt", CM_COL_TEXT),
    CM_COL("updatedAt", CM_COL_TEXT),
};
static const cm_row_shape_t shape = {cols, 5};

int cm_orders_get(cm_db_t *db, int64_t id, cm_buf_t *out, char status[CM_ORDER_STATUS_MAX])
{
    cm_stmt_t *st = cm_db_stmt(db, sql_get);
    if (st)
        cm_stmt_bind_int(st, 1, id);
    int rc = cm_rows_one(st, &shape, NULL, out);
    if (rc < 0 || !status)
        return rc;
    if (!(st = cm_db_stmt(db, sql_status)))
        return -EIO;
    cm_stmt_bind_int(st, 1, id);
    rc = cm_stmt_step(st);
    if (rc == CM_DB_ROW) {
        size_t len;
        const char *s = cm_stmt_text(st, 0, &len);
        snprintf(status, CM_ORDER_STATUS_MAX, "%.*s", (int)len, s ? s : "");
        rc = 0;
    } else if (rc == CM_DB_DONE) {
        rc = -ENOENT;
    }
    cm_stmt_reset(st);
    return rc;
}

int cm_orders_list(cm_db_t *db, int64_t user_id, int64_t after, int limit, cm_buf_t *out,
                   int64_t *last, int *more)
{
    cm_stmt_t *st = cm_db_stmt(db, user_id > 0 ? sql_list_user : sql_list);
    if (!st)
        return -EIO;
    int i = 1;
    if (user_id > 0)
        cm_stmt_bind_int(st, i++, user_id);
    cm_stmt_bind_int(st, i++, after);
    cm_stmt_bind_int(st, i, (int64_t)limit + 1); /* one extra row tells whether more exist */
    *last = after;
    return cm_rows_page(st, &shape, limit, out, last, more);
}

int cm_orders_insert(cm_db_t *db, int64_t user_id, const char *status, int64_t *id, cm_buf_t *out)
{
    char now[32];
    cm_time_rfc3339(now);
    cm_stmt_t *st = cm_db_stmt(db, sql_insert);
    if (st) {
        cm_stmt_bind_int(st, 1, user_id);
        cm_stmt_bind_text(st, 2, status, strlen(status));
        cm_stmt_bind_text(st, 3, now, CM_TIME_RFC3339_LEN);
        cm_stmt_bind_text(st, 4, now, CM_TIME_RFC3339_LEN);
    }
    return cm_rows_one(st, &shape, id, out);
}

static const char sql_fields[] = "SELECT user_id, status FROM orders WHERE id = ?";

/* 1 when the update would change nothing, 0 when it would, or the store's error. */
static int is_no_op(cm_db_t *db, int64_t id, int64_t user_id, const char *status)
{
    cm_stmt_t *st = cm_db_stmt(db, sql_fields);
    if (!st)
        return -EIO;
    cm_stmt_bind_int(st, 1, id);
    int rc = cm_stmt_step(st);
    if (rc == CM_DB_ROW) {
        size_t len;
        const char *s = cm_stmt_text(st, 1, &len);
        rc = (user_id <= 0 || cm_stmt_int(st, 0) == user_id) &&
             (!status || (s && len == strlen(status) && memcmp(s, status, len) == 0));
    } else if (rc == CM_DB_DONE) {
        rc = -ENOENT;
    }
    cm_stmt_reset(st);
    return rc;
}

int cm_orders_update(cm_db_t *db, int64_t id, int64_t user_id, const char *status, cm_buf_t *out)
{
    /* a no-op (the same user, the status it has) leaves updatedAt and the ETag as they are */
    int rc = is_no_op(db, id, user_id, status);
    if (rc < 0)
        return rc;
    if (rc == 1)
        return cm_orders_get(db, id, out, NULL);
    char now[32];
    cm_time_rfc3339(now);
    cm_stmt_t *st = cm_db_stmt(db, sql_update);
    if (!st)
        return -EIO;
    if (user_id > 0)
        cm_stmt_bind_int(st, 1, user_id);
    else
        cm_stmt_bind_null(st, 1);
    if (status)
        cm_stmt_bind_text(st, 2, status, strlen(status));
    else
        cm_stmt_bind_null(st, 2);
    cm_stmt_bind_text(st, 3, now, CM_TIME_RFC3339_LEN);
    cm_stmt_bind_int(st, 4, id);
    return cm_rows_one(st, &shape, NULL, out);
}

int cm_orders_delete(cm_db_t *db, int64_t id)
{
    return cm_rows_delete(db, sql_delete, id);
}
