/* Unit tests for control/acks.c: the acknowledgement body's strict parse, the verdict a
 * leaving instance gets from it, and the table of the last one per gateway; and
 * gateway/drain.c's body, which the control plane's parser must take. */
#include <string.h>

#include <criterion/criterion.h>

#include "control/acks.h"
#include "gateway/drain.h"

static cm_ack_t parse_ok(const char *body)
{
    cm_ack_t a;
    char field[CM_ACKS_FIELD_MAX], err[256];
    int rc = cm_ack_parse(body, strlen(body), &a, field, err, sizeof err);
    cr_assert_eq(rc, 0, "%s: %s", body, err);
    return a;
}

static const char *parse_bad(const char *body)
{
    static char field[CM_ACKS_FIELD_MAX];
    cm_ack_t a;
    char err[256];
    cr_assert_eq(cm_ack_parse(body, strlen(body), &a, field, err, sizeof err), -EINVAL, "%s", body);
    cr_assert(err[0]);
    return field;
}

Test(acks, parse_takes_services_and_inflight)
{
    cm_ack_t a = parse_ok("{\"pid\":42,\"services\":{\"users\":17,\"orders\":0},"
                          "\"inflight\":{\"127.0.0.1:7001\":2}}");
    cr_assert_eq(a.pid, 42);
    cr_assert_eq(a.nsvcs, 2);
    cr_assert_eq(cm_ack_index(&a, "users"), 17);
    cr_assert_eq(a.naddrs, 1);
    cr_assert_str_eq(a.addrs[0].addr, "127.0.0.1:7001");
    cr_assert_eq(a.addrs[0].n, 2);
}

Test(acks, parse_names_the_bad_field)
{
    cr_assert_str_eq(parse_bad("{\"services\":{\"users\":-1}}"), "services");
    cr_assert_str_eq(parse_bad("{\"services\":[]}"), "services");
    cr_assert_str_eq(parse_bad("{}"), "services");
    cr_assert_str_eq(parse_bad("{\"services\":{},\"inflight\":{\"h:1\":\"x\"}}"), "inflight");
    cr_assert_str_eq(parse_bad("{\"services\":{},\"pid\":\"1\"}"), "pid");
    cr_assert_str_eq(parse_bad("{\"services\":{},\"index\":3}"), "index");
    cr_assert_str_eq(parse_bad("not json"), "");
}

Test(acks, verdict_waits_for_the_index_then_for_nothing_in_flight)
{
    int m;
    cr_assert_eq(cm_ack_check(NULL, "users", 10, "h:1", &m), CM_ACK_BEHIND);
    cm_ack_t a = parse_ok("{\"services\":{\"users\":9}}");
    cr_assert_eq(cm_ack_check(&a, "users", 10, "h:1", &m), CM_ACK_BEHIND);
    a = parse_ok("{\"services\":{\"users\":10},\"inflight\":{\"h:1\":3,\"h:2\":1}}");
    cr_assert_eq(cm_ack_check(&a, "users", 10, "h:1", &m), CM_ACK_BUSY);
    cr_assert_eq(m, 3);
    a = parse_ok("{\"services\":{\"users\":12},\"inflight\":{\"h:2\":1}}");
    cr_assert_eq(cm_ack_check(&a, "users", 10, "h:1", &m), CM_ACK_DRAINED);
    cr_assert_eq(m, 0);
    /* a gateway that follows no such service never routed to it */
    cr_assert_eq(cm_ack_check(&a, "orders", 10, "h:9", &m), CM_ACK_DRAINED);
}

Test(acks, table_keeps_the_last_per_gateway_and_forgets)
{
    cm_acks_t *t;
    cr_assert_eq(cm_acks_new(&t), 0);
    cm_ack_t a = parse_ok("{\"services\":{\"users\":1}}");
    cr_assert_eq(cm_acks_put(t, "gateway/0", &a), 0);
    a = parse_ok("{\"services\":{\"users\":5}}");
    cr_assert_eq(cm_acks_put(t, "gateway/0", &a), 0);
    cr_assert_eq(cm_ack_index(cm_acks_get(t, "gateway/0"), "users"), 5);
    cr_assert_str_eq(cm_acks_get(t, "gateway/0")->id, "gateway/0");
    cm_buf_t b = {0};
    cm_acks_render(t, cm_acks_get(t, "gateway/0")->at_ms, &b);
    cr_assert(strstr(b.data, "\"id\":\"gateway/0\""), "%s", b.data);
    cr_assert(strstr(b.data, "\"services\":{\"users\":5}"), "%s", b.data);
    cm_buf_free(&b);
    cm_acks_forget(t, "gateway/0");
    cr_assert_null(cm_acks_get(t, "gateway/0"));
    for (int i = 0; i < CM_ACKS_MAX; i++) {
        char id[32];
        snprintf(id, sizeof id, "gateway/%d", i);
        cr_assert_eq(cm_acks_put(t, id, &a), 0);
    }
    cr_assert_eq(cm_acks_put(t, "gateway/99", &a), -ENOSPC);
    cm_acks_free(t);
    cm_acks_free(NULL);
}

Test(acks, the_gateway_body_parses_and_leaves_drained_instances_out)
{
    char *names[] = {"users", "orders"};
    uint64_t index[] = {7, 3};
    char *addrs[] = {"127.0.0.1:7001", "127.0.0.1:7002"};
    int counts[] = {2, 0};
    cm_buf_t b = {0};
    gw_drain_body(&b, 99, names, index, 2, addrs, counts, 2);
    cm_ack_t a = parse_ok(b.data);
    cm_buf_free(&b);
    cr_assert_eq(a.pid, 99);
    cr_assert_eq(cm_ack_index(&a, "orders"), 3);
    cr_assert_eq(a.naddrs, 1);
    int m;
    cr_assert_eq(cm_ack_check(&a, "users", 7, "127.0.0.1:7001", &m), CM_ACK_BUSY);
    cr_assert_eq(cm_ack_check(&a, "users", 7, "127.0.0.1:7002", &m), CM_ACK_DRAINED);
}

Test(acks, applied_means_routed_on_that_set_or_not_following_the_service)
{
    cm_ack_t a = parse_ok("{\"services\":{\"users\":7,\"orders\":0}}");
    cr_assert(cm_ack_applied(&a, "users", 7), "routes on the set of index 7");
    cr_assert(cm_ack_applied(&a, "users", 5), "or a later one");
    cr_assert_not(cm_ack_applied(&a, "users", 8), "behind");
    cr_assert_not(cm_ack_applied(&a, "orders", 1), "followed, no answer yet");
    cr_assert(cm_ack_applied(&a, "billing", 3), "follows no such service: in no set of its");
    cr_assert_not(cm_ack_applied(NULL, "users", 1), "no acknowledgement yet");
}
