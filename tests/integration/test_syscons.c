/* tests/integration/test_syscons.c: issue 16's fault tests (data across services) on the
 * system users run: `cmesh up` with 2 users and 2 orders instances, each service's two on
 * ONE database (a SQLite file, or on the it_pg_ run a PostgreSQL database of its own,
 * written into the cmesh.yaml), orders following users through the registry
 * (--users-registry {registry}, as the shipped cmesh.yaml), a gateway in front. Two
 * instances on one database is the point: the users feed's ids gap-free in commit order
 * whichever instance wrote, the durable cursor applied exactly once while two orders
 * instances follow the same feed, an Idempotency-Key honoured across instances.
 *   - an orders instance SIGKILLed (pid from /v1/status) while users are deleted under load:
 * every open order of every deleted user ends cancelled, exactly once;
 *   - a users instance SIGKILLed while writes go through the gateway and a reader follows
 * the other instance's feed: no event lost, repeated or out of order;
 *   - users scaled to 0 through the control plane: orders for known users 201, for unseen
 * ones 503 + Retry-After; back to 2, unseen users are checked again;
 *   - one Idempotency-Key sent to both users instances at once: one user, one answer.
 * Every test stops the system and proves no process of it is left (ctl_util.h). */
#include "api_util.h"
#include "ctl_util.h"
#include "h_pg.h"
#include "h_util.h"

#include <pthread.h>
#include <stdatomic.h>

/* The stated bounds (seconds; generous: a loaded 2-core machine). */
#define READY_S    45 /* the whole system ready after `cmesh up` or a scale */
#define REPLACE_S  30 /* a SIGKILLed instance replaced by the supervisor and ready */
#define CATCH_UP_S 30 /* every orders instance applied the users feed to its head */
#define BACK_S     20 /* orders checks unseen users again after users is back */
#define TRIES      40 /* one write sent again (same Idempotency-Key) while it fails */

static sys_t sys;

TestSuite(syscons, .fini = sys_fini, .timeout = 150);

/* ---------------------------------------------------------------------------------- */
/* The system                                                                         */
/* ---------------------------------------------------------------------------------- */

/* %1$d: the gateway's port, %2$d / %3$d: users' and orders' first ports, %4$s / %5$s:
 * their databases */
static const char spec[] =
    "services:\n"
    "  users:\n    command: users\n    instances: 2\n    listen: 127.0.0.1:%2$d\n"
    "    args: [--db, '%4$s', --access-log, 'off']\n"
    "    readiness: { path: /readyz, interval: 500ms, timeout: 500ms, fall: 3 }\n"
    "    drain_timeout: 3s\n"
    "  orders:\n    command: orders\n    instances: 2\n    listen: 127.0.0.1:%3$d\n"
    "    args: [--db, '%5$s', --users-registry, '{registry}', --access-log, 'off']\n"
    "    readiness: { path: /readyz, interval: 500ms, timeout: 500ms, fall: 3 }\n"
    "    drain_timeout: 3s\n"
    "gateway:\n  listen: 127.0.0.1:%1$d\n  routes:\n"
    "    - { prefix: /users, service: users }\n"
    "    - { prefix: /orders, service: orders }\n";

/* The database of service: its file (relative to cmesh.yaml), or on the PostgreSQL run
 * a fresh database's URL (named after that file's path in this test's dir). */
static void db_for(const char *service, char *out, size_t cap)
{
    char file[400];
    snprintf(file, sizeof file, "%s/%s.db", sys.dir, service);
    if (h_pg_on())
        h_pg_url_for(file, out, cap);
    else
        snprintf(out, cap, "%s.db", service);
    cr_assert(!strchr(out, '\''), "%s cannot go into the YAML", out);
}

/* cmesh up with spec, waited for until every instance is ready. */
static void start_system(void)
{
    sys_init(&sys, ""); /* the control: section; the rest needs the dir it made */
    char users_db[512], orders_db[512];
    db_for("users", users_db, sizeof users_db);
    db_for("orders", orders_db, sizeof orders_db);
    FILE *f = fopen(sys.yaml, "a");
    cr_assert_not_null(f);
    fprintf(f, spec, sys.gw_port, sys.port[0], sys.port[1], users_db, orders_db);
    fclose(f);
    cr_log_info("users on %s, orders on %s", users_db, orders_db);
    sys_start(&sys);
    sys_wait_ready(&sys, READY_S * 1000);
}

/* Scans the instance logs (STATE/logs, the supervisor's notes among them) for how every
 * instance ended: each exit status 0, no signal but the `kills` SIGKILLs the test sent
 * (a SIGKILL after the drain timeout, a crash, or a sanitizer's report in the ASan build
 * fail here). */
static void assert_clean_exits(int kills)
{
    char dir[400];
    snprintf(dir, sizeof dir, "%s/logs", sys.state);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "no %s", dir);
    struct dirent *e;
    int sigkills = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[700];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        char *log = h_read_file(path, NULL);
        cr_assert_not_null(log, "%s", path);
        for (const char *p = log; (p = strstr(p, "exited ")); p++) {
            int n;
            if (sscanf(p, "exited with status %d", &n) == 1)
                cr_assert_eq(n, 0, "%s: an instance exited with status %d", e->d_name, n);
            else if (sscanf(p, "exited on signal %d", &n) == 1) {
                cr_assert_eq(n, SIGKILL, "%s: an instance exited on signal %d", e->d_name, n);
                sigkills++;
            }
        }
        cr_assert_null(strstr(log, "Sanitizer"), "%s: a sanitizer report:\n%s", e->d_name, log);
        cr_assert_null(strstr(log, "runtime error:"), "%s: UBSan:\n%s", e->d_name, log);
        free(log);
    }
    closedir(d);
    cr_assert_eq(sigkills, kills, "%d instances SIGKILLed, %d by the test", sigkills, kills);
}

/* SIGTERM to cmesh up: it stops every instance and exits 0, nothing is left, and every
 * instance ended as it should (assert_clean_exits). */
static void stop_system(int kills)
{
    cr_assert_eq(sys_stop(&sys, 30000), 0, "cmesh up did not stop cleanly");
    cr_assert_eq(sys_procs(sys.state, NULL, 0), 0, "a process of the system outlived it");
    assert_clean_exits(kills);
}

static h_proc_t at_port(int port)
{
    h_proc_t p = {0};
    p.port = port;
    snprintf(p.url, sizeof p.url, "http://127.0.0.1:%d", port);
    return p;
}

static h_proc_t gateway(void)
{
    return at_port(sys.gw_port);
}

/* Instance service/index as the control plane lists it (its port from /v1/status's
 * registry view; *pid set when not NULL). */
static h_proc_t instance(const char *service, int index, int *pid)
{
    json_t *in = sys_inst(&sys, service, index);
    cr_assert_not_null(in, "%s/%d is not in the registry", service, index);
    int port = (int)json_integer_value(json_object_get(in, "port"));
    if (pid)
        *pid = (int)json_integer_value(json_object_get(in, "pid"));
    json_decref(in);
    cr_assert_gt(port, 0);
    return at_port(port);
}

/* SIGKILLs instance service/index (pid from the control plane) and waits until the
 * supervisor replaced it: a new process, ready. */
static void kill9_and_wait_replaced(const char *service, int index)
{
    int pid;
    instance(service, index, &pid);
    cr_assert_gt(pid, 0);
    cr_assert_eq(kill(pid, SIGKILL), 0, "kill -9 %s/%d (pid %d)", service, index, pid);
    json_decref(sys_wait_state(&sys, service, index, "ready", pid, REPLACE_S * 1000));
}

/* ---------------------------------------------------------------------------------- */
/* Requests                                                                           */
/* ---------------------------------------------------------------------------------- */

static int retryable(long status)
{
    return status == 0 || status == 502 || status == 503 || status == 504;
}

/* A write with Idempotency-Key key, sent again with the same key while it fails at the
 * transport or with 502/503/504 (an instance killed under it: its outcome is unknown,
 * and the key makes the retry safe), at most TRIES times. No asserts: load threads call
 * it. Caller frees the answer. */
static h_resp_t keyed(const h_proc_t *p, const char *method, const char *path, const char *body,
                      const char *key)
{
    char kh[160];
    snprintf(kh, sizeof kh, "Idempotency-Key: %s", key);
    h_resp_t r = {0};
    for (int i = 0; i < TRIES; i++) {
        if (i)
            ms_sleep(100);
        h_resp_free(&r);
        r = api_send(p, method, path, body, kh, NULL);
        if (!retryable(r.status))
            break;
    }
    return r;
}

/* The "id" of an answer's body, or 0. */
static json_int_t id_of(const h_resp_t *r)
{
    json_t *j = r->body ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
    json_int_t id = json_integer_value(json_object_get(j, "id"));
    json_decref(j);
    return id;
}

/* Asserts evs are ids 1..n, in order: a lost event is a gap, a repeated or reordered one a
 * step that is not +1. */
static void assert_contiguous(json_t *evs, const char *feed)
{
    size_t i;
    json_t *e;
    json_array_foreach(evs, i, e)
        cr_assert_eq(api_int(e, "id"), (json_int_t)i + 1, "%s feed: event %zu has id %lld", feed, i,
                     (long long)api_int(e, "id"));
}

static json_int_t users_head(void)
{
    h_proc_t u = instance("users", 0, NULL);
    json_t *j = api_get(&u, "/events?after=0&limit=1", 200);
    json_int_t head = api_int(j, "head");
    json_decref(j);
    return head;
}

/* Waits (CATCH_UP_S) until every orders instance says the stored cursor reached the users
 * feed's head, lag 0, and no open order of a gone user. */
static void orders_caught_up(void)
{
    json_int_t head = users_head();
    double until = now_s() + CATCH_UP_S;
    for (int index = 0; index < 2; index++) {
        h_proc_t o = instance("orders", index, NULL);
        json_t *c = NULL;
        for (;;) {
            json_decref(c);
            c = api_get(&o, "/orders/consistency", 200);
            if (api_int(c, "cursor") >= head && api_int(c, "lag") == 0 &&
                api_int(c, "openOrdersOfGoneUsers") == 0)
                break;
            cr_assert(now_s() < until,
                      "orders/%d not caught up with the users feed (head %lld) "
                      "within %d s: %s",
                      index, (long long)head, CATCH_UP_S, json_dumps(c, 0));
            ms_sleep(100);
        }
        json_decref(c);
    }
}

static json_int_t create_user(const h_proc_t *p, const char *tag, int i)
{
    char body[160], key[64];
    snprintf(body, sizeof body, "{\"name\":\"%s %d\",\"email\":\"%s%d@syscons.test\"}", tag, i, tag,
             i);
    snprintf(key, sizeof key, "user-%s-%d", tag, i);
    h_resp_t r = keyed(p, "POST", "/users", body, key);
    cr_assert_eq(r.status, 201, "POST /users %s: %ld %s", body, r.status, r.body);
    json_int_t id = id_of(&r);
    h_resp_free(&r);
    return id;
}

/* POST /orders {userId, status} through p; returns the answer (caller frees). */
static h_resp_t post_order(const h_proc_t *p, json_int_t uid, const char *status, const char *key)
{
    char body[96];
    if (status)
        snprintf(body, sizeof body, "{\"userId\":%lld,\"status\":\"%s\"}", (long long)uid, status);
    else
        snprintf(body, sizeof body, "{\"userId\":%lld}", (long long)uid);
    if (key)
        return keyed(p, "POST", "/orders", body, key);
    return api_send(p, "POST", "/orders", body, NULL);
}

/* ---------------------------------------------------------------------------------- */
/* a. orders SIGKILLed while users are deleted under load                             */
/* ---------------------------------------------------------------------------------- */

#define A_USERS   30
#define A_DELETED 20
#define A_PACE_MS 150 /* between deletes: the kills land among them */

typedef struct deleter {
    const json_int_t *uids;
    atomic_int deleted;
    int failed; /* deletes not answered 200 */
    long failed_status;
} deleter_t;

static void *delete_main(void *arg)
{
    deleter_t *d = arg;
    h_proc_t gw = gateway();
    for (int i = 0; i < A_DELETED; i++) {
        char path[64], key[64];
        snprintf(path, sizeof path, "/users/%lld", (long long)d->uids[i]);
        snprintf(key, sizeof key, "delete-%d", i);
        h_resp_t r = keyed(&gw, "DELETE", path, NULL, key);
        if (r.status != 200) {
            d->failed++;
            d->failed_status = r.status;
        }
        h_resp_free(&r);
        atomic_fetch_add(&d->deleted, 1);
        ms_sleep(A_PACE_MS);
    }
    return NULL;
}

typedef struct orderer {
    const json_int_t *uids;
    atomic_int stop;
    int created, gone, other; /* 201, 422 (user deleted), anything else */
    int kept_refused;         /* 422 for a user that is not deleted */
    long other_status;
} orderer_t;

/* Orders for every user meanwhile, through the gateway (those of deleted users 422). */
static void *order_main(void *arg)
{
    orderer_t *w = arg;
    h_proc_t gw = gateway();
    for (int i = 0; i < 100000 && !atomic_load(&w->stop); i++) {
        char key[64];
        snprintf(key, sizeof key, "load-order-%d", i);
        h_resp_t r = post_order(&gw, w->uids[i % A_USERS], NULL, key);
        if (r.status == 201) {
            w->created++;
        } else if (r.status == 422) {
            w->gone++;
            w->kept_refused += i % A_USERS >= A_DELETED;
        } else {
            w->other++;
            w->other_status = r.status;
        }
        h_resp_free(&r);
    }
    return NULL;
}

/* The index of uid among the deleted users, or -1. */
static int deleted_index(const json_int_t *uids, json_int_t uid)
{
    for (int k = 0; k < A_DELETED; k++)
        if (uids[k] == uid)
            return k;
    return -1;
}

static int cmp_id(const void *a, const void *b)
{
    json_int_t x = *(const json_int_t *)a, y = *(const json_int_t *)b;
    return (x > y) - (x < y);
}

static void wait_deleted(deleter_t *d, int n)
{
    for (int i = 0; i < 3000 && atomic_load(&d->deleted) < n; i++)
        ms_sleep(10);
}

/* Bound: CATCH_UP_S after the last delete and the replacements are ready. A lost
 * cancellation shows as an open order of a deleted user (or no status change), a doubled
 * one (two instances applying one user.deleted, or a page applied again after the kill)
 * as a second order.status_changed of that order. */
Test(syscons, orders_killed_while_users_are_deleted_cancels_every_open_order_once)
{
    start_system();
    h_proc_t gw = gateway();
    static json_int_t uids[A_USERS];
    for (int i = 0; i < A_USERS; i++) {
        uids[i] = create_user(&gw, "a", i);
        static const char *const st[] = {"pending", "paid", "shipped"};
        for (int s = 0; s < 3; s++) {
            char key[64];
            snprintf(key, sizeof key, "setup-%d-%d", i, s);
            h_resp_t r = post_order(&gw, uids[i], st[s], key);
            cr_assert_eq(r.status, 201, "POST /orders: %ld %s", r.status, r.body);
            h_resp_free(&r);
        }
    }
    orders_caught_up();

    static deleter_t d;
    static orderer_t w;
    d = (deleter_t){.uids = uids};
    w = (orderer_t){.uids = uids};
    pthread_t td, tw;
    cr_assert_eq(pthread_create(&tw, NULL, order_main, &w), 0);
    cr_assert_eq(pthread_create(&td, NULL, delete_main, &d), 0);
    /* each orders instance killed once among the deletes: whichever of the two is
     * applying the feed at the time is hit */
    wait_deleted(&d, A_DELETED / 4);
    kill9_and_wait_replaced("orders", 0);
    wait_deleted(&d, A_DELETED / 2);
    kill9_and_wait_replaced("orders", 1);
    pthread_join(td, NULL);
    ms_sleep(500); /* orders for the last deleted users while their delete is applied */
    atomic_store(&w.stop, 1);
    pthread_join(tw, NULL);
    cr_log_info("load: %d orders created, %d refused for a deleted user, %d other (last %ld)",
                w.created, w.gone, w.other, w.other_status);
    cr_assert_eq(d.failed, 0, "%d deletes failed (last %ld)", d.failed, d.failed_status);
    cr_assert_gt(w.created, 0, "the load ran");
    cr_assert_eq(w.other, 0, "%d order creates failed (last %ld)", w.other, w.other_status);
    cr_assert_eq(w.kept_refused, 0, "%d orders for users not deleted refused", w.kept_refused);

    orders_caught_up();
    json_t *orders = api_all_items(&gw, "/orders");
    h_proc_t o0 = instance("orders", 0, NULL);
    json_t *ev = api_all_events(&o0);
    assert_contiguous(ev, "orders");
    /* per order (the listing is in id order): its order.created, status changes, cancels;
     * per deleted user: the event that shows its delete applied (the first cancel of one
     * of its orders: the setup gave each open ones), after which, in commit order, no
     * order of that user may be created */
    static json_int_t applied_at[A_DELETED];
    memset(applied_at, 0, sizeof applied_at);
    size_t nord = json_array_size(orders);
    json_int_t *ids = calloc(nord + 1, sizeof *ids);
    int *created = calloc(nord + 1, sizeof *created), *changes = calloc(nord + 1, sizeof *changes),
        *cancels = calloc(nord + 1, sizeof *cancels);
    size_t i;
    json_t *e, *o;
    json_array_foreach(orders, i, o) ids[i] = api_int(o, "id");
    json_array_foreach(ev, i, e)
    {
        const char *type = api_str(e, "type");
        json_t *data = json_object_get(e, "data");
        json_int_t id = api_int(data, "id");
        json_int_t *at = bsearch(&id, ids, nord, sizeof *ids, cmp_id);
        cr_assert_not_null(at, "event %zu names order %lld, which is not stored", i, (long long)id);
        size_t k = (size_t)(at - ids);
        int del = deleted_index(uids, api_int(data, "userId"));
        if (strcmp(type, "order.created") == 0) {
            created[k]++;
            cr_assert(del < 0 || !applied_at[del],
                      "order %lld of user %lld created (event %lld) after the user's delete "
                      "was applied (event %lld)",
                      (long long)id, (long long)uids[del], (long long)api_int(e, "id"),
                      (long long)applied_at[del]);
        } else if (strcmp(type, "order.status_changed") == 0) {
            changes[k]++;
            int cancel = strcmp(api_str(data, "status"), "cancelled") == 0;
            cancels[k] += cancel;
            if (cancel && del >= 0 && !applied_at[del])
                applied_at[del] = api_int(e, "id");
        }
    }
    int cancelled = 0;
    json_array_foreach(orders, i, o)
    {
        long long id = (long long)api_int(o, "id");
        int gone = deleted_index(uids, api_int(o, "userId")) >= 0;
        const char *status = api_str(o, "status");
        cr_assert_eq(json_is_true(json_object_get(o, "userGone")), gone, "order %lld", id);
        cr_assert_eq(created[i], 1, "order %lld has %d order.created events", id, created[i]);
        if (!gone || strcmp(status, "shipped") == 0) {
            cr_assert(strcmp(status, "cancelled") != 0, "order %lld cancelled", id);
            cr_assert_eq(changes[i], 0, "order %lld changed status %d times", id, changes[i]);
            continue;
        }
        cr_assert_str_eq(status, "cancelled", "open order %lld of a deleted user is %s", id,
                         status);
        cr_assert_eq(changes[i], 1, "order %lld changed status %d times", id, changes[i]);
        cr_assert_eq(cancels[i], 1, "order %lld cancelled %d times", id, cancels[i]);
        cancelled++;
    }
    cr_log_info("%zu orders, %zu order events, %d cancelled for %d deleted users", nord,
                json_array_size(ev), cancelled, A_DELETED);
    cr_assert_geq(cancelled, 2 * A_DELETED, "the setup's pending and paid orders");
    free(ids);
    free(created);
    free(changes);
    free(cancels);
    json_decref(ev);
    json_decref(orders);
    stop_system(2);
}

/* ---------------------------------------------------------------------------------- */
/* b. a users instance SIGKILLed mid-stream                                           */
/* ---------------------------------------------------------------------------------- */

#define B_WRITERS   3
#define B_PER       3000 /* logical writes per writer at most */
#define B_THRESHOLD 90   /* acknowledged creates before the kill, and after the restart */

typedef struct writer {
    int n;
    atomic_int stop, acked;
    int unresolved; /* writes whose every try failed: outcome unknown */
    json_int_t ids[B_PER];
} writer_t;

static void *write_main(void *arg)
{
    writer_t *w = arg;
    h_proc_t gw = gateway();
    for (int i = 0; i < B_PER && !atomic_load(&w->stop); i++) {
        char body[128], key[64];
        snprintf(body, sizeof body, "{\"name\":\"W%d.%d\",\"email\":\"w%d.%d@syscons.test\"}", w->n,
                 i, w->n, i);
        snprintf(key, sizeof key, "b-%d-%d", w->n, i);
        h_resp_t r = keyed(&gw, "POST", "/users", body, key);
        if (r.status == 201) {
            w->ids[atomic_load(&w->acked)] = id_of(&r);
            atomic_fetch_add(&w->acked, 1);
        } else {
            w->unresolved++;
        }
        h_resp_free(&r);
    }
    return NULL;
}

typedef struct reader {
    h_proc_t users; /* the instance that is not killed */
    atomic_int stop;
    int failed;   /* answers that were not 200 */
    json_t *seen; /* every event read, in order */
} reader_t;

static void *read_main(void *arg)
{
    reader_t *r = arg;
    json_int_t after = 0;
    while (!atomic_load(&r->stop))
        if (api_feed_poll(&r->users, &after, r->seen) < 0) {
            r->failed++;
            ms_sleep(50);
        }
    return NULL;
}

/* The creates (POST answered 201) instance p answered, from its /metrics. */
static long long creates_served(const h_proc_t *p)
{
    h_resp_t r = h_req(p, "GET", "/metrics", NULL, NULL);
    cr_assert_eq(r.status, 200, "GET /metrics: %ld", r.status);
    long long n = 0;
    for (const char *l = r.body; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
        const char *end = strchr(l, '\n');
        size_t len = end ? (size_t)(end - l) : strlen(l);
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line ? len : sizeof line - 1), l);
        if (strncmp(line, "cmesh_http_requests_total{", 26) == 0 &&
            strstr(line, "method=\"POST\"") && strstr(line, "code=\"201\"")) {
            const char *v = strrchr(line, ' ');
            n += v ? atoll(v + 1) : 0;
        }
    }
    h_resp_free(&r);
    return n;
}

static int acked(writer_t *w)
{
    int n = 0;
    for (int i = 0; i < B_WRITERS; i++)
        n += atomic_load(&w[i].acked);
    return n;
}

static void wait_acked(writer_t *w, int n)
{
    for (int i = 0; i < 6000 && acked(w) < n; i++)
        ms_sleep(10);
}

/* Bound: the reader reaches the head within CATCH_UP_S after the writes stop. A lost event
 * is a gap in the ids (or an acknowledged user without its event), a repeated or
 * reordered one a step that is not +1, a key applied twice a user more than the writes. */
Test(syscons, users_killed_mid_stream_loses_repeats_and_reorders_no_event)
{
    start_system();
    static writer_t w[B_WRITERS];
    static reader_t r;
    memset(w, 0, sizeof w);
    r = (reader_t){.users = instance("users", 1, NULL), .seen = json_array()};
    pthread_t tw[B_WRITERS], tr;
    cr_assert_eq(pthread_create(&tr, NULL, read_main, &r), 0);
    for (int i = 0; i < B_WRITERS; i++) {
        w[i].n = i;
        cr_assert_eq(pthread_create(&tw[i], NULL, write_main, &w[i]), 0);
    }
    wait_acked(w, B_THRESHOLD);
    int before = acked(w);
    /* the writes land on both: the reader's feed carries the other instance's commits */
    for (int i = 0; i < 2; i++) {
        h_proc_t u = instance("users", i, NULL);
        cr_assert_gt(creates_served(&u), 0, "the gateway sent users/%d no create", i);
    }
    kill9_and_wait_replaced("users", 0);
    int during = acked(w) - before;
    wait_acked(w, acked(w) + B_THRESHOLD);
    for (int i = 0; i < B_WRITERS; i++)
        atomic_store(&w[i].stop, 1);
    int unresolved = 0;
    for (int i = 0; i < B_WRITERS; i++) {
        pthread_join(tw[i], NULL);
        unresolved += w[i].unresolved;
    }
    int nacked = acked(w);
    json_int_t head = users_head();
    double until = now_s() + CATCH_UP_S;
    for (;;) {
        size_t n = json_array_size(r.seen);
        if (n && api_int(json_array_get(r.seen, n - 1), "id") >= head)
            break;
        if (now_s() > until)
            break;
        ms_sleep(50);
    }
    atomic_store(&r.stop, 1);
    pthread_join(tr, NULL);
    cr_log_info("%d creates acknowledged (%d while users/0 was replaced), %d unresolved, "
                "%zu events read from users/1",
                nacked, during, unresolved, json_array_size(r.seen));
    cr_assert_gt(nacked, before + B_THRESHOLD / 2, "writes went on after the kill");
    cr_assert_eq(r.failed, 0, "the reader's instance failed %d reads", r.failed);

    /* the events: ids 1..head, each once, in order */
    size_t n = json_array_size(r.seen);
    cr_assert_eq((json_int_t)n, head, "read %zu events, the feed's head is %lld", n,
                 (long long)head);
    assert_contiguous(r.seen, "users");
    /* each one the user.created of a stored user, each user once */
    h_proc_t gw = gateway();
    json_t *users = api_all_items(&gw, "/users");
    cr_assert_eq(json_array_size(users), n, "%zu users stored, %zu events", json_array_size(users),
                 n);
    size_t i;
    json_t *e, *u;
    json_int_t *ids = calloc(n + 1, sizeof *ids); /* the listing is in id order */
    int *events = calloc(n + 1, sizeof *events);
    json_array_foreach(users, i, u) ids[i] = api_int(u, "id");
    json_array_foreach(r.seen, i, e)
    {
        cr_assert_str_eq(api_str(e, "type"), "user.created");
        json_t *data = json_object_get(e, "data");
        json_int_t id = api_int(data, "id");
        json_int_t *at = bsearch(&id, ids, n, sizeof *ids, cmp_id);
        cr_assert_not_null(at, "event %zu is of user %lld, who is not stored", i, (long long)id);
        cr_assert(json_equal(json_array_get(users, (size_t)(at - ids)), data),
                  "event %zu is not the stored user: %s", i, json_dumps(data, 0));
        events[at - ids]++;
    }
    for (i = 0; i < n; i++)
        cr_assert_eq(events[i], 1, "user %lld has %d events", (long long)ids[i], events[i]);
    /* each acknowledged write is a stored user of its own, and no write made two */
    json_int_t *acks = calloc((size_t)nacked + 1, sizeof *acks);
    int na = 0;
    for (int t = 0; t < B_WRITERS; t++)
        for (int a = 0; a < atomic_load(&w[t].acked) && na < nacked; a++)
            acks[na++] = w[t].ids[a];
    qsort(acks, (size_t)na, sizeof *acks, cmp_id);
    for (int a = 0; a < na; a++) {
        cr_assert(a == 0 || acks[a] != acks[a - 1], "two writes acknowledged as user %lld",
                  (long long)acks[a]);
        cr_assert_not_null(bsearch(&acks[a], ids, n, sizeof *ids, cmp_id),
                           "acknowledged user %lld is not stored", (long long)acks[a]);
    }
    cr_assert_leq((int)n, nacked + unresolved,
                  "%zu users for %d acknowledged writes (%d "
                  "unresolved): a write was applied twice",
                  n, nacked, unresolved);
    free(acks);
    free(ids);
    free(events);
    json_decref(users);
    json_decref(r.seen);
    stop_system(1);
}

/* ---------------------------------------------------------------------------------- */
/* c. users scaled to 0 through the control plane, and back                           */
/* ---------------------------------------------------------------------------------- */

static void assert_503_retry_after(h_resp_t *r, const char *what)
{
    api_assert_error(r, 503, NULL);
    char ra[16];
    cr_assert_eq(h_header(r, "Retry-After", ra, sizeof ra), 0, "%s: 503 without Retry-After", what);
    cr_log_info("%s: 503, Retry-After %s: %s", what, ra, r->body);
    h_resp_free(r);
}

static int users_running(void)
{
    return sys_procs(sys.state, "users/0", 0) + sys_procs(sys.state, "users/1", 0);
}

/* Bound: orders checks an unseen user again within BACK_S of users being ready. */
Test(syscons, users_at_zero_known_users_are_accepted_unseen_ones_503_until_users_is_back)
{
    start_system();
    h_proc_t gw = gateway(), o[2] = {instance("orders", 0, NULL), instance("orders", 1, NULL)};
    json_int_t known = create_user(&gw, "known", 0);
    orders_caught_up(); /* both instances' database knows the user from the feed */

    char *out = NULL;
    int rc = sys_cmd(&sys, &out, (const char *const[]){"scale", "users", "0", NULL});
    cr_assert_eq(rc, 0, "cmesh scale users 0: %d %s", rc, out);
    free(out);
    double until = now_s() + READY_S;
    while (users_running() > 0 && now_s() < until)
        ms_sleep(50);
    cr_assert_eq(users_running(), 0, "users still runs %d s after the scale to 0", READY_S);

    json_t *before = api_snapshot(&gw, "/orders");
    json_int_t unseen = known + 1000;
    for (int i = 0; i < 2; i++) {
        /* every orders instance takes orders for the known user, checked locally */
        h_resp_t r = post_order(&o[i], known, NULL, NULL);
        cr_assert_eq(r.status, 201, "orders/%d, users at 0, known user: %ld %s", i, r.status,
                     r.body);
        h_resp_free(&r);
        r = post_order(&o[i], unseen, NULL, NULL);
        cr_assert(r.body && strstr(r.body, "scaled to 0"),
                  "orders/%d: the 503 does not say users is scaled to 0: %s", i, r.body);
        assert_503_retry_after(&r, "an unseen user while users is at 0");
    }
    h_resp_t r = post_order(&gw, known, NULL, "c-known-gw");
    cr_assert_eq(r.status, 201, "through the gateway: %ld %s", r.status, r.body);
    h_resp_free(&r);
    r = post_order(&gw, unseen, NULL, NULL);
    assert_503_retry_after(&r, "an unseen user through the gateway");
    /* what was stored: the three orders of the known user, nothing for the unseen one */
    json_t *now = api_snapshot(&gw, "/orders");
    cr_assert_eq(json_array_size(now), json_array_size(before) + 3);
    size_t i;
    json_t *it;
    json_array_foreach(now, i, it) cr_assert_eq(api_int(it, "userId"), known);
    json_decref(now);
    json_decref(before);
    cr_assert_eq(users_running(), 0, "something woke users");

    /* back to 2, through the API this time */
    char url[256];
    snprintf(url, sizeof url, "%s/v1/services/users/scale", sys.ctl);
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    r = h_http("PUT", url, "{\"instances\":2}", hdrs);
    cr_assert_eq(r.status, 200, "scale users 2: %ld %s", r.status, r.body);
    h_resp_free(&r);
    sys_wait_ready(&sys, READY_S * 1000);
    /* an id users does not have: 422 once orders asks users again (not 503) */
    until = now_s() + BACK_S;
    for (int k = 0; k < 2; k++) {
        for (;;) {
            r = post_order(&o[k], unseen, NULL, NULL);
            if (r.status != 503 || now_s() > until)
                break;
            h_resp_free(&r);
            ms_sleep(100);
        }
        api_assert_error(&r, 422, "userId");
        h_resp_free(&r);
    }
    /* a new user, ordered for at once on each orders instance: checked or known, 201 */
    json_int_t fresh = create_user(&gw, "fresh", 0);
    for (int k = 0; k < 2; k++) {
        r = post_order(&o[k], fresh, NULL, NULL);
        cr_assert_eq(r.status, 201, "orders/%d, a new user after users is back: %ld %s", k,
                     r.status, r.body);
        h_resp_free(&r);
    }
    stop_system(0);
}

/* ---------------------------------------------------------------------------------- */
/* d. one Idempotency-Key to both users instances at once                             */
/* ---------------------------------------------------------------------------------- */

#define D_ROUNDS 16

typedef struct twin {
    h_proc_t p;
    pthread_barrier_t *go;
    const char *body, *key;
    h_resp_t r;
} twin_t;

static void *twin_main(void *arg)
{
    twin_t *t = arg;
    char kh[96];
    snprintf(kh, sizeof kh, "Idempotency-Key: %s", t->key);
    pthread_barrier_wait(t->go);
    t->r = api_send(&t->p, "POST", "/users", t->body, kh, NULL);
    return NULL;
}

static void header_or_empty(const h_resp_t *r, const char *name, char *out, size_t cap)
{
    if (h_header(r, name, out, cap) < 0)
        out[0] = '\0';
}

/* A key honoured by one instance only would make two users (and two different answers);
 * a replay that is not marked, none marked or both marked fails the header check. */
Test(syscons, one_idempotency_key_at_two_users_instances_at_once_makes_one_user)
{
    start_system();
    h_proc_t u[2] = {instance("users", 0, NULL), instance("users", 1, NULL)};
    int replays[2] = {0};
    for (int round = 0; round < D_ROUNDS; round++) {
        char body[128], key[64];
        snprintf(body, sizeof body, "{\"name\":\"Twin %d\",\"email\":\"twin%d@syscons.test\"}",
                 round, round);
        snprintf(key, sizeof key, "twin-%d", round);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        twin_t t[2];
        pthread_t th[2];
        for (int i = 0; i < 2; i++) {
            t[i] = (twin_t){.p = u[i], .go = &go, .body = body, .key = key};
            cr_assert_eq(pthread_create(&th[i], NULL, twin_main, &t[i]), 0);
        }
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&go);
        char loc[2][128], etag[2][64], rep[2][16];
        for (int i = 0; i < 2; i++) {
            cr_assert_eq(t[i].r.status, 201, "round %d, users/%d: %ld %s", round, i, t[i].r.status,
                         t[i].r.body);
            header_or_empty(&t[i].r, "Location", loc[i], sizeof loc[i]);
            header_or_empty(&t[i].r, "ETag", etag[i], sizeof etag[i]);
            header_or_empty(&t[i].r, "Idempotent-Replayed", rep[i], sizeof rep[i]);
        }
        cr_assert_str_eq(t[0].r.body, t[1].r.body, "round %d: two different answers", round);
        cr_assert_str_eq(loc[0], loc[1], "round %d: Location", round);
        cr_assert_str_eq(etag[0], etag[1], "round %d: ETag", round);
        cr_assert(loc[0][0] && etag[0][0], "round %d: an answer without Location or ETag", round);
        int which = strcmp(rep[0], "true") == 0 ? 0 : 1;
        cr_assert_str_eq(rep[which], "true", "round %d: neither answer is marked a replay", round);
        cr_assert_str_eq(rep[1 - which], "", "round %d: both answers are marked replays", round);
        replays[which]++;
        for (int i = 0; i < 2; i++)
            h_resp_free(&t[i].r);
    }
    cr_log_info("replays answered by users/0: %d, by users/1: %d", replays[0], replays[1]);
    h_proc_t gw = gateway();
    json_t *users = api_all_items(&gw, "/users");
    cr_assert_eq(json_array_size(users), D_ROUNDS, "%zu users for %d keys", json_array_size(users),
                 D_ROUNDS);
    json_decref(users);
    stop_system(0);
}
