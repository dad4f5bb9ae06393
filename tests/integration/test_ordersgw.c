/* tests/integration/test_ordersgw.c: orders asking users for a user through the gateway
 * (`cmesh orders --users-url http://GATEWAY`), and what orders does when --users-url
 * points at something that is not the users service (the gateway's own 404 for a route
 * it lacks, another server): 503 "users service misconfigured" with Retry-After, an
 * error log line, /readyz not ready naming the reason, nothing stored; and back to
 * normal once the URL answers as the users service does. */
#include "api_util.h"
#include "h_util.h"
#include "harness.h"
#include "scripted_upstream.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

static void start_orders(h_proc_t *o, const char *users_url)
{
    h_start(o, "orders", "--db", "{dir}/orders.db", "--users-url", users_url, "--users-timeout",
            "2s", "--workers", "1", NULL);
}

static void post_order(const h_proc_t *o, json_int_t user_id, long status, const char *field)
{
    char body[64];
    snprintf(body, sizeof body, "{\"userId\":%lld}", (long long)user_id);
    h_resp_t r = api_send(o, "POST", "/orders", body, NULL);
    if (status == 201)
        cr_assert_eq(r.status, 201, "POST /orders %s: %ld %s", body, r.status, r.body);
    else
        api_assert_error(&r, status, field);
    h_resp_free(&r);
}

/* Asserts a write is refused as misconfigured: 503, the exact error, Retry-After. */
static void expect_misconfigured(const h_proc_t *o, json_int_t user_id)
{
    char body[64], retry[32];
    snprintf(body, sizeof body, "{\"userId\":%lld}", (long long)user_id);
    h_resp_t r = api_send(o, "POST", "/orders", body, NULL);
    api_assert_error(&r, 503, NULL);
    json_t *j = h_json(&r);
    cr_assert_str_eq(api_str(j, "error"), "users service misconfigured", "body: %s", r.body);
    json_decref(j);
    cr_assert_eq(h_header(&r, "Retry-After", retry, sizeof retry), 0, "no Retry-After");
    h_resp_free(&r);
}

static void expect_not_ready(const h_proc_t *o)
{
    h_resp_t r = h_req(o, "GET", "/readyz", NULL, NULL);
    cr_assert_eq(r.status, 503, "/readyz: %ld %s", r.status, r.body);
    json_t *j = h_json(&r);
    cr_assert_str_eq(api_str(j, "status"), "not ready");
    cr_assert(strstr(api_str(j, "reason"), "users service misconfigured"), "reason: %s", r.body);
    json_decref(j);
    h_resp_free(&r);
}

/* Polls /readyz (up to 10 s) until it answers want. */
static long readyz_until(const h_proc_t *o, long want)
{
    long st = 0;
    for (int i = 0; i < 200 && st != want; i++) {
        if (i)
            usleep(50 * 1000);
        h_resp_t r = h_req(o, "GET", "/readyz", NULL, NULL);
        st = r.status;
        h_resp_free(&r);
    }
    return st;
}

static void expect_no_orders(const h_proc_t *o)
{
    json_t *all = api_snapshot(o, "/orders");
    cr_assert_eq(json_array_size(all), 0, "orders were stored: %s", json_dumps(all, 0));
    json_decref(all);
}

Test(ordersgw, orders_checks_users_through_the_gateway)
{
    h_proc_t users, gw, orders;
    h_start(&users, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
    char route[128];
    snprintf(route, sizeof route, "/users=%s", users.url);
    h_start(&gw, "gateway", "--route", route, "--workers", "1", "--access-log", "off", NULL);
    start_orders(&orders, gw.url);

    json_int_t uid = api_create_user(&users, "Ada", "ada@example.com");
    post_order(&orders, uid, 201, NULL);
    post_order(&orders, uid + 1000, 422, "userId"); /* the users 404, through the gateway */
    cr_assert_eq(readyz_until(&orders, 200), 200);
    json_t *all = api_snapshot(&orders, "/orders");
    cr_assert_eq(json_array_size(all), 1);
    json_decref(all);

    api_stop_clean(&orders);
    api_stop_clean(&gw);
    api_stop_clean(&users);
}

Test(ordersgw, a_gateway_without_a_users_route_is_misconfigured_not_an_unknown_user)
{
    h_proc_t users, gw, orders;
    h_start(&users, "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
    json_int_t uid = api_create_user(&users, "Ada", "ada@example.com");
    char dir[256], cfg_path[300], cfg[512];
    h_tempdir(dir, sizeof dir);
    snprintf(cfg_path, sizeof cfg_path, "%s/gw.yaml", dir);
    snprintf(cfg, sizeof cfg, "routes:\n  - prefix: /people\n    upstreams: [%s]\n", users.url);
    h_write_text(cfg_path, cfg);
    h_start(&gw, "gateway", "--config", cfg_path, "--workers", "1", "--access-log", "off", NULL);
    start_orders(&orders, gw.url);
    cr_assert_eq(readyz_until(&orders, 200), 200, "not ready before any check");

    /* the gateway answers its own 404 for /users/ID: not "user does not exist" */
    expect_misconfigured(&orders, uid);
    expect_misconfigured(&orders, uid + 1000);
    expect_no_orders(&orders);
    expect_not_ready(&orders);
    char *log = h_read_file(orders.log, NULL);
    cr_assert(strstr(log, "\"level\":\"error\"") && strstr(log, "users service misconfigured"),
              "no error line in the orders log:\n%s", log);
    cr_assert_eq(strstr(strstr(log, "users service misconfigured") + 1,
                        "\"level\":\"error\",\"msg\":\"orders: users service misconfigured"),
                 NULL, "more than one error line for one misconfiguration:\n%s", log);
    free(log);

    /* the gateway gets its /users route: /readyz's own re-check sees it, writes work */
    snprintf(cfg, sizeof cfg, "routes:\n  - prefix: /users\n    upstreams: [%s]\n", users.url);
    h_write_text(cfg_path, cfg);
    cr_assert_eq(kill(gw.pid, SIGHUP), 0);
    cr_assert_eq(readyz_until(&orders, 200), 200, "orders stayed not ready after the fix");
    post_order(&orders, uid, 201, NULL);
    post_order(&orders, uid + 1000, 422, "userId");

    api_stop_clean(&orders);
    api_stop_clean(&gw);
    api_stop_clean(&users);
}

Test(ordersgw, another_server_at_users_url_is_misconfigured)
{
    us_scripted_t *s = us_start();
    h_proc_t orders;
    start_orders(&orders, us_url(s));

    /* a 404 with any other body */
    us_set_reply(s, &(us_reply_t){.status = 404,
                                  .body = "<html>Not Found</html>",
                                  .headers = "Content-Type: text/html\r\n"});
    expect_misconfigured(&orders, 7);
    expect_not_ready(&orders);
    /* a 200 that is not user 7 */
    us_set_reply(s, &(us_reply_t){.status = 200, .body = "{\"id\":8,\"name\":\"x\"}"});
    expect_misconfigured(&orders, 7);
    us_set_reply(s, &(us_reply_t){.status = 200}); /* {"port":N} */
    expect_misconfigured(&orders, 7);
    expect_no_orders(&orders);

    /* the users service's own 404: a real unknown user, and ready again */
    us_set_reply(s, &(us_reply_t){.status = 404, .body = "{\"error\":\"User not found\"}"});
    cr_assert_eq(readyz_until(&orders, 200), 200);
    post_order(&orders, 7, 422, "userId");
    expect_no_orders(&orders);

    api_stop_clean(&orders);
    us_stop(s);
}
