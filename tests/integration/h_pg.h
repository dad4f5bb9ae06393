/* tests/integration/h_pg.h: the integration suites on PostgreSQL. With
 * CMESH_TEST_DB=postgres (set by `scripts/pg.sh run`, which also starts one
 * server per test binary and names its directory in CMESH_TEST_PG), h_start and
 * h_restart turn every `--db FILE` into a PostgreSQL database of its own, named after
 * the file's path: a fresh database per test (each test's files are in a fresh temp
 * dir), the same one again after a restart of the same test. */
#ifndef CMESH_TESTS_H_PG_H
#define CMESH_TESTS_H_PG_H

#include <stddef.h>

/* 1 when the suites run on PostgreSQL (aborts when CMESH_TEST_PG is missing then). */
int h_pg_on(void);
/* The URI of the database for the SQLite file path (created if it does not exist). */
void h_pg_url_for(const char *path, char *url, size_t cap);
/* Stops the test server (pg_ctl stop; mode "fast" or "immediate"), starts it again. */
void h_pg_server_stop(const char *mode);
void h_pg_server_start(void);

#endif
