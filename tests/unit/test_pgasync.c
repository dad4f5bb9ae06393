/* tests/unit/test_pgasync.c: store/pgasync.h, reads by replay on asynchronous
 * connections. The replay itself needs no server; the connection is driven by poll(2)
 * against the server `scripts/pg.sh run` starts (unit_pg_test_pgasync), a fresh database
 * per test, and its backend is terminated for real. */
#include "pg_util.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "store/db.h"
#include "store/pgasync.h"

TestSuite(pgasync, .timeout = 60);

static char url[512];

static void need_server(void)
{
    pg_fresh_db("unit_pg_test_pgasync", "a", url, sizeof url);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Drives c until a replay finishes (returned) or, with want_state >= 0, until c is in
 * that state (NULL). Bounded: 10 s. */
static cm_replay_t *drive(cm_pgasync_t *c, int want_state)
{
    uint64_t until = now_ms() + 10000;
    while (now_ms() < until) {
        if (want_state >= 0 && (int)cm_pgasync_state(c) == want_state)
            return NULL;
        int fd = cm_pgasync_fd(c), ev = cm_pgasync_events(c);
        if (fd >= 0 && ev) {
            struct pollfd p = {fd,
                               (short)(((ev & CM_PGASYNC_IN) ? POLLIN : 0) |
                                       ((ev & CM_PGASYNC_OUT) ? POLLOUT : 0)),
                               0};
            poll(&p, 1, 100);
        } else {
            usleep(20 * 1000);
        }
        cm_replay_t *rp = cm_pgasync_advance(c, now_ms());
        if (rp)
            return rp;
    }
    cr_assert_fail("the connection did not get there within 10 s (state %d)",
                   (int)cm_pgasync_state(c));
    return NULL;
}

static const char sql_sum[] = "SELECT ?::bigint + ?::bigint, 'x' || ?";
static const char sql_none[] = "SELECT 1 WHERE false";

/* A read handler: two statements, the second's parameter from the first's result. */
typedef struct answer {
    int rc;
    int64_t sum;
    char text[32];
    int rows_second;
} answer_t;

static void handler(cm_db_t *db, int64_t a, answer_t *out)
{
    memset(out, 0, sizeof *out);
    cm_stmt_t *st = cm_db_stmt(db, sql_sum);
    cm_stmt_bind_int(st, 1, a);
    cm_stmt_bind_int(st, 2, 2);
    cm_stmt_bind_text(st, 3, "y", 1);
    int rc = cm_stmt_step(st);
    if (rc != CM_DB_ROW) {
        out->rc = rc < 0 ? rc : -ENOENT;
        return;
    }
    out->sum = cm_stmt_int(st, 0);
    size_t len;
    const char *t = cm_stmt_text(st, 1, &len);
    snprintf(out->text, sizeof out->text, "%.*s", (int)len, t);
    cm_stmt_reset(st);
    st = cm_db_stmt(db, sql_none);
    while ((rc = cm_stmt_step(st)) == CM_DB_ROW)
        out->rows_second++;
    out->rc = rc;
}

Test(pgasync, a_replay_stops_at_the_first_statement_without_a_result_and_answers_errors)
{
    cm_db_t *db;
    cr_assert_eq(cm_replay_db_open(&db), 0);
    cm_replay_t *rp = cm_replay_new();
    answer_t ans;
    cm_replay_begin(db, rp);
    handler(db, 40, &ans);
    cr_assert_eq(ans.rc, -EAGAIN);
    cr_assert_eq(cm_replay_end(db), 1, "the run wants its first statement");
    cm_replay_fail(rp, -EBUSY);
    cm_replay_begin(db, rp);
    handler(db, 40, &ans);
    cr_assert_eq(ans.rc, -EBUSY, "the statement's error is the handler's");
    cr_assert_eq(cm_replay_end(db), 0, "a run that got its answer is complete");
    cm_replay_free(rp);
    cm_db_close(db);
}

Test(pgasync, a_read_runs_by_replay_on_an_asynchronous_connection)
{
    need_server();
    cm_pgasync_t *c;
    cr_assert_eq(cm_pgasync_open(url, &c), 0);
    cr_assert_eq(cm_pgasync_state(c), CM_PGASYNC_DOWN);
    uint64_t later;
    cr_assert_eq(cm_pgasync_start(c, now_ms(), &later), 0);
    drive(c, CM_PGASYNC_IDLE);
    cm_db_t *db;
    cr_assert_eq(cm_replay_db_open(&db), 0);
    for (int round = 0; round < 2; round++) { /* the second on a prepared statement */
        cm_replay_t *rp = cm_replay_new();
        answer_t ans;
        int runs = 0;
        for (;;) {
            cm_replay_begin(db, rp);
            handler(db, 40 + round, &ans);
            runs++;
            if (!cm_replay_end(db))
                break;
            cr_assert_eq(cm_pgasync_send(c, rp), 0);
            cr_assert_eq(cm_pgasync_state(c), CM_PGASYNC_BUSY);
            cr_assert_eq(drive(c, -1), rp);
        }
        cr_assert_eq(runs, 3, "one run per statement, and the one that completes");
        cr_assert_eq(ans.rc, CM_DB_DONE);
        cr_assert_eq(ans.sum, 42 + round);
        cr_assert_str_eq(ans.text, "xy");
        cr_assert_eq(ans.rows_second, 0);
        cm_replay_free(rp);
    }
    cm_db_close(db);
    cm_pgasync_close(c);
}

Test(pgasync, a_server_error_and_a_terminated_backend_end_the_statement_with_an_error)
{
    need_server();
    cm_pgasync_t *c;
    cr_assert_eq(cm_pgasync_open(url, &c), 0);
    uint64_t later;
    cr_assert_eq(cm_pgasync_start(c, now_ms(), &later), 0);
    drive(c, CM_PGASYNC_IDLE);
    cm_db_t *db;
    cr_assert_eq(cm_replay_db_open(&db), 0);

    /* a server error (a division by zero): the statement's error, the connection stays */
    static const char sql_div[] = "SELECT 1 / ?::int";
    cm_replay_t *rp = cm_replay_new();
    cm_replay_begin(db, rp);
    cm_stmt_t *st = cm_db_stmt(db, sql_div);
    cm_stmt_bind_int(st, 1, 0);
    cr_assert_eq(cm_stmt_step(st), -EAGAIN);
    cr_assert_eq(cm_replay_end(db), 1);
    cr_assert_eq(cm_pgasync_send(c, rp), 0);
    cr_assert_eq(drive(c, -1), rp);
    cm_replay_begin(db, rp);
    st = cm_db_stmt(db, sql_div);
    cm_stmt_bind_int(st, 1, 0);
    cr_assert_eq(cm_stmt_step(st), -EIO);
    cr_assert_eq(cm_replay_end(db), 0);
    cm_replay_free(rp);
    cr_assert_eq(cm_pgasync_state(c), CM_PGASYNC_IDLE, "an error of the statement keeps it");

    /* the backend terminated while a statement runs: -EIO, down, and back after the backoff */
    static const char sql_sleep[] = "SELECT pg_backend_pid() FROM pg_sleep(?::float)";
    rp = cm_replay_new();
    cm_replay_begin(db, rp);
    st = cm_db_stmt(db, sql_sleep);
    cm_stmt_bind_text(st, 1, "5", 1);
    cr_assert_eq(cm_stmt_step(st), -EAGAIN);
    cr_assert_eq(cm_replay_end(db), 1);
    cr_assert_eq(cm_pgasync_send(c, rp), 0);
    PGconn *a = pg_admin();
    PGresult *r = PQexec(a, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                            "query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()");
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(a);
    cr_assert_eq(drive(c, -1), rp);
    cr_assert_eq(cm_pgasync_state(c), CM_PGASYNC_DOWN);
    cm_replay_begin(db, rp);
    st = cm_db_stmt(db, sql_sleep);
    cm_stmt_bind_text(st, 1, "5", 1);
    cr_assert_eq(cm_stmt_step(st), -EIO, "a lost connection is the read's -EIO (503)");
    cr_assert_eq(cm_replay_end(db), 0);
    cm_replay_free(rp);
    uint64_t until = now_ms() + 5000;
    while (cm_pgasync_start(c, now_ms(), &later) == -EAGAIN && now_ms() < until)
        usleep((useconds_t)later * 1000);
    drive(c, CM_PGASYNC_IDLE);
    cm_db_close(db);
    cm_pgasync_close(c);
}
