/* Unit tests for control/spec: cmesh.yaml parsing (defaults, every section), FILE:LINE
 * errors for bad input, placeholders, and the gateway file rendered through the
 * gateway's own loader. Texts are parsed from memory with a path in a temp dir. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "control/spec.h"

static char dir[256], path[512], err[2048];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/spec-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/cmesh.yaml", dir);
    err[0] = '\0';
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(spec, .init = setup, .fini = teardown);

static int parse(const char *text, cm_spec_t **out)
{
    return cm_spec_parse(path, text, strlen(text), out, err, sizeof err);
}

/* expects an error that names path:line and contains what */
static void expect_error(const char *text, int line, const char *what)
{
    cm_spec_t *s = NULL;
    cr_assert_lt(parse(text, &s), 0, "parsed: %s", text);
    cr_assert_null(s);
    char want[600];
    snprintf(want, sizeof want, "%s:%d: ", path, line);
    cr_assert(strncmp(err, want, strlen(want)) == 0, "error '%s' does not start with '%s'", err,
              want);
    cr_assert(strstr(err, what), "error '%s' does not say '%s'", err, what);
}

static const char minimal[] = "services:\n"
                              "  users:\n"
                              "    command: users\n"
                              "    listen: 127.0.0.1:7001\n";

Test(spec, minimal_file_takes_every_default)
{
    cm_spec_t *s;
    cr_assert_eq(parse(minimal, &s), 0, "%s", err);
    cr_assert_eq(s->nsvcs, 1);
    cr_assert_eq(s->has_gateway, 0);
    cr_assert_str_eq(s->control_host, "127.0.0.1");
    cr_assert_eq(s->control_port, 9000);
    char want[600];
    char real[512];
    cr_assert_not_null(realpath(dir, real));
    snprintf(want, sizeof want, "%s/data/state", real);
    cr_assert_str_eq(s->state_dir, want);
    const cm_svc_spec_t *u = cm_spec_service(s, "users");
    cr_assert_not_null(u);
    cr_assert_eq(u->self, 1);
    cr_assert_eq(u->instances, 1);
    cr_assert_eq(u->port, 7001);
    cr_assert_str_eq(u->ready.path, "/readyz");
    cr_assert_str_eq(u->live.path, "/healthz");
    cr_assert_eq(u->ready.fall, 3);
    cr_assert_eq(u->drain_ms, 10000);
    cm_spec_free(s);
}

Test(spec, external_command_has_no_probes_by_default)
{
    cm_spec_t *s;
    cr_assert_eq(parse("services:\n  w:\n    command: /bin/sleep\n    args: [1000]\n"
                       "    listen: 127.0.0.1:7001\n",
                       &s),
                 0, "%s", err);
    cr_assert_eq(s->svcs[0].self, 0);
    cr_assert_str_eq(s->svcs[0].ready.path, "");
    cr_assert_str_eq(s->svcs[0].live.path, "");
    cr_assert_eq(s->svcs[0].nargs, 1);
    cr_assert_str_eq(s->svcs[0].args[0], "1000");
    cm_spec_free(s);
}

Test(spec, every_key_is_read)
{
    cm_spec_t *s;
    cr_assert_eq(
        parse("control:\n  listen: 127.0.0.1:9100\n  state_dir: /tmp/x/state\n"
              "services:\n"
              "  users:\n    command: users\n    instances: 3\n"
              "    listen: 127.0.0.1:7001\n    env: { A: b, C: 'd e' }\n"
              "    readiness: { path: /r, interval: 2s, timeout: 500ms, rise: 2, fall: 4 }\n"
              "    liveness: off\n    drain_timeout: 3s\n",
              &s),
        0, "%s", err);
    const cm_svc_spec_t *u = &s->svcs[0];
    cr_assert_eq(s->control_port, 9100);
    cr_assert_str_eq(s->state_dir, "/tmp/x/state");
    cr_assert_eq(u->instances, 3);
    cr_assert_eq(u->nenv, 2);
    cr_assert_str_eq(u->env[1], "C=d e");
    cr_assert_str_eq(u->ready.path, "/r");
    cr_assert_eq(u->ready.interval_ms, 2000);
    cr_assert_eq(u->ready.timeout_ms, 500);
    cr_assert_eq(u->ready.rise, 2);
    cr_assert_eq(u->ready.fall, 4);
    cr_assert_str_eq(u->live.path, "");
    cr_assert_eq(u->drain_ms, 3000);
    cm_spec_free(s);
}

Test(spec, errors_name_file_and_line)
{
    expect_error("services:\n  users:\n    command: users\n    listen: 127.0.0.1:7001\n"
                 "    instanses: 2\n",
                 5, "unknown key 'instanses'");
    expect_error("services:\n  users:\n    command: users\n    listen: 127.0.0.1:7001\n"
                 "    instances: 99\n",
                 5, "0..64");
    expect_error("services:\n  users:\n    command: users\n    listen: nope\n", 4, "HOST:PORT");
    expect_error("services:\n  users:\n    listen: 127.0.0.1:7001\n", 2, "needs a command");
    expect_error("services:\n  users:\n    command: users\n", 2, "needs listen");
    expect_error("services:\n  users:\n    command: users\n    listen: 127.0.0.1:7001\n"
                 "    drain_timeout: soon\n",
                 5, "not a duration");
    expect_error("servicez: {}\n", 1, "unknown key 'servicez'");
    expect_error("services:\n  users: [a\n", 3, "YAML syntax error");
    expect_error("control:\n  listen: 127.0.0.1:9000\n", 1, "needs services");
    expect_error("services:\n  Bad_Name:\n    command: users\n    listen: 127.0.0.1:7001\n", 2,
                 "must be 1..63 of a-z");
    expect_error("services:\n  users:\n    command: users\n    listen: 127.0.0.1:7001\n"
                 "    readiness: { path: nope }\n",
                 5, "must start with '/'");
}

Test(spec, overlapping_port_ranges_are_refused)
{
    expect_error("services:\n  a:\n    command: users\n    listen: 127.0.0.1:7001\n"
                 "  b:\n    command: users\n    listen: 127.0.0.1:7010\n",
                 5, "overlap");
    expect_error("control:\n  listen: 127.0.0.1:7005\nservices:\n  a:\n    command: users\n"
                 "    listen: 127.0.0.1:7001\n",
                 4, "control or gateway port");
}

Test(spec, gateway_route_must_name_a_service)
{
    expect_error("services:\n  users:\n    command: users\n    listen: 127.0.0.1:7001\n"
                 "gateway:\n  listen: 127.0.0.1:8080\n  routes:\n    - prefix: /users\n"
                 "      service: userz\n",
                 9, "route service 'userz'");
    expect_error("services:\n  users:\n    command: users\n    listen: 127.0.0.1:7001\n"
                 "gateway:\n  routes: []\n",
                 5, "gateway needs listen");
}

Test(spec, placeholders_expand_per_instance)
{
    cm_spec_t *s;
    cr_assert_eq(parse(minimal, &s), 0, "%s", err);
    char out[256];
    cr_assert_eq(cm_spec_expand(&s->svcs[0], 2, "--listen={addr} p{port} i{index} h{host}", NULL, s,
                                out, sizeof out),
                 0);
    cr_assert_str_eq(out, "--listen=127.0.0.1:7003 p7003 i2 h127.0.0.1");
    cr_assert_lt(cm_spec_expand(&s->svcs[0], 0, "{nope}", NULL, s, out, sizeof out), 0);
    cr_assert_lt(cm_spec_expand(&s->svcs[0], 0, "{url:missing}", NULL, s, out, sizeof out), 0);
    cm_spec_free(s);
    expect_error("services:\n  users:\n    command: users\n    listen: 127.0.0.1:7001\n"
                 "    args: ['{bogus}']\n",
                 2, "unknown placeholder");
}

static int two_urls(const char *service, char ***urls, int *n, void *arg)
{
    (void)arg;
    cr_assert_str_eq(service, "users");
    char **l = calloc(2, sizeof *l);
    l[0] = strdup("http://127.0.0.1:7001");
    l[1] = strdup("http://127.0.0.1:7002");
    *urls = l, *n = 2;
    return 0;
}

Test(spec, gateway_file_lists_the_instances_of_the_named_service)
{
    cm_spec_t *s;
    cr_assert_eq(parse("services:\n  users:\n    command: users\n    listen: 127.0.0.1:7001\n"
                       "gateway:\n  listen: 127.0.0.1:8080\n  routes:\n    - prefix: /users\n"
                       "      service: users\n      balancer: round_robin\n",
                       &s),
                 0, "%s", err);
    cr_assert_eq(s->has_gateway, 1);
    cr_assert_str_eq(s->svcs[s->nsvcs - 1].name, "gateway");
    cr_assert_eq(s->svcs[s->nsvcs - 1].port, 8080);
    char *yaml = NULL;
    cr_assert_eq(cm_spec_gateway_yaml(s, two_urls, NULL, &yaml, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(yaml, "upstreams:"), "%s", yaml);
    cr_assert(strstr(yaml, "http://127.0.0.1:7002"), "%s", yaml);
    /* service: stays beside the first set: the gateway follows it with --registry */
    cr_assert(strstr(yaml, "service: users"), "%s", yaml);
    cr_assert(strstr(yaml, "balancer: round_robin"), "%s", yaml);
    free(yaml);
    cm_spec_free(s);
}

Test(spec, gateway_keys_are_checked_by_the_gateway_loader_with_this_file_s_lines)
{
    cm_spec_t *s;
    cr_assert_eq(parse("services:\n  users:\n    command: users\n    listen: 127.0.0.1:7001\n"
                       "gateway:\n  listen: 127.0.0.1:8080\n  routes:\n    - prefix: /users\n"
                       "      service: users\n      balancer: fastest\n",
                       &s),
                 0, "%s", err);
    char *yaml = NULL;
    cr_assert_lt(cm_spec_gateway_yaml(s, two_urls, NULL, &yaml, err, sizeof err), 0);
    char want[600];
    snprintf(want, sizeof want, "%s:10: ", path);
    cr_assert(strncmp(err, want, strlen(want)) == 0, "%s", err);
    cr_assert(strstr(err, "fastest"), "%s", err);
    cm_spec_free(s);
}

Test(spec, the_shipped_file_loads)
{
    const char *src = getenv("CMESH_SRC");
    char p[1024];
    snprintf(p, sizeof p, "%s/cmesh.yaml", src ? src : "..");
    cm_spec_t *s;
    cr_assert_eq(cm_spec_load(p, &s, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cm_spec_service(s, "users")->instances, 2);
    cr_assert_eq(cm_spec_service(s, "orders")->instances, 2);
    for (int i = 0; i < 2; i++) { /* both autoscale 2..8 */
        const cm_autoscale_spec_t *a = &cm_spec_service(s, i ? "orders" : "users")->autoscale;
        cr_assert(a->on && a->min == 2 && a->max == 8);
    }
    cr_assert_eq(cm_spec_service(s, "gateway")->port, 8080);
    cr_assert_eq(s->control_port, 9000);
    cr_assert(strstr(s->state_dir, "/data/state"));
    cm_spec_free(s);
}

#define AS_HEAD "services:\n  users:\n    command: users\n    listen: 127.0.0.1:7001\n"

Test(spec, autoscale_keys_and_their_defaults)
{
    cm_spec_t *s = NULL;
    cr_assert_eq(parse(AS_HEAD "    autoscale: { min: 2, max: 8, target: 4.5 }\n", &s), 0, "%s",
                 err);
    const cm_autoscale_spec_t *a = &cm_spec_service(s, "users")->autoscale;
    cr_assert_eq(a->on, 1);
    cr_assert_eq(a->min, 2);
    cr_assert_eq(a->max, 8);
    cr_assert_float_eq(a->target, 4.5, 1e-9);
    cr_assert_float_eq(a->tolerance, 0.10, 1e-9);
    cr_assert_eq(a->stable_ms, 30000);
    cr_assert_eq(a->panic_ms, 3000);
    cr_assert_eq(a->tick_ms, 1000);
    cr_assert_float_eq(a->panic_threshold, 2.0, 1e-9);
    cr_assert_eq(a->flap_budget, 2);
    cr_assert_eq(cm_spec_service(s, "users")->instances, 2); /* starts at min */
    cm_spec_free(s);
    cr_assert_eq(parse(AS_HEAD "    instances: 3\n"
                               "    autoscale:\n      min: 0\n      max: 4\n      target: 1\n"
                               "      tolerance: 5%\n      stable_window: 4s\n"
                               "      panic_window: 1s\n      tick: 500ms\n"
                               "      panic_threshold: 3\n      flap_budget: 1\n",
                       &s),
                 0, "%s", err);
    a = &cm_spec_service(s, "users")->autoscale;
    cr_assert_eq(a->min, 0);
    cr_assert_float_eq(a->tolerance, 0.05, 1e-9);
    cr_assert_eq(a->stable_ms, 4000);
    cr_assert_eq(a->tick_ms, 500);
    cr_assert_eq(a->flap_budget, 1);
    cr_assert_eq(cm_spec_service(s, "users")->instances, 3);
    cm_spec_free(s);
    /* no autoscale: the fixed count */
    cr_assert_eq(parse(minimal, &s), 0);
    cr_assert_eq(cm_spec_service(s, "users")->autoscale.on, 0);
    cm_spec_free(s);
}

Test(spec, autoscale_errors_name_file_and_line)
{
    expect_error(AS_HEAD "    autoscale: { min: 4, max: 2, target: 1 }\n", 5,
                 "min (4) must not be more than max (2)");
    expect_error(AS_HEAD "    autoscale: { max: 2, target: 0 }\n", 5, "must be more than 0");
    expect_error(AS_HEAD "    autoscale: { max: 2, target: -1 }\n", 5, "must be a number");
    expect_error(AS_HEAD "    autoscale: { max: 2, target: nan }\n", 5, "must be a number");
    expect_error(AS_HEAD "    autoscale: { max: 2 }\n", 5, "needs target");
    expect_error(AS_HEAD "    autoscale: { target: 2 }\n", 5, "needs max");
    expect_error(AS_HEAD "    autoscale: { max: 65, target: 2 }\n", 5, "1..64");
    expect_error(AS_HEAD "    autoscale: { max: 2, target: 2, tolerance: 150% }\n", 5, "tolerance");
    expect_error(AS_HEAD "    autoscale: { max: 2, target: 2, stable_window: 1s, "
                         "panic_window: 2s }\n",
                 5, "tick <= panic_window <= stable_window");
    expect_error(AS_HEAD "    autoscale: { max: 2, target: 2, stable_window: 20m, tick: 1s }\n", 5,
                 "more than 1024 ticks");
    expect_error(AS_HEAD "    autoscale: { max: 2, target: 2, tagret: 3 }\n", 5,
                 "unknown key 'tagret'");
    expect_error(AS_HEAD "    autoscale: 3\n", 5, "must be a mapping");
    expect_error(AS_HEAD "    instances: 9\n    autoscale:\n      max: 4\n      target: 1\n", 2,
                 "instances (9) must be within autoscale min..max (1..4)");
}

Test(spec, every_bad_key_of_every_service_is_reported)
{
    cm_spec_t *s = NULL;
    cr_assert_lt(parse("services:\n"
                       "  users:\n"
                       "    command: users\n"
                       "    listen: 127.0.0.1:7001\n"
                       "    instances: many\n"
                       "    colour: blue\n"
                       "  orders:\n"
                       "    command: orders\n"
                       "    listen: 127.0.0.1:7101\n"
                       "    drain_timeout: soon\n",
                       &s),
                 0);
    cr_assert_null(s);
    char want[3][600];
    for (int i = 0; i < 3; i++)
        snprintf(want[i], sizeof want[i], "%s:%d: ", path, (int[]){5, 6, 10}[i]);
    cr_assert(strncmp(err, want[0], strlen(want[0])) == 0, "%s", err);
    cr_assert(strstr(err, want[1]) && strstr(err, "colour"), "%s", err);
    cr_assert(strstr(err, want[2]) && strstr(err, "soon"), "%s", err);
    int lines = 1;
    for (const char *p = err; *p; p++)
        lines += *p == '\n';
    cr_assert_eq(lines, 3, "one line per error: %s", err);
}
