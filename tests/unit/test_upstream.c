/* tests/unit/test_upstream.c: gateway/upstream.c's wait queue and its promise that no
 * callback runs inside the call that asked: a real loop, a loopback listener standing in
 * for an instance, one connection slot. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <uv.h>

#include "gateway/gateway_types.h"
#include "gateway/upstream.h"

enum { MAXC = 8 };

static uv_loop_t loop;
static uv_tcp_t listener;
static uv_tcp_t *accepted[MAXC];
static int naccepted;
static gw_worker_t w;
static gw_route_cfg_t cfg;
static gw_inst_t in;
static gw_metrics_t *metrics;
static int inside_call; /* set around the calls that must not call back */

typedef struct asker {
    gw_waiter_t wt;
    int calls;
    gw_uconn_t *uc;
    int status;
} asker_t;

static void on_connected(void *arg, gw_uconn_t *uc, int status)
{
    asker_t *a = arg;
    cr_assert_not(inside_call, "connected called back inside the call that asked");
    a->calls++;
    a->uc = uc;
    a->status = status;
}
static int on_head(void *a, int s, int64_t cl, const char *h, const gw_hdr_off_t *o, int n)
{
    (void)a, (void)s, (void)cl, (void)h, (void)o, (void)n;
    return 0;
}
static int on_body(void *a, const char *at, size_t len)
{
    (void)a, (void)at, (void)len;
    return 0;
}
static void on_done(void *a, int clean)
{
    (void)a, (void)clean;
}
static void on_error(void *a, gw_fail_t why)
{
    (void)a, (void)why;
}
static void on_drained(void *a)
{
    (void)a;
}
static const gw_up_cbs_t cbs = {on_connected, on_head, on_body, on_done, on_error, on_drained};

static void on_accept(uv_stream_t *l, int status)
{
    cr_assert_eq(status, 0);
    cr_assert_lt(naccepted, MAXC);
    uv_tcp_t *c = malloc(sizeof *c);
    uv_tcp_init(&loop, c);
    cr_assert_eq(uv_accept(l, (uv_stream_t *)c), 0);
    accepted[naccepted++] = c;
}

static void setup(void)
{
    cr_assert_eq(uv_loop_init(&loop), 0);
    uv_tcp_init(&loop, &listener);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    cr_assert_eq(uv_tcp_bind(&listener, (const struct sockaddr *)&sa, 0), 0);
    cr_assert_eq(uv_listen((uv_stream_t *)&listener, 16, on_accept), 0);
    memset(&w, 0, sizeof w);
    w.loop = &loop;
    w.rbuf = malloc(64 * 1024);
    gw_upstream_worker_init(&w);
    gw_route_defaults(&cfg);
    cfg.max_connections = 1;
    cfg.max_pending = 1;
    cr_assert_eq(gw_metrics_new(&metrics), 0);
    memset(&in, 0, sizeof in);
    in.w = &w;
    in.cfg = &cfg;
    in.stats = gw_metrics_upstream(metrics, gw_metrics_route(metrics, "r"), "http://x");
    int len = sizeof in.addr;
    cr_assert_eq(uv_tcp_getsockname(&listener, (struct sockaddr *)&in.addr, &len), 0);
    naccepted = 0;
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void teardown(void)
{
    gw_inst_close_idle(&in, 0);
    for (int i = 0; i < naccepted; i++)
        uv_close((uv_handle_t *)accepted[i], free_handle);
    uv_close((uv_handle_t *)&listener, NULL);
    gw_upstream_worker_close(&w, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
    free(w.rbuf);
    gw_metrics_free(metrics);
}

/* Runs the loop until a has been called back (bounded: a connect on loopback is quick). */
static void run_until_called(asker_t *a)
{
    for (int i = 0; i < 1000 && !a->calls; i++)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert_eq(a->calls, 1);
}

static int get(asker_t *a)
{
    inside_call = 1;
    int rc = gw_uconn_get(&in, &a->wt, &cbs, a);
    inside_call = 0;
    return rc;
}

static void release(gw_uconn_t *uc, int reusable)
{
    inside_call = 1;
    gw_uconn_release(uc, reusable);
    inside_call = 0;
}

Test(upstream, waiters_past_the_cap_queue_up_to_max_pending, .init = setup, .fini = teardown)
{
    asker_t a = {0}, b = {0}, c = {0};
    cr_assert_eq(get(&a), 0); /* connecting */
    cr_assert_eq(get(&b), 1); /* queued: one connection at most */
    cr_assert_eq(get(&c), -EBUSY, "a second waiter past max_pending 1 was queued");
    cr_assert_eq(in.npending, 1);
    run_until_called(&a);
    cr_assert_eq(a.status, 0);
    cr_assert_not_null(a.uc);
    release(a.uc, 1); /* b takes it over, but from the loop */
    cr_assert_eq(b.calls, 0, "the waiter was served inside release");
    run_until_called(&b);
    cr_assert_eq(b.uc, a.uc, "the waiter did not get the released connection");
    cr_assert(gw_uconn_reused(b.uc));
    cr_assert_eq(in.npending, 0);
    release(b.uc, 1);
    cr_assert_eq(in.nidle, 1);
}

Test(upstream, an_idle_connection_is_handed_over_from_the_loop, .init = setup, .fini = teardown)
{
    asker_t a = {0}, b = {0};
    cr_assert_eq(get(&a), 0);
    run_until_called(&a);
    release(a.uc, 1);
    cr_assert_eq(in.nidle, 1);
    cr_assert_eq(get(&b), 0);
    cr_assert_eq(b.calls, 0, "an idle connection was handed over inside get");
    run_until_called(&b);
    cr_assert_eq(b.uc, a.uc);
    release(b.uc, 0); /* not reusable: closed */
    cr_assert_eq(in.nidle, 0);
}

Test(upstream, a_cancelled_waiter_is_never_called_and_the_connection_pools, .init = setup,
     .fini = teardown)
{
    asker_t a = {0}, b = {0};
    cr_assert_eq(get(&a), 0);
    cr_assert_eq(get(&b), 1);
    gw_uconn_cancel_wait(&in, &b.wt);
    cr_assert_eq(in.npending, 0);
    run_until_called(&a);
    release(a.uc, 1);
    cr_assert_eq(in.nidle, 1, "with nobody waiting the connection goes to the pool");
    for (int i = 0; i < 3; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    cr_assert_eq(b.calls, 0);
}

/* A connect given up on lands in the pool; until it ends it holds the instance (a reload
 * may drop every table naming it meanwhile), and lets go once pooled. */
Test(upstream, a_connect_given_up_on_holds_its_instance_until_it_ends, .init = setup,
     .fini = teardown)
{
    in.refs = 1; /* a table's */
    asker_t a = {0};
    cr_assert_eq(get(&a), 0);
    gw_uconn_cancel_wait(&in, &a.wt);
    cr_assert_eq(in.refs, 2, "the connect in progress holds the instance");
    for (int i = 0; i < 1000 && !in.nidle; i++)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert_eq(in.nidle, 1, "the connection went to the pool");
    cr_assert_eq(in.refs, 1, "the connection let go of the instance");
    cr_assert_eq(a.calls, 0);
}

Test(upstream, a_hand_over_cancelled_before_delivery_returns_to_the_pool, .init = setup,
     .fini = teardown)
{
    asker_t a = {0}, b = {0};
    cr_assert_eq(get(&a), 0);
    run_until_called(&a);
    release(a.uc, 1);
    cr_assert_eq(get(&b), 0); /* handed over, delivery pending */
    gw_uconn_cancel_wait(&in, &b.wt);
    for (int i = 0; i < 3; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    cr_assert_eq(b.calls, 0, "a cancelled request was called back");
    cr_assert_eq(in.nidle, 1);
}

Test(upstream, a_connect_refused_is_reported_from_the_loop, .init = setup, .fini = teardown)
{
    struct sockaddr_in *sa = (struct sockaddr_in *)&in.addr;
    sa->sin_port = htons(1); /* nothing listens on port 1 */
    asker_t a = {0};
    cr_assert_eq(get(&a), 0);
    cr_assert_eq(a.calls, 0);
    run_until_called(&a);
    cr_assert_null(a.uc);
    cr_assert_lt(a.status, 0);
    cr_assert_eq(in.nconns, 0);
}
