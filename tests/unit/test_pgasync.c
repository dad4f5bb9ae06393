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

/* Drives c until n statements finished (their args in got[], in the order finished) or,
 * with want_state >= 0, until c is in that state. Bounded: 10 s. */
static void drive_n(cm_pgasync_t *c, int want_state, int n, void **got)
{
    uint64_t until = now_ms() + 10000;
    int have = 0;
    while (now_ms() < until) {
        if (want_state >= 0 && (int)cm_pgasync_state(c) == want_state)
            return;
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
        cm_pgasync_advance(c, now_ms());
        void *arg;
        while ((arg = cm_pgasync_done(c))) {
            cr_assert_lt(have, n, "more statements finished than were sent");
            got[have++] = arg;
        }
        if (want_state < 0 && have == n)
            return;
    }
    cr_assert_fail("the connection did not get there within 10 s (state %d, %d of %d finished)",
                   (int)cm_pgasync_state(c), have, n);
}

/* Drives c until the one statement in flight finishes (its arg returned), or until c is
 * in want_state (NULL). */
static void *drive(cm_pgasync_t *c, int want_state)
{
    void *got = NULL;
    drive_n(c, want_state, 1, &got);
    return got;
}

/* A connection started and ready. */
static cm_pgasync_t *ready_conn(void)
{
    cm_pgasync_t *c;
    cr_assert_eq(cm_pgasync_open(url, &c), 0);
    cr_assert_eq(cm_pgasync_state(c), CM_PGASYNC_DOWN);
    uint64_t later;
    cr_assert_eq(cm_pgasync_start(c, now_ms(), &later), 0);
    drive(c, CM_PGASYNC_IDLE);
    return c;
}

/* A fresh database, a ready connection to it, and a replay database in *db. */
static cm_pgasync_t *start(cm_db_t **db)
{
    need_server();
    cm_pgasync_t *c = ready_conn();
    cr_assert_eq(cm_replay_db_open(db), 0);
    return c;
}

/* A connection that went down, started again after its backoff and ready. */
static void back_up(cm_pgasync_t *c)
{
    uint64_t later, until = now_ms() + 5000;
    while (cm_pgasync_start(c, now_ms(), &later) == -EAGAIN && now_ms() < until)
        usleep((useconds_t)later * 1000);
    drive(c, CM_PGASYNC_IDLE);
}

/* Sends rp's wanted statement alone: one batch. */
static void send_one(cm_pgasync_t *c, cm_replay_t *rp)
{
    cr_assert_eq(cm_pgasync_send(c, rp, rp, now_ms()), 0);
    cr_assert_eq(cm_pgasync_flush(c), 0);
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
    cm_db_t *db;
    cm_pgasync_t *c = start(&db);
    for (int round = 0; round < 2; round++) { /* the second on prepared statements */
        cm_replay_t *rp = cm_replay_new();
        answer_t ans;
        int runs = 0;
        for (;;) {
            cm_replay_begin(db, rp);
            handler(db, 40 + round, &ans);
            runs++;
            if (!cm_replay_end(db))
                break;
            send_one(c, rp);
            cr_assert_eq(cm_pgasync_state(c), CM_PGASYNC_BUSY);
            cr_assert_eq(cm_pgasync_inflight(c), 1);
            cr_assert_eq(drive(c, -1), rp);
            cr_assert_eq(cm_pgasync_state(c), CM_PGASYNC_IDLE);
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

static const char sql_div[] = "SELECT 100 / ?::int";
static const char sql_sleep[] = "SELECT pg_backend_pid() FROM pg_sleep(?::float)";

/* A replay of one statement of one integer parameter, stopped at it (to send). */
static cm_replay_t *want_int(cm_db_t *db, const char *sql, int64_t v)
{
    cm_replay_t *rp = cm_replay_new();
    cm_replay_begin(db, rp);
    cm_stmt_t *st = cm_db_stmt(db, sql);
    cm_stmt_bind_int(st, 1, v);
    cr_assert_eq(cm_stmt_step(st), -EAGAIN);
    cr_assert_eq(cm_replay_end(db), 1);
    return rp;
}

/* The replay's run again: its statement's step (*val its first column on a row). */
static int rerun_int(cm_db_t *db, cm_replay_t *rp, const char *sql, int64_t v, int64_t *val)
{
    cm_replay_begin(db, rp);
    cm_stmt_t *st = cm_db_stmt(db, sql);
    cm_stmt_bind_int(st, 1, v);
    int rc = cm_stmt_step(st);
    if (rc == CM_DB_ROW && val)
        *val = cm_stmt_int(st, 0);
    cr_assert_eq(cm_replay_end(db), 0, "a run that got its answer is complete");
    return rc;
}

Test(pgasync, a_batch_answers_each_statement_and_a_server_error_fails_only_its_own)
{
    cm_db_t *db;
    cm_pgasync_t *c = start(&db);
    /* 100 / v for v = 5, 4, 0, 2, 1, 0, 10: the zeros fail, the server skips what follows
     * each in its batch, which goes again; the statement's first use is prepared on the
     * way (its own batch) */
    static const int64_t v[] = {5, 4, 0, 2, 1, 0, 10};
    enum { N = sizeof v / sizeof v[0] };
    cm_replay_t *rp[N];
    for (int i = 0; i < N; i++) {
        rp[i] = want_int(db, sql_div, v[i]);
        cr_assert_eq(cm_pgasync_send(c, rp[i], rp[i], now_ms()), 0);
    }
    cr_assert_eq(cm_pgasync_inflight(c), N, "every statement is in flight at once");
    cr_assert_eq(cm_pgasync_flush(c), 0);
    void *got[N];
    drive_n(c, -1, N, got);
    for (int i = 0; i < N; i++) {
        int seen = 0;
        for (int j = 0; j < N; j++)
            seen += got[j] == rp[i];
        cr_assert_eq(seen, 1, "statement %d finished once", i);
        int64_t val = -1;
        int rc = rerun_int(db, rp[i], sql_div, v[i], &val);
        if (v[i] == 0) {
            cr_assert_eq(rc, -EIO, "100 / 0 fails (its own error)");
        } else {
            cr_assert_eq(rc, CM_DB_ROW, "100 / %lld answers, whatever failed beside it",
                         (long long)v[i]);
            cr_assert_eq(val, 100 / v[i]);
        }
        cm_replay_free(rp[i]);
    }
    cr_assert_eq(cm_pgasync_state(c), CM_PGASYNC_IDLE, "a server error keeps the connection");
    cr_assert_eq(cm_pgasync_inflight(c), 0);
    cr_assert_eq(cm_pgasync_oldest(c), 0);

    /* two batches in flight at once, the first failing: the second is its own */
    cm_replay_t *b1 = want_int(db, sql_div, 0), *b2 = want_int(db, sql_div, 50);
    send_one(c, b1);
    send_one(c, b2);
    cr_assert_eq(cm_pgasync_inflight(c), 2);
    drive_n(c, -1, 2, got);
    cr_assert(got[0] == b1 && got[1] == b2, "results come in the order sent");
    cr_assert_eq(rerun_int(db, b1, sql_div, 0, NULL), -EIO);
    int64_t val = 0;
    cr_assert_eq(rerun_int(db, b2, sql_div, 50, &val), CM_DB_ROW);
    cr_assert_eq(val, 2);
    cm_replay_free(b1);
    cm_replay_free(b2);
    cm_db_close(db);
    cm_pgasync_close(c);
}

/* Terminates every backend of this database running pg_sleep. */
static void terminate_sleepers(void)
{
    PGconn *a = pg_admin();
    PGresult *r = PQexec(a, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                            "query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()");
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(a);
}

/* Waits for pg_sleep to run on the server (the batch reached it). Bounded: 10 s. */
static void wait_sleeping(void)
{
    PGconn *a = pg_admin();
    uint64_t until = now_ms() + 10000;
    for (;;) {
        PGresult *r = PQexec(a, "SELECT count(*) FROM pg_stat_activity WHERE "
                                "query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()");
        int n = PQresultStatus(r) == PGRES_TUPLES_OK ? atoi(PQgetvalue(r, 0, 0)) : 0;
        PQclear(r);
        if (n > 0)
            break;
        cr_assert_lt(now_ms(), until, "the statement never ran");
        usleep(20 * 1000);
    }
    PQfinish(a);
}

Test(pgasync, a_server_error_and_a_terminated_backend_end_the_statement_with_an_error)
{
    cm_db_t *db;
    cm_pgasync_t *c = start(&db);

    /* a server error (a division by zero): the statement's error, the connection stays */
    cm_replay_t *rp = want_int(db, sql_div, 0);
    send_one(c, rp);
    cr_assert_eq(drive(c, -1), rp);
    cr_assert_eq(rerun_int(db, rp, sql_div, 0, NULL), -EIO);
    cm_replay_free(rp);
    cr_assert_eq(cm_pgasync_state(c), CM_PGASYNC_IDLE, "an error of the statement keeps it");

    /* the backend terminated while a statement runs: -EIO, down, and back after the backoff */
    rp = want_int(db, sql_sleep, 5);
    send_one(c, rp);
    wait_sleeping();
    terminate_sleepers();
    cr_assert_eq(drive(c, -1), rp);
    cr_assert_eq(cm_pgasync_state(c), CM_PGASYNC_DOWN);
    cr_assert_eq(rerun_int(db, rp, sql_sleep, 5, NULL), -EIO,
                 "a lost connection is the read's -EIO (503)");
    cm_replay_free(rp);
    back_up(c);
    cm_db_close(db);
    cm_pgasync_close(c);
}

Test(pgasync, a_terminated_backend_fails_every_statement_in_flight_and_the_connection_comes_back)
{
    cm_db_t *db;
    cm_pgasync_t *c = start(&db);
    /* a first batch sleeping, a second behind it, and a third sent after: all in flight */
    enum { N = 4 };
    cm_replay_t *rp[N];
    rp[0] = want_int(db, sql_sleep, 5);
    rp[1] = want_int(db, sql_div, 4);
    cr_assert_eq(cm_pgasync_send(c, rp[0], rp[0], now_ms()), 0);
    cr_assert_eq(cm_pgasync_send(c, rp[1], rp[1], now_ms()), 0);
    cr_assert_eq(cm_pgasync_flush(c), 0);
    rp[2] = want_int(db, sql_div, 5);
    send_one(c, rp[2]);
    rp[3] = want_int(db, sql_sleep, 1);
    send_one(c, rp[3]);
    cr_assert_eq(cm_pgasync_inflight(c), N);
    cr_assert_neq(cm_pgasync_oldest(c), 0);
    wait_sleeping();
    terminate_sleepers();
    void *got[N];
    drive_n(c, -1, N, got);
    cr_assert_eq(cm_pgasync_state(c), CM_PGASYNC_DOWN);
    cr_assert_eq(cm_pgasync_inflight(c), 0);
    for (int i = 0; i < N; i++) {
        int seen = 0;
        for (int j = 0; j < N; j++)
            seen += got[j] == rp[i];
        cr_assert_eq(seen, 1, "statement %d finished once", i);
        const char *sql = i == 0 || i == 3 ? sql_sleep : sql_div;
        int64_t v = i == 0 ? 5 : i == 1 ? 4 : i == 2 ? 5 : 1;
        cr_assert_eq(rerun_int(db, rp[i], sql, v, NULL), -EIO,
                     "statement %d: a lost connection is every statement's -EIO (503)", i);
        cm_replay_free(rp[i]);
    }
    /* back after the backoff, its statements prepared anew */
    back_up(c);
    cm_replay_t *again = want_int(db, sql_div, 20);
    send_one(c, again);
    cr_assert_eq(drive(c, -1), again);
    int64_t val = 0;
    cr_assert_eq(rerun_int(db, again, sql_div, 20, &val), CM_DB_ROW);
    cr_assert_eq(val, 5);
    cm_replay_free(again);
    cm_db_close(db);
    cm_pgasync_close(c);
}

Test(pgasync, abort_fails_every_statement_in_flight)
{
    cm_db_t *db;
    cm_pgasync_t *c = start(&db);
    cm_replay_t *a = want_int(db, sql_sleep, 5), *b = want_int(db, sql_div, 1);
    cr_assert_eq(cm_pgasync_send(c, a, a, now_ms()), 0);
    cr_assert_eq(cm_pgasync_send(c, b, b, now_ms()), 0);
    cr_assert_eq(cm_pgasync_flush(c), 0);
    cm_pgasync_abort(c, -EBUSY, "a test's deadline"); /* as the loop's statement deadline does */
    cr_assert_eq(cm_pgasync_state(c), CM_PGASYNC_DOWN);
    cr_assert_eq(cm_pgasync_done(c), a);
    cr_assert_eq(cm_pgasync_done(c), b);
    cr_assert_null(cm_pgasync_done(c));
    cr_assert_eq(rerun_int(db, a, sql_sleep, 5, NULL), -EBUSY, "the deadline's 503");
    cr_assert_eq(rerun_int(db, b, sql_div, 1, NULL), -EBUSY);
    cm_replay_free(a);
    cm_replay_free(b);
    cm_db_close(db);
    cm_pgasync_close(c);
}
