/* users/users_store.c: SQL for the users service (see users_store.h). Timestamps are
 * made here, not in SQL, so the same statements run on SQLite and PostgreSQL. */
#include "users/users_store.h"

#include <errno.h>

#include "core/json.h"
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

/* Writes the current row as {"id","name","email","createdAt","updatedAt"}. */
static void write_user(cm_stmt_t *st, cm_buf_t *out)
{
    size_t len;
    const char *s;
    cm_buf_append_str(out, "{\"id\":");
    cm_buf_append_u64(out, (unsigned long long)cm_stmt_int(st, 0));
    cm_buf_append_str(out, ",\"name\":");
    s = cm_stmt_text(st, 1, &len);
    cm_json_str(out, s, len);
    cm_buf_append_str(out, ",\"email\":");
    s = cm_stmt_text(st, 2, &len);
    cm_json_str(out, s, len);
    cm_buf_append_str(out, ",\"createdAt\":");
    s = cm_stmt_text(st, 3, &len);
    cm_json_str(out, s, len);
    cm_buf_append_str(out, ",\"updatedAt\":");
    s = cm_stmt_text(st, 4, &len);
    cm_json_str(out, s, len);
    cm_buf_append(out, "}", 1);
}

/* Steps a statement expected to give at most one row, writes it, resets. */
static int one_row(cm_stmt_t *st, int64_t *id, cm_buf_t *out)
{
    if (!st)
        return -EIO;
    int rc = cm_stmt_step(st);
    if (rc == CM_DB_ROW) {
        if (id)
            *id = cm_stmt_int(st, 0);
        write_user(st, out);
        rc = 0;
    } else if (rc == CM_DB_DONE) {
        rc = -ENOENT;
    }
    cm_stmt_reset(st);
    return rc;
}

int cm_users_get(cm_db_t *db, int64_t id, cm_buf_t *out)
{
    cm_stmt_t *st = cm_db_stmt(db, sql_get);
    if (st)
        cm_stmt_bind_int(st, 1, id);
    return one_row(st, NULL, out);
}

int cm_users_list(cm_db_t *db, int64_t after, int limit, cm_buf_t *out, int64_t *last, int *more)
{
    cm_stmt_t *st = cm_db_stmt(db, sql_list);
    if (!st)
        return -EIO;
    cm_stmt_bind_int(st, 1, after);
    cm_stmt_bind_int(st, 2, (int64_t)limit + 1); /* one extra row tells whether more exist */
    int n = 0, rc;
    *more = 0;
    *last = after;
    cm_buf_append(out, "[", 1);
    while ((rc = cm_stmt_step(st)) == CM_DB_ROW) {
        if (n == limit) {
            *more = 1;
            break;
        }
        if (n++)
            cm_buf_append(out, ",", 1);
        *last = cm_stmt_int(st, 0);
        write_user(st, out);
    }
    cm_stmt_reset(st);
    if (rc < 0)
        return rc;
    cm_buf_append(out, "]", 1);
    return 0;
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
    return one_row(st, id, out);
}

int cm_users_update(cm_db_t *db, int64_t id, const char *name, size_t name_len, const char *email,
                    size_t email_len, cm_buf_t *out)
{
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
    return one_row(st, NULL, out);
}

int cm_users_delete(cm_db_t *db, int64_t id)
{
    cm_stmt_t *st = cm_db_stmt(db, sql_delete);
    if (!st)
        return -EIO;
    cm_stmt_bind_int(st, 1, id);
    int rc = cm_stmt_step(st);
    cm_stmt_reset(st);
    if (rc < 0)
        return rc;
    return cm_db_changes(db) > 0 ? 0 : -ENOENT;
}
