/* tests/integration/test_gwadmin.c: route names as the admin API sees them: a route from
 * --route is named after its prefix without slashes ("/users" -> users, "/api/v1" ->
 * api-v1, "/" -> root), so its upstreams are replaced at /_cmesh/routes/users/upstreams. */
#include "harness.h"
#include "scripted_upstream.h"

#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

static const char *str_of(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

/* The prefix of the route listed under name, or NULL when no route has that name. */
static const char *listed_prefix(json_t *routes, const char *name)
{
    size_t i;
    json_t *rt;
    json_array_foreach(routes, i, rt)
    {
        if (strcmp(str_of(rt, "name"), name) == 0)
            return str_of(rt, "prefix");
    }
    return NULL;
}

static void get_from(const h_proc_t *gw, const char *path, int n)
{
    for (int i = 0; i < n; i++) {
        h_resp_t r = h_req(gw, "GET", path, NULL, NULL);
        cr_assert_eq(r.status, 200, "GET %s: %ld %s", path, r.status, r.body);
        h_resp_free(&r);
    }
}

Test(gwadmin, flag_routes_are_named_without_slashes_and_replaced_by_that_name)
{
    us_scripted_t *a = us_start(), *b = us_start(), *c = us_start();
    char users[128], api[128], root[128], api2[128];
    snprintf(users, sizeof users, "/users=%s", us_url(a));
    snprintf(api, sizeof api, "/api/v1=%s", us_url(c));
    snprintf(api2, sizeof api2, "/api-v1=%s", us_url(c));
    snprintf(root, sizeof root, "/=%s", us_url(c));
    h_proc_t gw;
    h_start(&gw, "gateway", "--workers", "1", "--access-log", "off", "--route", users, "--route",
            api, "--route", api2, "--route", root, NULL);

    h_resp_t r = h_req(&gw, "GET", "/_cmesh/routes", NULL, NULL);
    cr_assert_eq(r.status, 200, "GET /_cmesh/routes: %ld %s", r.status, r.body);
    json_t *j = h_json(&r);
    h_resp_free(&r);
    json_t *routes = json_object_get(j, "routes");
    cr_assert(json_is_array(routes), "no routes array: %s", json_dumps(j, 0));
    const struct {
        const char *name, *prefix;
    } want[] = {{"users", "/users"}, {"api-v1", "/api/v1"}, {"api-v1-2", "/api-v1"}, {"root", "/"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *p = listed_prefix(routes, want[i].name);
        cr_assert_not_null(p, "no route named %s in %s", want[i].name, json_dumps(j, 0));
        cr_assert_str_eq(p, want[i].prefix, "route %s", want[i].name);
    }
    cr_assert_null(listed_prefix(routes, "/users"), "a route is still named /users");
    json_decref(j);

    get_from(&gw, "/users/1", 2);
    cr_assert_eq(us_count(a), 2);
    char body[256];
    snprintf(body, sizeof body, "{\"upstreams\": [\"%s\"]}", us_url(b));
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    r = h_req(&gw, "PUT", "/_cmesh/routes/users/upstreams", body, hdrs);
    cr_assert_eq(r.status, 200, "PUT /_cmesh/routes/users/upstreams: %ld %s", r.status, r.body);
    j = h_json(&r);
    cr_assert_str_eq(str_of(j, "route"), "users");
    json_decref(j);
    h_resp_free(&r);
    get_from(&gw, "/users/1", 3);
    cr_assert_eq(us_count(a), 2, "the replaced instance still got requests");
    cr_assert_eq(us_count(b), 3, "the new instance got %d of 3", us_count(b));

    r = h_req(&gw, "PUT", "/_cmesh/routes/api-v1/upstreams", body, hdrs);
    cr_assert_eq(r.status, 200, "PUT api-v1: %ld %s", r.status, r.body);
    h_resp_free(&r);

    cr_assert_eq(h_stop(&gw), 0);
    us_stop(a);
    us_stop(b);
    us_stop(c);
}
