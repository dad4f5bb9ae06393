/* Unit tests for control/registry: the index (monotonic, epoch-based, bumped only by a
 * real change), instances kept in order, and blocking watches on a real libuv loop. */
#include <string.h>

#include <criterion/criterion.h>
#include <uv.h>

#include "control/registry.h"

static cm_reg_inst_t inst(int index, cm_inst_state_t st)
{
    cm_reg_inst_t r;
    memset(&r, 0, sizeof r);
    r.index = index;
    snprintf(r.host, sizeof r.host, "127.0.0.1");
    r.port = 7001 + index;
    r.pid = 100 + index;
    r.state = st;
    r.last_exit = -1;
    return r;
}

Test(registry, index_starts_above_every_earlier_epoch)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    cm_registry_t *a, *b;
    cr_assert_eq(cm_registry_new(&loop, 1, &a), 0);
    for (int i = 0; i < 1000; i++) {
        cm_reg_inst_t r = inst(0, i % 2 ? CM_INST_READY : CM_INST_STARTING);
        cm_registry_put(a, "users", &r);
    }
    cr_assert_eq(cm_registry_new(&loop, 2, &b), 0);
    cr_assert_gt(cm_registry_index(b), cm_registry_index(a));
    cm_registry_free(a);
    cm_registry_free(b);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}

Test(registry, only_a_real_change_moves_the_index)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    cm_registry_t *r;
    cm_registry_new(&loop, 1, &r);
    cm_reg_inst_t a = inst(1, CM_INST_STARTING), b = inst(0, CM_INST_STARTING);
    cr_assert_eq(cm_registry_put(r, "users", &a), 1);
    cr_assert_eq(cm_registry_put(r, "users", &b), 1);
    uint64_t i1 = cm_registry_index(r);
    cr_assert_eq(cm_registry_put(r, "users", &a), 0);
    cr_assert_eq(cm_registry_index(r), i1);
    a.state = CM_INST_READY;
    cr_assert_eq(cm_registry_put(r, "users", &a), 1);
    cr_assert_gt(cm_registry_index(r), i1);
    cr_assert_eq(cm_registry_service_index(r, "users"), cm_registry_index(r));
    /* kept sorted by instance number */
    cr_assert_eq(cm_registry_ninstances(r, "users"), 2);
    cr_assert_eq(cm_registry_instance(r, "users", 0)->index, 0);
    cr_assert_eq(cm_registry_instance(r, "users", 1)->state, CM_INST_READY);
    cr_assert_eq(cm_registry_remove(r, "users", 0), 1);
    cr_assert_eq(cm_registry_remove(r, "users", 0), 0);
    cr_assert_eq(cm_registry_ninstances(r, "users"), 1);
    cr_assert_eq(cm_registry_ninstances(r, "nope"), -1);
    cm_registry_free(r);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}

typedef struct seen {
    int calls, changed;
    uint64_t index;
    cm_registry_t *r;
} seen_t;

static void on_watch(int changed, void *data)
{
    seen_t *s = data;
    s->calls++;
    s->changed = changed;
    s->index = cm_registry_index(s->r);
}

typedef struct change {
    cm_registry_t *r;
    const char *service;
} change_t;

static void on_change_timer(uv_timer_t *t)
{
    change_t *c = t->data;
    cm_reg_inst_t a = inst(0, CM_INST_READY);
    cm_registry_put(c->r, c->service, &a);
    uv_close((uv_handle_t *)t, NULL);
}

Test(registry, watch_returns_on_change_with_a_larger_index)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    cm_registry_t *r;
    cm_registry_new(&loop, 1, &r);
    cm_reg_inst_t a = inst(0, CM_INST_STARTING);
    cm_registry_put(r, "users", &a);
    uint64_t before = cm_registry_service_index(r, "users");
    seen_t s = {.r = r}, other = {.r = r}, all = {.r = r};
    cr_assert_eq(cm_registry_watch(r, "users", before, 60000, on_watch, &s), 0);
    cr_assert_eq(cm_registry_watch(r, "orders", 0, 60000, on_watch, &other), 0);
    cr_assert_eq(cm_registry_watch(r, NULL, cm_registry_index(r), 60000, on_watch, &all), 0);
    cr_assert_eq(s.calls, 0, "a watch never fires from inside its own call");
    cr_assert_eq(cm_registry_nwatchers(r), 3);
    uv_timer_t t;
    change_t c = {r, "users"};
    uv_timer_init(&loop, &t);
    t.data = &c;
    uv_timer_start(&t, on_change_timer, 10, 0);
    while (s.calls == 0)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert_eq(s.changed, 1);
    cr_assert_gt(s.index, before);
    cr_assert_eq(all.calls, 1);
    cr_assert_eq(all.changed, 1);
    cr_assert_eq(other.calls, 0, "a change of users does not wake a watch of orders");
    cm_registry_free(r); /* releases the orders watch */
    cr_assert_eq(other.calls, 1);
    cr_assert_eq(other.changed, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(registry, a_passed_index_is_refused_and_a_wait_ends)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    cm_registry_t *r;
    cm_registry_new(&loop, 1, &r);
    cm_reg_inst_t a = inst(0, CM_INST_STARTING);
    cm_registry_put(r, "users", &a);
    seen_t s = {.r = r};
    cr_assert_eq(cm_registry_watch(r, "users", 0, 1000, on_watch, &s), -EALREADY);
    cr_assert_eq(cm_registry_watch(r, "users", cm_registry_index(r), 20, on_watch, &s), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(s.calls, 1);
    cr_assert_eq(s.changed, 0);
    cr_assert_eq(cm_registry_nwatchers(r), 0);
    cm_registry_free(r);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}

Test(registry, thousand_watchers_all_woken_by_one_change)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    cm_registry_t *r;
    cm_registry_new(&loop, 1, &r);
    cm_reg_inst_t a = inst(0, CM_INST_STARTING);
    cm_registry_put(r, "users", &a);
    static seen_t s[1000];
    for (int i = 0; i < 1000; i++) {
        s[i] = (seen_t){.r = r};
        cr_assert_eq(cm_registry_watch(r, "users", cm_registry_index(r), 60000, on_watch, &s[i]),
                     0);
    }
    a.state = CM_INST_READY;
    cm_registry_put(r, "users", &a);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(s[i].calls, 1);
    cr_assert_eq(cm_registry_nwatchers(r), 0);
    cm_registry_free(r);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}
