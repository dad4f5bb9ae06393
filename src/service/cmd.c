/* service/cmd.c: shared flags and database opening for resource services (cmd.h). */
#include "service/cmd.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"

void cm_svc_opts_default(cm_svc_opts_t *o, const cm_migration_t *migrations, int n)
{
    memset(o, 0, sizeof *o);
    cm_server_opts_default(&o->server);
    o->sync = CM_DB_SYNC_NORMAL;
    o->migrations = migrations;
    o->nmigrations = n;
}

const char cm_svc_opts_help[] =
    "  --db PATH                SQLite database file, created if missing (required);\n"
    "                           instances of one service may share it (WAL)\n"
    "  --sync normal|full       normal: a 201 survives kill -9 of the process;\n"
    "                           full: it also survives power loss (default normal)\n";

int cm_svc_opts_set(void *ctx, const char *name, const char *v, char *err, size_t cap)
{
    cm_svc_opts_t *o = ctx;
    if (strcmp(name, "db") == 0) {
        if (!*v || strlen(v) >= sizeof o->db) {
            snprintf(err, cap, "--db: give a file path");
            return -EINVAL;
        }
        snprintf(o->db, sizeof o->db, "%s", v);
        return 1;
    }
    if (strcmp(name, "sync") == 0) {
        if (strcmp(v, "normal") == 0)
            o->sync = CM_DB_SYNC_NORMAL;
        else if (strcmp(v, "full") == 0)
            o->sync = CM_DB_SYNC_FULL;
        else {
            snprintf(err, cap, "--sync: '%s' is not normal or full", v);
            return -EINVAL;
        }
        return 1;
    }
    return cm_server_opts_set(&o->server, name, v, err, cap);
}

int cm_svc_open_db(const cm_svc_opts_t *o, cm_db_t **out)
{
    int rc = cm_db_open(o->db, o->sync, o->migrations, o->nmigrations, out);
    if (rc < 0)
        cm_log_msg(CM_LOG_ERROR, "--db %s: cannot open: %s", o->db, strerror(-rc));
    return rc;
}
