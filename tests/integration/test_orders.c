/* tests/integration/test_orders.c: the orders REST API against real `cmesh orders` and
 * `cmesh users` processes: user checks (404 → 422, down or silent → 503 and nothing
 * stored), the status state machine, filters, Idempotency-Key and deletes. */
#include "api_util.h"
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

/* A users service with one user, and orders pointing at it. */
typedef struct env {
    h_proc_t users, orders;
    json_int_t uid; /* an existing user */
} env_t;

static void start_orders(h_proc_t *o, const char *users_url, const char *timeout)
{
    h_start(o, "orders", "--db", "{dir}/orders.db", "--users-url", users_url, "--users-timeout",
            timeout, "--access-log", "off", NULL);
}

static void start_env(env_t *e)
{
    h_start(&e->users, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
    e->uid = api_create_user(&e->users, "Buyer", "buyer@x.org");
    start_orders(&e->orders, e->users.url, "2s");
}

/* POST /orders body; asserts 201 and returns the item (new reference). */
static json_t *create_order(const h_proc_t *o, const char *body)
{
    h_resp_t r = api_send(o, "POST", "/orders", body, NULL);
    cr_assert_eq(r.status, 201, "POST /orders %s: %ld %s", body, r.status, r.body);
    json_t *j = h_json(&r);
    h_resp_free(&r);
    return j;
}

static json_int_t create_order_for(const h_proc_t *o, json_int_t uid, const char *status)
{
    char body[128];
    if (status)
        snprintf(body, sizeof body, "{\"userId\":%lld,\"status\":\"%s\"}", (long long)uid, status);
    else
        snprintf(body, sizeof body, "{\"userId\":%lld}", (long long)uid);
    json_t *j = create_order(o, body);
    json_int_t id = api_int(j, "id");
    json_decref(j);
    return id;
}

/* POSTs body to /orders, asserts the error and that /orders did not change. */
static void post_refused(const h_proc_t *o, const char *body, long status, const char *field)
{
    json_t *before = api_snapshot(o, "/orders");
    h_resp_t r = api_send(o, "POST", "/orders", body, NULL);
    cr_assert_eq(r.status, status, "POST /orders %s: expected %ld, got %ld %s", body, status,
                 r.status, r.body);
    api_expect_error(r, status, field);
    api_assert_unchanged(o, "/orders", before);
}

/* PUT {"status":to} on order id; asserts 200 and the new status. */
static void move(const h_proc_t *o, json_int_t id, const char *to)
{
    char path[64], body[64];
    snprintf(path, sizeof path, "/orders/%lld", (long long)id);
    snprintf(body, sizeof body, "{\"status\":\"%s\"}", to);
    h_resp_t r = api_send(o, "PUT", path, body, NULL);
    cr_assert_eq(r.status, 200, "PUT %s %s: %ld %s", path, body, r.status, r.body);
    json_t *j = h_json(&r);
    cr_assert_str_eq(api_str(j, "status"), to);
    json_decref(j);
    h_resp_free(&r);
    json_t *g = api_get(o, path, 200);
    cr_assert_str_eq(api_str(g, "status"), to, "stored status is not %s", to);
    json_decref(g);
}

/* PUT {"status":to} must be refused with 409 {error, from, to}, the order unchanged. */
static void move_refused(const h_proc_t *o, json_int_t id, const char *from, const char *to)
{
    char path[64], body[64];
    snprintf(path, sizeof path, "/orders/%lld", (long long)id);
    snprintf(body, sizeof body, "{\"status\":\"%s\"}", to);
    json_t *before = api_snapshot(o, "/orders");
    h_resp_t r = api_send(o, "PUT", path, body, NULL);
    api_assert_error(&r, 409, NULL);
    json_t *j = h_json(&r);
    cr_assert_str_eq(api_str(j, "from"), from, "409 body %s", r.body);
    cr_assert_str_eq(api_str(j, "to"), to, "409 body %s", r.body);
    char want[128];
    snprintf(want, sizeof want, "cannot change status from %s to %s", from, to);
    cr_assert_str_eq(api_str(j, "error"), want);
    json_decref(j);
    h_resp_free(&r);
    api_assert_unchanged(o, "/orders", before);
    json_t *g = api_get(o, path, 200);
    cr_assert_str_eq(api_str(g, "status"), from);
    json_decref(g);
}

/* A loopback socket that accepts connections (the kernel completes them from the
 * backlog) but never reads or answers: a users service that hangs. */
static int silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    cr_assert(listen(fd, 64) == 0);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return fd;
}

/* ------------------------------------------------------------------------- */
/* create and the user check                                                  */

Test(orders, create_for_existing_user_returns_201_pending_with_location_and_etag)
{
    env_t e;
    start_env(&e);
    char body[64];
    snprintf(body, sizeof body, "{\"userId\":%lld}", (long long)e.uid);
    h_resp_t r = api_send(&e.orders, "POST", "/orders", body, NULL);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    json_t *j = h_json(&r);
    cr_assert_eq(json_object_size(j), 6, "item has extra or missing keys: %s", r.body);
    cr_assert(json_is_false(json_object_get(j, "userGone")), "%s", r.body);
    json_int_t id = api_int(j, "id");
    cr_assert_gt(id, 0);
    cr_assert_eq(api_int(j, "userId"), e.uid);
    cr_assert_str_eq(api_str(j, "status"), "pending");
    cr_assert(api_is_timestamp(api_str(j, "createdAt")), "%s", api_str(j, "createdAt"));
    cr_assert(api_is_timestamp(api_str(j, "updatedAt")), "%s", api_str(j, "updatedAt"));
    char loc[128], want[64], etag[64];
    snprintf(want, sizeof want, "/orders/%lld", (long long)id);
    cr_assert_eq(h_header(&r, "Location", loc, sizeof loc), 0);
    cr_assert_str_eq(loc, want);
    cr_assert_eq(h_header(&r, "ETag", etag, sizeof etag), 0);
    cr_assert(api_is_etag(etag), "%s", etag);
    json_t *g = api_get(&e.orders, loc, 200);
    cr_assert(json_equal(g, j));
    json_decref(g);
    json_decref(j);
    h_resp_free(&r);
    json_t *l = api_snapshot(&e.orders, "/orders");
    cr_assert_eq(json_array_size(l), 1);
    json_decref(l);
    api_stop_clean(&e.orders);
    api_stop_clean(&e.users);
}

Test(orders, create_accepts_any_valid_status)
{
    env_t e;
    start_env(&e);
    static const char *const st[] = {"pending", "paid", "shipped", "completed", "cancelled"};
    for (int i = 0; i < 5; i++) {
        json_int_t id = create_order_for(&e.orders, e.uid, st[i]);
        char path[64];
        snprintf(path, sizeof path, "/orders/%lld", (long long)id);
        json_t *g = api_get(&e.orders, path, 200);
        cr_assert_str_eq(api_str(g, "status"), st[i]);
        json_decref(g);
    }
    api_stop_clean(&e.orders);
    api_stop_clean(&e.users);
}

Test(orders, create_for_unknown_user_returns_422_userid_and_stores_nothing)
{
    env_t e;
    start_env(&e);
    create_order_for(&e.orders, e.uid, NULL);
    char body[64];
    snprintf(body, sizeof body, "{\"userId\":%lld}", (long long)e.uid + 1000);
    post_refused(&e.orders, body, 422, "userId");
    api_stop_clean(&e.orders);
    api_stop_clean(&e.users);
}

/* A user the users feed never told of must be asked; with users down it cannot be (a
 * known user is accepted then: test_consistency). */
Test(orders, create_with_users_service_stopped_returns_503_retry_after_and_stores_nothing)
{
    env_t e;
    start_env(&e);
    create_order_for(&e.orders, e.uid, NULL);
    cr_assert_eq(h_stop(&e.users), 0);
    json_t *before = api_snapshot(&e.orders, "/orders");
    char body[64];
    snprintf(body, sizeof body, "{\"userId\":%lld}", (long long)e.uid + 1000); /* unseen */
    h_resp_t r = api_send(&e.orders, "POST", "/orders", body, NULL);
    api_assert_error(&r, 503, NULL);
    char ra[32];
    cr_assert_eq(h_header(&r, "Retry-After", ra, sizeof ra), 0, "503 without Retry-After");
    cr_assert_str_eq(ra, "1");
    h_resp_free(&r);
    api_assert_unchanged(&e.orders, "/orders", before);
    /* a userId change cannot be checked either */
    json_t *l = api_snapshot(&e.orders, "/orders");
    json_int_t id = api_int(json_array_get(l, 0), "id");
    json_decref(l);
    char path[64];
    snprintf(path, sizeof path, "/orders/%lld", (long long)id);
    before = api_snapshot(&e.orders, "/orders");
    api_expect_error(api_send(&e.orders, "PUT", path, body, NULL), 503, NULL);
    api_assert_unchanged(&e.orders, "/orders", before);
    api_stop_clean(&e.orders);
    api_stop_clean(&e.users);
}

Test(orders, create_with_users_service_that_never_answers_returns_503_after_timeout)
{
    h_proc_t o;
    int port;
    int fd = silent_listener(&port);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    start_orders(&o, url, "300ms");
    json_t *before = api_snapshot(&o, "/orders");
    h_resp_t r = api_send(&o, "POST", "/orders", "{\"userId\":1}", NULL);
    api_assert_error(&r, 503, NULL);
    char ra[32];
    cr_assert_eq(h_header(&r, "Retry-After", ra, sizeof ra), 0, "503 without Retry-After");
    h_resp_free(&r);
    api_assert_unchanged(&o, "/orders", before);
    close(fd);
    api_stop_clean(&o);
}

/* A users service that answers every request with 500, until its socket is shut down. */
static void *answer_500(void *arg)
{
    int lfd = *(int *)arg;
    static const char resp[] = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: "
                               "application/json\r\nContent-Length: 17\r\nConnection: "
                               "close\r\n\r\n{\"error\":\"boom\"}";
    for (;;) {
        int c = accept(lfd, NULL, NULL);
        if (c < 0)
            return NULL;
        char buf[4096];
        if (recv(c, buf, sizeof buf, 0) > 0)
            h_send(c, resp, sizeof resp - 1);
        close(c);
    }
}

Test(orders, create_when_users_service_answers_5xx_returns_503_and_stores_nothing)
{
    h_proc_t o;
    int port;
    int fd = silent_listener(&port);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, answer_500, &fd), 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    start_orders(&o, url, "2s");
    json_t *before = api_snapshot(&o, "/orders");
    h_resp_t r = api_send(&o, "POST", "/orders", "{\"userId\":1}", NULL);
    api_assert_error(&r, 503, NULL);
    char ra[32];
    cr_assert_eq(h_header(&r, "Retry-After", ra, sizeof ra), 0, "503 without Retry-After");
    h_resp_free(&r);
    api_assert_unchanged(&o, "/orders", before);
    api_stop_clean(&o);
    shutdown(fd, SHUT_RDWR);
    pthread_join(th, NULL);
    close(fd);
}

/* One client of the race below: waits at the barrier, then sends the same keyed create. */
typedef struct racer {
    const h_proc_t *p;
    const char *body;
    pthread_barrier_t *go;
    h_resp_t r;
} racer_t;

static void *race(void *arg)
{
    racer_t *x = arg;
    pthread_barrier_wait(x->go);
    x->r = api_send(x->p, "POST", "/orders", x->body, "Idempotency-Key: order-race", NULL);
    return NULL;
}

Test(orders, concurrent_repeats_of_one_idempotency_key_create_one_order)
{
    h_proc_t u, o;
    h_start(&u, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
    json_int_t uid = api_create_user(&u, "Buyer", "buyer@x.org");
    h_start(&o, "orders", "--db", "{dir}/orders.db", "--users-url", u.url, "--workers", "2",
            "--access-log", "off", NULL);
    char body[64];
    snprintf(body, sizeof body, "{\"userId\":%lld}", (long long)uid);
    enum { N = 6 };
    racer_t x[N];
    pthread_t th[N];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, N);
    for (int i = 0; i < N; i++) {
        x[i] = (racer_t){.p = &o, .body = body, .go = &go};
        cr_assert_eq(pthread_create(&th[i], NULL, race, &x[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    int fresh = 0;
    for (int i = 0; i < N; i++) {
        char rep[16];
        cr_assert_eq(x[i].r.status, 201, "racer %d: %ld %s", i, x[i].r.status, x[i].r.body);
        cr_assert_str_eq(x[i].r.body, x[0].r.body, "racers got different orders");
        if (h_header(&x[i].r, "Idempotent-Replayed", rep, sizeof rep) != 0)
            fresh++;
    }
    for (int i = 0; i < N; i++)
        h_resp_free(&x[i].r);
    cr_assert_eq(fresh, 1, "%d answers were not marked as replays", fresh);
    json_t *l = api_snapshot(&o, "/orders");
    cr_assert_eq(json_array_size(l), 1, "one key made %zu orders", json_array_size(l));
    json_decref(l);
    api_stop_clean(&o);
    api_stop_clean(&u);
}

/* ------------------------------------------------------------------------- */
/* refused bodies                                                             */

Test(orders, bad_userid_unknown_field_or_id_in_body_returns_422_naming_it)
{
    env_t e;
    start_env(&e);
    create_order_for(&e.orders, e.uid, NULL);
    post_refused(&e.orders, "{}", 422, "userId");
    post_refused(&e.orders, "{\"status\":\"paid\"}", 422, "userId");
    post_refused(&e.orders, "{\"userId\":\"1\"}", 422, "userId");
    post_refused(&e.orders, "{\"userId\":0}", 422, "userId");
    post_refused(&e.orders, "{\"userId\":-3}", 422, "userId");
    post_refused(&e.orders, "{\"userId\":1.5}", 422, "userId");
    post_refused(&e.orders, "{\"userId\":null}", 422, "userId");
    char body[96];
    snprintf(body, sizeof body, "{\"userId\":%lld,\"total\":3}", (long long)e.uid);
    post_refused(&e.orders, body, 422, "total");
    snprintf(body, sizeof body, "{\"userId\":%lld,\"id\":9}", (long long)e.uid);
    post_refused(&e.orders, body, 422, "id");
    api_stop_clean(&e.orders);
    api_stop_clean(&e.users);
}

Test(orders, unknown_status_returns_422_on_create_and_update)
{
    env_t e;
    start_env(&e);
    json_int_t id = create_order_for(&e.orders, e.uid, NULL);
    char body[96], path[64];
    static const char *const bad[] = {"\"refunded\"", "\"PAID\"", "\"\"", "3", "null"};
    snprintf(path, sizeof path, "/orders/%lld", (long long)id);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(body, sizeof body, "{\"userId\":%lld,\"status\":%s}", (long long)e.uid, bad[i]);
        post_refused(&e.orders, body, 422, "status");
        snprintf(body, sizeof body, "{\"status\":%s}", bad[i]);
        json_t *before = api_snapshot(&e.orders, "/orders");
        api_expect_error(api_send(&e.orders, "PUT", path, body, NULL), 422, "status");
        api_assert_unchanged(&e.orders, "/orders", before);
    }
    api_stop_clean(&e.orders);
    api_stop_clean(&e.users);
}

Test(orders, malformed_body_returns_400_and_wrong_content_type_415)
{
    env_t e;
    start_env(&e);
    create_order_for(&e.orders, e.uid, NULL);
    post_refused(&e.orders, "{\"userId\":", 400, NULL);
    post_refused(&e.orders, "[1]", 400, NULL);
    post_refused(&e.orders, "", 400, NULL);
    const char *hdrs[] = {"Content-Type: text/plain", NULL};
    json_t *before = api_snapshot(&e.orders, "/orders");
    char body[64];
    snprintf(body, sizeof body, "{\"userId\":%lld}", (long long)e.uid);
    api_expect_error(h_req(&e.orders, "POST", "/orders", body, hdrs), 415, NULL);
    api_expect_error(h_req(&e.orders, "PUT", "/orders/1", "{\"status\":\"paid\"}", hdrs), 415,
                     NULL);
    api_assert_unchanged(&e.orders, "/orders", before);
    api_stop_clean(&e.orders);
    api_stop_clean(&e.users);
}

Test(orders, changing_userid_to_an_unknown_user_returns_422_and_changes_nothing)
{
    env_t e;
    start_env(&e);
    json_int_t other = api_create_user(&e.users, "Other", "other@x.org");
    json_int_t id = create_order_for(&e.orders, e.uid, NULL);
    char path[64], body[64];
    snprintf(path, sizeof path, "/orders/%lld", (long long)id);
    snprintf(body, sizeof body, "{\"userId\":%lld}", (long long)other + 100);
    json_t *before = api_snapshot(&e.orders, "/orders");
    api_expect_error(api_send(&e.orders, "PUT", path, body, NULL), 422, "userId");
    api_assert_unchanged(&e.orders, "/orders", before);
    /* to an existing user it works */
    snprintf(body, sizeof body, "{\"userId\":%lld}", (long long)other);
    h_resp_t r = api_send(&e.orders, "PUT", path, body, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    json_t *j = h_json(&r);
    cr_assert_eq(api_int(j, "userId"), other);
    cr_assert_str_eq(api_str(j, "status"), "pending");
    json_decref(j);
    h_resp_free(&r);
    api_stop_clean(&e.orders);
    api_stop_clean(&e.users);
}

/* ------------------------------------------------------------------------- */
/* the status state machine                                                   */

Test(orders, status_moves_pending_paid_shipped_completed)
{
    env_t e;
    start_env(&e);
    json_int_t id = create_order_for(&e.orders, e.uid, NULL);
    move(&e.orders, id, "paid");
    move(&e.orders, id, "shipped");
    move(&e.orders, id, "completed");
    api_stop_clean(&e.orders);
    api_stop_clean(&e.users);
}

Test(orders, status_moves_pending_or_paid_to_cancelled)
{
    env_t e;
    start_env(&e);
    json_int_t a = create_order_for(&e.orders, e.uid, NULL);
    move(&e.orders, a, "cancelled");
    json_int_t b = create_order_for(&e.orders, e.uid, NULL);
    move(&e.orders, b, "paid");
    move(&e.orders, b, "cancelled");
    api_stop_clean(&e.orders);
    api_stop_clean(&e.users);
}

Test(orders, same_status_is_a_no_op_200)
{
    env_t e;
    start_env(&e);
    json_int_t id = create_order_for(&e.orders, e.uid, NULL);
    move(&e.orders, id, "pending");
    move(&e.orders, id, "paid");
    move(&e.orders, id, "paid");
    json_int_t c = create_order_for(&e.orders, e.uid, "completed");
    move(&e.orders, c, "completed");
    api_stop_clean(&e.orders);
    api_stop_clean(&e.users);
}

Test(orders, invalid_transitions_return_409_with_from_and_to_and_keep_the_status)
{
    env_t e;
    start_env(&e);
    json_int_t a = create_order_for(&e.orders, e.uid, NULL);
    move_refused(&e.orders, a, "pending", "shipped");
    move_refused(&e.orders, a, "pending", "completed");
    json_int_t b = create_order_for(&e.orders, e.uid, NULL);
    move(&e.orders, b, "paid");
    move(&e.orders, b, "shipped");
    move_refused(&e.orders, b, "shipped", "cancelled");
    move_refused(&e.orders, b, "shipped", "paid");
    move(&e.orders, b, "completed");
    move_refused(&e.orders, b, "completed", "pending");
    move_refused(&e.orders, b, "completed", "cancelled");
    json_int_t c = create_order_for(&e.orders, e.uid, NULL);
    move(&e.orders, c, "cancelled");
    move_refused(&e.orders, c, "cancelled", "paid");
    move_refused(&e.orders, c, "cancelled", "pending");
    api_stop_clean(&e.orders);
    api_stop_clean(&e.users);
}

/* ------------------------------------------------------------------------- */
/* reading, filtering, deleting                                               */

Test(orders, userid_filter_returns_only_that_users_orders_and_pages_keep_it)
{
    env_t e;
    start_env(&e);
    json_int_t u2 = api_create_user(&e.users, "Second", "second@x.org");
    json_int_t mine[5];
    int nm = 0;
    for (int i = 0; i < 8; i++) {
        json_int_t id = create_order_for(&e.orders, i % 3 == 0 ? e.uid : u2, NULL);
        if (i % 3 == 0)
            mine[nm++] = id;
    }
    char path[128];
    snprintf(path, sizeof path, "/orders?userId=%lld", (long long)e.uid);
    json_t *l = api_get(&e.orders, path, 200);
    cr_assert(json_is_array(l));
    cr_assert_eq(json_array_size(l), (size_t)nm);
    for (int i = 0; i < nm; i++) {
        cr_assert_eq(api_int(json_array_get(l, (size_t)i), "id"), mine[i]);
        cr_assert_eq(api_int(json_array_get(l, (size_t)i), "userId"), e.uid);
    }
    json_decref(l);

    /* paged with limit=2: the Link keeps the filter */
    snprintf(path, sizeof path, "/orders?userId=%lld&limit=2", (long long)e.uid);
    int seen = 0;
    for (int page = 0; page < 10; page++) {
        h_resp_t r = h_req(&e.orders, "GET", path, NULL, NULL);
        cr_assert_eq(r.status, 200);
        json_t *arr = h_json(&r);
        size_t i;
        json_t *it;
        json_array_foreach(arr, i, it)
        {
            cr_assert_lt(seen, nm);
            cr_assert_eq(api_int(it, "id"), mine[seen]);
            seen++;
        }
        char link[256];
        if (h_header(&r, "Link", link, sizeof link) != 0) {
            json_decref(arr);
            h_resp_free(&r);
            break;
        }
        char want[256];
        snprintf(want, sizeof want, "</orders?userId=%lld&limit=2&after=%lld>; rel=\"next\"",
                 (long long)e.uid, (long long)mine[seen - 1]);
        cr_assert_str_eq(link, want);
        snprintf(path, sizeof path, "%.*s", (int)(strchr(link, '>') - link - 1), link + 1);
        json_decref(arr);
        h_resp_free(&r);
    }
    cr_assert_eq(seen, nm);

    /* a user without orders has an empty list; a bad filter is a 422 */
    snprintf(path, sizeof path, "/orders?userId=%lld", (long long)u2 + 50);
    l = api_get(&e.orders, path, 200);
    cr_assert_eq(json_array_size(l), 0);
    json_decref(l);
    api_expect_error(h_req(&e.orders, "GET", "/orders?userId=abc", NULL, NULL), 422, "userId");
    api_expect_error(h_req(&e.orders, "GET", "/orders?userId=0", NULL, NULL), 422, "userId");
    api_expect_error(h_req(&e.orders, "GET", "/orders?limit=0", NULL, NULL), 422, "limit");
    api_stop_clean(&e.orders);
    api_stop_clean(&e.users);
}

Test(orders, idempotency_key_replays_the_first_create)
{
    env_t e;
    start_env(&e);
    char body[64];
    snprintf(body, sizeof body, "{\"userId\":%lld}", (long long)e.uid);
    static const char *const key = "Idempotency-Key: order-key-1";
    h_resp_t a = api_send(&e.orders, "POST", "/orders", body, key, NULL);
    cr_assert_eq(a.status, 201, "%ld %s", a.status, a.body);
    json_t *before = api_snapshot(&e.orders, "/orders");
    h_resp_t b = api_send(&e.orders, "POST", "/orders", body, key, NULL);
    cr_assert_eq(b.status, 201);
    cr_assert_str_eq(b.body, a.body);
    char la[128], lb[128], rep[32];
    cr_assert_eq(h_header(&a, "Location", la, sizeof la), 0);
    cr_assert_eq(h_header(&b, "Location", lb, sizeof lb), 0);
    cr_assert_str_eq(lb, la);
    cr_assert_eq(h_header(&b, "Idempotent-Replayed", rep, sizeof rep), 0);
    cr_assert_str_eq(rep, "true");
    api_assert_unchanged(&e.orders, "/orders", before);
    h_resp_free(&a);
    h_resp_free(&b);

    /* the same key with another body is refused */
    before = api_snapshot(&e.orders, "/orders");
    snprintf(body, sizeof body, "{\"userId\":%lld,\"status\":\"paid\"}", (long long)e.uid);
    api_expect_error(api_send(&e.orders, "POST", "/orders", body, key, NULL), 422,
                     "Idempotency-Key");
    api_assert_unchanged(&e.orders, "/orders", before);

    /* the replay needs no users service: the answer is already known */
    cr_assert_eq(h_stop(&e.users), 0);
    snprintf(body, sizeof body, "{\"userId\":%lld}", (long long)e.uid);
    h_resp_t c = api_send(&e.orders, "POST", "/orders", body, key, NULL);
    cr_assert_eq(c.status, 201, "%ld %s", c.status, c.body);
    cr_assert_eq(h_header(&c, "Idempotent-Replayed", rep, sizeof rep), 0);
    h_resp_free(&c);
    api_stop_clean(&e.orders);
    api_stop_clean(&e.users);
}

Test(orders, delete_answers_order_deleted_then_404)
{
    env_t e;
    start_env(&e);
    json_int_t keep = create_order_for(&e.orders, e.uid, NULL);
    json_int_t id = create_order_for(&e.orders, e.uid, NULL);
    char path[64];
    snprintf(path, sizeof path, "/orders/%lld", (long long)id);
    h_resp_t r = h_req(&e.orders, "DELETE", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    json_t *j = h_json(&r);
    json_t *want = json_pack("{s:s}", "message", "Order deleted");
    cr_assert(json_equal(j, want), "DELETE body %s", r.body);
    json_decref(want);
    json_decref(j);
    h_resp_free(&r);

    want = json_pack("{s:s}", "error", "Order not found");
    json_t *g = api_get(&e.orders, path, 404);
    cr_assert(json_equal(g, want), "404 body differs");
    json_decref(g);
    json_decref(want);

    json_t *before = api_snapshot(&e.orders, "/orders");
    cr_assert_eq(json_array_size(before), 1);
    cr_assert_eq(api_int(json_array_get(before, 0), "id"), keep);
    api_expect_error(h_req(&e.orders, "DELETE", path, NULL, NULL), 404, NULL);
    api_expect_error(api_send(&e.orders, "PUT", path, "{\"status\":\"paid\"}", NULL), 404, NULL);
    api_expect_error(h_req(&e.orders, "GET", "/orders/abc", NULL, NULL), 404, NULL);
    api_expect_error(h_req(&e.orders, "DELETE", "/orders/abc", NULL, NULL), 404, NULL);
    api_assert_unchanged(&e.orders, "/orders", before);

    /* ids are not reused */
    json_int_t next = create_order_for(&e.orders, e.uid, NULL);
    cr_assert_gt(next, id);
    api_stop_clean(&e.orders);
    api_stop_clean(&e.users);
}

Test(orders, etags_guard_updates_and_deletes)
{
    env_t e;
    start_env(&e);
    json_int_t id = create_order_for(&e.orders, e.uid, NULL);
    char path[64], etag[64], im[96], inm[96];
    snprintf(path, sizeof path, "/orders/%lld", (long long)id);
    h_resp_t r = h_req(&e.orders, "GET", path, NULL, NULL);
    cr_assert_eq(h_header(&r, "ETag", etag, sizeof etag), 0);
    h_resp_free(&r);
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    const char *ih[] = {inm, NULL};
    r = h_req(&e.orders, "GET", path, NULL, ih);
    cr_assert_eq(r.status, 304);
    cr_assert_eq(r.body_len, 0);
    h_resp_free(&r);

    json_t *before = api_snapshot(&e.orders, "/orders");
    static const char *const stale = "If-Match: \"0123456789abcdef\"";
    api_expect_error(api_send(&e.orders, "PUT", path, "{\"status\":\"paid\"}", stale, NULL), 412,
                     NULL);
    const char *sh[] = {stale, NULL};
    api_expect_error(h_req(&e.orders, "DELETE", path, NULL, sh), 412, NULL);
    api_assert_unchanged(&e.orders, "/orders", before);

    snprintf(im, sizeof im, "If-Match: %s", etag);
    r = api_send(&e.orders, "PUT", path, "{\"status\":\"paid\"}", im, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    h_resp_free(&r);
    api_stop_clean(&e.orders);
    api_stop_clean(&e.users);
}

/* ------------------------------------------------------------------------- */
/* preconditions, idempotent updates and deletes, no-op updates               */

static void order_etag(const h_proc_t *o, const char *path, char *out, size_t cap)
{
    h_resp_t r = h_req(o, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(h_header(&r, "ETag", out, cap), 0);
    h_resp_free(&r);
}

Test(orders, weak_if_match_and_if_none_match_on_writes_are_412)
{
    env_t e;
    start_env(&e);
    json_int_t id = create_order_for(&e.orders, e.uid, NULL);
    char path[64], etag[64], weak[96], inm[96];
    snprintf(path, sizeof path, "/orders/%lld", (long long)id);
    order_etag(&e.orders, path, etag, sizeof etag);
    snprintf(weak, sizeof weak, "If-Match: W/%s", etag);
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    json_t *before = api_snapshot(&e.orders, "/orders");
    api_expect_error(api_send(&e.orders, "PUT", path, "{\"status\":\"paid\"}", weak, NULL), 412,
                     NULL);
    api_expect_error(
        api_send(&e.orders, "PUT", path, "{\"status\":\"paid\"}", "If-None-Match: *", NULL), 412,
        NULL);
    api_expect_error(api_send(&e.orders, "PUT", path, "{\"status\":\"paid\"}", inm, NULL), 412,
                     NULL);
    const char *wh[] = {weak, NULL}, *sh[] = {"If-None-Match: *", NULL};
    api_expect_error(h_req(&e.orders, "DELETE", path, NULL, wh), 412, NULL);
    api_expect_error(h_req(&e.orders, "DELETE", path, NULL, sh), 412, NULL);
    api_assert_unchanged(&e.orders, "/orders", before);
    api_stop_clean(&e.orders);
    api_stop_clean(&e.users);
}

Test(orders, same_status_keeps_updated_at_and_etag)
{
    env_t e;
    start_env(&e);
    json_int_t id = create_order_for(&e.orders, e.uid, "paid");
    char path[64], etag[64], im[96], body[96];
    snprintf(path, sizeof path, "/orders/%lld", (long long)id);
    order_etag(&e.orders, path, etag, sizeof etag);
    json_t *before = api_get(&e.orders, path, 200);
    snprintf(im, sizeof im, "If-Match: %s", etag);
    snprintf(body, sizeof body, "{\"status\":\"paid\",\"userId\":%lld}", (long long)e.uid);
    const char *bodies[] = {"{\"status\":\"paid\"}", "{}", body};
    for (int i = 0; i < 3; i++) {
        usleep(3000); /* past the millisecond a new updatedAt would show */
        h_resp_t r = api_send(&e.orders, "PUT", path, bodies[i], im, NULL);
        cr_assert_eq(r.status, 200, "PUT %s: %ld %s", bodies[i], r.status, r.body);
        char now[64];
        cr_assert_eq(h_header(&r, "ETag", now, sizeof now), 0);
        cr_assert_str_eq(now, etag, "a no-op PUT %s changed the ETag", bodies[i]);
        json_t *j = h_json(&r);
        cr_assert(json_equal(j, before), "a no-op PUT %s changed the order: %s", bodies[i], r.body);
        json_decref(j);
        h_resp_free(&r);
    }
    json_decref(before);
    api_stop_clean(&e.orders);
    api_stop_clean(&e.users);
}

Test(orders, idempotency_key_replays_updates_and_deletes)
{
    env_t e;
    start_env(&e);
    json_int_t id = create_order_for(&e.orders, e.uid, NULL);
    char path[64], rep[16];
    snprintf(path, sizeof path, "/orders/%lld", (long long)id);
    static const char *const pk = "Idempotency-Key: pay-1";
    h_resp_t a = api_send(&e.orders, "PUT", path, "{\"status\":\"paid\"}", pk, NULL);
    cr_assert_eq(a.status, 200, "%ld %s", a.status, a.body);
    move(&e.orders, id, "shipped");
    /* the retry of the first PUT hears its answer; it does not move the order back
     * (nor answer 409 shipped -> paid) */
    h_resp_t b = api_send(&e.orders, "PUT", path, "{\"status\":\"paid\"}", pk, NULL);
    cr_assert_eq(b.status, 200, "%ld %s", b.status, b.body);
    cr_assert_str_eq(b.body, a.body);
    cr_assert_eq(h_header(&b, "Idempotent-Replayed", rep, sizeof rep), 0, "not a replay");
    h_resp_free(&a);
    h_resp_free(&b);
    json_t *g = api_get(&e.orders, path, 200);
    cr_assert_str_eq(api_str(g, "status"), "shipped");
    json_decref(g);
    api_expect_error(api_send(&e.orders, "PUT", path, "{\"status\":\"completed\"}", pk, NULL), 422,
                     "Idempotency-Key");

    const char *dh[] = {"Idempotency-Key: del-1", NULL};
    a = h_req(&e.orders, "DELETE", path, NULL, dh);
    cr_assert_eq(a.status, 200, "%ld %s", a.status, a.body);
    b = h_req(&e.orders, "DELETE", path, NULL, dh);
    cr_assert_eq(b.status, 200, "retried DELETE: %ld %s", b.status, b.body);
    cr_assert_eq(h_header(&b, "Idempotent-Replayed", rep, sizeof rep), 0, "not a replay");
    h_resp_free(&a);
    h_resp_free(&b);
    api_stop_clean(&e.orders);
    api_stop_clean(&e.users);
}
