/* Unit tests for control/external: hand-registered instances enter the registry ready,
 * a heartbeat (re-put) keeps them, a missed one removes them, bad values are refused. */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <uv.h>

#include "control/external.h"

static int changes;
static void on_change(void *arg, const char *service)
{
    (void)arg;
    cr_assert_str_eq(service, "users");
    changes++;
}

Test(external, registered_ready_then_removed_when_its_ttl_passes)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    cm_registry_t *r;
    cm_registry_new(&loop, 1, &r);
    cm_ext_t *e;
    cr_assert_eq(cm_ext_new(&loop, r, on_change, NULL, &e), 0);
    changes = 0;
    cr_assert_eq(cm_ext_put(e, "users", "a", "127.0.0.1", 7050, 30), 0);
    cr_assert_eq(changes, 1);
    cr_assert_eq(cm_registry_ninstances(r, "users"), 1);
    const cm_reg_inst_t *in = cm_registry_instance(r, "users", 0);
    cr_assert_eq(in->state, CM_INST_READY);
    cr_assert_str_eq(in->ext_id, "a");
    cr_assert_geq(in->index, CM_REG_EXT_BASE);
    cr_assert_eq(cm_ext_put(e, "users", "a", "127.0.0.1", 7050, 30), 0, "a heartbeat");
    cr_assert_eq(changes, 1, "a heartbeat is no change of the routing set");
    char **urls = NULL;
    int n = 0;
    cr_assert_eq(cm_ext_urls(e, "users", &urls, &n), 0);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(urls[0], "http://127.0.0.1:7050");
    free(urls[0]);
    free(urls);
    while (cm_registry_ninstances(r, "users") > 0)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert_eq(changes, 2);
    cr_assert_eq(cm_ext_del(e, "users", "a"), -ENOENT);
    cm_ext_free(e);
    cm_registry_free(r);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(external, bad_values_and_a_full_table_are_refused)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    cm_registry_t *r;
    cm_registry_new(&loop, 1, &r);
    cm_ext_t *e;
    cm_ext_new(&loop, r, NULL, NULL, &e);
    cr_assert_eq(cm_ext_put(e, "users", "a", "127.0.0.1", 0, 1000), -EINVAL);
    cr_assert_eq(cm_ext_put(e, "users", "a", "127.0.0.1", 7050, 0), -EINVAL);
    cr_assert_eq(cm_ext_put(e, "users", "a", "127.0.0.1", 7050, CM_EXT_TTL_MAX_MS + 1), -EINVAL);
    for (int i = 0; i < CM_EXT_MAX; i++) {
        char id[16];
        snprintf(id, sizeof id, "i%d", i);
        cr_assert_eq(cm_ext_put(e, "users", id, "127.0.0.1", 7000 + i, 60000), 0);
    }
    cr_assert_eq(cm_ext_put(e, "users", "one-more", "127.0.0.1", 7999, 60000), -ENOSPC);
    cr_assert_eq(cm_ext_del(e, "users", "i3"), 0);
    cr_assert_eq(cm_registry_ninstances(r, "users"), CM_EXT_MAX - 1);
    cm_ext_free(e);
    cm_registry_free(r);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
}
