/* tests/integration/test_gwreload.c: what a SIGHUP reload does with the top-level keys:
 * a changed listen: cannot be applied (core opened the listeners), so the gateway says so
 * in its log, naming the old and the new address, and keeps serving on the old one while
 * the rest of the new config takes effect. And reloads in quick succession while requests
 * are in flight: an instance carried into a newer table that then dies must not leave a
 * pointer into it behind for the requests of the older table. */
#include "h_util.h"
#include "harness.h"
#include "scripted_upstream.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

/* Starts `cmesh gateway --config PATH --workers 1` without --listen (the harness always
 * passes one, and --listen wins over the file), so the address comes from the file's
 * listen:. The child dies with the test process (PR_SET_PDEATHSIG), also on a failed
 * assertion. */
static void start_from_file(h_proc_t *p, const char *path, int port)
{
    const char *bin = getenv("CMESH_BIN");
    cr_assert_not_null(bin, "CMESH_BIN is not set");
    p->port = port;
    snprintf(p->url, sizeof p->url, "http://127.0.0.1:%d", port);
    snprintf(p->log, sizeof p->log, "%s/stderr.log", p->dir);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        execl(bin, bin, "gateway", "--config", path, "--workers", "1", "--access-log", "off",
              (char *)NULL);
        _exit(127);
    }
    p->pid = pid;
    for (int i = 0; i < 200; i++) {
        h_resp_t r = h_req(p, "GET", "/healthz", NULL, NULL);
        long st = r.status;
        h_resp_free(&r);
        if (st == 200)
            return;
        cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "the gateway exited; see %s", p->log);
        usleep(50 * 1000);
    }
    cr_assert_fail("the gateway did not become healthy; see %s", p->log);
}

static void config_text(char *out, size_t cap, int listen_port, const char *prefix)
{
    snprintf(out, cap,
             "listen: 127.0.0.1:%d\n"
             "routes:\n"
             "  - prefix: %s\n"
             "    upstreams: [http://127.0.0.1:9]\n"
             "    health: off\n",
             listen_port, prefix);
}

Test(gwreload, changed_listen_is_named_in_a_warning_and_the_old_address_stays, .timeout = 30)
{
    h_proc_t gw = {0};
    h_tempdir(gw.dir, sizeof gw.dir);
    char path[300], cfg[512];
    snprintf(path, sizeof path, "%s/gateway.yaml", gw.dir);
    int port = h_free_port(), new_port = h_free_port();
    config_text(cfg, sizeof cfg, port, "/a");
    h_write_text(path, cfg);
    start_from_file(&gw, path, port);

    /* the new file moves the gateway and renames its route */
    config_text(cfg, sizeof cfg, new_port, "/b");
    h_write_text(path, cfg);
    cr_assert_eq(kill(gw.pid, SIGHUP), 0);
    char *log;
    h_wait_for_text(gw.log, "config reloaded", 5000, &log);
    cr_assert(strstr(log, "config reloaded"), "no reload in the log:\n%s", log);
    char want[200];
    snprintf(want, sizeof want, "listen changed from 127.0.0.1:%d to 127.0.0.1:%d", port, new_port);
    cr_assert(strstr(log, want), "no warning naming both addresses in the log:\n%s", log);
    cr_assert(strstr(log, "restart"), "the warning does not say a restart is needed:\n%s", log);
    free(log);

    /* still on the old address, with the new routes (/b unreachable upstream: 502) */
    h_resp_t r = h_req(&gw, "GET", "/b/x", NULL, NULL);
    cr_assert_eq(r.status, 502, "GET /b/x on the old address: %ld", r.status);
    h_resp_free(&r);
    r = h_req(&gw, "GET", "/a/x", NULL, NULL);
    cr_assert_eq(r.status, 404);
    h_resp_free(&r);

    /* a reload that leaves listen: alone says nothing about it */
    config_text(cfg, sizeof cfg, port, "/c");
    h_write_text(path, cfg);
    truncate(gw.log, 0);
    cr_assert_eq(kill(gw.pid, SIGHUP), 0);
    h_wait_for_text(gw.log, "config reloaded", 5000, &log);
    cr_assert(strstr(log, "config reloaded"));
    cr_assert_null(strstr(log, "listen changed"), "a warning without a change:\n%s", log);
    free(log);
    cr_assert_eq(h_stop(&gw), 0);
}

/* Rewrites the gateway's file and reloads it, then waits for the log to say so. */
static void reload(h_proc_t *gw, const char *path, const char *text)
{
    truncate(gw->log, 0);
    h_write_text(path, text);
    cr_assert_eq(kill(gw->pid, SIGHUP), 0);
    char *log;
    h_wait_for_text(gw->log, "config reloaded", 5000, &log);
    cr_assert(strstr(log, "config reloaded"), "no reload in the log:\n%s", log);
    free(log);
}

#define INFLIGHT 4

/* The crash the control plane hit (it reloads on every instance start, stop and
 * readiness change): requests start on table T1 and wait for a slow answer of instance
 * A; a reload carries A into T2 (at another slot, beside B), a second one drops A, which
 * frees T2 (no request started on it) while T1's requests still hold A. Their answers,
 * A's health checks and A's pool then must not touch T2's freed route. */
static void inflight_through_two_reloads(const char *health)
{
    us_scripted_t *a = us_start(), *b = us_start();
    us_set_reply(a, &(us_reply_t){.status = 200, .body = "slow", .delay_ms = 1500});
    us_set_reply(b, &(us_reply_t){.status = 200, .body = "fast"});
    char route[300], ups[300], cfg[1024], path[300];
    snprintf(route, sizeof route, "routes:\n  - prefix: /a\n    upstreams: [%%s]\n    health: %s\n",
             health);
    snprintf(ups, sizeof ups, "%s", us_url(a));
    snprintf(cfg, sizeof cfg, route, ups);
    h_proc_t gw = {0};
    h_start_gateway(&gw, cfg, path, sizeof path, NULL);

    int fd[INFLIGHT];
    const char req[] = "GET /a/x HTTP/1.1\r\nHost: t\r\n\r\n";
    for (int i = 0; i < INFLIGHT; i++) {
        fd[i] = h_connect(gw.port);
        h_send(fd[i], req, sizeof req - 1);
    }
    for (int i = 0; i < 200 && us_count(a) < INFLIGHT; i++)
        usleep(10 * 1000);
    cr_assert_eq(us_count(a), INFLIGHT, "A received %d of the requests", us_count(a));

    /* T2: A carried over, now second (B takes slot 0) */
    snprintf(ups, sizeof ups, "%s, %s", us_url(b), us_url(a));
    snprintf(cfg, sizeof cfg, route, ups);
    reload(&gw, path, cfg);
    /* T3: A gone; T2 is freed, T1 (held by the requests) still names A */
    snprintf(cfg, sizeof cfg, route, us_url(b));
    reload(&gw, path, cfg);
    usleep(200 * 1000); /* A's health checks (when on) run a few times meanwhile */

    for (int i = 0; i < INFLIGHT; i++) {
        size_t len;
        char *resp = h_recv_responses(fd[i], 1, 5000, &len);
        if (h_raw_status(resp) != 200) {
            char *log = h_read_file(gw.log, NULL);
            cr_assert_fail("request %d: \"%s\"; the gateway's log:\n%s", i, resp, log);
        }
        cr_assert_str_eq(h_raw_body(resp), "slow", "request %d: %s", i, resp);
        free(resp);
        close(fd[i]);
    }
    h_resp_t r = h_req(&gw, "GET", "/a/x", NULL, NULL);
    cr_assert_eq(r.status, 200, "the gateway after the answers: %ld", r.status);
    cr_assert_str_eq(r.body, "fast");
    h_resp_free(&r);
    cr_assert_eq(h_stop(&gw), 0, "the gateway did not exit 0; see %s", gw.log);
    us_stop(a);
    us_stop(b);
}

/* The answers and the pool: what the first core showed (on_headers_complete). */
Test(gwreload, inflight_answers_survive_their_instance_moving_then_leaving, .timeout = 60)
{
    inflight_through_two_reloads("off");
}

/* The same with A's active health checks running after it left the newest table. */
Test(gwreload, inflight_health_checks_survive_their_instance_moving_then_leaving, .timeout = 60)
{
    inflight_through_two_reloads("{ path: /healthz, interval: 50ms, timeout: 40ms }");
}

/* A listener on 127.0.0.1 whose accept queue is full (backlog 0, one connection the
 * test made and never accepted): a further connect hangs (its SYNs are dropped) until
 * the listener closes and the next retransmitted SYN is refused. Returns the listener;
 * the filler connection to *filler. */
static int stuck_listener(int *port, int *filler)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert_eq(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(l, 0), 0);
    cr_assert_eq(getsockname(l, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    *filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(*filler, (struct sockaddr *)&a, sizeof a), 0);
    return l;
}

/* A connect the exchange gave up on (connect timeout) goes on, to land in the pool;
 * a reload then drops its instance, and nothing else holds it. When the connect ends
 * (here: refused), the connection must still find its instance alive. */
Test(gwreload, a_connect_given_up_on_survives_its_instance_leaving, .timeout = 60)
{
    int port, filler;
    int l = stuck_listener(&port, &filler);
    us_scripted_t *b = us_start();
    us_set_reply(b, &(us_reply_t){.status = 200, .body = "fast"});
    const char *route = "routes:\n  - prefix: /a\n    upstreams: [%s]\n    health: off\n"
                        "    timeouts: { connect: 100ms }\n    retries: { attempts: 1 }\n";
    char ups[100], cfg[1024], path[300];
    snprintf(ups, sizeof ups, "http://127.0.0.1:%d", port);
    snprintf(cfg, sizeof cfg, route, ups);
    h_proc_t gw = {0};
    h_start_gateway(&gw, cfg, path, sizeof path, NULL);

    h_resp_t r = h_req(&gw, "GET", "/a/x", NULL, NULL);
    cr_assert_eq(r.status, 502, "a connect that never completes: %ld", r.status);
    h_resp_free(&r);
    /* the only table naming the stuck instance goes: the instance is unreferenced */
    snprintf(cfg, sizeof cfg, route, us_url(b));
    reload(&gw, path, cfg);
    /* the stuck connect is refused at its next SYN (about a second after the first) */
    close(filler);
    close(l);
    usleep(1500 * 1000);

    r = h_req(&gw, "GET", "/a/x", NULL, NULL);
    if (r.status != 200) {
        char *log = h_read_file(gw.log, NULL);
        cr_assert_fail("the gateway after the refused connect: %ld; its log:\n%s", r.status, log);
    }
    cr_assert_str_eq(r.body, "fast");
    h_resp_free(&r);
    cr_assert_eq(h_stop(&gw), 0, "the gateway did not exit 0; see %s", gw.log);
    us_stop(b);
}
