/* tests/integration/test_durability.c: what the services acknowledged survives kill -9.
 * Client threads create users as fast as they can while the process is killed mid-stream;
 * after a restart on the same db every 201 must be there as sent, and every acknowledged
 * Idempotency-Key must still replay. Counts are bounded; nothing here measures time. */
#include "api_util.h"
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#define THREADS    4
#define PER_THREAD 400 /* requests per thread at most: bounds the test if the kill is late */
#define KILL_AFTER 600 /* acknowledged creates before the kill */

typedef struct ack {
    json_int_t id;
    char location[48];
} ack_t;

typedef struct loader {
    const h_proc_t *p;
    int t;
    int sent;          /* requests issued */
    int transport_err; /* set when a request failed below HTTP: the server died */
    int other;         /* answers other than 201 (e.g. 503 busy) */
    int nacks;
    ack_t acks[PER_THREAD]; /* acks[i] answers request i of this thread when id != 0 */
    atomic_int *acked;
} loader_t;

static void name_of(int t, int i, char *out, size_t cap)
{
    snprintf(out, cap, "Load %d-%d", t, i);
}

static void email_of(int t, int i, char *out, size_t cap)
{
    snprintf(out, cap, "t%d.n%d@load.example.org", t, i);
}

/* No asserts in here: Criterion's asserts belong to the test's own thread. */
static void *load(void *arg)
{
    loader_t *l = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        char name[64], email[64], body[160], key[80];
        name_of(l->t, i, name, sizeof name);
        email_of(l->t, i, email, sizeof email);
        snprintf(body, sizeof body, "{\"name\":\"%s\",\"email\":\"%s\"}", name, email);
        snprintf(key, sizeof key, "Idempotency-Key: load-%d-%d", l->t, i);
        l->sent++;
        h_resp_t r = api_send(l->p, "POST", "/users", body, key, NULL);
        if (r.status == 0) {
            l->transport_err = 1;
            h_resp_free(&r);
            break;
        }
        if (r.status == 201) {
            json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
            json_t *id = j ? json_object_get(j, "id") : NULL;
            if (json_is_integer(id)) {
                l->acks[i].id = json_integer_value(id);
                h_header(&r, "Location", l->acks[i].location, sizeof l->acks[i].location);
                l->nacks++;
                atomic_fetch_add(l->acked, 1);
            }
            json_decref(j);
        } else {
            l->other++;
        }
        h_resp_free(&r);
    }
    return NULL;
}

/* Walks all of /users into a fresh array (new reference), following Link rel="next". */
static json_t *all_users(const h_proc_t *p)
{
    json_t *all = json_array();
    char path[256] = "/users?limit=1000";
    for (int page = 0; page < 100; page++) {
        h_resp_t r = h_req(p, "GET", path, NULL, NULL);
        cr_assert_eq(r.status, 200, "GET %s: %ld %s", path, r.status, r.body);
        json_t *arr = h_json(&r);
        cr_assert(json_is_array(arr));
        json_array_extend(all, arr);
        json_decref(arr);
        char link[256];
        int more = h_header(&r, "Link", link, sizeof link) == 0;
        h_resp_free(&r);
        if (!more)
            return all;
        snprintf(path, sizeof path, "%.*s", (int)(strchr(link, '>') - link - 1), link + 1);
    }
    cr_assert_fail("paging did not end");
    return all;
}

/* Runs the load, kills -9 once KILL_AFTER creates were acknowledged, restarts with the
 * same flags and checks every acknowledged user and key. */
static void acked_creates_survive_kill9(const char *sync, const char *workers)
{
    h_proc_t p;
    h_start(&p, "users", "--db", "{dir}/users.db", "--sync", sync, "--workers", workers,
            "--access-log", "off", NULL);
    atomic_int acked = 0;
    static loader_t ls[THREADS];
    pthread_t th[THREADS];
    memset(ls, 0, sizeof ls);
    for (int t = 0; t < THREADS; t++) {
        ls[t].p = &p;
        ls[t].t = t;
        ls[t].acked = &acked;
        cr_assert_eq(pthread_create(&th[t], NULL, load, &ls[t]), 0);
    }
    /* bounded wait: the loaders stop by themselves after PER_THREAD requests each */
    for (int i = 0; i < 20000 && atomic_load(&acked) < KILL_AFTER; i++)
        usleep(1000);
    h_kill9(&p);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);

    int total = 0, died = 0, other = 0;
    for (int t = 0; t < THREADS; t++) {
        total += ls[t].nacks;
        died += ls[t].transport_err;
        other += ls[t].other;
    }
    cr_log_info("sync=%s workers=%s: %d acknowledged, %d other answers, %d loaders cut off", sync,
                workers, total, other, died);
    cr_assert_geq(total, KILL_AFTER, "only %d creates were acknowledged", total);
    cr_assert_gt(died, 0, "every loader finished before the kill: nothing was cut mid-stream");

    h_restart(&p, "users", "--db", "{dir}/users.db", "--sync", sync, "--workers", workers,
              "--access-log", "off", NULL);
    json_t *all = all_users(&p);
    /* index the stored users by id; ids are unique */
    size_t n = json_array_size(all);
    json_int_t max_id = 0;
    for (size_t i = 0; i < n; i++) {
        json_int_t id = api_int(json_array_get(all, i), "id");
        if (i > 0)
            cr_assert_gt(id, api_int(json_array_get(all, i - 1), "id"), "ids not ascending");
        if (id > max_id)
            max_id = id;
    }
    json_t **by_id = calloc((size_t)max_id + 1, sizeof *by_id);
    for (size_t i = 0; i < n; i++) {
        json_t *u = json_array_get(all, i);
        by_id[api_int(u, "id")] = u;
    }
    for (int t = 0; t < THREADS; t++) {
        for (int i = 0; i < PER_THREAD; i++) {
            json_int_t id = ls[t].acks[i].id;
            if (!id)
                continue;
            char name[64], email[64];
            name_of(t, i, name, sizeof name);
            email_of(t, i, email, sizeof email);
            cr_assert(id <= max_id && by_id[id], "acknowledged user %lld (%s) is lost",
                      (long long)id, email);
            cr_assert_str_eq(api_str(by_id[id], "name"), name, "user %lld", (long long)id);
            cr_assert_str_eq(api_str(by_id[id], "email"), email, "user %lld", (long long)id);
        }
    }
    free(by_id);
    json_decref(all);

    /* every acknowledged key still replays its 201, for a sample of each thread */
    for (int t = 0; t < THREADS; t++) {
        int checked = 0;
        for (int i = 0; i < PER_THREAD && checked < 10; i++) {
            if (!ls[t].acks[i].id)
                continue;
            char name[64], email[64], body[160], key[80], loc[64], rep[16];
            name_of(t, i, name, sizeof name);
            email_of(t, i, email, sizeof email);
            snprintf(body, sizeof body, "{\"name\":\"%s\",\"email\":\"%s\"}", name, email);
            snprintf(key, sizeof key, "Idempotency-Key: load-%d-%d", t, i);
            h_resp_t r = api_send(&p, "POST", "/users", body, key, NULL);
            cr_assert_eq(r.status, 201, "key %s after restart: %ld %s", key, r.status, r.body);
            cr_assert_eq(h_header(&r, "Idempotent-Replayed", rep, sizeof rep), 0,
                         "key %s no longer replays", key);
            cr_assert_eq(h_header(&r, "Location", loc, sizeof loc), 0);
            cr_assert_str_eq(loc, ls[t].acks[i].location);
            h_resp_free(&r);
            checked++;
        }
    }
    api_stop_clean(&p);
}

Test(durability, acknowledged_creates_survive_kill9_mid_stream)
{
    acked_creates_survive_kill9("normal", "1");
}

Test(durability, acknowledged_creates_survive_kill9_with_two_workers_and_full_sync)
{
    acked_creates_survive_kill9("full", "2");
}

Test(durability, acknowledged_updates_and_deletes_survive_kill9)
{
    h_proc_t p;
    h_start(&p, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
    json_int_t ids[20];
    for (int i = 0; i < 20; i++) {
        char email[48];
        snprintf(email, sizeof email, "u%d@x.org", i);
        ids[i] = api_create_user(&p, "Before", email);
    }
    for (int i = 0; i < 20; i += 2) {
        char path[64];
        snprintf(path, sizeof path, "/users/%lld", (long long)ids[i]);
        h_resp_t r = i % 4 == 0 ? h_req(&p, "DELETE", path, NULL, NULL)
                                : api_send(&p, "PUT", path, "{\"name\":\"After\"}", NULL);
        cr_assert_eq(r.status, 200, "%s: %ld %s", path, r.status, r.body);
        h_resp_free(&r);
    }
    json_t *before = api_snapshot(&p, "/users");
    cr_assert_eq(json_array_size(before), 15);
    h_kill9(&p);
    h_restart(&p, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
    api_assert_unchanged(&p, "/users", before);
    /* ids stay unused after the crash too */
    json_int_t next = api_create_user(&p, "New", "new@x.org");
    cr_assert_gt(next, ids[19]);
    api_stop_clean(&p);
}

Test(durability, acknowledged_orders_survive_kill9)
{
    h_proc_t u, o;
    h_start(&u, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
    json_int_t uid = api_create_user(&u, "Buyer", "buyer@x.org");
    h_start(&o, "orders", "--db", "{dir}/orders.db", "--users-url", u.url, "--access-log", "off",
            NULL);
    char body[64];
    snprintf(body, sizeof body, "{\"userId\":%lld}", (long long)uid);
    for (int i = 0; i < 30; i++) {
        h_resp_t r = api_send(&o, "POST", "/orders", body, NULL);
        cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
        h_resp_free(&r);
    }
    json_t *before = api_snapshot(&o, "/orders");
    cr_assert_eq(json_array_size(before), 30);
    h_kill9(&o);
    h_restart(&o, "orders", "--db", "{dir}/orders.db", "--users-url", u.url, "--access-log", "off",
              NULL);
    api_assert_unchanged(&o, "/orders", before);
    api_stop_clean(&o);
    api_stop_clean(&u);
}
