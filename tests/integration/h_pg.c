/* tests/integration/h_pg.c: databases and the server of the PostgreSQL runs (h_pg.h). */
#include "h_pg.h"

#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

static const char *server_dir(void)
{
    const char *dir = getenv("CMESH_TEST_PG");
    cr_assert(dir && *dir, "CMESH_TEST_DB=postgres needs CMESH_TEST_PG (run through "
                           "scripts/pg.sh run)");
    return dir;
}

int h_pg_on(void)
{
    const char *db = getenv("CMESH_TEST_DB");
    if (!db || strcmp(db, "postgres") != 0)
        return 0;
    server_dir();
    return 1;
}

void h_pg_url_for(const char *path, char *url, size_t cap)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (const char *s = path; *s; s++)
        h = (h ^ (unsigned char)*s) * UINT64_C(1099511628211);
    char name[32];
    snprintf(name, sizeof name, "t_%016llx", (unsigned long long)h);
    const char *dir = server_dir();
    char admin[512];
    snprintf(admin, sizeof admin, "host=%s user=cmesh dbname=postgres connect_timeout=10", dir);
    PGconn *c = PQconnectdb(admin);
    cr_assert(PQstatus(c) == CONNECTION_OK, "test server: %s", PQerrorMessage(c));
    char sql[96];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    PGresult *r = PQexec(c, sql);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    /* 42P04: made already, by this test before a restart */
    cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK || (state && strcmp(state, "42P04") == 0),
              "CREATE DATABASE: %s", PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
    snprintf(url, cap, "postgresql://cmesh@/%s?host=%s", name, dir);
}

static void pg_ctl(const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, ". '%s/scripts/pg.sh' && pg_ctl_in '%s' %s",
             getenv("CMESH_SRC") ? getenv("CMESH_SRC") : ".", server_dir(), args);
    cr_assert(system(cmd) == 0, "pg_ctl %s failed", args);
}

void h_pg_server_stop(const char *mode)
{
    char args[64];
    snprintf(args, sizeof args, "stop -m %s", mode);
    pg_ctl(args);
}

void h_pg_server_start(void)
{
    pg_ctl("start");
}
