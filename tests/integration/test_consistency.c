/* tests/integration/test_consistency.c: users and orders kept consistent through the users
 * feed, with the faults injected for real: orders SIGKILLed while users are deleted under
 * load (every open order of every deleted user ends cancelled, exactly once), users
 * SIGKILLed while a reader follows its feed (no event lost, repeated or out of order),
 * users down (known users still accepted, unseen ones 503), and a delete that lands while
 * an order's user check is in flight (a scripted, slow users service). */
#include "api_util.h"
#include "h_util.h"
#include "harness.h"
#include "scripted_upstream.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#define CATCH_UP_MS 20000 /* the stated bound: orders applies the users feed within it */

static void start_users(h_proc_t *u)
{
    h_start(u, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
}

static void start_orders(h_proc_t *o, const char *users_url)
{
    h_start(o, "orders", "--db", "{dir}/orders.db", "--users-url", users_url, "--access-log", "off",
            NULL);
}

static json_int_t feed_head(const h_proc_t *p)
{
    json_t *j = api_get(p, "/events?after=0&limit=1", 200);
    json_int_t head = api_int(j, "head");
    json_decref(j);
    return head;
}

/* Waits (up to CATCH_UP_MS) until orders' cursor reached the users feed's head; returns
 * /orders/consistency then (new reference). */
static json_t *caught_up(const h_proc_t *orders, const h_proc_t *users)
{
    json_int_t head = feed_head(users);
    json_t *c = NULL;
    for (int i = 0; i < CATCH_UP_MS / 50; i++) {
        json_decref(c);
        c = api_get(orders, "/orders/consistency", 200);
        if (api_int(c, "cursor") >= head && api_int(c, "lag") == 0)
            return c;
        usleep(50 * 1000);
    }
    cr_assert_fail("orders did not apply the users feed up to %lld within %d ms: %s",
                   (long long)head, CATCH_UP_MS, json_dumps(c, 0));
    return c;
}

static json_int_t create_order(const h_proc_t *o, json_int_t uid, const char *status)
{
    char body[96];
    snprintf(body, sizeof body, "{\"userId\":%lld,\"status\":\"%s\"}", (long long)uid, status);
    h_resp_t r = api_send(o, "POST", "/orders", body, NULL);
    cr_assert_eq(r.status, 201, "POST /orders %s: %ld %s", body, r.status, r.body);
    json_t *j = h_json(&r);
    json_int_t id = api_int(j, "id");
    json_decref(j);
    h_resp_free(&r);
    return id;
}

static json_t *get_order(const h_proc_t *o, json_int_t id)
{
    char path[64];
    snprintf(path, sizeof path, "/orders/%lld", (long long)id);
    return api_get(o, path, 200);
}

static void delete_user(const h_proc_t *u, json_int_t uid)
{
    char path[64];
    snprintf(path, sizeof path, "/users/%lld", (long long)uid);
    h_resp_t r = api_send(u, "DELETE", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "DELETE %s: %ld %s", path, r.status, r.body);
    h_resp_free(&r);
}

/* ------------------------------------------------------------------------- */

Test(consistency, deleting_a_user_cancels_open_orders_and_refuses_new_ones)
{
    h_proc_t u, o;
    start_users(&u);
    start_orders(&o, u.url);
    json_int_t uid = api_create_user(&u, "Gone", "gone@x.org");
    json_int_t other = api_create_user(&u, "Stays", "stays@x.org");
    static const char *const st[] = {"pending", "paid", "shipped", "completed", "cancelled"};
    json_int_t ids[5];
    for (int i = 0; i < 5; i++)
        ids[i] = create_order(&o, uid, st[i]);
    json_int_t kept = create_order(&o, other, "pending");
    delete_user(&u, uid);
    json_t *c = caught_up(&o, &u);
    cr_assert_eq(api_int(c, "openOrdersOfGoneUsers"), 0, "%s", json_dumps(c, 0));
    json_decref(c);
    static const char *const want[] = {"cancelled", "cancelled", "shipped", "completed",
                                       "cancelled"};
    for (int i = 0; i < 5; i++) {
        json_t *j = get_order(&o, ids[i]);
        cr_assert_str_eq(api_str(j, "status"), want[i], "order %d was %s", i, st[i]);
        cr_assert(json_is_true(json_object_get(j, "userGone")), "order %d: userGone not true", i);
        json_decref(j);
    }
    json_t *j = get_order(&o, kept);
    cr_assert_str_eq(api_str(j, "status"), "pending");
    cr_assert(json_is_false(json_object_get(j, "userGone")));
    json_decref(j);
    /* one order.status_changed per cancelled order, none for the others */
    json_t *ev = api_all_events(&o);
    int changed[5] = {0};
    size_t i;
    json_t *e;
    json_array_foreach(ev, i, e)
    {
        if (strcmp(api_str(e, "type"), "order.status_changed") != 0)
            continue;
        for (int k = 0; k < 5; k++)
            changed[k] += api_int(json_object_get(e, "data"), "id") == ids[k];
    }
    json_decref(ev);
    static const int nchanged[] = {1, 1, 0, 0, 0};
    for (int k = 0; k < 5; k++)
        cr_assert_eq(changed[k], nchanged[k], "order %d (%s): %d status changes", k, st[k],
                     changed[k]);
    /* a new order for the deleted user: 422, and nothing stored */
    char body[64];
    snprintf(body, sizeof body, "{\"userId\":%lld}", (long long)uid);
    json_t *before = api_snapshot(&o, "/orders");
    api_expect_error(api_send(&o, "POST", "/orders", body, NULL), 422, "userId");
    /* nor can an order be moved to them */
    char path[64];
    snprintf(path, sizeof path, "/orders/%lld", (long long)kept);
    api_expect_error(api_send(&o, "PUT", path, body, NULL), 422, "userId");
    api_assert_unchanged(&o, "/orders", before);
    api_stop_clean(&o);
    api_stop_clean(&u);
}

Test(consistency, users_down_known_users_are_accepted_and_unseen_ones_get_503)
{
    h_proc_t u, o;
    start_users(&u);
    start_orders(&o, u.url);
    json_int_t uid = api_create_user(&u, "Known", "known@x.org");
    json_decref(caught_up(&o, &u));
    h_kill9(&u);
    json_int_t id = create_order(&o, uid, "pending");
    cr_assert_gt(id, 0);
    char body[64];
    snprintf(body, sizeof body, "{\"userId\":%lld}", (long long)uid + 100); /* never seen */
    json_t *before = api_snapshot(&o, "/orders");
    h_resp_t r = api_send(&o, "POST", "/orders", body, NULL);
    api_assert_error(&r, 503, NULL);
    char ra[16];
    cr_assert_eq(h_header(&r, "Retry-After", ra, sizeof ra), 0, "503 without Retry-After");
    h_resp_free(&r);
    api_assert_unchanged(&o, "/orders", before);
    api_stop_clean(&o);
}

/* The race: the order's user check is in flight (the scripted users service answers
 * "user 5 exists" after 4 s) when the users feed delivers user 5's delete. The write must
 * see the delete: 422, nothing stored. (Before the local re-check inside the write unit,
 * the slow "exists" let the order through.) */
typedef struct race {
    h_resp_t r;
    h_proc_t o;
    atomic_int done;
} race_t;

static void *race_post(void *arg)
{
    race_t *x = arg;
    x->r = api_send(&x->o, "POST", "/orders", "{\"userId\":5}", NULL);
    atomic_store(&x->done, 1);
    return NULL;
}

static int check_in_flight(us_scripted_t *s)
{
    for (int i = us_count(s) - 1; i >= 0; i--) {
        us_request_t q;
        if (us_request(s, i, &q) < 0)
            continue;
        int hit = strncmp(q.head, "GET /users/5 ", 13) == 0;
        us_request_free(&q);
        if (hit)
            return 1;
    }
    return 0;
}

Test(consistency, a_delete_that_lands_while_the_user_check_is_in_flight_refuses_the_order)
{
    us_scripted_t *s = us_start();
    us_set_reply(s, &(us_reply_t){.status = 200,
                                  .headers = "Content-Type: application/json\r\n",
                                  .body = "{\"id\":5,\"name\":\"Five\",\"email\":\"5@x.org\","
                                          "\"createdAt\":\"2026-12-01T00:00:00.000Z\","
                                          "\"updatedAt\":\"2026-12-01T00:00:00.000Z\"}",
                                  .delay_ms = 4000});
    /* the feed: nothing yet (slowly, as a parked long-poll would) */
    us_set_path_reply(s, "/events",
                      &(us_reply_t){.status = 200,
                                    .headers = "Content-Type: application/json\r\n",
                                    .body = "{\"events\":[],\"last\":0,\"head\":0}",
                                    .delay_ms = 100});
    static race_t x;
    memset(&x, 0, sizeof x);
    h_start(&x.o, "orders", "--db", "{dir}/orders.db", "--users-url", us_url(s), "--users-timeout",
            "8s", "--access-log", "off", NULL);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, race_post, &x), 0);
    for (int i = 0; i < 200 && !check_in_flight(s); i++)
        usleep(20 * 1000);
    cr_assert(check_in_flight(s), "the user check never reached the users service");
    /* now user 5 is deleted: the feed says so */
    us_set_path_reply(
        s, "/events",
        &(us_reply_t){.status = 200,
                      .headers = "Content-Type: application/json\r\n",
                      .body = "{\"events\":[{\"id\":1,\"type\":\"user.deleted\",\"time\":"
                              "\"2026-12-01T00:00:01.000Z\",\"data\":{\"id\":5}}],\"last\":1,"
                              "\"head\":1}",
                      .delay_ms = 100});
    json_int_t cursor = 0;
    for (int i = 0; i < 100 && cursor < 1; i++) {
        json_t *c = api_get(&x.o, "/orders/consistency", 200);
        cursor = api_int(c, "cursor");
        json_decref(c);
        if (cursor < 1)
            usleep(20 * 1000);
    }
    if (cursor != 1) {
        char *log = h_read_file(x.o.log, NULL);
        for (int i = 0; i < us_count(s); i++) {
            us_request_t q;
            if (us_request(s, i, &q) == 0)
                cr_log_info("request %d: %.80s", i, q.head);
            us_request_free(&q);
        }
        cr_assert_fail("the delete was not applied; orders log:\n%s", log);
    }
    cr_assert(!atomic_load(&x.done), "the user check answered before the delete was applied; "
                                     "the race was not set up (machine too slow?)");
    pthread_join(th, NULL);
    api_assert_error(&x.r, 422, "userId");
    h_resp_free(&x.r);
    json_t *all = api_get(&x.o, "/orders", 200);
    cr_assert_eq(json_array_size(all), 0, "an order for the deleted user was stored");
    json_decref(all);
    api_stop_clean(&x.o);
    us_stop(s);
}

/* ------------------------------------------------------------------------- */
/* kill -9 orders while users are deleted under load                          */

#define NUSERS   24
#define NDELETED 16

typedef struct deleter {
    const h_proc_t *users;
    const json_int_t *uids;
    atomic_int deleted;
} deleter_t;

static void *delete_main(void *arg)
{
    deleter_t *d = arg;
    for (int i = 0; i < NDELETED; i++) {
        delete_user(d->users, d->uids[i]);
        atomic_fetch_add(&d->deleted, 1);
        usleep(20 * 1000);
    }
    return NULL;
}

typedef struct orderer {
    const h_proc_t *orders;
    const json_int_t *uids;
    atomic_int stop;
} orderer_t;

/* Load on orders meanwhile: creates for every user (they fail while orders is down). */
static void *order_main(void *arg)
{
    orderer_t *w = arg;
    for (int i = 0; i < 100000 && !atomic_load(&w->stop); i++) {
        char body[64];
        snprintf(body, sizeof body, "{\"userId\":%lld}", (long long)w->uids[i % NUSERS]);
        h_resp_t r = api_send(w->orders, "POST", "/orders", body, NULL);
        if (r.status == 0)
            usleep(20 * 1000);
        h_resp_free(&r);
    }
    return NULL;
}

Test(consistency, orders_killed_while_users_are_deleted_cancels_every_open_order_once,
     .timeout = 120)
{
    h_proc_t u, o;
    start_users(&u);
    start_orders(&o, u.url);
    json_int_t uids[NUSERS];
    for (int i = 0; i < NUSERS; i++) {
        char name[32], email[48];
        snprintf(name, sizeof name, "U%d", i);
        snprintf(email, sizeof email, "u%d@x.org", i);
        uids[i] = api_create_user(&u, name, email);
        create_order(&o, uids[i], "pending");
        create_order(&o, uids[i], "paid");
        create_order(&o, uids[i], "shipped");
    }
    json_decref(caught_up(&o, &u));

    static deleter_t d;
    static orderer_t w;
    d = (deleter_t){.users = &u, .uids = uids};
    w = (orderer_t){.orders = &o, .uids = uids};
    pthread_t td, tw;
    cr_assert_eq(pthread_create(&tw, NULL, order_main, &w), 0);
    cr_assert_eq(pthread_create(&td, NULL, delete_main, &d), 0);
    for (int i = 0; i < 500 && atomic_load(&d.deleted) < NDELETED / 3; i++)
        usleep(10 * 1000);
    h_kill9(&o); /* mid-stream: some deletes applied, some not yet */
    usleep(200 * 1000);
    h_restart(&o, "orders", "--db", "{dir}/orders.db", "--users-url", u.url, "--access-log", "off",
              NULL);
    pthread_join(td, NULL);
    atomic_store(&w.stop, 1);
    pthread_join(tw, NULL);

    json_t *c = caught_up(&o, &u);
    cr_assert_eq(api_int(c, "openOrdersOfGoneUsers"), 0, "%s", json_dumps(c, 0));
    json_decref(c);
    /* every order: open only if its user stays; each cancellation exactly once */
    json_t *orders = api_all_items(&o, "/orders");
    json_t *ev = api_all_events(&o);
    size_t nord = json_array_size(orders);
    int *changes = calloc(nord + 1, sizeof *changes);
    json_int_t *id_at = calloc(nord + 1, sizeof *id_at);
    size_t i;
    json_t *e;
    json_array_foreach(orders, i, e) id_at[i] = api_int(e, "id");
    json_array_foreach(ev, i, e)
    {
        if (strcmp(api_str(e, "type"), "order.status_changed") != 0)
            continue;
        json_int_t oid = api_int(json_object_get(e, "data"), "id");
        for (size_t k = 0; k < nord; k++)
            changes[k] += id_at[k] == oid;
    }
    int cancelled = 0;
    json_array_foreach(orders, i, e)
    {
        json_int_t uid = api_int(e, "userId");
        int gone = 0;
        for (int k = 0; k < NDELETED; k++)
            gone |= uids[k] == uid;
        const char *status = api_str(e, "status");
        cr_assert_eq(json_is_true(json_object_get(e, "userGone")), gone, "order %lld",
                     (long long)id_at[i]);
        if (!gone) {
            cr_assert(strcmp(status, "cancelled") != 0, "order %lld of a kept user cancelled",
                      (long long)id_at[i]);
            cr_assert_eq(changes[i], 0);
            continue;
        }
        if (strcmp(status, "shipped") == 0) {
            cr_assert_eq(changes[i], 0, "shipped order %lld changed", (long long)id_at[i]);
            continue;
        }
        cr_assert_str_eq(status, "cancelled", "order %lld of deleted user %lld is %s",
                         (long long)id_at[i], (long long)uid, status);
        cr_assert_eq(changes[i], 1, "order %lld cancelled %d times", (long long)id_at[i],
                     changes[i]);
        cancelled++;
    }
    cr_log_info("%zu orders, %d cancelled for %d deleted users", nord, cancelled, NDELETED);
    cr_assert_geq(cancelled, 2 * NDELETED);
    free(changes);
    free(id_at);
    json_decref(ev);
    json_decref(orders);
    api_stop_clean(&o);
    api_stop_clean(&u);
}

/* ------------------------------------------------------------------------- */
/* kill -9 users mid-stream                                                   */

typedef struct writer {
    const h_proc_t *users;
    atomic_int acked, stop;
    json_int_t acks[4000];
} writer_t;

static void *write_main(void *arg)
{
    writer_t *w = arg;
    for (int i = 0; i < 4000 && !atomic_load(&w->stop); i++) {
        char body[96];
        snprintf(body, sizeof body, "{\"name\":\"W%d\",\"email\":\"w%d@x.org\"}", i, i);
        h_resp_t r = api_send(w->users, "POST", "/users", body, NULL);
        if (r.status == 201) {
            json_t *j = h_json(&r);
            w->acks[atomic_load(&w->acked)] = api_int(j, "id");
            atomic_fetch_add(&w->acked, 1);
            json_decref(j);
        } else if (r.status == 0) {
            usleep(20 * 1000); /* down: try the next one later */
        }
        h_resp_free(&r);
    }
    return NULL;
}

typedef struct reader {
    const h_proc_t *users;
    atomic_int stop;
    json_t *seen; /* every event read, in order */
} reader_t;

static void *read_main(void *arg)
{
    reader_t *r = arg;
    json_int_t after = 0;
    while (!atomic_load(&r->stop))
        if (api_feed_poll(r->users, &after, r->seen) < 0)
            usleep(50 * 1000); /* down */
    return NULL;
}

Test(consistency, users_killed_mid_stream_loses_repeats_and_reorders_no_event, .timeout = 120)
{
    h_proc_t u;
    start_users(&u);
    static writer_t w;
    static reader_t r;
    memset(&w, 0, sizeof w);
    w.users = &u;
    r = (reader_t){.users = &u, .seen = json_array()};
    pthread_t tw, tr;
    cr_assert_eq(pthread_create(&tr, NULL, read_main, &r), 0);
    cr_assert_eq(pthread_create(&tw, NULL, write_main, &w), 0);
    for (int i = 0; i < 1000 && atomic_load(&w.acked) < 100; i++)
        usleep(10 * 1000);
    h_kill9(&u);
    usleep(200 * 1000);
    h_restart(&u, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
    int before = atomic_load(&w.acked);
    for (int i = 0; i < 1000 && atomic_load(&w.acked) < before + 100; i++)
        usleep(10 * 1000);
    atomic_store(&w.stop, 1);
    pthread_join(tw, NULL);
    /* the reader catches up with the head, then stops */
    json_int_t head = feed_head(&u);
    for (int i = 0; i < 400; i++) {
        size_t n = json_array_size(r.seen);
        if (n && api_int(json_array_get(r.seen, n - 1), "id") >= head)
            break;
        usleep(50 * 1000);
    }
    atomic_store(&r.stop, 1);
    pthread_join(tr, NULL);

    int acked = atomic_load(&w.acked);
    cr_assert_gt(acked, before, "no create was acknowledged after the restart");
    /* the events: 1..head, each once, in order; each a user.created of the next user */
    size_t n = json_array_size(r.seen);
    cr_assert_eq((json_int_t)n, head, "read %zu events, the feed has %lld", n, (long long)head);
    json_t *users = api_all_items(&u, "/users"); /* every committed user */
    cr_assert_eq(json_array_size(users), n, "%zu users but %zu events", json_array_size(users), n);
    size_t i;
    json_t *e;
    json_array_foreach(r.seen, i, e)
    {
        cr_assert_eq(api_int(e, "id"), (json_int_t)i + 1, "event %zu has id %lld", i,
                     (long long)api_int(e, "id"));
        cr_assert_str_eq(api_str(e, "type"), "user.created");
        cr_assert(json_equal(json_object_get(e, "data"), json_array_get(users, i)),
                  "event %zu is not the committed user %zu", i, i);
    }
    /* every acknowledged create has its event */
    for (int k = 0; k < acked; k++) {
        int found = 0;
        json_array_foreach(r.seen, i, e) found |=
            api_int(json_object_get(e, "data"), "id") == w.acks[k];
        cr_assert(found, "acknowledged user %lld has no event", (long long)w.acks[k]);
    }
    cr_log_info("%d acknowledged creates, %zu events read across the kill", acked, n);
    json_decref(users);
    json_decref(r.seen);
    api_stop_clean(&u);
}

typedef struct hammer {
    int port;
    atomic_int *stop;
    int answers, bad; /* bad: an answer that was not 404, or none */
} hammer_t;

/* GETs of an order that does not exist on one kept-alive connection until *stop. */
static void *hammer_main(void *arg)
{
    hammer_t *h = arg;
    int fd = h_connect(h->port);
    static const char get[] = "GET /orders/999999 HTTP/1.1\r\nHost: o\r\n\r\n";
    while (!atomic_load(h->stop)) {
        h_send(fd, get, sizeof get - 1);
        size_t len;
        char *resp = h_recv_responses(fd, 1, 5000, &len);
        if (h_raw_status(resp) == 404)
            h->answers++;
        else
            h->bad++;
        free(resp);
        if (h->bad)
            break;
    }
    close(fd);
    return NULL;
}

/* orders applies each users feed page as a unit of its own (held until the commit, with
 * no request); a GET read later in the same loop iteration looked for its connection's
 * held write among them and crashed on the request-less one. */
Test(consistency, reads_while_the_feed_is_applied_are_answered)
{
    h_proc_t u, o;
    start_users(&u);
    start_orders(&o, u.url);
    atomic_int stop = 0;
    hammer_t h[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        h[i] = (hammer_t){.port = o.port, .stop = &stop};
        cr_assert_eq(pthread_create(&th[i], NULL, hammer_main, &h[i]), 0);
    }
    for (int i = 0; i < 150; i++) {
        char email[64];
        snprintf(email, sizeof email, "feed%d@x.org", i);
        api_create_user(&u, "Feed", email);
    }
    json_decref(caught_up(&o, &u));
    atomic_store(&stop, 1);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(h[i].bad, 0, "reader %d: an answer was not 404 (after %d that were)", i,
                     h[i].answers);
    }
    api_stop_clean(&o);
    api_stop_clean(&u);
}
