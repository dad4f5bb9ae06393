/* service/cmd.h: the flags every resource service shares (server flags, --db, --sync)
 * and the per-worker database connection they open. Used by users and orders. */
#ifndef CMESH_SERVICE_CMD_H
#define CMESH_SERVICE_CMD_H

#include "core/server.h"
#include "store/db.h"

typedef struct cm_svc_opts {
    cm_server_opts_t server;
    char db[1024]; /* database file */
    cm_db_sync_t sync;
    const cm_migration_t *migrations; /* the service's schema */
    int nmigrations;
} cm_svc_opts_t;

/* Sets server defaults and the service's migrations; db stays empty (required). */
void cm_svc_opts_default(cm_svc_opts_t *o, const cm_migration_t *migrations, int n);
/* A cm_flag_set_fn for the shared flags; ctx is a cm_svc_opts_t. */
int cm_svc_opts_set(void *ctx, const char *name, const char *value, char *err, size_t cap);
extern const char cm_svc_opts_help[]; /* --db and --sync lines */

/* Opens the worker's connection (migrating the schema if needed). Returns 0 or -errno. */
int cm_svc_open_db(const cm_svc_opts_t *o, cm_db_t **out);

#endif
