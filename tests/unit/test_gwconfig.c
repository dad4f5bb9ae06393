/* Unit tests for gateway/config: YAML loading (every key, defaults, positioned errors),
 * --route flag routes, route order, deep copy. Each test writes its YAML to a file in
 * its own temporary directory. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "gateway/config.h"

static char dir[256];
static char path[512];
static char err[1024];

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/gwconfig-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/gw.yaml", dir);
    err[0] = '\0';
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(gwconfig, .init = setup, .fini = teardown);

static void write_at(const char *name, const char *text)
{
    char p[600];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

/* Loads text as the config file; returns gw_config_load's code. */
static int load(const char *text, gw_config_t **cfg)
{
    write_at("gw.yaml", text);
    *cfg = NULL;
    return gw_config_load(path, cfg, err, sizeof(err));
}

/* Asserts that text is refused with "PATH:LINE: " followed by a message containing what. */
static void refused_at(const char *text, int line, const char *what)
{
    gw_config_t *cfg;
    int rc = load(text, &cfg);
    cr_assert_eq(rc, -EINVAL, "accepted:\n%s", text);
    cr_assert_null(cfg);
    char prefix[600];
    snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
    cr_assert(strncmp(err, prefix, strlen(prefix)) == 0, "want prefix '%s', got '%s'", prefix, err);
    cr_assert(strstr(err, what) != NULL, "want '%s' in '%s'", what, err);
}

static const char full_yaml[] =
    "listen: 127.0.0.1:8080\n"
    "auth:\n"
    "  key_file: keys/jwt.key\n"
    "  issuer: cmesh\n"
    "  audience: cmesh-api\n"
    "  leeway: 45s\n"
    "routes:\n"
    "  - name: users\n"
    "    prefix: /users/\n"
    "    host: API.example.com\n"
    "    upstreams:\n"
    "      - http://127.0.0.1:7001\n"
    "      - { url: 'http://[::1]:7002/', weight: 2 }\n"
    "    balancer: hash\n"
    "    hash: { header: X-User }\n"
    "    timeouts: { connect: 250ms, try: 2s, total: 10s }\n"
    "    retries: { attempts: 4, backoff: 10ms, backoff_max: 1s, budget: 25%, "
    "min_per_second: 7 }\n"
    "    health: { path: /healthz, interval: 2s, timeout: 1s, rise: 3, fall: 4 }\n"
    "    outlier: { failures: 6, base_ejection: 20s, max_ejection: 10m, max_ejected: 30%, "
    "panic_below: 40 }\n"
    "    slow_start: 15s\n"
    "    limits: { max_connections: 100, max_pending: 200, max_requests: 300 }\n"
    "    pool: { max_idle: 8, idle_timeout: 90s }\n"
    "    rate_limit: { per_client: { rate: 6000/m, burst: 250 }, per_subject: { rate: 50 } }\n"
    "    auth: { scopes: [users:admin], read_scopes: [users:read, audit:read], "
    "write_scopes: users:write }\n"
    "  - prefix: /orders\n"
    "    upstreams: [http://localhost:7003]\n"
    "    auth: public\n";

Test(gwconfig, full_file_sets_every_field)
{
    char keys[600];
    snprintf(keys, sizeof(keys), "%s/keys", dir);
    cr_assert_eq(mkdir(keys, 0700), 0);
    write_at("keys/jwt.key", "secret\n");
    gw_config_t *cfg;
    cr_assert_eq(load(full_yaml, &cfg), 0, "%s", err);
    cr_assert_str_eq(cfg->path, path);
    cr_assert_str_eq(cfg->listen, "127.0.0.1:8080");
    char key[600];
    snprintf(key, sizeof(key), "%s/keys/jwt.key", dir);
    cr_assert_str_eq(cfg->auth.key_file, key);
    cr_assert_str_eq(cfg->auth.issuer, "cmesh");
    cr_assert_str_eq(cfg->auth.audience, "cmesh-api");
    cr_assert_eq(cfg->auth.leeway_ms, 45000);
    cr_assert_eq(cfg->nroutes, 2);

    const gw_route_cfg_t *r = &cfg->routes[0]; /* "/orders" is longer than "/users" */
    cr_assert_str_eq(r->name, "orders");
    cr_assert_eq(r->auth, 0);
    cr_assert_str_eq(r->upstreams[0].url, "http://localhost:7003");
    cr_assert_eq(r->upstreams[0].port, 7003);

    r = &cfg->routes[1];
    cr_assert_str_eq(r->name, "users");
    cr_assert_str_eq(r->prefix, "/users");
    cr_assert_str_eq(r->host, "api.example.com");
    cr_assert_eq(r->nupstreams, 2);
    cr_assert_str_eq(r->upstreams[0].url, "http://127.0.0.1:7001");
    cr_assert_str_eq(r->upstreams[0].host, "127.0.0.1");
    cr_assert_eq(r->upstreams[0].port, 7001);
    cr_assert_eq(r->upstreams[0].weight, 1);
    cr_assert_str_eq(r->upstreams[1].url, "http://[::1]:7002");
    cr_assert_str_eq(r->upstreams[1].host, "::1");
    cr_assert_eq(r->upstreams[1].port, 7002);
    cr_assert_eq(r->upstreams[1].weight, 2);
    cr_assert_eq(r->balancer, GW_LB_HASH);
    cr_assert_str_eq(r->hash_header, "X-User");
    cr_assert_str_eq(r->hash_cookie, "");
    cr_assert_eq(r->connect_timeout_ms, 250);
    cr_assert_eq(r->try_timeout_ms, 2000);
    cr_assert_eq(r->timeout_ms, 10000);
    cr_assert_eq(r->attempts, 4);
    cr_assert_eq(r->backoff_base_ms, 10);
    cr_assert_eq(r->backoff_max_ms, 1000);
    cr_assert_float_eq(r->retry_budget, 0.25, 1e-9);
    cr_assert_eq(r->retry_budget_min, 7);
    cr_assert_str_eq(r->health_path, "/healthz");
    cr_assert_eq(r->health_interval_ms, 2000);
    cr_assert_eq(r->health_timeout_ms, 1000);
    cr_assert_eq(r->health_rise, 3);
    cr_assert_eq(r->health_fall, 4);
    cr_assert_eq(r->outlier_failures, 6);
    cr_assert_eq(r->outlier_base_ms, 20000);
    cr_assert_eq(r->outlier_max_ms, 600000);
    cr_assert_eq(r->outlier_max_percent, 30);
    cr_assert_eq(r->panic_percent, 40);
    cr_assert_eq(r->slow_start_ms, 15000);
    cr_assert_eq(r->max_connections, 100);
    cr_assert_eq(r->max_pending, 200);
    cr_assert_eq(r->max_requests, 300);
    cr_assert_eq(r->pool_max_idle, 8);
    cr_assert_eq(r->pool_idle_timeout_ms, 90000);
    cr_assert_float_eq(r->rate_client.rate, 100.0, 1e-9);
    cr_assert_float_eq(r->rate_client.burst, 250.0, 1e-9);
    cr_assert_float_eq(r->rate_subject.rate, 50.0, 1e-9);
    cr_assert_float_eq(r->rate_subject.burst, 50.0, 1e-9);
    cr_assert_eq(r->auth, 1);
    cr_assert_str_eq(r->scopes, "users:admin");
    cr_assert_str_eq(r->read_scopes, "users:read audit:read");
    cr_assert_str_eq(r->write_scopes, "users:write");
    gw_config_free(cfg);
}

Test(gwconfig, minimal_route_gets_every_default)
{
    gw_config_t *cfg;
    cr_assert_eq(
        load("routes:\n  - prefix: /users\n    upstreams: [http://127.0.0.1:7001]\n", &cfg), 0,
        "%s", err);
    gw_route_cfg_t want;
    gw_route_defaults(&want);
    const gw_route_cfg_t *r = &cfg->routes[0];
    cr_assert_str_eq(cfg->listen, "");
    cr_assert_str_eq(cfg->auth.key_file, "");
    cr_assert_eq(cfg->auth.leeway_ms, 30000);
    cr_assert_str_eq(r->name, "users");
    cr_assert_str_eq(r->host, "");
    cr_assert_eq(r->balancer, GW_LB_PEAK_EWMA);
    cr_assert_eq(r->connect_timeout_ms, 1000);
    cr_assert_eq(r->try_timeout_ms, 5000);
    cr_assert_eq(r->timeout_ms, 15000);
    cr_assert_eq(r->attempts, 3);
    cr_assert_eq(r->backoff_base_ms, 25);
    cr_assert_eq(r->backoff_max_ms, 250);
    cr_assert_float_eq(r->retry_budget, 0.2, 1e-9);
    cr_assert_eq(r->retry_budget_min, 3);
    cr_assert_str_eq(r->health_path, "/readyz");
    cr_assert_eq(r->health_interval_ms, 1000);
    cr_assert_eq(r->health_timeout_ms, 500);
    cr_assert_eq(r->health_rise, 2);
    cr_assert_eq(r->health_fall, 2);
    cr_assert_eq(r->outlier_failures, 5);
    cr_assert_eq(r->outlier_base_ms, 10000);
    cr_assert_eq(r->outlier_max_ms, 300000);
    cr_assert_eq(r->outlier_max_percent, 50);
    cr_assert_eq(r->panic_percent, 50);
    cr_assert_eq(r->slow_start_ms, 0);
    cr_assert_eq(r->max_connections, 1024);
    cr_assert_eq(r->max_pending, 100000);
    cr_assert_eq(r->max_requests, 100000);
    cr_assert_eq(r->pool_max_idle, 64);
    cr_assert_eq(r->pool_idle_timeout_ms, 30000);
    cr_assert_float_eq(r->rate_client.rate, 0.0, 1e-9);
    cr_assert_float_eq(r->rate_subject.rate, 0.0, 1e-9);
    cr_assert_eq(r->auth, 0);
    cr_assert_eq(r->upstreams[0].weight, 1);
    cr_assert_eq(want.balancer, r->balancer);
    gw_config_free(cfg);
}

Test(gwconfig, key_file_makes_routes_private_by_default)
{
    write_at("k", "secret");
    gw_config_t *cfg;
    cr_assert_eq(load("routes:\n  - prefix: /a\n    upstreams: [http://127.0.0.1:1]\n"
                      "auth: { key_file: k, issuer: cmesh, audience: cmesh-api }\n",
                      &cfg),
                 0, "%s", err);
    cr_assert_eq(cfg->routes[0].auth, 1);
    gw_config_free(cfg);
}

Test(gwconfig, key_file_needs_issuer_and_audience_at_the_auth_line)
{
    write_at("k", "secret");
    refused_at("routes: []\nauth: { key_file: k }\n", 2,
               "auth needs issuer: the iss your tokens carry");
    refused_at("routes: []\nauth:\n  key_file: k\n  issuer: cmesh\n", 2,
               "or audience: any to accept every audience");
    refused_at("auth:\n  key_file: k\n  audience: a\n", 1, "or issuer: any to accept every issuer");
    refused_at("auth:\n  key_file: k\n  audience: a\n  issuer: ''\n", 4,
               "auth.issuer must not be empty; write issuer: any");
    refused_at("auth:\n  key_file: k\n  issuer: i\n  audience: \"\"\n", 4,
               "auth.audience must not be empty; write audience: any");
}

Test(gwconfig, any_issuer_and_audience_opt_out_explicitly)
{
    write_at("k", "secret");
    gw_config_t *cfg;
    cr_assert_eq(load("auth: { key_file: k, issuer: any, audience: any }\n", &cfg), 0, "%s", err);
    cr_assert(cfg->auth.any_issuer && cfg->auth.any_audience);
    cr_assert_str_eq(cfg->auth.issuer, "");
    cr_assert_str_eq(cfg->auth.audience, "");
    gw_config_free(cfg);
    /* quoted, it is a name like any other */
    cr_assert_eq(load("auth: { key_file: k, issuer: \"any\", audience: 'any' }\n", &cfg), 0, "%s",
                 err);
    cr_assert(!cfg->auth.any_issuer && !cfg->auth.any_audience);
    cr_assert_str_eq(cfg->auth.issuer, "any");
    cr_assert_str_eq(cfg->auth.audience, "any");
    gw_config_free(cfg);
}

Test(gwconfig, scopes_of_511_bytes_load_and_512_are_refused)
{
    write_at("k", "secret");
    static char text[2048], scope[600];
    memset(scope, 's', 511);
    scope[511] = '\0';
    snprintf(text, sizeof(text),
             "auth: { key_file: k, issuer: i, audience: a }\n"
             "routes:\n  - prefix: /a\n    upstreams: [http://127.0.0.1:1]\n"
             "    auth: { scopes: [%s] }\n",
             scope);
    gw_config_t *cfg;
    cr_assert_eq(load(text, &cfg), 0, "%s", err);
    cr_assert_str_eq(cfg->routes[0].scopes, scope);
    gw_config_free(cfg);
    scope[511] = 't';
    scope[512] = '\0';
    snprintf(text, sizeof(text),
             "auth: { key_file: k, issuer: i, audience: a }\n"
             "routes:\n  - prefix: /a\n    upstreams: [http://127.0.0.1:1]\n"
             "    auth: { scopes: [%s] }\n",
             scope);
    refused_at(text, 5, "scopes are longer than 511 bytes");
}

Test(gwconfig, health_off_and_implicit_limits_follow_explicit_ones)
{
    gw_config_t *cfg;
    cr_assert_eq(load("routes:\n"
                      "  - prefix: /\n"
                      "    upstreams: [http://127.0.0.1:1]\n"
                      "    health: off\n"
                      "    timeouts: { total: 2s }\n"
                      "    retries: { backoff: 1s }\n",
                      &cfg),
                 0, "%s", err);
    const gw_route_cfg_t *r = &cfg->routes[0];
    cr_assert_str_eq(r->health_path, "");
    cr_assert_str_eq(r->prefix, "/");
    cr_assert_eq(r->try_timeout_ms, 2000);
    cr_assert_eq(r->backoff_max_ms, 1000);
    gw_config_free(cfg);
}

Test(gwconfig, x_keys_hold_anchors_that_routes_merge)
{
    gw_config_t *cfg;
    cr_assert_eq(load("x-common: &c\n"
                      "  retries: { attempts: 2 }\n"
                      "routes:\n"
                      "  - <<: *c\n"
                      "    prefix: /a\n"
                      "    upstreams: [http://127.0.0.1:1]\n",
                      &cfg),
                 0, "%s", err);
    cr_assert_eq(cfg->routes[0].attempts, 2);
    gw_config_free(cfg);
}

/* ---------------------------------------------------------------------------------- */
/* Errors name FILE:LINE                                                              */
/* ---------------------------------------------------------------------------------- */

#define ROUTE_HEAD "routes:\n  - prefix: /users\n    upstreams: [http://127.0.0.1:7001]\n"

Test(gwconfig, per_subject_limit_on_a_public_route_is_refused)
{
    refused_at(ROUTE_HEAD "    rate_limit:\n      per_subject: { rate: 5 }\n", 5,
               "rate_limit.per_subject needs a token");
    write_at("k", "secret");
    refused_at("auth: { key_file: k, issuer: i, audience: a }\n" ROUTE_HEAD
               "    auth: public\n    rate_limit: { per_subject: { rate: 5 } }\n",
               6, "drop auth: public");
}

Test(gwconfig, unknown_key_is_refused_at_its_line)
{
    refused_at(ROUTE_HEAD "    timeouts:\n      timout: 1s\n", 5,
               "unknown key 'timout' in route '/users' timeouts");
    refused_at(ROUTE_HEAD "    retry: {}\n", 4, "unknown key 'retry' in route '/users'");
    refused_at("lisen: :8080\n", 1, "unknown key 'lisen' at top level");
}

Test(gwconfig, bad_duration_is_refused_at_its_line)
{
    refused_at(ROUTE_HEAD "    timeouts: { connect: 1s,\n      try: 5 sec }\n", 5,
               "route '/users' timeouts.try '5 sec' is not a duration");
    refused_at(ROUTE_HEAD "    timeouts: { connect: 0s }\n", 4, "out of range");
}

Test(gwconfig, bad_upstream_url_is_refused_at_its_line)
{
    refused_at("routes:\n  - prefix: /a\n    upstreams:\n      - http://127.0.0.1:1\n"
               "      - https://127.0.0.1:2\n",
               5, "must start with http://");
    refused_at("routes:\n  - prefix: /a\n    upstreams:\n      - http://127.0.0.1\n", 4,
               "needs a port");
    refused_at("routes:\n  - prefix: /a\n    upstreams:\n      - http://127.0.0.1:1/api\n", 4,
               "must not have a path");
    refused_at("routes:\n  - prefix: /a\n    upstreams:\n      - http://127.0.0.1:70000\n", 4,
               "is not 1-65535");
    refused_at("routes:\n  - prefix: /a\n    upstreams:\n      - { url: http://127.0.0.1:1,\n"
               "          weight: 0 }\n",
               5, "1..1000");
}

Test(gwconfig, missing_prefix_is_refused_at_the_route)
{
    refused_at("routes:\n  - name: a\n    upstreams: [http://127.0.0.1:1]\n", 2,
               "route 'a' needs a prefix");
    refused_at("routes:\n  - prefix: users\n    upstreams: [http://127.0.0.1:1]\n", 2,
               "must start with '/'");
}

/* Requests are matched on their normalized path, so a prefix is normalized the same way
 * (else "/%7Euser" or "/a/../b" could never match), and one that cannot be is refused. */
Test(gwconfig, prefix_is_normalized_like_request_paths)
{
    static const char *const cases[][2] = {
        {"/a/../b/", "/b"}, {"/%7euser", "/~user"}, {"//api//v1/", "/api/v1"}, {"/x/%2f", ""}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[256];
        snprintf(text, sizeof text,
                 "routes:\n  - prefix: \"%s\"\n    upstreams: [http://127.0.0.1:1]\n", cases[i][0]);
        gw_config_t *cfg;
        int rc = load(text, &cfg);
        if (!cases[i][1][0]) {
            cr_expect_lt(rc, 0, "prefix %s was accepted", cases[i][0]);
            cr_expect_not_null(strstr(err, "encoded"), "%s", err);
            continue;
        }
        cr_assert_eq(rc, 0, "%s: %s", cases[i][0], err);
        cr_expect_str_eq(cfg->routes[0].prefix, cases[i][1], "prefix %s", cases[i][0]);
        gw_config_free(cfg);
    }
}

Test(gwconfig, empty_upstreams_are_refused)
{
    refused_at("routes:\n  - prefix: /a\n\n    upstreams: []\n", 4, "non-empty list");
    refused_at("routes:\n  - prefix: /a\n", 2, "needs upstreams");
}

Test(gwconfig, hash_balancer_needs_a_key)
{
    refused_at(ROUTE_HEAD "    balancer: hash\n", 4, "balancer hash needs hash:");
    refused_at(ROUTE_HEAD "    hash: { cookie: s }\n", 4, "only used with balancer: hash");
    refused_at(ROUTE_HEAD "    balancer: fastest\n", 4, "unknown balancer 'fastest'");
}

Test(gwconfig, yaml_syntax_error_is_positioned)
{
    refused_at("listen: :8080\nroutes:\n  - prefix: \"/a\n", 3, "YAML syntax error");
    refused_at("listen: :8080\nlisten: :8081\n", 2, "duplicate key");
    refused_at("", 1, "empty");
    refused_at("- a\n- b\n", 1, "must be a mapping");
}

/* A file with several mistakes gets them all back, each at its own line, in file order;
 * the valid keys between them do not hide the later ones. */
Test(gwconfig, several_errors_are_all_reported_each_at_its_line)
{
    gw_config_t *cfg;
    int rc = load("listen: 127.0.0.1:8080\n"                 /* 1 */
                  "lissen: 127.0.0.1:8081\n"                 /* 2: unknown key */
                  "routes:\n"                                /* 3 */
                  "  - prefix: /users\n"                     /* 4 */
                  "    upstreams: [http://127.0.0.1:7001]\n" /* 5 */
                  "    timeouts: { connect: 2x, try: 1s }\n" /* 6: bad duration */
                  "    retries: { attempts: 99 }\n"          /* 7: out of range */
                  "  - prefix: /orders\n"                    /* 8 */
                  "    upstreams: [ftp://127.0.0.1:7002]\n"  /* 9: bad URL */
                  "    balanser: round_robin\n"              /* 10: unknown key */
                  "  - prefix: /users\n"                     /* 11: taken */
                  "    upstreams: [http://127.0.0.1:7001]\n",
                  &cfg);
    cr_assert_eq(rc, -EINVAL);
    cr_assert_null(cfg);
    const struct {
        int line;
        const char *what;
    } want[] = {{2, "unknown key 'lissen'"},    {6, "'2x' is not a duration"},
                {7, "attempts '99'"},           {9, "ftp://127.0.0.1:7002"},
                {10, "unknown key 'balanser'"}, {11, "same host and prefix"}};
    size_t n = sizeof(want) / sizeof(want[0]);
    const char *line = err;
    for (size_t i = 0; i < n; i++) {
        cr_assert_not_null(line, "only %zu of %zu errors in:\n%s", i, n, err);
        char prefix[600];
        snprintf(prefix, sizeof(prefix), "%s:%d: ", path, want[i].line);
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char one[1024];
        snprintf(one, sizeof(one), "%.*s", (int)len, line);
        cr_assert(strncmp(one, prefix, strlen(prefix)) == 0, "error %zu: want '%s...', got '%s'", i,
                  prefix, one);
        cr_assert(strstr(one, want[i].what), "error %zu: want '%s' in '%s'", i, want[i].what, one);
        line = nl ? nl + 1 : NULL;
    }
    cr_assert_null(line, "more errors than expected:\n%s", err);
}

/* More errors than the buffer holds: the ones that fit, then how many more there were. */
Test(gwconfig, errors_past_the_buffer_are_counted)
{
    char text[8192] = "routes:\n  - prefix: /a\n    upstreams: [http://127.0.0.1:1]\n";
    for (int i = 0; i < 60; i++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text), "    bad%d: 1\n", i);
    write_at("gw.yaml", text);
    gw_config_t *cfg = NULL;
    char small[600];
    cr_assert_eq(gw_config_load(path, &cfg, small, sizeof(small)), -EINVAL);
    cr_assert(strstr(small, "unknown key 'bad0'"), "%s", small);
    cr_assert(strstr(small, "more errors)"), "no count of the rest in:\n%s", small);
    cr_assert(strlen(small) < sizeof(small));
}

Test(gwconfig, duplicate_route_name_is_refused)
{
    refused_at("routes:\n"
               "  - { name: a, prefix: /a, upstreams: [http://127.0.0.1:1] }\n"
               "  - { name: a, prefix: /b, upstreams: [http://127.0.0.1:1] }\n",
               3, "route name 'a' is already used on line 2");
    refused_at("routes:\n"
               "  - { prefix: /a, upstreams: [http://127.0.0.1:1] }\n"
               "  - { name: b, prefix: /a/, upstreams: [http://127.0.0.1:1] }\n",
               3, "same host and prefix");
}

Test(gwconfig, duplicate_upstream_is_refused)
{
    refused_at("routes:\n  - prefix: /a\n    upstreams:\n      - http://127.0.0.1:1\n"
               "      - http://127.0.0.1:1/\n",
               5, "listed twice");
}

Test(gwconfig, route_auth_without_key_is_refused)
{
    refused_at(ROUTE_HEAD "    auth: { scopes: [users:read] }\n", 4,
               "route '/users': auth needs auth.key_file");
    refused_at(ROUTE_HEAD "    auth: required\n", 4, "auth needs auth.key_file");
    refused_at("auth: { key_file: nothere }\n", 1, "cannot be read");
}

Test(gwconfig, wrong_types_and_ranges_are_refused)
{
    refused_at(ROUTE_HEAD "    retries: { attempts: 11 }\n", 4, "1..10");
    refused_at(ROUTE_HEAD "    retries: { budget: 120% }\n", 4, "percentage");
    refused_at(ROUTE_HEAD "    health: { rise: 0 }\n", 4, "1..100");
    refused_at(ROUTE_HEAD "    timeouts: { try: 20s, total: 10s }\n", 4, "try must be <=");
    refused_at(ROUTE_HEAD "    timeouts: [1s]\n", 4, "must be a mapping");
    refused_at(ROUTE_HEAD "    limits:\n      max_connections: { a: 1 }\n", 5,
               "must be a whole number, not a mapping");
    refused_at(ROUTE_HEAD "    rate_limit: { per_client: { rate: 10/d } }\n", 4, "rate like");
    refused_at("routes: {}\n", 1, "routes must be a list");
}

Test(gwconfig, unreadable_file_returns_errno)
{
    gw_config_t *cfg = NULL;
    cr_assert_eq(gw_config_load("/nonexistent/gw.yaml", &cfg, err, sizeof(err)), -ENOENT);
    cr_assert_null(cfg);
    cr_assert(strstr(err, "/nonexistent/gw.yaml: cannot read") != NULL, "%s", err);
}

/* ---------------------------------------------------------------------------------- */
/* Flag routes, order, copy                                                           */
/* ---------------------------------------------------------------------------------- */

Test(gwconfig, flag_route_gets_defaults)
{
    gw_config_t *cfg = NULL;
    cr_assert_eq(gw_config_add_flag_route(&cfg, "/users/=http://127.0.0.1:1,http://localhost:2",
                                          err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(gw_config_add_flag_route(&cfg, "/=http://127.0.0.1:3", err, sizeof(err)), 0);
    cr_assert_eq(cfg->nroutes, 2);
    const gw_route_cfg_t *r = &cfg->routes[0];
    cr_assert_str_eq(r->name, "users");
    cr_assert_str_eq(r->prefix, "/users");
    cr_assert_eq(r->nupstreams, 2);
    cr_assert_eq(r->upstreams[1].port, 2);
    cr_assert_eq(r->auth, 0);
    cr_assert_eq(r->attempts, 3);
    cr_assert_str_eq(cfg->routes[1].prefix, "/");
    cr_assert_eq(gw_config_finish(cfg, err, sizeof(err)), 0, "%s", err);
    gw_config_free(cfg);
}

Test(gwconfig, flag_route_auth_follows_the_key)
{
    gw_config_t *cfg = calloc(1, sizeof(*cfg));
    snprintf(cfg->auth.key_file, sizeof(cfg->auth.key_file), "/k");
    cr_assert_eq(gw_config_add_flag_route(&cfg, "/a=http://127.0.0.1:1", err, sizeof(err)), 0);
    cr_assert_eq(cfg->routes[0].auth, 1);
    gw_config_free(cfg);
}

Test(gwconfig, bad_flag_routes_are_refused)
{
    gw_config_t *cfg = NULL;
    cr_assert_eq(gw_config_add_flag_route(&cfg, "/a", err, sizeof(err)), -EINVAL);
    cr_assert(strncmp(err, "--route '/a': ", 14) == 0, "%s", err);
    cr_assert_eq(gw_config_add_flag_route(&cfg, "a=http://127.0.0.1:1", err, sizeof(err)), -EINVAL);
    cr_assert_eq(gw_config_add_flag_route(&cfg, "/a=", err, sizeof(err)), -EINVAL);
    cr_assert_eq(gw_config_add_flag_route(&cfg, "/a=http://127.0.0.1:1,http://127.0.0.1:1", err,
                                          sizeof(err)),
                 -EINVAL);
    cr_assert(strstr(err, "listed twice") != NULL, "%s", err);
    cr_assert_null(cfg);
    cr_assert_eq(gw_config_add_flag_route(&cfg, "/a=http://127.0.0.1:1", err, sizeof(err)), 0);
    cr_assert_eq(gw_config_add_flag_route(&cfg, "/a=http://127.0.0.1:2", err, sizeof(err)), 0);
    cr_assert_eq(gw_config_finish(cfg, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "routes 'a' and 'a-2' both match host '*' prefix '/a'") != NULL, "%s",
              err);
    gw_config_free(cfg);
}

Test(gwconfig, finish_sorts_most_specific_first)
{
    gw_config_t *cfg;
    cr_assert_eq(load("routes:\n"
                      "  - { prefix: /, upstreams: [http://127.0.0.1:1] }\n"
                      "  - { prefix: /a, upstreams: [http://127.0.0.1:1] }\n"
                      "  - { prefix: /a/b, upstreams: [http://127.0.0.1:1] }\n"
                      "  - { prefix: /a, host: x.example, upstreams: [http://127.0.0.1:1] }\n"
                      "  - { prefix: /b, upstreams: [http://127.0.0.1:1] }\n",
                      &cfg),
                 0, "%s", err);
    cr_assert_eq(gw_config_add_flag_route(&cfg, "/a/b/c=http://127.0.0.1:1", err, sizeof(err)), 0);
    cr_assert_eq(gw_config_finish(cfg, err, sizeof(err)), 0, "%s", err);
    const char *want[][2] = {{"/a/b/c", ""}, {"/a/b", ""}, {"/a", "x.example"},
                             {"/a", ""},     {"/b", ""},   {"/", ""}};
    cr_assert_eq(cfg->nroutes, 6);
    for (int i = 0; i < 6; i++) {
        cr_assert_str_eq(cfg->routes[i].prefix, want[i][0], "route %d", i);
        cr_assert_str_eq(cfg->routes[i].host, want[i][1], "route %d", i);
    }
    cr_assert_str_eq(cfg->routes[2].name, "x.example-a");
    gw_config_free(cfg);
}

/* Default names fit one segment of an admin URL: no slashes, unique. */
Test(gwconfig, default_names_have_no_slashes_and_are_unique)
{
    gw_config_t *cfg;
    cr_assert_eq(load("routes:\n"
                      "  - { prefix: /users, upstreams: [http://127.0.0.1:1] }\n"
                      "  - { prefix: /api/v1/, upstreams: [http://127.0.0.1:1] }\n"
                      "  - { prefix: /, upstreams: [http://127.0.0.1:1] }\n"
                      "  - { prefix: /users, host: A.Example, upstreams: [http://127.0.0.1:1] }\n"
                      "  - { name: orders, prefix: /o, upstreams: [http://127.0.0.1:1] }\n"
                      "  - { prefix: /orders, upstreams: [http://127.0.0.1:1] }\n",
                      &cfg),
                 0, "%s", err);
    cr_assert_eq(gw_config_add_flag_route(&cfg, "/api-v1=http://127.0.0.1:1", err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_eq(gw_config_add_flag_route(&cfg, "/a/b=http://127.0.0.1:1", err, sizeof(err)), 0);
    const char *want[][3] = {
        {"/users", "", "users"},     {"/api/v1", "", "api-v1"},
        {"/", "", "root"},           {"/users", "a.example", "a.example-users"},
        {"/o", "", "orders"},        {"/orders", "", "orders-2"},
        {"/api-v1", "", "api-v1-2"}, {"/a/b", "", "a-b"}};
    cr_assert_eq(cfg->nroutes, 8);
    for (int i = 0; i < 8; i++) {
        const gw_route_cfg_t *r = NULL;
        for (int k = 0; k < cfg->nroutes && !r; k++)
            if (strcmp(cfg->routes[k].prefix, want[i][0]) == 0 &&
                strcmp(cfg->routes[k].host, want[i][1]) == 0)
                r = &cfg->routes[k];
        cr_assert_not_null(r, "no route %s %s", want[i][1], want[i][0]);
        cr_assert_str_eq(r->name, want[i][2], "route %s %s", want[i][1], want[i][0]);
    }
    cr_assert_eq(gw_config_finish(cfg, err, sizeof(err)), 0, "%s", err);
    gw_config_free(cfg);
}

Test(gwconfig, dup_is_deep_and_free_takes_null)
{
    gw_config_t *cfg = NULL;
    cr_assert_eq(gw_config_add_flag_route(&cfg, "/a=http://127.0.0.1:1,http://127.0.0.1:2", err,
                                          sizeof(err)),
                 0);
    gw_config_t *copy = gw_config_dup(cfg);
    cr_assert_not_null(copy);
    cr_assert_neq(copy->routes, cfg->routes);
    cr_assert_neq(copy->routes[0].upstreams, cfg->routes[0].upstreams);
    cfg->routes[0].upstreams[1].port = 9;
    gw_config_free(cfg);
    cr_assert_eq(copy->routes[0].nupstreams, 2);
    cr_assert_eq(copy->routes[0].upstreams[1].port, 2);
    cr_assert_str_eq(copy->routes[0].upstreams[1].url, "http://127.0.0.1:2");
    gw_config_free(copy);
    gw_config_free(NULL);
}

Test(gwconfig, lb_names)
{
    cr_assert_str_eq(gw_lb_name(GW_LB_ROUND_ROBIN), "round_robin");
    cr_assert_str_eq(gw_lb_name(GW_LB_WEIGHTED_ROUND_ROBIN), "weighted_round_robin");
    cr_assert_str_eq(gw_lb_name(GW_LB_LEAST_REQUEST), "least_request");
    cr_assert_str_eq(gw_lb_name(GW_LB_PEAK_EWMA), "peak_ewma");
    cr_assert_str_eq(gw_lb_name(GW_LB_HASH), "hash");
}

Test(gwconfig, upstream_parse_resolves_names_once)
{
    gw_upstream_cfg_t u;
    cr_assert_eq(gw_upstream_parse("http://localhost:80", &u, err, sizeof(err)), 0, "%s", err);
    cr_assert(strcmp(u.host, "127.0.0.1") == 0 || strcmp(u.host, "::1") == 0, "%s", u.host);
    cr_assert_eq(gw_upstream_parse("http://user@h:1", &u, err, sizeof(err)), -EINVAL);
    cr_assert_eq(gw_upstream_parse("http://:1", &u, err, sizeof(err)), -EINVAL);
    cr_assert_eq(gw_upstream_parse("http://127.0.0.1:1?x", &u, err, sizeof(err)), -EINVAL);
}

/* Every file in examples/ loads as it is, copied next to the key file it names (as a
 * user makes it with `cmesh token --init`), and is a config against `make run`'s ports. */
Test(gwconfig, every_example_file_loads)
{
    char exdir[512];
    snprintf(exdir, sizeof(exdir), "%.*sexamples",
             (int)(strlen(__FILE__) - strlen("tests/unit/test_gwconfig.c")), __FILE__);
    DIR *d = opendir(exdir);
    cr_assert_not_null(d, "%s", exdir);
    int loaded = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".yaml") != 0)
            continue;
        char src[1024];
        snprintf(src, sizeof(src), "%s/%s", exdir, e->d_name);
        FILE *f = fopen(src, "r");
        cr_assert_not_null(f, "%s", src);
        static char text[32768];
        size_t n = fread(text, 1, sizeof(text) - 1, f);
        fclose(f);
        text[n] = '\0';
        const char *kf = strstr(text, "key_file:");
        if (kf) { /* the key it names, relative to the file */
            char key[256];
            cr_assert_eq(sscanf(kf, "key_file: %255s", key), 1);
            write_at(key, "0123456789abcdef0123456789abcdef0123456789a\n");
        }
        gw_config_t *cfg;
        cr_assert_eq(load(text, &cfg), 0, "%s: %s", e->d_name, err);
        cr_assert_gt(cfg->nroutes, 0, "%s has no routes", e->d_name);
        for (int i = 0; i < cfg->nroutes; i++) {
            const gw_route_cfg_t *r = &cfg->routes[i];
            /* make run's layout: users on 7001 and 7002, orders on 7101 and 7102 */
            const char *want = strcmp(r->prefix, "/users") == 0    ? "7001"
                               : strcmp(r->prefix, "/orders") == 0 ? "7101"
                                                                   : NULL;
            cr_assert_not_null(want, "%s: route %s is neither /users nor /orders", e->d_name,
                               r->prefix);
            cr_assert_str_empty(r->host, "%s: route %s only matches Host %s", e->d_name, r->name,
                                r->host);
            for (int j = 0; j < r->nupstreams; j++)
                cr_assert(r->upstreams[j].port == atoi(want) ||
                              r->upstreams[j].port == atoi(want) + 1,
                          "%s: route %s upstream %s is not on %s", e->d_name, r->name,
                          r->upstreams[j].url, want);
        }
        gw_config_free(cfg);
        loaded++;
    }
    closedir(d);
    cr_assert_geq(loaded, 2, "only %d example files", loaded);
}

Test(gwconfig, admin_listen_or_socket_spelled_as_the_flag)
{
    static const char routes[] = "routes:\n  - prefix: /u\n    upstreams: [http://127.0.0.1:9]\n";
    char text[512];
    gw_config_t *cfg;
    snprintf(text, sizeof text, "admin: { listen: 127.0.0.1:9901 }\n%s", routes);
    cr_assert_eq(load(text, &cfg), 0, "%s", err);
    cr_assert_str_eq(cfg->admin, "127.0.0.1:9901");
    gw_config_free(cfg);
    snprintf(text, sizeof text, "admin:\n  socket: run/admin.sock\n%s", routes);
    cr_assert_eq(load(text, &cfg), 0, "%s", err);
    char want[700];
    snprintf(want, sizeof want, "unix:%s/run/admin.sock", dir); /* next to the file */
    cr_assert_str_eq(cfg->admin, want);
    gw_config_free(cfg);
    snprintf(text, sizeof text, "admin: { socket: /run/cmesh/admin.sock }\n%s", routes);
    cr_assert_eq(load(text, &cfg), 0, "%s", err);
    cr_assert_str_eq(cfg->admin, "unix:/run/cmesh/admin.sock");
    gw_config_free(cfg);
    snprintf(text, sizeof text, "%s", routes);
    cr_assert_eq(load(text, &cfg), 0, "%s", err);
    cr_assert_str_eq(cfg->admin, "", "admin is off unless configured");
    gw_config_free(cfg);
}

Test(gwconfig, admin_errors_name_the_line)
{
    refused_at("admin: { listen: nowhere }\nroutes: []\n", 1, "admin.listen 'nowhere'");
    refused_at("admin: { listen: 127.0.0.1:1, socket: a.sock }\nroutes: []\n", 1,
               "exactly one of listen");
    refused_at("admin: {}\nroutes: []\n", 1, "exactly one of listen");
    refused_at("admin: 127.0.0.1:1\nroutes: []\n", 1, "admin must be a mapping");
    refused_at("admin:\n  port: 1\nroutes: []\n", 2, "unknown key 'port' in admin");
}

/* Each range rule between two keys: the default of the one not given follows the other,
 * an explicit value that breaks it is refused; burst only follows rate. */
Test(gwconfig, partner_rules_follow_a_default_and_refuse_an_explicit_value)
{
    gw_config_t *cfg;
    cr_assert_eq(load(ROUTE_HEAD "    health: { interval: 200ms }\n"
                                 "    outlier: { base_ejection: 10m }\n"
                                 "    rate_limit: { per_client: { rate: 0.5 } }\n",
                      &cfg),
                 0, "%s", err);
    const gw_route_cfg_t *r = &cfg->routes[0];
    cr_assert_eq(r->health_timeout_ms, 200);
    cr_assert_eq(r->outlier_max_ms, 600000);
    cr_assert_float_eq(r->rate_client.burst, 1.0, 1e-9);
    gw_config_free(cfg);
    cr_assert_eq(load(ROUTE_HEAD "    rate_limit: { per_client: { rate: 10, burst: 2 } }\n", &cfg),
                 0, "%s", err);
    cr_assert_float_eq(cfg->routes[0].rate_client.burst, 2.0, 1e-9);
    gw_config_free(cfg);
    refused_at(ROUTE_HEAD "    health: { interval: 1s, timeout: 2s }\n", 4,
               "route '/users' health.timeout must be <= interval");
    refused_at(ROUTE_HEAD "    retries: { backoff: 1s, backoff_max: 10ms }\n", 4,
               "route '/users' retries.backoff_max must be >= backoff");
    refused_at(ROUTE_HEAD "    outlier: { max_ejection: 1s }\n", 4,
               "route '/users' outlier.max_ejection must be >= base_ejection");
    refused_at(ROUTE_HEAD "    rate_limit: { per_client: { burst: 5 } }\n", 4,
               "route '/users' rate_limit.per_client needs a rate");
}

/* ---------------------------------------------------------------------------------- */
/* The reference agrees with the key tables                                           */
/* ---------------------------------------------------------------------------------- */

#define KEYS_MAX 200

typedef struct key_row {
    char section[96]; /* the heading of its table, without a trailing " (...)" */
    char key[64];
    char def[512]; /* the default cell (doc) or the table's default (describe) */
    int line;      /* in the doc; 0 for described rows */
} key_row_t;

typedef struct key_set {
    key_row_t rows[KEYS_MAX];
    int n;
} key_set_t;

static void add_row(key_set_t *set, const char *section, const char *key, const char *def, int line)
{
    cr_assert_lt(set->n, KEYS_MAX);
    key_row_t *k = &set->rows[set->n++];
    snprintf(k->section, sizeof(k->section), "%s", section);
    snprintf(k->key, sizeof(k->key), "%s", key);
    snprintf(k->def, sizeof(k->def), "%s", def);
    k->line = line;
}

static void described(void *arg, const char *section, const char *key, const char *def)
{
    add_row(arg, section, key, def, 0);
}

static const key_row_t *find_row(const key_set_t *set, const char *section, const char *key)
{
    for (int i = 0; i < set->n; i++)
        if (strcmp(set->rows[i].section, section) == 0 && strcmp(set->rows[i].key, key) == 0)
            return &set->rows[i];
    return NULL;
}

/* Splits a markdown table line "| a | b | |" into trimmed cells; returns their number. */
static int cells(char *line, char *cell[], int max)
{
    int n = 0;
    char *p = strchr(line, '|');
    while (p && n < max) {
        char *start = p + 1, *end = strchr(start, '|');
        if (!end)
            break;
        *end = '\0';
        while (*start == ' ')
            start++;
        for (char *e = end - 1; e >= start && *e == ' '; e--)
            *e = '\0';
        cell[n++] = start;
        p = end;
    }
    return n;
}

/* Every "| `key` | ..." row of the doc's tables, with its heading and default cell. */
static void read_doc(key_set_t *doc, const char *file)
{
    FILE *f = fopen(file, "r");
    cr_assert_not_null(f, "%s", file);
    char line[8192], section[96] = "", *cell[8];
    int defcol = -1;
    bool keytab = false;
    for (int no = 1; fgets(line, sizeof(line), f); no++) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '#') {
            const char *h = line + strspn(line, "#");
            h += strspn(h, " ");
            snprintf(section, sizeof(section), "%s", h);
            char *paren = strstr(section, " (");
            if (paren)
                *paren = '\0';
            defcol = -1;
        } else if (strncmp(line, "| ", 2) == 0 && strncmp(line, "| `", 3) != 0) {
            /* a table's header row: only "| key | ..." tables list keys */
            keytab = strncmp(line, "| key |", 7) == 0;
            if (!keytab)
                continue;
            int n = cells(line, cell, 8);
            defcol = -1;
            for (int i = 0; i < n; i++)
                if (strcmp(cell[i], "default") == 0)
                    defcol = i;
        } else if (strncmp(line, "| `", 3) == 0 && keytab) {
            int n = cells(line, cell, 8);
            cr_assert(defcol >= 0 && defcol < n, "%s:%d: a key table without a default column",
                      file, no);
            char key[64];
            cr_assert_eq(sscanf(cell[0], "`%63[^`]`", key), 1, "%s:%d", file, no);
            add_row(doc, section, key, cell[defcol], no);
        }
    }
    fclose(f);
}

/* docs/gateway-config.md lists exactly the keys of the loader's tables, under the same
 * headings, each with the default the table holds (`5s`, **required**, or no literal
 * default when the table has none): the defaults live in the tables, the doc follows. */
Test(gwconfig, reference_lists_every_key_with_the_tables_default)
{
    static key_set_t tab, doc;
    tab.n = doc.n = 0;
    gw_config_describe(described, &tab);
    char file[512];
    snprintf(file, sizeof(file), "%.*sdocs/gateway-config.md",
             (int)(strlen(__FILE__) - strlen("tests/unit/test_gwconfig.c")), __FILE__);
    read_doc(&doc, file);
    cr_assert_geq(tab.n, 40, "only %d keys described", tab.n);
    for (int i = 0; i < tab.n; i++) {
        const key_row_t *t = &tab.rows[i];
        const key_row_t *d = find_row(&doc, t->section, t->key);
        cr_assert_not_null(d, "%s has no row for `%s` under the heading %s", file, t->key,
                           t->section);
        char want[600];
        if (strcmp(t->def, "required") == 0)
            snprintf(want, sizeof(want), "**required**");
        else
            snprintf(want, sizeof(want), "`%s`", t->def);
        if (t->def[0])
            cr_assert(strncmp(d->def, want, strlen(want)) == 0,
                      "%s:%d: %s `%s`: the default is %s, the doc says '%s'", file, d->line,
                      t->section, t->key, want, d->def);
        else
            cr_assert(d->def[0] != '`',
                      "%s:%d: %s `%s` has no literal default in the tables, the doc says '%s'",
                      file, d->line, t->section, t->key, d->def);
    }
    for (int i = 0; i < doc.n; i++)
        cr_assert_not_null(find_row(&tab, doc.rows[i].section, doc.rows[i].key),
                           "%s:%d: `%s` under %s is no key of the config tables", file,
                           doc.rows[i].line, doc.rows[i].key, doc.rows[i].section);
}

Test(gwconfig, route_service_names_the_registry_service_it_follows)
{
    gw_config_t *cfg;
    cr_assert_eq(load("routes:\n  - prefix: /api/users\n    service: users\n"
                      "    upstreams: [http://127.0.0.1:7001]\n"
                      "  - prefix: /orders\n    upstreams: [http://127.0.0.1:7101]\n",
                      &cfg),
                 0, "%s", err);
    cr_assert_str_eq(cfg->routes[0].service, "users");
    cr_assert_str_eq(cfg->routes[1].service, "", "none given: the route's name is followed");
    gw_config_t *dup = gw_config_dup(cfg);
    cr_assert_str_eq(dup->routes[0].service, "users", "an admin edit keeps it");
    gw_config_free(dup);
    gw_config_free(cfg);
    refused_at("routes:\n  - prefix: /u\n    service: 'us/ers'\n"
               "    upstreams: [http://127.0.0.1:7001]\n",
               3, "registry service name");
    refused_at("routes:\n  - prefix: /u\n    service: ''\n"
               "    upstreams: [http://127.0.0.1:7001]\n",
               3, "must not be empty");
}
