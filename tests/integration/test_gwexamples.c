/* tests/integration/test_gwexamples.c: every file in examples/ runs as it is: a real
 * `cmesh gateway` started on each (its upstreams pointed at two real `cmesh users` and
 * two `cmesh orders` on free ports instead of make run's 7001/7002 and 7101/7102),
 * a user and an order created and read through it; a key named by key_file is made with
 * `cmesh token --init`, as the example says, and tokens with `cmesh token --config`. */
#include "api_util.h"
#include "h_util.h"
#include "harness.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <criterion/criterion.h>

/* text with every "from" replaced by "to"; caller frees. */
static char *replace_all(const char *text, const char *from, const char *to)
{
    size_t cap = strlen(text) * 2 + 1024, n = 0;
    char *out = malloc(cap);
    cr_assert_not_null(out);
    for (const char *p = text; *p;) {
        if (strncmp(p, from, strlen(from)) == 0) {
            n += (size_t)snprintf(out + n, cap - n, "%s", to);
            p += strlen(from);
        } else {
            out[n++] = *p++;
        }
        cr_assert_lt(n, cap - 64);
    }
    out[n] = '\0';
    return out;
}

/* Runs a shell command line; its stdout (trimmed) goes to out. Returns the exit status. */
static int run(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "%s", cmd);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void examples_dir(char *out, size_t cap)
{
    snprintf(out, cap, "%.*sexamples",
             (int)(strlen(__FILE__) - strlen("tests/integration/test_gwexamples.c")), __FILE__);
}

/* Makes the key an example names (key_file: NAME, relative to the file) the way its
 * comment says, and checks --init's promises: mode 0600, never overwritten. */
static void init_key(const char *bin, const char *dir, const char *text)
{
    char name[256], key[600], out[256];
    cr_assert_eq(sscanf(strstr(text, "key_file:"), "key_file: %255s", name), 1);
    snprintf(key, sizeof key, "%s/%s", dir, name);
    cr_assert_eq(run(out, sizeof out, "'%s' token --init '%s' 2>/dev/null", bin, key), 0);
    struct stat st;
    cr_assert_eq(stat(key, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "key mode %o", (unsigned)(st.st_mode & 0777));
    char *before = h_read_required(key);
    cr_assert_geq(strlen(before), 33, "a %zu-byte secret", strlen(before));
    cr_assert_neq(run(out, sizeof out, "'%s' token --init '%s' 2>/dev/null", bin, key), 0,
                  "--init overwrote an existing key");
    char *after = h_read_required(key);
    cr_assert_str_eq(before, after, "the key changed");
    free(before);
    free(after);
}

/* A user and an order through the gateway, with the bearer header when auth is on. */
static void walk_through(const h_proc_t *gw, const char *bearer, const char *file)
{
    h_resp_t r = api_send(gw, "POST", "/users", "{\"name\":\"Ada\",\"email\":\"ada@example.com\"}",
                          bearer, NULL);
    cr_assert_eq(r.status, 201, "%s: POST /users: %ld %s", file, r.status, r.body);
    json_t *j = h_json(&r);
    json_int_t uid = api_int(j, "id");
    json_decref(j);
    h_resp_free(&r);

    char body[64], path[64];
    snprintf(body, sizeof body, "{\"userId\":%lld}", (long long)uid);
    r = api_send(gw, "POST", "/orders", body, bearer, NULL);
    cr_assert_eq(r.status, 201, "%s: POST /orders: %ld %s", file, r.status, r.body);
    j = h_json(&r);
    snprintf(path, sizeof path, "/orders/%lld", (long long)api_int(j, "id"));
    json_decref(j);
    h_resp_free(&r);

    r = api_send(gw, "GET", path, NULL, bearer, NULL);
    cr_assert_eq(r.status, 200, "%s: GET %s: %ld %s", file, path, r.status, r.body);
    h_resp_free(&r);
    snprintf(path, sizeof path, "/users/%lld", (long long)uid);
    r = api_send(gw, "GET", path, NULL, bearer, NULL);
    cr_assert_eq(r.status, 200, "%s: GET %s: %ld %s", file, path, r.status, r.body);
    h_resp_free(&r);
}

static void run_example(const char *bin, const char *exdir, const char *file)
{
    /* make run's layout: two users instances on one database, two orders instances */
    h_proc_t users[2], orders[2], gw;
    static const char *const ports[2][2] = {{"127.0.0.1:7001", "127.0.0.1:7002"},
                                            {"127.0.0.1:7101", "127.0.0.1:7102"}};
    h_start(&users[0], "users", "--db", "{dir}/users.db", "--access-log", "off", NULL);
    char users_db[300];
    snprintf(users_db, sizeof users_db, "%s/users.db", users[0].dir);
    h_start(&users[1], "users", "--db", users_db, "--access-log", "off", NULL);
    h_start(&orders[0], "orders", "--db", "{dir}/orders.db", "--users-url", users[0].url,
            "--access-log", "off", NULL);
    char orders_db[300];
    snprintf(orders_db, sizeof orders_db, "%s/orders.db", orders[0].dir);
    h_start(&orders[1], "orders", "--db", orders_db, "--users-url", users[1].url, "--access-log",
            "off", NULL);

    char src[1024], dir[256], cfg_path[600];
    snprintf(src, sizeof src, "%s/%s", exdir, file);
    char *text = h_read_required(src), *t2 = strdup(text);
    cr_assert_not_null(t2);
    for (int k = 0; k < 2; k++) {
        h_proc_t *set = k == 0 ? users : orders;
        for (int i = 0; i < 2; i++) {
            char at[64];
            snprintf(at, sizeof at, "127.0.0.1:%d", set[i].port);
            char *next = replace_all(t2, ports[k][i], at);
            free(t2);
            t2 = next;
        }
    }
    h_tempdir(dir, sizeof dir);
    snprintf(cfg_path, sizeof cfg_path, "%s/%s", dir, file);
    FILE *f = fopen(cfg_path, "w");
    cr_assert_not_null(f);
    fputs(t2, f);
    fclose(f);
    int auth = strstr(t2, "key_file:") != NULL;
    if (auth)
        init_key(bin, dir, t2);

    h_start(&gw, "gateway", "--config", cfg_path, "--workers", "1", "--access-log", "off", NULL);
    char bearer[4200] = "";
    if (auth) {
        char tok[4096];
        cr_assert_eq(run(tok, sizeof tok,
                         "'%s' token --config '%s' --sub alice --scope 'users:read users:write "
                         "orders:read orders:write'",
                         bin, cfg_path),
                     0);
        snprintf(bearer, sizeof bearer, "Authorization: Bearer %s", tok);
        api_expect_error(api_send(&gw, "GET", "/users", NULL, NULL), 401, NULL);
    }
    walk_through(&gw, auth ? bearer : NULL, file);

    api_stop_clean(&gw);
    for (int i = 0; i < 2; i++)
        api_stop_clean(&orders[i]);
    for (int i = 0; i < 2; i++)
        api_stop_clean(&users[i]);
    free(text);
    free(t2);
}

Test(gwexamples, every_example_runs_against_real_users_and_orders, .timeout = 120)
{
    const char *bin = getenv("CMESH_BIN");
    cr_assert_not_null(bin, "CMESH_BIN is not set");
    char exdir[512];
    examples_dir(exdir, sizeof exdir);
    DIR *d = opendir(exdir);
    cr_assert_not_null(d, "%s", exdir);
    int ran = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".yaml") != 0)
            continue;
        cr_log_info("example %s", e->d_name);
        run_example(bin, exdir, e->d_name);
        ran++;
    }
    closedir(d);
    cr_assert_geq(ran, 2, "ran %d examples", ran);
}
