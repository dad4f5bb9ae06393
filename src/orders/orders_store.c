/* orders/orders_store.c: SQL for the orders service (see orders_store.h). */
#include "orders/orders_store.h"

#include "service/outbox.h"
#include "service/rows.h"
#include "service/subscribe.h"

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
    {CM_OUTBOX_MIGRATION},
    {CM_IDEM_MIGRATION_BY_TIME},
    /* the users feed: its cursor, the users it told of (gone = deleted), and on each
     * order whether its user is gone */
    {CM_SUB_MIGRATION "CREATE TABLE known_users(id INTEGER PRIMARY KEY,"
                      " gone INTEGER NOT NULL DEFAULT 0);"
                      "ALTER TABLE orders ADD COLUMN user_gone INTEGER NOT NULL DEFAULT 0;"},
};
const int cm_orders_nmigrations = sizeof cm_orders_migrations / sizeof cm_orders_migrations[0];

#define COLS "id, user_id, status, created_at, updated_at, user_gone"

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
    CM_COL("updatedAt", CM_COL_TEXT), CM_COL("userGone", CM_COL_BOOL),
};
static const cm_row_shape_t shape = {cols, 6};

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
    if (rc == 1) {
        rc = cm_orders_get(db, id, out, NULL);
        return rc < 0 ? rc : 1;
    }
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

/* ------------------------------------------------------------------------- */
/* the users the users feed told of                                           */

static const char sql_user_state[] = "SELECT gone FROM known_users WHERE id = ?";
static const char sql_user_seen[] =
    "INSERT INTO known_users(id, gone) VALUES(?, 0) ON CONFLICT(id) DO NOTHING";
static const char sql_user_gone[] = "INSERT INTO known_users(id, gone) VALUES(?, 1)"
                                    " ON CONFLICT(id) DO UPDATE SET gone = 1";
static const char sql_mark_gone[] =
    "UPDATE orders SET user_gone = 1 WHERE user_id = ? AND user_gone = 0";
static const char sql_open_of_user[] = "SELECT id FROM orders WHERE user_id = ? AND"
                                       " status IN ('pending', 'paid') ORDER BY id LIMIT 100";
static const char sql_gone_open[] =
    "SELECT o.id FROM orders o JOIN known_users k ON k.id = o.user_id WHERE k.gone = 1"
    " AND o.status IN ('pending', 'paid') ORDER BY o.id LIMIT ?";
static const char sql_gone_open_count[] =
    "SELECT COUNT(*) FROM orders o JOIN known_users k ON k.id = o.user_id WHERE k.gone = 1"
    " AND o.status IN ('pending', 'paid')";

int cm_orders_user_state(cm_db_t *db, int64_t user_id)
{
    cm_stmt_t *st = cm_db_stmt(db, sql_user_state);
    if (!st)
        return -EIO;
    cm_stmt_bind_int(st, 1, user_id);
    int rc = cm_stmt_step(st);
    if (rc == CM_DB_ROW)
        rc = cm_stmt_int(st, 0) ? CM_USER_GONE : CM_USER_KNOWN;
    else if (rc == CM_DB_DONE)
        rc = CM_USER_UNSEEN;
    cm_stmt_reset(st);
    return rc;
}

static int run_id(cm_db_t *db, const char *sql, int64_t id)
{
    cm_stmt_t *st = cm_db_stmt(db, sql);
    if (!st)
        return -EIO;
    cm_stmt_bind_int(st, 1, id);
    int rc = cm_stmt_step(st);
    cm_stmt_reset(st);
    return rc < 0 ? rc : 0;
}

int cm_orders_user_seen(cm_db_t *db, int64_t user_id)
{
    return run_id(db, sql_user_seen, user_id);
}

/* Up to 100 ids of the user's open orders into ids; their number, or the store's error. */
static int open_of_user(cm_db_t *db, int64_t user_id, int64_t ids[100])
{
    cm_stmt_t *st = cm_db_stmt(db, sql_open_of_user);
    if (!st)
        return -EIO;
    cm_stmt_bind_int(st, 1, user_id);
    int n = 0, rc;
    while ((rc = cm_stmt_step(st)) == CM_DB_ROW && n < 100)
        ids[n++] = cm_stmt_int(st, 0);
    cm_stmt_reset(st);
    return rc < 0 ? rc : n;
}

int cm_orders_user_gone(cm_db_t *db, int64_t user_id, cm_buf_t *scratch)
{
    int rc = run_id(db, sql_user_gone, user_id);
    if (rc == 0)
        rc = run_id(db, sql_mark_gone, user_id);
    int cancelled = 0;
    int64_t ids[100];
    /* in rounds of 100, so a user with many orders needs no big allocation; each round
     * cancels what it found, so the next finds the rest */
    while (rc == 0) {
        int n = open_of_user(db, user_id, ids);
        if (n <= 0) {
            rc = n;
            break;
        }
        for (int i = 0; i < n && rc == 0; i++) {
            cm_buf_reset(scratch);
            rc = cm_orders_update(db, ids[i], 0, "cancelled", scratch);
            if (rc == 0)
                rc = cm_outbox_add(db, "order.status_changed", scratch->data, scratch->len, NULL);
            cancelled += rc == 0;
        }
    }
    return rc < 0 ? rc : cancelled;
}

int cm_orders_gone_open(cm_db_t *db, int limit, cm_buf_t *ids, int64_t *count)
{
    cm_stmt_t *st = cm_db_stmt(db, sql_gone_open_count);
    if (!st)
        return -EIO;
    int rc = cm_stmt_step(st);
    *count = rc == CM_DB_ROW ? cm_stmt_int(st, 0) : 0;
    cm_stmt_reset(st);
    if (rc < 0)
        return rc;
    if (!(st = cm_db_stmt(db, sql_gone_open)))
        return -EIO;
    cm_stmt_bind_int(st, 1, limit);
    cm_buf_append(ids, "[", 1);
    int n = 0;
    while ((rc = cm_stmt_step(st)) == CM_DB_ROW)
        cm_buf_appendf(ids, "%s%lld", n++ ? "," : "", (long long)cm_stmt_int(st, 0));
    cm_stmt_reset(st);
    cm_buf_append(ids, "]", 1);
    return rc < 0 ? rc : 0;
}
