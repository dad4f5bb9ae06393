/* tests/integration/test_pgloop.c: on PostgreSQL the worker's loop never waits for the
 * database. Another session locks the users table against writes (readers pass), so a
 * POST waits in the server; while it waits, the same single-worker instance answers its
 * health check, its metrics and a GET of a user from the database, and the POST is
 * still waiting when they come back. Once the lock goes the POST is stored (201).
 * With statements run on the loop (the design before the store threads) nothing is
 * answered until the POST's lock wait ends. Runs as it_pg_test_pgloop only. */
#include "h_pg.h"
#include "h_util.h"
#include "harness.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

typedef struct post {
    const h_proc_t *p;
    atomic_int done;
    long status;
} post_t;

static void *post_main(void *arg)
{
    post_t *q = arg;
    h_resp_t r =
        h_req(q->p, "POST", "/users", "{\"name\":\"Waits\",\"email\":\"waits@example.com\"}", NULL);
    q->status = r.status;
    h_resp_free(&r);
    atomic_store(&q->done, 1);
    return NULL;
}

static PGconn *session(const h_proc_t *p)
{
    char path[300], url[512];
    snprintf(path, sizeof path, "%s/users.db", p->dir);
    h_pg_url_for(path, url, sizeof url);
    PGconn *c = PQconnectdb(url);
    cr_assert(PQstatus(c) == CONNECTION_OK, "session: %s", PQerrorMessage(c));
    return c;
}

static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(r);
    cr_assert(s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK, "%s: %s", sql,
              PQresultErrorMessage(r));
    PQclear(r);
}

/* Backends of this database waiting for a lock (the POST's INSERT behind our lock). */
static int lock_waiters(PGconn *c)
{
    PGresult *r = PQexec(c, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND wait_event_type = 'Lock'");
    cr_assert(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
    int n = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n;
}

static long get_status(const h_proc_t *p, const char *path)
{
    h_resp_t r = h_req(p, "GET", path, NULL, NULL);
    long st = r.status;
    h_resp_free(&r);
    return st;
}

Test(pgloop, a_write_waiting_on_the_database_leaves_the_loop_answering)
{
    if (!h_pg_on())
        cr_skip_test("needs the PostgreSQL test server (it_pg_test_pgloop)");
    h_proc_t p;
    h_start(&p, "users", "--db", "{dir}/users.db", "--workers", "1", "--access-log", "off", NULL);
    h_resp_t r =
        h_req(&p, "POST", "/users", "{\"name\":\"First\",\"email\":\"first@example.com\"}", NULL);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);

    PGconn *lock = session(&p);
    exec_ok(lock, "BEGIN");
    exec_ok(lock, "LOCK TABLE users IN EXCLUSIVE MODE"); /* writes wait, reads pass */
    post_t q = {.p = &p};
    pthread_t th;
    pthread_create(&th, NULL, post_main, &q);
    /* until the POST's INSERT waits in the server (bounded: 10 s) */
    int waiting = 0;
    for (int i = 0; i < 200 && !waiting; i++) {
        waiting = lock_waiters(lock) > 0;
        if (!waiting)
            usleep(50 * 1000);
    }
    cr_assert(waiting, "the POST never reached the lock");

    cr_expect_eq(get_status(&p, "/healthz"), 200);
    cr_expect_eq(get_status(&p, "/metrics"), 200);
    cr_expect_eq(get_status(&p, "/users/1"), 200, "a read of the database while a write waits");
    cr_expect_eq(atomic_load(&q.done), 0,
                 "the POST was answered (%ld) before its lock was released: the loop waited for "
                 "it instead",
                 q.status);
    cr_expect_gt(lock_waiters(lock), 0, "the POST stopped waiting while the lock was held");

    exec_ok(lock, "COMMIT");
    pthread_join(th, NULL);
    cr_expect_eq(q.status, 201, "the POST once the lock went");
    cr_expect_eq(get_status(&p, "/users/2"), 200, "the user it stored");
    PQfinish(lock);
    cr_expect_eq(h_stop(&p), 0);
}
