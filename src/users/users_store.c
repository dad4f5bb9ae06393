/* users/users_store.c: SQL for the users service (see users_store.h). Timestamps are
 * made here, not in SQL, so the same statements run on SQLite and PostgreSQL. */
#include "users/users_store.h"

#include "service/outbox.h"
#include "service/rows.h"

#include <errno.h>
#include <string.h>

#include "core/timefmt.h"
#include "store/idempotency.h"

const cm_migration_t cm_users_migrations[] = {
    {"CREATE TABLE users("
     " id INTEGER PRIMARY KEY AUTOINCREMENT," /* AUTOINCREMENT: ids are never reused */
     " name TEXT NOT NULL,"
     " email TEXT NOT NULL UNIQUE COLLATE NOCASE,"
     " created_at TEXT NOT NULL,"
     " updated_at TEXT NOT NULL);"},
    {CM_IDEM_MIGRATION},
    {CM_IDEM_MIGRATION_SCOPE},
    {CM_OUTBOX_MIGRATION},
    {CM_IDEM_MIGRATION_BY_TIME},
};
const int cm_users_nmigrations = sizeof cm_users_migrations / sizeof cm_users_migrations[0];

#define COLS "id, name, email, created_at, updated_at"

static const char sql_get[] = "SELECT " COLS " FROM users WHERE id = ?";
static const char sql_list[] = "SELECT " COLS " FROM users WHERE id > ? ORDER BY id LIMIT ?";
static const char sql_insert[] = "INSERT INTO users(name, email, created_at, updated_at)"
                                 " VALUES(?, ?, ?, ?) RETURNING " COLS;
static const char sql_update[] = "UPDATE users SET name = COALESCE(?, name),"
                                 " email = COALESCE(?, email), updated_at = ?"
                                 " WHERE id = ? RETURNING " COLS;
static const char sql_delete[] = "DELETE FROM users WHERE id = ?";
static const char sql_fields[] = "SELECT name, email FROM users WHERE id = ?";

static const cm_col_t cols[] = {
    CM_COL("id", CM_COL_INT),         CM_COL("name", CM_COL_TEXT),
    CM_COL("email", CM_COL_TEXT),     CM_COL("createdAt", CM_COL_TEXT),
    CM_COL("updatedAt", CM_COL_TEXT),
};
static const cm_row_shape_t shape = {cols, 5};

int cm_users_get(cm_db_t *db, int64_t id, cm_buf_t *out)
{
    cm_stmt_t *st = cm_db_stmt(db, sql_get);
    if (st)
        cm_stmt_bind_int(st, 1, id);
    return cm_rows_one(st, &shape, NULL, out);
}

int cm_users_list(cm_db_t *db, int64_t after, int limit, cm_buf_t *out, int64_t *last, int *more)
{
    cm_stmt_t *st = cm_db_stmt(db, sql_list);
    if (!st)
        return -EIO;
    cm_stmt_bind_int(st, 1, after);
    cm_stmt_bind_int(st, 2, (int64_t)limit + 1); /* one extra row tells whether more exist */
    *last = after;
    return cm_rows_page(st, &shape, limit, out, last, more);
}

int cm_users_insert(cm_db_t *db, const char *name, size_t name_len, const char *email,
                    size_t email_len, int64_t *id, cm_buf_t *out)
{
    char now[32];
    cm_time_rfc3339(now);
    cm_stmt_t *st = cm_db_stmt(db, sql_insert);
    if (st) {
        cm_stmt_bind_text(st, 1, name, name_len);
        cm_stmt_bind_text(st, 2, email, email_len);
        cm_stmt_bind_text(st, 3, now, CM_TIME_RFC3339_LEN);
        cm_stmt_bind_text(st, 4, now, CM_TIME_RFC3339_LEN);
    }
    return cm_rows_one(st, &shape, id, out);
}

/* True when value (NULL: not sent) is absent or equals column col byte for byte; the
 * email compares exactly too, so a change of case is a change. */
static int same(cm_stmt_t *st, int col, const char *value, size_t len)
{
    size_t have;
    const char *s = cm_stmt_text(st, col, &have);
    return !value || (s && have == len && memcmp(s, value, len) == 0);
}

/* 1 when the update would change nothing, 0 when it would, or the store's error. */
static int is_no_op(cm_db_t *db, int64_t id, const char *name, size_t name_len, const char *email,
                    size_t email_len)
{
    cm_stmt_t *st = cm_db_stmt(db, sql_fields);
    if (!st)
        return -EIO;
    cm_stmt_bind_int(st, 1, id);
    int rc = cm_stmt_step(st);
    if (rc == CM_DB_ROW)
        rc = same(st, 0, name, name_len) && same(st, 1, email, email_len);
    else if (rc == CM_DB_DONE)
        rc = -ENOENT;
    cm_stmt_reset(st);
    return rc;
}

int cm_users_update(cm_db_t *db, int64_t id, const char *name, size_t name_len, const char *email,
                    size_t email_len, cm_buf_t *out)
{
    /* a no-op changes nothing, updatedAt and so the ETag included: a client holding
     * the ETag must not get 412 for it */
    int rc = is_no_op(db, id, name, name_len, email, email_len);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        rc = cm_users_get(db, id, out);
        return rc < 0 ? rc : 1;
    }
    char now[32];
    cm_time_rfc3339(now);
    cm_stmt_t *st = cm_db_stmt(db, sql_update);
    if (!st)
        return -EIO;
    if (name)
        cm_stmt_bind_text(st, 1, name, name_len);
    else
        cm_stmt_bind_null(st, 1);
    if (email)
        cm_stmt_bind_text(st, 2, email, email_len);
    else
        cm_stmt_bind_null(st, 2);
    cm_stmt_bind_text(st, 3, now, CM_TIME_RFC3339_LEN);
    cm_stmt_bind_int(st, 4, id);
    return cm_rows_one(st, &shape, NULL, out);
}

int cm_users_delete(cm_db_t *db, int64_t id)
{
    return cm_rows_delete(db, sql_delete, id);
}
