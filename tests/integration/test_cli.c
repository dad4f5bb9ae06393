/* tests/integration/test_cli.c: what a new user meets first, through the real binary:
 * every command's --help, cmesh --version, unknown flags, and the access log's shape
 * (level by status, service and instance, health probes left out unless asked for,
 * the text format). */
#include "h_util.h"
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>

/* ------------------------------------------------------------------------- */
/* --help, --version, unknown flags                                           */

#define SERVER_FLAGS                                                                               \
    "--listen", "--workers", "--access-log", "--log-format", "--log-probes", "--drain-timeout",    \
        "--request-timeout", "--idle-timeout", "--max-header", "--max-uri", "--max-body",          \
        "--max-connections", "--help"

static void help_mentions(const char *cmd, const char *const *flags)
{
    char *out, *err;
    int rc = h_run_cmesh(&out, &err, cmd, "--help", NULL);
    cr_assert_eq(rc, 0, "cmesh %s --help exit %d; stderr: %s", cmd, rc, err);
    cr_assert_eq(err[0], '\0', "cmesh %s --help wrote to stderr: %s", cmd, err);
    for (; *flags; flags++)
        cr_assert_not_null(strstr(out, *flags), "cmesh %s --help does not mention %s:\n%s", cmd,
                           *flags, out);
    free(out);
    free(err);
}

Test(cli, every_command_help_exits_0_and_mentions_every_flag)
{
    help_mentions("users", (const char *const[]){"--db", "--sync", SERVER_FLAGS, NULL});
    help_mentions("orders", (const char *const[]){"--db", "--sync", "--users-url",
                                                  "--users-timeout", SERVER_FLAGS, NULL});
    help_mentions("gateway",
                  (const char *const[]){"--config", "--route", "--auth-key", SERVER_FLAGS, NULL});
    help_mentions("token", (const char *const[]){"--sub", "--scope", "--ttl", "--config",
                                                 "--auth-key", "--issuer", "--audience", NULL});
}

Test(cli, gateway_help_gives_one_listen_default_and_the_real_max_body)
{
    char *out, *err;
    cr_assert_eq(h_run_cmesh(&out, &err, "gateway", "--help", NULL), 0);
    int listens = 0;
    for (const char *p = out; (p = strstr(p, "\n  --listen ")); p++)
        listens++;
    cr_assert_eq(listens, 1, "--listen listed %d times:\n%s", listens, out);
    cr_assert_null(strstr(out, "127.0.0.1:0"), "the services' --listen default shown:\n%s", out);
    const char *mb = strstr(out, "--max-body SIZE");
    cr_assert_not_null(mb, "%s", out);
    cr_assert_not_null(strstr(mb, "(default 1g)"), "%s", out);
    free(out);
    free(err);
}

Test(cli, top_level_help_lists_version)
{
    char *out, *err;
    cr_assert_eq(h_run_cmesh(&out, &err, "--help", NULL), 0);
    cr_assert_not_null(strstr(out, "\n  version "), "%s", out);
    free(out);
    free(err);
}

/* The version written once, in CMakeLists.txt's project(... VERSION x.y.z ...). */
static void cmake_version(char *out, size_t cap)
{
    const char *src = getenv("CMESH_SRC");
    cr_assert_not_null(src, "CMESH_SRC is not set");
    char path[512];
    snprintf(path, sizeof path, "%s/CMakeLists.txt", src);
    char *text = h_read_required(path);
    const char *p = strstr(text, "project(cmesh VERSION ");
    cr_assert_not_null(p, "no project(cmesh VERSION ...) in %s", path);
    p += strlen("project(cmesh VERSION ");
    size_t n = strcspn(p, " )");
    cr_assert_lt(n, cap);
    memcpy(out, p, n);
    out[n] = '\0';
    free(text);
}

static void version_output_is_complete(const char *arg)
{
    char want[64], first[128], *out, *err;
    cmake_version(want, sizeof want);
    cr_assert_eq(h_run_cmesh(&out, &err, arg, NULL), 0, "cmesh %s; stderr: %s", arg, err);
    snprintf(first, sizeof first, "cmesh %s\n", want);
    cr_assert_eq(strncmp(out, first, strlen(first)), 0, "cmesh %s: want '%s' first:\n%s", arg, want,
                 out);
    static const char *const libs[] = {"libuv",   "llhttp",  "SQLite",   "jansson",
                                       "libcurl", "OpenSSL", "libfyaml", "libjwt"};
    for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) {
        const char *l = strstr(out, libs[i]);
        cr_assert_not_null(l, "cmesh %s does not name %s:\n%s", arg, libs[i], out);
        l += strlen(libs[i]);
        l += strspn(l, " ");
        cr_assert(*l >= '0' && *l <= '9', "%s has no version number:\n%s", libs[i], out);
    }
    free(out);
    free(err);
}

Test(cli, version_prints_cmesh_and_library_versions)
{
    version_output_is_complete("--version");
    version_output_is_complete("version");
}

Test(cli, unknown_flag_as_last_argument_is_unknown_not_missing_a_value)
{
    static const char *const cmds[] = {"users", "orders", "gateway", "token"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char *out, *err;
        int rc = h_run_cmesh(&out, &err, cmds[i], "--bogus", NULL);
        cr_assert_eq(rc, 2, "cmesh %s --bogus: exit %d", cmds[i], rc);
        cr_assert_not_null(strstr(err, "unknown flag '--bogus'"), "cmesh %s --bogus: %s", cmds[i],
                           err);
        cr_assert_null(strstr(err, "needs a value"), "%s", err);
        free(out);
        free(err);
    }
}

/* ------------------------------------------------------------------------- */
/* access log                                                                 */

/* GETs path n times and asserts the status. */
static void get_n(const h_proc_t *p, const char *path, int n, long want)
{
    for (int i = 0; i < n; i++) {
        h_resp_t r = h_req(p, "GET", path, NULL, NULL);
        cr_assert_eq(r.status, want, "GET %s: %ld", path, r.status);
        h_resp_free(&r);
    }
}

/* The JSON access lines of p's {dir}/access.log (after it stopped), as an array. */
static json_t *access_lines(const h_proc_t *p)
{
    char path[300];
    snprintf(path, sizeof path, "%s/access.log", p->dir);
    char *log = h_read_required(path);
    json_t *all = json_array();
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t e;
        json_t *j = json_loads(line, 0, &e);
        cr_assert_not_null(j, "access line is not JSON (%s): %s", e.text, line);
        json_array_append_new(all, j);
    }
    free(log);
    return all;
}

static const char *path_of(json_t *line)
{
    return json_string_value(json_object_get(line, "path"));
}

static int count_path(json_t *lines, const char *path)
{
    int n = 0;
    for (size_t i = 0; i < json_array_size(lines); i++)
        n += strcmp(path_of(json_array_get(lines, i)), path) == 0;
    return n;
}

static json_t *line_of(json_t *lines, const char *path)
{
    for (size_t i = 0; i < json_array_size(lines); i++)
        if (strcmp(path_of(json_array_get(lines, i)), path) == 0)
            return json_array_get(lines, i);
    cr_assert_fail("no access line for %s", path);
    return NULL;
}

Test(cli, access_log_leaves_out_probes_and_levels_by_status)
{
    h_proc_t p;
    h_start(&p, "users", "--db", "{dir}/users.db", "--access-log", "{dir}/access.log", NULL);
    get_n(&p, "/readyz", 3, 200);
    get_n(&p, "/healthz", 2, 200);
    get_n(&p, "/users", 1, 200);
    get_n(&p, "/users/999", 1, 404);
    cr_assert_eq(h_stop(&p), 0);
    json_t *lines = access_lines(&p);
    cr_assert_eq(count_path(lines, "/readyz"), 0, "probes logged by default");
    cr_assert_eq(count_path(lines, "/healthz"), 0, "probes logged by default");
    cr_assert_eq(json_array_size(lines), 2, "%zu lines, want the 2 API requests",
                 json_array_size(lines));
    json_t *ok = line_of(lines, "/users"), *missing = line_of(lines, "/users/999");
    cr_assert_str_eq(json_string_value(json_object_get(ok, "level")), "info");
    cr_assert_str_eq(json_string_value(json_object_get(missing, "level")), "warn");
    char instance[64];
    snprintf(instance, sizeof instance, "127.0.0.1:%d", p.port);
    cr_assert_str_eq(json_string_value(json_object_get(ok, "service")), "users");
    cr_assert_str_eq(json_string_value(json_object_get(ok, "instance")), instance);
    json_decref(lines);
}

Test(cli, log_probes_on_brings_the_probes_back)
{
    h_proc_t p;
    h_start(&p, "users", "--db", "{dir}/users.db", "--access-log", "{dir}/access.log",
            "--log-probes", "on", NULL);
    get_n(&p, "/readyz", 3, 200);
    cr_assert_eq(h_stop(&p), 0);
    json_t *lines = access_lines(&p);
    cr_assert_eq(count_path(lines, "/readyz"), 3, "want the 3 /readyz probes");
    cr_assert_geq(count_path(lines, "/healthz"), 1, "h_start's /healthz probe is missing");
    json_decref(lines);
}

Test(cli, a_5xx_answer_is_logged_as_error)
{
    /* a gateway route to a port nobody listens on: the gateway answers 502 or 503 */
    char route[128];
    snprintf(route, sizeof route, "/x=http://127.0.0.1:%d", h_free_port());
    h_proc_t gw;
    h_start(&gw, "gateway", "--route", route, "--workers", "1", "--access-log", "{dir}/access.log",
            NULL);
    h_resp_t r = h_req(&gw, "GET", "/x/1", NULL, NULL);
    cr_assert_geq(r.status, 500, "GET /x/1 to a dead upstream: %ld", r.status);
    h_resp_free(&r);
    cr_assert_eq(h_stop(&gw), 0);
    json_t *lines = access_lines(&gw);
    json_t *j = line_of(lines, "/x/1");
    cr_assert_str_eq(json_string_value(json_object_get(j, "level")), "error");
    cr_assert_str_eq(json_string_value(json_object_get(j, "service")), "gateway");
    json_decref(lines);
}

Test(cli, log_format_text_writes_readable_lines)
{
    h_proc_t p;
    h_start(&p, "users", "--db", "{dir}/users.db", "--access-log", "{dir}/access.log",
            "--log-format", "text", NULL);
    get_n(&p, "/users/999", 1, 404);
    cr_assert_eq(h_stop(&p), 0);
    char path[300], want[128];
    snprintf(path, sizeof path, "%s/access.log", p.dir);
    char *log = h_read_required(path);
    snprintf(want, sizeof want, " WARN  users 127.0.0.1:%d GET /users/999 404 ", p.port);
    cr_assert_not_null(strstr(log, want), "no '%s' in:\n%s", want, log);
    cr_assert_null(strchr(log, '{'), "JSON in the text log:\n%s", log);
    free(log);
    /* process messages follow the flag too */
    char *err = h_read_required(p.log);
    cr_assert_not_null(strstr(err, "Z INFO  users: listening on http://"), "%s", err);
    free(err);
}
