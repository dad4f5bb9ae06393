/* service/cmd.c: shared flags and database opening for resource services (cmd.h). */
#include "service/cmd.h"

#include <stdio.h>
#include <string.h>

#include "core/log.h"

void cm_svc_opts_default(cm_svc_opts_t *o, const cm_migration_t *migrations, int n)
{
    memset(o, 0, sizeof *o);
    cm_server_opts_default(&o->server);
    o->sync = CM_DB_SYNC_NORMAL;
    o->key_retention_ms = 24ull * 3600 * 1000;       /* as payment APIs keep keys */
    o->event_retention_ms = 7ull * 24 * 3600 * 1000; /* a week for consumers to catch up */
    o->migrations = migrations;
    o->nmigrations = n;
}

static const cm_flag_choice_t syncs[] = {
    {"normal", CM_DB_SYNC_NORMAL}, {"full", CM_DB_SYNC_FULL}, {0}};

const cm_flag_t cm_svc_flags[] = {
    CM_FLAG_STR("db", "PATH|URL", cm_svc_opts_t, db, CM_FLAG_REQUIRED,
                "SQLite database file, created if missing; instances of one service may share "
                "it (WAL); or a PostgreSQL database: postgres://..., postgresql://... or "
                "\"host=... dbname=...\""),
    CM_FLAG_CHOICE("sync", "normal|full", cm_svc_opts_t, sync, syncs,
                   "normal: a 201 survives kill -9 of the process; full: it also survives power "
                   "loss"),
    CM_FLAG_DURATION("key-retention", cm_svc_opts_t, key_retention_ms, 1000,
                     "Idempotency-Key records older than this are deleted in the background (a "
                     "retry after it is a new request)"),
    CM_FLAG_DURATION("event-retention", cm_svc_opts_t, event_retention_ms, 1000,
                     "events of GET /events older than this are deleted in the background (the "
                     "newest always stays)"),
    CM_FLAG_END,
};

int cm_svc_open_db(const cm_svc_opts_t *o, cm_db_t **out)
{
    int rc = cm_db_open(o->db, o->sync, o->migrations, o->nmigrations, out);
    /* a PostgreSQL target may carry a password: name the backend, not the value */
    if (rc < 0)
        cm_log_msg(CM_LOG_ERROR, "--db %s: cannot open: %s",
                   cm_db_is_postgres(o->db) ? "(postgres)" : o->db, strerror(-rc));
    return rc;
}
