/* store/db_int.h: what db.c and its backends share, and nobody else: the backend
 * table that every cm_db_* / cm_stmt_* call of db.h dispatches through. A backend's
 * connection and statement structs start with the head below (cm_db_t / cm_stmt_t),
 * so db.c finds the table without knowing the backend. */
#ifndef CMESH_STORE_DB_INT_H
#define CMESH_STORE_DB_INT_H

#include "store/db.h"

typedef struct cm_db_ops {
    int (*open)(const char *url, cm_db_sync_t sync, const cm_migration_t *m, int n, cm_db_t **out);
    int (*open_reader)(const char *url, cm_db_t **out);
    void (*close)(cm_db_t *db);
    const char *(*write_problem)(cm_db_t *db);
    void (*set_busy_timeout)(cm_db_t *db, int ms);
    cm_stmt_t *(*stmt)(cm_db_t *db, const char *sql);
    int (*bind_int)(cm_stmt_t *st, int idx, int64_t v);
    int (*bind_text)(cm_stmt_t *st, int idx, const char *s, size_t len);
    int (*bind_null)(cm_stmt_t *st, int idx);
    int (*step)(cm_stmt_t *st);
    int (*defer)(cm_stmt_t *st); /* NULL: cm_stmt_run_now */
    int64_t (*col_int)(cm_stmt_t *st, int col);
    const char *(*col_text)(cm_stmt_t *st, int col, size_t *len);
    int (*col_is_null)(cm_stmt_t *st, int col);
    void (*reset)(cm_stmt_t *st);
    int (*begin)(cm_db_t *db);
    int (*commit)(cm_db_t *db);
    void (*rollback)(cm_db_t *db);
    int (*unit_begin)(cm_db_t *db);
    int (*read_begin)(cm_db_t *db);
    int (*unit_end)(cm_db_t *db);
    int (*unit_undo)(cm_db_t *db);
    int (*group_commit)(cm_db_t *db);
    int (*in_group)(cm_db_t *db);
    void (*optimistic)(cm_db_t *db, int on); /* NULL: never */
    int (*next_id)(cm_db_t *db, const char *table, int64_t *id);
    int (*changes)(cm_db_t *db);
} cm_db_ops_t;

struct cm_db {
    const cm_db_ops_t *ops;
};
struct cm_stmt {
    const cm_db_ops_t *ops;
};

extern const cm_db_ops_t cm_db_sqlite_ops;
extern const cm_db_ops_t cm_db_pg_ops;
int cm_db_sqlite_global_init(void);
/* Steps st to its end and resets it: 0 (CM_DB_DONE) or the step's error. */
int cm_stmt_run_now(cm_stmt_t *st);
/* PostgreSQL's pg_xact_status() answer (NULL for SQL NULL; "future" for an id the server
 * has not handed out) as a group commit's result: "committed" 0, "aborted" -EIO, "in
 * progress" or "future" -EINPROGRESS (ask again), else -ETIMEDOUT (nobody can tell).
 * restarted: the server started again since the transaction began; its backend is gone
 * then ("in progress" and "future" are -EIO), and after a crash the id may have been
 * handed out again, so "committed" is -ETIMEDOUT. Pure; db_pg.c's in-doubt COMMIT. */
int cm_db_pg_xact_outcome(const char *status, int restarted);

#endif
