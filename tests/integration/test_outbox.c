/* tests/integration/test_outbox.c: the transactional outbox and GET /events against real
 * `cmesh users` processes: one event per committed change (none for a refused write or a
 * no-op), gap-free ids, bad parameters, a long-poll woken by a write (of this instance and
 * of another one on the same database file), a write of another instance read while a
 * long-poll is parked, a cursor past the end, and the background
 * retention of events and Idempotency-Keys. */
#include "api_util.h"
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

/* GET path; asserts 200 and a well-formed page (ids consecutive from the first, last = the
 * last id or after); returns the body (new reference). */
static json_t *events_page(const h_proc_t *p, const char *path)
{
    h_resp_t r = h_req(p, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "GET %s: %ld %s", path, r.status, r.body);
    json_t *j = h_json(&r);
    h_resp_free(&r);
    json_t *ev = json_object_get(j, "events");
    cr_assert(json_is_array(ev), "no events array");
    size_t i;
    json_t *e;
    json_int_t prev = 0;
    json_array_foreach(ev, i, e)
    {
        json_int_t id = api_int(e, "id");
        cr_assert(i == 0 || id == prev + 1, "ids not consecutive: %lld after %lld", (long long)id,
                  (long long)prev);
        prev = id;
        cr_assert(api_is_timestamp(api_str(e, "time")));
        cr_assert(json_is_object(json_object_get(e, "data")));
    }
    if (json_array_size(ev))
        cr_assert_eq(api_int(j, "last"), prev);
    return j;
}

static const char *type_of(json_t *page, size_t i)
{
    return api_str(json_array_get(json_object_get(page, "events"), i), "type");
}

static json_t *data_of(json_t *page, size_t i)
{
    return json_object_get(json_array_get(json_object_get(page, "events"), i), "data");
}

Test(events, every_committed_change_writes_one_event_and_nothing_else_does)
{
    h_proc_t u;
    h_start(&u, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
    json_int_t a = api_create_user(&u, "Ann", "ann@x.org");
    /* refused writes: a taken email (409), a bad body (422), an unknown id (404) */
    api_expect_error(
        api_send(&u, "POST", "/users", "{\"name\":\"B\",\"email\":\"ann@x.org\"}", NULL), 409,
        "email");
    api_expect_error(api_send(&u, "POST", "/users", "{\"name\":\"\"}", NULL), 422, "name");
    api_expect_error(api_send(&u, "DELETE", "/users/999", NULL, NULL), 404, NULL);
    char path[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)a);
    /* a no-op update writes nothing; a real one writes user.updated */
    h_resp_t r = api_send(&u, "PUT", path, "{\"name\":\"Ann\"}", NULL);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    r = api_send(&u, "PUT", path, "{\"name\":\"Anne\"}", NULL);
    cr_assert_eq(r.status, 200);
    json_t *updated = h_json(&r);
    h_resp_free(&r);
    r = api_send(&u, "DELETE", path, NULL, NULL);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);

    json_t *page = events_page(&u, "/events");
    json_t *ev = json_object_get(page, "events");
    cr_assert_eq(json_array_size(ev), 3, "events: %s", json_dumps(page, 0));
    cr_assert_eq(api_int(json_array_get(ev, 0), "id"), 1);
    cr_assert_str_eq(type_of(page, 0), "user.created");
    cr_assert_str_eq(type_of(page, 1), "user.updated");
    cr_assert_str_eq(type_of(page, 2), "user.deleted");
    cr_assert_eq(api_int(data_of(page, 0), "id"), a);
    cr_assert(json_equal(data_of(page, 1), updated), "user.updated data is not the user");
    cr_assert_eq(json_object_size(data_of(page, 2)), 1);
    cr_assert_eq(api_int(data_of(page, 2), "id"), a);
    cr_assert_eq(api_int(page, "last"), 3);
    cr_assert_eq(api_int(page, "head"), 3);
    json_decref(updated);
    json_decref(page);

    /* paging: limit and after walk the same events */
    page = events_page(&u, "/events?after=1&limit=1");
    cr_assert_eq(json_array_size(json_object_get(page, "events")), 1);
    cr_assert_str_eq(type_of(page, 0), "user.updated");
    cr_assert_eq(api_int(page, "last"), 2);
    json_decref(page);
    api_stop_clean(&u);
}

Test(events, bad_parameters_are_422_naming_the_parameter)
{
    h_proc_t u;
    h_start(&u, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
    static const char *const bad[][2] = {
        {"after=-1", "after"},
        {"after=01", "after"},
        {"after=1x", "after"},
        {"after=%2B1", "after"},
        {"after=99999999999999999999", "after"},
        {"limit=0", "limit"},
        {"limit=1001", "limit"},
        {"limit=", "limit"},
        {"wait=soon", "wait"},
        {"wait=-1s", "wait"},
        {"wait=5y", "wait"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[96];
        snprintf(path, sizeof path, "/events?%s", bad[i][0]);
        api_expect_error(h_req(&u, "GET", path, NULL, NULL), 422, bad[i][1]);
    }
    api_stop_clean(&u);
}

typedef struct poll_arg {
    const h_proc_t *p;
    char path[96];
    h_resp_t r;
} poll_arg_t;

static void *poll_main(void *arg)
{
    poll_arg_t *a = arg;
    a->r = h_req(a->p, "GET", a->path, NULL, NULL);
    return NULL;
}

/* A long-poll on reader parked past the head, a user created on writer: the poll answers
 * with that event, not with the empty page its wait would end with. */
static void long_poll_wakes(const h_proc_t *reader, const h_proc_t *writer)
{
    json_t *page = events_page(reader, "/events");
    json_int_t head = api_int(page, "head");
    json_decref(page);
    poll_arg_t a = {.p = reader};
    snprintf(a.path, sizeof a.path, "/events?after=%lld&wait=8s", (long long)head);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, poll_main, &a), 0);
    usleep(300 * 1000); /* parked by now, most likely; if not, it finds the event at once */
    json_int_t id = api_create_user(writer, "Late", "late@x.org");
    pthread_join(th, NULL);
    cr_assert_eq(a.r.status, 200, "%ld %s", a.r.status, a.r.body);
    json_t *j = h_json(&a.r);
    h_resp_free(&a.r);
    json_t *ev = json_object_get(j, "events");
    cr_assert_eq(json_array_size(ev), 1, "the long-poll ended without the event: %s",
                 json_dumps(j, 0));
    cr_assert_str_eq(type_of(j, 0), "user.created");
    cr_assert_eq(api_int(data_of(j, 0), "id"), id);
    cr_assert_eq(api_int(j, "last"), head + 1);
    json_decref(j);
}

Test(events, long_poll_wakes_on_a_write)
{
    h_proc_t u;
    h_start(&u, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
    api_create_user(&u, "First", "first@x.org");
    long_poll_wakes(&u, &u);
    api_stop_clean(&u);
}

Test(events, long_poll_wakes_on_another_instances_write)
{
    char dir[256], db[300];
    h_tempdir(dir, sizeof dir);
    snprintf(db, sizeof db, "%s/users.db", dir);
    h_proc_t a, b;
    h_start(&a, "users", "--db", db, "--access-log", "off", NULL);
    h_start(&b, "users", "--db", db, "--access-log", "off", NULL);
    long_poll_wakes(&b, &a);
    /* and the feed reads the same from either instance */
    json_t *pa = events_page(&a, "/events"), *pb = events_page(&b, "/events");
    cr_assert(json_equal(pa, pb), "the instances disagree on the feed");
    json_decref(pa);
    json_decref(pb);
    api_stop_clean(&a);
    api_stop_clean(&b);
}

/* Read-your-writes across instances while a long-poll is parked: the feed's tick reads
 * on a timer, before the loop's poll. The snapshot it took must not answer a GET that
 * arrives later, after another instance answered 201 (it did: 404 "User not found"). */
Test(events, a_parked_long_poll_does_not_hide_another_instances_write_from_a_read)
{
    char dir[256], db[300];
    h_tempdir(dir, sizeof dir);
    snprintf(db, sizeof db, "%s/users.db", dir);
    h_proc_t a, b;
    h_start(&a, "users", "--db", db, "--access-log", "off", NULL);
    h_start(&b, "users", "--db", db, "--access-log", "off", NULL);
    /* a kept-alive connection, as the gateway's pool holds: the GET's bytes are the first
     * I/O b sees after its tick (a new connection's accept would end that snapshot) */
    int fd = h_connect(b.port);
    for (int i = 0; i < 10; i++) {
        json_t *page = events_page(&b, "/events");
        poll_arg_t pa = {.p = &b};
        snprintf(pa.path, sizeof pa.path, "/events?after=%lld&wait=8s",
                 (long long)api_int(page, "head"));
        json_decref(page);
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, poll_main, &pa), 0);
        usleep(300 * 1000); /* parked, and b ticked since its last request */
        char email[64], path[64];
        snprintf(email, sizeof email, "ryw%d@x.org", i);
        json_int_t id = api_create_user(&a, "Ryw", email);
        snprintf(path, sizeof path, "/users/%lld", (long long)id);
        char get[128];
        int n = snprintf(get, sizeof get, "GET %s HTTP/1.1\r\nHost: b\r\n\r\n", path);
        h_send(fd, get, (size_t)n);
        size_t len;
        char *resp = h_recv_responses(fd, 1, 5000, &len);
        cr_assert_eq(h_raw_status(resp), 200,
                     "round %d: GET %s on the other instance after its 201: %s", i, path, resp);
        free(resp);
        pthread_join(th, NULL);
        cr_assert_eq(pa.r.status, 200, "%ld %s", pa.r.status, pa.r.body);
        h_resp_free(&pa.r);
    }
    close(fd);
    api_stop_clean(&a);
    api_stop_clean(&b);
}

Test(events, a_wait_that_ends_and_a_cursor_past_the_end_answer_empty)
{
    h_proc_t u;
    h_start(&u, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
    api_create_user(&u, "One", "one@x.org");
    json_t *j = events_page(&u, "/events?after=1&wait=300ms");
    cr_assert_eq(json_array_size(json_object_get(j, "events")), 0);
    cr_assert_eq(api_int(j, "last"), 1);
    cr_assert_eq(api_int(j, "head"), 1);
    json_decref(j);
    /* past the head: at once (a 60 s wait would outlast the client's 10 s timeout), with
     * the head, so the client sees its cursor belongs to another feed */
    j = events_page(&u, "/events?after=50&wait=60s");
    cr_assert_eq(json_array_size(json_object_get(j, "events")), 0);
    cr_assert_eq(api_int(j, "last"), 50);
    cr_assert_eq(api_int(j, "head"), 1);
    json_decref(j);
    /* a wait beyond the cap is capped, not refused: with an event there it answers now */
    j = events_page(&u, "/events?after=0&wait=1h");
    cr_assert_eq(json_array_size(json_object_get(j, "events")), 1);
    json_decref(j);
    api_stop_clean(&u);
}

/* POST /users with an Idempotency-Key; returns the response (caller frees). */
static h_resp_t post_keyed(const h_proc_t *p, const char *key, const char *body)
{
    char hdr[96];
    snprintf(hdr, sizeof hdr, "Idempotency-Key: %s", key);
    return api_send(p, "POST", "/users", body, hdr, NULL);
}

Test(events, retention_prunes_old_events_and_keys_and_keeps_new_ones)
{
    h_proc_t u;
    h_start(&u, "users", "--db", "{dir}/users.db", "--event-retention", "2s", "--key-retention",
            "2s", "--access-log", "off", NULL);
    static const char body[] = "{\"name\":\"Old\",\"email\":\"old@x.org\"}";
    h_resp_t r = post_keyed(&u, "k-old", body);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    json_t *first = h_json(&r);
    h_resp_free(&r);
    char path[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)api_int(first, "id"));
    json_decref(first);
    r = api_send(&u, "DELETE", path, NULL, NULL); /* event 2, and the email is free again */
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    /* within the retention the key replays */
    r = post_keyed(&u, "k-old", body);
    char replayed[16] = "";
    h_header(&r, "Idempotent-Replayed", replayed, sizeof replayed);
    cr_assert_str_eq(replayed, "true", "a fresh key did not replay: %ld %s", r.status, r.body);
    h_resp_free(&r);

    /* past it event 1 goes (bounded: 2 s of retention plus a 1 s tick, given 15 s) */
    json_int_t oldest = 1;
    for (int i = 0; i < 150 && oldest == 1; i++) {
        usleep(100 * 1000);
        json_t *j = events_page(&u, "/events");
        json_t *ev = json_object_get(j, "events");
        oldest = json_array_size(ev) ? api_int(json_array_get(ev, 0), "id") : 0;
        json_decref(j);
    }
    cr_assert_eq(oldest, 2, "event 1 was not pruned, or the newest went too");
    usleep(1500 * 1000); /* the key, stamped just after its event, in the next tick at most */
    r = post_keyed(&u, "k-old", body);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    cr_assert_neq(h_header(&r, "Idempotent-Replayed", replayed, sizeof replayed), 0,
                  "a key past its retention still replays");
    h_resp_free(&r);

    /* new ones stay: the new user's event follows on (ids go on from the kept newest),
     * a new key replays */
    json_t *j = events_page(&u, "/events?after=2");
    cr_assert_eq(json_array_size(json_object_get(j, "events")), 1, "%s", json_dumps(j, 0));
    cr_assert_eq(api_int(json_array_get(json_object_get(j, "events"), 0), "id"), 3);
    json_decref(j);
    static const char body2[] = "{\"name\":\"New\",\"email\":\"new@x.org\"}";
    r = post_keyed(&u, "k-new", body2);
    cr_assert_eq(r.status, 201);
    h_resp_free(&r);
    r = post_keyed(&u, "k-new", body2);
    replayed[0] = '\0';
    h_header(&r, "Idempotent-Replayed", replayed, sizeof replayed);
    cr_assert_str_eq(replayed, "true", "a new key was pruned: %ld %s", r.status, r.body);
    h_resp_free(&r);
    api_stop_clean(&u);
}
