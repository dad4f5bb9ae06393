/* tests/unit/pg_util.h: what the unit suites on a real PostgreSQL share (unit_pg_*): the
 * test server `scripts/pg.sh run` started (CMESH_TEST_PG names its socket directory) and
 * a fresh database per test. Header-only: each suite is one file. */
#ifndef CMESH_TESTS_PG_UTIL_H
#define CMESH_TESTS_PG_UTIL_H

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <criterion/criterion.h>

/* A connection to the server's postgres database. */
static inline PGconn *pg_admin(void)
{
    char conninfo[300];
    snprintf(conninfo, sizeof conninfo, "host=%s user=cmesh dbname=postgres",
             getenv("CMESH_TEST_PG"));
    PGconn *c = PQconnectdb(conninfo);
    cr_assert(PQstatus(c) == CONNECTION_OK, "test server: %s", PQerrorMessage(c));
    return c;
}

/* Skips the test without the server (suite names the ctest entry that has it); else
 * makes a fresh database prefix_PID and writes its keyword-form target into url. */
static inline void pg_fresh_db(const char *suite, const char *prefix, char *url, size_t cap)
{
    const char *dir = getenv("CMESH_TEST_PG");
    if (!dir || !*dir)
        cr_skip_test("needs the PostgreSQL test server (%s)", suite);
    PGconn *c = pg_admin();
    char name[64], sql[128];
    snprintf(name, sizeof name, "%s_%d", prefix, (int)getpid());
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", name);
    PQclear(PQexec(c, sql));
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    PGresult *r = PQexec(c, sql);
    cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
    /* the keyword form: the URI form is what the integration suites use */
    snprintf(url, cap, "host=%s user=cmesh dbname=%s", dir, name);
}

#endif
