/* store/db.c: the storage interface of db.h, dispatching every call to the backend
 * the connection was opened with: PostgreSQL (libpq, db_pg.c) for a postgres:// or
 * postgresql:// URI or a libpq keyword string, SQLite (db_sqlite.c) for a file path. */
#include "store/db.h"

#include <errno.h>
#include <string.h>

#include "store/db_int.h"

int cm_db_is_postgres(const char *target)
{
    if (!target)
        return 0;
    if (strncmp(target, "postgres://", 11) == 0 || strncmp(target, "postgresql://", 13) == 0)
        return 1;
    /* libpq's keyword form: "host=... dbname=..."; a file path has no '=' before a '/' */
    const char *eq = strchr(target, '=');
    const char *slash = strchr(target, '/');
    return eq && (!slash || eq < slash) && !strchr(target, '\n');
}

static const cm_db_ops_t *ops_for(const char *target)
{
    return cm_db_is_postgres(target) ? &cm_db_pg_ops : &cm_db_sqlite_ops;
}

int cm_db_global_init(void)
{
    return cm_db_sqlite_global_init();
}

int cm_db_open(const char *path, cm_db_sync_t sync, const cm_migration_t *migrations, int n,
               cm_db_t **out)
{
    *out = NULL;
    if (!path)
        return -EINVAL;
    return ops_for(path)->open(path, sync, migrations, n, out);
}

int cm_db_open_reader(const char *path, cm_db_t **out)
{
    *out = NULL;
    if (!path)
        return -EINVAL;
    return ops_for(path)->open_reader(path, out);
}

void cm_db_close(cm_db_t *db)
{
    if (db)
        db->ops->close(db);
}

const char *cm_db_write_problem(cm_db_t *db)
{
    return db->ops->write_problem(db);
}

void cm_db_set_busy_timeout(cm_db_t *db, int ms)
{
    db->ops->set_busy_timeout(db, ms);
}

cm_stmt_t *cm_db_stmt(cm_db_t *db, const char *sql)
{
    return db->ops->stmt(db, sql);
}

int cm_stmt_bind_int(cm_stmt_t *st, int idx, int64_t v)
{
    return st->ops->bind_int(st, idx, v);
}

int cm_stmt_bind_text(cm_stmt_t *st, int idx, const char *s, size_t len)
{
    return st->ops->bind_text(st, idx, s, len);
}

int cm_stmt_bind_null(cm_stmt_t *st, int idx)
{
    return st->ops->bind_null(st, idx);
}

int cm_stmt_step(cm_stmt_t *st)
{
    return st->ops->step(st);
}

int cm_stmt_run_now(cm_stmt_t *st)
{
    int rc;
    while ((rc = st->ops->step(st)) == CM_DB_ROW)
        ;
    st->ops->reset(st);
    return rc;
}

int cm_stmt_defer(cm_stmt_t *st)
{
    return st->ops->defer ? st->ops->defer(st) : cm_stmt_run_now(st);
}

int64_t cm_stmt_int(cm_stmt_t *st, int col)
{
    return st->ops->col_int(st, col);
}

const char *cm_stmt_text(cm_stmt_t *st, int col, size_t *len)
{
    return st->ops->col_text(st, col, len);
}

int cm_stmt_is_null(cm_stmt_t *st, int col)
{
    return st->ops->col_is_null(st, col);
}

void cm_stmt_reset(cm_stmt_t *st)
{
    st->ops->reset(st);
}

int cm_db_begin(cm_db_t *db)
{
    return db->ops->begin(db);
}

int cm_db_commit(cm_db_t *db)
{
    return db->ops->commit(db);
}

void cm_db_rollback(cm_db_t *db)
{
    db->ops->rollback(db);
}

int cm_db_unit_begin(cm_db_t *db)
{
    return db->ops->unit_begin(db);
}

int cm_db_read_begin(cm_db_t *db)
{
    return db->ops->read_begin(db);
}

int cm_db_unit_end(cm_db_t *db)
{
    return db->ops->unit_end(db);
}

int cm_db_unit_undo(cm_db_t *db)
{
    return db->ops->unit_undo(db);
}

int cm_db_group_commit(cm_db_t *db)
{
    return db->ops->group_commit(db);
}

int cm_db_in_group(cm_db_t *db)
{
    return db->ops->in_group(db);
}

void cm_db_optimistic(cm_db_t *db, int on)
{
    if (db->ops->optimistic)
        db->ops->optimistic(db, on);
}

int cm_db_next_id(cm_db_t *db, const char *table, int64_t *id)
{
    return db->ops->next_id(db, table, id);
}

int cm_db_changes(cm_db_t *db)
{
    return db->ops->changes(db);
}
