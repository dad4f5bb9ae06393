/* tests/integration/test_pgfault.c: the PostgreSQL server stopped and started again under
 * load (the fault test_store injects on SQLite's disk, on PostgreSQL's side). Client
 * threads create users while the test server goes down and comes back: every 201 must be
 * there afterwards as sent, every other answer must be 503 with Retry-After, or 500
 * "unknown" for a COMMIT cut in flight whose outcome the server could not be asked about
 * within 5 s (store/db.h; never a wrong answer, never a dropped connection), and the
 * service must be ready again within a bound. Runs only on the PostgreSQL run (it_pg_test_pgfault);
 * skipped on SQLite. */
#include "api_util.h"
#include "h_pg.h"
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#define THREADS      4
#define PER_THREAD   3000 /* requests per thread at most: the bound if the loaders never stop */
#define READY_WITHIN 20   /* s: the service answers /readyz 200 again after the server is back */

typedef struct loader {
    const h_proc_t *p;
    int t;
    atomic_int *stop;
    int transport_err;
    int bad; /* answers neither 201 nor 503 + Retry-After nor 500 "unknown" */
    long bad_status;
    int n503;
    int nacks;
    json_int_t ids[PER_THREAD]; /* ids[i]: the id acknowledged for request i, else 0 */
} loader_t;

/* No asserts in here: Criterion's asserts belong to the test's own thread. */
static void *load(void *arg)
{
    loader_t *l = arg;
    for (int i = 0; i < PER_THREAD && !atomic_load(l->stop); i++) {
        char body[160];
        snprintf(body, sizeof body,
                 "{\"name\":\"Load %d-%d\",\"email\":\"t%d.n%d@pg.example.org\"}", l->t, i, l->t,
                 i);
        h_resp_t r = api_send(l->p, "POST", "/users", body, NULL);
        char retry[16];
        if (r.status == 0) {
            l->transport_err++;
        } else if (r.status == 201) {
            json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
            json_t *id = j ? json_object_get(j, "id") : NULL;
            if (json_is_integer(id)) {
                l->ids[i] = json_integer_value(id);
                l->nacks++;
            } else {
                l->bad++;
            }
            json_decref(j);
        } else if (r.status == 503 && h_header(&r, "Retry-After", retry, sizeof retry) == 0) {
            l->n503++;
            usleep(20 * 1000); /* a client that backs off (sooner than Retry-After says) */
        } else if (r.status == 500 && r.body && strstr(r.body, "unknown")) {
            l->n503++; /* stored or not, nobody knows: not acknowledged, not checked */
        } else {
            l->bad++;
            l->bad_status = r.status;
        }
        h_resp_free(&r);
    }
    return NULL;
}

static int acked(loader_t *l)
{
    int n = 0;
    for (int t = 0; t < THREADS; t++)
        n += l[t].nacks;
    return n;
}

static int ready(const h_proc_t *p)
{
    h_resp_t r = h_req(p, "GET", "/readyz", NULL, NULL);
    long st = r.status;
    h_resp_free(&r);
    return st == 200;
}

static void restart_under_load(const char *mode)
{
    if (!h_pg_on())
        cr_skip_test("the PostgreSQL fault needs the test server (it_pg_test_pgfault)");
    h_proc_t p;
    h_start(&p, "users", "--db", "{dir}/users.db", "--workers", "2", "--access-log", "off", NULL);
    atomic_int stop = 0;
    loader_t *l = calloc(THREADS, sizeof *l);
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) {
        l[t] = (loader_t){.p = &p, .t = t, .stop = &stop};
        pthread_create(&th[t], NULL, load, &l[t]);
    }
    for (int i = 0; i < 400 && acked(l) < 200; i++)
        usleep(25 * 1000);
    int before = acked(l);
    h_pg_server_stop(mode);
    /* the load goes on against a server that is away: every answer must be 503 */
    for (int i = 0; i < 20; i++) {
        usleep(50 * 1000);
        cr_assert_eq(ready(&p), 0, "/readyz said ready while the database server was down");
    }
    h_pg_server_start();
    int up = 0;
    for (int i = 0; i < READY_WITHIN * 10 && !up; i++) {
        up = ready(&p);
        if (!up)
            usleep(100 * 1000);
    }
    cr_assert(up, "not ready %d s after the database server came back", READY_WITHIN);
    int back = acked(l);
    for (int i = 0; i < 400 && acked(l) < back + 200; i++)
        usleep(25 * 1000);
    atomic_store(&stop, 1);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);

    int n503 = 0;
    for (int t = 0; t < THREADS; t++) {
        cr_expect_eq(l[t].transport_err, 0, "loader %d: a request failed below HTTP", t);
        cr_expect_eq(l[t].bad, 0, "loader %d: %d answers neither 201 nor 503 + Retry-After (%ld)",
                     t, l[t].bad, l[t].bad_status);
        n503 += l[t].n503;
    }
    cr_assert_gt(acked(l), back, "no write was acknowledged after the server came back");
    cr_log_info("stop -m %s: %d acknowledged (%d before the stop), %d answered 503", mode, acked(l),
                before, n503);

    /* every acknowledged write is there, as sent */
    for (int t = 0; t < THREADS; t++) {
        for (int i = 0; i < PER_THREAD; i++) {
            if (!l[t].ids[i])
                continue;
            char path[48], email[64];
            snprintf(path, sizeof path, "/users/%lld", (long long)l[t].ids[i]);
            snprintf(email, sizeof email, "t%d.n%d@pg.example.org", t, i);
            h_resp_t r = h_req(&p, "GET", path, NULL, NULL);
            /* a 503 is no wrong answer (a worker's connection may still be on its way
             * back); only a 404 or another body would be */
            for (int k = 0; k < 50 && r.status == 503; k++) {
                h_resp_free(&r);
                usleep(100 * 1000);
                r = h_req(&p, "GET", path, NULL, NULL);
            }
            cr_assert_eq(r.status, 200, "acknowledged %s is gone: %ld", path, r.status);
            cr_assert(strstr(r.body, email), "%s is not what was sent: %s", path, r.body);
            h_resp_free(&r);
        }
    }
    free(l);
    h_stop(&p);
}

TestSuite(pgfault, .timeout = 120);

Test(pgfault, server_stopped_and_started_under_load_loses_no_acknowledged_write)
{
    restart_under_load("fast");
}

Test(pgfault, server_crashed_and_started_under_load_loses_no_acknowledged_write)
{
    restart_under_load("immediate");
}
