/* Unit tests for control/defn: the definition hash (what makes an instance stale) and
 * the spec difference a reload applies. Specs are parsed from memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "control/defn.h"

static char dir[256], path[512], exe[600];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/defn-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/cmesh.yaml", dir);
    snprintf(exe, sizeof exe, "%s/cmesh-bin", dir);
    FILE *f = fopen(exe, "w");
    fputs("v1", f);
    fclose(f);
    chmod(exe, 0755);
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(defn, .init = setup, .fini = teardown);

static const char base[] =
    "services:\n"
    "  users:\n    command: users\n    instances: %d\n    listen: 127.0.0.1:7000\n"
    "    args: [--db, users.db]\n    env: { V: '%s' }\n"
    "  orders:\n    command: orders\n    instances: 2\n    listen: 127.0.0.1:7100\n"
    "    drain_timeout: %s\n"
    "%s"
    "gateway:\n  listen: 127.0.0.1:8080\n  routes:\n"
    "    - { prefix: %s, service: users }\n";

static cm_spec_t *parse(int users, const char *env, const char *drain, const char *extra,
                        const char *prefix)
{
    char text[2048], err[1024];
    snprintf(text, sizeof text, base, users, env, drain, extra, prefix);
    cm_spec_t *s = NULL;
    cr_assert_eq(cm_spec_parse(path, text, strlen(text), &s, err, sizeof err), 0, "%s", err);
    return s;
}

static void hash_of(const cm_spec_t *s, const char *svc, char out[CM_DEFN_LEN])
{
    cm_defn_hash(cm_spec_service(s, svc), exe, dir, out);
}

Test(defn, hash_changes_with_env_and_drain_but_not_with_the_count)
{
    cm_spec_t *a = parse(2, "1", "5s", "", "/users"), *b = parse(3, "1", "5s", "", "/users"),
              *c = parse(2, "2", "5s", "", "/users"), *d = parse(2, "1", "6s", "", "/users");
    char ha[CM_DEFN_LEN], hb[CM_DEFN_LEN], hc[CM_DEFN_LEN], hd[CM_DEFN_LEN];
    hash_of(a, "users", ha);
    hash_of(b, "users", hb);
    hash_of(c, "users", hc);
    cr_assert_eq(strlen(ha), 16);
    cr_assert_str_eq(ha, hb, "the count is not part of the definition");
    cr_assert_str_neq(ha, hc, "a changed env is");
    hash_of(a, "orders", ha);
    hash_of(d, "orders", hd);
    cr_assert_str_neq(ha, hd, "a changed drain_timeout is");
    cm_spec_free(a), cm_spec_free(b), cm_spec_free(c), cm_spec_free(d);
}

Test(defn, hash_changes_with_a_new_binary)
{
    cm_spec_t *a = parse(2, "1", "5s", "", "/users");
    char h1[CM_DEFN_LEN], h2[CM_DEFN_LEN], h3[CM_DEFN_LEN];
    hash_of(a, "users", h1);
    hash_of(a, "users", h2);
    cr_assert_str_eq(h1, h2, "the same binary hashes the same");
    /* a rebuild: a new file in place of the old one (the linker writes a new inode) */
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.new", exe);
    FILE *f = fopen(tmp, "w");
    fputs("v2, longer", f);
    fclose(f);
    cr_assert_eq(rename(tmp, exe), 0);
    hash_of(a, "users", h3);
    cr_assert_str_neq(h1, h3);
    cm_spec_free(a);
}

Test(defn, diff_names_each_kind_of_change)
{
    cm_spec_t *a = parse(2, "1", "5s", "", "/users");
    cm_spec_t *b = parse(
        3, "2", "5s", "  billing:\n    command: /bin/true\n    listen: 127.0.0.1:7200\n", "/users");
    cm_defn_diff_t rows[CM_SPEC_MAX_SVCS * 2];
    int gw;
    int n = cm_defn_diff(a, b, rows, &gw);
    cr_assert_eq(n, 4); /* users, orders, gateway, billing */
    cr_assert_str_eq(rows[0].service, "users");
    cr_assert_eq(rows[0].change, CM_DEFN_DEFINITION);
    cr_assert_eq(rows[0].count_changed, 1);
    cr_assert_eq(rows[1].change, CM_DEFN_SAME);
    cr_assert_str_eq(rows[2].service, "gateway");
    cr_assert_eq(rows[2].change, CM_DEFN_SAME);
    cr_assert_str_eq(rows[3].service, "billing");
    cr_assert_eq(rows[3].change, CM_DEFN_ADDED);
    cr_assert_eq(gw, 0, "the gateway: section did not change");
    /* back: billing removed; only a count change for users is scaled */
    cm_spec_t *c = parse(3, "2", "5s", "", "/users");
    n = cm_defn_diff(b, c, rows, &gw);
    cr_assert_eq(rows[0].change, CM_DEFN_SAME);
    cr_assert_eq(rows[2].change, CM_DEFN_REMOVED);
    cm_spec_t *d = parse(4, "2", "5s", "", "/users");
    n = cm_defn_diff(c, d, rows, &gw);
    cr_assert_eq(rows[0].change, CM_DEFN_COUNT);
    cr_assert_str_eq(cm_defn_change_name(rows[0].change), "scaled");
    cm_spec_free(a), cm_spec_free(b), cm_spec_free(c), cm_spec_free(d);
}

Test(defn, diff_sees_a_changed_gateway_section)
{
    cm_spec_t *a = parse(2, "1", "5s", "", "/users"), *b = parse(2, "1", "5s", "", "/people");
    cm_defn_diff_t rows[CM_SPEC_MAX_SVCS * 2];
    int gw;
    int n = cm_defn_diff(a, b, rows, &gw);
    cr_assert_eq(gw, 1);
    for (int i = 0; i < n; i++)
        cr_assert_eq(rows[i].change, CM_DEFN_SAME, "%s", rows[i].service);
    cm_spec_free(a), cm_spec_free(b);
}
