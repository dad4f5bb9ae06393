/* service/cmd.h: the flags every resource service shares (--db, --sync; the server's)
 * and the per-worker database connection they open. Used by users and orders. */
#ifndef CMESH_SERVICE_CMD_H
#define CMESH_SERVICE_CMD_H

#include "core/server.h"
#include "store/db.h"

typedef struct cm_svc_opts {
    cm_server_opts_t server;
    char db[1024]; /* database file */
    cm_db_sync_t sync;
    uint64_t key_retention_ms;        /* Idempotency-Key records older than this are pruned */
    uint64_t event_retention_ms;      /* events older than this are pruned (the newest stays) */
    const cm_migration_t *migrations; /* the service's schema */
    int nmigrations;
} cm_svc_opts_t;

/* Sets server defaults and the service's migrations; db stays empty (required). */
void cm_svc_opts_default(cm_svc_opts_t *o, const cm_migration_t *migrations, int n);
/* --db, --sync, --key-retention and --event-retention, a table over cm_svc_opts_t (compose with
 * cm_server_flags over its server member). */
extern const cm_flag_t cm_svc_flags[];

/* Opens the worker's connection (migrating the schema if needed). Returns 0 or -errno. */
int cm_svc_open_db(const cm_svc_opts_t *o, cm_db_t **out);

#endif
